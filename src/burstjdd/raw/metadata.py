"""Camera metadata carried from raw inputs to outputs: Make, Model, lens, exposure, capture time
and the DNG colour calibration of the reference frame.

:func:`read_camera_tags` reads the tags of :data:`CAMERA_TAGS` from a TIFF-based raw file (DNG,
and the capture tags of NEF, CR2, ARW, ...) with tifffile, into a JSON-serialisable dict
``{name: value}`` that :func:`~burstjdd.raw.camera.read_raw_files` keeps in
``RawBurst.meta["camera_tags"]`` (so it also survives a ``.npz``). The writers put it back:
IFD0 tags through tifffile's ``extratags`` (:func:`ifd0_extratags`), the EXIF ones in an EXIF
IFD that :func:`append_exif_ifd` adds to the written file (tifffile writes no EXIF IFD itself).

Values, as stored in the file: ASCII text as ``str``; SHORT as a list of ints; (S)RATIONAL as
a flat list ``[numerator, denominator, ...]`` of ints (exact, no float rounding). Colour tags
are kept only for 3-colour (RGB Bayer) cameras: 3 x 3 matrices, 3 gains.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from burstjdd.errors import BurstFormatError

__all__ = [
    "CAMERA_TAGS",
    "COLOR_TAGS",
    "META_KEY",
    "TagSpec",
    "append_exif_ifd",
    "check_camera_tags",
    "exif_entries",
    "ifd0_extratags",
    "read_camera_tags",
]

META_KEY = "camera_tags"  # where RawBurst.meta keeps them
EXIF_IFD = 34665          # IFD0 tag pointing at the EXIF IFD
# tifffile refuses to write tag 34665 itself: a private tag code holds its place in IFD0 until
# append_exif_ifd turns it into the ExifIFD pointer.
_PLACEHOLDER = 65000
_ASCII, _SHORT, _RATIONAL, _SRATIONAL = 2, 3, 5, 10  # TIFF field types
_MAX_TEXT = 1024          # longer text is not camera metadata; left out


@dataclass(frozen=True)
class TagSpec:
    """One carried tag: its TIFF ``code``, ``name``, field ``kind`` (TIFF type 2, 3, 5 or 10),
    the number of values it must hold (``count``; 0: any, for text; for rationals the number
    of fractions) and whether it lives in the EXIF IFD (``exif``) or in IFD0."""

    code: int
    name: str
    kind: int
    count: int
    exif: bool = False


CAMERA_TAGS: tuple[TagSpec, ...] = (
    TagSpec(271, "Make", _ASCII, 0),
    TagSpec(272, "Model", _ASCII, 0),
    TagSpec(42036, "LensModel", _ASCII, 0, exif=True),
    TagSpec(34855, "PhotographicSensitivity", _SHORT, 1, exif=True),   # ISO
    TagSpec(33434, "ExposureTime", _RATIONAL, 1, exif=True),
    TagSpec(33437, "FNumber", _RATIONAL, 1, exif=True),
    TagSpec(37386, "FocalLength", _RATIONAL, 1, exif=True),
    TagSpec(36867, "DateTimeOriginal", _ASCII, 0, exif=True),
    TagSpec(37521, "SubSecTimeOriginal", _ASCII, 0, exif=True),
    TagSpec(36881, "OffsetTimeOriginal", _ASCII, 0, exif=True),
    TagSpec(50721, "ColorMatrix1", _SRATIONAL, 9),
    TagSpec(50722, "ColorMatrix2", _SRATIONAL, 9),
    TagSpec(50778, "CalibrationIlluminant1", _SHORT, 1),
    TagSpec(50779, "CalibrationIlluminant2", _SHORT, 1),
    TagSpec(50964, "ForwardMatrix1", _SRATIONAL, 9),
    TagSpec(50965, "ForwardMatrix2", _SRATIONAL, 9),
    TagSpec(50723, "CameraCalibration1", _SRATIONAL, 9),
    TagSpec(50724, "CameraCalibration2", _SRATIONAL, 9),
    TagSpec(50727, "AnalogBalance", _RATIONAL, 3),
    TagSpec(50728, "AsShotNeutral", _RATIONAL, 3),
    TagSpec(50730, "BaselineExposure", _SRATIONAL, 1),
)
_BY_NAME = {spec.name: spec for spec in CAMERA_TAGS}

# The DNG colour calibration: written as one set (the camera's, when it has ColorMatrix1).
COLOR_TAGS: frozenset[str] = frozenset(
    s.name for s in CAMERA_TAGS if 50721 <= s.code <= 50965
)
_LIMITS = {_SHORT: (0, 2**16 - 1), _RATIONAL: (0, 2**32 - 1), _SRATIONAL: (-(2**31), 2**31 - 1)}
_STRUCT = {_SHORT: "H", _RATIONAL: "I", _SRATIONAL: "i"}


def _checked(spec: TagSpec, value: Any) -> str | list[int]:
    """``value`` in the stored form of ``spec`` (module docstring); ValueError saying why not."""
    if spec.kind == _ASCII:
        if not isinstance(value, str) or not value.isascii() or "\0" in value \
                or len(value) > _MAX_TEXT:
            raise ValueError(f"must be ASCII text of at most {_MAX_TEXT} characters")
        return value
    values = [value] if isinstance(value, int) else value
    if not isinstance(values, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError("must be a list of integers")
    per_value = 1 if spec.kind == _SHORT else 2
    if len(values) != spec.count * per_value:
        raise ValueError(f"must hold {spec.count * per_value} integers, got {len(values)}")
    lo, hi = _LIMITS[spec.kind]
    if not all(lo <= v <= hi for v in values):
        raise ValueError(f"integers must lie in {lo}..{hi}")
    if per_value == 2 and not all(d > 0 for d in values[1::2]):
        raise ValueError("denominators must be positive")
    return [int(v) for v in values]


def check_camera_tags(tags: Any) -> dict[str, str | list[int]]:
    """``meta["camera_tags"]`` checked before it is written: a dict of known names with values
    in their stored form (other names are not written, for metadata of later versions).
    BurstFormatError naming the entry otherwise."""
    if not isinstance(tags, Mapping):
        raise BurstFormatError(f"meta[{META_KEY!r}] must be a dict of tag name -> value, got "
                               f"{type(tags).__name__}")
    out = {}
    for name, value in tags.items():
        if name in _BY_NAME:
            try:
                out[name] = _checked(_BY_NAME[name], value)
            except ValueError as exc:
                raise BurstFormatError(f"meta[{META_KEY!r}][{name!r}] {exc}") from None
    return out


def _plain(value: Any) -> Any:
    """tifffile's tag value as plain Python: str, int, or a list of ints (NumPy scalars too)."""
    if isinstance(value, str):
        return value.rstrip("\0")
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def read_camera_tags(path: str | os.PathLike) -> dict[str, str | list[int]]:
    """The :data:`CAMERA_TAGS` of a TIFF-based raw file, by name, in their stored form.

    Each tag is looked up in IFD0 (where DNG keeps its colour tags and TIFF/EP may keep the
    capture ones), then in the EXIF IFD. A tag stored with another type or number of values
    (e.g. the 4 x 3 matrices of a 4-colour camera) is left out; a file that is not a TIFF, or
    whose tags cannot be read, gives {} (the metadata is a courtesy: the raw reader reports
    files it cannot read).
    """
    import tifffile

    try:
        with open(path, "rb") as f:
            if f.read(4) not in (b"II*\x00", b"MM\x00*"):
                return {}
        with tifffile.TiffFile(path) as tif:
            ifd0 = tif.pages.first.tags
            exif = ifd0[EXIF_IFD].value if EXIF_IFD in ifd0 else {}
            exif = exif if isinstance(exif, dict) else {}
            found = {}
            for spec in CAMERA_TAGS:
                if spec.code in ifd0:
                    found[spec] = (ifd0[spec.code].dtype, ifd0[spec.code].value)
                else:
                    name = tifffile.TIFF.EXIF_TAGS.get(spec.code)
                    if spec.exif and name in exif:
                        found[spec] = (None, exif[name])
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError, TypeError,
            struct.error):
        return {}
    tags = {}
    for spec, (dtype, value) in found.items():
        if dtype is not None and int(dtype) != spec.kind and not (
                spec.kind == _SHORT and int(dtype) == 4):  # a LONG ISO is still an ISO
            continue
        try:
            tags[spec.name] = _checked(spec, _plain(value))
        except ValueError:
            continue
    return tags


