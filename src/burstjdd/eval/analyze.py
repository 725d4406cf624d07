"""Shift statistics of a burst: how far neighbouring frames move, per block and globally.

The shifts come from our block matching (:func:`burstjdd.models.dpbm.coarse_align`, hard mode,
stride 2 then ±2 refinement, temporal propagation) on packed raw downsampled by ``factor``
(bicubic, antialiased), so one matching-grid pixel is 2·factor full-res pixels: that is the
resolution of every estimated shift (no sub-pixel fit). Each reference block is matched in every
frame; the displacement of block k into frame t is offset[t, k] (full-res px, (dy, dx), the sign
of a simulated burst's ``flow``), and the neighbouring-frame shift is offset[t+1, k] −
offset[t, k] (the paper supplement's Fig. 2 histogram is of its magnitude). The frames are
reflection-padded by the search radius, so that blocks near the border whose match partly left
the frame still find it.

Besides, the restore's own plan (:func:`burstjdd.restore.alignment_plan`, docs/method.md §7.1):
each frame's global translation by phase correlation with its confidence, and the search radius
that ``burstjdd restore`` would pick with its defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.errors import ConfigError
from burstjdd.eval.outputs import write_all
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.cfa import pack, to_rggb
from burstjdd.raw.noise import NoiseLevel
from burstjdd.raw.writers import render_srgb
from burstjdd.restore import AlignmentPlan, alignment_plan

MAX_RADIUS_PX = 256  # cap of the automatic search radius (cost grows with its square)
MIN_DRAW_SIDE = 512  # offsets.png: smaller renders are enlarged to this longer side


@dataclass(frozen=True)
class ShiftStats:
    """Median, 90th percentile and maximum of shift magnitudes, full-res px."""

    median: float
    p90: float
    max: float

    @staticmethod
    def of(magnitudes: Tensor) -> ShiftStats:
        m = magnitudes.flatten().double()
        return ShiftStats(float(m.median()), float(torch.quantile(m, 0.9)), float(m.max()))


@dataclass(frozen=True)
class BurstAnalysis:
    """Result of :func:`analyze_burst`; shifts in full-res px, (dy, dx).

    origins (K, 2) top-left of each reference block; block, radius, grid: block side, search
    radius and matching-grid pixel (full-res px); offsets (N, K, 2) displacement of each block
    into frame t (ref: 0); global_shift (N, 2) per-frame median of the offsets; neighbour
    (N−1, K, 2) offset[t+1] − offset[t]; stats of |neighbour|; true_neighbour / true_stats the
    same from a simulated burst's flow (block means), else None; noise and its source ("stored"
    | "estimated"); plan: the restore's global pre-alignment and search radius with its default
    options."""

    ref: int
    origins: Tensor
    block: int
    radius: int
    grid: int
    offsets: Tensor
    global_shift: Tensor
    neighbour: Tensor
    stats: ShiftStats
    true_neighbour: Tensor | None
    true_stats: ShiftStats | None
    noise: NoiseLevel
    noise_source: str
    plan: AlignmentPlan


def default_radius(height: int, width: int, block: int, grid: int) -> int:
    """Largest search radius (full-res px, a multiple of 2·grid) whose search window (block +
    2·radius) fits in the shorter side of the frame, capped at MAX_RADIUS_PX."""
    fits = (min(height, width) - block) // 2
    return max(2 * grid, min(MAX_RADIUS_PX, fits) // (2 * grid) * (2 * grid))


def block_flow(flow: Tensor, origins: Tensor, block: int) -> Tensor:
    """flow (N, 2, H, W) full-res -> (N, K, 2) mean (dy, dx) over each block at origins (K, 2)."""
    return torch.stack([flow[:, :, y:y + block, x:x + block].mean((-2, -1))
                        for y, x in origins.tolist()], dim=1)


def analyze_burst(burst: RawBurst, *, block: int = 64, factor: int = 2,
                  radius: int | None = None) -> BurstAnalysis:
    """Block-match every ``block``×``block`` full-res block of the reference in all frames.

    block: full-res side, a multiple of 4·factor; factor: packed px per matching-grid px
    (grid = 2·factor full-res px); radius: full-res search radius, 0 up to the longer side of
    the frame (default :func:`default_radius`). The frame is cropped to a whole number of blocks (the
    right/bottom remainder is not analysed).
    """
    if factor < 1:
        raise ConfigError(f"factor must be >= 1, got {factor}")
    grid = 2 * factor
    if block <= 0 or block % (2 * grid):
        raise ConfigError(f"block {block} must be a positive multiple of {2 * grid} "
                          f"(4 x factor {factor})")
    n, height, width = burst.raw.shape
    rows, cols = height // block, width // block
    if rows < 1 or cols < 1 or n < 2:
        raise ConfigError(f"burst {width}x{height}, {n} frames: needs >= 2 frames of at least "
                          f"one {block}x{block} block")
    radius = default_radius(height, width, block, grid) if radius is None else radius
    if isinstance(radius, bool) or not isinstance(radius, int) or \
            not 0 <= radius <= max(height, width):
        raise ConfigError(f"search radius {radius!r} px is beyond this {width}x{height} burst: "
                          f"use 0..{max(height, width)} px")
    from burstjdd.models.dpbm import coarse_align

    radius_lr = math.ceil(radius / grid)
    packed = pack(burst.raw[:, :rows * block, :cols * block])  # (N, 4, h, w), file's phase
    # Reflection padding by the radius: a block whose match partly left the frame still finds
    # it (its inside part agrees); without it such blocks near the border get a wrong match.
    pad = min(radius_lr * factor, packed.shape[-2] - 1, packed.shape[-1] - 1) // factor * factor
    packed = F.pad(packed, (pad,) * 4, mode="reflect")
    feats = F.interpolate(packed, scale_factor=1 / factor, mode="bicubic",
                          align_corners=False, antialias=True) if factor > 1 else packed
    p = block // grid  # block side on the matching grid
    origins_lr = torch.tensor([[r * p, c * p] for r in range(rows) for c in range(cols)])
    with torch.no_grad():
        ca = coarse_align(feats[None], packed[None], packed[None], burst.ref,
                          origins_lr[None] + pad // factor, p, radius_lr, stride=2, scale=factor)
    offsets = ca.offsets_lr[0].transpose(0, 1).float() * grid  # (N, K, 2) full-res
    origins = origins_lr * grid  # (K, 2) full-res
    neighbour = offsets[1:] - offsets[:-1]
    true_neighbour = true_stats = None
    if burst.flow is not None:
        flows = block_flow(burst.flow, origins, block)
        true_neighbour = flows[1:] - flows[:-1]
        true_stats = ShiftStats.of(true_neighbour.norm(dim=-1))
    return BurstAnalysis(
        ref=burst.ref, origins=origins, block=block, radius=radius, grid=grid, offsets=offsets,
        global_shift=offsets.median(dim=1).values, neighbour=neighbour,
        stats=ShiftStats.of(neighbour.norm(dim=-1)),
        true_neighbour=true_neighbour,
        true_stats=true_stats, noise=burst.noise_level(),
        noise_source="stored" if burst.noise is not None else "estimated",
        plan=alignment_plan(burst))


def _cfa_flips(cfa: str) -> list[int]:
    """The dims that :func:`to_rggb` flips for ``cfa`` (read off a 2×2 index grid)."""
    corner = int(to_rggb(torch.arange(4).view(2, 2), cfa)[0, 0])  # 0 | 1 | 2 | 3
    return [d for d, bit in ((-2, 2), (-1, 1)) if corner & bit]


def reference_srgb(burst: RawBurst) -> Tensor:
    """Quick half-resolution sRGB render of the reference: (3, H/2, W/2) in [0, 1] from the
    packed [R, (Gr+Gb)/2, B] (no demosaicking), through the burst's wb and ccm."""
    q = pack(to_rggb(burst.raw[burst.ref], burst.cfa))  # (4, H/2, W/2) RGGB
    rgb = torch.stack([q[0], 0.5 * (q[1] + q[2]), q[3]]).flip(_cfa_flips(burst.cfa))
    return render_srgb(rgb, burst).clamp(0, 1)


