"""The GPU leg in one process: smoke test, benchmarks, throughput, time-budgeted training,
export; every figure in one JSON. Started by ``benchmarks/gpu_leg.sh`` (docs/gpu.md).

    python benchmarks/gpu_leg.py PRESET BUDGET_S [INIT_WEIGHTS] --out DIR

Phases (each timed, each logged; the JSON is rewritten after every phase so that a kill at
the command's limit still leaves the figures so far):

1. ``env``: Python, torch, CUDA, cuDNN, torchvision, the GPU, ``nvidia-smi``.
2. ``smoke``: every CUDA path on a small input, stopping the leg at the first failure: a bf16
   training step (forward, backward, update; soft coarse alignment, L_BM guide, interpolation
   branch) and a bf16 validation of ``paper`` and ``compact``; torchvision's deformable
   convolution against ours (outputs and gradients); the vectorised coarse alignment against the
   per-candidate loop (identical offsets); device synthesis against the per-sample path.
   Items that need CUDA or torchvision are reported as skipped where those are missing.
3. ``bench``: ``paper`` and ``compact`` in bf16 (autocast), inference as restore tiles it:
   seconds of the coarse alignment (CA) and of RA+fusion, their sum, the CA share, peak device
   memory; and the vectorised CA's speed-up over the per-candidate loop.
4. ``throughput``: samples/s of the loader, of device synthesis and of training steps (plain and
   channels_last): picks ``run.synthesis`` and ``run.channels_last`` for the training.
5. ``train``: ``configs/gpu_leg.yaml`` with PRESET, the data pack, the measured switches and a
   time budget of min(BUDGET_S, what the leg's deadline leaves); from INIT_WEIGHTS (default: the
   shipped weights of PRESET when their architecture matches, else from scratch).
6. ``export``: float16 weights, ``model.safetensors`` split into files of at most 15 MiB, to
   ``DIR/weights``; loaded back (parts joined, sha256 checked) and checked finite.

``DIR`` ends up with ``leg.log`` (written by the shell script: everything printed, the run's
train.log appended at the end), ``leg.json``, ``scalars.csv`` and ``weights/``: at most 8 files,
at most 2 folders deep (the lent machine's limits on what comes back; checked at the end).

Sizes shrink on a CPU (no CUDA): that is how tests/test_gpu_leg.py runs the whole leg. Every
``LEG_*`` environment variable is read by :func:`settings` (see its table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch

MIB = 2**20
PART_BYTES = 15 * MIB
OUT_LIMITS = {"files": 8, "file_bytes": 16 * MIB, "total_bytes": 64 * MIB, "depth": 2}
_NAME = re.compile(r"[A-Za-z0-9._-]+")


# ------------------------------------------------------------------------------ settings


def settings(device: torch.device) -> dict[str, Any]:
    """The leg's knobs: LEG_* environment variables, defaults by device (GPU | CPU).

    LEG_PACK (.pack) data pack; LEG_DEADLINE_S (570 | 600) seconds after LEG_T0 (the shell's
    start, epoch seconds) by which the leg must be done; LEG_EXPORT_RESERVE_S (25 | 10);
    LEG_SMOKE_CROP (64 | 32), LEG_SMOKE_RADIUS (32 | 8), LEG_SMOKE_FRAMES (5 | 3),
    LEG_SMOKE_CA (256x256 | 128x128); LEG_BENCH_SIZES (1280x720,3840x2160 | 128x128),
    LEG_BENCH_PRESETS (paper,compact), LEG_BENCH_REPEAT (3 | 1), LEG_TILE_BATCH (4 | 1),
    LEG_BENCH_MAX_S (150 | 120) time after which the remaining bench items are skipped,
    LEG_CA_SIZE (1280x720 | 128x128) of the loop comparison; LEG_TP_SAMPLES (192 | 8),
    LEG_TP_STEPS (10 | 2), LEG_TP_MAX_S (60 | 60), LEG_WORKERS (cpu_count − 4 | 2);
    LEG_SYNTH (auto | loader | device), LEG_CHANNELS_LAST (auto | 0 | 1), LEG_COMPILE (0 | 1:
    also time a torch.compile variant and allow choosing it); LEG_OVERRIDES ("key=value ..."
    training config overrides, applied last); LEG_SKIP (comma list of bench, throughput);
    LEG_PART_MIB (15) largest file of the exported weights.
    """
    gpu = device.type == "cuda"
    env = os.environ.get

    def pick(name: str, on_gpu: str, on_cpu: str) -> str:
        return env(name, on_gpu if gpu else on_cpu)

    cpus = os.cpu_count() or 1
    return {
        "pack": Path(env("LEG_PACK", str(ROOT / ".pack"))),
        "t0": float(env("LEG_T0", str(time.time()))),
        "deadline_s": float(pick("LEG_DEADLINE_S", "570", "600")),
        "export_reserve_s": float(pick("LEG_EXPORT_RESERVE_S", "25", "10")),
        "smoke_crop": int(pick("LEG_SMOKE_CROP", "64", "32")),
        "smoke_radius": int(pick("LEG_SMOKE_RADIUS", "32", "8")),
        "smoke_frames": int(pick("LEG_SMOKE_FRAMES", "5", "3")),
        "smoke_ca": pick("LEG_SMOKE_CA", "256x256", "128x128"),
        "bench_sizes": [s for s in pick("LEG_BENCH_SIZES", "1280x720,3840x2160",
                                        "128x128").split(",") if s],
        "bench_presets": [s for s in env("LEG_BENCH_PRESETS", "paper,compact").split(",") if s],
        "bench_repeat": int(pick("LEG_BENCH_REPEAT", "3", "1")),
        "tile_batch": int(pick("LEG_TILE_BATCH", "4", "1")),
        "bench_max_s": float(pick("LEG_BENCH_MAX_S", "150", "120")),
        "ca_size": pick("LEG_CA_SIZE", "1280x720", "128x128"),
        "tp_samples": int(pick("LEG_TP_SAMPLES", "192", "8")),
        "tp_steps": int(pick("LEG_TP_STEPS", "10", "2")),
        "tp_max_s": float(pick("LEG_TP_MAX_S", "60", "60")),
        "workers": int(pick("LEG_WORKERS", str(max(cpus - 4, 2)), "2")),
        "synth": env("LEG_SYNTH", "auto"),
        "channels_last": env("LEG_CHANNELS_LAST", "auto"),
        "compile": env("LEG_COMPILE", "0") == "1",
        "overrides": env("LEG_OVERRIDES", "").split(),
        "skip": {s for s in env("LEG_SKIP", "").split(",") if s},
        "part_bytes": int(float(env("LEG_PART_MIB", "15")) * MIB),
    }


# ------------------------------------------------------------------------------ record


class Leg:
    """The figures of the leg (written to ``out/leg.json`` after every phase) and its clock."""

    def __init__(self, out: Path, t0: float, deadline_s: float):
        self.out, self.t0, self.deadline_s = out, t0, deadline_s
        self.data: dict[str, Any] = {"phases": {}}

    def now(self) -> float:
        """Seconds since the shell script started."""
        return time.time() - self.t0

    def left(self) -> float:
        return self.deadline_s - self.now()

    def save(self) -> None:
        tmp = self.out / ".leg.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=2, default=_json_default) + "\n")
        os.replace(tmp, self.out / "leg.json")

    def phase(self, name: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Run one phase: timed, its result (or its error) recorded and saved."""
        print(f"\n=== {name} ({self.now():.0f} s into the leg, {self.left():.0f} s left)",
              flush=True)
        t = time.perf_counter()
        try:
            result, ok = fn(), True
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, the leg goes on
            traceback.print_exc()
            result, ok = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}, False
        seconds = time.perf_counter() - t
        self.data["phases"][name] = {"ok": ok, "seconds": round(seconds, 2)}
        if result is not None:
            self.data[name] = result
        self.save()
        print(f"=== {name}: {'ok' if ok else 'FAILED'} in {seconds:.1f} s", flush=True)
        return ok, result


