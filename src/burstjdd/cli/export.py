"""``burstjdd export RUN_DIR -o DIR``: a training run's weights as a weights directory."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "export"
HELP = "export a training run's weights for restore"

_DTYPES = ("float32", "float16", "bfloat16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a `burstjdd train` run directory")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="weights directory to write (model.safetensors, config.json, "
                             "sha256, model card README.md); created as needed, a previous "
                             "weights directory there is replaced, a folder holding other files "
                             "is refused")
    parser.add_argument("--dtype", choices=_DTYPES, default="float32",
                        help="storage precision of the weights (default float32)")
    # former flag, now what always happens (docs/cli.md: outputs are replaced, nothing else is)
    parser.add_argument("--overwrite", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part-mib", type=float, default=None, metavar="MIB",
                        help="split model.safetensors into files model.safetensors.000, .001, "
                             "... of at most MIB MiB each (for transfers with a per-file limit; "
                             "loading joins them and checks the sha256; default: one file)")
    parser.add_argument("--notes", metavar="FILE", default=None,
                        help="markdown file appended to the model card (e.g. the tables of "
                             "`burstjdd evaluate`; default: none)")


def run(args: argparse.Namespace) -> int:
    import torch

    from burstjdd.errors import ConfigError
    from burstjdd.eval.outputs import NewPaths
    from burstjdd.raw.files import require_regular_file
    from burstjdd.train.checkpoint import export_run

    notes = None
    if args.notes is not None:
        require_regular_file(args.notes, ConfigError)
        try:
            notes = Path(args.notes).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--notes {args.notes}: cannot read it ({exc})") from None
    part_bytes = None
    if args.part_mib is not None:
        if not args.part_mib > 0:
            raise ConfigError(f"--part-mib must be > 0, got {args.part_mib}")
        part_bytes = int(args.part_mib * 2**20)
    new = NewPaths()  # a failure (a full disk) removes the folders this run made
    new.note_folder(args.output)
    with new.removed_on_failure():
        out = export_run(args.run_dir, args.output, overwrite=True,
                         dtype=getattr(torch, args.dtype), notes=notes, part_bytes=part_bytes)
    print(f"weights of {args.run_dir} written to {out}")
    return 0
