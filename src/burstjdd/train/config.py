"""Typed training configuration: frozen dataclasses, YAML only serialises them.

A :class:`TrainConfig` has six sections, ``model``, ``data``, ``optim``, ``schedule``, ``loss`` and
``run``; the defaults are the official run (docs/official-network.md §7, docs/method.md §6).
YAML files (``configs/*.yaml``) may give any subset of keys; missing keys take the defaults.
Loading is strict: an unknown key is an error naming the dotted key (``optim.lr_gg``), a value
of the wrong type is an error naming the key and the expected type (checked against the
dataclass type hints by :func:`burstjdd.typed.convert`, YAML dialect),
and out-of-range values are errors too: every size, count and rate has a range (the ``MAX_*``
constants below: far above what a real run uses, low enough that a typo fails at once instead
of hanging or filling the memory), integers are 64-bit and floats finite
(:mod:`burstjdd.typed`), and :func:`validate` bounds the memory the samples of one step and
the validation set take (:data:`MAX_SAMPLES_GIB`). Files and command-line overrides
``key.sub=value`` (``optim.lr_g=2e-4``, ``optim.betas=[0.9,0.999]``, ``model.overrides.nf=32``)
are read as YAML with limits on nesting, aliases and integer length
(:func:`burstjdd.limits.parse_yaml`) and type-checked the same way. Every error is a one-line
:class:`~burstjdd.errors.ConfigError` (or :class:`~burstjdd.errors.DataError` for a missing data
path in :func:`validate`).

PyYAML reads ``1e-4`` (no dot) as a string; a float field accepts such a string when it spells a
number, so learning rates can be written the usual way.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from burstjdd.errors import BurstJDDError, ConfigError, DataError
from burstjdd.limits import MAX_NESTING, parse_yaml
from burstjdd.models.jddb import ModelConfig, make_config
from burstjdd.raw.files import atomic_output, require_regular_file
from burstjdd.raw.noise import parse_noise
from burstjdd.train.losses import LossWeights
from burstjdd.train.schedule import (
    BM_LOSS_UNTIL,
    ETA_MIN,
    RESTART_PERIODS,
    TEMPERATURE_SWITCH,
    TEMPERATURES,
    check_fraction,
    cycle_bounds,
)
from burstjdd.typed import TRAINING_YAML, convert, field_hints, short_repr

Precision = Literal["auto", "fp32", "bf16"]
Synthesis = Literal["loader", "device"]
BUILTIN_SOURCES = ("builtin:skimage", "builtin:dead_leaves")  # data sources with no path
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

# Ranges of the sizes and counts of a run (module docstring; the header comment of
# configs/*.yaml and docs/cli.md list them).
MAX_BATCH = 4096  # optim.batch_size: samples per step over all processes
MAX_CROP = 4096  # data.crop: GT crop side, full-res px
MAX_SEARCH_RADIUS = 1024  # data.search_radius, full-res px
MAX_FRAMES = 64  # data.frames (simulate's limit too)
MAX_WORKERS = 256  # data.workers per process (check_config also bounds it by the CPUs)
MAX_VAL_SAMPLES = 10_000  # data.val_samples per noise level
MAX_STEPS = 10**9  # schedule.total_steps
MAX_BUDGET_VALIDATIONS = 10_000  # run.budget_validations
MAX_SEED = 2**63 - 1  # run.seed, data.val_seed
MAX_RATE = 1.0  # optim.lr_g, lr_dsnet and weight_decay (Adam keeps them as float32)
MAX_SAMPLES_GIB = 16  # the samples of one step, and the validation set, in memory (validate)



def _is_noise(text: str) -> bool:
    """Whether ``text`` names a noise level (``parse_noise`` accepts it)."""
    try:
        parse_noise(text)
    except BurstJDDError:
        return False
    return True

# ---------------------------------------------------------------------- type checking


class _Section:
    """Mixin of the config sections: type-checks its fields (turning YAML lists into tuples) and
    then runs the section's value checks, naming keys as ``<name>.<field>``."""

    name: ClassVar[str]

    def __post_init__(self) -> None:
        for name, tp in field_hints(type(self)).items():
            object.__setattr__(self, name, convert(getattr(self, name), tp, f"{self.name}.{name}",
                                                   TRAINING_YAML))
        self.check()

    def check(self) -> None:
        """Value checks (ranges, consistency); ConfigError naming the dotted key."""

    def _require(self, ok: bool, field_name: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{self.name}.{field_name} must be {what}, got "
                              f"{short_repr(getattr(self, field_name))}")


