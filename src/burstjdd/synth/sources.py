"""Frame sources: where the clean sRGB content of synthetic bursts comes from.

A source is a list of *clips*; a clip is a list of lazily decoded frames (a still image is a
one-frame clip). Every frame decodes, on call, to a float32 sRGB tensor (3, H, W) in [0, 1].

* ``ImageFolderSource``: every image under a folder (any Pillow format, incl. WebP/JPEG);
  grayscale images (Pillow modes 1, L, LA, I, F, ...) are skipped and counted.
* ``ClipFolderSource``: REDS layout ``<root>/<clip>/<frame>``; frames in natural name order.
* ``VideoFileSource``: video files decoded with PyAV (the optional extra ``video``), optionally
  downscaled (x2 hides the codec artefacts of 720p H.264 clips).
* ``SkimageSource``: colour photos bundled with scikit-image (offline).
* ``DeadLeavesSource``: procedural dead-leaves images, seeded, optionally textured with crops of
  another source's images.

Sources only list files when built; pixels are decoded when a frame is called. Bad input raises
``DataError`` (one line, naming the file); skips are counted in ``skipped``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from burstjdd.errors import DataError
from burstjdd.raw.files import require_regular_file, special_file

IMAGE_EXTENSIONS = frozenset(
    ".png .apng .jpg .jpeg .jpe .jfif .webp .bmp .dib .tif .tiff .ppm .pgm .pnm .pbm .gif .tga "
    ".jp2 .j2k .jpx .qoi .avif .psd .pcx .sgi .ras".split()
)
VIDEO_EXTENSIONS = frozenset(".mp4 .mov .mkv .avi .webm .m4v .mpg .mpeg".split())
# Pillow modes without colour: skipped by the folder sources, refused by ``load_image``.
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "motorcycle")
# Most pixels of an image decoded here (8192 x 8192): checked on the header before decoding. A
# burst simulated from it takes tens of bytes per pixel, and a few hundred bytes of PNG can
# declare gigapixels (a decompression bomb).
MAX_IMAGE_PIXELS = 8192 * 8192


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across processes and runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _natural_key(name: str) -> list[Any]:
    # "2.png" before "10.png"
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _to_tensor(array: np.ndarray) -> Tensor:
    """(H, W, 3) uint8/uint16 -> (3, H, W) float32 in [0, 1]."""
    scale = 65535.0 if array.dtype == np.uint16 else 255.0
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float() / scale


Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), ends exclusive


def _check_box(box: Box, size: tuple[int, int], label: str) -> None:
    y0, x0, y1, x1 = box
    if not (0 <= y0 < y1 <= size[0] and 0 <= x0 < x1 <= size[1]):
        raise DataError(f"{label}: crop {box} outside the {size[0]}x{size[1]} image")


def _crop_array(array: np.ndarray, box: Box | None, label: str) -> np.ndarray:
    """(H, W, C) -> the box (or all of it)."""
    if box is None:
        return array
    _check_box(box, array.shape[:2], label)
    return array[box[0] : box[2], box[1] : box[3]]


def load_image(path: str | os.PathLike, box: Box | None = None) -> Tensor:
    """Decode an image file (or its ``box``) to float32 sRGB (3, H, W) in [0, 1]; alpha dropped.

    DataError if the file cannot be read (a folder, a FIFO or a device included), has no
    colour, or the box leaves the image.
    """
    from PIL import UnidentifiedImageError

    require_regular_file(path, DataError)
    try:
        with _open_image(path) as img:
            mode, size = img.mode, (img.height, img.width)
            if box is not None:
                _check_box(box, size, str(path))
                img = img.crop((box[1], box[0], box[3], box[2]))
            rgb = None if mode in GRAYSCALE_MODES else np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read image {path}: {' '.join(str(exc).split())}") from None
    if rgb is None:
        raise DataError(f"{path}: grayscale image (mode {mode}); colour images needed")
    return _to_tensor(rgb)


def _open_image(path: str | os.PathLike) -> Any:
    """``PIL.Image.open(path)`` (it reads the header only), refused with DataError when the image
    has more than MAX_IMAGE_PIXELS, before any pixel is decoded; Pillow's own decompression-bomb
    error and warning become that one message."""
    import warnings

    from PIL import Image

    def too_big(size: str) -> DataError:
        return DataError(f"{path}: {size}, more than the {MAX_IMAGE_PIXELS:,} pixels (8192 x 8192) "
                         "an image may have here; downscale it first")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:  # "Image size (N pixels) exceeds limit ..."
        count = re.search(r"\((\d+) pixels\)", str(exc))
        raise too_big(f"{int(count[1]):,} pixels" if count else "too many pixels") from None
    if img.width * img.height > MAX_IMAGE_PIXELS:
        img.close()
        raise too_big(f"{img.width}x{img.height} pixels")
    return img


def _probe(path: Path) -> tuple[str, tuple[int, int]]:
    """Pillow mode and (H, W) from the file header (no pixel decoding); DataError if unreadable."""
    from PIL import UnidentifiedImageError

    require_regular_file(path, DataError)
    try:
        with _open_image(path) as img:
            return img.mode, (img.height, img.width)
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {' '.join(str(exc).split())}") from None


def _list_images(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(files, key=lambda p: _natural_key(str(p.relative_to(folder))))


def _existing_dir(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        kind = special_file(root)  # a FIFO, a device, a symbolic link loop
        raise DataError(f"{root}: " + (f"is {kind}, not a regular file or a folder" if kind
                                       else "not a folder" if root.exists()
                                       else "no such file or folder"))
    return root


@runtime_checkable
class Frame(Protocol):
    """One lazily decoded frame: calling it returns float32 sRGB (3, H, W) in [0, 1].

    The frames of this module also have ``size`` ((H, W) without decoding pixels, or None when
    unknown) and ``crop(box)`` (the (y0, x0, y1, x1) part only: the float conversion, the
    biggest cost after decoding, is then paid for the box alone).
    """

    @property
    def label(self) -> str: ...

    def __call__(self) -> Tensor: ...


@runtime_checkable
class FrameSource(Protocol):
    """A named list of clips; ``clip(i)`` lists the frames of clip i in time order.

    The sources of this module also have ``skipped`` (counts by reason), ``summary()`` and
    ``frame_size(i)`` ((H, W) of clip i's frames from file headers, None when unknown).
    """

    name: str

    def __len__(self) -> int: ...

    def clip(self, i: int) -> Sequence[Frame]: ...


@dataclass(frozen=True)
class ImageFile:
    """An image file, decoded on call."""

    path: Path

    @property
    def label(self) -> str:
        return str(self.path)

    @property
    def size(self) -> tuple[int, int]:
        return _probe(self.path)[1]

    def __call__(self) -> Tensor:
        return load_image(self.path)

    def crop(self, box: Box) -> Tensor:
        return load_image(self.path, box)


def _check_index(source: FrameSource, i: int) -> int:
    n = len(source)
    if not -n <= i < n:
        raise IndexError(f"clip {i} out of range for source {source.name!r} with {n} clips")
    return i % n


class ImageFolderSource:
    """Every colour image under ``root`` (sub-folders too when ``recursive``), one still each.

    Grayscale images are skipped and counted in ``skipped["grayscale"]``; DataError when the
    folder holds no colour image or an image file cannot be read.
    """

    def __init__(self, root: str | os.PathLike, *, recursive: bool = True, name: str | None = None):
        self.root = _existing_dir(root)
        self.name = name or self.root.name
        paths = _list_images(self.root, recursive)
        probes = [_probe(p) for p in paths]
        colour = [(p, size) for p, (mode, size) in zip(paths, probes)
                  if mode not in GRAYSCALE_MODES]
        self.paths = tuple(p for p, _ in colour)
        self.sizes = tuple(size for _, size in colour)
        self.skipped = {"grayscale": len(paths) - len(self.paths)}
        if not self.paths:
            raise DataError(
                f"{self.root}: no colour images found "
                f"({self.skipped['grayscale']} grayscale skipped)"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def clip(self, i: int) -> list[Frame]:
        return [ImageFile(self.paths[_check_index(self, i)])]

    def frame_size(self, i: int) -> tuple[int, int]:
        return self.sizes[_check_index(self, i)]

    def summary(self) -> str:
        return f"{self.name}: {len(self)} images ({self.skipped['grayscale']} grayscale skipped)"


class ClipFolderSource:
    """Clips in REDS layout: every sub-folder of ``root`` holding images is a clip, its frames
    in natural name order. A folder that holds images directly is read as one clip.

    Clips with fewer than ``min_frames`` frames, or whose first frame is grayscale, are skipped
    and counted in ``skipped``; DataError when no clip is left or a first frame is unreadable.
    """

    def __init__(self, root: str | os.PathLike, *, min_frames: int = 1, name: str | None = None):
        self.root = _existing_dir(root)
        self.name = name or self.root.name
        subdirs = sorted(
            (d for d in self.root.iterdir() if d.is_dir()), key=lambda d: _natural_key(d.name)
        )
        candidates = [(d.name, _list_images(d, False)) for d in subdirs]
        candidates = [(n, f) for n, f in candidates if f]
        if not candidates:
            direct = _list_images(self.root, False)
            candidates = [(self.root.name, direct)] if direct else []
        self.skipped = {"short": 0, "grayscale": 0}
        clips = []
        for clip_name, frames in candidates:
            if len(frames) < min_frames:
                self.skipped["short"] += 1
                continue
            mode, size = _probe(frames[0])
            if mode in GRAYSCALE_MODES:
                self.skipped["grayscale"] += 1
            else:
                clips.append((clip_name, tuple(frames), size))
        if not clips:
            raise DataError(
                f"{self.root}: no usable clips (<root>/<clip>/<frame> layout; skipped "
                f"{self.skipped['short']} with < {min_frames} frames, "
                f"{self.skipped['grayscale']} grayscale)"
            )
        self.clip_names = tuple(c[0] for c in clips)
        self.frame_paths = tuple(c[1] for c in clips)
        self.sizes = tuple(c[2] for c in clips)  # of the first frame

    def __len__(self) -> int:
        return len(self.frame_paths)

    def clip(self, i: int) -> list[Frame]:
        return [ImageFile(p) for p in self.frame_paths[_check_index(self, i)]]

    def frame_size(self, i: int) -> tuple[int, int]:
        return self.sizes[_check_index(self, i)]

    def summary(self) -> str:
        frames = sum(len(f) for f in self.frame_paths)
        return (
            f"{self.name}: {len(self)} clips, {frames} frames (skipped {self.skipped['short']} "
            f"short, {self.skipped['grayscale']} grayscale clips)"
        )


def _import_av() -> Any:
    try:
        import av
    except ImportError:
        raise DataError(
            "reading video files needs PyAV: pip install 'burstjdd[video]'"
        ) from None
    return av


class _VideoDecoder:
    """Random access to the frames of one video file, in presentation order.

    Seeks to the key frame before a requested frame and decodes forward; requests for the frames
    that follow continue the same decode without seeking, so ascending windows are cheap. Keeps
    the last ``cache_frames`` converted frames (uint8). The open container is per process: it is
    dropped when pickled (DataLoader workers open their own).
    """

    def __init__(self, path: Path, downscale: int, cache_frames: int):
        self.path, self.downscale, self.cache_frames = path, downscale, cache_frames
        require_regular_file(path, DataError)
        av = _import_av()
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                keys, pts = [], []
                for packet in container.demux(stream):
                    if packet.pts is None:
                        continue
                    pts.append(packet.pts)
                    if packet.is_keyframe:
                        keys.append(packet.pts)
                height, width = stream.codec_context.height, stream.codec_context.width
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            raise DataError(f"cannot read video {path}: {' '.join(str(exc).split())}") from None
        if not pts:
            raise DataError(f"cannot read video {path}: no video frames")
        self.pts = tuple(sorted(pts))
        self.index_of = {p: i for i, p in enumerate(self.pts)}
        self.keys = tuple(sorted(self.index_of[k] for k in keys)) or (0,)
        self.size = (height // downscale, width // downscale)
        self._reset()

    def _reset(self) -> None:
        self._container = None
        self._frames = None  # decode generator positioned after frame self._pos
        self._pos = -1
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_container=None, _frames=None, _pos=-1, _cache=OrderedDict())
        return state

    def __len__(self) -> int:
        return len(self.pts)

    def _convert(self, frame: Any) -> np.ndarray:
        h, w = self.size
        return frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()

    def get(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        av = _import_av()
        try:
            if self._container is None:
                self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
            key = max(k for k in self.keys if k <= index)
            if self._frames is None or not key <= self._pos < index:
                # no decode in flight that can reach `index` without a seek
                self._container.seek(self.pts[key], stream=stream, backward=True)
                self._frames = self._container.decode(stream)
            for frame in self._frames:
                i = self.index_of.get(frame.pts, -1)
                self._pos = i
                if i == index:
                    out = self._convert(frame)
                    self._cache[index] = out
                    if len(self._cache) > self.cache_frames:
                        self._cache.popitem(last=False)
                    return out
                if i > index:
                    break
        except av.error.FFmpegError as exc:
            self._reset()
            reason = " ".join(str(exc).split())
            raise DataError(f"cannot decode video {self.path}: {reason}") from None
        self._frames, self._pos = None, -1
        raise DataError(f"cannot decode frame {index} of video {self.path}")


@dataclass(frozen=True)
class VideoFrame:
    """Frame ``index`` of a video file (through its source's shared decoder)."""

    decoder: _VideoDecoder = field(repr=False)
    index: int

    @property
    def label(self) -> str:
        return f"{self.decoder.path}#{self.index}"

    @property
    def size(self) -> tuple[int, int]:
        return self.decoder.size

    def __call__(self) -> Tensor:
        return _to_tensor(self.decoder.get(self.index))

    def crop(self, box: Box) -> Tensor:
        return _to_tensor(_crop_array(self.decoder.get(self.index), box, self.label))


class VideoFileSource:
    """Video files (a file, a list of files, or every video file in a folder), one clip each.

    Needs PyAV (``pip install 'burstjdd[video]'``). Frames are downscaled by the integer
    ``downscale`` (area filter). Random access costs a seek plus a decode from the previous key
    frame; ascending windows of one clip decode once (see ``_VideoDecoder``). For heavy random
    access training, extracting frames into a clip folder is faster.
    """

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        downscale: int = 2,
        cache_frames: int = 32,
        name: str | None = None,
    ):
        if downscale < 1:
            raise DataError(f"downscale must be a positive integer (got {downscale})")
        if isinstance(paths, (str, os.PathLike)):
            root = Path(paths)
            if root.is_dir():
                files = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
                if not files:
                    kinds = ", ".join(sorted(VIDEO_EXTENSIONS))
                    raise DataError(f"{root}: no video files ({kinds})")
            elif root.is_file():
                files = [root]
            else:
                raise DataError(f"{root}: no such file or folder")
            self.name = name or root.stem
        else:
            files = [Path(p) for p in paths]
            if not files:
                raise DataError("no video files given")
            self.name = name or "videos"
        self.decoders = tuple(_VideoDecoder(f, downscale, cache_frames) for f in files)
        self.skipped: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.decoders)

    def clip(self, i: int) -> list[Frame]:
        decoder = self.decoders[_check_index(self, i)]
        return [VideoFrame(decoder, k) for k in range(len(decoder))]

    def frame_size(self, i: int) -> tuple[int, int]:
        return self.decoders[_check_index(self, i)].size

    def summary(self) -> str:
        frames = sum(len(d) for d in self.decoders)
        h, w = self.decoders[0].size
        return f"{self.name}: {len(self)} videos, {frames} frames (first at {w}x{h})"


