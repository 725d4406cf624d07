"""The training loop (docs/method.md §4–6; docs/official-network.md §7): plain functions over
a :class:`TrainState`.

One step (:func:`train_step`): the schedule gives the DPBM temperature (1e-2 → 1e-3 at 1/2) and
whether L_BM is on (first 1/3); the model restores the reference GT crop of every sample from
whole frames with context (coarse alignment with soft selection, the interpolation branch when
``use_interp``, the clean bilinear ×1/4 guide while L_BM is on); :func:`~burstjdd.train.losses.
total_loss`; backward; optional gradient clipping; one Adam update (β = (0.9, 0.99), lr 1e-4 for
G and 1e-5 for the DSNet as two parameter groups of one optimiser) and one cosine-restart
scheduler step. bf16 autocast on GPUs (``run.precision: auto``), fp32 on the CPU.

White balance of the loss (a decision, docs/method.md §4). Training samples carry ``wb`` =
IspParams.wb = [red, 1, blue] × rgb_gain (the gains the unprocessing inverted, what ``render``
and the protocol ISP apply) and the separate ``red_gain`` / ``blue_gain`` /
``rgb_gain``. The loss ISP Γ is the OFFICIAL training one: it white-balances with [red, 1, blue]
only, no rgb_gain brightening (docs/official-network.md §4), and the "linear" terms compare
these white-balanced images. So :func:`loss_targets` hands ``total_loss`` ``wb`` = [red_gain,
1, blue_gain]; the loss weights were tuned with this Γ. At test time (docs/protocol.md,
rgb_gain = 1) both definitions coincide. Validation PSNR uses the protocol ISP with each
sample's own ``wb``.

Data order. Step s trains on the global samples s·B .. s·B + B − 1 of one TrainingDataset
(seed = run.seed); rank r of W takes its slice (:func:`burstjdd.train.distributed.rank_indices`).
A sample depends only on (seed, global index) (the dataset seeds a generator per index, never
per worker), so the sample at (step, rank, batch position) is fixed: a run stopped after k steps
and resumed from its checkpoint trains on exactly the batches of an uninterrupted run, and on CPU
with the same number of processes ends bitwise equal to it.

Run directory (rank 0 writes, :mod:`burstjdd.train.checkpoint` names the files): config.yaml
(resolved config), checkpoint.pt (latest, every ``run.checkpoint_every`` steps and at the end),
scalars.csv (:data:`SCALAR_COLUMNS`, every ``run.log_every`` steps, means over the window and
over the ranks), train.log, run.json (sessions: hardware, steps, wall time), tensorboard/ when
``torch.utils.tensorboard`` imports.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler, default_collate
from tqdm import tqdm

from burstjdd.errors import BurstJDDError, ConfigError, DataError
from burstjdd.hardware import describe_cpu, native_bf16
from burstjdd.eval.metrics import protocol_srgb, psnr
from burstjdd.models.dsnet import bilinear_guide
from burstjdd.models.hub import load_pretrained
from burstjdd.models.jddb import JDDBOutput, TwoStageJDDB, build_model
from burstjdd.raw.cfa import demosaic_bilinear, unpack
from burstjdd.raw.noise import parse_noise
from burstjdd.synth.datasets import SampleConfig, TrainingDataset
from burstjdd.synth.gpu import DeviceSynthesis
from burstjdd.synth.sources import FrameSource, derive_seed, open_source
from burstjdd.train.accel import apply_speed_switches
from burstjdd.train.budget import TimeBudget, check_budget, checkpoint_seconds
from burstjdd.train.checkpoint import (
    BEST_CHECKPOINT_NAME,
    CHECKPOINT_NAME,
    CONFIG_NAME,
    LOG_NAME,
    RUN_INFO_NAME,
    SCALARS_NAME,
    Checkpoint,
    capture_rng,
    load_checkpoint,
    read_run_info,
    restore_rng,
    save_checkpoint,
    write_run_info,
)
from burstjdd.train.config import (
    BUILTIN_SOURCES,
    TrainConfig,
    config_to_dict,
    load_config,
    save_config,
    validate,
)
from burstjdd.train.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    broadcast_from_main,
    local_batch_size,
    rank_indices,
    training_device,
    wrap_model,
)
from burstjdd.train.losses import TERMS, total_loss
from burstjdd.train.schedule import CosineRestartScheduler, bm_loss_active, temperature_at

__all__ = [
    "DivergedError", "RunResult", "Runtime", "SCALAR_COLUMNS", "StepBatchSampler", "TrainState",
    "build_training_dataset", "build_validation_set", "check_config", "describe_hardware",
    "loss_targets",
    "make_train_state", "open_sources", "resolve_data_paths", "resolve_runtime", "sample_config",
    "train", "train_step", "training_wb", "usable_cpus", "validation_floors", "validation_psnr",
]

SCALAR_COLUMNS = ("step", "total", *TERMS, "lr_g", "lr_dsnet", "temperature", "samples_per_s",
                  "val_psnr")
_PATH_KINDS = ("stills:", "clips:", "video:")  # open_source prefixes in front of a path
# keys a resumed run may change (where the data live, how many workers, logging): everything
# else fixes the trajectory and must stay as the checkpoint was trained
_RESUMABLE_CHANGES = {("data", "paths"), ("data", "val_paths"), ("data", "workers"),
                      ("run", "out_dir"), ("run", "log_every"), ("run", "val_every"),
                      ("run", "checkpoint_every"), ("run", "device"), ("run", "precision"),
                      ("run", "channels_last"), ("run", "compile"),
                      ("run", "budget_probe_steps"), ("run", "budget_validations")}
WORKERS_PER_CPU = 4  # data.workers beyond this many per usable CPU only thrash (check_config)


class DivergedError(ConfigError):
    """Training produced a non-finite loss, gradient or weight. A ConfigError: the cause is a
    setting (a learning rate or loss weight too high, no gradient clipping), and the CLI prints
    it as one line."""


# ---------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class Runtime:
    """Where a process computes: ``device``, ``amp_dtype`` (bf16 autocast, or None = fp32) and
    its place ``ctx`` among the processes."""

    device: torch.device
    amp_dtype: torch.dtype | None
    ctx: DistContext = DistContext()


@dataclass
class TrainState:
    """What a checkpoint restores: the bare model, its optimiser and scheduler, ``step`` (updates
    done), ``wall_time`` (training seconds over all sessions) and the last ``val_psnr``."""

    model: TwoStageJDDB
    optimizer: torch.optim.Optimizer
    scheduler: CosineRestartScheduler
    step: int = 0
    wall_time: float = 0.0
    val_psnr: float | None = None


@dataclass(frozen=True)
class RunResult:
    """Summary of one :func:`train` call."""

    run_dir: Path
    step: int  # updates done at the end of the call
    val_psnr: float | None  # last validation PSNR (dB), None without validation
    wall_time: float  # training seconds of the whole run (all sessions)
    samples_per_s: float | None  # global samples per second of this session


# ---------------------------------------------------------------------- configuration and data


def resolve_runtime(cfg: TrainConfig, ctx: DistContext = DistContext()) -> Runtime:
    """Device of this process (:func:`~burstjdd.train.distributed.training_device`) and precision:
    ``run.precision`` "auto" is bf16 autocast on a GPU that supports it and on a CPU that
    computes bf16 natively (:func:`~burstjdd.hardware.native_bf16`), fp32 elsewhere; "bf16"
    forces autocast (any CPU); "fp32" never."""
    device = training_device(cfg.run.device, ctx)
    precision = cfg.run.precision
    if precision == "auto":
        bf16_ok = (torch.cuda.is_bf16_supported() if device.type == "cuda"
                   else device.type == "cpu" and native_bf16())
        precision = "bf16" if bf16_ok else "fp32"
    return Runtime(device, torch.bfloat16 if precision == "bf16" else None, ctx)


def _strip_kind(spec: str) -> tuple[str, str]:
    for kind in _PATH_KINDS:
        if spec.startswith(kind):
            return kind, spec[len(kind):]
    return "", spec


def resolve_data_paths(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every data path absolute (keeping ``stills:``-style prefixes; built-in
    sources as they are), so the saved config resumes from any working directory."""

    def absolute(spec: str) -> str:
        if spec.startswith("builtin:"):
            return spec
        kind, path = _strip_kind(spec)
        return kind + str(Path(path).expanduser().resolve())

    data = dataclasses.replace(cfg.data, paths=tuple(map(absolute, cfg.data.paths)),
                               val_paths=tuple(map(absolute, cfg.data.val_paths)))
    return dataclasses.replace(cfg, data=data)


