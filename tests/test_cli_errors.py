"""Bad input to every command: exit status 2, one line on stderr under 300 characters, no
traceback, nothing left behind (docs/cli.md), and no hang on special files; and the one
convention of flags and help texts.

Every command runs in-process (``burstjdd.cli.main``) under a deadline that fails the test
instead of letting it hang (a FIFO that nobody writes to blocks whoever opens it for reading).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import io
import os
import pickle
import shutil
import signal
import stat
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from conftest import png_header
from PIL import Image

from burstjdd import cli
from burstjdd.cli._args import DEVICES
from burstjdd.models import hub
from burstjdd.models.jddb import build_model
from burstjdd.raw.npz import read_npz, write_npz
from burstjdd.synth.burst import simulate_burst
from burstjdd.train.config import config_from_dict
from burstjdd.train.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

DEADLINE_S = 20  # every case takes well under a second or two; a blocked read never returns
MAX_MESSAGE = 300
TINY_MODEL = {"nf": 8, "deformable_groups": 2, "extract_blocks": 1, "dsnet_width": 4}
TINY_RUN = {
    "model": {"preset": "compact", "overrides": TINY_MODEL},
    "data": {"paths": ["builtin:skimage"], "crop": 32, "search_radius": 8, "frames": 3,
             "workers": 0},
    "schedule": {"total_steps": 1},
    "run": {"log_every": 1, "device": "cpu", "precision": "fp32"},
}
HAS_FIFO = hasattr(os, "mkfifo")


class Hung(BaseException):
    """Raised by the deadline: a BaseException, so that no ``except Exception`` (or the CLI's
    ``except OSError``) can turn a hang into a pass."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise Hung in the main thread after ``seconds`` (SIGALRM interrupts a blocking open())."""
    def ring(signum, frame):
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------- bad files


def _dng(path: Path, size: tuple[int, int], seed: int = 0, extra: tuple = ()) -> Path:
    """An RGGB CFA DNG (uint16, black 64, white 4000) written with numpy2dng; ``extra``: more
    (tag name, value) pairs."""
    from numpy2dng.core import RAW2DNG
    from numpy2dng.dng import DNGTags, Tag

    h, w = size
    t = DNGTags()
    for tag, value in ((Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.RowsPerStrip, h),
                       (Tag.PhotometricInterpretation, 32803), (Tag.SamplesPerPixel, 1),
                       (Tag.BitsPerSample, 16), (Tag.CFARepeatPatternDim, [2, 2]),
                       (Tag.CFAPattern, [0, 1, 1, 2]), (Tag.BlackLevel, [64]),
                       (Tag.WhiteLevel, 4000), *((getattr(Tag, n), v) for n, v in extra)):
        t.set(tag, value)
    writer = RAW2DNG()
    writer.options(t, path="")
    raw = np.random.default_rng(seed).integers(300, 3000, size, dtype=np.uint16)
    path.write_bytes(bytes(writer.convert(raw)))
    return path


def _npz_variant(good: Path, path: Path, **changes) -> Path:
    arrays = dict(np.load(good))
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


def _bad_bursts(root: Path, npz: Path) -> None:
    (root / "truncated.npz").write_bytes(npz.read_bytes()[:2000])
    (root / "text.npz").write_text("not a burst\n")
    with open(root / "array.npz", "wb") as f:
        np.save(f, np.zeros((4, 4), np.float32))
    np.savez(root / "unknown_key.npz", foo=np.zeros(3))
    raw = np.load(npz)["raw"]
    nan = raw.copy()
    nan[0, 0, 0] = np.nan
    _npz_variant(npz, root / "nan.npz", raw=nan)
    _npz_variant(npz, root / "odd.npz", raw=raw[:, :9, :11])
    _npz_variant(npz, root / "bad_cfa.npz", cfa=np.array("XYZW"))
    (root / "text.dng").write_text("not a raw file\n")
    (root / "no_raws").mkdir()
    (root / "no_raws" / "notes.txt").write_text("x")


def _zip_flags(good: Path, path: Path, local: tuple[int, bytes], central: tuple[int, bytes]
               ) -> Path:
    """A copy of the zip ``good`` with bytes overwritten at (offset, bytes) in every local file
    header and every central directory entry (the zip spec's layout)."""
    data = bytearray(good.read_bytes())
    for signature, (offset, value) in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset:at + offset + len(value)] = value
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    return path


def _npy_bytes(array: np.ndarray | None = None, shape: tuple = (), tail: bytes = b"") -> bytes:
    """A .npy file of ``array``, or a float32 header declaring ``shape`` followed by ``tail``."""
    buffer = io.BytesIO()
    if array is not None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array_header_1_0(
            buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
        buffer.write(tail)
    return buffer.getvalue()


def _hostile_bursts(root: Path, npz: Path) -> None:
    """npz files that must be refused before anything is allocated or decompressed."""
    arrays = dict(np.load(npz))
    with zipfile.ZipFile(root / "forged.npz", "w") as z:  # 12 GiB declared, 1 kB held
        for key, value in arrays.items():
            data = _npy_bytes(shape=(3, 32768, 32768), tail=bytes(1000)) if key == "raw" \
                else _npy_bytes(value)
            z.writestr(f"{key}.npy", data)
    _zip_flags(npz, root / "encrypted.npz", (6, b"\x01"), (8, b"\x01"))  # flag bit 0
    _zip_flags(npz, root / "method99.npz", (8, b"\x63\x00"), (10, b"\x63\x00"))  # AES
    _npz_variant(npz, root / "noise_1e30.npz", noise=np.array([1e30, 1e-2]))
    _npz_variant(npz, root / "deep_meta.npz", meta=np.array("[" * 100 + "]" * 100))
    os.link(npz, root / "burst_link.npy")  # the same file under an output's name


def _photos(root: Path) -> None:
    import skimage.data

    (root / "photos").mkdir()
    Image.fromarray(skimage.data.astronaut()[100:180, 100:180]).save(root / "photos" / "0.png")
    shutil.copy(root / "photos" / "0.png", root / "png.dng")  # an image named like a raw file
    Image.fromarray(skimage.data.camera()[:80, :80]).save(root / "gray.png")
    (root / "truncated.png").write_bytes((root / "photos" / "0.png").read_bytes()[:200])
    (root / "bomb.png").write_bytes(png_header(20000, 20000))  # past Pillow's own limit
    (root / "big.png").write_bytes(png_header(9000, 9000))  # 81 MP: needs GBs to simulate


def _weights(root: Path) -> None:
    model = build_model("compact", seed=0, **TINY_MODEL)
    good = hub.save_pretrained(model, root / "weights")
    shutil.copytree(good, root / "weights_corrupt")
    blob = good / hub.WEIGHTS_NAME
    (root / "weights_corrupt" / hub.WEIGHTS_NAME).write_bytes(blob.read_bytes()[:1000])
    shutil.copytree(good, root / "weights_bad_config")
    (root / "weights_bad_config" / hub.CONFIG_NAME).write_text("{ not json")
    shutil.copytree(good, root / "weights_fifo_config")
    if HAS_FIFO:
        (root / "weights_fifo_config" / hub.CONFIG_NAME).unlink()
        os.mkfifo(root / "weights_fifo_config" / hub.CONFIG_NAME)
    (root / "text.pth").write_text("not a checkpoint\n")
    (root / "truncated.pth").write_bytes(b"PK\x03\x04" + bytes(100))


def _configs(root: Path) -> None:
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_RUN))
    (root / "broken.yaml").write_text("model: [compact\n")
    (root / "unknown.yaml").write_text(yaml.safe_dump({**TINY_RUN, "optim": {"lr_gg": 1e-4}}))
    train(config_from_dict(TINY_RUN), root / "run", progress=False, echo=False)
    (root / "notes.md").write_text("## notes\n")


