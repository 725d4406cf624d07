"""``burstjdd bench``: parameters, FLOPs, time and memory of the network (paper Table 3).

Each (preset, size, stage) is measured in a fresh subprocess (its own peak memory); see
:mod:`burstjdd.eval.benchmark` for what is measured, the tiling and what the FLOP counter
misses. Before a measurement expected to take over a minute, a time estimate is printed
(scaled from a 256×256 calibration run of the same preset and stage).
"""

from __future__ import annotations

import argparse
import sys

NAME = "bench"
HELP = "parameters, FLOPs, time and memory of the network (paper Table 3)"
QUICK_SIZE = "256x256"
CALIBRATION = (256, 256)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", help="comma list of 720p, 1080p, uhd or WxH full-res "
                        "(default 720p,1080p,uhd)")
    parser.add_argument("--presets", default="paper,compact", help="comma list of presets")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per measurement; the median of runs 2.. is reported")
    parser.add_argument("--quick", action="store_true",
                        help=f"only a small burst ({QUICK_SIZE}), no calibration")
    parser.add_argument("--tile", type=int, default=128, help="tile side in packed px (x4)")
    parser.add_argument("--tile-batch", type=int, default=1, help="tiles per reconstruct call")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    parser.add_argument("--no-loop", action="store_true",
                        help="skip the vectorised vs per-candidate-loop CA comparison")


def _split(text: str) -> list[str]:
    return [t for t in (v.strip() for v in text.split(",")) if t]


def run(args: argparse.Namespace) -> int:
    import subprocess

    import torch

    from burstjdd.errors import ConfigError
    from burstjdd.eval import benchmark as bm
    from burstjdd.models.jddb import PRESETS

    if args.quick and args.sizes:
        raise ConfigError("--quick and --sizes exclude each other")
    sizes = [bm.parse_size(s) for s in _split(QUICK_SIZE if args.quick
                                              else args.sizes or "720p,1080p,uhd")]
    presets = _split(args.presets)
    for preset in presets:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    bm.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    def config(preset: str, size: tuple[int, int], stage: str, repeat: int) -> bm.BenchConfig:
        return bm.BenchConfig(preset, size, stage, repeat, args.tile, args.tile_batch,
                              args.threads, args.device)

    calibration: list[dict] = []
    rows: list[dict] = []
    for preset in presets:
        for stage in bm.STAGES:
            if not args.quick and max(w * h for w, h in sizes) > CALIBRATION[0] * CALIBRATION[1]:
                print(f"calibrating {preset} {stage} at 256x256 ...", file=sys.stderr, flush=True)
                calibration.append(bm.measure_in_subprocess(
                    config(preset, CALIBRATION, stage, 2), args.timeout))  # warm time
            for size in sizes:
                cfg = config(preset, size, stage, args.repeat)
                label = f"{preset} {size[0]}x{size[1]} {stage}"
                guess = bm.estimate_seconds(rows + calibration, cfg)
                note = "" if guess is None or guess < 60 else f" (estimated {guess / 60:.0f} min)"
                print(f"measuring {label}{note} ...", file=sys.stderr, flush=True)
                try:
                    rows.append(bm.measure_in_subprocess(cfg, args.timeout))
                except subprocess.TimeoutExpired:
                    print(f"  {label}: timed out after {args.timeout:.0f} s", file=sys.stderr)
                    continue
                r = rows[-1]
                print(f"  {r['time_s']:.2f} s, +{r['peak_mib']:.0f} MiB", file=sys.stderr)

    loops = []
    if not args.no_loop:
        for size in sizes:
            print(f"CA vectorised vs loop {size[0]}x{size[1]} ...", file=sys.stderr, flush=True)
            loops.append(bm.compare_ca(size, repeats=args.repeat, device=args.device))

    threads = args.threads or torch.get_num_threads()
    print(f"\n{args.device} float32 no_grad, {threads} threads, hard CA radius {bm.RADIUS_PX} "
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
