"""Argument types and flags shared by the subcommands, so that every command follows the same
conventions (docs/cli.md): ``-o/--output`` for outputs, ``--quiet`` for progress output,
``--device auto|cpu|cuda|mps``, numbers checked with their allowed range in the message, and
old spellings kept as hidden aliases. Imports nothing heavy (``burstjdd --help`` stays fast).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_SEED = 2**64 - 1  # the largest seed torch.Generator.manual_seed takes


def _number(value: float) -> str:
    """Integers in full (a 64-bit bound stays exact), floats short."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _range_text(lo: float | None, hi: float | None) -> str:
    if hi is None:
        return f">= {_number(lo)}"
    return f"in {_number(lo)}..{_number(hi)}" if lo is not None else f"<= {_number(hi)}"


def int_in(lo: int | None = None, hi: int | None = None, multiple: int = 1
           ) -> Callable[[str], int]:
    """An argparse type: an integer in lo..hi (either bound may be None) and a multiple of
    ``multiple``; the error message states what is allowed."""
    kind = "an integer" if multiple == 1 else f"a multiple of {multiple}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi) or value % multiple:
            raise argparse.ArgumentTypeError(f"must be {kind} {_range_text(lo, hi)}, got "
                                             f"{text[:40]}")
        return value
    return parse


def float_in(lo: float | None = None, hi: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number in lo..hi (either bound may be None); the error message
    states the range."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
        if not math.isfinite(value) or (lo is not None and value < lo) or \
                (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be a number {_range_text(lo, hi)}, got "
                                             f"{text[:40]}")
        return value
    return parse


def add_seed(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--seed S``: an integer in 0..MAX_SEED (what a torch generator takes), default 0."""
    parser.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, metavar="S",
                        help=f"{help_text}, 0..2**64-1 (default 0)")


def weights_arg(text: str) -> str:
    """An argparse type for ``--model``: the text as given, refused at once when it names a
    training run folder (or its checkpoint.pt) instead of a weights folder, saying to export it."""
    path = Path(text).expanduser()
    run = path if path.is_dir() else path.parent if path.name == "checkpoint.pt" else None
    if run is not None and (run / "checkpoint.pt").is_file() and not (run / "config.json").exists():
        raise argparse.ArgumentTypeError(
            f"{text} is a training run, not weights: export it first with `burstjdd export RUN "
            "-o DIR` and pass --model DIR")
    return text


def add_device(parser: argparse.ArgumentParser, default: str = "auto", what: str = "") -> None:
    """``--device auto|cpu|cuda|mps``; auto picks CUDA, else MPS, else the CPU."""
    parser.add_argument("--device", default=default, choices=DEVICES,
                        help=f"where to run{what}: auto (CUDA, else MPS, else CPU), cpu, cuda or "
                             f"mps (default {default})")


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision auto|fp32|bf16|fp16`` of the network; auto: bf16 on CUDA and on CPUs that
    compute it natively (AVX512-BF16, AMX), fp32 elsewhere."""
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="arithmetic of the network: auto (bf16 on CUDA and on CPUs with "
                             "native bf16 such as AVX512-BF16 or AMX, else fp32), fp32, bf16 or "
                             "fp16 (default auto; alignment and merge stay fp32)")


def add_quiet(parser: argparse.ArgumentParser, what: str = "no progress bars",
              old: str | None = None) -> None:
    """``--quiet``; ``old`` is a former spelling kept as a hidden alias."""
    parser.add_argument("--quiet", action="store_true", help=what)
    if old is not None:
        parser.add_argument(old, dest="quiet", action="store_true", default=argparse.SUPPRESS,
                            help=argparse.SUPPRESS)


def add_old_output(parser: argparse.ArgumentParser, old: str = "--out") -> None:
    """A former spelling of ``-o/--output`` (dest ``output``), accepted but not shown."""
    parser.add_argument(old, dest="output", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