def _fifos(root: Path) -> None:
    if HAS_FIFO:
        for name in ("fifo.npz", "fifo.dng", "fifo.png", "fifo.yaml", "fifo.pth", "fifo.md"):
            os.mkfifo(root / name)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> SimpleNamespace:
    """Good and bad inputs, built once (a few seconds: a 1-step training run included)."""
    root = tmp_path_factory.mktemp("inputs")
    photo = torch.rand(3, 24, 32, generator=torch.Generator().manual_seed(0))
    photo = photo.repeat_interleave(4, 1).repeat_interleave(4, 2)
    burst = simulate_burst(photo, n_frames=3, max_shift=8, n_objects=0, crop=(48, 64), seed=1)
    write_npz(burst, root / "burst.npz")
    _bad_bursts(root, root / "burst.npz")
    _hostile_bursts(root, root / "burst.npz")
    (root / "dngs").mkdir()
    for k in range(2):
        _dng(root / "dngs" / f"frame{k}.dng", (40, 56), seed=k)
    _dng(root / "other_size.dng", (44, 56))
    _photos(root)
    _weights(root)
    _configs(root)
    _fifos(root)
    return SimpleNamespace(root=root)


def _edited_run(f: SimpleNamespace, out: Path, key: str, value: str) -> str:
    """A copy of the tiny run whose config.yaml was edited by hand (``key: value`` lines)."""
    run = out / "run"
    shutil.copytree(f.root / "run", run)
    text = (run / "config.yaml").read_text()
    old = next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
    (run / "config.yaml").write_text(text.replace(old, f"{old.split(':')[0]}: {value}"))
    return str(run)


def _corrupt_checkpoint_run(f: SimpleNamespace, out: Path) -> str:
    run = out / "run"
    shutil.copytree(f.root / "run", run)
    (run / "checkpoint.pt").write_bytes(b"garbage")
    return str(run)


def _folder_with_a_photo(out: Path) -> str:
    (out / "mine").mkdir()
    (out / "mine" / "photo.jpg").write_bytes(b"keep me")
    return str(out / "mine")