def _json_default(value: Any) -> Any:
    if isinstance(value, (torch.Tensor,)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------ 1. env


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device), "cpu_count": os.cpu_count(),
    }
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except Exception as exc:  # noqa: BLE001
        info["torchvision"] = f"unavailable ({type(exc).__name__})"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count,
                    capability=f"{props.major}.{props.minor}",
                    bf16=torch.cuda.is_bf16_supported())
    try:  # DataLoader workers hand batches over in shared memory
        info["dev_shm_gib"] = round(shutil.disk_usage("/dev/shm").total / 2**30, 2)
    except OSError:
        info["dev_shm_gib"] = None
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            info["nvidia_smi"] = subprocess.run([smi], capture_output=True, text=True,
                                                timeout=30, check=False).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_smi"] = f"failed: {exc}"
    else:
        info["nvidia_smi"] = "not found"
    for key, value in info.items():
        if key != "nvidia_smi":
            print(f"{key}: {value}")
    print(info["nvidia_smi"])
    return info


# ------------------------------------------------------------------------------ 2. smoke


def _small_config(preset: str, s: dict, device: torch.device, pack_paths: list[str]):
    from burstjdd.train.config import TrainConfig, apply_overrides

    return apply_overrides(TrainConfig(), [
        f"model.preset={preset}", f"data.crop={s['smoke_crop']}",
        f"data.search_radius={s['smoke_radius']}", f"data.frames={s['smoke_frames']}",
        "data.workers=0", "optim.batch_size=2", "schedule.total_steps=100",
        f"run.device={device}", "run.precision=bf16", f"data.paths={json.dumps(pack_paths)}"])


