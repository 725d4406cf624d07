"""Images on their way out: checked (3, H, W) float images, quantisation, and the crop and
orientation that turn a restored image back into the camera's picture.

Shared by the image writers (:mod:`burstjdd.raw.writers`) and the DNG writer
(:mod:`burstjdd.raw.dng`): :func:`crop_padding` removes the padding of odd-sized raw files,
:func:`orient_image` turns an image upright with a TIFF/EXIF Orientation, and
:func:`burst_orientation` reads a burst's Orientation from its metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from burstjdd.checks import check_shape
from burstjdd.errors import BurstFormatError
from burstjdd.raw.burst import RawBurst, _as_float32, _check_finite

__all__ = ["burst_orientation", "crop_padding", "orient_image"]


def _image_chw(image: Any, path: Path) -> Tensor:
    """Validate a (3, H, W) float image; return it as a float32 CPU tensor.

    Integer images are refused: their scale (255? 65535?) is unknown, and treating 255 as 255.0
    would silently write a white image.
    """
    try:
        t = _as_float32("image", image, float_only=True, expected="a float (3, H, W) image")
        check_shape(t, ["3", "H", "W"], what="image")
        _check_finite("image", t)
    except BurstFormatError as exc:
        raise BurstFormatError(f"{path}: {exc}; nothing written") from None
    return t.cpu()


def _quantize_hwc(chw: Tensor, levels: int, dtype: type) -> np.ndarray:
    """(3, H, W) values in [0, 1] (clipped) -> (H, W, 3) integers round(x * levels)."""
    x = np.clip(chw.numpy().transpose(1, 2, 0), 0.0, 1.0)
    return np.ascontiguousarray(np.round(x * levels).astype(dtype))


_ORIENTATIONS: dict[int, tuple[bool, tuple[int, ...]]] = {
    1: (False, ()), 2: (False, (-1,)), 3: (False, (-2, -1)), 4: (False, (-2,)),
    5: (True, ()), 6: (True, (-1,)), 7: (True, (-2, -1)), 8: (True, (-2,)),
}


def orient_image(image: Tensor, orientation: int) -> Tensor:
    """Turn an image stored in sensor orientation upright, per the TIFF/EXIF Orientation tag.

    image (..., H, W) -> (..., H, W) for orientations 1-4, (..., W, H) for 5-8.
    1 as stored, 2 mirrored left-right, 3 rotated 180 degrees, 4 mirrored top-bottom,
    5 transposed, 6 rotated 90 degrees clockwise, 7 transverse (transposed and rotated 180),
    8 rotated 90 degrees counter-clockwise. (TIFF 6.0: for 6, the stored row 0 becomes the
    right-hand column and the stored column 0 the top row.)
    """
    if isinstance(orientation, bool) or not isinstance(orientation, (int, np.integer)) or (
        orientation not in _ORIENTATIONS
    ):
        raise BurstFormatError(f"orientation must be an integer 1..8, got {orientation!r}")
    transpose, flips = _ORIENTATIONS[int(orientation)]
    if transpose:
        image = image.transpose(-2, -1)
    return image.flip(flips) if flips else image


def burst_orientation(burst: RawBurst) -> int:
    """The TIFF/EXIF Orientation 1..8 in ``burst.meta["orientation"]`` (1 when absent)."""
    value = burst.meta.get("orientation", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value not in _ORIENTATIONS:
        raise BurstFormatError(f"burst meta orientation must be an integer 1..8, got {value!r}")
    return value


def crop_padding(image: Tensor, burst: RawBurst) -> Tensor:
    """Crop an image of the burst's size (..., H, W) back to ``burst.meta["size"]`` [H0, W0].

    Raw files of odd size are padded to even by one row/column (:func:`read_raw_files`);
    an image of any other size, or a burst without ``size``, is returned as it is.
    """
    size = burst.meta.get("size")
    if size is None or tuple(image.shape[-2:]) != (burst.height, burst.width):
        return image
    ok = isinstance(size, (list, tuple)) and len(size) == 2 and all(
        isinstance(s, int) and not isinstance(s, bool) for s in size
    )
    if not ok or size[0] not in (burst.height - 1, burst.height) or size[1] not in (
        burst.width - 1, burst.width
    ):
        raise BurstFormatError(
            f"burst meta size {size!r} does not match its {burst.height}x{burst.width} frames "
            "(it must be [H0, W0], at most one row/column less)"
        )
    return image[..., : size[0], : size[1]]