# ---------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ModelSection(_Section):
    """Which network: ``preset`` ("paper" | "compact"), ablation ``variant`` ("full", "no_align",
    "ca_only", "ra_only", "no_e2e", "deep_ra", "no_ip") and ModelConfig field ``overrides``
    (see :func:`burstjdd.models.jddb.build_model`); ``init_from``: a weights directory
    (``burstjdd export`` / ``convert-official``) of the same architecture to start from instead of
    the random initialisation (fine-tuning, or a longer run after a short one), or null."""

    name: ClassVar[str] = "model"
    preset: str = "paper"
    variant: str = "full"
    overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None

    def model_config(self) -> ModelConfig:
        """The ModelConfig this section describes (ConfigError if the preset, variant or an
        override is unknown or invalid)."""
        try:
            return make_config(self.preset, self.variant, **self.overrides)
        except TypeError as exc:  # dataclasses.replace with an unknown field
            raise ConfigError(f"model.overrides: {exc}") from None


@dataclass(frozen=True)
class DataSection(_Section):
    """Training data. ``paths``: image folders, clip folders (REDS layout) or video files, or a
    built-in source (``builtin:skimage``, ``builtin:dead_leaves``); ``weights``: sampling weight of
    each source (None = equal); ``crop``: GT crop side in full-resolution pixels (128 officially;
    a multiple of 8, the LR grid); ``search_radius``: coarse-alignment radius in full-resolution
    pixels during training (64: the official training yaml's search_window; the frames given to
    the model carry crop + 2·radius of context); ``frames``: burst length N; ``workers``:
    DataLoader workers per process; ``val_paths``: validation sources (empty: no validation),
    held out from training (never the evaluation data): checkpoints are chosen on them;
    ``val_noise``: the noise levels of the validation bursts (names or "SHOT,READ");
    ``val_samples``: fixed validation bursts per noise level; ``val_seed``: the seed that draws
    them, apart from ``run.seed`` so that legs with different training seeds are scored on the
    same bursts."""

    name: ClassVar[str] = "data"
    paths: tuple[str, ...] = ()
    weights: tuple[float, ...] | None = None
    crop: int = 128
    search_radius: int = 64
    frames: int = 5
    workers: int = 4
    val_paths: tuple[str, ...] = ()
    val_noise: tuple[str, ...] = ("low", "high")
    val_samples: int = 8
    val_seed: int = 0

    def check(self) -> None:
        self._require(self.weights is None or (
            len(self.weights) == len(self.paths) and all(w >= 0 for w in self.weights)
            and sum(self.weights) > 0), "weights",
            f"null or {len(self.paths)} weights >= 0 (one per path) with a positive sum")
        self._require(0 < self.crop <= MAX_CROP and self.crop % 8 == 0, "crop",
                      f"a multiple of 8 in 8..{MAX_CROP} (full-resolution pixels)")
        self._require(0 <= self.search_radius <= MAX_SEARCH_RADIUS, "search_radius",
                      f"in 0..{MAX_SEARCH_RADIUS} (full-resolution pixels)")
        self._require(1 <= self.frames <= MAX_FRAMES, "frames", f"in 1..{MAX_FRAMES}")
        self._require(0 <= self.workers <= MAX_WORKERS, "workers", f"in 0..{MAX_WORKERS}")
        self._require(1 <= self.val_samples <= MAX_VAL_SAMPLES, "val_samples",
                      f"in 1..{MAX_VAL_SAMPLES}")
        self._require(0 <= self.val_seed <= MAX_SEED, "val_seed", "in 0..2**63-1")
        self._require(len(self.val_noise) >= 1 and all(_is_noise(n) for n in self.val_noise),
                      "val_noise", "one or more noise levels (low, high or SHOT,READ)")


