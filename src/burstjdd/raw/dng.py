"""Linear DNG output: the restored image as a LinearRaw DNG that raw editors can develop.

The file holds the restored LINEAR CAMERA RGB (what the model outputs), 16-bit, in the
sensor's orientation with the TIFF Orientation tag, plus the colour tags that make a DNG
reader render it as :func:`burstjdd.raw.color.render` does (same white balance and colour
matrix); the reader's own tone curve and exposure choices still apply on top.

Colour maths. Our rendering (before clamps and gamma) of camera RGB c is
``srgb = ccm @ diag(wb) @ c``, and ``xyz = M @ srgb`` with M the linear sRGB -> XYZ (D65)
matrix. Hence camera RGB from XYZ is ``c = diag(1/wb) @ inv(ccm) @ inv(M) @ xyz``. The camera
response to what we render as white (sRGB (1, 1, 1), i.e. XYZ of D65) is
``w = diag(1/wb) @ inv(ccm) @ 1`` (= 1/wb for our ccms, which map (1, 1, 1) to itself). We store

* ``AsShotNeutral = w / w[G]`` (normalised to green 1; 1/wb normalised for our ccms),
* ``ColorMatrix1 = diag(1/wb) @ inv(ccm) @ inv(M) / w[G]`` (XYZ -> camera, normalised so that
  ``ColorMatrix1 @ XYZ_D65 = AsShotNeutral``), with ``CalibrationIlluminant1 = D65``.

A DNG reader looks for the white whose camera response is AsShotNeutral: here exactly D65, the
calibration illuminant, so nothing is interpolated, the D65 -> D50 -> D65 adaptations of its
working space cancel, and its camera -> XYZ map ``inv(ColorMatrix1)`` (up to scale) is
``M @ ccm @ diag(wb)``: our colours. LibRaw, which builds
``inv(rows-normalised(ColorMatrix @ M))`` like Brooks et al., recovers ``ccm`` exactly and the
gains 1/AsShotNeutral.

Camera calibration: when the burst comes from a raw file whose reference frame carries its
camera's DNG colour calibration (``meta["camera_tags"]`` holds ColorMatrix1), that is written
as it was instead (ColorMatrix1/2, CalibrationIlluminant1/2, ForwardMatrix1/2,
CameraCalibration1/2, AnalogBalance, AsShotNeutral, BaselineExposure): the output holds the same
camera RGB as the input (black subtracted, scaled to the white level), so an editor develops it
with the camera's own profile, as it would the original. Make, Model and the capture tags
(LensModel, ISO, ExposureTime, FNumber, FocalLength, DateTimeOriginal with its sub-seconds and
offset; in an EXIF IFD) are kept too (:mod:`burstjdd.raw.metadata`).

Exposure: readers (the DNG SDK) render the camera white scaled to a largest channel of 1 as
white; we render ``w`` as white; so ``BaselineExposure = -log2(max(w))``. For our ccms that is
log2(min(wb)): 0 for bursts read from raw files (wb = [R/G, 1, B/G] with R/G, B/G >= 1, as
usual), the log2 of the global gain for simulated bursts. (LibRaw ignores the tag.)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from burstjdd._version import __version__
from burstjdd.errors import BurstFormatError
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.files import atomic_output
from burstjdd.raw.image import _image_chw, _quantize_hwc, burst_orientation, crop_padding
from burstjdd.raw.metadata import (
    COLOR_TAGS,
    META_KEY,
    append_exif_ifd,
    check_camera_tags,
    ifd0_extratags,
)
from burstjdd.raw.unprocess import RGB2XYZ

__all__ = ["dng_color_tags", "write_linear_dng"]

PathLike = str | os.PathLike

_LINEAR_RAW = 34892          # PhotometricInterpretation LinearRaw
_D65 = 21                    # CalibrationIlluminant code
_WHITE = 65535               # 16-bit samples, black level 0
_DENOMINATOR = 1_000_000     # rationals are stored to 1e-6
_INT32_MAX = 2**31 - 1


def dng_color_tags(wb: Any, ccm: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """(ColorMatrix1 (3, 3), AsShotNeutral (3,), BaselineExposure) for a burst's wb and ccm.

    wb (3,) gains, ccm (3, 3) white-balanced camera RGB -> linear sRGB; float64 results. See
    the module docstring for the derivation. Raises ``BurstFormatError`` when ccm renders no
    positive camera colour as white (no valid AsShotNeutral exists).
    """
    wb = np.asarray(wb, dtype=np.float64).reshape(3)
    ccm = np.asarray(ccm, dtype=np.float64).reshape(3, 3)
    cam_from_srgb = np.diag(1.0 / wb) @ np.linalg.inv(ccm)        # (3, 3)
    white = cam_from_srgb @ np.ones(3)                             # camera response to white
    if not np.all(np.isfinite(white) & (white > 0)):
        raise BurstFormatError(
            f"the burst's ccm and wb render no positive camera colour as white "
            f"(camera white {white.tolist()}); cannot write a DNG colour matrix"
        )
    color_matrix = cam_from_srgb @ np.linalg.inv(np.array(RGB2XYZ)) / white[1]
    return color_matrix, white / white[1], -math.log2(float(white.max()))


def _rational(values: Any, signed: bool) -> tuple[int, ...]:
    """Floats -> flat (numerator, denominator, ...) with denominator 1e6 (less if too large)."""
    out: list[int] = []
    limit = _INT32_MAX if signed else 2**32 - 1
    for v in np.asarray(values, dtype=np.float64).ravel():
        den = _DENOMINATOR if abs(v) * _DENOMINATOR < limit else max(1, int(limit // abs(v)))
        out += [int(round(v * den)), den]
    return tuple(out)


def write_linear_dng(rgb: Any, path: PathLike, burst: RawBurst) -> None:
    """Write linear camera RGB as a LinearRaw DNG with the burst's colour metadata; atomic.

    rgb: (3, H, W) float linear camera RGB (in the sensor's orientation, as the model outputs
    it); it is cropped back to ``burst.meta["size"]`` when the raw files had an odd size, then
    clipped to [0, 1] and stored as round(65535 x) (16 bits, 3 samples, uncompressed).

    Tags: PhotometricInterpretation 34892 (LinearRaw), DNGVersion 1.4, DNGBackwardVersion 1.1,
    UniqueCameraModel (``meta["camera"]`` or "burstjdd"), BlackLevel 0, WhiteLevel 65535,
    Orientation ``meta["orientation"]`` (default 1), Software "burstjdd <version>"; the colour
    tags of the camera (``meta["camera_tags"]`` with ColorMatrix1; AsShotNeutral from the
    burst's wb when the camera gave none), else ColorMatrix1 and AsShotNeutral and
    BaselineExposure from :func:`dng_color_tags` with CalibrationIlluminant1 21 (D65); Make,
    Model and the EXIF capture tags of ``meta["camera_tags"]`` (module docstring).
    Raises ``BurstFormatError("<path>: ...")`` for a bad image or metadata; nothing is
    written then, and an existing file stays as it was.
    """
    import tifffile

    path = Path(path)
    chw = _image_chw(rgb, path)                                    # names the file itself
    try:
        chw = crop_padding(chw, burst)
        orientation = burst_orientation(burst)
        color_matrix, neutral, exposure = dng_color_tags(burst.wb.cpu(), burst.ccm.cpu())
        camera_tags = check_camera_tags(burst.meta.get(META_KEY, {}))
    except BurstFormatError as exc:
        raise BurstFormatError(f"{path}: {exc}; nothing written") from None
    data = _quantize_hwc(chw, _WHITE, np.uint16)                   # (H, W, 3)
    camera = str(burst.meta.get("camera") or "burstjdd")
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),                       # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),                       # DNGBackwardVersion
        (50708, "s", 0, camera, True),                             # UniqueCameraModel
        (50714, "I", 3, (0, 0, 0), True),                          # BlackLevel
        (50717, "I", 3, (_WHITE,) * 3, True),                      # WhiteLevel
        (274, "H", 1, orientation, True),                          # Orientation
    ]
    neutral_tag = (50728, "2I", 3, _rational(neutral, signed=False), True)  # AsShotNeutral
    if "ColorMatrix1" in camera_tags:  # the camera's own calibration (module docstring)
        tags += ifd0_extratags(camera_tags, COLOR_TAGS | {"Make", "Model"})
        if "AsShotNeutral" not in camera_tags:
            tags.append(neutral_tag)
    else:
        tags += [
            (50721, "2i", 9, _rational(color_matrix, signed=True), True),   # ColorMatrix1
            neutral_tag,
            (50730, "2i", 1, _rational([exposure], signed=True), True),     # BaselineExposure
            (50778, "H", 1, _D65, True),                           # CalibrationIlluminant1
        ]
        tags += ifd0_extratags(camera_tags, {"Make", "Model"})
    with atomic_output(path) as tmp:
        tifffile.imwrite(
            tmp, data, photometric=_LINEAR_RAW, planarconfig="contig", subfiletype=0,
            software=f"burstjdd {__version__}", metadata=None, extratags=tags, byteorder="<",
            bigtiff=False,
        )
        append_exif_ifd(tmp, camera_tags)
