"""Reading a burst: :func:`read_burst` takes one ``.npz`` burst file, a folder of raw camera
files or a list of them, and hands it to the reader for that kind of input.

The raw modules by job: :mod:`burstjdd.raw.burst` (the :class:`RawBurst` container),
:mod:`burstjdd.raw.npz` (``.npz`` burst files), :mod:`burstjdd.raw.camera` (raw camera files
through rawpy), :mod:`burstjdd.raw.reference` (the choice of reference frame),
:mod:`burstjdd.raw.image`, :mod:`burstjdd.raw.writers` and :mod:`burstjdd.raw.dng` (image
output), :mod:`burstjdd.raw.files` (atomic output, special files).

Every problem with the input raises :class:`~burstjdd.errors.BurstFormatError` whose message
is one line naming the file (when there is one) and the problem.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from burstjdd.errors import BurstFormatError
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.camera import RAW_SUFFIXES, read_raw_files
from burstjdd.raw.files import (
    InputNotFoundError,
    PathLike,
    RefusedOutputError,
    require_regular_file,
)
from burstjdd.raw.npz import read_npz
from burstjdd.raw.reference import _resolve_ref

__all__ = ["check_output_apart", "read_burst"]


def read_burst(
    inputs: PathLike | Sequence[PathLike], *, ref: int | str | None = None
) -> RawBurst:
    """Read a burst: one ``.npz`` burst file, a folder of raw camera files, or raw files.

    inputs: a path or a sequence of paths:

    * one ``.npz`` burst (version 1, :func:`read_npz`);
    * one folder: every raw file in it (name suffix in :data:`RAW_SUFFIXES`, any case), sorted
      by name; hidden files (name starting with ".") and other files (JPEG previews, sidecars)
      are skipped;
    * raw camera files (DNG and whatever LibRaw reads), in the given order, whatever their
      suffix; see :func:`read_raw_frame` for what is read from each and
      :func:`read_raw_files` for how they make a burst.

    ref: the reference frame. None: the one stored in the ``.npz`` file, or the middle frame
    N // 2 of raw files; an int K: frame K (-1: the middle one); ``"auto"``: the sharpest of
    the middle frames (:func:`select_reference`).

    Every problem with the input raises ``BurstFormatError`` with a one-line message naming
    the file; a path that does not exist raises :class:`InputNotFoundError` (a
    ``BurstFormatError`` and a ``FileNotFoundError``).
    """
    paths = _input_paths(inputs)
    if not paths:
        raise BurstFormatError("no input given: pass one .npz burst, a folder or raw files")
    for p in paths:
        require_regular_file(p, allow_dir=True)  # first: a symbolic link loop "does not exist"
        if not p.exists():
            raise InputNotFoundError(f"{p}: no such file or directory")
    if any(p.suffix.lower() == ".npz" for p in paths):
        if len(paths) != 1:
            raise BurstFormatError(f"give one .npz burst on its own, got {len(paths)} inputs")
        burst = read_npz(paths[0])
        if ref is None:
            return burst
        return dataclasses.replace(burst, ref=_resolve_ref(ref, burst.raw, burst.cfa))
    return read_raw_files(_raw_paths(paths), ref=ref)


def check_output_apart(output: PathLike, inputs: PathLike | Sequence[PathLike]) -> None:
    """Refuse (``RefusedOutputError``) an ``output`` path that would replace one of
    :func:`read_burst`'s ``inputs`` (the same file under any name: links and relative paths
    are resolved), or that lies in an input folder with a raw suffix, where it would replace a
    frame or be read as one on the next run. Paths only; nothing is read."""
    out = Path(output)
    for given in _input_paths(inputs):
        if given.is_dir():
            inside = Path(os.path.realpath(out)).parent == Path(os.path.realpath(given))
            if inside and out.suffix.lower() in RAW_SUFFIXES and not out.name.startswith("."):
                raise RefusedOutputError(
                    f"{out}: is in the input folder {given}, where it would be read as a frame "
                    "of the burst; write the output elsewhere")
        elif _same_file(out, given):
            raise RefusedOutputError(f"{out}: is the input {given}; writing there would replace "
                                     "it, so write the output elsewhere")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (``os.path.samefile`` when both exist, else their
    resolved paths; ``os.path.realpath``, unlike ``Path.resolve``, also takes a symbolic link
    loop, which the reader or writer then refuses)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is missing (or unreadable): compare the names
        return os.path.realpath(a) == os.path.realpath(b)


def _input_paths(inputs: Any) -> list[Path]:
    """``read_burst``'s inputs as paths; TypeError saying what is expected for anything else
    (a number, an array, bytes, a mapping)."""
    expected = "a path (str or os.PathLike) or a list of paths"
    if isinstance(inputs, (str, os.PathLike)):
        return [Path(inputs)]
    if isinstance(inputs, (bytes, Mapping, np.ndarray, Tensor)) or not isinstance(inputs,
                                                                                   Iterable):
        raise TypeError(f"read_burst: inputs must be {expected}, got {type(inputs).__name__}")
    paths = list(inputs)
    for p in paths:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"read_burst: inputs must be {expected}, got a list holding "
                            f"{type(p).__name__}")
    return [Path(p) for p in paths]


def _raw_paths(paths: list[Path]) -> list[Path]:
    """The raw files to read: the given files, or the raw files of one given folder."""
    folders = [p for p in paths if p.is_dir()]
    if not folders:
        return paths
    if len(paths) != 1:
        raise BurstFormatError(f"{folders[0]}: give one folder on its own, or raw files")
    folder = folders[0]
    files = sorted(
        (p for p in folder.iterdir()
         if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in RAW_SUFFIXES),
        key=lambda p: p.name,
    )
    if not files:
        raise BurstFormatError(
            f"{folder}: no raw files in this folder (looked for .dng, .cr2, .cr3, .nef, .arw, "
            f".raf, .orf, .rw2 and the other suffixes LibRaw reads)"
        )
    return files
