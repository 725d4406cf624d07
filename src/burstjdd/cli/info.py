"""``burstjdd info BURST``: show what a burst file contains."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the library is imported inside run() only, to keep --help fast
    from burstjdd.raw.burst import RawBurst

NAME = "info"
HELP = "show what a burst file contains"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("burst", metavar="BURST", help="a .npz burst, a folder of raw files, or a raw file")


def _floats(values: list, fmt: str = ".4g") -> str:
    return "[" + ", ".join(format(v, fmt) for v in values) + "]"


def describe(burst: RawBurst) -> list[str]:
    """Human-readable lines describing ``burst``; the noise is estimated when not stored."""
    from burstjdd.errors import BurstFormatError

    if burst.noise is not None:
        noise = f"shot {burst.noise.shot:.4g}, read {burst.noise.read:.4g} (stored)"
    else:
        try:
            level = burst.noise_level()
            noise = f"estimated: shot {level.shot:.4g}, read {level.read:.4g}"
        except BurstFormatError as exc:  # e.g. frames too small to estimate from
            noise = f"not stored, cannot be estimated ({exc})"
    lo, hi = (float(v) for v in burst.raw.aminmax())
    ccm = "[" + ", ".join(_floats(row) for row in burst.ccm.tolist()) + "]"
    yes = {True: "yes", False: "no"}
    return [
        f"frames:  {burst.n_frames} (reference {burst.ref})",
        f"size:    {burst.width} x {burst.height} (width x height)",
        f"pattern: {burst.cfa}",
        f"raw:     min {lo:.4g}, mean {float(burst.raw.mean()):.4g}, max {hi:.4g}",
        f"wb:      {_floats(burst.wb.tolist())}",
        f"ccm:     {ccm}",
        f"noise:   {noise}",
        f"gt:      {yes[burst.gt is not None]}",
        f"flow:    {yes[burst.flow is not None]}",
        f"valid:   {yes[burst.valid is not None]}",
        f"meta:    {', '.join(sorted(burst.meta)) or '(none)'}",
    ]


def run(args: argparse.Namespace) -> int:
    from burstjdd.raw.io import read_burst

    burst = read_burst(args.burst)
    print(f"file:    {args.burst}")
    print("\n".join(describe(burst)))
    return 0
