"""``burstjdd demo``: simulate a burst from a bundled photo and restore it (no data needed).

A colour photo bundled with scikit-image becomes a 5-frame raw burst with large camera and
object motion (up to ``MAX_SHIFT`` px between neighbouring frames) at the paper's ``high``
noise level (``simulate_burst``); the default weights (or ``--model``) restore it. Written to
DIR: ``demo.png`` (side by side, labelled: noisy reference with bilinear demosaic | unaligned
mean of the frames | classical HDR+-style burst merge | ours | ground truth) and
``restored.png``; the PSNRs of the protocol (PROTOCOL.md: sRGB with the burst's metadata, peak
255, float64) are printed.

While this version ships no learned weights, the demo (without ``--model``) says so and leaves
out the "ours" panel, so that it still runs with no data and no download.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from burstjdd.raw.io import RawBurst

NAME = "demo"
HELP = "simulate a burst from a bundled photo and restore it (no data needed)"

MAX_SHIFT = 32.0  # full-res px between neighbouring frames (the default search radius is 48)
N_FRAMES = 5
LABEL_HEIGHT = 30  # px of the label strip above each panel (two lines)
GAP = 4  # px between panels
CLASSICAL = "HDR+-style merge (classical)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="burstjdd-demo", metavar="DIR",
                        help="folder for demo.png and restored.png (default ./burstjdd-demo)")
    parser.add_argument("--model", default=None, metavar="NAME|PATH",
                        help="weights directory or shipped name (default: the shipped default "
                             "weights)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="where to run (default auto: CUDA, else MPS, else CPU)")
    parser.add_argument("--size", type=int, default=384, metavar="PX",
                        help="side of the square burst in pixels, even (default 384: about "
                             "30 s with the compact model on 2 CPU cores)")
    parser.add_argument("--photo", default="astronaut", metavar="NAME",
                        help="scikit-image photo: astronaut (default), coffee, chelsea, rocket, "
                             "motorcycle")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")


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


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from burstjdd.errors import ConfigError
    from burstjdd.eval.baselines import bilinear, hdrplus, temporal_mean
    from burstjdd.eval.metrics import protocol_srgb, psnr
    from burstjdd.models import hub
    from burstjdd.raw.io import write_image, write_png
    from burstjdd.restore import Restorer

    if args.size < 32 or args.size % 2:
        raise ConfigError(f"--size must be an even number of pixels >= 32, got {args.size}")
    out = Path(args.output)
    if args.model is None and not hub.shipped_weights():
        restorer, method = None, CLASSICAL
        print("note: this version ships no learned weights yet; the demo shows the classical "
              "HDR+-style merge only (use --model DIR for trained weights)")
    else:
        restorer = Restorer.from_pretrained(args.model, device=args.device)  # fails fast
        method = "ours"
    out.mkdir(parents=True, exist_ok=True)
    burst = demo_burst(args.photo, args.size, args.seed)
    start = time.perf_counter()
    restored = hdrplus(burst) if restorer is None else restorer.restore(burst)
    seconds = time.perf_counter() - start
    classical = restored if restorer is None else hdrplus(burst)

    images = {
        "noisy reference (bilinear)": bilinear(burst),
        "unaligned mean": temporal_mean(burst),
        CLASSICAL: classical,
        **({method: restored} if restorer is not None else {}),
        "ground truth": burst.gt,
    }
    srgb = {name: protocol_srgb(x, burst.wb, burst.ccm) for name, x in images.items()}
    gt = srgb["ground truth"]
    scores = {name: psnr(x, gt) for name, x in srgb.items() if name != "ground truth"}
    labels = [f"{name}\n{scores[name]:.2f} dB" if name in scores else name for name in srgb]
    write_png(side_by_side(list(srgb.values()), labels), out / "demo.png")
    write_image(restored, out / "restored.png", burst=burst)

    where = "cpu" if restorer is None else restorer.device.type
    print(f"{args.photo}, {args.size}x{args.size}, {burst.n_frames} frames, up to "
          f"{MAX_SHIFT:g} px motion between frames, high noise; {method} took {seconds:.1f} s "
          f"on {where}")
    for name, value in scores.items():
        print(f"  {name:<28} PSNR {value:6.2f} dB")
    print(f"wrote {out / 'demo.png'} and {out / 'restored.png'}")
    return 0
