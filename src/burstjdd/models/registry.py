"""The models burstjdd knows by name, each registered once: its architecture preset, its default
ablation variant, its shipped weights, whether it is learned and its rank per kind of device.

In the spirit of timm's ``register_model`` / ``default_cfgs`` (one entry per model name, read by
every place that takes a name), but a constant table: nothing registers itself at import time.
Every other table of names reads this one: the ModelConfig presets and ``make_config`` /
``build_model`` (:mod:`burstjdd.models.jddb`), the default and shipped weights
(:func:`~burstjdd.models.hub.default_weights`, :func:`~burstjdd.models.hub.default_model`,
:func:`~burstjdd.models.hub.resolve_weights`), the ``classical`` pipeline's name
(:mod:`burstjdd.models.classical`) and ``burstjdd bench --presets``.

Standard library only, so that every module of :mod:`burstjdd.models` can read it
(:mod:`~burstjdd.models.jddb` builds the ModelConfig of each preset from it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["CLASSICAL", "MODELS", "VARIANTS", "DeviceKind", "ModelEntry", "get", "preferred",
           "preset_names"]

DeviceKind = Literal["cpu", "accelerator"]

CLASSICAL = "classical"  # the name ``restore --model`` and ``Restorer.from_pretrained`` take


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    name: what ``--model``, ``build_model`` and ``bench --presets`` take; preset: the
    :class:`~burstjdd.models.jddb.ModelConfig` fields that differ from its defaults (the
    official network), or None for a model that is not a TwoStageJDDB (``classical``);
    variant: the ablation variant (a key of :data:`VARIANTS`) ``make_config`` uses when none is
    given, None without a preset; weights: the name of its shipped weights directory under
    ``burstjdd/weights/`` (None: no weights; a registered directory may be absent from a
    given install); learned: whether it has trained weights; cpu_rank, accelerator_rank: its
    place, best first (0), among the shipped learned models when none is named for that kind of
    device (None: never the default there).
    """

    name: str
    preset: Mapping[str, object] | None
    variant: str | None = "full"
    weights: str | None = None
    learned: bool = True
    cpu_rank: int | None = None
    accelerator_rank: int | None = None

    def __post_init__(self) -> None:
        if self.preset is not None:  # read-only: the registry is a constant
            object.__setattr__(self, "preset", MappingProxyType(dict(self.preset)))

    def rank(self, kind: DeviceKind) -> int | None:
        """Its rank on a ``kind`` device (0 best), or None when it is never the default there."""
        return self.cpu_rank if kind == "cpu" else self.accelerator_rank


# Ablation variants (paper Table 4 / supplement Table 1): ModelConfig fields set over a preset.
VARIANTS: Mapping[str, Mapping[str, object]] = MappingProxyType({
    name: MappingProxyType(fields) for name, fields in {
        "full": {},
        "no_align": {"ca": "none", "ra": False},
        "ca_only": {"ra": False},
        "ra_only": {"ca": "none"},
        "no_e2e": {"ca": "bicubic"},
        "deep_ra": {"ca": "none", "ra": True, "ra_extra_offset_layers": 16},
        "no_ip": {"use_interp": False},
    }.items()
})


def _register(*entries: ModelEntry) -> Mapping[str, ModelEntry]:
    """The read-only table of ``entries`` by name; ValueError on a name registered twice or a
    default variant that does not exist (a bug in the table below, caught at import)."""
    table: dict[str, ModelEntry] = {}
    for entry in entries:
        if entry.name in table:
            raise ValueError(f"model {entry.name!r} registered twice")
        if entry.variant is not None and entry.variant not in VARIANTS:
            raise ValueError(f"model {entry.name!r}: unknown variant {entry.variant!r}")
        table[entry.name] = entry
    return MappingProxyType(table)


# Ranks: on a CPU the compact model (3.8x fewer FLOPs) is the one that restores a photo in
# reasonable time; an accelerator affords the paper's network.
MODELS: Mapping[str, ModelEntry] = _register(
    # the official network: G 12,052,144 parameters, DSNet 9,840
    ModelEntry("paper", preset={}, weights="paper", cpu_rank=1, accelerator_rank=0),
    # ~4x fewer FLOPs, for CPU users
    ModelEntry("compact", preset={"nf": 32, "residual": True}, weights="compact", cpu_rank=0,
               accelerator_rank=1),
    # compact's residual base alone: no learned part but the bundled demosaicnet
    ModelEntry(CLASSICAL, preset=None, variant=None, learned=False),
)


def get(name: str) -> ModelEntry | None:
    """The entry registered as ``name``, or None."""
    return MODELS.get(name)


def preset_names() -> tuple[str, ...]:
    """Names of the models with an architecture preset (``build_model`` / ``bench`` take
    them), in registration order."""
    return tuple(name for name, entry in MODELS.items() if entry.preset is not None)


def preferred(kind: DeviceKind) -> tuple[ModelEntry, ...]:
    """The learned models with weights that may be the default on a ``kind`` device, best
    first."""
    ranked = [e for e in MODELS.values()
              if e.learned and e.weights is not None and e.rank(kind) is not None]
    return tuple(sorted(ranked, key=lambda e: e.rank(kind)))
