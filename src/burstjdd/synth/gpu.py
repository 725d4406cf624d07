"""Training samples synthesised in batches on the training device (``run.synthesis: device``).

The per-sample path (:func:`burstjdd.synth.burst.make_training_sample` in DataLoader workers)
decodes image files, unprocesses, warps, mosaics and adds noise on the CPU: about 70 ms per
128 px sample on one core, half of it WebP decoding. On a GPU that starves the model. This module
splits the same recipe in two:

* :class:`FrameCache`: every frame of the run's usable clips, decoded ONCE (threads) to uint8
  (3, H, W) tensors on the training device. Decoding is gone from the step loop.
* :class:`PlanDataset` (in DataLoader workers, cheap): for sample ``i`` it draws the SAME random
  parameters, in the same order from the same per-index generator, as ``TrainingDataset[i]``
  (source, clip, frames, motion, placement, ISP, dihedral, noise level) and returns them as
  small tensors: the "plan" of the sample, no pixels.
* :func:`render_batch` (on the device, batched): crops each plan's footprint from the cache,
  unprocesses, warps every frame (bicubic ``grid_sample``, one call for the batch), copies the
  untransformed reference exactly, composites the moving objects, applies the dihedral
  transform, mosaics (RGGB), adds heteroscedastic noise and packs: the batch
  ``make_training_sample`` + ``default_collate`` would give, on the device.

For the same index the clean frames equal the per-sample path's up to float rounding (same
motion, ISP, crop; checked in tests/test_gpu_synth.py); only the noise realisation differs: it is
drawn from a device generator seeded by (seed, rank, first index of the batch), so a run is
still reproducible and resumes exactly on the same device. Images are cached as uint8, so sources
that are not 8-bit (16-bit PNG, procedural dead leaves) are quantised to 8 bits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from burstjdd.errors import ConfigError, DataError
from burstjdd.raw.cfa import mosaic, pack
from burstjdd.raw.color import apply_ccm, gamma_expand, inverse_smoothstep, safe_invert_gains
from burstjdd.raw.noise import NoiseLevel, add_noise, noise_map, sample_noise_level
from burstjdd.raw.unprocess import INFLECTION, sample_isp_params
from burstjdd.synth.burst import (
    SampleConfig,
    _dihedral,
    _isp_tensors,
    _randint,
    _uniform,
)
from burstjdd.synth.datasets import TrainingDataset
from burstjdd.synth.motion import (
    BICUBIC_SUPPORT_PX,
    _camera_inverse,
    motion_bbox,
    motion_margin,
    object_positions,
    sample_motion,
)
from burstjdd.synth.sources import Frame, ImageFile, derive_seed

__all__ = ["DEFAULT_CACHE_LIMIT", "DeviceSynthesis", "FrameCache", "PlanDataset", "render_batch"]

DEFAULT_CACHE_LIMIT = 16 * 2**30  # bytes of decoded uint8 frames a FrameCache may hold


# ---------------------------------------------------------------------- frame cache


def _decode_uint8(frame: Frame) -> Tensor:
    """One frame as uint8 (3, H, W) on the CPU: image files straight from Pillow (no float
    round trip), anything else through its float decode, rounded."""
    if isinstance(frame, ImageFile):
        from PIL import Image

        try:
            with Image.open(frame.path) as img:
                array = np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise DataError(f"cannot read image {frame.path}: {' '.join(str(exc).split())}"
                            ) from None
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return (frame().clamp(0, 1) * 255).round().to(torch.uint8)


class FrameCache:
    """Every frame of ``dataset``'s usable clips, decoded once to uint8 (3, H, W) on ``device``.

    ``frames[s][j][t]``: frame t of the j-th usable clip of source s (``dataset.clips[s][j]``);
    ``sizes[s][j]`` its (H, W) (all frames of a clip must share it: DataError otherwise) and
    ``counts[s][j]`` its number of frames. ``threads`` decode in parallel (Pillow releases the
    GIL). ConfigError when the decoded frames would exceed ``limit`` bytes (estimated from the
    file headers before anything is decoded).
    """

    def __init__(self, dataset: TrainingDataset, device: torch.device | str = "cpu", *,
                 threads: int | None = None, limit: int = DEFAULT_CACHE_LIMIT):
        self.device = torch.device(device)
        jobs: list[tuple[int, int, int, Frame]] = []
        estimate = 0
        for s, (source, usable) in enumerate(zip(dataset.sources, dataset.clips)):
            size_of = getattr(source, "frame_size", lambda i: None)
            for j, clip in enumerate(usable):
                frames = source.clip(clip)
                size = size_of(clip)
                if size is not None:
                    estimate += 3 * size[0] * size[1] * len(frames)
                jobs.extend((s, j, t, f) for t, f in enumerate(frames))
        if estimate > limit:
            raise ConfigError(
                f"run.synthesis=device caches every decoded training frame: "
                f"{estimate / 2**30:.1f} GiB > {limit / 2**30:.1f} GiB; use run.synthesis=loader")
        workers = threads or min(32, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            decoded = list(pool.map(lambda job: _decode_uint8(job[3]), jobs))
        self.frames: list[list[list[Tensor]]] = [[[] for _ in usable] for usable in dataset.clips]
        for (s, j, _, frame), image in zip(jobs, decoded):
            clip = self.frames[s][j]
            if clip and clip[0].shape != image.shape:
                raise DataError(f"{frame.label}: frame of size {tuple(image.shape[1:])} in a clip "
                                f"of {tuple(clip[0].shape[1:])} frames")
            clip.append(image.to(self.device))
        self.sizes = [[tuple(c[0].shape[1:]) for c in src] for src in self.frames]
        self.counts = [[len(c) for c in src] for src in self.frames]
        self.nbytes = sum(f.numel() for src in self.frames for c in src for f in c)

    def summary(self) -> str:
        n = sum(len(c) for src in self.frames for c in src)
        return f"{n} frames cached on {self.device} ({self.nbytes / 2**20:.0f} MiB uint8)"


# ---------------------------------------------------------------------- plans (CPU workers)


class PlanDataset(Dataset):
    """The random parameters of ``TrainingDataset`` samples, without their pixels.

    ``plans[i]`` draws from ``dataset.generator(i)`` exactly what ``dataset[i]`` draws, in the
    same order, up to (excluded) the noise values themselves; so sample i has the same source,
    clip, frames, motion, placement, ISP metadata, dihedral transform and noise level in both
    paths. ``sizes`` / ``counts``: per source and usable clip, the frame size and number of frames
    (:class:`FrameCache` ``.sizes`` / ``.counts``). Items are dicts of small tensors that
    ``default_collate`` batches (K = ``config.objects[1]`` object slots, N frames):

    source, index, clip () long; frame_idx (N,) long (frame of the clip per burst frame; a still
    repeats 0); box (4,) long (y0, x0, y1, x1), the footprint in the source frame (ends
    exclusive); cam_m (N, 2, 2), cam_o (N, 2) float64: footprint position = cam_m · v + cam_o of
    output pixel v = (y, x); identity (N,) bool (untransformed frames, copied exactly); corner (2,)
    long, the reference crop's top-left in the footprint; obj_active (K,) bool, obj_pos (N, K, 2),
    obj_radii (K, 2), obj_angle (K,), obj_softness (K,), obj_tex (K, 2) float64 (objects, as
    :func:`~burstjdd.synth.motion.render_motion` draws them); dihedral () long; noise (2,)
    float32 [shot, read]; origin (2,), ref () long; wb, cam2rgb, rgb2cam, rgb_gain, red_gain,
    blue_gain as ``make_training_sample``.
    """

    def __init__(self, dataset: TrainingDataset, sizes: Sequence[Sequence[tuple[int, int]]],
                 counts: Sequence[Sequence[int]]):
        self.weights, self.clips = dataset.weights, dataset.clips
        self.config: SampleConfig = dataset.config
        self.seed, self.rank, self.length = dataset.seed, dataset.rank, dataset.length
        self.labels = [s.name for s in dataset.sources]
        self.sizes = [list(map(tuple, s)) for s in sizes]
        self.counts = [list(c) for c in counts]
        self.generator = dataset.generator  # bound method: (seed, rank, index) only

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        g = self.generator(index)
        config = self.config
        s = int(torch.multinomial(self.weights, 1, generator=g))
        j = int(torch.randint(len(self.clips[s]), (), generator=g))
        plan = _plan(config, g, self.counts[s][j], self.sizes[s][j],
                     f"{self.labels[s]} clip {self.clips[s][j]}")
        plan.update(source=torch.tensor(s, dtype=torch.long),
                    index=torch.tensor(index, dtype=torch.long),
                    clip=torch.tensor(j, dtype=torch.long))
        return plan


def _plan(config: SampleConfig, g: torch.Generator, m: int, size_hw: tuple[int, int],
          label: str) -> dict[str, Tensor]:
    """The draws of ``make_training_sample`` (same order) for a clip of ``m`` frames of size
    ``size_hw``, as plan tensors (see :class:`PlanDataset`)."""
    n, size = config.n_frames, config.frame_size
    ref = n // 2
    still = m == 1
    if still:
        indices, shift_range = [0] * n, config.shift_range
    else:
        if m < n:
            raise DataError(f"{label}: clip has {m} frames, fewer than n_frames={n}")
        k_max = min(config.max_interval, (m - 1) // max(n - 1, 1))
        k = _randint(g, 1, k_max)
        start = _randint(g, 0, m - 1 - (n - 1) * k)
        indices = [start + j * k for j in range(n)]
        if config.reverse and _randint(g, 0, 1):
            indices.reverse()
        shift_range = config.clip_shift_range
    hs, ws = size_hw
    if min(hs, ws) < config.min_source_size:
        raise DataError(f"{label}: image {hs}x{ws} too small for {size}x{size} training frames "
                        f"(needs {config.min_source_size} px on each side)")
    room = (min(hs, ws) - size) // 2
    fixed = motion_margin(n, ref, 0.0)
    per_px = motion_margin(n, ref, 100.0) - fixed
    shift = min(_uniform(g, *shift_range), 100.0 * (room - fixed) / per_px)
    params = sample_motion(g, n, ref, shift, _randint(g, *config.objects), (size, size))
    y0, x0, y1, x1 = motion_bbox(params, (size, size))
    oy = _randint(g, -y0, hs - 1 - y1)
    ox = _randint(g, -x0, ws - 1 - x1)
    isp = sample_isp_params(g)
    dihedral = _randint(g, 0, 7) if config.augment else 0
    fixed_level = getattr(config, "noise", None)  # validation's fixed level, else random
    level = sample_noise_level(g) if fixed_level is None else NoiseLevel(*fixed_level)

    out = (size, size)
    corner = (-y0, -x0)  # reference crop's top-left in the footprint
    m_inv, o_inv = _camera_inverse(params, out)
    o_inv = o_inv + torch.tensor(corner, dtype=torch.float64)
    identity = [params.rotation[t] == 0.0 and params.zoom[t] == 1.0
                and params.translation[t] == (0.0, 0.0) for t in range(n)]
    slots = config.objects[1]
    pos = torch.zeros(n, slots, 2, dtype=torch.float64)
    radii = torch.ones(slots, 2, dtype=torch.float64)
    angle = torch.zeros(slots, dtype=torch.float64)
    soft = torch.ones(slots, dtype=torch.float64)
    tex = torch.zeros(slots, 2, dtype=torch.float64)
    active = torch.zeros(slots, dtype=torch.bool)
    ht, wt = y1 - y0 + 1, x1 - x0 + 1  # the texture: the reference frame's footprint
    if params.objects:
        pos[:, : len(params.objects)] = object_positions(params, out)
    for k, obj in enumerate(params.objects):
        r = math.ceil(obj.extent) + BICUBIC_SUPPORT_PX
        if ht < 2 * r + 1 or wt < 2 * r + 1:
            raise DataError(f"texture {ht}x{wt} too small for an object of radius {r} px")
        radii[k] = torch.tensor(obj.radii, dtype=torch.float64)
        angle[k], soft[k], active[k] = obj.angle, obj.softness, True
        tex[k, 0] = r + obj.texture[0] * (ht - 1 - 2 * r)
        tex[k, 1] = r + obj.texture[1] * (wt - 1 - 2 * r)
    ctx = config.context
    return {
        "frame_idx": torch.tensor(indices, dtype=torch.long),
        "box": torch.tensor([oy + y0, ox + x0, oy + y1 + 1, ox + x1 + 1], dtype=torch.long),
        "cam_m": m_inv, "cam_o": o_inv,
        "identity": torch.tensor(identity, dtype=torch.bool),
        "corner": torch.tensor(corner, dtype=torch.long),
        "obj_active": active, "obj_pos": pos, "obj_radii": radii, "obj_angle": angle,
        "obj_softness": soft, "obj_tex": tex,
        "dihedral": torch.tensor(dihedral, dtype=torch.long),
        "noise": torch.tensor([level.shot, level.read], dtype=torch.float32),
        "origin": torch.tensor([ctx // 2, ctx // 2], dtype=torch.long),
        "ref": torch.tensor(ref, dtype=torch.long),
        **_isp_tensors(isp),
    }


# ---------------------------------------------------------------------- rendering (device)


def _grid(points: Tensor, hs: int, ws: int) -> Tensor:
    """Pixel positions (..., 2) (y, x) → grid_sample grid (..., 2) (x, y) in [-1, 1]
    (align_corners=True: pixel centres on integer coordinates)."""
    return torch.stack([2 * points[..., 1] / max(ws - 1, 1) - 1,
                        2 * points[..., 0] / max(hs - 1, 1) - 1], -1)


def _footprints(plans: Mapping[str, Tensor], cache: FrameCache, n: int,
                device: torch.device) -> Tensor:
    """(B, N, 3, Hm, Wm) float sRGB in [0, 1]: each burst frame's footprint, padded by
    replication to the batch's largest footprint (so per-sample min/max are unchanged)."""
    box = plans["box"].tolist()
    hm = max(b[2] - b[0] for b in box)
    wm = max(b[3] - b[1] for b in box)
    sources, clips = plans["source"].tolist(), plans["clip"].tolist()
    frame_idx = plans["frame_idx"].tolist()
    out = torch.empty(len(box), n, 3, hm, wm, device=device)
    for b, (y0, x0, y1, x1) in enumerate(box):
        clip = cache.frames[sources[b]][clips[b]]
        done: dict[int, int] = {}
        for t, f in enumerate(frame_idx[b]):
            if f in done:  # a still (or a repeated frame): copy the padded footprint
                out[b, t] = out[b, done[f]]
                continue
            region = clip[f][:, y0:y1, x0:x1].to(device, non_blocking=True).float() / 255
            pad = (0, wm - (x1 - x0), 0, hm - (y1 - y0))
            out[b, t] = F.pad(region[None], pad, mode="replicate")[0] if any(pad) else region
            done[f] = t
    return out