def _to_pil(srgb: Tensor):  # (3, H, W) in [0, 1] -> PIL RGB image
    from PIL import Image

    return Image.fromarray((srgb.permute(1, 2, 0) * 255 + 0.5).byte().numpy(), "RGB")


def write_pngs(images: Mapping[Path, Any]) -> None:
    """Write PIL images as PNGs, all or none (:func:`~burstjdd.eval.outputs.write_all`)."""
    write_all({path: lambda tmp, image=image: image.save(tmp, format="PNG")
               for path, image in images.items()})


def histogram_image(magnitudes: Tensor, *, true: Tensor | None = None,
                    bin_px: float | None = None, size: tuple[int, int] = (640, 400)) -> Any:
    """Histogram (a PIL image) of neighbouring-frame shift magnitudes (full-res px): estimated
    in blue, the true ones (when given) as a red outline; bins of ``bin_px`` px (default: a
    20th of the range rounded up to whole px)."""
    from PIL import Image, ImageDraw

    est = magnitudes.flatten().double()
    ref = est if true is None else torch.cat([est, true.flatten().double()])
    top = max(float(ref.max()), 1.0)
    bin_px = bin_px or float(max(1, math.ceil(top / 20)))
    n_bins = int(top // bin_px) + 1
    hists = [torch.histc(v.flatten().double(), n_bins, 0, n_bins * bin_px) / v.numel()
             for v in ([est] if true is None else [est, true])]
    w, h = size
    left, bottom, pad = 50, 40, 15
    plot_w, plot_h = w - left - pad, h - bottom - pad
    peak = max(float(hh.max()) for hh in hists)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for hist, colour, fill in zip(hists, ("navy", "red"), (True, False)):
        for i, v in enumerate(hist.tolist()):
            x0 = left + plot_w * i / n_bins
            x1 = left + plot_w * (i + 1) / n_bins
            y0 = pad + plot_h * (1 - v / peak)
            box = (x0 + 1, y0, x1 - 1, pad + plot_h)
            draw.rectangle(box, fill="skyblue" if fill else None, outline=colour)
    draw.line([(left, pad), (left, pad + plot_h), (left + plot_w, pad + plot_h)], fill="black")
    for i in range(0, n_bins + 1, max(1, n_bins // 5)):
        x = left + plot_w * i / n_bins
        draw.text((x - 8, pad + plot_h + 5), f"{i * bin_px:g}", fill="black")
    draw.text((left, h - 15), "neighbouring-frame shift (full-res px)"
              + ("; blue: estimated, red: true" if true is not None else ""), fill="black")
    draw.text((5, pad), f"{peak:.2f}", fill="black")
    return img


_ARROW_COLOURS = ("red", "orange", "yellow", "lime", "cyan", "magenta", "white")


def offsets_image(srgb: Tensor, analysis: BurstAnalysis, *, scale: float = 0.5) -> Any:
    """A PIL image of the reference ``srgb`` (3, H', W') with one arrow per block and
    non-reference frame, from
    the block centre (black dot) along its offset, one colour per frame; ``scale``: image px
    per full-res px (0.5 for :func:`reference_srgb`). Small images are enlarged (nearest) to
    at least MIN_DRAW_SIDE px on their longer side so that the arrows stay readable."""
    from PIL import Image, ImageDraw

    img = _to_pil(srgb)
    zoom = max(1, math.ceil(MIN_DRAW_SIDE / max(img.size)))
    img = img.resize((img.width * zoom, img.height * zoom), Image.Resampling.NEAREST)
    scale *= zoom
    draw = ImageDraw.Draw(img)
    centres = (analysis.origins.float() + analysis.block / 2) * scale
    for t in range(analysis.offsets.shape[0]):
        if t == analysis.ref:
            continue
        colour = _ARROW_COLOURS[t % len(_ARROW_COLOURS)]
        for (cy, cx), (dy, dx) in zip(centres.tolist(), (analysis.offsets[t] * scale).tolist()):
            draw.line([(cx, cy), (cx + dx, cy + dy)], fill=colour, width=1)
            draw.ellipse([cx + dx - 2, cy + dy - 2, cx + dx + 2, cy + dy + 2], fill=colour)
    for cy, cx in centres.tolist():
        draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill="black")
    return img


def summary(analysis: BurstAnalysis) -> list[str]:
    """Printable lines: settings, estimated (and true) shift statistics, global shifts, noise."""
    a = analysis

    def fmt(st: ShiftStats) -> str:
        return f"median {st.median:.1f}, 90th pct {st.p90:.1f}, max {st.max:.1f} px"

    lines = [f"blocks: {a.origins.shape[0]} of {a.block}x{a.block} px, search radius "
             f"{a.radius} px, grid {a.grid} px, reference frame {a.ref}",
             f"neighbouring-frame shift (estimated): {fmt(a.stats)}"]
    if a.true_stats is not None and a.true_neighbour is not None:
        lines.append(f"neighbouring-frame shift (true, from flow): {fmt(a.true_stats)}")
        err = (a.neighbour - a.true_neighbour).norm(dim=-1)
        lines.append(f"per-block error vs true: median {float(err.median()):.1f} px, "
                     f"{100 * float((err <= 1.5 * a.grid).float().mean()):.0f} % within "
                     f"{1.5 * a.grid:g} px")
    glob = ", ".join(f"({dy:+.0f}, {dx:+.0f})" for dy, dx in a.global_shift.tolist())
    lines += [f"global shift per frame vs reference (dy, dx px): {glob}",
              *plan_summary(a.plan),
              f"noise ({a.noise_source}): shot {a.noise.shot:.4g}, read {a.noise.read:.4g}"]
    return lines


def plan_summary(plan: AlignmentPlan) -> list[str]:
    """Printable lines of the restore's global motion per frame and its search radius."""
    lines = []
    if plan.motion is not None:
        for t, (dy, dx), conf, ok in zip(plan.frames, plan.motion.shifts.tolist(),
                                         plan.motion.confidence.tolist(),
                                         plan.motion.reliable.tolist()):
            what = "reference" if t == plan.frames[plan.ref] else \
                f"confidence {conf:.2f}" + ("" if ok else ", unreliable: not pre-aligned")
            lines.append(f"global motion (phase correlation), frame {t}: ({dy:+d}, {dx:+d}) px, "
                         f"{what}")
    lines.append(f"restore would search +-{plan.radius:g} px around each frame's "
                 + ("global shift" if plan.motion is not None else "position"))
    return lines
