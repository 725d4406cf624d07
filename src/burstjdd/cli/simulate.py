"""``burstjdd simulate SRC -o OUT``: noisy raw bursts with known motion from photos or clips."""

from __future__ import annotations

import argparse
import re

from burstjdd.cli._args import add_quiet, add_seed, float_in, int_in

NAME = "simulate"
HELP = "simulate noisy raw bursts with known motion from photos or clips"
MAX_FRAMES = 64  # burstjdd.synth.burst.MAX_FRAMES (not imported: --help stays free of torch)
MAX_OBJECTS = 16  # burstjdd.synth.burst.MAX_OBJECTS
MAX_SHIFT = 4096.0  # burstjdd.synth.burst.MAX_SHIFT


def _crop(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"bad crop {text!r}: expected WxH, e.g. 256x192")
    width, height = int(match[1]), int(match[2])
    return height, width


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", metavar="SRC",
        help="an image, a video file, a folder of images (one burst per image), a folder of "
             "clip folders <root>/<clip>/<frame> or of videos (one burst per clip), "
             "stills:FOLDER (images in sub-folders too, one burst each), or with --clip a "
             "folder holding the frames of one clip",
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="a .npz file for one burst, else a folder of <name>.npz (folders "
                             "are created as needed; existing files are replaced, never a folder or a "
                             "special file)")
    parser.add_argument("--frames", type=int_in(1, MAX_FRAMES), default=5, metavar="N",
                        help=f"frames per burst, 1..{MAX_FRAMES} (default 5)")
    parser.add_argument("--noise", default="high", metavar="LEVEL",
                        help="low, high (the levels of docs/protocol.md) or SHOT:READ (default "
                             "high)")
    parser.add_argument("--max-shift", type=float_in(0, MAX_SHIFT), default=64.0, metavar="PX",
                        help="stills: largest camera shift between neighbouring frames, full-res "
                             f"pixels 0..{MAX_SHIFT:g} (default 64)")
    parser.add_argument("--objects", type=int_in(0, MAX_OBJECTS), default=2, metavar="K",
                        help=f"independently moving objects per burst, 0..{MAX_OBJECTS} "
                             "(default 2)")
    add_seed(parser, "random seed; burst NAME of a folder uses a seed derived from (S, NAME)")
    parser.add_argument("--crop", type=_crop, default=None, metavar="WxH",
                        help="output size (even); default: the largest the motion allows")
    parser.add_argument("--cfa", default="RGGB", help="Bayer pattern of the mosaics (default RGGB)")
    parser.add_argument("--clip", action="store_true",
                        help="read a folder of images as the frames of ONE clip")
    parser.add_argument("--clip-motion", action="store_true",
                        help="clips: add the synthetic motion on top of their own (flow not "
                             "stored)")
    parser.add_argument("--downscale", type=int_in(1), default=2, metavar="F",
                        help="video files: decode at 1/F size (default 2)")
    add_quiet(parser, "no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from burstjdd.errors import DataError
    from burstjdd.raw.cfa import check_pattern
    from burstjdd.raw.files import check_replaceable
    from burstjdd.raw.noise import parse_noise
    from burstjdd.raw.npz import write_npz
    from burstjdd.synth.burst import simulate_burst
    from burstjdd.synth.sources import (
        IMAGE_EXTENSIONS,
        VIDEO_EXTENSIONS,
        ClipFolderSource,
        ImageFile,
        derive_seed,
        open_source,
    )

    check_pattern(args.cfa)  # bad options fail before any file is opened
    parse_noise(args.noise)
    src, out = Path(args.src), Path(args.output)
    options = dict(
        n_frames=args.frames, noise=args.noise, max_shift=args.max_shift, n_objects=args.objects,
        crop=args.crop, cfa=args.cfa, clip_motion=args.clip_motion,
    )
    single = src.is_file() or args.clip
    if single:
        if src.is_file() and src.suffix.lower() in IMAGE_EXTENSIONS:
            frames = [ImageFile(src)]
        elif src.is_file() and src.suffix.lower() in VIDEO_EXTENSIONS:
            frames = open_source(src, downscale=args.downscale).clip(0)
        elif src.is_dir():
            frames = ClipFolderSource(src).clip(0)
        else:
            raise DataError(f"{src}: not an image, a video or a folder")
        if out.suffix.lower() != ".npz":
            raise DataError(f"{out}: one burst is written to a .npz file")
        check_replaceable(out)  # a folder or a FIFO there: refused before the work
        burst = simulate_burst(frames, seed=args.seed, **options)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_npz(burst, out)
        print(f"wrote {out}: {burst.n_frames} frames {burst.width}x{burst.height}, {burst.cfa}")
        return 0

    source = open_source(src, downscale=args.downscale)
    if out.suffix.lower() == ".npz" or (out.exists() and not out.is_dir()):
        raise DataError(f"{out}: {src} holds {len(source)} bursts; give an output folder")
    names = getattr(source, "clip_names", None)
    root = getattr(source, "root", None)
    used: set[str] = set()
    for i in tqdm(range(len(source)), desc="simulate", unit="burst", disable=args.quiet):
        frames = source.clip(i)
        first = Path(frames[0].label.split("#")[0])
        if names is not None:
            name = names[i]
        else:  # set/photo.png -> set_photo
            rel = first.relative_to(root) if root is not None else Path(first.name)
            name = "_".join(rel.with_suffix("").parts)
            if name in used:  # photo.jpg beside photo.png
                name = "_".join(rel.parts)
        used.add(name)
        burst = simulate_burst(frames, seed=derive_seed(args.seed, name), **options)
        out.mkdir(parents=True, exist_ok=True)  # once a burst is made: bad options leave nothing
        write_npz(burst, out / f"{name}.npz")
    skipped = {k: v for k, v in source.skipped.items() if v}
    note = f" (skipped: {', '.join(f'{v} {k}' for k, v in skipped.items())})" if skipped else ""
    print(f"wrote {len(source)} bursts to {out}{note}")
    return 0
