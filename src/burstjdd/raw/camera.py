"""Raw camera files: DNG and whatever LibRaw reads, through rawpy (DNG tags through tifffile).

:func:`read_raw_frame` reads one file as stored (:class:`RawFrame`: sensor orientation, values
not normalised); :func:`read_raw_files` makes a :class:`~burstjdd.raw.burst.RawBurst` of
several: it checks that they agree (size, CFA pattern, black and white levels, else the odd
file is named), normalises the mosaics and takes white balance, colour matrix and noise level
from the reference frame, with the documented fallbacks (:data:`FALLBACK_WB`,
:func:`ccm_from_xyz2cam`). rawpy is an optional dependency, imported where a file is read.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from burstjdd.errors import BurstFormatError
from burstjdd.raw.burst import _MAX_CCM_CONDITION, RawBurst, _one_line
from burstjdd.raw.cfa import PATTERNS
from burstjdd.raw.files import (
    InputNotFoundError,
    PathLike,
    check_readable,
    require_regular_file,
)
from burstjdd.raw.metadata import META_KEY, read_camera_tags
from burstjdd.raw.noise import MAX_NOISE, NoiseLevel
from burstjdd.raw.reference import _resolve_ref
from burstjdd.raw.unprocess import rgb2cam_from_xyz2cam

__all__ = [
    "FALLBACK_WB",
    "RAW_SUFFIXES",
    "RawFrame",
    "ccm_from_xyz2cam",
    "read_raw_files",
    "read_raw_frame",
]

# Suffixes of the raw formats LibRaw reads; a folder is searched for these (any case).
RAW_SUFFIXES: frozenset[str] = frozenset(
    ".3fr .ari .arw .bay .cap .cr2 .cr3 .crw .dcr .dcs .dng .drf .eip .erf .fff .iiq .k25 .kdc "
    ".mdc .mef .mos .mrw .nef .nrw .orf .pef .ptx .pxn .r3d .raf .raw .rw2 .rwl .rwz .sr2 .srf "
    ".srw .x3f".split()
)

# White balance of a file that has none: the gains of the synthetic test protocol
# (docs/protocol.md "Synthetic test bursts": red 2.0, blue 1.7), a typical daylight balance.
FALLBACK_WB: tuple[float, float, float] = (2.0, 1.0, 1.7)

# TIFF / DNG tag codes (DNG specification 1.4).
_TAG_DNG_VERSION = 50706
_TAG_UNIQUE_CAMERA_MODEL = 50708
_TAG_COLOR_MATRIX = (50721, 50722)       # ColorMatrix1, ColorMatrix2 (XYZ -> camera)
_TAG_AS_SHOT_NEUTRAL = 50728
_TAG_ILLUMINANT = (50778, 50779)         # CalibrationIlluminant1, 2
_TAG_NOISE_PROFILE = 51041
_D65 = 21                                # EXIF LightSource code of D65

# LibRaw's ``sizes.flip`` -> TIFF/EXIF Orientation. LibRaw sets flip = "50132467"[tag & 7]
# from the tag; this is its inverse.
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}

# LibRaw prints some problems itself on file descriptor 2; one lock, so that two threads never
# redirect it at the same time.
_FD2_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class RawFrame:
    """One raw camera file as stored (sensor orientation, values not normalised).

    path:        the file.
    data:        (H, W) uint16, the visible area (LibRaw's ``raw_image_visible``, copied).
    cfa:         pattern name of the visible area's top-left 2x2 cell (one of ``PATTERNS``).
    black:       (4,) black level of the 2x2 cell's sites in reading order.
    white:       (4,) white (saturation) level of the same sites.
    wb:          (3,) as-shot gains [R/G, 1, B/G], or None when the file has none.
    daylight_wb: (3,) the camera's daylight gains [R/G, 1, B/G] per LibRaw, or None.
    xyz2cam:     (3, 3) XYZ -> camera colour matrix, or None when the file has none.
    noise:       noise level from the DNG NoiseProfile tag, or None.
    orientation: TIFF/EXIF Orientation 1..8 of the stored image (see :func:`orient_image`).
    camera:      the DNG UniqueCameraModel, or "" when unknown.
    metadata:    the camera metadata to carry to outputs (Make, Model, exposure, DNG colour
                 calibration, ...; :func:`~burstjdd.raw.metadata.read_camera_tags`), {} if none.
    """

    path: Path
    data: np.ndarray
    cfa: str
    black: tuple[float, ...]
    white: tuple[float, ...]
    wb: np.ndarray | None
    daylight_wb: np.ndarray | None
    xyz2cam: np.ndarray | None
    noise: NoiseLevel | None
    orientation: int
    camera: str
    metadata: dict = field(default_factory=dict)


@contextlib.contextmanager
def _captured_fd2() -> Iterator[list[str]]:
    """Collect what C code prints on file descriptor 2 while the block runs.

    LibRaw reports some problems (e.g. "Unexpected end of file") by printing them itself; they
    are caught here so that they end up in our one-line error (or a warning) instead of on the
    terminal. Yields a list that holds the text once the block has finished.
    """
    text: list[str] = []
    with _FD2_LOCK, tempfile.TemporaryFile() as sink:
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 at all: nothing can be printed on it either
            yield text
            return
        try:
            if sys.stderr is not None:
                sys.stderr.flush()  # Python's own pending output is not LibRaw's
            os.dup2(sink.fileno(), 2)
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.append(sink.read().decode("utf-8", "replace"))


# tifffile's log line for a tag value it cannot interpret, e.g.
# "<tifffile.TiffTag 274 @94> raised ValueError('9 is not a valid ORIENTATION')".
_TIFFFILE_TAG_RE = re.compile(r"<tifffile\.TiffTag (\d+) @\d+> raised \w+\((['\"]?)(.*)\2\)")


class _Collect(logging.Handler):
    """A logging handler that keeps the messages it is given."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


@contextlib.contextmanager
def _tifffile_log_as_warnings(path: Path) -> Iterator[None]:
    """Turn what tifffile logs while the block runs (it logs tag values it cannot interpret,
    then goes on without them) into one warning each that names ``path``, instead of its raw
    log lines on stderr."""
    logger = logging.getLogger("tifffile")
    collect, propagate = _Collect(), logger.propagate
    logger.addHandler(collect)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate
    for message in dict.fromkeys(collect.messages):  # once: both tag readers open the file
        match = _TIFFFILE_TAG_RE.fullmatch(message)
        text = (f"TIFF tag {match[1]} ignored ({match[3]})" if match
                else f"tifffile: {message}")
        warnings.warn(f"{path}: {text}", stacklevel=4)


def _import_rawpy() -> Any:
    """rawpy (LibRaw), an optional dependency imported where raw files are read; a one-line
    ConfigError when it is missing."""
    try:
        import rawpy
    except ImportError:
        from burstjdd.errors import ConfigError

        raise ConfigError("reading raw camera files needs rawpy: pip install rawpy") from None
    return rawpy


def _libraw_text(exc: BaseException) -> str:
    """rawpy's error text (its messages are bytes, e.g. b'Input/output error')."""
    arg = exc.args[0] if exc.args else ""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return " ".join(text.split()) or type(exc).__name__


def read_raw_frame(path: PathLike) -> RawFrame:
    """Read one raw camera file with rawpy (LibRaw), plus its DNG tags with tifffile.

    * data: the visible area, copied (rawpy's buffers die with its file handle);
    * CFA pattern from the file (LibRaw's ``raw_pattern`` and ``color_desc``, shifted to the
      visible area's origin); anything but a 2x2 Bayer pattern (X-Trans, CMYG, ...), and
      linear (demosaiced) raw data, raise ``BurstFormatError``;
    * black level per site (``black_level_per_channel``) and white level
      (``camera_white_level_per_channel`` when the file has it, else ``white_level``);
    * as-shot white balance: the DNG AsShotNeutral n as gains 1/n, else LibRaw's
      ``camera_whitebalance``; both normalised to [R/G, 1, B/G]; zeros mean none;
    * colour matrix XYZ -> camera: for DNG files the tag calibrated for D65
      (CalibrationIlluminant 21), else ColorMatrix2 (usually the daylight one, as the official
      real-data code uses), else ColorMatrix1 (rawpy reports zeros for some DNGs, so the tags
      are read with tifffile); for other files LibRaw's ``rgb_xyz_matrix`` (first 3 rows);
    * noise: the DNG NoiseProfile (S_i, O_i) pairs, Var = S x + O in normalised units, as
      ``NoiseLevel(shot=mean S, read=sqrt(mean O))``; read from the raw IFD, else IFD0;
    * orientation from LibRaw's ``sizes.flip`` (the TIFF Orientation tag of DNGs).
    * metadata: Make, Model, exposure and DNG colour tags with tifffile
      (:func:`~burstjdd.raw.metadata.read_camera_tags`).

    Raises ``BurstFormatError("<path>: <problem>")`` for a file that is not a readable Bayer
    raw (corrupt, truncated, a JPEG, ...); :class:`InputNotFoundError` for a missing path.
    """
    rawpy = _import_rawpy()

    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        raise BurstFormatError(f"{path}: is a folder, not a raw file")
    require_regular_file(path)
    check_readable(path)  # LibRaw would say only "Input/output error"
    failure = None
    with _captured_fd2() as printed:
        try:
            with rawpy.imread(str(path)) as r:
                fields = _rawpy_fields(r, path)
        except rawpy.LibRawError as exc:
            failure = _libraw_text(exc)
    # LibRaw's own messages start with the path; drop it, we name the file once.
    said = " ".join(printed[0].replace(f"{path}: ", "").split()) if printed else ""
    if failure is not None:
        detail = "; ".join(t for t in (failure, said) if t)
        raise BurstFormatError(f"{path}: not a readable raw file (LibRaw: {detail})")
    if said:
        warnings.warn(f"{path}: LibRaw: {said}", stacklevel=2)

    with _tifffile_log_as_warnings(path):
        tags = _dng_tags(path)
        metadata = read_camera_tags(path)
    if _TAG_AS_SHOT_NEUTRAL in tags:
        neutral = _rationals(tags[_TAG_AS_SHOT_NEUTRAL])
        with np.errstate(divide="ignore", invalid="ignore"):
            fields["wb"] = _gains(1.0 / neutral)
    if any(code in tags for code in _TAG_COLOR_MATRIX):
        fields["xyz2cam"] = _dng_color_matrix(tags)
    noise = None
    if _TAG_NOISE_PROFILE in tags:
        noise = _noise_from_profile(tags[_TAG_NOISE_PROFILE], path)
    camera = tags.get(_TAG_UNIQUE_CAMERA_MODEL, "")
    return RawFrame(path=path, noise=noise, camera=str(camera).strip(), metadata=metadata,
                    **fields)


def _rawpy_fields(r: Any, path: Path) -> dict[str, Any]:
    """What is read through an open ``rawpy.RawPy``: RawFrame fields but path/noise/camera."""
    rawpy = _import_rawpy()

    if r.raw_type != rawpy.RawType.Flat:
        raise BurstFormatError(
            f"{path}: holds linear (demosaiced) data, not a Bayer mosaic; give the sensor's raw"
        )
    try:
        pattern = r.raw_pattern
    except NotImplementedError:  # a filter layout rawpy cannot express
        pattern = None
    if pattern is None or pattern.shape != (2, 2):
        size = "unknown" if pattern is None else "x".join(str(s) for s in pattern.shape)
        raise BurstFormatError(
            f"{path}: CFA pattern of size {size} (e.g. X-Trans) is not a 2x2 Bayer pattern"
        )
    s = r.sizes
    # raw_pattern is in full-raw coordinates; the visible area starts at the margins.
    cell = np.roll(np.asarray(pattern), (-s.top_margin, -s.left_margin), axis=(0, 1)).ravel()
    colours = r.color_desc.decode("ascii", "replace")
    name = "".join(colours[i] if i < len(colours) else "?" for i in cell)
    if name not in PATTERNS:
        raise BurstFormatError(
            f"{path}: CFA pattern {name} is not a Bayer pattern ({', '.join(PATTERNS)})"
        )
    black = np.asarray(r.black_level_per_channel, dtype=np.float64)[cell]
    levels = r.camera_white_level_per_channel
    if levels is not None:
        white = np.asarray(levels, dtype=np.float64)[cell]
    else:
        white = np.full(4, float(r.white_level))
    if not np.all(white > black):
        raise BurstFormatError(
            f"{path}: white level {white.tolist()} is not above black level {black.tolist()}"
        )
    xyz2cam = np.asarray(r.rgb_xyz_matrix, dtype=np.float64)[:3]
    daylight = _gains(r.daylight_whitebalance)
    if daylight is not None and np.all(daylight == 1.0):
        daylight = None  # LibRaw's placeholder when it knows nothing about the camera
    return {
        "data": np.array(r.raw_image_visible, copy=True),
        "cfa": name,
        "black": tuple(black.tolist()),
        "white": tuple(white.tolist()),
        "wb": _gains(r.camera_whitebalance),
        "daylight_wb": daylight,
        "xyz2cam": xyz2cam if np.any(xyz2cam) else None,
        "orientation": _FLIP_TO_ORIENTATION.get(int(s.flip), 1),
    }


def _gains(multipliers: Any) -> np.ndarray | None:
    """Channel multipliers [R, G, B, (G2)] -> gains [R/G, 1, B/G]; None unless all > 0."""
    m = np.asarray(multipliers, dtype=np.float64).ravel()[:3]
    if m.shape != (3,) or not np.all(np.isfinite(m) & (m > 0)):
        return None
    return m / m[1]


def _dng_tags(path: Path) -> dict[int, Any]:
    """The DNG tags used here, by code ({} for a file that is not a DNG).

    Colour tags live in IFD0; NoiseProfile belongs to the raw IFD (the one with
    NewSubfileType 0: IFD0 or one of its SubIFDs), some writers put it in IFD0.
    """
    import tifffile

    with open(path, "rb") as f:
        if f.read(4) not in (b"II*\x00", b"MM\x00*"):
            return {}
    wanted = (_TAG_UNIQUE_CAMERA_MODEL, _TAG_AS_SHOT_NEUTRAL, _TAG_NOISE_PROFILE,
              *_TAG_COLOR_MATRIX, *_TAG_ILLUMINANT)
    try:
        with tifffile.TiffFile(path) as tif:
            ifd0 = tif.pages.first
            if _TAG_DNG_VERSION not in ifd0.tags:
                return {}
            tags = {code: ifd0.tags[code].value for code in wanted if code in ifd0.tags}
            raw_ifds = [ifd0] if ifd0.subfiletype == 0 else []
            raw_ifds += [p for p in (ifd0.pages or ()) if p.subfiletype == 0]
            for ifd in raw_ifds[:1]:
                if _TAG_NOISE_PROFILE in ifd.tags:
                    tags[_TAG_NOISE_PROFILE] = ifd.tags[_TAG_NOISE_PROFILE].value
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError) as exc:
        raise BurstFormatError(f"{path}: cannot read the DNG tags ({_one_line(exc)})") from None
    return tags


