"""The ``burstjdd`` command line: a thin layer that parses arguments and calls the library.

Each subcommand lives in its own module of this package and exposes

* ``NAME: str`` and ``HELP: str``,
* ``add_arguments(parser: argparse.ArgumentParser) -> None``,
* ``run(args: argparse.Namespace) -> int`` (the exit status).

Command modules import the library (torch, models) inside ``run`` only, so building the parser
and ``burstjdd --help`` stay fast.
Errors of type :class:`burstjdd.errors.BurstJDDError` (and ``OSError``), bad arguments and
running out of memory are printed as one line on stderr with exit status 2; nothing is left
half-written because every writer is atomic. Python warnings raised while a command runs are
printed as one line each, ``burstjdd CMD: warning: ...``. The conventions every command follows (flags,
outputs, overwriting) are in docs/cli.md.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Sequence

from burstjdd._version import __version__
from burstjdd.errors import BurstJDDError

# (subcommand, module, one-line help). Order is the order shown by --help.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("info", "burstjdd.cli.info", "show what a burst file contains"),
    (
        "simulate",
        "burstjdd.cli.simulate",
        "simulate noisy raw bursts with known motion from photos or clips",
    ),
    (
        "convert-official",
        "burstjdd.cli.convert",
        "convert the authors' released checkpoints to burstjdd weights",
    ),
    ("restore", "burstjdd.cli.restore", "restore a burst of raw files into one clean image"),
    ("demo", "burstjdd.cli.demo", "simulate a burst from a bundled photo and restore it (no data needed)"),
    ("evaluate", "burstjdd.cli.evaluate", "evaluate methods on clips or stills (paper tables, stress curve)"),
    ("bench", "burstjdd.cli.bench", "parameters, FLOPs, time and memory of the network (paper Table 3)"),
    ("analyze", "burstjdd.cli.analyze", "shift statistics, coarse offsets and noise level of a burst"),
    ("train", "burstjdd.cli.train", "train the model (or an ablation) on your data; resume a run"),
    ("export", "burstjdd.cli.export", "export a training run's weights for restore"),
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: str, limit: int = 1000) -> str:
    """``text`` on one line, cut to ``limit`` characters (a safety net: messages are meant to be
    far shorter, but one that quotes its input, such as a list of values, must not flood the
    terminal)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError, or torch's CPU/GPU allocation failure (without importing torch)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text
                                              or "out of memory" in text.lower())


def _warning_printer(command: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints ``burstjdd CMD: warning: <message>`` as one line,
    without the source line Python shows by default (the user did not write that code)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        stream = sys.stderr if file is None else file
        try:
            stream.write(f"burstjdd {command}: warning: {_one_line(str(message))}\n")
        except (OSError, AttributeError):  # no usable stderr: as Python's own printer does
            pass
    return show


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="burstjdd",
        description="Turn a burst of noisy raw photos into one clean full-colour image.",
    )
    parser.add_argument("--version", action="version", version=f"burstjdd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog="conventions of every command: docs/cli.md")
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); returns the exit status (also
    for --help, --version and bad arguments, which argparse ends with SystemExit)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(args._module)
    try:
        with warnings.catch_warnings():  # the printer is restored when the command ends
            warnings.showwarning = _warning_printer(args.command)
            return int(module.run(args) or 0)
    except (BurstJDDError, OSError) as exc:
        msg = _one_line(str(exc)) or type(exc).__name__
        print(f"burstjdd {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        print(f"burstjdd {args.command}: error: out of memory ({_one_line(str(exc), 120)}); "
              "use smaller sizes or tiles", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("burstjdd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