# (id, argv from (inputs, output folder), expected text in the message; None: any)
Argv = Callable[[SimpleNamespace, Path], list]
CASES: list[tuple[str, Argv, str | None]] = [
    # info: corrupt, truncated and non-raw files, special files
    ("info-truncated-npz", lambda f, o: ["info", f.root / "truncated.npz"], "truncated.npz"),
    ("info-text-as-npz", lambda f, o: ["info", f.root / "text.npz"], "not an .npz"),
    ("info-npy-as-npz", lambda f, o: ["info", f.root / "array.npz"], ".npy"),
    ("info-unknown-key", lambda f, o: ["info", f.root / "unknown_key.npz"], "foo"),
    ("info-nan", lambda f, o: ["info", f.root / "nan.npz"], "NaN"),
    ("info-odd-size", lambda f, o: ["info", f.root / "odd.npz"], "even"),
    ("info-bad-cfa", lambda f, o: ["info", f.root / "bad_cfa.npz"], "XYZW"),
    ("info-missing", lambda f, o: ["info", f.root / "missing.npz"], "no such file"),
    ("info-text-as-dng", lambda f, o: ["info", f.root / "text.dng"], "not a readable raw"),
    ("info-png-as-dng", lambda f, o: ["info", f.root / "png.dng"], "not a readable raw"),
    ("info-folder-without-raws", lambda f, o: ["info", f.root / "no_raws"], "no raw files"),
    ("info-fifo", lambda f, o: ["info", f.root / "fifo.npz"], "FIFO"),
    ("info-char-device", lambda f, o: ["info", "/dev/zero"], "device"),
    ("info-npz-declaring-12-gib", lambda f, o: ["info", f.root / "forged.npz"], "forged"),
    ("info-npz-encrypted-entry", lambda f, o: ["info", f.root / "encrypted.npz"], "encrypted"),
    ("info-npz-compression-99", lambda f, o: ["info", f.root / "method99.npz"], "method 99"),
    ("info-npz-noise-1e30", lambda f, o: ["info", f.root / "noise_1e30.npz"],
     "noise_1e30.npz: noise shot must be finite and in 0..1"),
    ("info-npz-deep-meta", lambda f, o: ["info", f.root / "deep_meta.npz"], "nested"),
    # restore: mixed bursts, bad numbers and flags, bad weights, outputs
    ("restore-npz-and-dng", lambda f, o: ["restore", f.root / "burst.npz",
                                          f.root / "dngs" / "frame0.dng", "-o", o / "x.png",
                                          "--model", f.root / "weights"], ".npz"),
    ("restore-mixed-sizes", lambda f, o: ["restore", f.root / "dngs" / "frame0.dng",
                                          f.root / "other_size.dng", "-o", o / "x.png",
                                          "--model", f.root / "weights"], "other_size.dng"),
    ("restore-fifo-input", lambda f, o: ["restore", f.root / "dngs" / "frame0.dng",
                                         f.root / "fifo.dng", "-o", o / "x.png",
                                         "--model", f.root / "weights"], "FIFO"),
    ("restore-jpg-output", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.jpg",
                                         "--model", f.root / "weights"], ".jpg"),
    ("restore-png-linear", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                         "--space", "linear", "--model", f.root / "weights"],
     "PNG"),
    ("restore-tile-7", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                     "--tile", "7", "--model", f.root / "weights"], "tile"),
    ("restore-tile-word", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                        "--tile", "big"], "--tile"),
    ("restore-ref-out-of-range", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                               o / "x.png", "--ref", "9",
                                               "--model", f.root / "weights"], "ref 9"),
    ("restore-ref-word", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                       "--ref", "first"], "--ref"),
    ("restore-noise-word", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                         "--noise", "loud", "--model", f.root / "weights"],
     "SHOT:READ"),
    ("restore-negative-radius", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                              o / "x.png", "--search-radius", "-1"],
     "0..100000"),
    ("restore-bad-device", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                         "--device", "tpu"], "--device"),
    ("restore-unknown-model", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                            "--model", "no-such-weights"], "no-such-weights"),
    ("restore-corrupt-weights", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                              o / "x.png", "--model",
                                              f.root / "weights_corrupt"], None),
    ("restore-bad-weights-config", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                                 o / "x.png", "--model",
                                                 f.root / "weights_bad_config"], "config.json"),
    ("restore-run-folder-as-model", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                                  o / "x.png", "--model", f.root / "run"],
     "export it first"),
    ("restore-fifo-as-model", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                            "--model", f.root / "fifo.pth"],
     "named pipe (FIFO), not a weights directory"),
    ("restore-fifo-in-weights", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                              o / "x.png", "--model",
                                              f.root / "weights_fifo_config"], "FIFO"),
    ("restore-npz-declaring-12-gib", lambda f, o: ["restore", f.root / "forged.npz", "-o",
                                                   o / "x.png", "--model", f.root / "weights"],
     "forged"),
    ("restore-npz-encrypted-entry", lambda f, o: ["restore", f.root / "encrypted.npz", "-o",
                                                  o / "x.png", "--model", f.root / "weights"],
     "encrypted"),
    ("restore-npz-compression-99", lambda f, o: ["restore", f.root / "method99.npz", "-o",
                                                 o / "x.png", "--model", f.root / "weights"],
     "method 99"),
    ("restore-huge-search-radius", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                                 o / "x.png", "--search-radius", "1e9"],
     "0..100000"),
    ("restore-huge-noise", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                         "--noise", "1e308:1e308", "--model", f.root / "weights"],
     "0..1"),
    # restore: -o never replaces an input or a special file
    ("restore-output-is-an-input", lambda f, o: ["restore", f.root / "dngs" / "frame0.dng",
                                                 f.root / "dngs" / "frame1.dng", "-o",
                                                 f.root / "dngs" / ".." / "dngs" / "frame0.dng",
                                                 "--model", f.root / "weights"],
     "would replace it"),
    ("restore-output-is-a-frame-of-the-folder", lambda f, o: ["restore", f.root / "dngs", "-o",
                                                              f.root / "dngs" / "frame1.dng",
                                                              "--model", f.root / "weights"],
     "input folder"),
    ("restore-output-into-the-input-folder", lambda f, o: ["restore", f.root / "dngs", "-o",
                                                           f.root / "dngs" / "new.dng",
                                                           "--model", f.root / "weights"],
     "input folder"),
    ("restore-output-is-the-npz-input", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                                      f.root / "burst_link.npy",
                                                      "--model", f.root / "weights"],
     "is the input"),
    ("restore-output-is-a-fifo", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                               f.root / "fifo.png", "--model", f.root / "weights"],
     "FIFO"),
    # restore --batch (a folder of bursts into a folder) and --strength
    ("restore-batch-root-is-a-file", lambda f, o: ["restore", f.root / "burst.npz", "--batch",
                                                   "-o", o / "outs", "--model", "classical"],
     "needs a folder of bursts"),
    ("restore-batch-two-inputs", lambda f, o: ["restore", f.root / "dngs", f.root / "photos",
                                               "--batch", "-o", o / "outs"],
     "one folder of bursts"),
    ("restore-batch-folder-of-one-burst", lambda f, o: ["restore", f.root / "dngs", "--batch",
                                                        "-o", o / "outs"],
     "restore it without --batch"),
    ("restore-batch-output-is-a-file", lambda f, o: ["restore", f.root, "--batch", "-o",
                                                     f.root / "notes.md"], "must be a folder"),
    ("restore-batch-output-is-a-fifo", lambda f, o: ["restore", f.root, "--batch", "-o",
                                                     f.root / "fifo.md"], "named pipe"),
    ("restore-batch-png-linear", lambda f, o: ["restore", f.root, "--batch", "-o", o / "outs",
                                               "--space", "linear"], "--format png"),
    ("restore-batch-jpg-format", lambda f, o: ["restore", f.root, "--batch", "-o", o / "outs",
                                               "--format", "jpg"], "--format"),
    ("restore-format-without-batch", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                                   o / "x.png", "--format", "tif"],
     "--format is for --batch"),
    ("restore-strength-above-2", lambda f, o: ["restore", f.root / "burst.npz", "-o",
                                               o / "x.png", "--strength", "2.5"], "0..2"),
    ("restore-strength-nan", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                           "--strength", "nan"], "--strength"),
    ("restore-strength-word", lambda f, o: ["restore", f.root / "burst.npz", "-o", o / "x.png",
                                            "--strength", "soft"], "--strength"),
    ("demo-negative-strength", lambda f, o: ["demo", "-o", o / "d", "--strength", "-1"],
     "0..2"),
    ("evaluate-checkpoint-as-model", lambda f, o: ["evaluate", "--data", f.root / "photos",
                                                   "--model", f.root / "run" / "checkpoint.pt",
                                                   "-o", o / "e"], "export it first"),
    # simulate: bad numbers, sizes that cannot fit, bad sources
    ("simulate-huge-frames", lambda f, o: ["simulate", f.root / "photos", "-o", o / "sims",
                                           "--frames", "100000000"], "1..64"),
    ("simulate-zero-frames", lambda f, o: ["simulate", f.root / "photos", "-o", o / "sims",
                                           "--frames", "0"], "1..64"),
    ("simulate-negative-shift", lambda f, o: ["simulate", f.root / "photos", "-o", o / "sims",
                                              "--max-shift", "-5"], "0..4096"),
    ("simulate-negative-objects", lambda f, o: ["simulate", f.root / "photos", "-o",
                                                o / "sims", "--objects", "-1"], "0..16"),
    ("simulate-odd-crop", lambda f, o: ["simulate", f.root / "photos" / "0.png", "-o",
                                        o / "s.npz", "--crop", "3x3"], "even"),
    ("simulate-crop-too-big", lambda f, o: ["simulate", f.root / "photos" / "0.png", "-o",
                                            o / "s.npz", "--crop", "4000x4000"], "4000x4000"),
    ("simulate-shift-too-big", lambda f, o: ["simulate", f.root / "photos" / "0.png", "-o",
                                             o / "s.npz", "--max-shift", "1000"], "max_shift"),
    ("simulate-bad-cfa", lambda f, o: ["simulate", f.root / "photos", "-o", o / "sims",
                                       "--cfa", "XXXX"], "XXXX"),
    ("simulate-bad-noise", lambda f, o: ["simulate", f.root / "photos", "-o", o / "sims",
                                         "--noise", "1:2:3"], "SHOT:READ"),
    ("simulate-missing-source", lambda f, o: ["simulate", f.root / "nowhere", "-o",
                                              o / "s.npz"], "nowhere"),
    ("simulate-burst-as-source", lambda f, o: ["simulate", f.root / "burst.npz", "-o",
                                               o / "s.npz"], "burst.npz"),
    ("simulate-png-output", lambda f, o: ["simulate", f.root / "photos" / "0.png", "-o",
                                          o / "s.png", "--max-shift", "4"], ".npz"),
    ("simulate-truncated-image", lambda f, o: ["simulate", f.root / "truncated.png", "-o",
                                               o / "s.npz"], "truncated.png"),
    ("simulate-grayscale-image", lambda f, o: ["simulate", f.root / "gray.png", "-o",
                                               o / "s.npz"], "gray"),
    ("simulate-fifo-source", lambda f, o: ["simulate", f.root / "fifo.png", "-o", o / "s.npz"],
     "fifo.png: is a named pipe (FIFO)"),
    ("simulate-million-objects", lambda f, o: ["simulate", f.root / "photos", "-o", o / "sims",
                                               "--objects", "1000000"], "0..16"),
    ("simulate-huge-noise", lambda f, o: ["simulate", f.root / "photos", "-o", o / "sims",
                                          "--noise", "1e308:1e308"], "0..1"),
    ("simulate-seed-beyond-64-bits", lambda f, o: ["simulate", f.root / "photos", "-o",
                                                   o / "sims", "--seed",
                                                   "99999999999999999999999"],
     "0..18446744073709551615"),
    ("simulate-png-claiming-20000x20000", lambda f, o: ["simulate", f.root / "bomb.png", "-o",
                                                        o / "s.npz"], "8192 x 8192"),
    ("simulate-png-needing-gigabytes", lambda f, o: ["simulate", f.root / "big.png", "-o",
                                                     o / "s.npz"], "9000x9000"),
    ("simulate-output-is-a-fifo", lambda f, o: ["simulate", f.root / "photos" / "0.png", "-o",
                                                f.root / "fifo.npz", "--max-shift", "4"], "FIFO"),
    ("simulate-folder-output-is-a-fifo", lambda f, o: ["simulate", f.root / "photos", "-o",
                                                       f.root / "fifo.md"], "output folder"),
    # train: bad configs, overrides, run folders, resume after an edit
    ("train-missing-config", lambda f, o: ["train", "--config", f.root / "none.yaml",
                                           "-o", o / "run"], "none.yaml"),
    ("train-fifo-config", lambda f, o: ["train", "--config", f.root / "fifo.yaml",
                                        "-o", o / "run"], "FIFO"),
    ("train-broken-yaml", lambda f, o: ["train", "--config", f.root / "broken.yaml",
                                        "-o", o / "run"], "YAML"),
    ("train-unknown-key", lambda f, o: ["train", "--config", f.root / "unknown.yaml",
                                        "-o", o / "run"], "lr_gg"),
    ("train-bad-override", lambda f, o: ["train", "--config", f.root / "tiny.yaml", "-o",
                                         o / "run", "optim.batch_size=two"], "batch_size"),
    ("train-bad-device", lambda f, o: ["train", "--config", f.root / "tiny.yaml", "-o",
                                       o / "run", "--device", "tpu"], "--device"),
    ("train-into-a-full-folder", lambda f, o: ["train", "--config", f.root / "tiny.yaml",
                                               "-o", _folder_with_a_photo(o)], "not empty"),
    ("train-resume-edited-model", lambda f, o: ["train", "--resume",
                                                _edited_run(f, o, "nf", "16")], "config.yaml"),
    ("train-resume-edited-lr", lambda f, o: ["train", "--resume",
                                             _edited_run(f, o, "lr_g", "0.5")], "lr_g"),
    ("train-resume-corrupt-checkpoint", lambda f, o: ["train", "--resume",
                                                      _corrupt_checkpoint_run(f, o)],
     "checkpoint"),
    ("train-resume-not-a-run", lambda f, o: ["train", "--resume", f.root / "photos"],
     "not a training run"),
    # export
    ("export-not-a-run", lambda f, o: ["export", f.root / "photos", "-o", o / "w"],
     "not a training run"),
    ("export-into-a-folder-of-photos", lambda f, o: ["export", f.root / "run", "-o",
                                                     _folder_with_a_photo(o)], "other files"),
    ("export-fifo-notes", lambda f, o: ["export", f.root / "run", "-o", o / "w", "--notes",
                                        f.root / "fifo.md"], "FIFO"),
    ("export-missing-notes", lambda f, o: ["export", f.root / "run", "-o", o / "w", "--notes",
                                           f.root / "none.md"], "--notes"),
    ("export-bad-dtype", lambda f, o: ["export", f.root / "run", "-o", o / "w", "--dtype",
                                       "int8"], "--dtype"),
    # convert-official
    ("convert-missing", lambda f, o: ["convert-official", f.root / "G.pth", f.root / "D.pth",
                                      "-o", o / "w"], "G.pth"),
    ("convert-text", lambda f, o: ["convert-official", f.root / "text.pth",
                                   f.root / "text.pth", "-o", o / "w"], "text.pth"),
    ("convert-truncated", lambda f, o: ["convert-official", f.root / "truncated.pth",
                                        f.root / "truncated.pth", "-o", o / "w"], "truncated"),
    ("convert-fifo", lambda f, o: ["convert-official", f.root / "fifo.pth",
                                   f.root / "fifo.pth", "-o", o / "w"], "FIFO"),
    # evaluate
    ("evaluate-missing-data", lambda f, o: ["evaluate", "--data", f.root / "nowhere",
                                            "--methods", "bilinear", "-o", o / "e"], "nowhere"),
    ("evaluate-no-images", lambda f, o: ["evaluate", "--data", f.root / "no_raws", "--layout",
                                         "stills", "--methods", "bilinear", "-o", o / "e"],
     "no_raws"),
    ("evaluate-unknown-method", lambda f, o: ["evaluate", "--data", f.root / "photos",
                                              "--methods", "magic", "-o", o / "e"], "magic"),
    ("evaluate-bad-noise", lambda f, o: ["evaluate", "--data", f.root / "photos", "--noise",
                                         "1:2:3", "--methods", "bilinear", "-o", o / "e"],
     "SHOT:READ"),
    ("evaluate-zero-bursts", lambda f, o: ["evaluate", "--data", f.root / "photos",
                                           "--max-bursts", "0"], "--max-bursts"),
    ("evaluate-negative-shift", lambda f, o: ["evaluate", "--data", f.root / "photos",
                                              "--max-shift", "-3"], "--max-shift"),
    ("evaluate-stress-on-clips", lambda f, o: ["evaluate", "--data", f.root / "photos",
                                               "--stress", "--layout", "clips",
                                               "--methods", "bilinear", "-o", o / "e"],
     "stills"),
    ("evaluate-seed-beyond-64-bits", lambda f, o: ["evaluate", "--data", f.root / "photos",
                                                   "--seed", "2" + "0" * 30, "--methods",
                                                   "bilinear", "-o", o / "e"],
     "0..18446744073709551615"),
    ("evaluate-bad-shifts", lambda f, o: ["evaluate", "--data", f.root / "photos", "--shifts",
                                          "a,b", "--methods", "bilinear", "-o", o / "e"],
     "shift"),
    # bench (fails before any measurement)
    ("bench-unknown-preset", lambda f, o: ["bench", "--quick", "--presets", "huge"], "huge"),
    ("bench-bad-size", lambda f, o: ["bench", "--sizes", "big"], "big"),
    ("bench-odd-size", lambda f, o: ["bench", "--sizes", "33x33"], "even"),
    ("bench-quick-and-sizes", lambda f, o: ["bench", "--quick", "--sizes", "720p"], "--quick"),
    ("bench-zero-repeat", lambda f, o: ["bench", "--quick", "--repeat", "0"], "--repeat"),
    ("bench-tile-6", lambda f, o: ["bench", "--quick", "--tile", "6"], "multiple of 4"),
    ("bench-mps", lambda f, o: ["bench", "--quick", "--device", "mps"], "mps"),
    # analyze
    ("analyze-radius-beyond-image", lambda f, o: ["analyze", f.root / "burst.npz", "-o", o / "a",
                                                  "--block", "16", "--radius", "100000"],
     "0..64"),
    ("analyze-negative-radius", lambda f, o: ["analyze", f.root / "burst.npz", "-o", o / "a",
                                              "--radius", "-4"], ">= 0"),
    ("analyze-bad-block", lambda f, o: ["analyze", f.root / "burst.npz", "-o", o / "a",
                                        "--block", "3"], "block 3"),
    ("analyze-block-larger-than-burst", lambda f, o: ["analyze", f.root / "burst.npz", "-o",
                                                      o / "a", "--block", "128"], "128x128"),
    ("analyze-fifo", lambda f, o: ["analyze", f.root / "fifo.npz", "-o", o / "a"], "FIFO"),
    ("analyze-npz-declaring-12-gib", lambda f, o: ["analyze", f.root / "forged.npz", "-o",
                                                   o / "a"], "forged"),
    ("analyze-npz-encrypted-entry", lambda f, o: ["analyze", f.root / "encrypted.npz", "-o",
                                                  o / "a"], "encrypted"),
    ("analyze-npz-compression-99", lambda f, o: ["analyze", f.root / "method99.npz", "-o",
                                                 o / "a"], "method 99"),
    # demo, through its existing flags
    ("demo-odd-size", lambda f, o: ["demo", "-o", o / "d", "--size", "31"], "--size"),
    ("demo-unknown-photo", lambda f, o: ["demo", "-o", o / "d", "--size", "64", "--photo",
                                         "nosuch"], "nosuch"),
    ("demo-bad-device", lambda f, o: ["demo", "-o", o / "d", "--device", "tpu"], "--device"),
    ("demo-size-cannot-fit", lambda f, o: ["demo", "-o", o / "d", "--size", "1000000"], "GiB"),
    ("demo-unknown-model", lambda f, o: ["demo", "-o", o / "d", "--size", "64", "--model",
                                         "no-such-weights"], "no-such-weights"),
    ("demo-output-is-a-file", lambda f, o: ["demo", "-o", f.root / "notes.md", "--size", "64"],
     "-o must be a folder"),
    ("demo-output-is-a-fifo", lambda f, o: ["demo", "-o", f.root / "fifo.md", "--size", "64"],
     "named pipe"),
    ("demo-output-is-dev-null", lambda f, o: ["demo", "-o", "/dev/null", "--size", "64"],
     "character device"),
    ("demo-seed-beyond-64-bits", lambda f, o: ["demo", "-o", o / "d", "--seed", str(2**64)],
     "0..18446744073709551615"),
    # the command itself
    ("unknown-command", lambda f, o: ["restorr", "x"], "restorr"),
]