def check_config(cfg: TrainConfig, ctx: DistContext = DistContext()) -> TrainConfig:
    """Everything about ``cfg`` that can fail before data are opened: :func:`~burstjdd.train.
    config.validate` (model, schedule, learning rates, built-in names, sample memory), every
    data path exists (DataError naming it; ``stills:``/``clips:``/``video:`` prefixes
    understood), ``data.workers`` is at most WORKERS_PER_CPU per CPU this process may use, and
    the global batch divides over the processes. Returns ``cfg``."""
    validate(cfg, check_paths=False)
    cpus = usable_cpus()
    if cfg.data.workers > WORKERS_PER_CPU * cpus:
        raise ConfigError(f"data.workers={cfg.data.workers} is more than {WORKERS_PER_CPU} per "
                          f"CPU this process may use ({cpus}): use at most "
                          f"{WORKERS_PER_CPU * cpus}")
    for key in ("paths", "val_paths"):
        for spec in getattr(cfg.data, key):
            if spec.startswith("builtin:"):
                continue
            if not Path(_strip_kind(spec)[1]).expanduser().exists():
                raise DataError(f"data.{key}: {spec} does not exist")
    if cfg.model.init_from is not None:
        init_weights(cfg)  # fails here, before any run directory exists
    local_batch_size(cfg.optim.batch_size, ctx)
    return cfg


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def init_weights(cfg: TrainConfig) -> dict[str, Tensor]:
    """The state dict of ``model.init_from`` (sha256-verified, no pickle: :func:`~burstjdd.
    models.hub.load_pretrained`). ConfigError when its architecture is not the configured one;
    WeightsError when the directory is missing or broken."""
    model = load_pretrained(Path(cfg.model.init_from).expanduser())
    wanted = cfg.model.model_config()
    if model.config != wanted:
        raise ConfigError(f"model.init_from: {cfg.model.init_from} holds {model.config}, but the "
                          f"run trains {wanted}")
    return model.state_dict()


def open_sources(specs: Sequence[str]) -> list[FrameSource]:
    """Frame sources of data paths: ``builtin:skimage`` → SkimageSource, ``builtin:dead_leaves``
    → DeadLeavesSource, anything else :func:`~burstjdd.synth.sources.open_source` (folders of
    stills or clips, video files, ``stills:PATH`` ...). DataError for an empty or unreadable
    source."""
    sources = []
    for spec in specs:
        if spec.startswith("builtin:"):
            if spec not in BUILTIN_SOURCES:
                raise ConfigError(f"unknown built-in source {spec!r} (known: "
                                  f"{', '.join(BUILTIN_SOURCES)})")
            sources.append(open_source(spec.removeprefix("builtin:")))
        else:
            sources.append(open_source(spec))
    return sources


