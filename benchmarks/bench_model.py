"""Model cost: forward time, peak memory, FLOPs per output pixel and parameters.

For each preset (`paper`, `compact`) and burst size (5 frames, full-res W×H), the inference
pipeline is split into its two stages and each stage is measured in a FRESH subprocess:

* CA = coarse alignment: DSNet on the 5 whole frames + progressive hard block matching
  (search radius 48 full-res px, stride 2 then ±2, propagation) + selection of the frame and
  noise-map patches (``TwoStageJDDB.coarse``, temperature None);
* RA+fusion = ``TwoStageJDDB.reconstruct``: features, PCD refined alignment, BiGRU fusion,
  2× up-conversion and UNet.

Tiling (what a restore does, without overlap): the packed frame (W/2 × H/2) is padded by
replication to a multiple of the tile T (default 128 packed px = 256 full-res px), the CA
aligns every T×T reference tile against the WHOLE frames (the search context), and the
reconstruct runs on the aligned tiles, ``--tile-batch`` tiles per call, so its memory is
bounded by the tile batch, not by the frame (5×720p: 360×640 packed → 384×640 → 15 tiles).
The RA+fusion subprocess feeds zero-offset tile crops: its cost does not depend on the
offsets, and this keeps the CA out of its memory measurement.

Measured, CPU, float32, torch.no_grad, eval mode:

* time: median wall time (time.perf_counter) of runs 2..R of ``--repeat`` R; with R = 1 the
  single run, which includes one-time warm-up costs (marked with *);
* peak memory: growth of the process's peak resident set (``resource.getrusage`` ru_maxrss)
  during the first run, in a fresh process per (preset, size, stage) after the model and the
  inputs exist. tracemalloc does not see torch's allocations and psutil is not installed.
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add) over one CA run and
  one 1-tile reconstruct (× number of tiles, exact since tiles are identical). It counts
  convolutions and matrix products only, so it leaves out: the NMA matching of the CA
  (|F_ref − F_t| sums over unfold views; given separately as an analytic estimate, 3 FLOPs per
  feature element per candidate), the bilinear corner gathers of the pure-PyTorch DCN (~4·9·C
  multiply-adds per packed pixel per DCN, against 9·C·C in its counted matmul), activations,
  attention products, GRU gates, pooling, interpolation and instance norm.
  FLOPs per output pixel divide by the real W·H (padding work included in the numerator).
* parameters: G (everything but the DSNet) and DSNet.

    python benchmarks/bench_model.py [--presets paper compact] [--sizes 256x256 1280x720]
                                     [--repeat 3] [--tile 128] [--tile-batch 1] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

N_FRAMES, REF = 5, 2
RADIUS_PX = 48                     # full-res search radius (REDS4 protocol)
SHOT, READ = 6.4e-3, 2e-2          # "high" noise


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' full-res (both even) -> (W, H)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WxH, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size {text!r}: W and H must be positive and even")
    return w, h


def tile_grid(h: int, w: int, tile: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Packed frame (h, w) -> padded (hp, wp) and the top-left corners of its T×T tiles."""
    hp, wp = h + (-h) % tile, w + (-w) % tile
    return hp, wp, [(r, c) for r in range(0, hp, tile) for c in range(0, wp, tile)]


