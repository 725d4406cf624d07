"""The burst in memory: :class:`RawBurst`, Bayer mosaics plus the metadata needed to render them.

A ``RawBurst`` is built from tensors or NumPy arrays and validated on construction; every
problem raises :class:`~burstjdd.errors.BurstFormatError` with a one-line message. The small
helpers above it (float32 conversion, finite check, one-line exception text) are shared with
the other raw file modules (``npz``, ``camera``, ``image``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from burstjdd.checks import check_shape
from burstjdd.errors import BurstFormatError
from burstjdd.raw.cfa import check_pattern
from burstjdd.raw.noise import NoiseLevel, estimate_noise

__all__ = ["RawBurst"]

# A colour matrix this ill-conditioned amplifies rounding noise beyond any use; real camera
# matrices have condition numbers of order 10.
_MAX_CCM_CONDITION = 1e6


def _one_line(exc: BaseException) -> str:
    """``str(exc)`` with all whitespace runs (newlines included) collapsed to one space."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def _as_float32(name: str, x: Any, *, float_only: bool, expected: str) -> Tensor:
    """Convert a tensor or array-like to a float32 tensor (device kept), rejecting bad dtypes.

    ``float_only`` rejects integer data too: for images an integer array has an unknown scale
    (8-bit? 14-bit?), so guessing would silently give wrong values.
    """
    if isinstance(x, Tensor):
        dtype = x.dtype
        ok = dtype.is_floating_point or (
            not float_only and dtype != torch.bool and not dtype.is_complex
        )
        if not ok:
            raise BurstFormatError(f"{name} must be {expected}, got dtype {dtype}")
        return x.detach().to(torch.float32)
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise BurstFormatError(f"{name} must be {expected} ({_one_line(exc)})") from None
    allowed = "f" if float_only else "fiu"
    if a.dtype.kind not in allowed:
        raise BurstFormatError(f"{name} must be {expected}, got dtype {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _check_finite(name: str, t: Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        raise BurstFormatError(f"{name} has NaN or inf values")


@dataclass(frozen=True, eq=False)
class RawBurst:
    """A burst of Bayer mosaics with the metadata needed to restore and render it.

    Fields are validated and converted in ``__post_init__`` (NumPy arrays become tensors, float
    dtypes become float32; tensors keep their device). ``eq=False``: bursts compare by identity,
    because elementwise tensor comparison has no single truth value.

    raw:   (N, H, W) float in [0, 1], N >= 1, H and W even: mosaics after black-level
           subtraction and white-level scaling, in the file's CFA phase.
    cfa:   CFA pattern name (``PATTERNS``; any case, stored upper-cased).
    wb:    (3,) positive white-balance gains [R, G, B] (camera RGB -> white-balanced).
    ccm:   (3, 3) invertible, white-balanced camera RGB -> linear sRGB.
    noise: ``NoiseLevel`` (Var(y) = shot * x + read**2) or None (estimated on demand).
    ref:   reference frame index; -1 means N // 2 (resolved here, so ``ref`` is always >= 0).
    gt:    (3, H, W) clean linear camera RGB of the reference (simulated bursts), or None.
    flow:  (N, 2, H, W) displacement (dy, dx) of each reference pixel into frame t, in
           full-resolution pixels (simulated bursts), or None.
    valid: (N, H, W) bool, False where the reference pixel is occluded in frame t, or None.
    meta:  free-form, JSON-serialisable dict (source files, orientation, ...).
    """

    raw: Tensor
    cfa: str
    wb: Tensor
    ccm: Tensor
    noise: NoiseLevel | None = None
    ref: int = -1
    gt: Tensor | None = None
    flow: Tensor | None = None
    valid: Tensor | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        raw = _as_float32(
            "raw", self.raw, float_only=True, expected="float in [0, 1] (black level subtracted, "
            "divided by white level minus black level)",
        )
        if raw.ndim != 3:
            raise BurstFormatError(
                f"raw must have shape (N, H, W) (a stack of Bayer mosaics), got {_shape(raw)}"
            )
        n, h, w = _shape(raw)
        if n == 0:
            raise BurstFormatError("raw has no frames (N = 0)")
        if h == 0 or w == 0 or h % 2 or w % 2:
            raise BurstFormatError(f"raw height and width must be even and > 0, got {h} x {w}")
        lo, hi = (float(v) for v in torch.aminmax(raw))  # NaN propagates into both
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise BurstFormatError("raw has NaN or inf values")
        if lo < 0.0 or hi > 1.0:
            raise BurstFormatError(f"raw values must lie in [0, 1], got [{lo:.6g}, {hi:.6g}]")
        put("raw", raw)

        if not isinstance(self.cfa, str):
            raise BurstFormatError(
                f"cfa must be a pattern name string, got {type(self.cfa).__name__}"
            )
        put("cfa", check_pattern(self.cfa))

        wb = _as_float32("wb", self.wb, float_only=False, expected="3 real gains")
        if _shape(wb) != (3,):
            raise BurstFormatError(f"wb must have shape (3,), got {_shape(wb)}")
        _check_finite("wb", wb)
        if not bool((wb > 0).all()):
            raise BurstFormatError(f"wb gains must be positive, got {wb.tolist()}")
        put("wb", wb)

        ccm = _as_float32("ccm", self.ccm, float_only=False, expected="a real 3x3 matrix")
        check_shape(ccm, ["3", "3"], what="ccm")
        _check_finite("ccm", ccm)
        cond = float(torch.linalg.cond(ccm.detach().cpu().double()))
        if not cond < _MAX_CCM_CONDITION:  # also catches inf/NaN of a singular matrix
            raise BurstFormatError(f"ccm is not invertible (condition number {cond:.3g})")
        put("ccm", ccm)

        # NoiseLevel validates its own values (finite, >= 0).
        if self.noise is not None and not isinstance(self.noise, NoiseLevel):
            raise BurstFormatError(
                f"noise must be a NoiseLevel or None, got {type(self.noise).__name__}"
            )

        if isinstance(self.ref, bool) or not isinstance(self.ref, (int, np.integer)):
            raise BurstFormatError(f"ref must be an integer, got {type(self.ref).__name__}")
        ref = n // 2 if self.ref == -1 else int(self.ref)
        if not 0 <= ref < n:
            raise BurstFormatError(f"ref {int(self.ref)} is out of range for {n} frames")
        put("ref", ref)

        if self.gt is not None:
            gt = _as_float32("gt", self.gt, float_only=True, expected="float linear camera RGB")
            check_shape(gt, ["3", str(h), str(w)], what="gt")  # raw's H, W
            _check_finite("gt", gt)
            put("gt", gt)

        if self.flow is not None:
            flow = _as_float32("flow", self.flow, float_only=False, expected="real (dy, dx) pixels")
            check_shape(flow, [str(n), "2", str(h), str(w)], what="flow")  # raw's N, H, W
            _check_finite("flow", flow)
            put("flow", flow)

        if self.valid is not None:
            valid = self.valid
            if not isinstance(valid, Tensor):
                valid = np.asarray(valid)
                if valid.dtype.kind != "b":
                    raise BurstFormatError(f"valid must be a bool mask, got dtype {valid.dtype}")
                valid = torch.from_numpy(np.ascontiguousarray(valid))
            elif valid.dtype != torch.bool:
                raise BurstFormatError(f"valid must be a bool mask, got dtype {valid.dtype}")
            check_shape(valid, [str(n), str(h), str(w)], what="valid")  # raw's N, H, W
            put("valid", valid)

        if not isinstance(self.meta, dict):
            raise BurstFormatError(f"meta must be a dict, got {type(self.meta).__name__}")
        put("meta", dict(self.meta))

    @property
    def n_frames(self) -> int:
        return int(self.raw.shape[0])

    @property
    def height(self) -> int:
        return int(self.raw.shape[1])

    @property
    def width(self) -> int:
        return int(self.raw.shape[2])

    def noise_level(self) -> NoiseLevel:
        """The stored noise level, else one estimated from the mosaics (``estimate_noise``)."""
        if self.noise is not None:
            return self.noise
        return estimate_noise(self.raw, self.cfa)