def sample_config(cfg: TrainConfig) -> SampleConfig:
    """The training-sample settings of ``cfg.data`` (burst length, GT crop, search radius: the
    frames carry crop + 2·radius of context); motion and augmentation keep their defaults."""
    return SampleConfig(n_frames=cfg.data.frames, gt_size=cfg.data.crop,
                        search_radius=cfg.data.search_radius)


def build_training_dataset(cfg: TrainConfig) -> TrainingDataset:
    """The ONE sample stream of the run: seed ``run.seed``, rank 0 (ranks take slices of it,
    module docstring), one index per sample of the whole schedule. DataError when a source holds
    no usable image or clip."""
    length = cfg.schedule.total_steps * cfg.optim.batch_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped clips are reported by summary()
        return TrainingDataset(open_sources(cfg.data.paths), cfg.data.weights, sample_config(cfg),
                               seed=cfg.run.seed, length=length)


def build_validation_set(cfg: TrainConfig, n_samples: int | None = None, batch_size: int = 2
                         ) -> tuple[list[dict[str, Tensor]], str] | None:
    """Fixed validation batches from ``data.val_paths`` (None when empty): for each noise level
    of ``data.val_noise``, samples 0..n−1 (n = ``n_samples``, default ``data.val_samples``) of a
    TrainingDataset seeded by derive_seed("val", data.val_seed, level), the training sample
    settings (crops with context, large synthetic motion with moving objects, random ISP) at
    that fixed noise level; the same bursts at every validation and in every run with that
    ``data.val_seed``, whatever its ``run.seed``. Returns
    (collated batches, summary)."""
    n_samples = cfg.data.val_samples if n_samples is None else n_samples
    if not cfg.data.val_paths or n_samples < 1:
        return None
    batches, summaries = [], []
    for name in cfg.data.val_noise:
        level = parse_noise(name)
        config = dataclasses.replace(sample_config(cfg), noise=(level.shot, level.read))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = TrainingDataset(open_sources(cfg.data.val_paths), None, config,
                                 seed=derive_seed("val", cfg.data.val_seed, name), length=n_samples)
        samples = [ds[i] for i in range(n_samples)]
        batches += [default_collate(samples[i:i + batch_size])
                    for i in range(0, n_samples, batch_size)]
        summaries.append(f"{name}: {ds.summary()}")
    return batches, "; ".join(summaries)


class StepBatchSampler(Sampler[list[int]]):
    """Batches of the steps ``start`` ≤ s < ``stop`` for one rank: step s yields
    :func:`~burstjdd.train.distributed.rank_indices` (s). Starting at the checkpoint's step is
    the whole "sampler position" of a resume."""

    def __init__(self, start: int, stop: int, global_batch: int, ctx: DistContext):
        self.start, self.stop, self.global_batch, self.ctx = start, stop, global_batch, ctx

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield list(rank_indices(step, self.global_batch, self.ctx))


def _loader(dataset: TrainingDataset, cfg: TrainConfig, start: int, stop: int,
            rt: Runtime) -> DataLoader:
    workers = cfg.data.workers
    return DataLoader(
        dataset, batch_sampler=StepBatchSampler(start, stop, cfg.optim.batch_size, rt.ctx),
        num_workers=workers, pin_memory=rt.device.type == "cuda",
        prefetch_factor=4 if workers else None, persistent_workers=False)


# ---------------------------------------------------------------------- model and one step


def make_train_state(cfg: TrainConfig, device: torch.device) -> TrainState:
    """Model (seeded by ``run.seed``, on ``device``), Adam over two parameter groups (G at
    ``optim.lr_g``, the DSNet at ``optim.lr_dsnet`` when there is one) and the cosine-restart
    scheduler over both (each group keeps its own base lr). With ``model.init_from`` the model
    starts from those weights."""
    m = cfg.model
    model = build_model(m.preset, m.variant, seed=cfg.run.seed, **m.overrides)
    if m.init_from is not None:
        model.load_state_dict(init_weights(cfg))
    model = model.to(device)
    groups = [{"params": list(model.g_parameters()), "lr": cfg.optim.lr_g, "name": "g"}]
    dsnet = list(model.dsnet_parameters())
    if dsnet:
        groups.append({"params": dsnet, "lr": cfg.optim.lr_dsnet, "name": "dsnet"})
    optimizer = torch.optim.Adam(groups, betas=cfg.optim.betas,
                                 weight_decay=cfg.optim.weight_decay)
    s = cfg.schedule
    scheduler = CosineRestartScheduler(optimizer, s.total_steps, periods=s.restart_periods,
                                       eta_min=s.eta_min)
    return TrainState(model, optimizer, scheduler)


def training_wb(red_gain: Tensor, blue_gain: Tensor) -> Tensor:
    """The loss ISP's white balance (official training Γ, module docstring): red_gain, blue_gain
    (B,) → (B, 3) gains [red, 1, blue], no rgb_gain."""
    return torch.stack([red_gain, torch.ones_like(red_gain), blue_gain], dim=-1)