# ------------------------------------- training, configs, evaluate, analyze, bench, export
# (issue 22: bounded parsing, bounds before work, nothing left behind). Inputs that only these
# cases need are made in the output folder before the listing is taken.


def _file(path: Path, content: str | bytes) -> Path:
    """``path`` holding ``content`` (text or bytes)."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


# model.overrides holding a 9x9 YAML alias bomb: 387 million values once expanded
ALIAS_BOMB = "model:\n  overrides:\n    a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"    {chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n"
    for i in range(8))
DEEP_JSON = b"[" * 5000 + b"]" * 5000


def _run_with_run_json(f: SimpleNamespace, out: Path, content: bytes | None) -> str:
    """A copy of the tiny run whose run.json holds ``content`` (None: a FIFO)."""
    run = out / "run"
    shutil.copytree(f.root / "run", run)
    (run / "run.json").unlink()
    if content is None:
        os.mkfifo(run / "run.json")
    else:
        (run / "run.json").write_bytes(content)
    return str(run)


def _folder_holding(folder: Path, *names: str, fifo: bool = False) -> Path:
    """``folder`` with each of ``names`` in it as a folder (an output that cannot be written),
    or as a FIFO."""
    folder.mkdir()
    for name in names:
        os.mkfifo(folder / name) if fifo else (folder / name).mkdir()
    return folder


def _train(f: SimpleNamespace, out: Path, *overrides: str) -> list:
    return ["train", "--config", f.root / "tiny.yaml", "-o", out / "run", *overrides]


def _stills_evaluation(f: SimpleNamespace, out: Path) -> list:
    return ["evaluate", "--data", f.root / "photos", "--layout", "stills", "--methods",
            "bilinear", "--noise", "high", "--max-shift", "4", "-o", out, "--quiet"]


CASES += [
    # train: configs and overrides read with limits, every size and number bounded first
    ("train-alias-bomb-in-model-overrides",
     lambda f, o: ["train", "--config", _file(o / "bomb.yaml", ALIAS_BOMB), "-o", o / "run",
                   "run.seed=1"], "alias bomb"),
    ("train-deeply-nested-config",
     lambda f, o: ["train", "--config", _file(o / "deep.yaml", "model:\n  overrides:\n    x: "
                                                              + "[" * 5000 + "]" * 5000),
                   "-o", o / "run"], "nested more than 32"),
    ("train-deeply-nested-override",
     lambda f, o: _train(f, o, "model.overrides.nf=" + "[" * 50 + "]" * 50), "nested"),
    ("train-5000-digit-integer-in-config",
     lambda f, o: ["train", "--config", _file(o / "big.yaml", "run:\n  seed: " + "9" * 5000),
                   "-o", o / "run"], "4300"),
    ("train-5000-digit-override", lambda f, o: _train(f, o, "run.seed=" + "9" * 5000), "4300"),
    ("train-huge-batch", lambda f, o: _train(f, o, "optim.batch_size=100000"), "1..4096"),
    ("train-bool-batch", lambda f, o: _train(f, o, "optim.batch_size=true"), "must be int"),
    ("train-huge-val-samples", lambda f, o: _train(f, o, "data.val_samples=100000000"),
     "1..10000"),
    ("train-thousand-workers", lambda f, o: _train(f, o, "data.workers=1000"), "0..256"),
    ("train-huge-crop", lambda f, o: _train(f, o, "data.crop=1048576"), "8..4096"),
    ("train-step-beyond-memory", lambda f, o: _train(f, o, "data.crop=4096",
                                                     "optim.batch_size=64"), "GiB per step"),
    ("train-seed-beyond-64-bits", lambda f, o: _train(f, o, "run.seed=99999999999999999999999"),
     "64-bit integer"),
    ("train-val-seed-beyond-63-bits", lambda f, o: _train(f, o, f"data.val_seed={2**63}"),
     "data.val_seed"),
    ("train-infinite-lr", lambda f, o: _train(f, o, "optim.lr_g=.inf"), "finite"),
    ("train-nan-beta", lambda f, o: _train(f, o, "optim.betas=[.nan, 0.9]"), "finite"),
    ("train-output-is-a-file", lambda f, o: ["train", "--config", f.root / "tiny.yaml", "-o",
                                             f.root / "notes.md"], "must be a folder"),
    ("train-output-inside-a-file", lambda f, o: ["train", "--config", f.root / "tiny.yaml",
                                                 "-o", f.root / "notes.md" / "run"],
     "must be a folder"),
    # train --resume and export read run.json with limits
    ("train-resume-nested-run-json",
     lambda f, o: ["train", "--resume", _run_with_run_json(f, o, DEEP_JSON)], "nested"),
    ("train-resume-random-run-json",
     lambda f, o: ["train", "--resume", _run_with_run_json(f, o, bytes(range(128, 256)))],
     "not UTF-8"),
    ("train-resume-fifo-run-json",
     lambda f, o: ["train", "--resume", _run_with_run_json(f, o, None)], "FIFO"),
    ("export-nested-run-json",
     lambda f, o: ["export", _run_with_run_json(f, o, DEEP_JSON), "-o", o / "w"], "nested"),
    ("export-edited-run-json",
     lambda f, o: ["export", _run_with_run_json(f, o, b'{"sessions": 3}'), "-o", o / "w"],
     "'sessions' is not a list"),
    ("export-fifo-run-json",
     lambda f, o: ["export", _run_with_run_json(f, o, None), "-o", o / "w"], "FIFO"),
    # evaluate: the cache is a regular file; a failure removes the cache it created
    ("evaluate-fifo-cache",
     lambda f, o: _stills_evaluation(f, _folder_holding(o / "e", "cache.jsonl", fifo=True)),
     "FIFO"),
    ("evaluate-results-unwritable",
     lambda f, o: _stills_evaluation(f, _folder_holding(o / "e", "results.json")),
     "results.json"),
    ("evaluate-output-is-a-file",
     lambda f, o: _stills_evaluation(f, f.root / "notes.md"), "must be a folder"),
    # analyze: both images or neither
    ("analyze-second-output-unwritable",
     lambda f, o: ["analyze", f.root / "burst.npz", "--block", "16", "-o",
                   _folder_holding(o / "a", "offsets.png")], "offsets.png"),
    # bench: sizes and counts bounded
    ("bench-empty-sizes", lambda f, o: ["bench", "--sizes", ","], "--sizes"),
    ("bench-huge-size", lambda f, o: ["bench", "--sizes", "100000x100000"], "16384"),
    ("bench-huge-repeat", lambda f, o: ["bench", "--quick", "--repeat", "1000"], "1..100"),
]


def _loop(path: Path) -> Path:
    """``path`` as a symbolic link to itself: a loop that never resolves."""
    path.symlink_to(path.name)
    return path


def _black_burst(f: SimpleNamespace, out: Path) -> Path:
    """The test burst with black frames and no stored noise level: nothing to estimate it on."""
    burst = read_npz(f.root / "burst.npz")
    write_npz(dataclasses.replace(burst, raw=torch.zeros_like(burst.raw), noise=None),
              out / "black.npz")
    return out / "black.npz"


# (issue 22, second pass) symbolic link loops, shifts and rates bounded, clearer messages
CASES += [
    ("info-symlink-loop", lambda f, o: ["info", _loop(o / "loop.npz")], "symbolic link loop"),
    ("analyze-symlink-loop", lambda f, o: ["analyze", _loop(o / "loop.npz"), "-o", o / "a"],
     "symbolic link loop"),
    ("restore-input-is-a-symlink-loop",
     lambda f, o: ["restore", _loop(o / "loop.dng"), f.root / "dngs" / "frame0.dng", "-o",
                   o / "x.png", "--model", "classical", "--noise", "low"],
     "loop.dng: is a symbolic link loop"),
    ("restore-output-is-a-symlink-loop",
     lambda f, o: ["restore", f.root / "burst.npz", "-o", _loop(o / "loop.png"), "--model",
                   "classical"], "loop.png: is a symbolic link loop"),
    ("evaluate-output-is-a-symlink-loop",
     lambda f, o: _stills_evaluation(f, _loop(o / "ev")), "not a symbolic link loop"),
    ("simulate-huge-max-shift", lambda f, o: ["simulate", f.root / "photos" / "0.png", "-o",
                                              o / "s.npz", "--max-shift", "1e308"], "0..4096"),
    ("evaluate-huge-max-shift",
     lambda f, o: ["evaluate", "--data", f.root / "photos", "--layout", "stills",
                   "--max-shift", "1e308", "--methods", "bilinear", "-o", o / "e"], "0..4096"),
    ("evaluate-huge-shifts",
     lambda f, o: ["evaluate", "--data", f.root / "photos", "--shifts", "1e308", "--methods",
                   "bilinear", "--quiet", "-o", o / "e"], "0..4096"),
    ("train-lr-beyond-float32", lambda f, o: _train(f, o, "optim.lr_g=1e38"), "(0, 1]"),
    ("train-huge-lr-dsnet", lambda f, o: _train(f, o, "optim.lr_dsnet=1e300"), "(0, 1]"),
    ("train-huge-weight-decay", lambda f, o: _train(f, o, "optim.weight_decay=1e308"),
     "[0, 1]"),
    ("bench-no-sizes", lambda f, o: ["bench", "--sizes", ""], "names no size"),
    ("convert-pickle-protocol-4",  # torch's "please file an issue" warning is not shown
     lambda f, o: ["convert-official", _file(o / "p.pth", pickle.dumps({"w": 1}, protocol=4)),
                   o / "p.pth", "-o", o / "w"], "p.pth"),
    ("restore-noise-cannot-be-estimated",
     lambda f, o: ["restore", _black_burst(f, o), "-o", o / "x.png", "--model", "classical"],
     "--noise low, high or SHOT:READ"),
]


FIFO_CASES = {c for c, _, _ in CASES if "fifo" in c}
PARAMS = [pytest.param(*c, id=c[0]) for c in CASES]


def _listing(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folders`` with its size and modification time; a folder by its name
    alone (its mtime changes when a file is made and removed in it again, such as a temporary
    file or a cache that a failing command removes)."""
    found = {}
    for folder in folders:
        for p in folder.rglob("*"):
            st = p.lstat()
            found[str(p)] = ((0, 0) if stat.S_ISDIR(st.st_mode) else
                             (st.st_size if stat.S_ISREG(st.st_mode) else 0, st.st_mtime_ns))
    return found