def _format(spec: TagSpec) -> str:
    return {_ASCII: "s", _SHORT: "H", _RATIONAL: "2I", _SRATIONAL: "2i"}[spec.kind]


def ifd0_extratags(tags: Mapping[str, Any], names: set[str] | frozenset[str]
                   ) -> list[tuple[int, str, int, Any, bool]]:
    """tifffile ``extratags`` of the IFD0 tags among ``names`` present in ``tags`` (checked
    values, :func:`check_camera_tags`); with a placeholder of the ExifIFD pointer (a private
    LONG tag, made the pointer by :func:`append_exif_ifd`) when ``tags`` holds EXIF tags."""
    out = []
    for name, value in tags.items():
        spec = _BY_NAME[name]
        if spec.exif or name not in names:
            continue
        if spec.kind == _ASCII:
            out.append((spec.code, "s", 0, value, True))
        else:
            count = len(value) if spec.kind == _SHORT else len(value) // 2
            out.append((spec.code, _format(spec), count, tuple(value), True))
    if exif_entries(tags):
        out.append((_PLACEHOLDER, "I", 1, 0, True))
    return out


def exif_entries(tags: Mapping[str, Any]) -> list[tuple[int, int, int, bytes]]:
    """The EXIF-IFD tags in ``tags`` (checked values) as (code, type, count, little-endian
    bytes), sorted by code."""
    out = []
    for name, value in tags.items():
        spec = _BY_NAME[name]
        if not spec.exif:
            continue
        if spec.kind == _ASCII:
            data = value.encode("ascii") + b"\0"
            out.append((spec.code, spec.kind, len(data), data))
        else:
            data = struct.pack(f"<{len(value)}{_STRUCT[spec.kind]}", *value)
            count = len(value) if spec.kind == _SHORT else len(value) // 2
            out.append((spec.code, spec.kind, count, data))
    return sorted(out)


