"""Model cost (paper Table 3): parameters, FLOPs, seconds and peak memory, CA vs RA+fusion,
and our vectorised coarse alignment against the per-candidate loop reference.

Inference is split into its two stages, each measured on a 5-frame burst of full-res W×H:

* CA = coarse alignment (``TwoStageJDDB.coarse``, hard): DSNet on the 5 whole frames +
  progressive block matching (radius 48 full-res px, stride 2 then ±2, propagation) +
  selection of the frame and noise-map patches;
* RA+fusion = ``TwoStageJDDB.reconstruct``: features, PCD refined alignment, BiGRU fusion,
  2× up-conversion and UNet.

Tiling (what a restore does, without overlap): the packed frame (W/2 × H/2) is padded by
replication to a multiple of the tile T (default 128 packed px = 256 full-res px); the CA aligns
every T×T reference tile against the WHOLE frames (the search context), and the reconstruct runs
on the aligned tiles, ``tile_batch`` tiles per call, so its memory is bounded by the tile batch,
not by the frame (5×720p: 360×640 packed → 384×640 → 15 tiles). The RA+fusion measurement feeds
zero-offset tile crops: its cost does not depend on the offsets, and this keeps the CA out of
its memory measurement.

Measured in eval mode, ``torch.no_grad``, the model channels-last on the CPU (as a
``Restorer`` runs it), the reconstruction in ``precision`` (auto: bf16 on CUDA and on CPUs that
compute it natively, else float32), the coarse alignment in float32:

* time: median wall time (``time.perf_counter``, CUDA synchronised) of runs 2..R of ``repeat``
  R; with R = 1 the single run, which includes one-time warm-up costs (``warm`` False);
* peak memory: on CPU the growth of the process's peak resident set (``ru_maxrss``) during the
  first run, meaningful in a FRESH process per (preset, size, stage) (:func:`measure_in_subprocess`;
  tracemalloc does not see torch's allocations, psutil is not a dependency); on CUDA
  ``torch.cuda.max_memory_allocated`` during the first run, minus what was allocated before;
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add) over one CA run and
  one 1-tile reconstruct on the meta device (× number of tiles, exact since tiles are
  identical). It counts
  convolutions and matrix products only, so it leaves out the NMA matching of the CA
  (|F_ref − F_t| sums over unfold views; given separately as ``match_flops_est``, 3 FLOPs per
  feature element per candidate evaluated), the bilinear corner gathers of the pure-PyTorch DCN
  (~4·9·C multiply-adds per packed pixel per DCN, against 9·C·C in its counted matmul),
  activations, attention products, GRU gates, pooling, interpolation and instance norm;
* parameters: G (everything but the DSNet) and DSNet.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.errors import ConfigError
from burstjdd.raw.cfa import LR_GRID
from burstjdd.raw.noise import PRESETS, noise_map
from burstjdd.restore import PRECISIONS, autocast_dtype, resolve_device

N_FRAMES, REF = 5, 2
RADIUS_PX = 48  # full-res search radius (REDS4 protocol)
HIGH = PRESETS["high"]  # the noise level of the measured bursts
BENCH_DEVICES = ("cpu", "cuda")  # the devices with a peak-memory counter (module docstring)
NAMED_SIZES: dict[str, tuple[int, int]] = {  # name -> full-res (W, H)
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "uhd": (3840, 2160),
}
STAGES = ("ca", "ra")
MAX_SIDE = 16384  # full-res px of a WxH size (268 MP; the 5-frame burst alone takes ~11 GB)


def parse_size(text: str) -> tuple[int, int]:
    """'720p' | '1080p' | 'uhd' | 'WxH' (full-res, both even, at most MAX_SIDE) -> (W, H)."""
    key = text.strip().lower()
    if key in NAMED_SIZES:
        return NAMED_SIZES[key]
    try:
        w, h = (int(v) for v in key.split("x"))
    except ValueError:
        raise ConfigError(
            f"size must be {', '.join(NAMED_SIZES)} or WxH, got {text!r}"
        ) from None
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE) or w % 2 or h % 2:
        raise ConfigError(f"size {text!r}: W and H must be even numbers in 2..{MAX_SIDE}")
    return w, h


@dataclass(frozen=True)
class BenchConfig:
    """One measurement: preset, full-res size (W, H), stage ("ca" | "ra"), runs, tile side T in
    packed px (multiple of 4), tiles per reconstruct call, torch CPU threads (0: default),
    device ("cpu" | "cuda"), precision of the reconstruction ("auto", "fp32", "bf16", "fp16":
    :func:`burstjdd.restore.autocast_dtype`; the coarse alignment is float32 always)."""

    preset: str
    size: tuple[int, int]
    stage: str
    repeat: int = 3
    tile: int = 128
    tile_batch: int = 1
    threads: int = 0
    device: str = "cpu"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.repeat < 1 or self.tile <= 0 or self.tile % 4 or self.tile_batch < 1:
            raise ConfigError("repeat >= 1, tile a positive multiple of 4, tile_batch >= 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")


def padded_tile_grid(h: int, w: int, tile: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Packed frame (h, w) -> padded (hp, wp) and the top-left corners of its T×T tiles.

    Not :func:`burstjdd.restore.tile_grid` on purpose: the benchmark measures whole,
    non-overlapping tiles over the frame padded up to a multiple of T (module docstring), while
    a restore spreads overlapping tiles over the frame padded only to the LR grid; their tile
    counts and padded sizes differ, and so would the measured cost.
    """
    hp, wp = h + (-h) % tile, w + (-w) % tile
    return hp, wp, [(r, c) for r in range(0, hp, tile) for c in range(0, wp, tile)]