@pytest.mark.parametrize("case, argv, expected", PARAMS)
def test_bad_input_fails_with_one_short_line_and_leaves_nothing(case, argv, expected, files,
                                                                tmp_path, capsys, monkeypatch):
    if case in FIFO_CASES and not HAS_FIFO:
        pytest.skip("no FIFOs on this system")
    if case == "info-char-device" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    if case == "demo-output-is-dev-null" and not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)  # outputs with a default place land here too
    args = [str(a) for a in argv(files, out)]
    before = _listing(out, files.root)
    with deadline(DEADLINE_S):
        code = cli.main(args)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (code, captured.err[-500:])
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1 and lines[0].startswith("burstjdd") and "error:" in lines[0], lines
    assert len(lines[0]) < MAX_MESSAGE, lines[0]
    if expected is not None:
        assert expected in lines[0], lines[0]
    assert _listing(out, files.root) == before  # no output, no temporary file, no edit


def test_there_are_at_least_40_kinds_of_bad_input_over_every_command():
    assert len(CASES) >= 40
    covered = {c.split("-")[0] for c, _, _ in CASES}
    commands = {name.split("-")[0] for name, _, _ in cli.COMMANDS}
    assert commands <= covered, commands - covered


# ------------------------------------------------------------------------------- conventions


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# Options that select a mode rather than having a default value.
NO_DEFAULT = {("train", "--config"), ("train", "--resume")}