@dataclass(frozen=True)
class OptimSection(_Section):
    """Adam for G (``lr_g``) and the DSNet (``lr_dsnet``), ``betas``, ``weight_decay``;
    ``grad_clip``: max global gradient norm or null (none, as the official code); ``batch_size``:
    samples per step over all processes (official: 2 = 1 per GPU × 2 GPUs)."""

    name: ClassVar[str] = "optim"
    lr_g: float = 1e-4
    lr_dsnet: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float | None = None
    batch_size: int = 2

    def check(self) -> None:
        self._require(0 < self.lr_g <= MAX_RATE, "lr_g", f"in (0, {MAX_RATE:g}]")
        self._require(0 < self.lr_dsnet <= MAX_RATE, "lr_dsnet", f"in (0, {MAX_RATE:g}]")
        self._require(all(0 <= b < 1 for b in self.betas), "betas", "two numbers in [0, 1)")
        self._require(0 <= self.weight_decay <= MAX_RATE, "weight_decay",
                      f"in [0, {MAX_RATE:g}]")
        self._require(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "null or > 0")
        self._require(1 <= self.batch_size <= MAX_BATCH, "batch_size", f"in 1..{MAX_BATCH}")


@dataclass(frozen=True)
class ScheduleSection(_Section):
    """Run length and the fractions of it (:mod:`burstjdd.train.schedule`): ``restart_periods``
    (cosine cycles, sum 1), ``eta_min``, DPBM softmax ``temperatures`` (before, after) switched
    at ``temperature_switch``, L_BM on until ``bm_loss_until``."""

    name: ClassVar[str] = "schedule"
    total_steps: int = 600_000
    restart_periods: tuple[float, ...] = RESTART_PERIODS
    eta_min: float = ETA_MIN
    temperatures: tuple[float, float] = TEMPERATURES
    temperature_switch: float = TEMPERATURE_SWITCH
    bm_loss_until: float = BM_LOSS_UNTIL

    def check(self) -> None:
        self._require(1 <= self.total_steps <= MAX_STEPS, "total_steps", f"in 1..{MAX_STEPS:.0e}")
        try:
            cycle_bounds(self.total_steps, self.restart_periods)
        except ConfigError as exc:
            raise ConfigError(f"schedule.restart_periods: {exc}") from None
        check_fraction(self.temperature_switch, "schedule.temperature_switch")
        check_fraction(self.bm_loss_until, "schedule.bm_loss_until")
        self._require(self.eta_min >= 0, "eta_min", ">= 0")
        self._require(all(t > 0 for t in self.temperatures), "temperatures", "two numbers > 0")


LossSection = LossWeights  # the ``loss`` section: beta, rho, eta of paper Eq. 9


@dataclass(frozen=True)
class RunSection(_Section):
    """Where and how: ``out_dir`` (checkpoints, logs), ``seed``, ``log_every`` /
    ``val_every`` / ``checkpoint_every`` in steps, ``device`` ("auto", "cpu", "cuda", "cuda:N",
    "mps"), ``precision`` ("auto": bf16 autocast where the device supports it, else fp32).

    Time budget (:mod:`burstjdd.train.budget`): ``time_budget_s`` (null: none) is the wall-clock
    seconds of the whole ``train`` call; ``schedule.total_steps`` is then a cap: after
    ``budget_probe_steps`` timed steps the run fixes total_steps to what fits, lays the whole
    schedule over it, and stops cleanly inside the budget (single process only);
    ``budget_validations`` > 0 spaces that many validations and checkpoints evenly over the
    fixed run (besides the final one) instead of ``val_every`` / ``checkpoint_every``.

    Speed switches (off by default; measure before turning them on): ``synthesis`` "loader"
    (DataLoader workers make whole samples) or "device" (workers only draw each sample's random
    parameters; decoded frames are cached on the training device, which crops, warps, mosaics
    and adds noise in batches: :mod:`burstjdd.synth.gpu`); ``channels_last`` (NHWC memory
    format for the model's convolutions); ``compile`` (``torch.compile`` of the decoder part,
    ``TwoStageJDDB.reconstruct``)."""

    name: ClassVar[str] = "run"
    out_dir: str = "runs/train"
    seed: int = 0
    log_every: int = 100
    val_every: int = 50_000
    checkpoint_every: int = 50_000
    device: str = "auto"
    precision: Precision = "auto"
    time_budget_s: float | None = None
    budget_probe_steps: int = 8
    budget_validations: int = 0
    synthesis: Synthesis = "loader"
    channels_last: bool = False
    compile: bool = False

    def check(self) -> None:
        self._require(bool(self.out_dir.strip()), "out_dir", "a non-empty path")
        self._require(self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s",
                      "null or > 0 (seconds)")
        self._require(self.budget_probe_steps >= 1, "budget_probe_steps", ">= 1 (steps)")
        self._require(0 <= self.budget_validations <= MAX_BUDGET_VALIDATIONS,
                      "budget_validations", f"in 0..{MAX_BUDGET_VALIDATIONS}")
        self._require(0 <= self.seed <= MAX_SEED, "seed", "in 0..2**63-1")
        for name in ("log_every", "val_every", "checkpoint_every"):
            self._require(getattr(self, name) >= 1, name, ">= 1 (steps)")
        self._require(bool(_DEVICE.fullmatch(self.device)), "device",
                      "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run; the defaults are the official one (data paths excepted)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loss: LossWeights = field(default_factory=LossWeights)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        for name, cls in field_hints(TrainConfig).items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"{name} must be a {cls.__name__}, got "
                                  f"{type(getattr(self, name)).__name__}")


