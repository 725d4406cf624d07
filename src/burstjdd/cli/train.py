"""``burstjdd train``: train the model (or an ablation) on your data, or resume a run.

    burstjdd train --config FILE [--data PATH ...] [-o RUN_DIR] [key=value ...]
    burstjdd train --resume RUN_DIR [--data PATH ...] [key=value ...]

Several GPUs: ``torchrun --nproc_per_node=G -m burstjdd train ...`` (optim.batch_size is the
global batch). Bad configs and data stop with a one-line error before a run directory exists;
a non-finite loss stops the run with one line naming the step, keeping the last checkpoint.
"""

from __future__ import annotations

import argparse

from burstjdd.cli._args import DEVICES, add_old_output, add_quiet

NAME = "train"
HELP = "train the model (or an ablation) on your data; resume a run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. schedule.total_steps=20000 optim.lr_g=2e-4 "
                             "data.val_paths=[kodak/]")
    parser.add_argument("--config", metavar="FILE",
                        help="training config (YAML, e.g. configs/compact_cpu.yaml); required "
                             "for a new run")
    parser.add_argument("--data", action="append", metavar="PATH",
                        help="training source (repeatable), replaces data.paths: a folder of "
                             "images or of clip folders <root>/<clip>/<frame>, a video file or "
                             "folder of videos, stills:FOLDER (sub-folders too), builtin:skimage, "
                             "builtin:dead_leaves (default: data.paths of the config)")
    parser.add_argument("-o", "--output", metavar="RUN_DIR",
                        help="run directory, created as needed; must not exist or be empty, "
                             "and is removed again when the run fails before its first "
                             "checkpoint (default: run.out_dir of the config)")
    add_old_output(parser, "--out")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue a run from its checkpoint with its saved config")
    parser.add_argument("--device", choices=DEVICES, default=None,
                        help="where to train, sets run.device: auto (CUDA, else CPU), cpu, cuda "
                             "or mps (default: run.device of the config)")
    add_quiet(parser, "no progress bar or log lines")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from burstjdd.errors import ConfigError
    from burstjdd.raw.files import require_regular_file
    from burstjdd.train import distributed
    from burstjdd.train.checkpoint import CONFIG_NAME
    from burstjdd.train.config import load_config
    from burstjdd.train.loop import train

    overrides = list(args.overrides) + ([f"run.device={args.device}"] if args.device else [])
    if args.resume:
        if args.config or args.output:
            raise ConfigError("--resume uses the run's own config.yaml and directory; drop "
                              "--config/--output (override keys with key=value)")
        run_dir = Path(args.resume)
        if not (run_dir / CONFIG_NAME).is_file():
            raise ConfigError(f"{run_dir}: not a training run (no {CONFIG_NAME})")
        cfg = load_config(run_dir / CONFIG_NAME, overrides)
    else:
        if not args.config:
            raise ConfigError("give --config FILE for a new run, or --resume RUN_DIR")
        require_regular_file(args.config, ConfigError)
        cfg = load_config(args.config, overrides)
        run_dir = Path(args.output) if args.output else None
    if args.data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, paths=tuple(args.data)))

    ctx = distributed.from_env()
    distributed.init_process_group(ctx, distributed.training_device(cfg.run.device, ctx))
    try:
        result = train(cfg, run_dir, resume=bool(args.resume), ctx=ctx,
                       progress=not args.quiet, echo=not args.quiet)
    finally:
        distributed.shutdown()
    if ctx.is_main:
        psnr = "" if result.val_psnr is None else f", validation PSNR {result.val_psnr:.2f} dB"
        print(f"step {result.step} of {cfg.schedule.total_steps}{psnr}; run: {result.run_dir}")
    return 0