def _unprocess(srgb: Tensor, rgb2cam: Tensor, wb: Tensor) -> Tensor:
    """:func:`~burstjdd.raw.unprocess.unprocess` with per-sample metadata: srgb (B, N, 3, H, W),
    rgb2cam (B, 3, 3), wb (B, 3) → linear camera RGB, same shape."""
    camera = apply_ccm(gamma_expand(inverse_smoothstep(srgb)), rgb2cam[:, None])
    return safe_invert_gains(camera, wb[:, None], INFLECTION).clamp(0.0, 1.0)


def _pixel_grid(size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    ys = torch.arange(size, dtype=torch.float32, device=device)[:, None]
    xs = torch.arange(size, dtype=torch.float32, device=device)[None, :]
    return ys, xs


def _warp(scenes: Tensor, plans: Mapping[str, Tensor], size: int) -> Tensor:
    """Camera motion: frame t of sample b samples its scene at cam_m · v + cam_o (bicubic,
    borders replicated); untransformed frames are exact copies. (B, N, 3, S, S)."""
    b, n, c, hm, wm = scenes.shape
    dev = scenes.device
    ys, xs = _pixel_grid(size, dev)
    m = plans["cam_m"].to(dev).float()[..., None, None]  # (B, N, 2, 2, 1, 1)
    o = plans["cam_o"].to(dev).float()[..., None, None]  # (B, N, 2, 1, 1)
    y = m[:, :, 0, 0] * ys + m[:, :, 0, 1] * xs + o[:, :, 0]
    x = m[:, :, 1, 0] * ys + m[:, :, 1, 1] * xs + o[:, :, 1]
    grid = _grid(torch.stack([y, x], -1), hm, wm)  # (B, N, S, S, 2)
    frames = F.grid_sample(scenes.reshape(b * n, c, hm, wm), grid.reshape(b * n, size, size, 2),
                           mode="bicubic", padding_mode="border", align_corners=True)
    frames = frames.view(b, n, c, size, size)
    corner = plans["corner"].tolist()
    for i, t in plans["identity"].nonzero().tolist():
        cy, cx = corner[i]
        frames[i, t] = scenes[i, t, :, cy:cy + size, cx:cx + size]
    return frames


def _objects(frames: Tensor, texture: Tensor, plans: Mapping[str, Tensor]) -> None:
    """Composite the moving objects over frames (B, N, C, S, S) in place, slot by slot, on the
    whole frame (alpha is 0 outside each object): texture (B, C, Hm, Wm) = the reference
    footprint."""
    active = plans["obj_active"]
    if not bool(active.any()):
        return
    b, n, c, s, _ = frames.shape
    dev, hm, wm = frames.device, texture.shape[-2], texture.shape[-1]
    ys, xs = _pixel_grid(s, dev)
    for k in range(active.shape[1]):
        on = active[:, k].to(dev)
        if not bool(active[:, k].any()):
            continue
        q = plans["obj_pos"][:, :, k].to(dev).float()[..., None, None]  # (B, N, 2, 1, 1)
        rel = torch.stack([(ys - q[:, :, 0]).expand(b, n, s, s),
                           (xs - q[:, :, 1]).expand(b, n, s, s)], -1)  # (B, N, S, S, 2)
        angle = plans["obj_angle"][:, k].to(dev)
        cos, sin = torch.cos(angle).float(), torch.sin(angle).float()
        radii = plans["obj_radii"][:, k].to(dev).float()  # (B, 2)
        shape = (b, 1, 1, 1)
        along = (cos.view(shape) * rel[..., 0] + sin.view(shape) * rel[..., 1]) \
            / radii[:, 0].view(shape)
        across = (-sin.view(shape) * rel[..., 0] + cos.view(shape) * rel[..., 1]) \
            / radii[:, 1].view(shape)
        dist = (torch.sqrt(along**2 + across**2) - 1) * radii.amin(1).view(shape)
        soft = plans["obj_softness"][:, k].to(dev).float().view(shape)
        alpha = (0.5 - dist / soft).clamp(0, 1) * on.view(shape)  # (B, N, S, S)
        pts = rel + plans["obj_tex"][:, k].to(dev).float()[:, None, None, None]
        grid = _grid(pts, hm, wm).reshape(b, n * s, s, 2)
        content = F.grid_sample(texture, grid, mode="bicubic", padding_mode="border",
                                align_corners=True)  # (B, C, N·S, S)
        content = content.view(b, c, n, s, s).transpose(1, 2)
        frames += alpha[:, :, None] * (content - frames)


def render_batch(plans: Mapping[str, Tensor], cache: FrameCache, config: SampleConfig,
                 generator: torch.Generator) -> dict[str, Tensor]:
    """A collated batch of :class:`PlanDataset` plans → the training batch (on ``cache.device``)
    that ``default_collate`` of ``make_training_sample`` dicts would give: frames, noise_map,
    clean (B, N, 4, F, F) packed; gt (B, 3, G, G); origin (B, 2); ref (B,); noise (B, 2); wb
    (B, 3); cam2rgb, rgb2cam (B, 3, 3); rgb_gain, red_gain, blue_gain, source, index (B,).
    ``generator`` (on the cache's device) draws the noise."""
    dev = cache.device
    n, size = config.n_frames, config.frame_size
    ref = n // 2
    scenes = _footprints(plans, cache, n, dev)
    linear = _unprocess(scenes, plans["rgb2cam"].to(dev), plans["wb"].to(dev))
    frames = _warp(linear, plans, size)
    texture = linear[:, ref]
    _objects(frames, texture, plans)
    lo = linear.amin(dim=(1, 2, 3, 4)).view(-1, 1, 1, 1, 1)
    hi = linear.amax(dim=(1, 2, 3, 4)).view(-1, 1, 1, 1, 1)
    clean = torch.minimum(torch.maximum(frames, lo), hi)
    if config.augment:
        kinds = plans["dihedral"].tolist()
        for kind in sorted(set(kinds)):
            if kind:
                rows = torch.tensor([i for i, v in enumerate(kinds) if v == kind], device=dev)
                clean[rows] = _dihedral(clean[rows], kind)
    level = plans["noise"].to(dev)
    shot, read = level[:, 0].view(-1, 1, 1, 1), level[:, 1].view(-1, 1, 1, 1)
    mosaics = mosaic(clean, "RGGB")  # (B, N, S, S)
    noisy = add_noise(mosaics, shot, read, generator)
    ctx, g = config.context, config.gt_size
    batch = {
        "frames": pack(noisy),
        "noise_map": pack(noise_map(noisy, shot, read)),
        "clean": pack(mosaics),
        "gt": clean[:, ref, :, ctx:ctx + g, ctx:ctx + g].contiguous(),
    }
    for key in ("origin", "ref", "noise", "wb", "cam2rgb", "rgb2cam", "rgb_gain", "red_gain",
                "blue_gain", "source", "index"):
        batch[key] = plans[key].to(dev, non_blocking=True)
    return batch


class DeviceSynthesis:
    """``run.synthesis: device`` for one TrainingDataset: its :class:`FrameCache` on ``device``,
    the :class:`PlanDataset` that DataLoader workers index (``plans``) and :meth:`render`."""

    def __init__(self, dataset: TrainingDataset, device: torch.device | str, *,
                 threads: int | None = None, limit: int = DEFAULT_CACHE_LIMIT):
        self.dataset = dataset
        self.cache = FrameCache(dataset, device, threads=threads, limit=limit)
        self.plans = PlanDataset(dataset, self.cache.sizes, self.cache.counts)

    def render(self, plans: Mapping[str, Any]) -> dict[str, Tensor]:
        """The training batch of a collated batch of plans; noise seeded by (seed, rank, first
        index of the batch)."""
        first = int(plans["index"][0])
        generator = torch.Generator(device=self.cache.device)
        generator.manual_seed(derive_seed("device-noise", self.dataset.seed, self.dataset.rank,
                                          first))
        return render_batch(plans, self.cache, self.dataset.config, generator)

    def summary(self) -> str:
        return f"device synthesis: {self.cache.summary()}"