# ---------------------------------------------------------------------- dict / YAML


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested dict of ``cfg`` (tuples as lists), ready for ``yaml.safe_dump``."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {name: {f.name: plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
            for name, section in ((f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg))}


def config_from_dict(data: Any, source: str = "config") -> TrainConfig:
    """Build a TrainConfig from nested mappings (missing keys: defaults), strictly: unknown keys
    and wrong types raise ConfigError "<source>: <dotted key> ..."."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    hints = field_hints(TrainConfig)
    _reject_unknown(data, hints, "", source)
    sections = {}
    for name, cls in hints.items():
        values = data.get(name)
        values = {} if values is None else values
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: {name} must be a mapping (section), got "
                              f"{type(values).__name__} {short_repr(values)}")
        section_hints = field_hints(cls)
        _reject_unknown(values, section_hints, f"{name}.", source)
        try:
            kwargs = {k: convert(v, section_hints[k], f"{name}.{k}", TRAINING_YAML)
                      for k, v in values.items()}
            sections[name] = cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return TrainConfig(**sections)


def _reject_unknown(values: Mapping, known: Mapping[str, Any], prefix: str, source: str) -> None:
    for key in values:
        if key not in known:
            raise ConfigError(f"{source}: unknown key '{prefix}{key}' (known: "
                              f"{', '.join(prefix + k for k in known)})")


class _Dumper(yaml.SafeDumper):
    """Block-style sections, flow-style lists of scalars (``betas: [0.9, 0.99]``)."""


def _represent_list(dumper: yaml.SafeDumper, value: list) -> yaml.Node:
    flat = all(not isinstance(v, (list, dict)) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


def to_yaml(cfg: TrainConfig) -> str:
    """YAML text of ``cfg`` (every key, sections in order; ``from_yaml`` inverts it exactly)."""
    return yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False,
                     default_flow_style=False, width=100)


def from_yaml(text: str, source: str = "<yaml>") -> TrainConfig:
    """Parse YAML text (:func:`~burstjdd.limits.parse_yaml`: nesting, alias and integer limits)
    into a TrainConfig; ConfigError naming ``source``."""
    return config_from_dict(parse_yaml(text, source, ConfigError), source)


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config file, then apply ``key.sub=value`` overrides (:func:`apply_overrides`)."""
    path = Path(path)
    require_regular_file(path, ConfigError)  # a FIFO would block the read
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.__class__.__name__}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    return apply_overrides(from_yaml(text, str(path)), overrides)


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write ``to_yaml(cfg)`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(to_yaml(cfg), encoding="utf-8")


def apply_overrides(cfg: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """Apply command-line overrides ``section.key=value`` (value parsed as YAML by
    :func:`~burstjdd.limits.parse_yaml`; ``model.overrides.<field>=value`` sets a ModelConfig
    override; a key of at most :data:`~burstjdd.limits.MAX_NESTING` parts) and re-check
    everything."""
    if not overrides:
        return cfg
    data = config_to_dict(cfg)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {short_repr(item)}: expected key.sub=value, e.g. "
                              "optim.lr_g=2e-4")
        if key.count(".") >= MAX_NESTING:
            raise ConfigError(f"override {short_repr(item)}: a key of more than {MAX_NESTING} "
                              "parts")
        value = parse_yaml(text, f"override {short_repr(item)}", ConfigError)
        *parents, leaf = key.split(".")
        node = data
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})  # a new key is reported as unknown just below
            if not isinstance(child, dict):
                raise ConfigError(f"override {short_repr(item)}: "
                                  f"'{'.'.join(parents[:depth + 1])}' is a value, not a section")
            node = child
        node[leaf] = value
        data = config_to_dict(config_from_dict(data, f"override {short_repr(item)}"))
    return config_from_dict(data, "overrides")


# ---------------------------------------------------------------------- validation


def validate(cfg: TrainConfig, *, check_paths: bool = True) -> TrainConfig:
    """Checks that need more than one field or the outside world; returns ``cfg``.

    The model section must build a ModelConfig; the run needs at least one data path; eta_min
    must be below both learning rates; the samples of one step and the validation set must
    each fit in :data:`MAX_SAMPLES_GIB` GiB (:func:`sample_bytes`); with ``check_paths`` every
    data path (not ``builtin:``) must exist (DataError naming it).
    """
    cfg.model.model_config()
    if not cfg.data.paths:
        raise ConfigError("data.paths is empty: give at least one training source")
    _check_sample_memory(cfg)
    if cfg.schedule.eta_min >= min(cfg.optim.lr_g, cfg.optim.lr_dsnet):
        raise ConfigError(f"schedule.eta_min ({cfg.schedule.eta_min}) must be below the learning "
                          f"rates (optim.lr_g {cfg.optim.lr_g}, "
                          f"optim.lr_dsnet {cfg.optim.lr_dsnet})")
    for key in ("paths", "val_paths"):
        for p in getattr(cfg.data, key):
            if p.startswith("builtin:"):
                if p not in BUILTIN_SOURCES:
                    raise ConfigError(f"data.{key}: unknown built-in source {p!r} (known: "
                                      f"{', '.join(BUILTIN_SOURCES)})")
            elif check_paths and not Path(p).expanduser().exists():
                raise DataError(f"data.{key}: {p} does not exist")
    return cfg


def sample_bytes(data: DataSection) -> int:
    """Bytes of one training sample as the loader makes it (float32): frames, noise map and
    clean frames of (frames, 4, F/2, F/2) packed px, F = crop + 2·search_radius (the crop with
    its context), and the GT crop (3, crop, crop)."""
    side = data.crop + 2 * data.search_radius
    return 4 * (3 * data.frames * side * side + 3 * data.crop * data.crop)


def _check_sample_memory(cfg: TrainConfig) -> None:
    """ConfigError when the samples of one step, or the validation set (held for the whole
    run), take more than MAX_SAMPLES_GIB GiB: such a run would fail or swap after minutes of
    work instead of at once."""
    d, gib = cfg.data, 2**30
    side = d.crop + 2 * d.search_radius
    each = sample_bytes(d)
    what = (f"samples of {d.frames} frames of {side}x{side} px (data.crop + 2 x "
            f"data.search_radius) and a {d.crop} px GT crop, {each / 2**20:.1f} MiB each")
    step = cfg.optim.batch_size * each
    if step > MAX_SAMPLES_GIB * gib:
        raise ConfigError(f"optim.batch_size={cfg.optim.batch_size} {what}, take "
                          f"{step / gib:.1f} GiB per step, more than {MAX_SAMPLES_GIB} GiB: lower "
                          "optim.batch_size, data.crop, data.search_radius or data.frames")
    val = len(d.val_noise) * d.val_samples * each if d.val_paths else 0
    if val > MAX_SAMPLES_GIB * gib:
        raise ConfigError(f"the validation set, data.val_samples={d.val_samples} x "
                          f"{len(d.val_noise)} noise levels of {what}, takes {val / gib:.1f} "
                          f"GiB, more than {MAX_SAMPLES_GIB} GiB: lower data.val_samples")


__all__ = [
    "BUILTIN_SOURCES", "DataSection", "LossSection", "ModelSection", "OptimSection", "Precision",
    "RunSection", "ScheduleSection", "Synthesis", "TrainConfig", "apply_overrides", "config_from_dict",
    "config_to_dict", "from_yaml", "load_config", "sample_bytes", "save_config", "to_yaml",
    "validate",
]
