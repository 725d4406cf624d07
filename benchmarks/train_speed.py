"""Training throughput: samples/s of the data path alone and of the training steps alone.

    python benchmarks/train_speed.py [--config configs/gpu_leg.yaml] [KEY=VALUE ...]
        [--samples 64] [--steps 6] [--workers 2] [--variants base channels_last] [--json FILE]

Three numbers on the run's own settings (crop, radius, frames, batch, model, precision, device):

* loader: whole samples from ``TrainingDataset`` through a DataLoader with ``--workers``
  processes (decode, unprocess, warp, mosaic, noise on the CPU), after the first batch;
* device synthesis (``run.synthesis=device``, :mod:`burstjdd.synth.gpu`): plans from the
  workers, rendered in batches on the training device; the frame cache's build time apart;
* steps: ``train_step`` on one fixed batch already on the device, after 2 warm-up steps, for
  each variant of the speed switches (``base``, ``channels_last``, ``compile``).

Whichever of the data path and the steps is slower bounds training: :func:`choose` picks the
data path and switches that give the most samples/s (device synthesis shares the device with
the steps, so its time adds to theirs). The data come from the config's ``data.paths`` (e.g. the
data pack: ``data.paths=['stills:.pack/train/stills',.pack/train/clips]``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
import warnings

import torch
from torch.utils.data import DataLoader

from burstjdd.synth.datasets import TrainingDataset
from burstjdd.synth.gpu import DeviceSynthesis
from burstjdd.train.accel import apply_speed_switches
from burstjdd.train.config import TrainConfig, load_config
from burstjdd.train.loop import (
    StepBatchSampler,
    make_train_state,
    open_sources,
    resolve_data_paths,
    resolve_runtime,
    sample_config,
    train_step,
)

VARIANTS = ("base", "channels_last", "compile")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dataset_of(cfg: TrainConfig, length: int) -> TrainingDataset:
    """The run's sample stream (seed run.seed), ``length`` samples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TrainingDataset(open_sources(cfg.data.paths), cfg.data.weights, sample_config(cfg),
                               seed=cfg.run.seed, length=length)


def _loader(dataset, cfg: TrainConfig, batches: int, workers: int) -> DataLoader:
    from burstjdd.train.distributed import DistContext

    return DataLoader(dataset, batch_sampler=StepBatchSampler(0, batches, cfg.optim.batch_size,
                                                              DistContext()),
                      num_workers=workers, prefetch_factor=4 if workers else None)


