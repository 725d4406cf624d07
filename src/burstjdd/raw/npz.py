"""``.npz`` burst files, version 1 (docs/architecture.md "Burst file (.npz), version 1").

:func:`read_npz` reads and validates one into a :class:`~burstjdd.raw.burst.RawBurst` (never
unpickling anything: files are loaded with ``allow_pickle=False`` only; ``meta`` is stored as
a JSON string); :func:`write_npz` writes one, atomically, so that reading it back is exact.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from burstjdd.errors import BurstFormatError
from burstjdd.raw.burst import RawBurst, _one_line
from burstjdd.raw.files import PathLike, atomic_output, require_regular_file
from burstjdd.raw.noise import NoiseLevel

__all__ = ["NPZ_VERSION", "read_npz", "write_npz"]

NPZ_VERSION = 1
_REQUIRED_KEYS = ("raw", "cfa", "wb", "ccm")
_OPTIONAL_KEYS = ("version", "noise", "ref", "gt", "flow", "valid", "meta")


def read_npz(path: PathLike) -> RawBurst:
    """Read and validate a version-1 ``.npz`` burst (never unpickles anything).

    A missing or unreadable file raises ``OSError``; any malformed content, and a path that is
    not a regular file (a folder, a FIFO, a device), raises ``BurstFormatError("<path>:
    <problem>")``.
    """
    path = Path(path)
    require_regular_file(path)
    with open(path, "rb") as f:
        arrays = _load_npz_arrays(f, path)
    try:
        return _burst_from_arrays(arrays)
    except BurstFormatError as exc:
        raise BurstFormatError(f"{path}: {exc}") from None


def _load_npz_arrays(f: Any, path: Path) -> dict[str, np.ndarray]:
    """All arrays of an open ``.npz`` file, read eagerly so corruption shows up here."""
    head = f.read(6)
    f.seek(0)
    if head.startswith(b"\x93NUMPY"):
        raise BurstFormatError(f"{path}: is a single .npy array, not an .npz burst")
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise BurstFormatError(f"{path}: not an .npz file (not a zip archive)")
    bad = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        npz = np.load(f, allow_pickle=False)
    except bad as exc:
        raise BurstFormatError(f"{path}: damaged .npz file ({_one_line(exc)})") from None
    arrays: dict[str, np.ndarray] = {}
    with npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except bad as exc:
                raise BurstFormatError(f"{path}: cannot read '{key}' ({_one_line(exc)})") from None
    return arrays


def _scalar(a: dict[str, np.ndarray], key: str, kinds: str, expected: str) -> np.ndarray:
    """The 0-d array ``a[key]``, checked to have a dtype kind in ``kinds``."""
    v = np.asarray(a[key])
    if v.ndim != 0 or v.dtype.kind not in kinds:
        raise BurstFormatError(
            f"'{key}' must be {expected}, got {v.dtype} array of shape {v.shape}"
        )
    return v


def _burst_from_arrays(a: dict[str, np.ndarray]) -> RawBurst:
    """Build a ``RawBurst`` from the arrays of a version-1 file (messages without the path)."""
    unknown = sorted(set(a) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:
        known = ", ".join(_REQUIRED_KEYS + _OPTIONAL_KEYS)
        raise BurstFormatError(f"unknown key(s) {', '.join(unknown)} (known keys: {known})")
    missing = [k for k in _REQUIRED_KEYS if k not in a]
    if missing:
        raise BurstFormatError(f"missing required key(s) {', '.join(missing)}")

    version = int(_scalar(a, "version", "iu", "an integer")) if "version" in a else NPZ_VERSION
    if version != NPZ_VERSION:
        raise BurstFormatError(
            f"unsupported burst file version {version} (this reads {NPZ_VERSION})"
        )

    cfa = _scalar(a, "cfa", "US", "a pattern name string").item()
    cfa = cfa.decode("ascii", "replace") if isinstance(cfa, bytes) else str(cfa)

    noise = None
    if "noise" in a:
        v = np.asarray(a["noise"])
        if v.shape != (2,) or v.dtype.kind != "f":
            raise BurstFormatError(
                f"'noise' must be (2,) float [shot, read], got {v.dtype} {v.shape}"
            )
        noise = NoiseLevel(shot=float(v[0]), read=float(v[1]))

    ref = int(_scalar(a, "ref", "iu", "an integer")) if "ref" in a else -1

    gt = None
    if "gt" in a:
        gt = np.asarray(a["gt"])
        if gt.ndim != 3 or gt.shape[-1] != 3:
            raise BurstFormatError(f"'gt' must have shape (H, W, 3) in the file, got {gt.shape}")
        gt = np.moveaxis(gt, -1, 0)  # file (H, W, 3) -> memory (3, H, W)

    meta: dict = {}
    if "meta" in a:
        text = _scalar(a, "meta", "U", "a JSON string").item()
        try:
            meta = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BurstFormatError(f"'meta' is not valid JSON ({_one_line(exc)})") from None
        if not isinstance(meta, dict):
            raise BurstFormatError(f"'meta' must be a JSON object, got {type(meta).__name__}")

    return RawBurst(
        raw=a["raw"], cfa=cfa, wb=a["wb"], ccm=a["ccm"], noise=noise, ref=ref, gt=gt,
        flow=a.get("flow"), valid=a.get("valid"), meta=meta,
    )


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def write_npz(burst: RawBurst, path: PathLike, *, compress: bool = False) -> None:
    """Write ``burst`` as a version-1 ``.npz`` file, atomically; reading it back is exact.

    Optional fields are written only when set. ``noise`` is stored as float64 so the
    ``NoiseLevel`` floats survive bit for bit (readers accept float32 too). ``compress`` uses
    zip deflate (smaller, much slower).
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise BurstFormatError(f"{path}: a burst file name must end in .npz")
    arrays: dict[str, np.ndarray] = {
        "version": np.array(NPZ_VERSION, dtype=np.int64),
        "raw": _numpy(burst.raw),
        "cfa": np.array(burst.cfa),
        "wb": _numpy(burst.wb),
        "ccm": _numpy(burst.ccm),
        "ref": np.array(burst.ref, dtype=np.int64),
    }
    if burst.noise is not None:
        arrays["noise"] = np.array([burst.noise.shot, burst.noise.read], dtype=np.float64)
    if burst.gt is not None:
        arrays["gt"] = _numpy(burst.gt).transpose(1, 2, 0)  # (3, H, W) -> file (H, W, 3)
    if burst.flow is not None:
        arrays["flow"] = _numpy(burst.flow)
    if burst.valid is not None:
        arrays["valid"] = _numpy(burst.valid)
    if burst.meta:
        try:
            arrays["meta"] = np.array(json.dumps(burst.meta))
        except (TypeError, ValueError) as exc:
            raise BurstFormatError(
                f"{path}: meta is not JSON-serialisable ({_one_line(exc)})"
            ) from None
    save = np.savez_compressed if compress else np.savez
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        save(f, **arrays)  # all arrays are numeric, bool or str: nothing is pickled
