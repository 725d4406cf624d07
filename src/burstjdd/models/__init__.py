"""The two-stage alignment network (DSNet + DPBM coarse alignment, deformable refinement,
ConvGRU fusion, UNet) and its weights."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelConfig": "burstjdd.models.jddb",
    "TwoStageJDDB": "burstjdd.models.jddb",
    "JDDBOutput": "burstjdd.models.jddb",
    "build_model": "burstjdd.models.jddb",
    "save_pretrained": "burstjdd.models.hub",
    "load_pretrained": "burstjdd.models.hub",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'burstjdd.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