def loader_rate(cfg: TrainConfig, samples: int, workers: int, max_s: float = 60.0) -> dict:
    """Samples/s of whole samples through a DataLoader (first batch not timed)."""
    b = cfg.optim.batch_size
    batches = max(samples // b, 1) + 1
    it = iter(_loader(dataset_of(cfg, batches * b), cfg, batches, workers))
    t0 = time.perf_counter()
    next(it)
    first = time.perf_counter() - t0
    count, t0 = 0, time.perf_counter()
    for batch in it:
        count += batch["frames"].shape[0]
        if time.perf_counter() - t0 > max_s:
            break
    seconds = time.perf_counter() - t0
    return {"samples": count, "seconds": seconds, "samples_per_s": count / max(seconds, 1e-9),
            "workers": workers, "first_batch_s": first}


def synth_rate(cfg: TrainConfig, device: torch.device, samples: int, workers: int,
               max_s: float = 60.0) -> dict:
    """Samples/s of device synthesis (plans in ``workers`` processes, batched rendering on
    ``device``), first batch not timed; ``cache_s``: building the frame cache."""
    b = cfg.optim.batch_size
    batches = max(samples // b, 1) + 1
    t0 = time.perf_counter()
    synth = DeviceSynthesis(dataset_of(cfg, batches * b), device)
    cache_s = time.perf_counter() - t0
    it = iter(_loader(synth.plans, cfg, batches, workers))
    synth.render(next(it))
    _sync(device)
    count, t0 = 0, time.perf_counter()
    for plans in it:
        count += synth.render(plans)["frames"].shape[0]
        if time.perf_counter() - t0 > max_s:
            break
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"samples": count, "seconds": seconds, "samples_per_s": count / max(seconds, 1e-9),
            "workers": workers, "cache_s": cache_s, "cache_mib": synth.cache.nbytes / 2**20}


def step_rate(cfg: TrainConfig, steps: int, variant: str = "base", warmup: int = 2) -> dict:
    """Samples/s of ``train_step`` on one fixed batch on the run's device, after ``warmup``
    steps; ``peak_mib``: peak device memory on CUDA (0 elsewhere)."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    run = dataclasses.replace(cfg.run, channels_last=variant == "channels_last",
                              compile=variant == "compile")
    cfg = dataclasses.replace(cfg, run=run)
    rt = resolve_runtime(cfg)
    ds = dataset_of(cfg, cfg.optim.batch_size)
    batch = torch.utils.data.default_collate([ds[i] for i in range(cfg.optim.batch_size)])
    batch = {k: v.to(rt.device) for k, v in batch.items()}
    state = make_train_state(cfg, rt.device)
    apply_speed_switches(state.model, cfg.run)
    state.model.train()
    if rt.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(rt.device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        train_step(state.model, state, batch, cfg, rt)
    _sync(rt.device)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(state.model, state, batch, cfg, rt)
    _sync(rt.device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(rt.device) / 2**20 if rt.device.type == "cuda" else 0.0
    return {"variant": variant, "steps": steps, "seconds": seconds,
            "step_s": seconds / steps, "samples_per_s": steps * cfg.optim.batch_size / seconds,
            "warmup_s": warm_s, "peak_mib": peak, "device": str(rt.device),
            "precision": "bf16" if rt.amp_dtype is not None else "fp32"}


def choose(loader_sps: float | None, synth_sps: float | None, steps: dict[str, float],
           gain: float = 1.05) -> dict:
    """The fastest setting from measured samples/s: a switch only when it beats ``base`` by
    ``gain``; the data path by the training rate it allows (loader: the slower of the loader
    and the steps, they overlap; device synthesis: its time adds to the steps' time)."""
    base = steps["base"]
    best_variant = "base"
    for name, sps in steps.items():
        if sps > steps[best_variant] * (gain if best_variant == "base" else 1.0):
            best_variant = name
    step_sps = steps[best_variant]
    rates = {}
    if loader_sps:
        rates["loader"] = min(loader_sps, step_sps)
    if synth_sps:
        rates["device"] = 1.0 / (1.0 / synth_sps + 1.0 / step_sps)
    synthesis = max(rates, key=rates.get) if rates else "loader"
    return {"synthesis": synthesis, "variant": best_variant,
            "expected_samples_per_s": rates.get(synthesis, step_sps), "rates": rates,
            "base_step_samples_per_s": base}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--config", default="configs/gpu_leg.yaml")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["base", "channels_last"],
                        choices=VARIANTS)
    parser.add_argument("--no-synth", action="store_true", help="skip device synthesis")
    parser.add_argument("--json", default=None, help="write the figures there too")
    args = parser.parse_args(argv)
    cfg = resolve_data_paths(load_config(args.config, args.overrides))
    rt = resolve_runtime(cfg)
    out: dict = {"device": str(rt.device), "batch": cfg.optim.batch_size,
                 "crop": cfg.data.crop, "radius": cfg.data.search_radius,
                 "frames": cfg.data.frames, "preset": cfg.model.preset}
    print(f"{cfg.model.preset}, batch {cfg.optim.batch_size}, crop {cfg.data.crop}, radius "
          f"{cfg.data.search_radius}, {cfg.data.frames} frames on {rt.device}", flush=True)
    out["loader"] = loader_rate(cfg, args.samples, args.workers)
    print(f"loader ({args.workers} workers): {out['loader']['samples_per_s']:.1f} samples/s",
          flush=True)
    if not args.no_synth:
        out["synth"] = synth_rate(cfg, rt.device, args.samples, args.workers)
        print(f"device synthesis: {out['synth']['samples_per_s']:.1f} samples/s (cache "
              f"{out['synth']['cache_s']:.1f} s, {out['synth']['cache_mib']:.0f} MiB)",
              flush=True)
    out["steps"] = {}
    for variant in args.variants:
        out["steps"][variant] = step_rate(copy.deepcopy(cfg), args.steps, variant)
        r = out["steps"][variant]
        print(f"steps [{variant}]: {r['samples_per_s']:.2f} samples/s ({r['step_s']:.3f} s/step, "
              f"{r['precision']})", flush=True)
    out["choice"] = choose(out["loader"]["samples_per_s"],
                           out.get("synth", {}).get("samples_per_s"),
                           {k: v["samples_per_s"] for k, v in out["steps"].items()})
    print(f"choice: {out['choice']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
