"""``burstjdd restore INPUT... -o OUT``: restore a burst of raw files into one clean image."""

from __future__ import annotations

import argparse
import os

from burstjdd.cli._args import add_device, add_quiet, float_in, weights_arg

NAME = "restore"
HELP = "restore a burst of raw files into one clean image"

OUTPUT_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".dng")


def _ref(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad reference {text!r}: expected a frame index or "
                                         "'auto'") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="raw files (DNG and whatever LibRaw reads), a folder of them, or one "
                             ".npz burst")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output image: .png (8-bit sRGB), .tif/.tiff (16-bit sRGB, float32 "
                             "with --space linear), .npy (float32 H×W×3) or .dng (linear); "
                             "folders are created as needed, an existing file is replaced")
    parser.add_argument("--model", type=weights_arg, default=None, metavar="NAME|PATH",
                        help="weights directory or shipped name (default: the shipped default "
                             "weights)")
    add_device(parser)
    parser.add_argument("--space", default="srgb", choices=("srgb", "linear"),
                        help="srgb: rendered with the burst's white balance and colour matrix "
                             "(default); linear: linear camera RGB (.tif/.npy/.dng)")
    parser.add_argument("--ref", type=_ref, default=None, metavar="K|auto",
                        help="reference frame: an index, or auto (the sharpest of the middle "
                             "frames); default: the one stored in a .npz, else the middle frame")
    parser.add_argument("--search-radius", type=float_in(0), default=None, metavar="PX",
                        help="coarse-alignment search radius in full-res pixels (default: 48 up "
                             "to 720p, growing with the image to 128 at 4K)")
    parser.add_argument("--tile", type=int, default=256, metavar="PX",
                        help="tile size in full-res pixels, a multiple of 8 (default 256)")
    parser.add_argument("--noise", default=None, metavar="LEVEL",
                        help="noise level: low, high or SHOT:READ with Var = SHOT·x + READ² in "
                             "normalised units (docs/protocol.md; default: from the file, else "
                             "estimated)")
    add_quiet(parser, "no progress bar")


def check_output(path: str | os.PathLike, space: str) -> None:
    """Fail early (before minutes of work) on an output the writers would refuse: an unknown
    extension, PNG with linear data, a directory path, a folder that cannot be created or
    written. A missing folder is created (docs/cli.md: output folders are created as needed)."""
    import tempfile
    from pathlib import Path

    from burstjdd.errors import ConfigError

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in OUTPUT_SUFFIXES:
        raise ConfigError(f"{path}: unsupported output extension {ext or '(none)'!r}; use "
                          f"{', '.join(OUTPUT_SUFFIXES)}")
    if ext == ".png" and space == "linear":
        raise ConfigError(f"{path}: PNG is 8-bit sRGB only; use .tif, .npy or .dng for linear")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: output path is a directory")
    parent = path.parent
    if not parent.is_dir():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot create the folder {parent} "
                              f"({exc.strerror or type(exc).__name__})") from None
    try:  # the only reliable writability test (permissions, read-only mounts, root)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise PermissionError(f"{path}: cannot write to {parent} ({exc.strerror})") from None


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from burstjdd.raw.io import read_burst
    from burstjdd.raw.noise import parse_noise
    from burstjdd.raw.writers import write_image
    from burstjdd.restore import Restorer

    check_output(args.output, args.space)
    start = time.perf_counter()
    restorer = Restorer.from_pretrained(args.model, device=args.device, tile=args.tile,
                                        search_radius=args.search_radius)
    burst = read_burst(args.inputs, ref=args.ref)
    if args.noise is not None:
        burst = dataclasses.replace(burst, noise=parse_noise(args.noise))
    image = restorer.restore(burst, progress=not args.quiet)
    write_image(image, args.output, space=args.space, burst=burst)
    seconds = time.perf_counter() - start
    height, width = image.shape[-2:]
    if burst.meta.get("orientation", 1) in (5, 6, 7, 8):  # written turned by 90 degrees
        height, width = width, height
    print(f"wrote {args.output}: {width}x{height}, {burst.n_frames} frames, model "
          f"{restorer.name}, {restorer.device.type}, {seconds:.1f} s")
    return 0