def loss_targets(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """What :func:`~burstjdd.train.losses.total_loss` reads from a training batch: ``gt``
    (B, 3, G, G) linear camera RGB, ``wb`` (B, 3) = :func:`training_wb`, ``ccm`` (B, 3, 3) =
    the sample's cam2rgb."""
    return {"gt": batch["gt"], "wb": training_wb(batch["red_gain"], batch["blue_gain"]),
            "ccm": batch["cam2rgb"]}


_DEVICE_KEYS = ("frames", "noise_map", "clean", "gt", "origin", "wb", "cam2rgb", "red_gain",
                "blue_gain")


def _to_device(batch: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: batch[k].to(device, non_blocking=True) for k in _DEVICE_KEYS if k in batch}


def _unwrap(model: nn.Module) -> TwoStageJDDB:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _autocast(rt: Runtime):
    return torch.autocast(rt.device.type, dtype=rt.amp_dtype or torch.float32,
                          enabled=rt.amp_dtype is not None)


def _forward(model: nn.Module, batch: Mapping[str, Tensor], ref: int, cfg: TrainConfig,
             temperature: float | None, guide: Tensor | None, interp: bool) -> JDDBOutput:
    """frames/noise (B, N, 4, F, F) with context → image (B, 3, G, G) of the GT crop at
    ``origin`` (B, 2) packed px, patch P = G / 2 packed px."""
    return model(batch["frames"], batch["noise_map"], ref, origins=batch["origin"],
                 size=cfg.data.crop // 2, search_radius=cfg.data.search_radius,
                 temperature=temperature, interp=interp, guide=guide)


def train_step(model: nn.Module, state: TrainState, batch: Mapping[str, Tensor],
               cfg: TrainConfig, rt: Runtime) -> dict[str, float | None]:
    """One optimiser update on ``batch`` (a collated TrainingDataset batch, on any device);
    ``model`` is ``state.model`` or its DDP wrapper. Advances ``state.step`` by 1.

    Returns the unweighted loss terms (``total_loss`` report) plus ``lr_g``, ``lr_dsnet`` (None
    without a DSNet) and ``temperature`` of this update. A non-finite loss or gradient (on any
    process) raises :class:`DivergedError` before the update: the weights stay as they were.
    """
    s = cfg.schedule
    u = state.step  # the update about to be made (0-based): the schedule's clock
    temperature = temperature_at(u, s.total_steps, temperatures=s.temperatures,
                                 switch_at=s.temperature_switch)
    use_bm = bm_loss_active(u, s.total_steps, until=s.bm_loss_until)
    net = _unwrap(model)
    ref = int(batch["ref"][0])
    data = _to_device(batch, rt.device)
    guide = None
    if use_bm and net.dsnet is not None:  # L_BM (Eq. 6): clean raw, bilinear ×1/4
        b, n = data["clean"].shape[:2]
        guide = bilinear_guide(data["clean"].flatten(0, 1)).unflatten(0, (b, n))
    with _autocast(rt):
        out = _forward(model, data, ref, cfg, temperature, guide, net.config.use_interp)
    loss, report = total_loss(out, loss_targets(data), cfg.loss, use_bm=use_bm)
    lrs = [group["lr"] for group in state.optimizer.param_groups]
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optim.grad_clip is not None:
        grad_norm = nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
    else:
        grad_norm = nn.utils.get_total_norm([p.grad for p in net.parameters()
                                             if p.grad is not None])
    _require_finite_step(loss, grad_norm, u + 1, rt)
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    report.update(lr_g=lrs[0], lr_dsnet=lrs[1] if len(lrs) > 1 else None,
                  temperature=temperature)
    return report


def _require_finite_step(loss: Tensor, grad_norm: Tensor, step: int, rt: Runtime) -> None:
    """DivergedError "step N: the loss is nan" unless the loss and the gradient norm are finite
    on every process (decided together, so that all processes stop at the same step)."""
    values = torch.stack([loss.detach().float(), grad_norm.detach().float().to(loss.device)])
    finite = values.isfinite().all().float()
    if rt.ctx.distributed:
        finite = all_reduce_mean(finite.to(rt.device), rt.ctx)
    if float(finite) == 1.0:
        return
    loss_value, norm_value = values.tolist()
    if not math.isfinite(loss_value):
        what = f"the loss is {loss_value}"
    elif not math.isfinite(norm_value):
        what = f"the gradient norm is {norm_value}"
    else:
        what = "the loss or gradient of another process is not finite"
    raise DivergedError(f"step {step}: {what}")


def _require_finite_weights(model: nn.Module, step: int) -> None:
    """DivergedError unless every weight is finite: a checkpoint never holds NaN or inf."""
    if not all(bool(p.detach().isfinite().all()) for p in model.parameters()):
        raise DivergedError(f"step {step}: the weights are not finite")


@torch.no_grad()
def validation_psnr(model: TwoStageJDDB, batches: Sequence[Mapping[str, Tensor]],
                    cfg: TrainConfig, rt: Runtime) -> float:
    """Mean PSNR (dB, docs/protocol.md: gamma sRGB ×255, float64 MSE) over the validation bursts,
    inference as in use: eval mode, hard block matching (temperature None), no interp branch.
    Output and GT go through the protocol ISP with each sample's own ``wb`` (rgb gain included)
    and cam2rgb."""
    was_training = model.training
    model.eval()
    values = []
    try:
        for batch in batches:
            data = _to_device(batch, rt.device)
            with _autocast(rt):
                out = _forward(model, data, int(batch["ref"][0]), cfg, None, None, False)
            image = out.image.float()
            for i in range(image.shape[0]):
                wb, ccm = data["wb"][i], data["cam2rgb"][i]
                values.append(psnr(protocol_srgb(image[i], wb, ccm),
                                   protocol_srgb(data["gt"][i], wb, ccm)))
    finally:
        model.train(was_training)
    return float(sum(values) / len(values))


def validation_floors(batches: Sequence[Mapping[str, Tensor]]) -> dict[str, float]:
    """Mean PSNR (dB, as :func:`validation_psnr`) of two answers that need no training, on the
    same validation bursts: the noisy reference crop and the unaligned mean of all frames'
    crops, each demosaicked bilinearly. A trained model has to clear both."""
    values: dict[str, list[float]] = {"noisy_ref": [], "unaligned_mean": []}
    for batch in batches:
        frames, origins = batch["frames"], batch["origin"]  # (B, N, 4, F, F), (B, 2) packed
        size = batch["gt"].shape[-1] // 2
        for i in range(frames.shape[0]):
            oy, ox = (int(v) for v in origins[i])
            crops = frames[i, :, :, oy : oy + size, ox : ox + size]  # (N, 4, P, P)
            ref = int(batch["ref"][i])
            wb, ccm, gt = batch["wb"][i], batch["cam2rgb"][i], batch["gt"][i]
            for name, packed in (("noisy_ref", crops[ref]), ("unaligned_mean", crops.mean(0))):
                rgb = demosaic_bilinear(unpack(packed))
                values[name].append(psnr(protocol_srgb(rgb, wb, ccm), protocol_srgb(gt, wb, ccm)))
    return {name: float(sum(v) / len(v)) for name, v in values.items()}


# ---------------------------------------------------------------------- run directory


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def describe_hardware(rt: Runtime) -> str:
    """'W x <GPU name>' or '<CPU model> (<ISA>; torch on T of N threads)' of this run, for the
    model card (:func:`~burstjdd.hardware.describe_cpu`): T is what torch computes with
    (``OMP_NUM_THREADS``, ``torch.set_num_threads``), N what the machine has."""
    name = torch.cuda.get_device_name(rt.device) if rt.device.type == "cuda" else describe_cpu()
    return f"{rt.ctx.world_size} x {name}" if rt.ctx.world_size > 1 else name


def _log(run_dir: Path, text: str, echo: bool = True) -> None:
    with open(run_dir / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(f"{_now()} {text}\n")
    if echo:
        tqdm.write(text)


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.8g}" if isinstance(value, float) else str(value)


def _append_scalars(path: Path, row: Mapping[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(SCALAR_COLUMNS)
        writer.writerow([_format(row.get(c)) for c in SCALAR_COLUMNS])


def _truncate_scalars(path: Path, last_step: int) -> None:
    """Drop rows after ``last_step`` (written after the checkpoint a resume starts from)."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= last_step]
    if len(keep) < len(rows):
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(keep)


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: needs the tensorboard package
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _check_resume(cfg: TrainConfig, saved: TrainConfig, source: Path,
                  ckpt: Checkpoint | None = None) -> None:
    """ConfigError naming the first setting that differs from the saved run where a resume must
    keep it (model, schedule, optimiser, loss, sample settings, seed).

    ``saved`` is the run's config.yaml; with ``ckpt`` the settings the checkpoint itself records
    (tensor shapes, optimiser, schedule, batch, seed) are checked too, which catches a
    config.yaml edited by hand since the checkpoint was written."""
    new, old = config_to_dict(cfg), config_to_dict(saved)
    for section, values in old.items():
        for key, value in values.items():
            if (section, key) not in _RESUMABLE_CHANGES and new[section][key] != value:
                raise ConfigError(f"{source}: cannot resume with {section}.{key}="
                                  f"{new[section][key]!r}, the run was trained with {value!r}")
    if ckpt is not None:
        _check_against_checkpoint(cfg, ckpt, source)


_RESUME_HINT = "was config.yaml edited? put it back, or start a new run with -o"


def _recorded_settings(ckpt: Checkpoint) -> dict[tuple[str, str], Any]:
    """The config values a checkpoint records, by (section, key); keys it lacks are left out
    (checkpoints are read defensively: the optimiser and scheduler states are torch's)."""
    found: dict[tuple[str, str], Any] = {}
    data, sched = ckpt.data or {}, ckpt.scheduler or {}
    for key, field in (("global_batch", ("optim", "batch_size")), ("seed", ("run", "seed"))):
        if key in data:
            found[field] = data[key]
    # not total_steps: a time-budgeted run retimes its schedule (burstjdd.train.budget), and a
    # checkpoint written before that holds the old length
    for key, field in (("periods", ("schedule", "restart_periods")),
                       ("eta_min", ("schedule", "eta_min"))):
        if key in sched:
            found[field] = sched[key]
    groups = (ckpt.optimizer or {}).get("param_groups") or []
    lrs = sched.get("base_lrs") or []
    for group, lr in zip(groups, lrs if len(lrs) == len(groups) else ()):
        if group.get("name") in ("g", "dsnet"):
            found[("optim", f"lr_{group['name']}")] = lr
    if groups and "betas" in groups[0] and "weight_decay" in groups[0]:
        found[("optim", "betas")] = groups[0]["betas"]
        found[("optim", "weight_decay")] = groups[0]["weight_decay"]
    return found


def _same_value(a: Any, b: Any) -> bool:
    """Config values equal up to float rounding (lists and tuples alike)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _model_shapes(cfg: TrainConfig) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of the network ``cfg.model`` builds: on the meta device (no memory, no
    time; its warnings about weights loaded into meta tensors are moot), on the CPU when some
    layer cannot be built there."""
    m = cfg.model
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = build_model(m.preset, m.variant, **m.overrides).state_dict()
    except (NotImplementedError, RuntimeError):
        state = build_model(m.preset, m.variant, **m.overrides).state_dict()
    return {name: tuple(t.shape) for name, t in state.items()}


def _check_model_shapes(cfg: TrainConfig, ckpt: Checkpoint, source: Path) -> None:
    """ConfigError when cfg.model builds other tensors than the checkpoint holds."""
    expected = _model_shapes(cfg)
    hint = "was config.yaml edited, or the run made by another burstjdd version?"
    names = set(expected) ^ set(ckpt.model)
    if names:
        raise ConfigError(f"{source}: the model this config builds does not match the "
                          f"checkpoint (tensor {min(names)}); {hint}")
    for name, shape in expected.items():
        if shape != tuple(ckpt.model[name].shape):
            raise ConfigError(f"{source}: this config gives {name} the shape {list(shape)}, the "
                              f"checkpoint has {list(ckpt.model[name].shape)}; {hint}")


def _check_against_checkpoint(cfg: TrainConfig, ckpt: Checkpoint, source: Path) -> None:
    """ConfigError naming the first setting of ``cfg`` that the checkpoint contradicts."""
    new = config_to_dict(cfg)
    for (section, key), value in _recorded_settings(ckpt).items():
        if not _same_value(new[section][key], value):
            raise ConfigError(f"{source}: {section}.{key}={new[section][key]!r} but the "
                              f"checkpoint was trained with {value!r}; {_RESUME_HINT}")
    if ckpt.step > cfg.schedule.total_steps:
        raise ConfigError(f"{source}: the checkpoint is at step {ckpt.step}, beyond "
                          f"schedule.total_steps={cfg.schedule.total_steps}; {_RESUME_HINT}")
    _check_model_shapes(cfg, ckpt, source)


def _check_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool) -> Checkpoint | None:
    """The checkpoint to resume from (None for a fresh run) after checking ``run_dir``:
    ConfigError for a fresh run into a non-empty folder, WeightsError/ConfigError for a resume
    without a readable checkpoint or with settings the run cannot continue with."""
    if not resume:
        existing = next(p for p in (run_dir, *run_dir.parents) if os.path.lexists(p))
        if not existing.is_dir():
            raise ConfigError(f"{run_dir}: the run directory (-o) must be a folder, new or "
                              f"empty, but {existing} is a file; choose another -o")
        if existing == run_dir and any(run_dir.iterdir()):
            raise ConfigError(f"{run_dir}: run directory exists and is not empty (resume it "
                              f"with --resume, or choose another -o)")
        return None
    ckpt = load_checkpoint(run_dir / CHECKPOINT_NAME)
    _check_resume(cfg, load_config(run_dir / CONFIG_NAME), run_dir / CONFIG_NAME, ckpt)
    read_run_info(run_dir)  # a broken run.json fails now, before any work
    return ckpt


def _agreed_start(cfg: TrainConfig, run_dir: Path, resume: bool, ctx: DistContext
                  ) -> Checkpoint | None:
    """:func:`_check_run_dir` decided by rank 0 alone, for every rank.

    Rank 0 checks ``run_dir`` and broadcasts its verdict before any rank goes on, so that no rank
    sees the folder rank 0 is about to create and fill (the start-up race of a multi-process
    run), and every rank stops with rank 0's one-line error. After a good verdict the other
    ranks read the checkpoint themselves: rank 0 cannot write a new one before they join the
    first collective step."""
    ckpt, verdict = None, None
    if ctx.is_main:
        try:
            ckpt = _check_run_dir(cfg, run_dir, resume)
        except Exception as exc:  # told to the other ranks, then raised here as it is
            verdict = (isinstance(exc, (BurstJDDError, OSError)), " ".join(str(exc).split()))
            broadcast_from_main(verdict, ctx)
            barrier(ctx)
            raise
    verdict = broadcast_from_main(verdict, ctx)
    if verdict is not None:
        # every rank stops here together: rank 0 leaves no peer mid-broadcast behind
        barrier(ctx)
        user_error, message = verdict
        if user_error:
            raise ConfigError(message)
        raise RuntimeError(f"rank 0 failed while checking the run directory: {message}")
    if resume and ckpt is None:
        ckpt = load_checkpoint(run_dir / CHECKPOINT_NAME)
    return ckpt


def _with_out_dir(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(run_dir)))


def _restore(state: TrainState, ckpt: Checkpoint) -> None:
    state.model.load_state_dict(ckpt.model)
    state.optimizer.load_state_dict(ckpt.optimizer)
    state.scheduler.load_state_dict(ckpt.scheduler)
    state.step, state.wall_time, state.val_psnr = ckpt.step, ckpt.wall_time, ckpt.val_psnr
    restore_rng(ckpt.rng)


def _checkpoint(state: TrainState, cfg: TrainConfig, wall_time: float) -> Checkpoint:
    return Checkpoint(
        step=state.step, model=state.model.state_dict(), optimizer=state.optimizer.state_dict(),
        scheduler=state.scheduler.state_dict(), rng=capture_rng(),
        data={"next_step": state.step, "global_batch": cfg.optim.batch_size,
              "seed": cfg.run.seed},
        wall_time=wall_time, val_psnr=state.val_psnr)


# ---------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, run_dir: str | os.PathLike | None = None, *, resume: bool = False,
          stop_at: int | None = None, ctx: DistContext = DistContext(), progress: bool = True,
          val_samples: int | None = None, echo: bool = True) -> RunResult:
    """Train ``cfg`` into ``run_dir`` (default ``cfg.run.out_dir``), or resume it.

    Every check that can fail on bad input runs BEFORE the run directory is created (config,
    data paths, sources, dataset, model): a bad run leaves nothing behind. A fresh run refuses a
    non-empty ``run_dir``; ``resume`` continues from ``run_dir``/checkpoint.pt (whose config must
    match ``cfg`` except data locations, workers and logging). ``stop_at``: stop (and
    checkpoint) after this many updates instead of ``schedule.total_steps`` (the schedule still
    spans the whole run). Call :func:`~burstjdd.train.distributed.init_process_group` first for
    a multi-process run (``ctx``). ``progress``: tqdm bar; ``echo``: log lines on stderr.
    """
    clock_start = time.perf_counter()  # run.time_budget_s counts from here
    run_dir = Path(run_dir if run_dir is not None else cfg.run.out_dir).expanduser().resolve()
    cfg = _with_out_dir(check_config(resolve_data_paths(cfg), ctx), run_dir)
    check_budget(cfg, ctx.world_size)
    rt = resolve_runtime(cfg, ctx)
    total = cfg.schedule.total_steps
    stop = total if stop_at is None else stop_at
    if isinstance(stop, bool) or not isinstance(stop, int) or not 1 <= stop <= total:
        raise ConfigError(f"stop_at must be an integer in 1..{total}, got {stop_at!r}")
    ckpt = _agreed_start(cfg, run_dir, resume, ctx)
    dataset = build_training_dataset(cfg)
    synth = (DeviceSynthesis(dataset, rt.device) if cfg.run.synthesis == "device" else None)
    val = build_validation_set(cfg, val_samples) if ctx.is_main else None
    state = make_train_state(cfg, rt.device)
    if ckpt is not None:
        _restore(state, ckpt)
    start = state.step

    main = ctx.is_main
    # a new run that stops before its first checkpoint leaves no run folder behind
    with _removed_unless_saved(run_dir, enabled=main and ckpt is None):
        if main:
            _start_session(run_dir, cfg, rt, state, dataset.summary(), synth, val, resume,
                           stop, echo)
        board = _tensorboard(run_dir) if main else None
        if rt.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels
        apply_speed_switches(state.model, cfg.run)
        model = wrap_model(state.model, ctx, rt.device, cfg.data.frames)
        model.train()
        session_start, wall_at_start = time.perf_counter(), state.wall_time

        def wall() -> float:
            return wall_at_start + time.perf_counter() - session_start

        window: list[dict[str, float | None]] = []
        last_sps = None
        saved = start if ckpt is not None else None  # the step of the latest checkpoint.pt
        bar = tqdm(total=stop, initial=start, disable=not (main and progress), unit="step",
                   dynamic_ncols=True, mininterval=1.0)
        try:
            baseline_start = time.perf_counter()
            if val is not None and start == 0:  # the baseline of the PSNR curve
                state.val_psnr = validation_psnr(state.model, val[0], cfg, rt)
                _write_row(run_dir, board, {"step": 0, "val_psnr": state.val_psnr})
                _log(run_dir, f"step 0: validation PSNR {state.val_psnr:.3f} dB", echo)
                floors = validation_floors(val[0])
                _log(run_dir, "validation floors: " + ", ".join(
                    f"{name} {value:.3f} dB" for name, value in floors.items()), echo)
            budget = TimeBudget.from_config(cfg, clock_start)
            if budget is not None:  # a validation round: the baseline's time, two checkpoints
                budget.eval_s = ((time.perf_counter() - baseline_start if val is not None else 0.0)
                                 + 2 * checkpoint_seconds(state.model))
                budget.mark()
            window_start = time.perf_counter()
            for batch in _loader(dataset if synth is None else synth.plans, cfg, start, stop, rt):
                if synth is not None:  # plans -> samples, batched on the device
                    batch = synth.render(batch)
                window.append(train_step(model, state, batch, cfg, rt))
                step = state.step
                if budget is not None:
                    budget.tick()
                    if budget.total is None and (budget.ready() or budget.out_of_time()):
                        cfg = budget.fix(cfg, step, state.scheduler)
                        stop = min(stop, cfg.schedule.total_steps)
                        bar.total = stop
                        if main:
                            save_config(cfg, run_dir / CONFIG_NAME)
                            info = read_run_info(run_dir)
                            info["time_budget"] = budget.record()
                            write_run_info(run_dir, info)
                            _log(run_dir, budget.describe(step), echo)
                last = step >= stop or (budget is not None and budget.out_of_time())
                row: dict[str, Any] = {}
                if step % cfg.run.log_every == 0 or last:
                    row = _window_means(window, rt)
                    last_sps = len(window) * cfg.optim.batch_size / max(
                        time.perf_counter() - window_start, 1e-9)
                    row.update(step=step, samples_per_s=last_sps)
                    window = []
                    bar.set_postfix(loss=f"{row['total']:.4g}", sps=f"{last_sps:.3g}",
                                    refresh=False)
                if val is not None and (step % cfg.run.val_every == 0 or last):
                    state.val_psnr = validation_psnr(state.model, val[0], cfg, rt)
                    row.update(step=step, val_psnr=state.val_psnr)
                    _log(run_dir, f"step {step}: validation PSNR {state.val_psnr:.3f} dB", echo)
                    if main:
                        _keep_if_best(run_dir, state, cfg, wall(), echo)
                if main and row:
                    _write_row(run_dir, board, row)
                if main and (step % cfg.run.checkpoint_every == 0 or last):
                    _save(run_dir, state, cfg, wall(), time.perf_counter() - session_start)
                    saved = step
                if not window:  # samples/s measures training: validation and saving stay out
                    window_start = time.perf_counter()
                bar.update(1)
                if last:  # a time budget may end the run before the loader does
                    break
        except DivergedError as exc:  # nothing of the bad step is saved
            message = _diverged_message(str(exc), saved, run_dir)
            if main:
                _log(run_dir, message, echo=False)
            raise DivergedError(message) from None
        except KeyboardInterrupt:
            if main and state.step > (saved or 0):  # keep the updates: --resume goes on from here
                _save(run_dir, state, cfg, wall(), time.perf_counter() - session_start)
            if main:
                _log(run_dir, f"interrupted at step {state.step}; continue with --resume", echo)
            raise
        finally:
            bar.close()
            if board is not None:
                board.close()
        state.wall_time = wall()
        if main:
            _log(run_dir, f"stopped at step {state.step} of {cfg.schedule.total_steps}; session "
                          f"{time.perf_counter() - session_start:.0f} s", echo)
        barrier(ctx)  # the ranks finish together, after rank 0's last checkpoint
    return RunResult(run_dir, state.step, state.val_psnr, state.wall_time, last_sps)


def _start_session(run_dir: Path, cfg: TrainConfig, rt: Runtime, state: TrainState,
                   data_summary: str, synth: DeviceSynthesis | None,
                   val: tuple[list[dict[str, Tensor]], str] | None, resume: bool, stop: int,
                   echo: bool) -> None:
    """Rank 0's start of a session: the run folder, config.yaml, scalars.csv cut back to the
    checkpoint, a new session in run.json, and the first log lines."""
    start, ctx = state.step, rt.ctx
    info = read_run_info(run_dir)  # before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG_NAME)
    _truncate_scalars(run_dir / SCALARS_NAME, start)
    session = {"start": _now(), "hardware": describe_hardware(rt), "device": str(rt.device),
               "processes": ctx.world_size,
               "precision": "bf16" if rt.amp_dtype is not None else "fp32",
               "start_step": start, "end_step": start, "wall_s": 0.0}
    info.setdefault("sessions", []).append(session)
    info["data"] = list(cfg.data.paths)
    info["validation"] = {"paths": list(cfg.data.val_paths), "noise": list(cfg.data.val_noise),
                          "samples": sum(len(b["gt"]) for b in val[0]) if val is not None else 0}
    write_run_info(run_dir, info)
    n_params = sum(p.numel() for p in state.model.parameters())
    _log(run_dir, f"{f'resumed at step {start}: training' if resume else 'training'} "
                  f"{cfg.model.preset}/{cfg.model.variant} ({n_params:,} parameters) to step "
                  f"{stop} of {cfg.schedule.total_steps} on {session['hardware']}, "
                  f"{session['precision']}, {ctx.world_size} process(es), global batch "
                  f"{cfg.optim.batch_size}", echo)
    _log(run_dir, f"data: {data_summary}", echo)
    if synth is not None:
        _log(run_dir, synth.summary(), echo)
    if val is not None:
        _log(run_dir, f"validation: {val[1]}", echo)


def _diverged_message(what: str, saved: int | None, run_dir: Path) -> str:
    """The one line of a run stopped by a non-finite step: what, which step, what is kept (the
    latest checkpoint, written before the bad step) and what to do."""
    kept = (f"the last good checkpoint (step {saved}) is kept in {run_dir}" if saved is not None
            else "no checkpoint had been written yet")
    return (f"{what}; training stopped and {kept}: lower optim.lr_g / optim.lr_dsnet or set "
            "optim.grad_clip (a new run; model.init_from=DIR starts it from exported weights)")


@contextlib.contextmanager
def _removed_unless_saved(run_dir: Path, enabled: bool) -> Iterator[None]:
    """On any exception (Ctrl-C included) inside the block, when ``enabled`` and ``run_dir``
    holds no checkpoint: remove the files a run writes there (config.yaml, run.json, train.log,
    scalars.csv, tensorboard/), then the folders the block created (``run_dir`` and missing
    parents) if they are empty. A fresh run starts in a new or empty folder, so these files are
    its own; a file anyone else put there keeps its folder."""
    created = [p for p in (run_dir, *run_dir.parents) if not os.path.lexists(p)]
    try:
        yield
    except BaseException:
        if enabled and not any((run_dir / name).exists()
                               for name in (CHECKPOINT_NAME, BEST_CHECKPOINT_NAME)):
            for name in (CONFIG_NAME, RUN_INFO_NAME, LOG_NAME, SCALARS_NAME):
                with contextlib.suppress(OSError):
                    (run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
            for folder in created:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise


def _write_row(run_dir: Path, board: Any, row: Mapping[str, Any]) -> None:
    """One scalars.csv row (and the same scalars to TensorBoard when it is there)."""
    _append_scalars(run_dir / SCALARS_NAME, row)
    if board is not None:
        for key in SCALAR_COLUMNS[1:]:
            if isinstance(row.get(key), float) and math.isfinite(row[key]):
                board.add_scalar(key, row[key], row["step"])


def _keep_if_best(run_dir: Path, state: TrainState, cfg: TrainConfig, wall_time: float,
                  echo: bool) -> None:
    """Copy ``state`` to the best checkpoint when its validation PSNR beats every earlier one
    of the run (recorded in run.json): the checkpoint that ``burstjdd export`` takes, chosen on
    the held-out validation set and on nothing else."""
    info = read_run_info(run_dir)
    best = info.get("best") or {}
    if isinstance(best.get("val_psnr"), float) and best["val_psnr"] >= state.val_psnr:
        return
    _require_finite_weights(state.model, state.step)
    save_checkpoint(_checkpoint(state, cfg, wall_time), run_dir / BEST_CHECKPOINT_NAME)
    info["best"] = {"step": state.step, "val_psnr": state.val_psnr}
    write_run_info(run_dir, info)
    _log(run_dir, f"step {state.step}: best validation so far, {BEST_CHECKPOINT_NAME} written",
         echo=False)


def _save(run_dir: Path, state: TrainState, cfg: TrainConfig, wall_time: float,
          session_s: float) -> None:
    """The checkpoint of ``state`` and the session's progress in run.json."""
    _require_finite_weights(state.model, state.step)
    save_checkpoint(_checkpoint(state, cfg, wall_time), run_dir / CHECKPOINT_NAME)
    info = read_run_info(run_dir)
    info["sessions"][-1].update(end_step=state.step, end=_now(), wall_s=session_s)
    write_run_info(run_dir, info)
    _log(run_dir, f"step {state.step}: checkpoint written", echo=False)


def _window_means(window: list[dict[str, float | None]], rt: Runtime) -> dict[str, float]:
    """Means over the steps since the last log row (skipped terms: NaN), then over the ranks."""
    keys = ("total", *TERMS)
    values = torch.tensor([[math.nan if r[k] is None else r[k] for k in keys] for r in window],
                          dtype=torch.float64)
    means = values.mean(0)
    if rt.ctx.distributed:  # NCCL reduces GPU tensors only
        means = all_reduce_mean(means.to(rt.device), rt.ctx).cpu()
    means = means.tolist()
    row: dict[str, Any] = dict(zip(keys, means))
    row.update({k: window[-1][k] for k in ("lr_g", "lr_dsnet", "temperature")})
    return row
