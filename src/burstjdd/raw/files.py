"""File safety: atomic output, refusing special files, and the error for a missing input.

* :func:`atomic_output`: every file the package writes (bursts, images, checkpoints, configs)
  goes through it, so a failed write leaves neither a partial file nor a temporary one, and an
  existing output stays as it was.
* :func:`special_file` / :func:`require_regular_file`: readers refuse named pipes and devices
  first, which could block forever or never end.
* :class:`InputNotFoundError`: an input path that does not exist.

Imports nothing of the package but :mod:`burstjdd.errors`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from burstjdd.errors import BurstFormatError

__all__ = ["InputNotFoundError", "atomic_output", "require_regular_file", "special_file"]

PathLike = str | os.PathLike


class InputNotFoundError(BurstFormatError, FileNotFoundError):
    """An input path does not exist. Bad input (``BurstFormatError``) and also a
    ``FileNotFoundError``, so callers that catch either one see it."""


_SPECIAL_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_file(path: PathLike) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder (e.g. "a named
    pipe (FIFO)", "a character device"), else None. Reading such a path can block forever (a
    FIFO nobody writes to) or never end (/dev/zero), so every reader refuses them first."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, unreadable or an invalid name: the reader says so
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), "not a regular file")


def require_regular_file(path: PathLike, error: type[Exception] = BurstFormatError, *,
                         allow_dir: bool = False) -> None:
    """Raise ``error`` naming ``path`` when it is a special file (:func:`special_file`), or a
    folder unless ``allow_dir``. A missing path passes: the reader reports it."""
    kind = special_file(path)
    if kind is None and not allow_dir and os.path.isdir(path):
        kind = "a folder"
    if kind is not None:
        raise error(f"{path}: is {kind}, not a regular file")


def _create_temp(path: Path) -> Path:
    """Create an empty, uniquely named hidden file next to ``path`` (mode 0o666 & ~umask)."""
    for _ in range(100):
        # Keep the final suffix last: some writers choose the format from the extension.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file next to {path}")


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; move it onto ``path`` on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path``
    is left untouched, so readers only ever see a complete file or the previous one.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {parent}")
    if path.is_dir():
        raise IsADirectoryError(f"output path is a directory: {path}")
    tmp = _create_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