def _rationals(value: Any) -> np.ndarray:
    """A (S)RATIONAL tag's value as floats: tifffile gives (num, den, num, den, ...)."""
    a = np.asarray(value, dtype=np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        return a[0::2] / a[1::2] if a.size % 2 == 0 else np.full(1, np.nan)


def _dng_color_matrix(tags: dict[int, Any]) -> np.ndarray | None:
    """XYZ -> camera (3, 3): the ColorMatrix calibrated for D65, else ColorMatrix2, else 1."""
    found = [
        (tags[code], tags.get(illuminant))
        for code, illuminant in zip(_TAG_COLOR_MATRIX, _TAG_ILLUMINANT) if code in tags
    ]
    value = next((m for m, light in found if light == _D65), found[-1][0])
    m = _rationals(value)
    if m.size < 9 or m.size % 3:
        return None
    return m.reshape(-1, 3)[:3]  # a 4-colour camera has 4 rows; Bayer uses the first 3


def _noise_from_profile(value: Any, path: Path) -> NoiseLevel | None:
    """DNG NoiseProfile (S_1, O_1, ..., S_k, O_k): Var = S x + O -> NoiseLevel(mean S,
    sqrt(mean O)). A malformed profile (odd length, values outside 0..MAX_NOISE) warns and gives
    None (the noise is then estimated)."""
    v = np.asarray(value, dtype=np.float64).ravel()
    if v.size < 2 or v.size % 2 or not np.all(np.isfinite(v) & (v >= 0) & (v <= MAX_NOISE)):
        warnings.warn(f"{path}: ignoring malformed NoiseProfile {v.tolist()}", stacklevel=3)
        return None
    return NoiseLevel(shot=float(v[0::2].mean()), read=math.sqrt(float(v[1::2].mean())))


def _frame_colour(frame: RawFrame) -> tuple[np.ndarray, np.ndarray]:
    """(wb (3,), ccm (3, 3)) of a frame, with the documented fallbacks (each warns)."""
    wb = frame.wb
    if wb is None:
        wb = frame.daylight_wb
        if wb is not None:
            warnings.warn(
                f"{frame.path}: no as-shot white balance; using the camera's daylight balance "
                f"{np.round(wb, 4).tolist()}", stacklevel=3,
            )
        else:
            wb = np.array(FALLBACK_WB)
            warnings.warn(
                f"{frame.path}: no white balance in the file; using {list(FALLBACK_WB)}",
                stacklevel=3,
            )
    ccm = ccm_from_xyz2cam(frame.xyz2cam)
    if ccm is None:
        ccm = np.eye(3)
        warnings.warn(
            f"{frame.path}: no usable colour matrix; using the identity (colours will be off)",
            stacklevel=3,
        )
    return wb, ccm


def ccm_from_xyz2cam(xyz2cam: np.ndarray | None) -> np.ndarray | None:
    """White-balanced camera RGB -> linear sRGB from an XYZ -> camera matrix (e.g. a DNG
    ColorMatrix), as the official real-data code and Brooks et al. build it.

    xyz2cam (3, 3) -> inverse of rgb2cam = xyz2cam @ sRGB->XYZ (D65) with rows normalised to
    sum 1 (:func:`~burstjdd.raw.unprocess.rgb2cam_from_xyz2cam`), float64. None when the
    matrix is missing, zero, not finite or (nearly) singular.
    """
    if xyz2cam is None:
        return None
    m = np.asarray(xyz2cam, dtype=np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)) or not np.any(m):
        return None
    rgb2cam = rgb2cam_from_xyz2cam(torch.from_numpy(m)).numpy()
    if not np.all(np.isfinite(rgb2cam)) or not np.linalg.cond(rgb2cam) < _MAX_CCM_CONDITION:
        return None
    return np.linalg.inv(rgb2cam)


