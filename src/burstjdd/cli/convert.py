"""``burstjdd convert-official G.pth DSNet.pth -o DIR``: the authors' checkpoints → our format."""

from __future__ import annotations

import argparse

NAME = "convert-official"
HELP = "convert the authors' released checkpoints to burstjdd weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("g_path", metavar="G.pth", help="official generator state dict")
    parser.add_argument("dsnet_path", metavar="DSNet.pth", help="official DSNet state dict")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="weights directory to write (config.json + model.safetensors); "
                             "created as needed, a previous weights directory there is "
                             "replaced, a folder holding other files is refused")
    parser.add_argument("--fp16", action="store_true",
                        help="store the tensors in float16 (default: float32)")
    # former flag, now what always happens (docs/cli.md: outputs are replaced, nothing else is)
    parser.add_argument("--overwrite", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    import torch

    from burstjdd.errors import WeightsError
    from burstjdd.models.official import convert_files
    from burstjdd.raw.files import require_regular_file

    for path in (args.g_path, args.dsnet_path):
        require_regular_file(path, WeightsError)
    out = convert_files(args.g_path, args.dsnet_path, args.output,
                        dtype=torch.float16 if args.fp16 else None, overwrite=True)
    print(f"wrote {out}")
    return 0
