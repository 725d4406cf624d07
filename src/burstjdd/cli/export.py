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
                             "sha256, model card README.md)")
    parser.add_argument("--dtype", choices=_DTYPES, default="float32",
                        help="storage precision of the weights (default float32)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing weights directory")
    parser.add_argument("--notes", metavar="FILE", default=None,
                        help="markdown file appended to the model card (e.g. the tables of "
                             "`burstjdd evaluate`)")


def run(args: argparse.Namespace) -> int:
    import torch

    from burstjdd.errors import ConfigError
    from burstjdd.train.checkpoint import export_run

    notes = None
    if args.notes is not None:
        try:
            notes = Path(args.notes).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--notes {args.notes}: cannot read it ({exc})") from None
    out = export_run(args.run_dir, args.output, overwrite=args.overwrite,
                     dtype=getattr(torch, args.dtype), notes=notes)
    print(f"weights of {args.run_dir} written to {out}")
    return 0