@pytest.mark.parametrize("name", [c[0] for c in cli.COMMANDS])
def test_every_command_follows_the_one_convention(name, capsys):
    parser = _subparsers()[name]
    shown = [a for a in parser._actions if a.help != argparse.SUPPRESS and a.option_strings]
    flags = {s for a in shown for s in a.option_strings}
    for action in shown:
        takes_value = action.nargs != 0
        if takes_value and not action.required and (name, action.option_strings[-1]) \
                not in NO_DEFAULT:
            assert "default" in action.help, (name, action.option_strings)
        if action.dest == "output":
            assert action.option_strings == ["-o", "--output"], name
        if "--device" in action.option_strings:
            assert tuple(action.choices) == DEVICES, name
    assert not flags & {"--out", "--no-progress", "--overwrite"}, name
    for action in parser._actions:
        for doc in ("PROTOCOL.md", "METHOD.md", "ARCHITECTURE.md"):
            assert doc not in (action.help or ""), (name, action.dest)
    assert cli.main([name, "--help"]) == 0
    assert "docs/cli.md" in capsys.readouterr().out


def test_old_spellings_still_work(tmp_path):
    parser = _subparsers()
    args = parser["evaluate"].parse_args(["--data", "d", "--out", "o", "--no-progress"])
    assert args.output == "o" and args.quiet is True
    args = parser["train"].parse_args(["--config", "c", "--out", "r"])
    assert args.output == "r"
    assert parser["export"].parse_args(["run", "-o", "w", "--overwrite"]).overwrite is True


