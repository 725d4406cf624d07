"""Where a whole-image restore spends its time, by stage (docs/performance.md).

    python benchmarks/profile_restore.py [--model compact|classical] [--size 4000x3000]
                                         [--frames 5] [--threads N] [--json FILE]

Runs ``Restorer.restore`` once on a synthetic burst (a smooth random texture moved by a few
pixels per frame, high noise) with the shipped weights, each stage of the pipeline wrapped in
``torch.profiler.record_function`` and a wall-clock timer. Stages nest (the HDR+ tile search
runs inside the merge, which runs inside the residual base): the table gives each stage's own
time, without the stages inside it, so the rows add up to the total. Works on any version of
the package: a stage whose function is missing is simply not reported, so the same script
profiles an older checkout (``PYTHONPATH=OLD/src python benchmarks/profile_restore.py``).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import time

import torch
import torch.nn.functional as F

# (module, attribute, stage): functions replaced by a timed wrapper, innermost stages included
FUNCTIONS = (
    ("burstjdd.restore", "_ca_features", "DSNet features"),
    ("burstjdd.restore", "_aligned_tiles", "coarse alignment"),
    ("burstjdd.restore", "estimate_global_motion", "global pre-alignment"),
    ("burstjdd.restore", "shift_frames", "global pre-alignment"),
    ("burstjdd.models.jddb", "residual_base", "base: other (demosaic prep, blur)"),
    ("burstjdd.models.classical", "residual_base", "base: other (demosaic prep, blur)"),
    ("burstjdd.raw.merge", "hdrplus_merge", "base: HDR+ merge (FFT Wiener)"),
    ("burstjdd.raw.merge", "align_tiles", "base: HDR+ tile search"),
    ("burstjdd.raw.merge", "denoise_raw", "base: non-local means"),
    ("burstjdd.models.demosaicnet", "demosaic", "base: demosaicnet"),
)
# (attribute of the model, stage): sub-networks whose forward is timed
MODULES = (
    ("feature_extract", "feature extraction"),
    ("feature_blocks", "feature extraction"),
    ("align", "refined alignment (PCD + deformable conv)"),
    ("fusion", "GRU fusion"),
    ("feature_up", "UNet"),
    ("unet", "UNet"),
)


class StageClock:
    """Exclusive wall time per stage: a stage's time minus the stages that ran inside it."""

    def __init__(self) -> None:
        self.own: dict[str, float] = {}
        self._stack: list[list] = []  # [stage, start, time of nested stages]

    def wrap(self, stage: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._stack.append([stage, time.perf_counter(), 0.0])
            try:
                with torch.profiler.record_function(stage):
                    return fn(*args, **kwargs)
            finally:
                name, start, nested = self._stack.pop()
                spent = time.perf_counter() - start
                self.own[name] = self.own.get(name, 0.0) + spent - nested
                if self._stack:
                    self._stack[-1][2] += spent
        return timed


def instrument(clock: StageClock, model: torch.nn.Module) -> None:
    """Wrap every stage that exists in this version of the package and in ``model``."""
    for module_name, attr, stage in FUNCTIONS:
        module = importlib.import_module(module_name)
        if hasattr(module, attr):
            setattr(module, attr, clock.wrap(stage, getattr(module, attr)))
    for attr, stage in MODULES:
        part = getattr(model, attr, None)
        if part is None:
            continue
        for sub in part if isinstance(part, torch.nn.ModuleList) else [part]:
            sub.forward = clock.wrap(stage, sub.forward)


def synthetic_burst(width: int, height: int, frames: int):
    """A smooth texture moved by (2t, 3t) px in frame t, RGGB, high noise, stored level."""
    from burstjdd.raw.burst import RawBurst
    from burstjdd.raw.cfa import mosaic
    from burstjdd.raw.noise import NoiseLevel, add_noise

    g = torch.Generator().manual_seed(0)
    pad = 4 * frames
    texture = torch.rand(1, 3, (height + pad) // 16 + 2, (width + pad) // 16 + 2, generator=g)
    scene = F.interpolate(texture, size=(height + pad, width + pad), mode="bilinear",
                          align_corners=False)[0]
    level = NoiseLevel(6.4e-3, 2e-2)
    raw = torch.stack([add_noise(mosaic(scene[:, 2 * t : 2 * t + height, 3 * t : 3 * t + width],
                                        "RGGB"), level.shot, level.read, g)
                       for t in range(frames)])
    return RawBurst(raw=raw, cfa="RGGB", wb=torch.ones(3), ccm=torch.eye(3), noise=level)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="compact")
    parser.add_argument("--size", default="4000x3000", metavar="WxH")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", default=None, help="also write the table there")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import burstjdd
    from burstjdd.restore import Restorer

    width, height = (int(v) for v in args.size.lower().split("x"))
    burst = synthetic_burst(width, height, args.frames)
    restorer = Restorer.from_pretrained(args.model, device="cpu")
    clock = StageClock()
    instrument(clock, restorer.model)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        start = time.perf_counter()  # inside: the profiler's own start and stop are left out
        restorer.restore(burst, progress=False)
        total = time.perf_counter() - start
    clock.own["packing, tiling, blending, other"] = total - sum(clock.own.values())
    try:
        from burstjdd.hardware import describe_cpu
        cpu = describe_cpu()
    except ImportError:  # versions before burstjdd.hardware
        cpu = f"{torch.get_num_threads()} torch threads"
    print(f"burstjdd {burstjdd.__version__} ({burstjdd.__file__}), {args.model}, "
          f"{args.frames}x{width}x{height}, {cpu}; {restorer!r}")
    print("| stage | seconds | share |\n|---|---|---|")
    for stage, seconds in sorted(clock.own.items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {seconds:.1f} | {100 * seconds / total:.0f}% |")
    print(f"| **total** | **{total:.1f}** | |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"total_s": total, "stages": clock.own, "cpu": cpu}, f, indent=1)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
