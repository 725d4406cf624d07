"""Clean sRGB frames -> synthetic noisy raw bursts (docs/method.md §5, docs/protocol.md).

Every burst follows the same chain: sRGB -> ``unprocess`` (linear camera RGB, one set of ISP
metadata per burst) -> motion (``synth.motion``, applied to the clean linear RGB) -> Bayer
``mosaic`` -> ``add_noise`` (one noise level per burst) -> noise map from the noisy y.

* ``simulate_burst``: one ``RawBurst`` with its ground truth, from a still (synthetic motion,
  true flow recorded) or a clip (its own motion; flow unknown).
* ``make_training_sample``: one training sample (dict of tensors, ``default_collate``-able)
  with random ISP metadata, noise level, frame interval/direction, synthetic motion and
  dihedral augmentation, frames with context for the coarse-alignment search.
* ``make_test_burst`` / ``make_test_sample``: the paper's synthetic test protocol.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from burstjdd.errors import ConfigError, DataError
from burstjdd.limits import MAX_SEED, available_memory
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.cfa import LR_GRID, check_pattern, mosaic, pack
from burstjdd.raw.noise import NoiseLevel, add_noise, noise_map, parse_noise, sample_noise_level
from burstjdd.raw.unprocess import IspParams, sample_isp_params, test_isp_params, unprocess
from burstjdd.synth.motion import (
    apply_motion,
    motion_bbox,
    motion_margin,
    render_motion,
    sample_motion,
)
from burstjdd.synth.sources import Frame, ImageFile, derive_seed

# Keys of a training sample dict (all tensors; test samples have all but "clean").
SAMPLE_KEYS = (
    "frames", "noise_map", "clean", "gt", "origin", "ref", "noise",
    "wb", "cam2rgb", "rgb2cam", "rgb_gain", "red_gain", "blue_gain",
)
# simulate_burst's longest burst: 64 frames of 1080p with ground truth and flow take ~3 GB (the
# paper's bursts have 5); a count beyond it is a typo, refused before any work.
MAX_FRAMES = 64
# Most moving objects per burst: each covers 8-25 % of the shorter side, so 16 already hide
# most of the scene, and every object costs a full-frame pass (a million would run for days).
MAX_OBJECTS = 16
# Largest shift between neighbouring frames (full-res px): half the largest image side read
# (8192), so any larger shift moves the scene out of every image; refused before any work.
MAX_SHIFT = 4096.0
# Peak memory of simulate_burst per pixel of the source image: BYTES_PER_PIXEL for the decoded
# image and its linear version plus BYTES_PER_FRAME_PIXEL per frame (warped frame, flow,
# validity, mosaic, noise). Rounded up from peak RSS growth measured on 1500² and 3000² photos
# with 1, 3 and 5 frames (113, 252, 208 and 321 B/px); checked before anything is decoded.
BYTES_PER_PIXEL = 48
BYTES_PER_FRAME_PIXEL = 72


ClipLike = (Tensor | np.ndarray | str | os.PathLike | Frame
            | Sequence[Frame | str | os.PathLike | Tensor | np.ndarray])


_SOURCE_TYPES = ("an sRGB image (NumPy (H, W, 3) array, uint8 or float in [0, 1]; tensor "
                 "(3, H, W); image path; Frame) or a clip (a sequence of those, an (N, H, W, 3) "
                 "array or an (N, 3, H, W) tensor)")


def _srgb_from_array(array: np.ndarray) -> Tensor:
    """A NumPy sRGB image (H, W, 3) or clip (N, H, W, 3), channels last as image readers give
    them (a 4th alpha channel is dropped), as float32 (3, H, W) / (N, 3, H, W) in [0, 1]: uint8
    and uint16 are scaled by their largest value, floats must already lie in [0, 1]."""
    if array.ndim not in (3, 4) or array.shape[-1] not in (3, 4):
        raise ConfigError(f"expected a NumPy sRGB image (H, W, 3) or clip (N, H, W, 3), channels "
                          f"last; got an array of shape {array.shape}")
    rgb = array[..., :3]
    if rgb.dtype in (np.uint8, np.uint16):
        rgb = rgb / float(np.iinfo(rgb.dtype).max)
    elif not np.issubdtype(rgb.dtype, np.floating):
        raise ConfigError(f"NumPy image of dtype {rgb.dtype}: expected uint8, uint16 or float "
                          "values in [0, 1]")
    elif rgb.size and not (np.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1):
        raise ConfigError(f"a float image must hold sRGB values in [0, 1], got {rgb.min():.4g} "
                          f"to {rgb.max():.4g} (8-bit values as floats? divide by 255)")
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).movedim(-1, -3)


def _as_frame(item: object) -> Frame | Tensor:
    """One frame of a clip: an image path becomes an ImageFile, a NumPy (H, W, 3) image a
    (3, H, W) tensor; tensors and Frames stay as they are. TypeError for anything else."""
    if isinstance(item, (str, os.PathLike)):
        return ImageFile(item)
    if isinstance(item, np.ndarray):
        return _srgb_from_array(item)
    if isinstance(item, (Tensor, Frame)):
        return item
    raise TypeError(f"simulate_burst: a clip's frames must be images (NumPy (H, W, 3) arrays, "
                    f"(3, H, W) tensors, paths or Frames), got {type(item).__name__}")


def _as_frames(source: ClipLike) -> list[Frame | Tensor]:
    """Normalise a still/clip argument into a list of frames (Frame callables or (3, H, W)).
    TypeError saying what is expected for an argument of another type."""
    if isinstance(source, np.ndarray):
        source = _srgb_from_array(source)
    if isinstance(source, Tensor):
        if source.dim() == 3:
            return [source]
        if source.dim() == 4:
            return list(source)
        raise ConfigError(
            f"expected an sRGB image (3, H, W) or clip (N, 3, H, W), got {tuple(source.shape)}"
        )
    if isinstance(source, (str, os.PathLike)):
        return [ImageFile(source)]
    if isinstance(source, Frame):
        return [source]
    if isinstance(source, (bytes, Mapping)) or not isinstance(source, Iterable):
        raise TypeError(f"simulate_burst: source must be {_SOURCE_TYPES}; got "
                        f"{type(source).__name__}")
    frames = [_as_frame(f) for f in source]
    if not frames:
        raise DataError("empty clip (no frames)")
    return frames


def _label(frame: Frame | Tensor) -> str:
    return "tensor" if isinstance(frame, Tensor) else frame.label


def _decode(frame: Frame | Tensor, box: tuple[int, int, int, int] | None) -> Tensor:
    """One frame, or its box (y0, x0, y1, x1): (3, h, w)."""
    if isinstance(frame, Tensor):
        return frame if box is None else frame[:, box[0] : box[2], box[1] : box[3]]
    if box is None:
        return frame()
    crop = getattr(frame, "crop", None)
    return crop(box) if crop is not None else frame()[:, box[0] : box[2], box[1] : box[3]]


def _frame_size(frame: Frame | Tensor) -> tuple[int, int] | None:
    """(H, W) without decoding when the frame can tell, else None."""
    if isinstance(frame, Tensor):
        return tuple(frame.shape[-2:])
    return getattr(frame, "size", None)


def _check_memory(frame: Frame | Tensor, n_frames: int) -> None:
    """DataError, before decoding, when a burst of ``n_frames`` from ``frame``'s size needs more
    memory than is available (:func:`~burstjdd.limits.available_memory`); unknown sizes pass."""
    size = _frame_size(frame)
    free = available_memory()
    if size is None or free is None:
        return
    need = (BYTES_PER_PIXEL + BYTES_PER_FRAME_PIXEL * n_frames) * size[0] * size[1]
    if need > free:
        raise DataError(f"{_label(frame)}: a {n_frames}-frame burst of this {size[1]}x{size[0]} "
                        f"image needs about {need / 2**30:.1f} GiB of memory, only "
                        f"{free / 2**30:.1f} GiB is available; use a smaller image or fewer "
                        "frames")


def _load(
    frames: Sequence[Frame | Tensor],
    indices: Sequence[int],
    box: tuple[int, int, int, int] | None = None,
) -> Tensor:
    """Decode frames[indices] (or their box) -> (len(indices), 3, h, w); decoded in ascending
    index order (cheap sequential video decoding), returned in the order asked."""
    decoded = {i: _decode(frames[i], box) for i in sorted(set(indices))}
    images = [decoded[i] for i in indices]
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) != 1 or images[0].dim() != 3 or images[0].shape[0] != 3:
        raise DataError(
            f"{_label(frames[indices[0]])}: frames must be sRGB (3, H, W) of one size, "
            f"got {sorted(shapes)}"
        )
    return torch.stack(images).float()


def _even(n: int) -> int:
    return n - n % 2


def _noise_level(noise: str | NoiseLevel) -> NoiseLevel:
    return noise if isinstance(noise, NoiseLevel) else parse_noise(noise)


def _isp_tensors(isp: IspParams) -> dict[str, Tensor]:
    return {
        "wb": isp.wb,
        "cam2rgb": isp.cam2rgb,
        "rgb2cam": isp.rgb2cam,
        "rgb_gain": torch.tensor(isp.rgb_gain, dtype=torch.float32),
        "red_gain": torch.tensor(isp.red_gain, dtype=torch.float32),
        "blue_gain": torch.tensor(isp.blue_gain, dtype=torch.float32),
    }


def simulate_burst(
    source: ClipLike,
    *,
    n_frames: int = 5,
    noise: str | NoiseLevel = "high",
    max_shift: float = 64.0,
    n_objects: int = 2,
    crop: tuple[int, int] | None = None,
    seed: int = 0,
    isp: IspParams | None = None,
    cfa: str = "RGGB",
    clip_motion: bool = False,
) -> RawBurst:
    """Simulate one noisy raw burst with its ground truth.

    source: a still (NumPy sRGB image (H, W, 3), uint8 or float in [0, 1]; sRGB (3, H, W)
    tensor in [0, 1]; image path; Frame) or a clip ((N, H, W, 3) array, (M, 3, H, W) tensor or a
    sequence of those frames, M >= n_frames; its centred n_frames window is used).
    Still: synthetic motion (``sample_motion(max_shift, n_objects)``), flow/valid = the true motion.
    Clip: the clip's own motion, plus the synthetic motion when ``clip_motion``; flow/valid None.
    crop: (H, W) even output size, or None for the largest even size the motion allows
    (``motion_margin`` px off each side for stills with motion). The reference is n_frames // 2.
    isp: camera metadata (default ``test_isp_params()``); wb = isp.wb, ccm = isp.cam2rgb.
    max_shift: 0..MAX_SHIFT (4096) full-res px; n_objects: 0..MAX_OBJECTS; seed: 0..MAX_SEED
    (2**64 - 1); anything else is a ConfigError.
    Returns a ``RawBurst`` (raw (N, H, W) mosaics in ``cfa``, gt (3, H, W) clean linear camera RGB
    of the reference, noise level, meta with the settings); all randomness from ``seed``.
    """
    cfa = check_pattern(cfa)
    level = _noise_level(noise)
    isp = test_isp_params() if isp is None else isp
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or not \
            1 <= n_frames <= MAX_FRAMES:
        raise ConfigError(f"n_frames must be an integer in 1..{MAX_FRAMES}, got {n_frames!r}")
    if not (isinstance(max_shift, (int, float)) and 0 <= max_shift <= MAX_SHIFT):
        raise ConfigError(f"max_shift must be a number of pixels in 0..{MAX_SHIFT:g}, got "
                          f"{max_shift!r}")
    if isinstance(n_objects, bool) or not isinstance(n_objects, int) or \
            not 0 <= n_objects <= MAX_OBJECTS:
        raise ConfigError(f"n_objects must be an integer in 0..{MAX_OBJECTS}, got {n_objects!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    if crop is not None and not (
            isinstance(crop, (tuple, list)) and len(crop) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) for c in crop)):
        raise ConfigError(f"crop must be (H, W), two integers, got {crop!r}")
    if crop is not None and (crop[0] % 2 or crop[1] % 2 or min(crop) < 2):
        raise ConfigError(f"crop {crop[0]}x{crop[1]} must be even and positive")
    if not isinstance(isp, IspParams):
        raise ConfigError(f"isp must be IspParams or None, got {type(isp).__name__}")
    frames = _as_frames(source)
    label = _label(frames[0])
    _check_memory(frames[0], n_frames)
    ref = n_frames // 2
    still = len(frames) == 1
    generator = torch.Generator().manual_seed(seed)
    if still:
        srgb = _load(frames, [0])[0]
    else:
        if len(frames) < n_frames:
            raise DataError(
                f"{label}: clip has {len(frames)} frames, fewer than n_frames={n_frames}"
            )
        start = (len(frames) - n_frames) // 2
        srgb = _load(frames, list(range(start, start + n_frames)))
    hs, ws = srgb.shape[-2:]
    moving = still or clip_motion
    if crop is None:
        m = motion_margin(n_frames, ref, max_shift) if moving else 0
        crop = (_even(hs - 2 * m), _even(ws - 2 * m))
        if min(crop) < 16:
            raise DataError(
                f"{label}: image {hs}x{ws} too small for max_shift {max_shift:g} (needs at least "
                f"{2 * m + 16}x{2 * m + 16} px); pass a smaller max_shift or a crop"
            )
    if crop[0] > hs or crop[1] > ws:
        raise DataError(f"{label}: image {hs}x{ws} smaller than the crop {crop[0]}x{crop[1]}")
    linear = unprocess(srgb, isp)
    flow = valid = None
    if moving:
        params = sample_motion(generator, n_frames, ref, max_shift, n_objects, crop)
        try:
            clean, flow, valid = apply_motion(linear, params, crop)
        except DataError as exc:
            raise DataError(f"{label}: {exc}") from None
        if not still:
            flow = valid = None
    else:  # a clip as it is: centre crop of every frame
        oy, ox = (hs - crop[0]) // 2, (ws - crop[1]) // 2
        clean = linear[..., oy : oy + crop[0], ox : ox + crop[1]]
    raw = add_noise(mosaic(clean, cfa), level.shot, level.read, generator)
    meta = {
        "generator": "burstjdd.simulate_burst",
        "source": label,
        "seed": seed,
        "max_shift": max_shift if moving else 0.0,
        "n_objects": n_objects if moving else 0,
        "clip": not still,
    }
    return RawBurst(
        raw=raw, cfa=cfa, wb=isp.wb, ccm=isp.cam2rgb, noise=level, ref=ref,
        gt=clean[ref].contiguous(), flow=flow, valid=valid, meta=meta,
    )


@dataclass(frozen=True)
class SampleConfig:
    """Settings of training samples (docs/method.md §5). Lengths in full-resolution pixels.

    n_frames: burst length N (reference N // 2). gt_size: GT crop side (multiple of 8; 128 =
    64 packed). search_radius: coarse-alignment radius; each side gets ceil(radius / 8) * 8 px of
    context, so frames are gt_size + 2 * context and the crop sits on the LR grid.
    shift_range: stills' largest neighbouring camera step, drawn uniformly per sample
    (``sample_motion``'s max_shift). clip_shift_range: the same for the synthetic motion added on
    top of clips. objects: (min, max) moving objects per sample, inclusive. max_interval: clips
    use every k-th frame, k uniform in 1..max_interval (bounded by the clip length); reverse:
    random playback direction. augment: random dihedral transform (before mosaicking).
    noise: a fixed (shot, read) level instead of the random one of ``sample_noise_level``
    (validation at ``low`` and ``high``).
    """

    n_frames: int = 5
    gt_size: int = 128
    search_radius: int = 48
    shift_range: tuple[float, float] = (0.0, 48.0)
    clip_shift_range: tuple[float, float] = (0.0, 16.0)
    objects: tuple[int, int] = (0, 2)
    max_interval: int = 3
    reverse: bool = True
    augment: bool = True
    noise: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.n_frames < 1 or self.gt_size < LR_GRID or self.gt_size % LR_GRID:
            raise ConfigError(f"need n_frames >= 1 and gt_size a positive multiple of {LR_GRID}")
        if self.search_radius < 0 or self.max_interval < 1:
            raise ConfigError("search_radius must be >= 0 and max_interval >= 1")
        for name in ("shift_range", "clip_shift_range", "objects"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError(f"{name} must satisfy 0 <= min <= max (got {(lo, hi)})")
        if self.objects[1] > MAX_OBJECTS:
            raise ConfigError(f"objects: at most {MAX_OBJECTS} moving objects per sample, got "
                              f"{self.objects[1]}")

    @property
    def context(self) -> int:
        """Context px on each side of the GT crop (search_radius rounded up to the LR grid)."""
        return math.ceil(self.search_radius / LR_GRID) * LR_GRID

    @property
    def frame_size(self) -> int:
        return self.gt_size + 2 * self.context

    @property
    def min_source_size(self) -> int:
        """Smallest image side a sample can be cut from (frames + the motion's fixed margin)."""
        return self.frame_size + 2 * motion_margin(self.n_frames, self.n_frames // 2, 0.0)

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(generator: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (inclusive)."""
    return lo + int(torch.randint(hi - lo + 1, (), generator=generator))


def _dihedral(x: Tensor, k: int) -> Tensor:
    """One of the 8 symmetries of the square on the last two dims: bit 0 flips rows, bit 1
    flips columns, bit 2 transposes. Applied to RGB before mosaicking, so the CFA phase stays."""
    if k & 1:
        x = x.flip(-2)
    if k & 2:
        x = x.flip(-1)
    if k & 4:
        x = x.transpose(-2, -1)
    return x


def make_training_sample(
    source: Sequence[Frame | Tensor] | Tensor, config: SampleConfig, generator: torch.Generator
) -> dict[str, Tensor]:
    """One training sample (docs/method.md §5) from a still or a clip; randomness from
    ``generator``.

    source: a still ((3, H, W) tensor or a one-frame list) or a clip (frames or (M, 3, H, W),
    M >= n_frames), sRGB in [0, 1]. Clips: frame interval k and direction drawn, then synthetic
    motion (clip_shift_range) on top; stills: synthetic motion (shift_range). The motion is
    scaled down when the image is too small for it; DataError if the image is smaller than
    frame_size + a few px. Random ISP metadata (``sample_isp_params``) and noise level
    (``sample_noise_level``), random dihedral transform, RGGB mosaic.

    Returns a dict (F = frame_size / 2 packed px, G = gt_size):
      frames, noise_map, clean: (N, 4, F, F) noisy packed y, sqrt(shot*y + read^2), clean packed;
      gt: (3, G, G) clean linear camera RGB crop of the reference;
      origin: (2,) long, top-left of the GT crop in packed px (= context / 2, a multiple of 4);
      ref: () long; noise: (2,) [shot, read]; wb (3,), cam2rgb (3, 3), rgb2cam (3, 3),
      rgb_gain, red_gain, blue_gain: () float32.
    """
    frames = _as_frames(source) if isinstance(source, Tensor) else list(source)
    n, size = config.n_frames, config.frame_size
    ref = n // 2
    still = len(frames) == 1
    label = _label(frames[0])
    if still:
        indices, shift_range = [0], config.shift_range
    else:
        if len(frames) < n:
            raise DataError(f"{label}: clip has {len(frames)} frames, fewer than n_frames={n}")
        k_max = min(config.max_interval, (len(frames) - 1) // max(n - 1, 1))
        k = _randint(generator, 1, k_max)
        span = (n - 1) * k
        start = _randint(generator, 0, len(frames) - 1 - span)
        indices = [start + j * k for j in range(n)]
        if config.reverse and _randint(generator, 0, 1):
            indices.reverse()
        shift_range = config.clip_shift_range
    known = _frame_size(frames[indices[0]])
    if known is None:  # decode the first frame once to learn its size
        frames = list(frames)
        frames[indices[0]] = frames[indices[0]]()
        known = tuple(frames[indices[0]].shape[-2:])
    hs, ws = known
    if min(hs, ws) < config.min_source_size:
        raise DataError(
            f"{label}: image {hs}x{ws} too small for {size}x{size} training frames "
            f"(needs {config.min_source_size} px on each side)"
        )
    # largest shift the image allows: motion_margin is linear in max_shift
    room = (min(hs, ws) - size) // 2
    fixed = motion_margin(n, ref, 0.0)
    per_px = motion_margin(n, ref, 100.0) - fixed
    shift = min(_uniform(generator, *shift_range), 100.0 * (room - fixed) / per_px)
    params = sample_motion(
        generator, n, ref, shift, _randint(generator, *config.objects), (size, size)
    )
    # place the motion's footprint at a random position; unprocess only that region
    y0, x0, y1, x1 = motion_bbox(params, (size, size))
    oy = _randint(generator, -y0, hs - 1 - y1)
    ox = _randint(generator, -x0, ws - 1 - x1)
    isp = sample_isp_params(generator)
    # decode only the footprint (all frames: DataError if one is smaller than the first)
    region = unprocess(_load(frames, indices, (oy + y0, ox + x0, oy + y1 + 1, ox + x1 + 1)), isp)
    scene = region[0] if still else region
    clean = render_motion(scene, params, (size, size), origin=(-y0, -x0))
    if config.augment:
        clean = _dihedral(clean, _randint(generator, 0, 7))
    level = sample_noise_level(generator) if config.noise is None else NoiseLevel(*config.noise)
    mosaics = mosaic(clean, "RGGB")
    noisy = add_noise(mosaics, level.shot, level.read, generator)
    ctx, g = config.context, config.gt_size
    return {
        "frames": pack(noisy),
        "noise_map": pack(noise_map(noisy, level.shot, level.read)),
        "clean": pack(mosaics),
        "gt": clean[ref, :, ctx : ctx + g, ctx : ctx + g].contiguous(),
        "origin": torch.tensor([ctx // 2, ctx // 2], dtype=torch.long),
        "ref": torch.tensor(ref, dtype=torch.long),
        "noise": torch.tensor([level.shot, level.read], dtype=torch.float32),
        **_isp_tensors(isp),
    }


def make_test_burst(
    clip: Sequence[Frame | Tensor] | Tensor,
    centre: int,
    clip_name: str,
    noise: str | NoiseLevel = "high",
    *,
    n_frames: int = 5,
) -> RawBurst:
    """The paper's synthetic test burst (docs/protocol.md) of frame ``centre`` of a clip.

    Window [centre - n//2, centre + n//2] (centre frames only: DataError if it leaves the clip),
    fixed metadata ``test_isp_params()``, RGGB, noise of frame j drawn from a generator seeded by
    derive_seed(clip_name, j) (the same noise for a frame in every window). Odd heights/widths
    lose their last row/column. gt: clean linear camera RGB of the centre frame.
    """
    frames = _as_frames(clip) if isinstance(clip, Tensor) else list(clip)
    half = n_frames // 2
    if not half <= centre < len(frames) - (n_frames - 1 - half):
        raise DataError(
            f"{clip_name}: frame {centre} has no full {n_frames}-frame window in a clip of "
            f"{len(frames)} frames"
        )
    indices = list(range(centre - half, centre - half + n_frames))
    level = _noise_level(noise)
    isp = test_isp_params()
    srgb = _load(frames, indices)
    h, w = _even(srgb.shape[-2]), _even(srgb.shape[-1])
    clean = unprocess(srgb[..., :h, :w], isp)
    mosaics = mosaic(clean, "RGGB")
    generators = [torch.Generator().manual_seed(derive_seed(clip_name, j)) for j in indices]
    noisy = torch.stack([
        add_noise(m, level.shot, level.read, g) for m, g in zip(mosaics, generators)
    ])
    meta = {"generator": "burstjdd.make_test_burst", "clip": clip_name, "frames": indices}
    return RawBurst(
        raw=noisy, cfa="RGGB", wb=isp.wb, ccm=isp.cam2rgb, noise=level, ref=half,
        gt=clean[half].contiguous(), meta=meta,
    )


def burst_to_sample(burst: RawBurst) -> dict[str, Tensor]:
    """A simulated RGGB burst as a sample dict (the keys of ``make_training_sample``; ``clean``
    is absent, ``origin`` is 0, the noise map comes from the noisy y; needs gt and noise)."""
    if burst.cfa != "RGGB" or burst.gt is None or burst.noise is None:
        raise ConfigError("burst_to_sample needs an RGGB burst with gt and noise")
    level = burst.noise
    wb = burst.wb
    return {
        "frames": pack(burst.raw),
        "noise_map": pack(noise_map(burst.raw, level.shot, level.read)),
        "gt": burst.gt,
        "origin": torch.zeros(2, dtype=torch.long),
        "ref": torch.tensor(burst.ref, dtype=torch.long),
        "noise": torch.tensor([level.shot, level.read], dtype=torch.float32),
        "wb": wb,
        "cam2rgb": burst.ccm,
        "rgb_gain": wb[1].clone(),
        "red_gain": wb[0] / wb[1],
        "blue_gain": wb[2] / wb[1],
    }


def make_test_sample(
    clip: Sequence[Frame | Tensor] | Tensor,
    centre: int,
    clip_name: str,
    noise: str | NoiseLevel = "high",
    *,
    n_frames: int = 5,
) -> dict[str, Tensor]:
    """``make_test_burst`` as a sample dict (``burst_to_sample``) plus ``rgb2cam``."""
    sample = burst_to_sample(make_test_burst(clip, centre, clip_name, noise, n_frames=n_frames))
    sample["rgb2cam"] = test_isp_params().rgb2cam
    return sample