def _normalised(frame: RawFrame) -> np.ndarray:
    """(H, W) float32 (data - black) / (white - black) per CFA site, clipped to [0, 1]."""
    h, w = frame.data.shape
    reps = (-(-h // 2), -(-w // 2))
    black = np.tile(np.reshape(frame.black, (2, 2)), reps)[:h, :w]
    white = np.tile(np.reshape(frame.white, (2, 2)), reps)[:h, :w]
    x = (frame.data.astype(np.float64) - black) / (white - black)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _pad_even(x: np.ndarray) -> np.ndarray:
    """(H, W) -> even (H', W'): an odd last row/column is followed by a copy of the one two
    before the edge, which has the same CFA colour (so the pattern stays valid)."""
    if x.shape[0] % 2:
        x = np.concatenate([x, x[-2:-1]], axis=0)
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -2:-1]], axis=1)
    return x


def _check_same(first: RawFrame, frame: RawFrame) -> None:
    """Frames of one burst must share size, pattern and levels; name the odd file if not."""
    def size(f: RawFrame) -> str:
        return f"{f.data.shape[1]}x{f.data.shape[0]} (width x height)"

    for what, get in (
        ("size", size),
        ("CFA pattern", lambda f: f.cfa),
        ("black levels", lambda f: list(f.black)),
        ("white levels", lambda f: list(f.white)),
    ):
        if get(frame) != get(first):
            raise BurstFormatError(
                f"{frame.path}: {what} {get(frame)} differs from {get(first)} of "
                f"{first.path.name}; all frames must come from one camera setting"
            )


