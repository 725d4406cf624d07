"""``burstjdd bench``: parameters, FLOPs, time and memory of the network (paper Table 3).

Each (preset, size, stage) is measured in a fresh subprocess (its own peak memory); see
:mod:`burstjdd.eval.benchmark` for what is measured, the tiling and what the FLOP counter
misses. Before a measurement expected to take over a minute, a time estimate is printed
(scaled from a 256×256 calibration run of the same preset and stage).
"""

from __future__ import annotations

import argparse
import sys

from burstjdd.cli._args import DEVICES, add_precision, add_quiet, float_in, int_in
from burstjdd.models.registry import preset_names

NAME = "bench"
HELP = "parameters, FLOPs, time and memory of the network (paper Table 3)"
QUICK_SIZE = "256x256"
CALIBRATION = (256, 256)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", metavar="SIZES",
                        help="comma list of 720p, 1080p, uhd or WxH full-res "
                             "(default 720p,1080p,uhd)")
    presets = ",".join(preset_names())
    parser.add_argument("--presets", default=presets,
                        help=f"comma list of presets (default {presets})")
    parser.add_argument("--device", default="cpu", choices=DEVICES,
                        help="where to measure: cpu, cuda, or auto (CUDA when there is one, else "
                             "the CPU); mps is not measured (default cpu)")
    parser.add_argument("--repeat", type=int_in(1, 100), default=3, metavar="N",
                        help="runs per measurement, 1..100; the median of runs 2.. is reported "
                             "(default 3)")
    parser.add_argument("--quick", action="store_true",
                        help=f"only a small burst ({QUICK_SIZE}), no calibration")
    parser.add_argument("--tile", type=int_in(4, 2048, multiple=4), default=128, metavar="PX",
                        help="tile side in packed px, 4..2048 (x4 full-res px; default 128)")
    parser.add_argument("--tile-batch", type=int_in(1, 1024), default=1, metavar="N",
                        help="tiles per reconstruct call, 1..1024 (default 1)")
    parser.add_argument("--threads", type=int_in(0, 1024), default=0, metavar="N",
                        help="torch CPU threads, 0..1024 (default 0: torch's default)")
    parser.add_argument("--timeout", type=float_in(1), default=3600, metavar="S",
                        help="seconds per measurement (default 3600)")
    parser.add_argument("--no-loop", action="store_true",
                        help="skip the vectorised vs per-candidate-loop CA comparison")
    add_precision(parser)
    add_quiet(parser, "no progress lines on stderr (the tables still go to stdout)")


def _progress(quiet: bool):
    """A function printing one progress line on stderr, or doing nothing when ``quiet``."""
    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)
    return say


def _split(text: str) -> list[str]:
    return [t for t in (v.strip() for v in text.split(",")) if t]


def run(args: argparse.Namespace) -> int:
    import subprocess

    import torch

    from burstjdd.errors import ConfigError
    from burstjdd.eval import benchmark as bm
    from burstjdd.hardware import describe_cpu
    from burstjdd.restore import autocast_dtype

    if args.quick and args.sizes is not None:
        raise ConfigError("--quick and --sizes exclude each other")
    default = QUICK_SIZE if args.quick else "720p,1080p,uhd"
    sizes = [bm.parse_size(s) for s in _split(default if args.sizes is None else args.sizes)]
    if not sizes:
        raise ConfigError(f"--sizes {args.sizes!r} names no size: give a comma list of 720p, "
                          "1080p, uhd or WxH")
    presets, valid = _split(args.presets), preset_names()
    for preset in presets:
        if preset not in valid:
            raise ConfigError(f"unknown preset {preset!r}; valid: {', '.join(valid)}")
    if args.device == "mps":
        raise ConfigError("bench measures on cpu or cuda (its memory counters); not on mps")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    bm.bench_device(args.device)
    say = _progress(args.quiet)
    if args.threads:
        torch.set_num_threads(args.threads)

    def config(preset: str, size: tuple[int, int], stage: str, repeat: int) -> bm.BenchConfig:
        return bm.BenchConfig(preset, size, stage, repeat, args.tile, args.tile_batch,
                              args.threads, args.device, args.precision)

    calibration: list[dict] = []
    rows: list[dict] = []
    for preset in presets:
        for stage in bm.STAGES:
            if not args.quick and max(w * h for w, h in sizes) > CALIBRATION[0] * CALIBRATION[1]:
                say(f"calibrating {preset} {stage} at 256x256 ...")
                calibration.append(bm.measure_in_subprocess(
                    config(preset, CALIBRATION, stage, 2), args.timeout))  # warm time
            for size in sizes:
                cfg = config(preset, size, stage, args.repeat)
                label = f"{preset} {size[0]}x{size[1]} {stage}"
                guess = bm.estimate_seconds(rows + calibration, cfg)
                note = "" if guess is None or guess < 60 else f" (estimated {guess / 60:.0f} min)"
                say(f"measuring {label}{note} ...")
                try:
                    rows.append(bm.measure_in_subprocess(cfg, args.timeout))
                except subprocess.TimeoutExpired:
                    say(f"  {label}: timed out after {args.timeout:.0f} s")
                    continue
                r = rows[-1]
                say(f"  {r['time_s']:.2f} s, +{r['peak_mib']:.0f} MiB")

    loops = []
    if not args.no_loop:
        for size in sizes:
            say(f"CA vectorised vs loop {size[0]}x{size[1]} ...")
            loops.append(bm.compare_ca(size, repeats=args.repeat, device=args.device))

    threads = args.threads or torch.get_num_threads()
    half = autocast_dtype(args.precision, torch.device(args.device))
    where = describe_cpu(threads) if args.device == "cpu" else args.device
    print(f"\n{where}: reconstruction in {'float32' if half is None else half}, coarse alignment "
          f"in float32, no_grad, hard CA radius {bm.RADIUS_PX} "
          f"px, tiles {args.tile} packed px ({args.tile_batch} per reconstruct call), 5 frames; "
          "time: median (* = single run incl. warm-up); "
          + ("mem: peak allocated (CUDA)" if args.device == "cuda" else "mem: peak RSS growth"))
    print("\n".join(bm.table3(rows)))
    print()
    print("\n".join(bm.detail_table(rows)))
    if loops:
        print(f"\nCA vectorised vs per-candidate loop (DSNet + matching + selection, tiles 64 "
              f"packed px, {args.repeat} runs after a warm-up):")
        print("\n".join(bm.ca_table(loops)))
    print("\nFLOPs: convolutions and matmuls only (torch.utils.flop_counter); the CA matching "
          "is the separate estimate, DCN bilinear gathers, activations, norms and GRU gates "
          "are not counted.")
    return 0
