"""``burstjdd restore INPUT... -o OUT``: restore a burst of raw files into one clean image;
``burstjdd restore ROOT --batch -o OUT_DIR``: every burst under ROOT (:mod:`burstjdd.cli._batch`).
"""

from __future__ import annotations

import argparse
import os

from burstjdd.cli._args import add_device, add_precision, add_quiet, float_in, weights_arg
from burstjdd.cli._batch import FORMATS

NAME = "restore"
HELP = "restore a burst of raw files into one clean image"

OUTPUT_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".dng")
MAX_STRENGTH = 2.0  # burstjdd.restore.MAX_STRENGTH
MAX_SEARCH_RADIUS = 100_000  # burstjdd.restore.MAX_SEARCH_RADIUS (not imported: --help stays fast)


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
                             ".npz burst; with --batch, one folder of bursts")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output image: .png (8-bit sRGB), .tif/.tiff (16-bit sRGB, float32 "
                             "with --space linear), .npy (float32 H×W×3) or .dng (linear); "
                             "folders are created as needed, an existing file is replaced (never an "
                             "input, a folder or a special file)")
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
    parser.add_argument("--search-radius", type=float_in(0, MAX_SEARCH_RADIUS), default=None,
                        metavar="PX",
                        help="coarse-alignment search radius in full-res pixels (default: 48 up "
                             "to 720p, growing with the image to 128 at 4K, wider where the "
                             "global pre-alignment is unsure; docs/method.md §7.1)")
    parser.add_argument("--no-prealign", dest="prealign", action="store_false",
                        help="no global pre-alignment: the coarse alignment searches around "
                             "each tile's own position, not around its frame's global shift")
    parser.add_argument("--tile", type=int, default=None, metavar="PX",
                        help="tile size in full-res pixels, a multiple of 8 (default: the "
                             "largest of 256..512 that the memory budget holds)")
    add_precision(parser)
    parser.add_argument("--noise", default=None, metavar="LEVEL",
                        help="noise level: low, high or SHOT:READ with Var = SHOT·x + READ² in "
                             "normalised units (docs/protocol.md; default: from the file, else "
                             "estimated)")
    parser.add_argument("--strength", type=float_in(0, MAX_STRENGTH), default=1.0, metavar="S",
                        help="denoising strength 0..2: the noise level the model is told is the "
                             "burst's times S; lower keeps more texture (and noise), higher "
                             "smooths more (default 1)")
    parser.add_argument("--batch", action="store_true",
                        help="INPUT is a folder of bursts (each sub-folder of raw files, each "
                             ".npz) and -o the output folder: one model load, outputs that "
                             "exist are skipped, a failed burst does not stop the others; "
                             "under torchrun the bursts are shared among the processes")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="--batch: format of the outputs OUT_DIR/<burst>.<format> "
                             "(default png)")
    add_quiet(parser, "no progress bar")


def check_output(path: str | os.PathLike, space: str) -> None:
    """Fail early (before minutes of work) on an output the writers would refuse: an unknown
    extension, PNG with linear data, a directory or special file (FIFO, device) in its place, a
    folder that cannot be created or written. A missing folder is created (docs/cli.md: output folders are created as needed)."""
    import tempfile
    from pathlib import Path

    from burstjdd.errors import ConfigError
    from burstjdd.raw.files import check_replaceable

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in OUTPUT_SUFFIXES:
        raise ConfigError(f"{path}: unsupported output extension {ext or '(none)'!r}; use "
                          f"{', '.join(OUTPUT_SUFFIXES)}")
    if ext == ".png" and space == "linear":
        raise ConfigError(f"{path}: PNG is 8-bit sRGB only; use .tif, .npy or .dng for linear")
    check_replaceable(path)  # a folder, a FIFO, a device: refused before any work
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
    import time

    from burstjdd.cli._batch import restore_one
    from burstjdd.raw.io import check_output_apart
    from burstjdd.raw.noise import parse_noise
    from burstjdd.restore import Restorer

    if args.batch:
        from burstjdd.cli._batch import run_batch

        return run_batch(args)
    if args.format is not None:
        from burstjdd.errors import ConfigError

        raise ConfigError("--format is for --batch; otherwise the output's extension picks "
                          "the format")
    check_output_apart(args.output, args.inputs)  # never replace an input
    check_output(args.output, args.space)
    noise = None if args.noise is None else parse_noise(args.noise)
    start = time.perf_counter()
    restorer = Restorer.from_pretrained(args.model, device=args.device, tile=args.tile,
                                        search_radius=args.search_radius,
                                        strength=args.strength, precision=args.precision,
                                        prealign=args.prealign)
    burst, image = restore_one(restorer, args.inputs, args.output, space=args.space,
                               ref=args.ref, noise=noise, progress=not args.quiet)
    seconds = time.perf_counter() - start
    height, width = image.shape[-2:]
    if burst.meta.get("orientation", 1) in (5, 6, 7, 8):  # written turned by 90 degrees
        height, width = width, height
    print(f"wrote {args.output}: {width}x{height}, {burst.n_frames} frames, model "
          f"{restorer.name}, {restorer.device.type}, {seconds:.1f} s")
    return 0
