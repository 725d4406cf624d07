"""Figures of the evaluation, drawn with Pillow only (matplotlib is not a dependency).

* :func:`crop_figure`: side-by-side crops of the same region for several methods (the ground
  truth first), each with a 2x zoom inset and a label "method  PSNR dB".
* :func:`plot_curves`: a line plot (axes, ticks, one line per method, legend), used for the
  large-shift stress curve (PSNR vs shift).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from burstjdd.errors import ConfigError

__all__ = ["GAP", "LABEL_HEIGHT", "PALETTE", "crop_figure", "figure_size", "pick_region",
           "plot_curves"]

GAP = 8            # px between panels and around the figure
LABEL_HEIGHT = 22  # px of the label strip under each panel
INSET_ZOOM = 2
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _save(image: Image.Image, path: str | os.PathLike) -> Path:
    from burstjdd.raw.files import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def _to_uint8(srgb: Tensor) -> np.ndarray:
    """(3, H, W) gamma sRGB in [0, 1] -> (H, W, 3) uint8."""
    return (srgb.detach().float().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8) \
        .permute(1, 2, 0).numpy()


def pick_region(srgb: Tensor, size: int) -> tuple[int, int]:
    """Top-left (y, x) of the size x size window with the most detail (mean absolute gradient
    of the luminance), on a grid of size/4 steps: where methods differ most. srgb (3, H, W)."""
    h, w = srgb.shape[-2:]
    if size > min(h, w):
        raise ConfigError(f"crop of {size} px does not fit an image of {h}x{w}")
    gray = srgb.float().mean(0)
    grad = torch.zeros_like(gray)
    grad[:, 1:] += (gray[:, 1:] - gray[:, :-1]).abs()
    grad[1:, :] += (gray[1:, :] - gray[:-1, :]).abs()
    step = max(size // 4, 1)
    best, where = -1.0, (0, 0)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            energy = float(grad[y : y + size, x : x + size].mean())
            if energy > best:
                best, where = energy, (y, x)
    return where


def figure_size(n_panels: int, panel: int) -> tuple[int, int]:
    """(width, height) in px of a :func:`crop_figure` with n panels of panel x panel px."""
    return n_panels * panel + (n_panels + 1) * GAP, panel + LABEL_HEIGHT + 2 * GAP


def _panel(image: np.ndarray, panel: int) -> Image.Image:
    """A crop (s, s, 3) scaled to panel x panel (nearest: pixels stay visible), with the
    centre quarter magnified INSET_ZOOM x in the bottom-right corner, both outlined."""
    s = image.shape[0]
    tile = Image.fromarray(image).resize((panel, panel), Image.NEAREST)
    inner = s // 4                        # side of the magnified region, crop px
    y0 = x0 = (s - inner) // 2
    inset_side = panel * INSET_ZOOM // 4  # == inner * INSET_ZOOM * panel / s (rounded)
    inset = Image.fromarray(image[y0 : y0 + inner, x0 : x0 + inner]).resize(
        (inset_side, inset_side), Image.NEAREST)
    draw = ImageDraw.Draw(tile)
    scale = panel / s
    draw.rectangle([x0 * scale, y0 * scale, (x0 + inner) * scale - 1, (y0 + inner) * scale - 1],
                   outline="yellow", width=2)
    corner = panel - inset_side
    tile.paste(inset, (corner, corner))
    draw.rectangle([corner, corner, panel - 1, panel - 1], outline="yellow", width=2)
    return tile


def crop_figure(images: Mapping[str, Tensor], path: str | os.PathLike, *,
                psnrs: Mapping[str, float] | None = None, region: tuple[int, int] | None = None,
                size: int = 128, panel: int = 256) -> Path:
    """Side-by-side crops of the same size x size region of every image, in the given order.

    images: name -> (3, H, W) gamma sRGB in [0, 1] (all the same size); region: top-left (y, x)
    of the crop (default: :func:`pick_region` on the first image, normally the ground truth);
    each crop is shown at panel x panel px with a 2x zoom inset of its centre and labelled
    "name  PSNR dB" (psnrs[name] when given). Writes a PNG of :func:`figure_size` px.
    """
    if not images:
        raise ConfigError("crop_figure needs at least one image")
    names = list(images)
    first = images[names[0]]
    shapes = {tuple(images[n].shape) for n in names}
    if len(shapes) != 1:
        raise ConfigError(f"crop_figure: images differ in shape {sorted(shapes)}")
    size = min(size, *first.shape[-2:])
    y, x = pick_region(first, size) if region is None else region
    width, height = figure_size(len(names), panel)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    for i, name in enumerate(names):
        crop = _to_uint8(images[name][:, y : y + size, x : x + size])
        left = GAP + i * (panel + GAP)
        canvas.paste(_panel(crop, panel), (left, GAP))
        value = None if psnrs is None else psnrs.get(name)
        label = name if value is None else f"{name}  {value:.2f} dB"
        draw.text((left + panel / 2, GAP + panel + LABEL_HEIGHT / 2 + 2), label, fill="black",
                  font=font, anchor="mm")
    return _save(canvas, path)


def _ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    return [start + k * step for k in range(int(math.ceil((hi - start) / step + 1e-9)) + 1)]


def plot_curves(xs: Sequence[float], curves: Mapping[str, Sequence[float]],
                path: str | os.PathLike, *, title: str = "", xlabel: str = "",
                ylabel: str = "", size: tuple[int, int] = (800, 500)) -> Path:
    """A line plot PNG of ``size`` (width, height) px: one line with markers per curve
    (ys aligned with xs; non-finite values are left out), tick labels, axis labels and a
    legend to the right of the axes."""
    if not curves:
        raise ConfigError("plot_curves needs at least one curve")
    width, height = size
    legend_w = 140  # legend to the right of the axes: never over a line
    left, right, top, bottom = 70, 20 + legend_w, 40, 60
    finite = [v for ys in curves.values() for v in ys if math.isfinite(v)]
    yt = _ticks(min(finite, default=0.0), max(finite, default=1.0))
    xt = _ticks(min(xs), max(xs))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    font, small = _font(14), _font(12)
    for x in xt:
        px, _ = to_px(x, y0)
        draw.line([px, top, px, height - bottom], fill="#e6e6e6")
        draw.line([px, height - bottom, px, height - bottom + 5], fill="black")
        draw.text((px, height - bottom + 8), f"{x:g}", fill="black", font=small, anchor="mt")
    for y in yt:
        _, py = to_px(x0, y)
        draw.line([left, py, width - right, py], fill="#e6e6e6")
        draw.line([left - 5, py, left, py], fill="black")
        draw.text((left - 8, py), f"{y:g}", fill="black", font=small, anchor="rm")
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text((width / 2, top / 2), title, fill="black", font=font, anchor="mm")
    draw.text(((left + width - right) / 2, height - 18), xlabel, fill="black", font=font,
              anchor="mm")
    label = Image.new("RGB", (height, 24), "white")
    ImageDraw.Draw(label).text((height / 2, 12), ylabel, fill="black", font=font, anchor="mm")
    canvas.paste(label.rotate(90, expand=True), (4, 0))
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(curves))]
    for colour, ys in zip(colours, curves.values()):
        points = [to_px(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
    lx, ly = width - legend_w, top
    draw.rectangle([lx - 6, ly, width - 8, ly + 8 + 18 * len(curves)], outline="#999999")
    for i, (colour, name) in enumerate(zip(colours, curves)):
        y = ly + 13 + 18 * i
        draw.line([lx, y, lx + 24, y], fill=colour, width=2)
        draw.text((lx + 30, y), name, fill="black", font=small, anchor="lm")
    return _save(canvas, path)