def make_burst(width: int, height: int, tile: int, *, seed: int = 0) -> Tensor:
    """(1, N, 4, hp, wp) packed burst of a full-res width × height frame, padded by replication
    to multiples of ``tile``: smooth random texture (bicubic ×4 of uniform noise), frame t moved
    by (t − ref)·(1, −1) LR px (8 full-res px), plus Gaussian noise of std 0.02. Smooth texture
    and clear minima keep float near-ties (which the loop and vectorised CA may break
    differently) rare."""
    g = torch.Generator().manual_seed(seed)
    h, w = height // 2, width // 2
    lo = torch.rand(1, 4, h // 4 + 8, w // 4 + 8, generator=g)
    canvas = F.interpolate(lo, scale_factor=4, mode="bicubic", align_corners=False)[0]
    frames = []
    for t in range(N_FRAMES):
        dy, dx = 4 * (t - REF), -4 * (t - REF)  # packed px; roll wraps harmlessly at the border
        frames.append(torch.roll(canvas, (dy, dx), (-2, -1))[:, 8:8 + h, 8:8 + w])
    burst = torch.stack(frames)
    burst = burst + 0.02 * torch.randn(burst.shape, generator=g)
    hp, wp, _ = padded_tile_grid(h, w, tile)
    return F.pad(burst, (0, wp - w, 0, hp - h), mode="replicate")[None]


def high_noise_map(frames: Tensor) -> Tensor:
    """Noise map sqrt(shot·max(y, 0) + read²) of the "high" level, same shape as ``frames``:
    :func:`burstjdd.raw.noise.noise_map` of the frames clamped at 0.

    Differs from ``noise_map(frames, ...)`` on purpose: :func:`make_burst`'s Gaussian noise
    makes some y < 0, where the variance stays read² instead of shot·y + read² (floored at
    1e-12 below y = −read²/shot); the benchmark's inputs stay as they were measured.
    """
    return noise_map(frames.clamp_min(0), HIGH.shot, HIGH.read)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def bench_device(name: str) -> torch.device:
    """'cpu' | 'cuda' -> torch.device (:func:`burstjdd.restore.resolve_device`); ConfigError for
    any other name or when CUDA is asked for but absent.

    Narrower than resolve_device on purpose: the peak memory is only measured on these two
    (ru_maxrss, torch.cuda.max_memory_allocated), and a row names its device, so "auto", "mps"
    and "cuda:k" are refused.
    """
    if name not in BENCH_DEVICES:
        raise ConfigError(f"device must be cpu or cuda, got {name!r}")
    return resolve_device(name)


def reconstruct_flops(model: torch.nn.Module, tile: int, n_frames: int = N_FRAMES) -> int:
    """Counted FLOPs (FlopCounterMode) of ``model.reconstruct`` on one (1, N, 4, T, T) tile,
    run on a copy of the model on the meta device: shapes only, no arithmetic, any size."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    x = torch.empty(1, n_frames, 4, tile, tile, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta.reconstruct(x, x, n_frames // 2)
    return int(counter.get_total_flops())


def measure(config: BenchConfig) -> dict:
    """Measure one (preset, size, stage) in THIS process; returns a JSON-able row with
    preset, size, stage, device, threads, tiles, padded (full-res W, H), time_s, warm, peak_mib,
    flops (counted), params_g, params_dsnet and, for the CA, match_flops_est. See the module
    docstring for what each means; the CPU peak is only meaningful in a fresh process."""
    from torch.utils.flop_counter import FlopCounterMode

    from burstjdd.models.jddb import build_model

    device = bench_device(config.device)
    threads = config.threads or torch.get_num_threads()
    torch.set_num_threads(1)  # orthogonal init (QR) thrashes with several threads
    model = build_model(config.preset, seed=0).eval()
    torch.set_num_threads(threads)
    model = model.to(device)
    if device.type == "cpu":  # as a Restorer runs it
        model.to(memory_format=torch.channels_last)
    half = autocast_dtype(config.precision, device)
    width, height = config.size
    tile = config.tile
    h, w = height // 2, width // 2
    hp, wp, corners = padded_tile_grid(h, w, tile)
    frames = make_burst(width, height, tile).to(device)
    noise = high_noise_map(frames)
    k = len(corners)
    origins = torch.tensor(corners, device=device)[None]  # (1, K, 2) packed

    if config.stage == "ca":
        def run_once() -> object:
            return model.coarse(frames, noise, REF, origins, tile, RADIUS_PX)
    else:
        crop = torch.stack([frames[0, :, :, r:r + tile, c:c + tile] for r, c in corners])
        crop_noise = torch.stack([noise[0, :, :, r:r + tile, c:c + tile] for r, c in corners])

        def run_once() -> object:  # crop: (K, N, 4, T, T)
            with torch.autocast(device.type, dtype=half, enabled=half is not None):
                for i in range(0, k, config.tile_batch):
                    model.reconstruct(crop[i:i + config.tile_batch],
                                      crop_noise[i:i + config.tile_batch], REF)
            return None

    times: list[float] = []
    peak = 0.0
    with torch.no_grad():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        rss0 = _maxrss_mib()
        for _ in range(config.repeat):
            _sync(device)
            t0 = time.perf_counter()
            out = run_once()
            _sync(device)
            times.append(time.perf_counter() - t0)
            if len(times) == 1:
                peak = ((torch.cuda.max_memory_allocated(device) - base) / 2**20
                        if device.type == "cuda" else _maxrss_mib() - rss0)
        if config.stage == "ca":  # data-dependent (argmin, gathers): counted on the device
            with FlopCounterMode(display=False) as counter:
                run_once()
            flops = counter.get_total_flops()
        else:
            flops = reconstruct_flops(model, tile) * k

    row = {**dataclasses.asdict(config), "size": list(config.size), "threads": threads,
           "precision": "fp32" if half is None else str(half).removeprefix("torch."),
           "tiles": k, "padded": [wp * 2, hp * 2], "peak_mib": peak,
           "time_s": statistics.median(times[1:]) if len(times) > 1 else times[0],
           "warm": len(times) > 1, "flops": flops,
           "params_g": sum(p.numel() for p in model.g_parameters()),
           "params_dsnet": sum(p.numel() for p in model.dsnet_parameters())}
    if config.stage == "ca":
        # Candidates evaluated (stage 1 + stage 2, valid only) × C·p² × 3 (sub, abs, add).
        searched = int(out.stage1.valid.sum()) + (
            0 if out.stage2 is None else int(out.stage2.valid.sum()))
        row["match_flops_est"] = 3 * searched * model.config.dsnet_width * (tile // 4) ** 2
    return row


def measure_in_subprocess(config: BenchConfig, timeout: float | None = None) -> dict:
    """:func:`measure` in a fresh Python process (so ru_maxrss is this config's own peak).
    Raises ConfigError (one line) when the worker fails; subprocess.TimeoutExpired on timeout."""
    spec = json.dumps(dataclasses.asdict(config))
    proc = subprocess.run([sys.executable, "-m", "burstjdd.eval.benchmark", spec],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"benchmark worker {config.preset} {config.size} {config.stage} "
                          f"failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def estimate_seconds(rows: Sequence[dict], config: BenchConfig) -> float | None:
    """Rough seconds of ``config`` (all its runs) from the largest measured row of the same
    preset, stage and device, scaled by the padded pixel count (RA+fusion: tiles; CA: the DSNet
    and the per-tile search, whose candidates the fixed radius bounds). None without a row."""
    same = [r for r in rows if (r["preset"], r["stage"], r["device"]) ==
            (config.preset, config.stage, config.device)]
    if not same:
        return None
    ref = max(same, key=lambda r: r["padded"][0] * r["padded"][1])
    hp, wp, _ = padded_tile_grid(config.size[1] // 2, config.size[0] // 2, config.tile)
    ratio = (4 * hp * wp) / (ref["padded"][0] * ref["padded"][1])
    return ref["time_s"] * ratio * config.repeat


# ------------------------------------------------------------------------------ CA vs loop


def _dsnet_features(dsnet: torch.nn.Module, burst: Tensor) -> Tensor:
    """DSNet on all frames: (1, N, 4, h, w) → (1, N, C, h/4, w/4)."""
    return dsnet(burst.flatten(0, 1)).unflatten(0, burst.shape[:2])


def _timed(fns: Sequence[Callable[[], object]], repeats: int,
           device: torch.device) -> list[tuple[float, object]]:
    """Median seconds of ``repeats`` runs of each function after one warm-up each, runs
    interleaved (so a change of machine load hits all alike), and each one's last result."""
    results = [fn() for fn in fns]  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            results[i] = fn()
            _sync(device)
            times[i].append(time.perf_counter() - t0)
    return [(statistics.median(t), r) for t, r in zip(times, results)]


def compare_ca(size: tuple[int, int], *, tile: int = 64, repeats: int = 3,
               device: str = "cpu", seed: int = 0) -> dict:
    """Time the whole CA of one 5-frame burst of full-res ``size`` (W, H) with the vectorised
    DPBM (models.dpbm.coarse_align) and the per-candidate loop reference
    (models.dpbm_loop.coarse_align_loop) on the same input (:func:`make_burst`, randomly
    initialised DSNet): radius 48 full-res px, stride 2 then ±2, propagation, T×T packed tiles
    covering the padded frame. The DSNet part, shared, is timed once and added to both.
    Returns a row: size, padded, tiles, dsnet_s, match_s / loop_match_s, ca_s / loop_ca_s,
    speedup (whole CA), match_speedup, offsets (K·N) and offsets_differ (count; float32
    near-ties may break differently, reported not hidden), plus the two offset tensors
    under "offsets_vec" / "offsets_loop" (1, K, N, 2) for checks."""
    from burstjdd.models.dpbm import coarse_align
    from burstjdd.models.dpbm_loop import coarse_align_loop
    from burstjdd.models.dsnet import DSNet

    dev = bench_device(device)
    dsnet = DSNet(generator=torch.Generator().manual_seed(seed)).to(dev).eval()
    burst = make_burst(*size, tile, seed=seed).to(dev)
    noise = high_noise_map(burst)
    p = tile // 4
    with torch.no_grad():
        feats = _dsnet_features(dsnet, burst)
        hl, wl = feats.shape[-2:]
        origins = torch.tensor([[y, x] for y in range(0, hl, p) for x in range(0, wl, p)],
                               device=dev)[None]
        radius_lr = math.ceil(RADIUS_PX / LR_GRID)

        def match(align: Callable) -> Tensor:
            return align(feats, burst, noise, REF, origins, p, radius_lr, stride=2).offsets_lr

        (net_s, _), (fast_s, fast), (slow_s, slow) = _timed(
            [lambda: _dsnet_features(dsnet, burst), lambda: match(coarse_align),
             lambda: match(coarse_align_loop)], repeats, dev)
    same = (fast.cpu() == slow.cpu()).all(-1)
    return {"size": list(size), "device": device, "padded": [burst.shape[-1] * 2,
                                                             burst.shape[-2] * 2],
            "tiles": origins.shape[1], "dsnet_s": net_s, "match_s": fast_s,
            "loop_match_s": slow_s, "ca_s": net_s + fast_s, "loop_ca_s": net_s + slow_s,
            "speedup": (net_s + slow_s) / (net_s + fast_s), "match_speedup": slow_s / fast_s,
            "offsets": same.numel(), "offsets_differ": int((~same).sum()),
            "offsets_vec": fast.cpu(), "offsets_loop": slow.cpu()}


# ------------------------------------------------------------------------------ tables


def fmt_flops(x: float) -> str:
    """1.23e9 -> '1.23 G' (SI prefix, 2 decimals)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f} "


def _size_label(size: Sequence[int]) -> str:
    named = {v: k for k, v in NAMED_SIZES.items()}
    return named.get(tuple(size), f"{size[0]}x{size[1]}")


def detail_table(rows: Sequence[dict]) -> list[str]:
    """Markdown lines: one row per (preset, size, stage) measurement."""
    head = ["preset", "burst", "params G / DSNet", "stage", "tiles", "time s", "peak MiB",
            "FLOPs (counted)", "FLOP/px", "CA match est."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        pixels = r["size"][0] * r["size"][1]
        match = fmt_flops(r["match_flops_est"]) + "FLOP" if "match_flops_est" in r else ""
        lines.append(
            f"| {r['preset']} | 5x{r['size'][0]}x{r['size'][1]} "
            f"| {r['params_g']:,} / {r['params_dsnet']:,} "
            f"| {'CA' if r['stage'] == 'ca' else 'RA+fusion'} | {r['tiles']} "
            f"| {r['time_s']:.2f}{'' if r['warm'] else '*'} | {r['peak_mib']:.0f} "
            f"| {fmt_flops(r['flops'])}FLOP | {fmt_flops(r['flops'] / pixels)}FLOP | {match} |")
    return lines


def table3(rows: Sequence[dict]) -> list[str]:
    """Markdown lines in the paper's Table 3 layout: one line per preset, parameters, then for
    each size the seconds "total (CA + RA+fusion)" and the peak memory of the larger stage."""
    sizes = list(dict.fromkeys(tuple(r["size"]) for r in rows))
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    head = ["preset", "params"] + [f"5×{_size_label(s)} s (CA + RA)" for s in sizes] + \
           [f"5×{_size_label(s)} peak MiB" for s in sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for preset in presets:
        mine = [r for r in rows if r["preset"] == preset]
        params = mine[0]["params_g"] + mine[0]["params_dsnet"]
        times, peaks = [], []
        for s in sizes:
            by_stage = {r["stage"]: r for r in mine if tuple(r["size"]) == s}
            ca, ra = by_stage.get("ca"), by_stage.get("ra")
            if ca and ra:
                times.append(f"{ca['time_s'] + ra['time_s']:.2f} "
                             f"({ca['time_s']:.2f} + {ra['time_s']:.2f})")
            else:
                times.append("–")
            peaks.append(f"{max(r['peak_mib'] for r in by_stage.values()):.0f}"
                         if by_stage else "–")
        lines.append(f"| {preset} | {params / 1e6:.2f}M | " + " | ".join(times + peaks) + " |")
    return lines


def ca_table(rows: Sequence[dict]) -> list[str]:
    """Markdown lines: vectorised CA against the per-candidate loop, one line per size."""
    lines = ["| full-res | padded | tiles | DSNet ms | matching ms vec / loop | "
             "CA ms vec / loop | CA speed-up | matching speed-up | offsets differ |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['size'][0]}×{r['size'][1]} | {r['padded'][0]}×{r['padded'][1]} "
            f"| {r['tiles']} | {1e3 * r['dsnet_s']:.0f} "
            f"| {1e3 * r['match_s']:.0f} / {1e3 * r['loop_match_s']:.0f} "
            f"| {1e3 * r['ca_s']:.0f} / {1e3 * r['loop_ca_s']:.0f} | {r['speedup']:.1f}× "
            f"| {r['match_speedup']:.1f}× | {r['offsets_differ']}/{r['offsets']} |")
    return lines


if __name__ == "__main__":  # worker of measure_in_subprocess: one JSON config in, one row out
    spec = json.loads(sys.argv[1])
    spec["size"] = tuple(spec["size"])
    print(json.dumps(measure(BenchConfig(**spec))))
