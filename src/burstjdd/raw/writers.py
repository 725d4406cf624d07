"""Image writers: ``.png`` 8-bit sRGB, ``.tif``/``.tiff`` 16-bit sRGB or float32 linear,
``.npy`` float32 (H, W, 3), and ``.dng`` linear (:mod:`burstjdd.raw.dng`).

:func:`write_image` takes a restored image (linear camera RGB, as the model outputs it), crops
the padding of odd-sized raw files and turns it upright with the burst's orientation
(:mod:`burstjdd.raw.image`), renders it to sRGB (:func:`render_srgb`) unless asked for linear
output, and picks the format by extension. Every file is written through
:func:`~burstjdd.raw.files.atomic_output`, so a failed write leaves neither a partial file nor
a temporary one, and never clobbers an existing output.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from burstjdd._version import __version__
from burstjdd.errors import BurstFormatError
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.color import render
from burstjdd.raw.dng import write_linear_dng
from burstjdd.raw.files import PathLike, atomic_output
from burstjdd.raw.image import (
    _image_chw,
    _quantize_hwc,
    burst_orientation,
    crop_padding,
    orient_image,
)
from burstjdd.raw.metadata import META_KEY, append_exif_ifd, check_camera_tags, ifd0_extratags

__all__ = ["render_srgb", "write_image", "write_npy", "write_png", "write_tiff"]

_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".dng")


def write_png(image: Any, path: PathLike) -> None:
    """Write a (3, H, W) sRGB image with values in [0, 1] as an 8-bit PNG, atomically.

    Values are clipped to [0, 1] and rounded (half to even) to round(255 * x).
    """
    from PIL import Image

    _check_path("write_png", path)
    path = Path(path)
    u8 = _quantize_hwc(_image_chw(image, path), 255, np.uint8)
    with atomic_output(path) as tmp:
        Image.fromarray(u8).save(tmp, format="PNG")


def write_tiff(image: Any, path: PathLike, *, linear: bool = False,
               camera_tags: dict | None = None) -> None:
    """Write a (3, H, W) image as an RGB TIFF, atomically.

    ``linear=False``: sRGB in [0, 1] -> 16-bit, clipped and rounded to round(65535 * x).
    ``linear=True``: float32 values as they are (no clipping; linear data may exceed 1).
    ``camera_tags``: a burst's ``meta["camera_tags"]`` (:mod:`burstjdd.raw.metadata`): Make and
    Model are written in IFD0, the capture tags (lens, ISO, exposure, aperture, focal length,
    capture time) in an EXIF IFD; the DNG colour tags are not (the TIFF is rendered). Software
    is "burstjdd <version>".
    """
    import tifffile

    _check_path("write_tiff", path)
    path = Path(path)
    chw = _image_chw(image, path)
    try:
        tags = check_camera_tags(camera_tags or {})
    except BurstFormatError as exc:
        raise BurstFormatError(f"{path}: {exc}; nothing written") from None
    if linear:
        data = np.ascontiguousarray(chw.numpy().transpose(1, 2, 0))
    else:
        data = _quantize_hwc(chw, 65535, np.uint16)
    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, data, photometric="rgb", software=f"burstjdd {__version__}",
                         extratags=ifd0_extratags(tags, {"Make", "Model"}), byteorder="<",
                         bigtiff=False)
        append_exif_ifd(tmp, tags)


def write_npy(image: Any, path: PathLike) -> None:
    """Write a (3, H, W) image as a float32 (H, W, 3) ``.npy`` array (values as they are)."""
    _check_path("write_npy", path)
    path = Path(path)
    hwc = np.ascontiguousarray(_image_chw(image, path).numpy().transpose(1, 2, 0))
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, hwc, allow_pickle=False)


def _check_path(function: str, path: Any) -> None:
    """TypeError saying what ``path`` must be, instead of pathlib's "expected str, bytes or
    os.PathLike object"."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{function}: path must be the output file (str or os.PathLike), got "
                        f"{type(path).__name__}")


def _check_burst(function: str, burst: Any, *, required: bool) -> None:
    """TypeError saying what ``burst`` must be, instead of an AttributeError deep inside."""
    if isinstance(burst, RawBurst) or (burst is None and not required):
        return
    expected = "a RawBurst" if required else "a RawBurst or None"
    raise TypeError(f"{function}: burst must be {expected} (from read_burst or simulate_burst), "
                    f"got {type(burst).__name__}")


