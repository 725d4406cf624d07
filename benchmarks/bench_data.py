"""Training-data throughput: samples/s of ``TrainingDataset`` through a DataLoader.

    python benchmarks/bench_data.py [SOURCE ...] [--workers 2] [--samples 200]

SOURCE: anything ``burstjdd.synth.sources.open_source`` reads: a folder (images, REDS-layout
clips or videos), a video file, ``stills:PATH`` (images in sub-folders too), ``skimage`` or
``dead_leaves`` (default: skimage). Samples are 5-frame bursts with 128x128 GT crops and a
48 px search context (frames 224x224), as in training. The first batch (worker start-up) is
not timed. Prints one table row per worker count.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from burstjdd.synth.datasets import SampleConfig, TrainingDataset
from burstjdd.synth.sources import open_source


def measure(
    dataset: TrainingDataset, workers: int, samples: int, batch_size: int
) -> tuple[float, int]:
    """(seconds, samples) for ``samples`` samples after a first, untimed batch."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    batches = iter(loader)
    next(batches)  # worker start-up and first decode
    count, start = 0, time.perf_counter()
    for batch in batches:
        count += batch["frames"].shape[0]
        if count >= samples:
            break
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", default=["skimage"], metavar="SOURCE")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--gt-size", type=int, default=128)
    parser.add_argument("--search-radius", type=int, default=48)
    parser.add_argument("--downscale", type=int, default=2, help="video files: decode at 1/F size")
    args = parser.parse_args()

    torch.set_num_threads(1)  # what DataLoader workers get: keep the main process comparable
    sources = [open_source(s, downscale=args.downscale) for s in args.sources]
    config = SampleConfig(
        n_frames=args.frames, gt_size=args.gt_size, search_radius=args.search_radius
    )
    length = args.samples + 4 * args.batch_size
    dataset = TrainingDataset(sources, None, config, seed=0, length=length)
    print(dataset.summary())
    print(f"frames {config.frame_size}x{config.frame_size}, GT {config.gt_size}x{config.gt_size}, "
          f"N={config.n_frames}, batch {args.batch_size}")
    print(f"{'workers':>7} {'samples':>7} {'seconds':>8} {'samples/s':>9}")
    for workers in args.workers:
        seconds, count = measure(dataset, workers, args.samples, args.batch_size)
        print(f"{workers:>7} {count:>7} {seconds:>8.2f} {count / seconds:>9.1f}")


if __name__ == "__main__":
    main()