def read_raw_files(paths: Sequence[PathLike], *, ref: int | str | None = None) -> RawBurst:
    """Read raw camera files (one burst, in this order) into a :class:`RawBurst`.

    Each file is read by :func:`read_raw_frame`; all must agree in size, CFA pattern and
    black/white levels (else ``BurstFormatError`` naming the odd file). Mosaics are
    normalised per CFA site to (raw - black) / (white - black), clipped to [0, 1], and kept in
    the sensor's orientation and the file's phase. An odd height/width is padded to even by
    repeating the row/column two before the edge (same CFA colour); ``meta["size"]`` keeps the
    visible size [H0, W0], so :func:`write_image` crops outputs back to it.

    White balance, colour matrix and noise level come from the reference frame (``ref`` as in
    :func:`read_burst`); wb falls back to the camera's daylight balance, then
    :data:`FALLBACK_WB`, and a missing colour matrix to the identity, each with a warning.
    ``noise`` is None without a DNG NoiseProfile (``RawBurst.noise_level()`` estimates it).
    meta: files (names), size, orientation (of the reference frame; :func:`write_image`
    turns outputs upright with it), camera (when known), camera_tags (the reference frame's
    metadata that outputs keep, :mod:`burstjdd.raw.metadata`; when it has any).
    """
    if not paths:
        raise BurstFormatError("no raw files given")
    frames = [read_raw_frame(p) for p in paths]
    first = frames[0]
    for frame in frames[1:]:
        _check_same(first, frame)
    h0, w0 = first.data.shape
    if h0 < 2 or w0 < 2:
        raise BurstFormatError(f"{first.path}: visible area {w0}x{h0} is too small")
    raw = torch.from_numpy(np.stack([_pad_even(_normalised(f)) for f in frames]))
    k = _resolve_ref(ref, raw, first.cfa)
    wb, ccm = _frame_colour(frames[k])
    meta: dict[str, Any] = {
        "files": [f.path.name for f in frames],
        "size": [int(h0), int(w0)],
        "orientation": frames[k].orientation,
    }
    if frames[k].camera:
        meta["camera"] = frames[k].camera
    if frames[k].metadata:
        meta[META_KEY] = frames[k].metadata
    return RawBurst(
        raw=raw, cfa=first.cfa, wb=wb, ccm=ccm, noise=frames[k].noise, ref=k, meta=meta
    )