def _finite_grads(model: torch.nn.Module) -> tuple[int, int]:
    """(parameters with a finite non-zero gradient, trainable parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    good = sum(1 for p in params if p.grad is not None and torch.isfinite(p.grad).all()
               and bool(p.grad.abs().sum() > 0))
    return good, len(params)


def smoke_train_step(preset: str, s: dict, device: torch.device, pack_paths: list[str]) -> str:
    from torch.utils.data import default_collate

    from burstjdd.train.loop import (
        build_training_dataset,
        make_train_state,
        resolve_runtime,
        train_step,
        validation_psnr,
    )

    cfg = _small_config(preset, s, device, pack_paths)
    rt = resolve_runtime(cfg)
    ds = build_training_dataset(cfg)
    batch = default_collate([ds[i] for i in range(2)])
    state = make_train_state(cfg, rt.device)
    state.model.train()
    before = [p.detach().clone() for p in state.model.parameters() if p.requires_grad]
    # two updates: the DCN offset branches get their first gradient in the second one (their
    # output conv starts at zero)
    for _ in range(2):
        report = train_step(state.model, state, batch, cfg, rt)
        if not math.isfinite(report["total"]):
            raise RuntimeError(f"non-finite loss {report}")
    good, total = _finite_grads(state.model)
    after = [p for p in state.model.parameters() if p.requires_grad]
    moved = sum(1 for a, b in zip(before, after) if not torch.equal(a, b))
    if good < total or moved < total:
        raise RuntimeError(f"{good}/{total} parameters got a finite non-zero gradient, "
                           f"{moved}/{total} moved")
    psnr = validation_psnr(state.model, [batch], cfg, rt)
    if not math.isfinite(psnr):
        raise RuntimeError(f"validation PSNR {psnr}")
    return (f"loss {report['total']:.4g} ({'bf16' if rt.amp_dtype else 'fp32'}), "
            f"{good}/{total} grads finite, {moved}/{total} updated, eval PSNR {psnr:.2f} dB")


def smoke_dcn(device: torch.device) -> str:
    from burstjdd.models.deform import deform_conv2d, torchvision_available

    if not torchvision_available(device.type):
        raise SkipItem(f"torchvision.ops.deform_conv2d does not run on {device.type}")
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # true fp32
    try:
        return _compare_dcn(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def _compare_dcn(device: torch.device) -> str:
    from burstjdd.models.deform import deform_conv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 24, 20, generator=g)
    offset = 3 * torch.randn(2, 2 * 4 * 9, 24, 20, generator=g)
    mask = torch.rand(2, 4 * 9, 24, 20, generator=g)
    weight = torch.randn(8, 16, 3, 3, generator=g) / 12
    bias = torch.randn(8, generator=g)
    results = {}
    for backend in ("torchvision", "torch"):
        args = [t.to(device).requires_grad_(True) for t in (x, offset, weight, bias, mask)]
        out = deform_conv2d(*args[:4], args[4], padding=1, backend=backend)
        (out * torch.linspace(-1, 1, out.numel(), device=device).view_as(out)).sum().backward()
        results[backend] = [out.detach().cpu()] + [a.grad.cpu() for a in args]
    names = ("output", "grad x", "grad offset", "grad weight", "grad bias", "grad mask")
    worst = []
    for name, a, b in zip(names, results["torchvision"], results["torch"]):
        rel = float((a - b).norm() / b.norm().clamp_min(1e-12))
        worst.append(f"{name} {rel:.1e}")
        if not rel < 1e-4:
            raise RuntimeError(f"torchvision vs torch DCN: {name} relative error {rel:.2e}")
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = deform_conv2d(x.to(device), offset.to(device), weight.to(device),
                            bias.to(device), mask.to(device), padding=1, backend="torchvision")
    if not torch.isfinite(out).all():
        raise RuntimeError("torchvision DCN under bf16 autocast gave non-finite values")
    return "relative errors: " + ", ".join(worst)


def smoke_ca(s: dict, device: torch.device) -> str:
    from burstjdd.eval.benchmark import compare_ca, parse_size

    row = compare_ca(parse_size(s["smoke_ca"]), repeats=1, device=device.type)
    if row["offsets_differ"]:
        raise RuntimeError(f"{row['offsets_differ']} of {row['offsets']} coarse offsets differ "
                           f"between the vectorised CA and the per-candidate loop")
    return (f"{row['offsets']} offsets identical, {s['smoke_ca']}, speed-up "
            f"{row['speedup']:.1f}x")


def smoke_synthesis(s: dict, device: torch.device, pack_paths: list[str]) -> str:
    from torch.utils.data import default_collate

    from burstjdd.synth.gpu import DeviceSynthesis
    from burstjdd.train.loop import build_training_dataset

    cfg = _small_config("compact", s, device, pack_paths)
    ds = build_training_dataset(cfg)
    synth = DeviceSynthesis(ds, device)
    indices = list(range(6))
    fast = synth.render(default_collate([synth.plans[i] for i in indices]))
    ref = default_collate([ds[i] for i in indices])
    diff = float((fast["clean"].cpu() - ref["clean"]).abs().max())
    if not diff < 1e-3 or set(fast) != set(ref):
        raise RuntimeError(f"device synthesis differs from the per-sample path: clean max "
                           f"|diff| {diff:.2e}, keys {sorted(set(fast) ^ set(ref))}")
    if fast["frames"].device.type != device.type:
        raise RuntimeError(f"device synthesis left its output on {fast['frames'].device}")
    return f"clean frames max |diff| {diff:.1e} against the per-sample path; {synth.summary()}"


class SkipItem(Exception):
    """A smoke item that does not apply here (no CUDA, no torchvision)."""


def smoke(s: dict, device: torch.device, pack_paths: list[str]) -> list[dict]:
    items: list[tuple[str, Callable[[], str]]] = [
        ("cuda", lambda: _smoke_cuda(device)),
        ("train_step_bf16_paper", lambda: smoke_train_step("paper", s, device, pack_paths)),
        ("train_step_bf16_compact", lambda: smoke_train_step("compact", s, device, pack_paths)),
        ("dcn_torchvision_vs_torch", lambda: smoke_dcn(device)),
        ("ca_vectorised_vs_loop", lambda: smoke_ca(s, device)),
        ("device_synthesis", lambda: smoke_synthesis(s, device, pack_paths)),
    ]
    rows = []
    for name, fn in items:
        t = time.perf_counter()
        try:
            detail, status = fn(), "ok"
        except SkipItem as exc:
            detail, status = str(exc), "skipped"
        except Exception as exc:  # noqa: BLE001 - reported, then the leg stops
            traceback.print_exc()
            detail, status = f"{type(exc).__name__}: {' '.join(str(exc).split())}", "FAILED"
        _sync(device)
        rows.append({"name": name, "status": status, "seconds": round(time.perf_counter() - t, 2),
                     "detail": detail})
        print(f"smoke {name}: {status} ({rows[-1]['seconds']:.1f} s) {detail}", flush=True)
        if status == "FAILED":
            break
    return rows


def _smoke_cuda(device: torch.device) -> str:
    if device.type != "cuda":
        raise SkipItem("no CUDA: the leg runs on the CPU")
    a = torch.randn(1024, 1024, device=device, dtype=torch.bfloat16)
    b = (a @ a.T).float()
    ref = a.float() @ a.float().T
    rel = float((b - ref).norm() / ref.norm())
    if not rel < 1e-2:
        raise RuntimeError(f"bf16 matmul relative error {rel:.2e}")
    return f"{torch.cuda.get_device_name(device)}, bf16 matmul relative error {rel:.1e}"


# ------------------------------------------------------------------------------ 3. bench


def bench(s: dict, device: torch.device, leg: Leg) -> dict:
    from burstjdd.eval import benchmark as bm

    rows, skipped = [], []
    start = time.perf_counter()
    for preset in s["bench_presets"]:
        for size_text in s["bench_sizes"]:
            size = bm.parse_size(size_text)
            if time.perf_counter() - start > s["bench_max_s"]:
                skipped.append(f"{preset} {size_text}: bench time used up")
                continue
            stages = {}
            for stage in bm.STAGES:
                cfg = bm.BenchConfig(preset, size, stage, repeat=s["bench_repeat"], tile=128,
                                     tile_batch=s["tile_batch"], device=device.type)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    stages[stage] = bm.measure(cfg)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            ca, ra = stages["ca"], stages["ra"]
            total = ca["time_s"] + ra["time_s"]
            row = {"preset": preset, "size": list(size), "tiles": ca["tiles"],
                   "ca_s": ca["time_s"], "ra_s": ra["time_s"], "total_s": total,
                   "ca_share": ca["time_s"] / total,
                   "peak_mib": max(ca["peak_mib"], ra["peak_mib"]),
                   "peak_kind": ("CUDA max_memory_allocated" if device.type == "cuda" else
                                 "CPU RSS growth in one process (not meaningful)"),
                   "ca_peak_mib": ca["peak_mib"], "ra_peak_mib": ra["peak_mib"],
                   "flops": ca["flops"] + ra["flops"], "params_g": ca["params_g"],
                   "params_dsnet": ca["params_dsnet"], "warm": ca["warm"] and ra["warm"],
                   "precision": "bf16 autocast", "tile_batch": s["tile_batch"]}
            rows.append(row)
            print(f"bench {preset} 5x{size[0]}x{size[1]}: {total:.3f} s (CA {ca['time_s']:.3f} + "
                  f"RA {ra['time_s']:.3f}, CA share {row['ca_share']:.0%}), peak "
                  f"{row['peak_mib']:.0f} MiB", flush=True)
            leg.data["bench"] = {"rows": rows, "skipped": skipped}
            leg.save()
    ca_row = None
    if time.perf_counter() - start <= s["bench_max_s"]:
        ca_row = bm.compare_ca(bm.parse_size(s["ca_size"]), repeats=max(s["bench_repeat"] - 1, 1),
                               device=device.type)
        ca_row = {k: v for k, v in ca_row.items() if k not in ("offsets_vec", "offsets_loop")}
        print(f"CA vectorised vs loop {s['ca_size']} ({device.type}, fp32): speed-up "
              f"{ca_row['speedup']:.1f}x (matching {ca_row['match_speedup']:.1f}x), "
              f"{1e3 * ca_row['ca_s']:.0f} ms vs {1e3 * ca_row['loop_ca_s']:.0f} ms", flush=True)
    else:
        skipped.append("CA vs loop: bench time used up")
    return {"rows": rows, "ca_vs_loop": ca_row, "skipped": skipped}


# ------------------------------------------------------------------------------ 4-6. train


def train_config(preset: str, budget_s: float, s: dict, device: torch.device,
                 pack: Path, init: str | None, choice: dict):
    from make_data_pack import pack_paths

    from burstjdd.train.config import apply_overrides, load_config

    overrides = [
        f"model.preset={preset}", f"model.init_from={json.dumps(init)}",
        f"data.paths={json.dumps(pack_paths(pack, 'train_paths'))}",
        f"data.val_paths={json.dumps(pack_paths(pack, 'val_paths'))}",
        f"data.workers={s['workers'] if choice['synthesis'] == 'loader' else min(s['workers'], 4)}",
        f"run.time_budget_s={budget_s}", f"run.device={device}",
        f"run.synthesis={choice['synthesis']}",
        f"run.channels_last={json.dumps(choice['variant'] == 'channels_last')}",
        f"run.compile={json.dumps(choice['variant'] == 'compile')}",
    ]
    return apply_overrides(load_config(ROOT / "configs" / "gpu_leg.yaml", overrides),
                           s["overrides"])


def resolve_init(preset: str, explicit: str | None) -> tuple[str | None, str]:
    """(weights directory or None, why): an explicit INIT_WEIGHTS must load (WeightsError
    otherwise, before anything runs); by default the shipped weights of PRESET."""
    from burstjdd.models import hub

    if explicit:
        path = hub.resolve_weights(explicit)
        hub.load_pretrained(path)  # fail now, not after the benchmarks
        return str(path), f"INIT_WEIGHTS {explicit}"
    if preset in hub.shipped_weights():
        return str(hub.resolve_weights(preset)), f"shipped weights '{preset}'"
    return None, f"no shipped weights named '{preset}': from scratch"


def throughput(cfg, s: dict, device: torch.device) -> dict:
    import train_speed

    out: dict[str, Any] = {}
    loader_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, workers=s["workers"]))
    # each data path on its own: one that fails (say, worker processes out of shared memory)
    # is reported and not chosen
    try:
        out["loader"] = train_speed.loader_rate(loader_cfg, s["tp_samples"], s["workers"],
                                                s["tp_max_s"] / 3)
        print(f"loader ({s['workers']} workers): {out['loader']['samples_per_s']:.1f} "
              f"samples/s", flush=True)
    except Exception as exc:  # reported, not chosen
        traceback.print_exc()
        out["loader"] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    try:
        out["synth"] = train_speed.synth_rate(cfg, device, s["tp_samples"],
                                              min(s["workers"], 4), s["tp_max_s"] / 3)
        print(f"device synthesis: {out['synth']['samples_per_s']:.1f} samples/s (cache "
              f"{out['synth']['cache_s']:.1f} s, {out['synth']['cache_mib']:.0f} MiB)",
              flush=True)
    except Exception as exc:  # reported, not chosen
        traceback.print_exc()
        out["synth"] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    variants = ["base", "channels_last"] + (["compile"] if s["compile"] else [])
    out["steps"] = {}
    for variant in variants:
        try:
            out["steps"][variant] = train_speed.step_rate(cfg, s["tp_steps"], variant)
        except Exception as exc:  # a switch that breaks is not chosen
            traceback.print_exc()
            out["steps"][variant] = {"error": f"{type(exc).__name__}: {exc}"}
            if variant == "base":
                raise
        r = out["steps"][variant]
        if "error" not in r:
            print(f"steps [{variant}]: {r['samples_per_s']:.1f} samples/s ({r['step_s']:.3f} "
                  f"s/step, {r['precision']}, peak {r['peak_mib']:.0f} MiB)", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ok = {k: v["samples_per_s"] for k, v in out["steps"].items() if "error" not in v}
    out["choice"] = train_speed.choose(out["loader"].get("samples_per_s"),
                                       out["synth"].get("samples_per_s"), ok)
    return out


def decide(s: dict, measured: dict | None, device_type: str = "cpu") -> dict:
    """Synthesis and variant for the training: the measured choice, unless LEG_SYNTH /
    LEG_CHANNELS_LAST say otherwise. Without measurements: device synthesis on a GPU (no
    decoding, no shared memory between processes, checked by the smoke test), else the
    loader."""
    fallback = {"synthesis": "device" if device_type == "cuda" else "loader", "variant": "base"}
    choice = dict((measured or {}).get("choice") or fallback)
    if s["synth"] in ("loader", "device"):
        choice["synthesis"] = s["synth"]
    if s["channels_last"] in ("0", "1"):
        if s["channels_last"] == "1":
            choice["variant"] = "channels_last"
        elif choice["variant"] == "channels_last":
            choice["variant"] = "base"
    if choice["variant"] == "compile" and not s["compile"]:
        choice["variant"] = "base"
    return choice


def run_training(cfg, out: Path) -> dict:
    from burstjdd.train.checkpoint import read_run_info
    from burstjdd.train.config import config_to_dict, load_config
    from burstjdd.train.loop import train

    run_dir = Path(cfg.run.out_dir)
    result = train(cfg, run_dir, progress=False, echo=True)
    info = read_run_info(run_dir)
    shutil.copy(run_dir / "scalars.csv", out / "scalars.csv")
    saved = load_config(run_dir / "config.yaml")  # the fixed schedule
    return {"run_dir": str(run_dir), "step": result.step, "val_psnr": result.val_psnr,
            "wall_time_s": result.wall_time, "samples_per_s": result.samples_per_s,
            "time_budget": info.get("time_budget"), "best": info.get("best"),
            "sessions": info.get("sessions"), "config": config_to_dict(saved),
            "validation_rows": _validation_rows(run_dir / "scalars.csv")}


def _validation_rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return [{"step": int(r["step"]), "val_psnr": float(r["val_psnr"])}
                for r in csv.DictReader(f) if r.get("val_psnr")]


def export(run_dir: Path, out: Path, notes: str, part_bytes: int = PART_BYTES) -> dict:
    from burstjdd.models import hub
    from burstjdd.train.checkpoint import export_run

    target = out / "weights"
    export_run(run_dir, target, dtype=torch.float16, notes=notes, part_bytes=part_bytes,
               overwrite=True)
    model = hub.load_pretrained(target)  # joins the parts, checks the sha256
    finite = all(torch.isfinite(t).all() for t in model.state_dict().values()
                 if t.is_floating_point())
    if not finite:
        raise RuntimeError("exported weights hold non-finite values")
    files = [{"name": p.name, "bytes": p.stat().st_size} for p in sorted(target.iterdir())]
    return {"dir": str(target), "files": files, "dtype": "float16",
            "sha256": hub.weights_digest(target), "parts": len(hub.weight_parts(target)),
            "config": hub.config_to_dict(model.config)}


def check_out(out: Path) -> dict:
    """What comes back from $OUT: at most 8 files of at most 16 MiB, 64 MiB in all, at most 2
    folders deep, names of letters, digits, '.', '_', '-' (leg.log counts; hidden files too)."""
    files = [p for p in out.rglob("*") if p.is_file()]
    problems = []
    if len(files) > OUT_LIMITS["files"]:
        problems.append(f"{len(files)} files > {OUT_LIMITS['files']}")
    total = sum(p.stat().st_size for p in files)
    if total > OUT_LIMITS["total_bytes"]:
        problems.append(f"{total} bytes in all > {OUT_LIMITS['total_bytes']}")
    for p in files:
        rel = p.relative_to(out)
        if p.stat().st_size > OUT_LIMITS["file_bytes"]:
            problems.append(f"{rel}: {p.stat().st_size} bytes > {OUT_LIMITS['file_bytes']}")
        if len(rel.parts) - 1 > OUT_LIMITS["depth"]:
            problems.append(f"{rel}: more than {OUT_LIMITS['depth']} folders deep")
        if not all(_NAME.fullmatch(part) for part in rel.parts):
            problems.append(f"{rel}: a name outside [A-Za-z0-9._-]")
    return {"files": sorted(str(p.relative_to(out)) for p in files), "bytes": total,
            "ok": not problems, "problems": problems}


def summary_lines(data: dict) -> list[str]:
    """The short table printed last (the device tool returns the tail of the output)."""
    lines = ["", "==================== GPU leg summary ===================="]
    env = data.get("env") or {}
    lines.append(f"device {env.get('gpu') or env.get('device')}, torch {env.get('torch')}, "
                 f"CUDA {env.get('cuda')}, torchvision {env.get('torchvision')}")
    for name, ph in data.get("phases", {}).items():
        lines.append(f"phase {name:10s} {'ok' if ph['ok'] else 'FAILED':6s} {ph['seconds']:7.1f} s")
    for row in data.get("smoke") or []:
        lines.append(f"smoke {row['name']:26s} {row['status']:7s} {row['detail'][:90]}")
    for r in (data.get("bench") or {}).get("rows", []):
        lines.append(f"bench {r['preset']:8s} 5x{r['size'][0]}x{r['size'][1]}: {r['total_s']:.3f} s "
                     f"(CA {r['ca_s']:.3f} s = {r['ca_share']:.0%}), peak {r['peak_mib']:.0f} MiB")
    ca = (data.get("bench") or {}).get("ca_vs_loop")
    if ca:
        lines.append(f"CA vs per-candidate loop {ca['size'][0]}x{ca['size'][1]}: "
                     f"{ca['speedup']:.1f}x (offsets differing {ca['offsets_differ']})")
    tp = data.get("throughput") or {}
    if tp.get("loader"):
        steps = ", ".join(f"{k} {v.get('samples_per_s', float('nan')):.1f}"
                          for k, v in tp.get("steps", {}).items())
        lines.append(f"samples/s: loader {tp['loader']['samples_per_s']:.1f}, device synthesis "
                     f"{tp.get('synth', {}).get('samples_per_s', float('nan')):.1f}, steps {steps}")
    if data.get("choice"):
        lines.append(f"training with synthesis={data['choice']['synthesis']}, "
                     f"variant={data['choice']['variant']}")
    tr = data.get("train") or {}
    if "step" in tr:
        budget = tr.get("time_budget") or {}
        psnr = tr["val_psnr"]
        lines.append(f"train: {tr['step']} steps in {tr['wall_time_s']:.0f} s "
                     f"({budget.get('step_s') or float('nan'):.3f} s/step measured), validation "
                     f"PSNR {'none' if psnr is None else f'{psnr:.2f} dB'}, best {tr.get('best')}")
    ex = data.get("export") or {}
    if "files" in ex:
        lines.append(f"weights: {ex['dir']} ({', '.join(f['name'] for f in ex['files'])}), "
                     f"sha256 {ex['sha256'][:16]}...")
    oc = data.get("out_check") or {}
    if oc:
        lines.append(f"$OUT: {len(oc['files'])} files, {oc['bytes'] / MIB:.1f} MiB, "
                     f"{'within limits' if oc['ok'] else 'PROBLEMS: ' + '; '.join(oc['problems'])}")
    lines.append(f"leg status: {data.get('status')} after {data.get('elapsed_s', 0):.0f} s")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=["paper", "compact"])
    parser.add_argument("budget_s", type=float)
    parser.add_argument("init_weights", nargs="?", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*Dynamo.*")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    s = settings(device)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    leg = Leg(out, s["t0"], s["deadline_s"])
    leg.data["leg"] = {"preset": args.preset, "budget_s": args.budget_s,
                       "init_weights": args.init_weights, "device": str(device),
                       "settings": {k: v for k, v in s.items() if k != "t0"}}
    leg.data["status"] = "running"

    def finish(status: str, code: int) -> int:
        leg.data["status"] = status
        leg.data["elapsed_s"] = round(leg.now(), 1)
        run_dir = Path(leg.data.get("train_run_dir", ""))
        if run_dir.name and (run_dir / "train.log").is_file():
            print("\n==================== train.log ====================")
            print((run_dir / "train.log").read_text(), end="", flush=True)
        leg.data["out_check"] = check_out(out)
        leg.save()
        print("\n".join(summary_lines(leg.data)), flush=True)
        return code

    # before any device work: everything that can fail on bad input
    pack = s["pack"]
    if not (pack / "manifest.json").is_file():
        print(f"gpu_leg: no data pack at {pack}: run `python benchmarks/make_data_pack.py` here "
              f"and name .pack in the device call's carry", file=sys.stderr)
        return finish("no data pack", 2)
    from make_data_pack import pack_paths
    try:
        init, why = resolve_init(args.preset, args.init_weights)
    except Exception as exc:  # noqa: BLE001 - a bad INIT_WEIGHTS stops the leg at once
        print(f"gpu_leg: INIT_WEIGHTS {args.init_weights}: {exc}", file=sys.stderr)
        return finish("bad INIT_WEIGHTS", 2)
    leg.data["leg"]["init"] = {"weights": init, "why": why}
    print(f"GPU leg: {args.preset}, budget {args.budget_s:.0f} s, init: {why}; device {device}; "
          f"deadline {s['deadline_s']:.0f} s after start", flush=True)

    leg.phase("env", lambda: environment(device))
    ok, rows = leg.phase("smoke", lambda: smoke(s, device, pack_paths(pack, "train_paths")))
    if not ok or any(r["status"] == "FAILED" for r in rows):
        return finish("smoke test failed", 1)

    if "bench" not in s["skip"]:
        leg.phase("bench", lambda: bench(s, device, leg))
    measured = None
    if "throughput" not in s["skip"]:
        probe_cfg = train_config(args.preset, args.budget_s, s, device, pack, None,
                                 {"synthesis": "loader", "variant": "base"})
        _, measured = leg.phase("throughput", lambda: throughput(probe_cfg, s, device))
        measured = measured if isinstance(measured, dict) and "choice" in measured else None
    choice = decide(s, measured, device.type)
    leg.data["choice"] = choice

    budget = min(args.budget_s, leg.left() - s["export_reserve_s"])
    leg.data["leg"]["train_budget_s"] = budget
    if budget < 5:
        print(f"gpu_leg: only {budget:.0f} s left for training: skipped", flush=True)
        return finish("no time left to train", 1)
    run_dir = Path(tempfile.mkdtemp(prefix="gpu_leg_run_")) / "run"
    leg.data["train_run_dir"] = str(run_dir)

    def train_phase() -> dict:
        cfg = train_config(args.preset, budget, s, device, pack, init, choice)
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(run_dir)))
        if init is not None:
            from burstjdd.errors import ConfigError
            from burstjdd.train.loop import init_weights
            try:
                init_weights(cfg)
            except ConfigError as exc:
                if args.init_weights:
                    raise
                print(f"gpu_leg: shipped weights do not fit the current {args.preset} "
                      f"architecture ({exc}); training from scratch", flush=True)
                leg.data["leg"]["init"] = {"weights": None, "why": f"shipped weights of another "
                                           f"architecture: from scratch ({exc})"}
                cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                                                                         init_from=None))
        return run_training(cfg, out)

    ok, _ = leg.phase("train", train_phase)
    if not ok:
        return finish("training failed", 1)
    tr = leg.data["train"]
    notes = "\n".join([
        "## GPU leg",
        "",
        (f"Trained by `benchmarks/gpu_leg.sh {args.preset} {args.budget_s:g}` on "
         f"{(leg.data.get('env') or {}).get('gpu') or device}: {tr['step']} steps in "
         f"{tr['wall_time_s']:.0f} s from {leg.data['leg']['init']['why']}; synthesis "
         f"{choice['synthesis']}, variant {choice['variant']}."),
        "",
    ])
    ok, _ = leg.phase("export", lambda: export(run_dir, out, notes, s["part_bytes"]))
    if not ok:
        return finish("export failed", 1)
    return finish("done", 0)


if __name__ == "__main__":
    sys.exit(main())