def test_the_frame_limit_of_simulate_is_the_library_s():
    from burstjdd.cli.simulate import MAX_FRAMES as CLI
    from burstjdd.synth.burst import MAX_FRAMES as LIB

    assert CLI == LIB


def test_the_strength_limit_of_the_cli_is_the_library_s():
    from burstjdd.cli.restore import MAX_STRENGTH as CLI
    from burstjdd.restore import MAX_STRENGTH as LIB

    assert CLI == LIB


def test_evaluate_help_lists_every_baseline(capsys):
    from burstjdd.cli.evaluate import BASELINE_NAMES
    from burstjdd.eval.baselines import BASELINES

    assert BASELINE_NAMES == tuple(BASELINES)
    assert cli.main(["evaluate", "--help"]) == 0
    assert ", ".join(BASELINE_NAMES) in " ".join(capsys.readouterr().out.split())


def test_the_other_limits_of_the_command_line_are_the_library_s():
    from burstjdd import restore
    from burstjdd.cli import _args
    from burstjdd.cli import restore as cli_restore
    from burstjdd.cli import simulate as cli_simulate
    from burstjdd.synth import burst

    assert cli_simulate.MAX_OBJECTS == burst.MAX_OBJECTS
    assert cli_simulate.MAX_SHIFT == burst.MAX_SHIFT
    assert cli_restore.MAX_SEARCH_RADIUS == restore.MAX_SEARCH_RADIUS
    assert _args.MAX_SEED == burst.MAX_SEED
    torch.Generator().manual_seed(_args.MAX_SEED)  # the largest seed is one torch takes


