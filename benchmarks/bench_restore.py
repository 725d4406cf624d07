"""Whole-image restore cost: seconds and peak memory of ``Restorer.restore`` on a burst.

Default: a 5-frame 12 MP burst (4000x3000) for the ``classical`` fast path (no learned part
but demosaicnet: ``burstjdd restore --model classical``) and the ``compact`` and ``paper``
presets on the CPU, and on CUDA too when it is available. Every (preset, device) case runs in a FRESH
subprocess so that its peak resident set is its own. Weights are random (cost does not depend
on them); the burst is a smooth random texture with a stored noise level (no estimation), so
the time is the restore alone: RGGB packing, DSNet features, per-tile coarse alignment,
reconstruction, blending. Default tiling (restore's: the largest tile of 256..512 px that the
memory budget holds, 64 px overlap) unless ``--tile``.

Reported: seconds (one timed run, after building the model and the burst; the first run
includes one-time warm-up), seconds per megapixel, tiles, peak RSS of the process (GiB,
``resource.getrusage`` ru_maxrss: model + burst + restore) and its growth during the restore,
and on CUDA the peak allocated GPU memory.

    python benchmarks/bench_restore.py [--presets classical compact paper] [--size 4000x3000]
                                       [--frames 5] [--devices cpu cuda] [--tile 256]
                                       [--threads N] [--precision auto]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' (both even) -> (W, H)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: expected WxH, e.g. 4000x3000") \
            from None
    if w < 2 or h < 2 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: W and H must be even and >= 2")
    return w, h


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def child(case: dict) -> dict:
    """Run one case in this process; return its measurements."""
    import torch
    import torch.nn.functional as F

    from burstjdd.models.classical import CLASSICAL, build_classical
    from burstjdd.models.jddb import build_model
    from burstjdd.raw.burst import RawBurst
    from burstjdd.raw.cfa import mosaic
    from burstjdd.raw.noise import NoiseLevel, add_noise
    from burstjdd.restore import Restorer, resolve_tile, tile_layout

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    w, h, n = case["width"], case["height"], case["frames"]
    g = torch.Generator().manual_seed(0)
    texture = torch.rand(1, 3, h // 16 + 2, w // 16 + 2, generator=g)
    scene = F.interpolate(texture, size=(h, w), mode="bilinear", align_corners=False)[0]
    level = NoiseLevel(6.4e-3, 2e-2)
    raw = torch.stack([add_noise(mosaic(scene, "RGGB"), level.shot, level.read, g)
                       for _ in range(n)])
    del scene, texture
    burst = RawBurst(raw=raw, cfa="RGGB", wb=torch.ones(3), ccm=torch.eye(3), noise=level)
    preset = case["preset"]
    model = build_classical() if preset == CLASSICAL else build_model(preset, seed=0)
    restorer = Restorer(model, device=case["device"], tile=case["tile"],
                        precision=case["precision"])
    options = resolve_tile(restorer.options, model.config.nf, n, restorer.device)
    grid, _ = tile_layout(h // 2, w // 2, options)
    cuda = restorer.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = _rss_gib()
    start = time.perf_counter()
    out = restorer.restore(burst, progress=False)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert out.shape == (3, h, w) and bool(torch.isfinite(out).all())
    return {
        "seconds": seconds,
        "tiles": len(grid.origins),
        "tile": options.tile,
        "rss_gib": _rss_gib(),
        "rss_growth_gib": _rss_gib() - before,
        "gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["classical", "compact", "paper"])
    parser.add_argument("--size", type=parse_size, default=(4000, 3000), metavar="WxH")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--devices", nargs="+", default=None,
                        help="default: cpu, and cuda when available")
    parser.add_argument("--tile", type=int, default=None,
                        help="tile size, full-res px (default: restore's, from the memory budget)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return

    devices = args.devices
    if devices is None:
        import torch

        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    w, h = args.size
    from burstjdd.hardware import describe_cpu

    print(f"restore of a {args.frames}-frame {w}x{h} burst ({w * h / 1e6:.1f} MP), tile "
          f"{args.tile or 'auto'} px, precision {args.precision}; "
          f"{describe_cpu(args.threads or None)}")
    print(f"{'preset':<9} {'device':<6} {'threads':>7} {'tile':>5} {'tiles':>6} {'seconds':>9} "
          f"{'s/MP':>7} {'peak RSS GiB':>12} {'RSS growth':>10} {'GPU GiB':>8}")
    for device in devices:
        for preset in args.presets:
            case = dict(preset=preset, device=device, width=w, height=h, frames=args.frames,
                        tile=args.tile, threads=args.threads, precision=args.precision)
            proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{preset:<9} {device:<6} failed: {proc.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            gpu = f"{r['gpu_gib']:.2f}" if r["gpu_gib"] is not None else "-"
            print(f"{preset:<9} {device:<6} {r['threads']:>7} {r['tile']:>5} {r['tiles']:>6} "
                  f"{r['seconds']:>9.1f} {r['seconds'] / (w * h / 1e6):>7.1f} "
                  f"{r['rss_gib']:>12.2f} {r['rss_growth_gib']:>10.2f} {gpu:>8}")


if __name__ == "__main__":
    main()
