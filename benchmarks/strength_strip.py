"""The --strength strip of docs/cli.md: the demo burst (astronaut, seed 0, high noise) restored by
one model at strengths 0, 0.5, 1, 1.5 and 2, each panel labelled with its PSNR (the evaluation
protocol's sRGB), then the ground truth; one CPU thread, float32.

    python benchmarks/strength_strip.py [--size 192] [--model compact] [-o PNG]
"""

from __future__ import annotations

import argparse

import torch

from burstjdd.cli.demo import demo_burst, side_by_side
from burstjdd.eval.metrics import protocol_srgb, psnr
from burstjdd.raw.writers import write_png
from burstjdd.restore import Restorer

STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--model", default="compact")
    parser.add_argument("-o", "--output", default="docs/figures/strength_strip.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    burst = demo_burst("astronaut", args.size, seed=0)
    gt = protocol_srgb(burst.gt, burst.wb, burst.ccm)
    panels, labels = [], []
    for strength in STRENGTHS:
        restorer = Restorer.from_pretrained(args.model, device="cpu", strength=strength,
                                            precision="fp32")
        srgb = protocol_srgb(restorer.restore(burst, progress=False), burst.wb, burst.ccm)
        score = psnr(srgb, gt)
        print(f"--strength {strength:g}: PSNR {score:.2f} dB", flush=True)
        panels.append(srgb)
        labels.append(f"--strength {strength:g}\n{score:.2f} dB")
    write_png(side_by_side([*panels, gt], [*labels, "ground truth"]), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