def test_warnings_are_one_line_each_and_only_while_a_command_runs(tmp_path, capsys):
    import warnings

    before = warnings.showwarning
    dng = _dng(tmp_path / "orientation9.dng", (40, 56), extra=[("Orientation", 9)])
    assert cli.main(["info", str(dng)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert f"burstjdd info: warning: {dng}: TIFF tag 274 ignored (9 is not a valid " \
           "ORIENTATION)" in err
    assert err and all(line.startswith("burstjdd info: warning: ") for line in err), err
    assert warnings.showwarning is before  # the library's users keep Python's printer


def test_errors_are_cut_to_one_line_and_bad_arguments_do_not_exit(capsys):
    assert cli.main(["simulate", "--frames"]) == 2  # argparse's SystemExit becomes a status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--help" in err and "usage" not in err
    assert cli.main(["--version"]) == 0


@pytest.mark.parametrize("exc", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 120223840000 bytes. Error code 12"),
    RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB"),
], ids=["MemoryError", "torch-cpu", "torch-cuda"])
def test_running_out_of_memory_is_one_line(exc, monkeypatch, capsys):
    from burstjdd.cli import info

    def run(args):
        raise exc

    monkeypatch.setattr(info, "run", run)
    assert cli.main(["info", "x.npz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("burstjdd info: error: out of memory"), err
    assert len(err[0]) < MAX_MESSAGE


def test_other_runtime_errors_are_bugs_and_keep_their_traceback(monkeypatch):
    from burstjdd.cli import info

    def run(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(info, "run", run)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["info", "x.npz"])


def _one_error_line(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and len(lines) == 1, (code, err[-500:])
    assert len(lines[0]) < MAX_MESSAGE
    return lines[0]


def test_a_full_disk_stops_train_with_one_line_and_no_run_folder(files, tmp_path, monkeypatch,
                                                                  capsys):
    from burstjdd.train import checkpoint

    def full(obj, path):  # what torch raises when the disk takes fewer bytes than written
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with deadline(DEADLINE_S):
        code = cli.main([str(a) for a in _train(files, tmp_path, "--quiet")])
    line = _one_error_line(code, capsys.readouterr().err)
    assert str(tmp_path / "run" / "checkpoint.pt") in line and "no space left on device" in line
    assert list(tmp_path.iterdir()) == []  # the run folder it made is gone


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("case", ["demo", "export", "analyze", "evaluate"])
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(case, files, tmp_path,
                                                                     monkeypatch, capsys):
    """Each writer in turn meets a full disk: one "cannot write PATH: no space left on device"
    (never one wrapped in another), and the folders the command made are gone."""
    out = tmp_path / "new" / "out"
    argv, writer, named = {
        "demo": (["demo", "-o", out, "--model", "classical", "--size", "64"],
                 (Image.Image, "save"), out / "demo.png"),
        "export": (["export", files.root / "run", "-o", out], (Path, "write_bytes"), out),
        "analyze": (["analyze", files.root / "burst.npz", "--block", "16", "-o", out],
                    (Image.Image, "save"), out / "shift_histogram.png"),
        "evaluate": (_stills_evaluation(files, out), (Path, "write_text"), out / "results.json"),
    }[case]
    monkeypatch.setattr(*writer, _no_space)
    with deadline(DEADLINE_S):
        code = cli.main([str(a) for a in argv + ["--quiet"] * (case == "demo")])
    line = _one_error_line(code, capsys.readouterr().err)
    assert f"error: cannot write {named}: no space left on device (" in line, line
    assert line.count("cannot write") == 1, line
    assert list(tmp_path.iterdir()) == []


def test_simulate_refuses_an_image_that_needs_more_memory_than_is_available(files, tmp_path,
                                                                           monkeypatch, capsys):
    import burstjdd.synth.burst as burst_module

    monkeypatch.setattr(burst_module, "available_memory", lambda: 2**20)  # 80x80 px needs 1.7 MB
    with deadline(DEADLINE_S):
        code = cli.main(["simulate", str(files.root / "photos" / "0.png"), "-o",
                         str(tmp_path / "s.npz"), "--frames", "3"])
    line = _one_error_line(code, capsys.readouterr().err)
    assert "0.png: a 3-frame burst of this 80x80 image needs about 0.0 GiB of memory" in line
    assert list(tmp_path.iterdir()) == []


def test_a_nan_loss_stops_train_with_one_line_naming_the_step(files, tmp_path, monkeypatch,
                                                              capsys):
    from burstjdd.train import loop

    real = loop.total_loss

    def nan_loss(*args, **kwargs):
        loss, report = real(*args, **kwargs)
        return loss * float("nan"), {**report, "total": float("nan")}

    monkeypatch.setattr(loop, "total_loss", nan_loss)
    with deadline(DEADLINE_S):
        code = cli.main([str(a) for a in _train(files, tmp_path, "--quiet")])
    line = _one_error_line(code, capsys.readouterr().err)
    assert line.startswith("burstjdd train: error: step 1: the loss is nan; training stopped")
    assert list(tmp_path.iterdir()) == []
