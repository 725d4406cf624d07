"""``burstjdd analyze BURST [-o DIR]``: shift statistics, coarse offsets and noise level."""

from __future__ import annotations

import argparse

from burstjdd.cli._args import int_in

NAME = "analyze"
HELP = "shift statistics, coarse offsets and noise level of a burst"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("burst", metavar="BURST", nargs="+",
                        help="a .npz burst, a folder of raw files, or raw files")
    parser.add_argument("-o", "--output", default=".", metavar="DIR",
                        help="folder for shift_histogram.png and offsets.png (created as needed; "
                             "existing files are replaced; default: .)")
    parser.add_argument("--block", type=int_in(1), default=64, metavar="PX",
                        help="block side, full-res px, a multiple of 4 x factor (default 64)")
    parser.add_argument("--factor", type=int_in(1), default=2,
                        help="packed-raw downsampling before matching (grid = 2 x factor px; "
                             "default 2)")
    parser.add_argument("--radius", type=int_in(0), default=None, metavar="PX",
                        help="search radius, full-res px, at most the longer side of the burst "
                             "(default: the largest that fits, at most 256)")


def run(args: argparse.Namespace) -> int:
    from burstjdd.eval.analyze import (analyze_burst, histogram_image, offsets_image,
                                       reference_srgb, summary, write_pngs)
    from burstjdd.eval.outputs import NewPaths, require_folder
    from burstjdd.raw.io import read_burst

    out = require_folder(args.output)
    burst = read_burst(args.burst[0] if len(args.burst) == 1 else args.burst)
    result = analyze_burst(burst, block=args.block, factor=args.factor, radius=args.radius)
    true = None if result.true_neighbour is None else result.true_neighbour.norm(dim=-1)
    images = {out / "shift_histogram.png": histogram_image(result.neighbour.norm(dim=-1),
                                                           true=true),
              out / "offsets.png": offsets_image(reference_srgb(burst), result)}
    new = NewPaths()  # the folders it makes go again when the files cannot be written
    new.note_folder(out)
    with new.removed_on_failure():
        out.mkdir(parents=True, exist_ok=True)
        write_pngs(images)  # both or neither
    print("\n".join(summary(result)))
    print(f"wrote {' and '.join(str(p) for p in images)}")
    return 0
