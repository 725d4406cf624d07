"""Nothing left behind: outputs written all or none, and removed again when a command fails.

:func:`write_all` writes several files together: each to a temporary name first, all renamed
into place only once every one is complete. A command notes the paths it may create
(:meth:`NewPaths.note`, :meth:`NewPaths.note_folder`) before it writes them; only those that do
not exist yet are remembered. Should the command then fail, :meth:`NewPaths.removed_on_failure`
removes them, files first and then folders, a folder only when it is empty: what existed
before is never touched, and neither is a file someone else put into a folder the command made
(docs/cli.md, "Outputs").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from burstjdd.errors import ConfigError
from burstjdd.raw.files import atomic_output, disk_full_error, special_file

__all__ = ["NewPaths", "require_folder", "write_all"]


def write_all(writers: Mapping[Path, Callable[[Path], object]]) -> None:
    """Write several files all or none: each ``writers[path](tmp)`` writes a temporary file
    next to its path (:func:`~burstjdd.raw.files.atomic_output`); only when every one has been
    written are they renamed into place, so a failure leaves every path as it was. A full disk
    is one :class:`~burstjdd.raw.files.DiskFullError` naming the path being written."""
    with contextlib.ExitStack() as stack:
        temps = {path: stack.enter_context(atomic_output(path)) for path in writers}
        for path, tmp in temps.items():
            try:
                writers[path](tmp)
            except OSError as exc:  # named here: each atomic_output would name its own path
                full = disk_full_error(exc, path)
                if full is None:
                    raise
                raise full from None


def require_folder(path: str | os.PathLike, flag: str = "-o") -> Path:
    """``path`` as a Path; ConfigError when it exists and is not a folder (a file, a special
    file, a broken link), before a command computes anything it could not write."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise ConfigError(f"{path}: {flag} must be a folder (new or existing), not "
                          f"{special_file(path) or 'a file'}")
    return path


class NewPaths:
    """The paths a command creates, in the order noted (a folder before what goes into it)."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def note(self, *paths: str | os.PathLike) -> None:
        """Remember each of ``paths`` that does not exist yet."""
        for path in map(Path, paths):
            if not os.path.lexists(path) and path not in self.paths:
                self.paths.append(path)

    def note_folder(self, folder: str | os.PathLike) -> None:
        """Remember ``folder`` and its missing parents (``mkdir(parents=True)`` makes them)."""
        folder = Path(folder)
        self.note(*reversed([folder, *folder.parents]))

    def remove(self, keep: tuple[Path, ...] = ()) -> None:
        """Remove the noted paths that exist now, but ``keep``: the last noted first, a folder
        only when empty. Errors are ignored: the command's own error is the one to report."""
        for path in reversed(self.paths):
            if path in keep:
                continue
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def removed_on_failure(self, keep_on_interrupt: tuple[Path, ...] = ()) -> Iterator[None]:
        """Run the block; on an exception, :meth:`remove` the noted paths and re-raise. On
        Ctrl-C (KeyboardInterrupt) the paths in ``keep_on_interrupt`` stay (evaluate's cache:
        the next run continues from it)."""
        try:
            yield
        except KeyboardInterrupt:
            self.remove(keep=keep_on_interrupt)
            raise
        except BaseException:
            self.remove()
            raise
