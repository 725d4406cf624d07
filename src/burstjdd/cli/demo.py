"""``burstjdd demo``: simulate a burst from a bundled photo and restore it (no data needed).

A colour photo bundled with scikit-image becomes a 5-frame raw burst with large camera and
object motion (up to ``MAX_SHIFT`` px between neighbouring frames) at the paper's ``high``
noise level (``simulate_burst``); the default model (``--model`` to choose: a shipped name,
``classical`` or a weights folder) restores it. Written to DIR: ``demo.png`` (side by side,
each panel labelled with its method and PSNR: noisy reference with bilinear demosaic |
unaligned mean of the frames | the best classical pipeline, HDR+ merge + demosaicnet | ours,
named, and marked learned or classical | ground truth) and ``restored-<model>.png``
(``restored-classical.png`` when no learned weights were used); the PSNRs of the evaluation protocol
(docs/protocol.md: sRGB with the burst's metadata, peak 255, float64) are printed.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from burstjdd.raw.burst import RawBurst

NAME = "demo"
HELP = "simulate a burst from a bundled photo and restore it (no data needed)"

MAX_SHIFT = 32.0  # full-res px between neighbouring frames (the default search radius is 48)
N_FRAMES = 5
LABEL_HEIGHT = 30  # px of the label strip above each panel (two lines)
GAP = 4  # px between panels
BEST_CLASSICAL = "best classical: HDR+ merge + demosaicnet"
# Peak memory per pixel of the square, rounded up from one measurement: 1.67 GB peak RSS at
# 384 px with --model compact (11.3 kB/px; 0.62 GB with --model classical). It includes the
# fixed cost of the interpreter and the model, so it overestimates large sizes.
BYTES_PER_PIXEL = 12_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from burstjdd.cli._args import (add_device, add_precision, add_quiet, add_seed, float_in,
                                    int_in, weights_arg)
    from burstjdd.cli.restore import MAX_STRENGTH

    parser.add_argument("-o", "--output", default="burstjdd-demo", metavar="DIR",
                        help="folder for demo.png and restored-<model>.png, created as needed "
                             "(default ./burstjdd-demo)")
    parser.add_argument("--model", default=None, metavar="NAME|PATH", type=weights_arg,
                        help="a shipped name, 'classical' (no learned weights) or a weights "
                             "folder (default: the shipped default model, else classical)")
    add_device(parser)
    add_precision(parser)
    parser.add_argument("--size", type=int_in(64, None, multiple=2), default=384, metavar="PX",
                        help="side of the square burst in pixels, even, >= 64; sizes that need "
                             "more memory than is available are refused (default 384)")
    parser.add_argument("--photo", default="astronaut", metavar="NAME",
                        help="scikit-image photo: astronaut (default), coffee, chelsea, rocket, "
                             "motorcycle")
    add_seed(parser, "random seed")
    parser.add_argument("--strength", type=float_in(0, MAX_STRENGTH), default=1.0, metavar="S",
                        help="denoising strength 0..2 of our model (as restore --strength; "
                             "default 1)")
    add_quiet(parser, "no progress bar")


def demo_burst(photo: str, size: int, seed: int) -> RawBurst:
    """A 5-frame ``high``-noise burst of size × size with large motion from a bundled photo
    (upscaled when it is too small to hold the crop plus the motion margin)."""
    import math

    import torch.nn.functional as F

    from burstjdd.synth.burst import simulate_burst
    from burstjdd.synth.motion import motion_margin
    from burstjdd.synth.sources import SkimageImage

    srgb = SkimageImage(photo)()  # (3, H, W) in [0, 1]
    need = size + 2 * motion_margin(N_FRAMES, N_FRAMES // 2, MAX_SHIFT)
    if min(srgb.shape[-2:]) < need:
        scale = need / min(srgb.shape[-2:])
        out = [math.ceil(s * scale) for s in srgb.shape[-2:]]
        srgb = F.interpolate(srgb[None], size=out, mode="bicubic", align_corners=False)[0]
        srgb = srgb.clamp(0.0, 1.0)
    return simulate_burst(srgb, n_frames=N_FRAMES, noise="high", max_shift=MAX_SHIFT,
                          n_objects=2, crop=(size, size), seed=seed)


def side_by_side(panels: list[Tensor], labels: list[str]) -> Tensor:
    """Panels (3, H, W) sRGB in [0, 1] → one labelled (3, LABEL_HEIGHT + H, k·W + gaps) image."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw, ImageFont

    h, w = panels[0].shape[-2:]
    canvas = Image.new("RGB", (len(panels) * (w + GAP) - GAP, h + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for k, (panel, label) in enumerate(zip(panels, labels)):
        u8 = (panel.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        x = k * (w + GAP)
        canvas.paste(Image.fromarray(u8), (x, LABEL_HEIGHT))
        draw.multiline_text((x + 2, 2), label, fill="black", font=font, spacing=2)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def check_size(size: int) -> None:
    """ConfigError, before anything is allocated, for a size that is odd, too small or needs
    more memory than is available (estimate: BYTES_PER_PIXEL per pixel of the square)."""
    from burstjdd.errors import ConfigError
    from burstjdd.limits import available_memory

    if size < 64 or size % 2:  # the CLI's argument type refuses these already
        raise ConfigError(f"--size must be an even number of pixels >= 64, got {size}")
    need, free = BYTES_PER_PIXEL * size * size, available_memory()
    if free is not None and need > free:
        raise ConfigError(f"--size {size} needs about {need / 2**30:.1f} GiB of memory, only "
                          f"{free / 2**30:.1f} GiB is available; choose a smaller --size")


def run(args: argparse.Namespace) -> int:
    import time

    from burstjdd.eval.baselines import bilinear, hdrplus_dmn, temporal_mean
    from burstjdd.eval.metrics import protocol_srgb, psnr
    from burstjdd.eval.outputs import NewPaths, require_folder
    from burstjdd.models.classical import ClassicalJDDB
    from burstjdd.raw.files import check_replaceable
    from burstjdd.raw.writers import write_image, write_png
    from burstjdd.restore import Restorer

    check_size(args.size)
    out = require_folder(args.output)  # for demo.png and restored-<model>.png
    restorer = Restorer.from_pretrained(args.model, device=args.device,  # fails fast
                                        strength=args.strength, precision=args.precision)
    learned = not isinstance(restorer.model, ClassicalJDDB)
    restored_name = f"restored-{_file_label(restorer.name) if learned else 'classical'}.png"
    for name in ("demo.png", restored_name):  # a folder or a FIFO there: refused before work
        check_replaceable(out / name)
    method = (f"ours: {restorer.name} (learned)" if learned
              else "ours: classical (no learned weights)")
    if not learned:
        print("note: no learned weights are used; the restored panel is the classical pipeline "
              "(--model NAME|DIR for trained weights)")
    burst = demo_burst(args.photo, args.size, args.seed)
    new = NewPaths()  # a failure (a full disk) removes the folders and files this run made
    new.note_folder(out)
    new.note(out / "demo.png", out / restored_name)
    with new.removed_on_failure():
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        restored = restorer.restore(burst, progress=not args.quiet)
        seconds = time.perf_counter() - start

        images = {
            "noisy reference (bilinear)": bilinear(burst),
            "unaligned mean": temporal_mean(burst),
            BEST_CLASSICAL: hdrplus_dmn(burst),
            method: restored,
            "ground truth": burst.gt,
        }
        srgb = {name: protocol_srgb(x, burst.wb, burst.ccm) for name, x in images.items()}
        gt = srgb["ground truth"]
        scores = {name: psnr(x, gt) for name, x in srgb.items() if name != "ground truth"}
        labels = [f"{name}\n{scores[name]:.2f} dB" if name in scores else name for name in srgb]
        write_png(side_by_side(list(srgb.values()), labels), out / "demo.png")
        write_image(restored, out / restored_name, burst=burst)

    print(f"{args.photo}, {args.size}x{args.size}, {burst.n_frames} frames, up to "
          f"{MAX_SHIFT:g} px motion between frames, high noise; {method} took {seconds:.1f} s "
          f"on {restorer.device.type}")
    for name, value in scores.items():
        print(f"  {name:<40} PSNR {value:6.2f} dB")
    print(f"wrote {out / 'demo.png'} and {out / restored_name}")
    return 0


def _file_label(name: str) -> str:
    """A file-name-safe label of a model name or path: its last component, [A-Za-z0-9._-]."""
    import re
    from pathlib import Path

    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name) or "model"
