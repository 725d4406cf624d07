"""File safety: atomic output, refusing special files, and the error for a missing input.

* :func:`atomic_output`: every file the package writes (bursts, images, checkpoints, configs)
  goes through it, so a failed write leaves neither a partial file nor a temporary one, and an
  existing output stays as it was.
* :func:`special_file` / :func:`require_regular_file`: readers refuse named pipes and devices
  first, which could block forever or never end.
* :func:`check_replaceable`: an output path may only replace a regular file; a named pipe, a
  device (``-o /dev/null`` as root would replace the device node), a socket or a folder there
  is refused (:class:`RefusedOutputError`). :func:`atomic_output` checks it too.
* :func:`check_readable`: "permission denied" naming the file, before a C library (LibRaw)
  turns it into a vaguer "Input/output error".
* :class:`InputNotFoundError`: an input path that does not exist.
* :func:`disk_full_error`: a write that ran out of disk space as one line naming the file.

Imports nothing of the package but :mod:`burstjdd.errors`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from burstjdd.errors import BurstFormatError, BurstJDDError

__all__ = ["DiskFullError", "InputNotFoundError", "RefusedOutputError", "atomic_output",
           "check_readable", "check_replaceable", "disk_full_error", "require_regular_file",
           "special_file"]

PathLike = str | os.PathLike


class InputNotFoundError(BurstFormatError, FileNotFoundError):
    """An input path does not exist. Bad input (``BurstFormatError``) and also a
    ``FileNotFoundError``, so callers that catch either one see it."""


class RefusedOutputError(BurstJDDError, FileExistsError):
    """An output path names something that must not be replaced: a special file, or one of the
    command's inputs. Bad input (``BurstJDDError``) and a ``FileExistsError``."""


class DiskFullError(OSError):
    """A write ran out of disk space: errno ENOSPC, and a one-line message naming the file
    (:func:`disk_full_error`)."""


_SPECIAL_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_file(path: PathLike) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder (e.g. "a named
    pipe (FIFO)", "a character device", "a symbolic link loop"), else None. Reading such a path
    can block forever (a FIFO nobody writes to) or never end (/dev/zero), so every reader
    refuses them first."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:  # missing or unreadable: the reader says so; a loop never resolves
        return "a symbolic link loop" if exc.errno == errno.ELOOP else None
    except ValueError:  # an invalid name (a NUL byte): the reader says so
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


def check_replaceable(path: PathLike) -> None:
    """Refuse an output ``path`` that exists and is not a regular file (symbolic links are
    followed): ``RefusedOutputError`` for a named pipe, a device or a socket, which a rename
    would replace by a regular file (as root, ``/dev/null`` itself); ``IsADirectoryError`` for
    a folder. A missing path or a regular file passes."""
    kind = special_file(path)
    if kind is not None:
        raise RefusedOutputError(f"{path}: is {kind}; an output must be a regular file or a new "
                                 "name")
    if os.path.isdir(path):
        raise IsADirectoryError(f"output path is a directory: {path}")


def check_readable(path: PathLike) -> None:
    """``PermissionError("<path>: permission denied ...")`` when this process may not open
    ``path`` for reading (checked by opening it: ``os.access`` says yes to root even where a
    read-only mount or an ACL says no). Call it on regular files only: opening a FIFO blocks."""
    try:
        os.close(os.open(path, os.O_RDONLY))
    except PermissionError:
        raise PermissionError(f"{path}: permission denied (this user cannot read the file)"
                              ) from None


def _no_space(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of disk space: errno ENOSPC/EDQUOT, or an OSError without
    errno (NumPy's ``ndarray.tofile`` says only "N requested and M written") on a disk with no
    free block left."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return exc.errno is None and shutil.disk_usage(folder).free == 0
    except OSError:
        return False


def disk_full_error(exc: BaseException, path: PathLike) -> DiskFullError | None:
    """For a write of ``path`` that failed with ``exc``: a :class:`DiskFullError` (errno ENOSPC)
    whose text names ``path``, without the "[Errno 28]" prefix a two-argument OSError would
    print, when the disk ran out of space; else None, and None for an ``exc`` that already is a
    DiskFullError (it names its own file: outputs written together). Ask before removing the
    partial file (:func:`_no_space` may look at the free space)."""
    path = Path(path)
    if isinstance(exc, DiskFullError) or not _no_space(exc, path.parent):
        return None
    error = DiskFullError(f"cannot write {path}: no space left on device "
                          f"({' '.join(str(exc).split())}); nothing written")
    error.errno = errno.ENOSPC
    return error


def _create_temp(path: Path) -> Path:
    """Create an empty, uniquely named hidden file next to ``path`` (mode 0o666 & ~umask)."""
    for _ in range(100):
        # Keep the final suffix last: some writers choose the format from the extension.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:  # a read-only folder, no permission: name the output, not tmp
            error = type(exc)(f"{path}: cannot write to {path.parent} "
                              f"({exc.strerror or exc})")
            error.errno = exc.errno
            raise error from None
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file next to {path}")


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; move it onto ``path`` on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path``
    is left untouched, so readers only ever see a complete file or the previous one; a write
    that ran out of disk space is re-raised as :class:`DiskFullError` naming ``path``. A ``path``
    that is a folder or a special file is refused first (:func:`check_replaceable`).
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {parent}")
    check_replaceable(path)
    tmp = _create_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        full = disk_full_error(exc, path)  # asked before the partial file is removed
        tmp.unlink(missing_ok=True)
        if full is not None:
            raise full from None
        raise
