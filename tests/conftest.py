"""Fixtures shared by several test modules, and the synthetic-burst factory behind two of them.

``make_frames`` and ``make_burst`` return :func:`burst_frames` and :func:`synthetic_burst`:
frames of one scene seen through a moving crop (integer motion, so the truth is exact),
optionally mosaicked and noisy, as a tensor or as a :class:`~burstjdd.RawBurst`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import skimage.data
import torch
from PIL import Image
from torch import Tensor

from burstjdd import RawBurst
from burstjdd.raw.cfa import mosaic
from burstjdd.raw.noise import NoiseLevel, add_noise
from burstjdd.raw.unprocess import IspParams

Motion = int | Sequence[tuple[int, int]]


def burst_frames(
    scene: Tensor,
    motion: Motion,
    size: int | tuple[int, int] | None = None,
    *,
    origin: tuple[int, int] | None = None,
    unit: int = 1,
    cfa: str | None = None,
    noise: NoiseLevel | None = None,
    seed: int = 0,
) -> Tensor:
    """Frames of ``scene`` (C, H, W), linear RGB (C = 3) or packed raw (C = 4), through a crop.

    motion: the (dy, dx) of each frame in units of ``unit`` pixels: frame t shows the scene
    moved by unit·motion[t], i.e. it is the crop at ``origin − unit·motion[t]``, so
    frame_t[p + unit·motion[t]] = scene[origin + p]; an int n: n still frames. size: (h, w) of
    the crop, or h = w; None: the whole scene. origin: top-left corner of the still crop;
    None: centred in the scene. cfa: mosaic the RGB frames in this phase before the noise.
    noise: ``add_noise`` with this level, drawn from ``torch.Generator().manual_seed(seed)``;
    None or a zero level: clean frames. Returns (N, C, h, w), or (N, h, w) mosaics with cfa.
    """
    moves = [(0, 0)] * motion if isinstance(motion, int) else list(motion)
    height, width = scene.shape[-2:]
    h, w = (height, width) if size is None else (size, size) if isinstance(size, int) else size
    y0, x0 = ((height - h) // 2, (width - w) // 2) if origin is None else origin
    corners = [(y0 - unit * dy, x0 - unit * dx) for dy, dx in moves]
    if any(y < 0 or x < 0 or y + h > height or x + w > width for y, x in corners):
        raise ValueError(f"{h}x{w} crops at {corners} leave the {height}x{width} scene")
    frames = torch.stack([scene[:, y : y + h, x : x + w] for y, x in corners])
    if cfa is not None:
        frames = mosaic(frames, cfa)
    if noise is not None and (noise.shot or noise.read):
        frames = add_noise(frames, noise.shot, noise.read, torch.Generator().manual_seed(seed))
    return frames


def synthetic_burst(
    scene: Tensor,
    motion: Motion = 3,
    size: int | tuple[int, int] | None = None,
    *,
    origin: tuple[int, int] | None = None,
    cfa: str = "RGGB",
    noise: NoiseLevel | None = None,
    seed: int = 0,
    isp: IspParams | None = None,
    gt: bool = False,
    **fields,
) -> RawBurst:
    """A :class:`RawBurst` of the mosaics :func:`burst_frames` makes of a linear RGB scene.

    It stores ``cfa`` and ``noise``; wb and ccm are those of ``isp`` (``params.wb``,
    ``params.cam2rgb``), or unit gains and the identity without it; gt: also store the clean
    RGB crop of the reference frame (``ref``, by default N // 2). fields: further RawBurst
    fields (ref, meta, ...).
    """
    raw = burst_frames(scene, motion, size, origin=origin, cfa=cfa, noise=noise, seed=seed)
    if isp is not None:
        fields.update(wb=isp.wb, ccm=isp.cam2rgb)
    if gt:
        n = len(raw)
        ref = fields.get("ref", -1)
        fields["gt"] = burst_frames(scene, motion, size, origin=origin)[n // 2 if ref < 0 else ref]
    fields = {"wb": torch.ones(3), "ccm": torch.eye(3), **fields}
    return RawBurst(raw=raw, cfa=cfa, noise=noise, **fields)


@pytest.fixture(scope="session")
def make_frames() -> Callable[..., Tensor]:
    """The factory of synthetic frame stacks, :func:`burst_frames`."""
    return burst_frames


@pytest.fixture(scope="session")
def make_burst() -> Callable[..., RawBurst]:
    """The factory of synthetic bursts, :func:`synthetic_burst`."""
    return synthetic_burst


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for modules of tiny tensors: intra-op threads only add synchronisation
    there (badly so on a shared machine). Restored afterwards for the rest of the suite."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    """Three 80x80 crops of scikit-image photos (big enough for 48 px frames + motion)."""
    root = tmp_path_factory.mktemp("stills")
    for i, name in enumerate(("astronaut", "coffee", "chelsea")):
        Image.fromarray(getattr(skimage.data, name)()[100:180, 100:180]).save(root / f"{i}.png")
    return root


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels, with no pixel data (a
    decompression-bomb stand-in that costs nothing to write)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