def _encode_ifd(entries: list[tuple[int, int, int, bytes]], offset: int) -> bytes:
    """One IFD (no next IFD) at file ``offset``, followed by the values that do not fit in
    their 4-byte entry, each on a word boundary (TIFF 6.0)."""
    data_at = offset + 2 + 12 * len(entries) + 4
    head, data = [struct.pack("<H", len(entries))], b""
    for code, kind, count, payload in entries:
        if len(payload) <= 4:
            head.append(struct.pack("<HHI", code, kind, count) + payload.ljust(4, b"\0"))
        else:
            head.append(struct.pack("<HHII", code, kind, count, data_at + len(data)))
            data += payload + b"\0" * (len(payload) % 2)
    return b"".join(head) + struct.pack("<I", 0) + data


def append_exif_ifd(path: Path, tags: Mapping[str, Any]) -> None:
    """Append the EXIF IFD of ``tags`` (checked values) to the little-endian classic TIFF at
    ``path``, whose IFD0 holds the placeholder of :func:`ifd0_extratags`, and make the
    placeholder the ExifIFD pointer to it (IFD0's entries re-sorted by code, as TIFF requires).
    Nothing is done when ``tags`` holds no EXIF tag."""
    entries = exif_entries(tags)
    if not entries:
        return
    with open(path, "r+b") as f:
        head = f.read(8)
        if head[:4] != b"II*\x00":
            raise BurstFormatError(f"{path}: not a little-endian classic TIFF")
        (ifd0,) = struct.unpack("<I", head[4:])
        f.seek(ifd0)
        (n,) = struct.unpack("<H", f.read(2))
        table = [f.read(12) for _ in range(n)]
        codes = [struct.unpack_from("<H", entry)[0] for entry in table]
        if _PLACEHOLDER not in codes:
            raise BurstFormatError(f"{path}: no placeholder to point at the EXIF tags")
        end = f.seek(0, os.SEEK_END)
        start = end + end % 2
        f.write(b"\0" * (start - end) + _encode_ifd(entries, start))
        table[codes.index(_PLACEHOLDER)] = struct.pack("<HHII", EXIF_IFD, 4, 1, start)
        f.seek(ifd0 + 2)
        f.write(b"".join(sorted(table, key=lambda entry: struct.unpack_from("<H", entry)[0])))