def render_srgb(rgb: Any, burst: RawBurst) -> Tensor:
    """Render linear camera RGB (..., 3, H, W) to sRGB in [0, 1] with the burst's metadata.

    ``render(rgb, burst.wb, burst.ccm)``: white balance -> clamp -> CCM -> clamp -> gamma
    (docs/protocol.md "Rendering to sRGB", the Γ of the paper). Follows ``rgb``'s device and
    float dtype.
    """
    _check_burst("render_srgb", burst, required=True)
    try:
        rgb = torch.as_tensor(rgb)
    except (TypeError, ValueError, RuntimeError):  # a str, None, a ragged list ...
        raise TypeError(f"render_srgb: rgb must be a linear camera RGB tensor or array "
                        f"(..., 3, H, W), got {type(rgb).__name__}") from None
    if not rgb.is_floating_point():
        rgb = rgb.to(torch.float32)
    wb = burst.wb.to(device=rgb.device, dtype=rgb.dtype)
    ccm = burst.ccm.to(device=rgb.device, dtype=rgb.dtype)
    return render(rgb, wb, ccm)


def write_image(
    image: Any, path: PathLike, space: str = "srgb", burst: RawBurst | None = None
) -> None:
    """Write a restored image, choosing the format by extension; atomic.

    ``image`` is always LINEAR CAMERA RGB, (3, H, W) (what the model outputs), in the sensor's
    orientation.

    * ``space="srgb"``: rendered with :func:`render_srgb` using ``burst``'s wb and ccm (so
      ``burst`` is required), then written as ``.png`` (8-bit), ``.tif``/``.tiff`` (16-bit) or
      ``.npy`` (float32 (H, W, 3) in [0, 1]).
    * ``space="linear"``: written as it is, ``.tif``/``.tiff`` float32 or ``.npy`` float32;
      ``.png`` is refused (PNG is 8-bit sRGB only).
    * ``.dng``: a linear DNG that raw editors render with the burst's colours
      (:func:`burstjdd.raw.dng.write_linear_dng`); needs ``burst``; ``space`` is not used.

    With a ``burst``, the image is first cropped back to the visible size of raw files with
    an odd size (:func:`crop_padding`), then turned upright with ``meta["orientation"]``
    (:func:`orient_image`); a DNG keeps the sensor orientation and stores it in its
    Orientation tag instead. To write an image that is already sRGB, call :func:`write_png`,
    :func:`write_tiff` or :func:`write_npy` directly.
    """
    _check_burst("write_image", burst, required=False)
    _check_path("write_image", path)
    path = Path(path)
    ext = path.suffix.lower()
    if space not in ("srgb", "linear"):
        raise BurstFormatError(f"{path}: space must be 'srgb' or 'linear', got {space!r}")
    if ext not in _IMAGE_SUFFIXES:
        raise BurstFormatError(
            f"{path}: unsupported output extension {ext or '(none)'!r}; "
            f"use {', '.join(_IMAGE_SUFFIXES)}"
        )
    if ext == ".png" and space == "linear":
        raise BurstFormatError(
            f"{path}: PNG is 8-bit sRGB only; use .tif or .npy for linear output"
        )
    if ext == ".dng" and burst is None:
        raise BurstFormatError(f"{path}: .dng output needs the burst's metadata (pass burst=)")
    if space == "srgb" and burst is None:
        raise BurstFormatError(
            f"{path}: sRGB output needs the burst's wb and ccm (pass burst=, or space='linear')"
        )
    rgb = _image_chw(image, path)
    if burst is not None:
        try:
            rgb = crop_padding(rgb, burst)
            orientation = burst_orientation(burst)
        except BurstFormatError as exc:
            raise BurstFormatError(f"{path}: {exc}; nothing written") from None
        if ext == ".dng":
            write_linear_dng(rgb, path, burst)
            return
        rgb = orient_image(rgb, orientation)
    if space == "srgb":
        rgb = render_srgb(rgb, burst)
    if ext == ".png":
        write_png(rgb, path)
    elif ext in (".tif", ".tiff"):
        camera_tags = burst.meta.get(META_KEY) if burst is not None else None
        write_tiff(rgb, path, linear=space == "linear", camera_tags=camera_tags)
    else:
        write_npy(rgb, path)
