"""Frame sources: folders, clip folders, videos, bundled photos, dead leaves; bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import png_header
from PIL import Image

from burstjdd.errors import DataError
from burstjdd.synth.sources import (
    ClipFolderSource,
    DeadLeavesSource,
    Frame,
    FrameSource,
    ImageFolderSource,
    SkimageSource,
    VideoFileSource,
    dead_leaves,
    derive_seed,
    load_clip,
    load_image,
    open_source,
)


def colour_image(seed: int, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **({"lossless": True} if path.suffix == ".webp" else {}))
    return path


def write_video(path: Path, n: int = 12, gop: int = 4) -> Path:
    """A tiny H.264 video whose frame i is uniformly grey 20 * i (key frames every ``gop``)."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(n):
            grey = np.full((48, 64, 3), 20 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(grey, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_image_folder_reads_colour_images_and_counts_grayscale(tmp_path):
    png = save(colour_image(0), tmp_path / "b.png")
    save(colour_image(1), tmp_path / "sub" / "c.webp")
    save(colour_image(2), tmp_path / "a.jpg")
    save(colour_image(3)[..., 0], tmp_path / "gray.png")  # mode L
    (tmp_path / "notes.txt").write_text("not an image")
    source = ImageFolderSource(tmp_path)
    assert isinstance(source, FrameSource)
    assert len(source) == 3 and source.skipped == {"grayscale": 1}
    assert [p.name for p in source.paths] == ["a.jpg", "b.png", "c.webp"]
    assert "1 grayscale skipped" in source.summary()
    frames = source.clip(1)
    assert len(frames) == 1 and isinstance(frames[0], Frame)
    image = frames[0]()
    assert image.dtype == torch.float32 and image.shape == (3, 24, 32)
    # lossless PNG: exact values / 255
    assert torch.equal(image, torch.from_numpy(colour_image(0)).permute(2, 0, 1).float() / 255)
    assert len(ImageFolderSource(tmp_path, recursive=False)) == 2
    assert load_image(png).shape == (3, 24, 32)


def test_image_folder_loads_lazily(tmp_path):
    path = save(colour_image(0), tmp_path / "x.png")
    source = ImageFolderSource(tmp_path)
    path.write_bytes(b"broken after listing")
    frame = source.clip(0)[0]  # listing still works
    with pytest.raises(DataError, match="x.png"):
        frame()


def test_empty_and_grayscale_only_folders_are_errors(tmp_path):
    with pytest.raises(DataError, match="no colour images"):
        ImageFolderSource(tmp_path)
    save(colour_image(0)[..., 0], tmp_path / "g.png")
    with pytest.raises(DataError, match="1 grayscale skipped"):
        ImageFolderSource(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        ImageFolderSource(tmp_path / "missing")


def test_unreadable_image_names_the_file(tmp_path):
    save(colour_image(0), tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match=r"cannot read image .*bad\.jpg"):
        ImageFolderSource(tmp_path)
    with pytest.raises(DataError, match="grayscale"):
        load_image(save(colour_image(0)[..., 0], tmp_path / "g" / "g.png"))


def test_clip_folder_reds_layout(tmp_path):
    for i in (1, 2, 10):  # natural order: 1, 2, 10 (not 1, 10, 2)
        save(colour_image(i), tmp_path / "clip_a" / f"{i}.png")
    for i in range(2):
        save(colour_image(20 + i), tmp_path / "clip_b" / f"{i:03d}.png")
    save(colour_image(30)[..., 0], tmp_path / "clip_gray" / "000.png")
    (tmp_path / "empty").mkdir()
    source = ClipFolderSource(tmp_path)
    assert source.clip_names == ("clip_a", "clip_b") and source.skipped["grayscale"] == 1
    assert [Path(f.label).name for f in source.clip(0)] == ["1.png", "2.png", "10.png"]
    clip = load_clip(source.clip(0))
    assert clip.shape == (3, 3, 24, 32)
    assert torch.equal(clip[2], torch.from_numpy(colour_image(10)).permute(2, 0, 1).float() / 255)
    short = ClipFolderSource(tmp_path, min_frames=3)
    assert len(short) == 1 and short.skipped["short"] == 2 and "2 short" in short.summary()
    with pytest.raises(DataError, match="no usable clips"):
        ClipFolderSource(tmp_path, min_frames=4)
    # a folder of frames is one clip
    single = ClipFolderSource(tmp_path / "clip_a")
    assert len(single) == 1 and len(single.clip(0)) == 3


def test_clip_with_frames_of_different_sizes_is_an_error(tmp_path):
    save(colour_image(0, (24, 32)), tmp_path / "c" / "0.png")
    save(colour_image(1, (20, 32)), tmp_path / "c" / "1.png")
    with pytest.raises(DataError, match="different sizes"):
        load_clip(ClipFolderSource(tmp_path).clip(0))


def test_video_source_random_access_and_downscale(tmp_path):
    path = write_video(tmp_path / "grey.mp4")
    source = VideoFileSource(path, downscale=2)
    assert len(source) == 1 and len(source.clip(0)) == 12
    frames = source.clip(0)
    # any access order (seeks back to key frames) gives frame i = grey 20 * i
    for i in (9, 2, 3, 4, 11, 0, 7):
        image = frames[i]()
        assert image.shape == (3, 24, 32)
        assert abs(float(image.mean()) * 255 - 20 * i) < 4
    full = VideoFileSource(tmp_path, downscale=1)  # a folder of videos
    assert full.clip(0)[5]().shape == (3, 48, 64)
    assert "12 frames" in full.summary()


def test_video_source_errors(tmp_path, monkeypatch):
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match="broken.mp4"):
        VideoFileSource(tmp_path / "broken.mp4")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="no video files"):
        VideoFileSource(tmp_path / "empty_dir")
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    with pytest.raises(DataError, match=r"burstjdd\[video\]"):
        VideoFileSource(tmp_path / "broken.mp4")


def test_skimage_source():
    source = SkimageSource(["astronaut", "chelsea"])
    assert len(source) == 2
    image = source.clip(1)[0]()
    assert image.shape == (3, 300, 451) and 0 <= float(image.min()) and float(image.max()) <= 1
    with pytest.raises(DataError, match="unknown"):
        SkimageSource(["no_such_photo"])
    with pytest.raises(DataError, match="grayscale"):
        SkimageSource(["camera"]).clip(0)[0]()


def test_dead_leaves_are_seeded_and_cover_the_image():
    a = dead_leaves(torch.Generator().manual_seed(1), (48, 64), r_min=1.0, r_max=12.0)
    b = dead_leaves(torch.Generator().manual_seed(1), (48, 64), r_min=1.0, r_max=12.0)
    c = dead_leaves(torch.Generator().manual_seed(2), (48, 64), r_min=1.0, r_max=12.0)
    assert a.shape == (3, 48, 64) and torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert len(torch.unique(a.flatten(1), dim=1).T) > 50  # many discs, not one flat colour
    source = DeadLeavesSource(3, (48, 64), seed=7, r_max=12.0)
    assert len(source) == 3 and torch.equal(source.clip(2)[0](), source.clip(2)[0]())
    assert not torch.equal(source.clip(0)[0](), source.clip(1)[0]())


def test_textured_dead_leaves_use_the_texture():
    texture = torch.zeros(3, 40, 40)
    texture[1] = 1.0  # pure green texture
    g = torch.Generator().manual_seed(0)
    image = dead_leaves(g, (32, 32), r_min=2.0, r_max=8.0, texture=texture)
    covered = image[1] > 0.99
    assert covered.float().mean() > 0.99 and float(image[0].max()) < 0.01
    src = DeadLeavesSource(2, (32, 32), texture=SkimageSource(["coffee"]), r_max=8.0)
    assert src.clip(0)[0]().shape == (3, 32, 32) and "textured by skimage" in src.summary()


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(1, "a", 3) == derive_seed(1, "a", 3)
    seeds = {derive_seed(s, r, i) for s in range(3) for r in range(3) for i in range(50)}
    assert len(seeds) == 450 and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(1, 2) != derive_seed(2, 1)


def test_open_source_picks_the_layout(tmp_path):
    save(colour_image(0), tmp_path / "stills" / "a.png")
    save(colour_image(1), tmp_path / "clips" / "c1" / "0.png")
    assert isinstance(open_source(tmp_path / "stills"), ImageFolderSource)
    assert isinstance(open_source(tmp_path / "clips"), ClipFolderSource)
    nested = open_source(f"stills:{tmp_path / 'clips'}")  # sets of stills in sub-folders
    assert isinstance(nested, ImageFolderSource) and len(nested) == 1
    assert isinstance(open_source("skimage"), SkimageSource)
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "v.mp4")
    assert isinstance(open_source(tmp_path / "videos"), VideoFileSource)
    assert isinstance(open_source(tmp_path / "videos" / "v.mp4"), VideoFileSource)


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_not_read(tmp_path):
    import os
    import signal

    from burstjdd.synth.sources import ImageFile, load_image

    class Hung(BaseException):
        pass

    def ring(signum, frame):
        raise Hung("opening the FIFO blocked")

    os.mkfifo(tmp_path / "photo.png")
    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(10)
    try:
        with pytest.raises(DataError, match="named pipe"):
            load_image(tmp_path / "photo.png")
        with pytest.raises(DataError, match="named pipe"):
            ImageFile(tmp_path / "photo.png").size  # noqa: B018
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("width, height, words", [
    (20000, 20000, "400,000,000 pixels, more than the 67,108,864"),  # Pillow's bomb error
    (9000, 9000, "9000x9000 pixels, more than the 67,108,864"),      # under Pillow's limit
])
def test_images_beyond_the_pixel_limit_are_refused_from_their_header(tmp_path, width, height,
                                                                     words):
    import warnings

    (tmp_path / "set").mkdir()
    path = tmp_path / "set" / "huge.png"
    path.write_bytes(png_header(width, height))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(DataError, match=f"huge.png: {words}"):
            load_image(path)
        with pytest.raises(DataError, match=f"huge.png: {words}"):
            ImageFolderSource(tmp_path / "set").clip(0)[0].size

