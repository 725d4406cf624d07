"""Reading bursts and writing images.

* :class:`RawBurst`: a validated burst in memory (Bayer mosaics plus the metadata needed to
  render them), built from tensors or NumPy arrays.
* ``.npz`` burst files, version 1 (ARCHITECTURE.md "Burst file (.npz), version 1"), read with
  :func:`read_npz` / :func:`read_burst` and written with :func:`write_npz`. Files are loaded
  with ``allow_pickle=False`` only; ``meta`` is stored as a JSON string.
* Image writers (``.png`` 8-bit sRGB, ``.tif``/``.tiff`` 16-bit sRGB or float32 linear, ``.npy``
  float32 (H, W, 3)); every file is written through :func:`atomic_output`, so a failed write
  leaves neither a partial file nor a temporary one, and never clobbers an existing output.

Every problem with the input raises :class:`~burstjdd.errors.BurstFormatError` whose message
is one line naming the file (when there is one) and the problem.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from burstjdd.errors import BurstFormatError
from burstjdd.raw.cfa import check_pattern
from burstjdd.raw.color import render
from burstjdd.raw.noise import NoiseLevel, estimate_noise

__all__ = [
    "NPZ_VERSION",
    "RawBurst",
    "atomic_output",
    "read_burst",
    "read_npz",
    "render_srgb",
    "write_image",
    "write_npy",
    "write_npz",
    "write_png",
    "write_tiff",
]

PathLike = str | os.PathLike

NPZ_VERSION = 1
_REQUIRED_KEYS = ("raw", "cfa", "wb", "ccm")
_OPTIONAL_KEYS = ("version", "noise", "ref", "gt", "flow", "valid", "meta")
# A colour matrix this ill-conditioned amplifies rounding noise beyond any use; real camera
# matrices have condition numbers of order 10.
_MAX_CCM_CONDITION = 1e6
_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".npy")


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


def _check_shape(name: str, t: Tensor, expected: tuple[int | None, ...], text: str) -> None:
    """Raise unless ``t.shape`` matches ``expected`` (None = any size)."""
    shape = _shape(t)
    mismatch = any(e is not None and e != s for e, s in zip(expected, shape))
    if len(shape) != len(expected) or mismatch:
        raise BurstFormatError(f"{name} must have shape {text}, got {shape}")


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
        _check_shape("wb", wb, (3,), "(3,)")
        _check_finite("wb", wb)
        if not bool((wb > 0).all()):
            raise BurstFormatError(f"wb gains must be positive, got {wb.tolist()}")
        put("wb", wb)

        ccm = _as_float32("ccm", self.ccm, float_only=False, expected="a real 3x3 matrix")
        _check_shape("ccm", ccm, (3, 3), "(3, 3)")
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
            _check_shape("gt", gt, (3, h, w), f"(3, {h}, {w}) (matching raw)")
            _check_finite("gt", gt)
            put("gt", gt)

        if self.flow is not None:
            flow = _as_float32("flow", self.flow, float_only=False, expected="real (dy, dx) pixels")
            _check_shape("flow", flow, (n, 2, h, w), f"({n}, 2, {h}, {w}) (matching raw)")
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
            _check_shape("valid", valid, (n, h, w), f"({n}, {h}, {w}) (matching raw)")
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


# --------------------------------------------------------------------------------------------
# .npz bursts


def read_burst(inputs: PathLike | Sequence[PathLike]) -> RawBurst:
    """Read a burst from one ``.npz`` file (a path, or a one-element list of it).

    Raw camera files (a folder of them, or several paths) go to the raw reader, which is not
    implemented yet (issue 6) and raises ``BurstFormatError``.
    """
    if isinstance(inputs, (str, os.PathLike)):
        paths = [Path(inputs)]
    else:
        paths = [Path(p) for p in inputs]
    if not paths:
        raise BurstFormatError("no input given: pass one .npz burst")
    if any(p.suffix.lower() == ".npz" for p in paths):
        if len(paths) != 1:
            raise BurstFormatError(f"give one .npz burst on its own, got {len(paths)} inputs")
        return read_npz(paths[0])
    return _read_raw_files(paths)


def _read_raw_files(paths: list[Path]) -> RawBurst:
    """Raw camera files or a folder of them (issue 6: not implemented yet)."""
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"no such file or directory: {p}")
    raise BurstFormatError(
        f"{paths[0]}: raw camera files are not supported yet; give one .npz burst"
    )


def read_npz(path: PathLike) -> RawBurst:
    """Read and validate a version-1 ``.npz`` burst (never unpickles anything).

    A missing or unreadable file raises ``OSError``; any malformed content raises
    ``BurstFormatError("<path>: <problem>")``.
    """
    path = Path(path)
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


# --------------------------------------------------------------------------------------------
# Atomic output and image writers


def _create_temp(path: Path) -> Path:
    """Create an empty, uniquely named hidden file next to ``path`` (mode 0o666 & ~umask)."""
    for _ in range(100):
        # Keep the final suffix last: some writers choose the format from the extension.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file next to {path}")


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; move it onto ``path`` on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path``
    is left untouched, so readers only ever see a complete file or the previous one.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {parent}")
    if path.is_dir():
        raise IsADirectoryError(f"output path is a directory: {path}")
    tmp = _create_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _image_chw(image: Any, path: Path) -> Tensor:
    """Validate a (3, H, W) float image; return it as a float32 CPU tensor.

    Integer images are refused: their scale (255? 65535?) is unknown, and treating 255 as 255.0
    would silently write a white image.
    """
    try:
        t = _as_float32("image", image, float_only=True, expected="a float (3, H, W) image")
        _check_shape("image", t, (3, None, None), "(3, H, W)")
        _check_finite("image", t)
    except BurstFormatError as exc:
        raise BurstFormatError(f"{path}: {exc}; nothing written") from None
    return t.cpu()


def _quantize_hwc(chw: Tensor, levels: int, dtype: type) -> np.ndarray:
    """(3, H, W) values in [0, 1] (clipped) -> (H, W, 3) integers round(x * levels)."""
    x = np.clip(chw.numpy().transpose(1, 2, 0), 0.0, 1.0)
    return np.ascontiguousarray(np.round(x * levels).astype(dtype))


def write_png(image: Any, path: PathLike) -> None:
    """Write a (3, H, W) sRGB image with values in [0, 1] as an 8-bit PNG, atomically.

    Values are clipped to [0, 1] and rounded (half to even) to round(255 * x).
    """
    from PIL import Image

    path = Path(path)
    u8 = _quantize_hwc(_image_chw(image, path), 255, np.uint8)
    with atomic_output(path) as tmp:
        Image.fromarray(u8).save(tmp, format="PNG")


def write_tiff(image: Any, path: PathLike, *, linear: bool = False) -> None:
    """Write a (3, H, W) image as an RGB TIFF, atomically.

    ``linear=False``: sRGB in [0, 1] -> 16-bit, clipped and rounded to round(65535 * x).
    ``linear=True``: float32 values as they are (no clipping; linear data may exceed 1).
    """
    import tifffile

    path = Path(path)
    chw = _image_chw(image, path)
    if linear:
        data = np.ascontiguousarray(chw.numpy().transpose(1, 2, 0))
    else:
        data = _quantize_hwc(chw, 65535, np.uint16)
    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, data, photometric="rgb")


def write_npy(image: Any, path: PathLike) -> None:
    """Write a (3, H, W) image as a float32 (H, W, 3) ``.npy`` array (values as they are)."""
    path = Path(path)
    hwc = np.ascontiguousarray(_image_chw(image, path).numpy().transpose(1, 2, 0))
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, hwc, allow_pickle=False)


def render_srgb(rgb: Any, burst: RawBurst) -> Tensor:
    """Render linear camera RGB (..., 3, H, W) to sRGB in [0, 1] with the burst's metadata.

    ``render(rgb, burst.wb, burst.ccm)``: white balance -> clamp -> CCM -> clamp -> gamma
    (METHOD.md, the Γ of the paper). Follows ``rgb``'s device and float dtype.
    """
    rgb = torch.as_tensor(rgb)
    if not rgb.is_floating_point():
        rgb = rgb.to(torch.float32)
    wb = burst.wb.to(device=rgb.device, dtype=rgb.dtype)
    ccm = burst.ccm.to(device=rgb.device, dtype=rgb.dtype)
    return render(rgb, wb, ccm)


def write_image(
    image: Any, path: PathLike, space: str = "srgb", burst: RawBurst | None = None
) -> None:
    """Write a restored image, choosing the format by extension; atomic.

    ``image`` is always LINEAR CAMERA RGB, (3, H, W) (what the model outputs).

    * ``space="srgb"``: rendered with :func:`render_srgb` using ``burst``'s wb and ccm (so
      ``burst`` is required), then written as ``.png`` (8-bit), ``.tif``/``.tiff`` (16-bit) or
      ``.npy`` (float32 (H, W, 3) in [0, 1]).
    * ``space="linear"``: written as it is, ``.tif``/``.tiff`` float32 or ``.npy`` float32;
      ``.png`` is refused (PNG is 8-bit sRGB only).

    To write an image that is already sRGB, call :func:`write_png`, :func:`write_tiff` or
    :func:`write_npy` directly. ``.dng`` output is not supported yet (issue 6).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if space not in ("srgb", "linear"):
        raise BurstFormatError(f"{path}: space must be 'srgb' or 'linear', got {space!r}")
    if ext == ".dng":
        raise BurstFormatError(
            f"{path}: writing .dng is not supported yet; use {', '.join(_IMAGE_SUFFIXES)}"
        )
    if ext not in _IMAGE_SUFFIXES:
        raise BurstFormatError(
            f"{path}: unsupported output extension {ext or '(none)'!r}; "
            f"use {', '.join(_IMAGE_SUFFIXES)}"
        )
    if ext == ".png" and space == "linear":
        raise BurstFormatError(
            f"{path}: PNG is 8-bit sRGB only; use .tif or .npy for linear output"
        )
    if space == "srgb" and burst is None:
        raise BurstFormatError(
            f"{path}: sRGB output needs the burst's wb and ccm (pass burst=, or space='linear')"
        )
    rgb = _image_chw(image, path)
    if space == "srgb":
        rgb = render_srgb(rgb, burst)
    if ext == ".png":
        write_png(rgb, path)
    elif ext in (".tif", ".tiff"):
        write_tiff(rgb, path, linear=space == "linear")
    else:
        write_npy(rgb, path)