# ------------------------------------------------------------------------------ worker


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(spec: dict) -> dict:
    """Measure one (preset, size, stage) in this (fresh) process; returns a JSON-able dict."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from burstjdd.models.jddb import build_model

    threads = spec["threads"] or torch.get_num_threads()
    torch.set_num_threads(1)       # orthogonal init (QR) thrashes with several threads
    model = build_model(spec["preset"], seed=0).eval()
    torch.set_num_threads(threads)
    width, height = spec["size"]
    tile, stage = spec["tile"], spec["stage"]
    h, w = height // 2, width // 2
    hp, wp, corners = tile_grid(h, w, tile)

    g = torch.Generator().manual_seed(0)
    frames = torch.rand(1, N_FRAMES, 4, h, w, generator=g)
    frames = torch.nn.functional.pad(frames[0], (0, wp - w, 0, hp - h), mode="replicate")[None]
    noise = (SHOT * frames + READ**2).sqrt()
    k = len(corners)
    origins = torch.tensor(corners)[None]                                 # (1, K, 2) packed

    if stage == "ca":
        def run_once():
            return model.coarse(frames, noise, REF, origins, tile, RADIUS_PX)
    else:
        crop = torch.stack([frames[0, :, :, r:r + tile, c:c + tile] for r, c in corners])
        crop_noise = torch.stack([noise[0, :, :, r:r + tile, c:c + tile] for r, c in corners])
        batch = spec["tile_batch"]                                        # (K, N, 4, T, T)

        def run_once():
            for i in range(0, k, batch):
                model.reconstruct(crop[i:i + batch], crop_noise[i:i + batch], REF)

    times = []
    with torch.no_grad():
        rss0 = _maxrss_mib()
        for _ in range(spec["repeat"]):
            t0 = time.perf_counter()
            out = run_once()
            times.append(time.perf_counter() - t0)
            if len(times) == 1:
                peak = _maxrss_mib() - rss0
        with FlopCounterMode(display=False) as counter:
            if stage == "ca":
                out = run_once()
            else:
                model.reconstruct(crop[:1], crop_noise[:1], REF)
        flops = counter.get_total_flops() * (1 if stage == "ca" else k)

    result = {**spec, "tiles": k, "padded": [wp * 2, hp * 2], "peak_mib": peak,
              "time_s": statistics.median(times[1:]) if len(times) > 1 else times[0],
              "warm": len(times) > 1, "flops": flops,
              "params_g": sum(p.numel() for p in model.g_parameters()),
              "params_dsnet": sum(p.numel() for p in model.dsnet_parameters())}
    if stage == "ca":
        # Candidates evaluated (stage 1 + stage 2, valid only) × C·p² × 3 (sub, abs, add).
        searched = int(out.stage1.valid.sum()) + (0 if out.stage2 is None
                                                    else int(out.stage2.valid.sum()))
        c = model.config.dsnet_width
        result["match_flops_est"] = 3 * searched * c * (tile // 4) ** 2
    return result


# ------------------------------------------------------------------------------ driver


def _fmt_flops(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f} "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["paper", "compact"])
    parser.add_argument("--sizes", nargs="+", type=parse_size,
                        default=[(256, 256), (1280, 720)], help="full-res WxH")
    parser.add_argument("--stages", nargs="+", default=["ca", "ra"], choices=["ca", "ra"])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (>= 1)")
    parser.add_argument("--tile", type=int, default=128, help="tile side in packed px (x4)")
    parser.add_argument("--tile-batch", type=int, default=1, help="tiles per reconstruct call")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.repeat < 1 or args.tile <= 0 or args.tile % 4 or args.tile_batch < 1:
        parser.error("--repeat >= 1, --tile a positive multiple of 4, --tile-batch >= 1")

    rows = []
    for preset in args.presets:
        for size in args.sizes:
            for stage in args.stages:
                spec = dict(preset=preset, size=size, stage=stage, repeat=args.repeat,
                            tile=args.tile, tile_batch=args.tile_batch, threads=args.threads)
                label = f"{preset} {size[0]}x{size[1]} {stage}"
                print(f"measuring {label} ...", file=sys.stderr, flush=True)
                try:
                    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                                          capture_output=True, text=True, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    print(f"  {label}: timed out after {args.timeout:.0f} s", file=sys.stderr)
                    continue
                if proc.returncode != 0:
                    print(f"  {label}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(f"  {r['time_s']:.2f} s, +{r['peak_mib']:.0f} MiB", file=sys.stderr)
    print_table(rows, args)
    return 0


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    import torch

    threads = args.threads or torch.get_num_threads()
    print(f"\nCPU float32 no_grad, {threads} threads, hard CA radius {RADIUS_PX} px, tiles "
          f"{args.tile} packed px ({args.tile_batch} per reconstruct call), 5 frames; "
          "time: median (* = single run incl. warm-up); mem: peak RSS growth")
    head = ["preset", "burst", "params G / DSNet", "stage", "tiles", "time s", "peak MiB",
            "FLOPs (counted)", "FLOP/px", "CA match est."]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        pixels = r["size"][0] * r["size"][1]
        stage = "CA" if r["stage"] == "ca" else "RA+fusion"
        match = _fmt_flops(r["match_flops_est"]) + "FLOP" if "match_flops_est" in r else ""
        print(f"| {r['preset']} | 5x{r['size'][0]}x{r['size'][1]} "
              f"| {r['params_g']:,} / {r['params_dsnet']:,} | {stage} | {r['tiles']} "
              f"| {r['time_s']:.2f}{'' if r['warm'] else '*'} | {r['peak_mib']:.0f} "
              f"| {_fmt_flops(r['flops'])}FLOP | {_fmt_flops(r['flops'] / pixels)}FLOP "
              f"| {match} |")


if __name__ == "__main__":
    sys.exit(main())
