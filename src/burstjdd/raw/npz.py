"""``.npz`` burst files, version 1 (docs/architecture.md "Burst file (.npz), version 1").

:func:`read_npz` reads and validates one into a :class:`~burstjdd.raw.burst.RawBurst` (never
unpickling anything: files are loaded with ``allow_pickle=False`` only; ``meta`` is stored as
a JSON string); :func:`write_npz` writes one, atomically, so that reading it back is exact.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from burstjdd.errors import BurstFormatError
from burstjdd.limits import available_memory, parse_json
from burstjdd.raw.burst import RawBurst, _one_line
from burstjdd.raw.files import PathLike, atomic_output, require_regular_file
from burstjdd.raw.noise import NoiseLevel

__all__ = ["NPZ_VERSION", "read_npz", "write_npz"]

NPZ_VERSION = 1
_REQUIRED_KEYS = ("raw", "cfa", "wb", "ccm")
_OPTIONAL_KEYS = ("version", "noise", "ref", "gt", "flow", "valid", "meta")
# Zip compression methods of .npz files: np.savez stores, np.savez_compressed deflates.
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
# Deflate expands at most 1032:1 (a 258-byte match in two bits, RFC 1951); an entry claiming
# more holds fewer bytes than it declares.
_MAX_DEFLATE_RATIO = 1032
_BAD = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
        RuntimeError)  # RuntimeError: zipfile's "File is encrypted"


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
    need = _declared_bytes(f, path)
    free = available_memory()
    if free is not None and need > free:
        raise BurstFormatError(f"{path}: its arrays take {need / 2**30:.1f} GiB, more than the "
                               f"{free / 2**30:.1f} GiB of memory available")
    f.seek(0)
    try:
        npz = np.load(f, allow_pickle=False)
    except _BAD as exc:
        raise BurstFormatError(f"{path}: damaged .npz file ({_one_line(exc)})") from None
    arrays: dict[str, np.ndarray] = {}
    with npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except _BAD as exc:
                raise BurstFormatError(f"{path}: cannot read '{key}' ({_one_line(exc)})") from None
    return arrays


def _declared_bytes(f: Any, path: Path) -> int:
    """Check every zip entry of an open ``.npz`` before any array is read, and return the
    bytes its arrays declare (shape x item size, from each ``.npy`` header).

    BurstFormatError for an entry that is encrypted, compressed with another method than
    stored or deflate, not a ``.npy`` array, or whose declared size does not match what the
    zip entry holds: NumPy would allocate a forged shape in full before finding the data
    short.
    """
    try:
        archive = zipfile.ZipFile(f)
    except _BAD as exc:
        raise BurstFormatError(f"{path}: damaged .npz file ({_one_line(exc)})") from None
    total = 0
    with archive:
        for info in archive.infolist():
            name = info.filename
            if info.flag_bits & 0x1:
                raise BurstFormatError(f"{path}: zip entry '{name}' is encrypted; a burst file "
                                       "never is (write it with burstjdd or np.savez)")
            if info.compress_type not in _METHODS:
                raise BurstFormatError(
                    f"{path}: zip entry '{name}' uses compression method {info.compress_type}; "
                    f".npz files use stored or deflate (write it with burstjdd or np.savez)")
            if not name.endswith(".npy"):
                raise BurstFormatError(f"{path}: zip entry '{name}' is not a .npy array")
            shape, dtype, header = _npy_header(archive, info, path)
            if dtype.hasobject:  # stored pickled, so its size says nothing either
                raise BurstFormatError(f"{path}: cannot read '{name[:-4]}' (an array of Python "
                                       "objects, which would need unpickling; never done)")
            need = header + math.prod(shape) * dtype.itemsize
            holds = info.file_size
            packed = info.compress_size
            if need != holds or packed * _MAX_DEFLATE_RATIO < holds or (
                    info.compress_type == zipfile.ZIP_STORED and packed != holds):
                raise BurstFormatError(
                    f"{path}: '{name[:-4]}' declares shape {shape} of {dtype} ({need:,} bytes) "
                    f"but its zip entry holds {holds:,} bytes ({packed:,} in the file); the file "
                    "is damaged or forged")
            total += need
    return total


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path
                ) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length in bytes) of one ``.npy`` entry, reading its header only."""
    try:
        with archive.open(info) as entry:
            version = np.lib.format.read_magic(entry)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(entry)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(entry)
            else:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not read "
                                 "here (1.0 and 2.0 are)")
            return tuple(int(n) for n in shape), dtype, entry.tell()
    except _BAD as exc:
        key = info.filename[:-4]
        raise BurstFormatError(f"{path}: cannot read '{key}' ({_one_line(exc)})") from None


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
        meta = parse_json(text, "'meta'", BurstFormatError)
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
    if not isinstance(burst, RawBurst):
        raise TypeError(f"write_npz: burst must be a RawBurst (from read_burst or "
                        f"simulate_burst), got {type(burst).__name__}")
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