@dataclass(frozen=True)
class SkimageImage:
    """A colour photo bundled with scikit-image (``motorcycle``: left stereo view)."""

    name: str

    @property
    def label(self) -> str:
        return f"skimage:{self.name}"

    size = None  # known after loading only

    def _array(self) -> np.ndarray:
        import skimage.data

        try:
            if self.name == "motorcycle":
                image = skimage.data.stereo_motorcycle()[0]
            else:
                image = getattr(skimage.data, self.name)()
        except (AttributeError, ModuleNotFoundError, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise DataError(f"{self.label}: not available offline ({reason})") from None
        if image.ndim != 3 or image.shape[-1] < 3:
            raise DataError(f"{self.label}: grayscale image; colour images needed")
        return image[..., :3]

    def __call__(self) -> Tensor:
        return _to_tensor(self._array())

    def crop(self, box: Box) -> Tensor:
        return _to_tensor(_crop_array(self._array(), box, self.label))


class SkimageSource:
    """Colour photos bundled with scikit-image (no download), one still each."""

    def __init__(self, names: Sequence[str] = SKIMAGE_PHOTOS, *, name: str = "skimage"):
        import skimage.data

        unknown = [n for n in names if n != "motorcycle" and not hasattr(skimage.data, n)]
        if unknown or not names:
            raise DataError(f"unknown scikit-image sample(s) {unknown or list(names)}")
        self.names, self.name = tuple(names), name
        self.skipped: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def clip(self, i: int) -> list[Frame]:
        return [SkimageImage(self.names[_check_index(self, i)])]

    def frame_size(self, i: int) -> None:
        return None

    def summary(self) -> str:
        return f"{self.name}: {len(self)} images"


@dataclass(frozen=True)
class DeadLeavesImage:
    """A seeded dead-leaves image (``dead_leaves``), textured by ``texture`` when given."""

    seed: int
    size: tuple[int, int]
    r_min: float = 2.0
    r_max: float = 64.0
    texture: Frame | None = None

    @property
    def label(self) -> str:
        return f"dead_leaves:{self.seed}"

    def __call__(self) -> Tensor:
        texture = None if self.texture is None else self.texture()
        generator = torch.Generator().manual_seed(self.seed)
        return dead_leaves(
            generator, self.size, r_min=self.r_min, r_max=self.r_max, texture=texture
        )

    def crop(self, box: Box) -> Tensor:
        _check_box(box, self.size, self.label)
        return self()[:, box[0] : box[2], box[1] : box[3]]


def dead_leaves(
    generator: torch.Generator,
    size: tuple[int, int],
    *,
    r_min: float = 2.0,
    r_max: float = 64.0,
    supersample: int = 2,
    texture: Tensor | None = None,
) -> Tensor:
    """Render a dead-leaves image: (3, H, W) float32 sRGB in [0, 1].

    Opaque discs with radii of density r^-3 on [r_min, r_max] px (scale invariant) and uniform
    centres are stacked front to back (each pixel shows the first disc drawn over it) until the
    image is covered (at most 20x the mean coverage; any pixel still uncovered is mid-grey).
    Edges are anti-aliased by rendering at ``supersample`` x and averaging. Discs have uniform
    random colours, or with ``texture`` (3, Ht, Wt) each shows a crop of it at a random offset
    (indices wrap).
    """
    h, w = size
    s = supersample
    hs, ws = h * s, w * s
    a, b = r_min**-2, r_max**-2
    mean_area = 2 * math.pi * math.log(r_max / r_min) / (a - b)  # E[pi r^2]
    n = math.ceil(20 * h * w / mean_area)
    u = torch.rand(n, 8, generator=generator, dtype=torch.float64).numpy()
    radii = (a - u[:, 0] * (a - b)) ** -0.5  # inverse CDF of density r^-3
    # centres and radii on the supersampled grid (pixel centres at integers)
    r_ss = radii * s
    cy = (u[:, 1] * (h + 2 * radii) - radii + 0.5) * s - 0.5
    cx = (u[:, 2] * (w + 2 * radii) - radii + 0.5) * s - 0.5
    y0s = np.clip(np.ceil(cy - r_ss), 0, hs).astype(np.int64)
    y1s = np.clip(np.floor(cy + r_ss) + 1, 0, hs).astype(np.int64)
    x0s = np.clip(np.ceil(cx - r_ss), 0, ws).astype(np.int64)
    x1s = np.clip(np.floor(cx + r_ss) + 1, 0, ws).astype(np.int64)
    label = np.full((hs, ws), n, dtype=np.int64)  # n = uncovered
    for i in range(n):
        y0, y1, x0, x1 = y0s[i], y1s[i], x0s[i], x1s[i]
        if y0 >= y1 or x0 >= x1:
            continue
        dy2 = (np.arange(y0, y1) - cy[i])[:, None] ** 2
        dx2 = (np.arange(x0, x1) - cx[i])[None, :] ** 2
        patch = label[y0:y1, x0:x1]
        patch[(dy2 + dx2 <= r_ss[i] ** 2) & (patch == n)] = i
        if i % 1024 == 1023 and not (label == n).any():
            break
    label_t = torch.from_numpy(label.reshape(-1))
    if texture is None:
        colours = torch.cat([torch.from_numpy(u[:, 3:6]).float(), torch.full((1, 3), 0.5)])
        image = colours[label_t].T.reshape(3, hs, ws)
    else:
        ht, wt = texture.shape[-2:]
        shift = torch.from_numpy(u[:, 6:8] * np.array([ht, wt])).long()
        shift = torch.cat([shift, torch.zeros(1, 2, dtype=torch.long)])
        rows = torch.arange(hs).repeat_interleave(ws) // s
        cols = torch.arange(ws).repeat(hs) // s
        image = texture[:, (rows + shift[label_t, 0]) % ht, (cols + shift[label_t, 1]) % wt]
        image = torch.where(label_t == n, 0.5, image).reshape(3, hs, ws)
    return torch.nn.functional.avg_pool2d(image[None], s)[0].clamp(0, 1)


class DeadLeavesSource:
    """``count`` procedural dead-leaves stills of ``size`` (H, W), image i seeded by
    derive_seed(seed, i). With ``texture`` (another source), image i's discs are crops of one
    image of that source chosen by the same seed."""

    def __init__(
        self,
        count: int = 100,
        size: tuple[int, int] = (384, 384),
        *,
        seed: int = 0,
        texture: FrameSource | None = None,
        r_min: float = 2.0,
        r_max: float | None = None,
        name: str = "dead_leaves",
    ):
        if count < 1 or min(size) < 8:
            raise DataError(f"dead leaves need count >= 1 and size >= 8 px (got {count}, {size})")
        self.count, self.size, self.seed = count, tuple(size), seed
        self.texture, self.name = texture, name
        self.r_min = r_min
        self.r_max = r_max if r_max is not None else min(size) / 4
        self.skipped: dict[str, int] = {}

    def __len__(self) -> int:
        return self.count

    def clip(self, i: int) -> list[Frame]:
        seed = derive_seed(self.seed, _check_index(self, i))
        tex = None
        if self.texture is not None:
            frames = self.texture.clip(seed % len(self.texture))
            tex = frames[len(frames) // 2]
        return [DeadLeavesImage(seed, self.size, self.r_min, self.r_max, texture=tex)]

    def frame_size(self, i: int) -> tuple[int, int]:
        return self.size

    def summary(self) -> str:
        h, w = self.size
        textured = f", textured by {self.texture.name}" if self.texture is not None else ""
        return f"{self.name}: {self.count} procedural {w}x{h} images{textured}"


def open_source(spec: str | os.PathLike, *, downscale: int = 2, min_frames: int = 1) -> FrameSource:
    """A source from a path or a name.

    ``skimage`` -> SkimageSource; ``dead_leaves`` -> DeadLeavesSource; ``stills:PATH`` ->
    ImageFolderSource (recursive: e.g. ``<root>/<set>/<image>``); ``clips:PATH`` ->
    ClipFolderSource(min_frames); ``video:PATH`` -> VideoFileSource(downscale). A plain path is
    read by what it holds: a video file or a folder of videos -> VideoFileSource; a folder whose
    sub-folders hold images -> ClipFolderSource (REDS layout); a folder of images ->
    ImageFolderSource (non-recursive).
    """
    text = str(spec)
    kind, _, rest = text.partition(":")
    if rest and kind in ("stills", "clips", "video"):
        return {
            "stills": lambda: ImageFolderSource(rest),
            "clips": lambda: ClipFolderSource(rest, min_frames=min_frames),
            "video": lambda: VideoFileSource(rest, downscale=downscale),
        }[kind]()
    if text == "skimage":
        return SkimageSource()
    if text == "dead_leaves":
        return DeadLeavesSource()
    path = Path(spec)
    if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        return VideoFileSource(path, downscale=downscale)
    root = _existing_dir(path)
    if any(p.suffix.lower() in VIDEO_EXTENSIONS for p in root.iterdir()):
        return VideoFileSource(root, downscale=downscale)
    if any(d.is_dir() and _list_images(d, False) for d in root.iterdir()):
        return ClipFolderSource(root, min_frames=min_frames)
    return ImageFolderSource(root, recursive=False)


def load_clip(frames: Sequence[Frame]) -> Tensor:
    """Decode frames into one (N, 3, H, W) tensor; DataError if their sizes differ."""
    images = [f() for f in frames]
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) != 1:
        raise DataError(
            f"frames of different sizes {sorted(shapes)} in clip starting at {frames[0].label}"
        )
    return torch.stack(images)


__all__ = [
    "ClipFolderSource", "DeadLeavesImage", "DeadLeavesSource", "Frame", "FrameSource",
    "ImageFile", "ImageFolderSource", "SkimageImage", "SkimageSource", "VideoFileSource",
    "VideoFrame", "dead_leaves", "derive_seed", "load_clip", "load_image", "open_source",
    "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS",
]
