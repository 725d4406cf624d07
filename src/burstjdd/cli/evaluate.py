"""``burstjdd evaluate --data ROOT``: paper tables (docs/protocol.md, benchmark 1) and the
large-shift stress curve (benchmark 2) for the baselines and our model, all on the same bursts."""

from __future__ import annotations

import argparse
from pathlib import Path

from burstjdd.cli._args import (
    add_device,
    add_old_output,
    add_quiet,
    add_seed,
    float_in,
    int_in,
    weights_arg,
)
from burstjdd.cli.simulate import MAX_SHIFT

NAME = "evaluate"
# burstjdd.eval.baselines.BASELINES, named here so that --help stays fast (no torch import);
# tests/test_cli_errors.py checks that the two agree.
BASELINE_NAMES = ("bilinear", "malvar", "menon", "dmn", "mean", "hdrplus", "hdrplus_dmn")
HELP = "evaluate methods on clips or stills (paper tables, stress curve)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="ROOT",
                        help="clips: <ROOT>/<clip>/<frame> (REDS layout); stills: a folder of "
                             "images (sub-folders are image groups)")
    parser.add_argument("--layout", choices=("clips", "stills"), default=None,
                        help="clips: paper-protocol bursts of every centre frame; stills: one "
                             "synthetic large-shift burst per image (default clips; stills "
                             "with --stress)")
    parser.add_argument("--noise", default=None, metavar="LEVELS",
                        help="comma-separated noise levels: low, high or SHOT:READ (one level "
                             "may also be written SHOT,READ); default low,high, the stress "
                             "curve: high")
    parser.add_argument("--methods", default=None, metavar="A,B,...",
                        help=f"baselines to run ({', '.join(BASELINE_NAMES)}) "
                             "and/or 'ours' (default: every available baseline, and our model "
                             "when --model is given or weights are shipped)")
    parser.add_argument("--model", type=weights_arg, default=None, metavar="NAME|PATH",
                        help="weights of our model (a directory or a shipped name; default: the "
                             "shipped weights, when there are any)")
    parser.add_argument("--search-radius", type=float_in(0), default=None, metavar="PX",
                        help="our model's coarse-alignment search radius, full-res pixels "
                             "(default: by image size, docs/protocol.md)")
    parser.add_argument("--no-prealign", dest="prealign", action="store_false",
                        help="our model without the global pre-alignment before its coarse "
                             "alignment (docs/method.md §7.1)")
    add_device(parser, what=" (our model)")
    parser.add_argument("--max-shift", type=float_in(0, MAX_SHIFT), default=64.0, metavar="PX",
                        help=f"stills: largest camera shift between neighbouring frames, px "
                             f"0..{MAX_SHIFT:g} (default 64)")
    parser.add_argument("--max-bursts", type=int_in(1), default=None, metavar="N",
                        help="at most N bursts per clip (per image group; with --stress, N "
                             "images), evenly spread over it, to keep runs short (default all)")
    parser.add_argument("--stress", action="store_true",
                        help="large-shift stress curve: PSNR vs constant global shift between "
                             "neighbouring frames on stills (implies --layout stills)")
    parser.add_argument("--shifts", default=None, metavar="PX,PX,...",
                        help=f"shifts of the stress curve, px 0..{MAX_SHIFT:g} (implies "
                             "--stress; default 0,16,32,64,96,128)")
    add_seed(parser, "seed of the synthetic bursts of stills")
    parser.add_argument("-o", "--output", default="eval_results", metavar="DIR",
                        help="output folder (created as needed; its files are replaced): "
                             "results.json/.md (stress.json/.md/_*.png), the per-burst cache "
                             "cache.jsonl, figures/; a failed run removes what it created, a "
                             "cache it created too, except on Ctrl-C (default eval_results)")
    add_old_output(parser, "--out")
    parser.add_argument("--figures", action="store_true",
                        help="write side-by-side crops (methods x one region, zoom inset, "
                             "PSNR) of the first computed burst of each clip to DIR/figures")
    add_quiet(parser, old="--no-progress")


def _float(text: str, what: str) -> float:
    from burstjdd.errors import ConfigError

    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"bad {what} {text!r}: expected a number") from None


def _noise_levels(text: str, parse_list) -> list[str]:
    """The levels of --noise: a comma-separated list of low, high or SHOT:READ; a value of just
    two numbers is the one level SHOT,READ (the spelling ``restore --noise`` also reads)."""
    items = parse_list(text, "noise")
    if len(items) == 2 and all(_is_number(i) for i in items):
        return [",".join(items)]
    return items


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    from burstjdd.eval.outputs import NewPaths, require_folder

    out = require_folder(args.output)
    cache_path = out / "cache.jsonl"
    # Nothing left behind: what this run creates is removed if it fails (docs/cli.md); a cache
    # it created stays on Ctrl-C only, so that the next run continues from it.
    new = NewPaths()
    new.note_folder(out)
    new.note(cache_path)
    with new.removed_on_failure(keep_on_interrupt=(cache_path,)):
        return _evaluate(args, out, cache_path, new)


def _evaluate(args: argparse.Namespace, out: Path, cache_path: Path, new) -> int:
    """The work of :func:`run`; every path it creates is noted in ``new`` (a NewPaths) first."""
    from burstjdd.errors import ConfigError
    from burstjdd.eval import evaluate as ev

    if args.max_bursts is not None and args.max_bursts < 1:
        raise ConfigError(f"--max-bursts must be >= 1, got {args.max_bursts}")
    stress = args.stress or args.shifts is not None
    if stress and args.layout == "clips":
        raise ConfigError("the stress curve runs on stills: use --layout stills")
    layout = args.layout or ("stills" if stress else "clips")
    default_noise = "high" if stress else "low,high"
    noises = _noise_levels(args.noise or default_noise, ev.parse_list)
    names = None if args.methods is None else ev.parse_list(args.methods, "method")
    methods = ev.resolve_methods(names, model=args.model, search_radius=args.search_radius,
                                 device=args.device, prealign=args.prealign)
    cache = ev.ResultCache(cache_path)
    progress = not args.quiet
    print(f"methods: {', '.join(m.name for m in methods)}")

    if stress:
        default_shifts = ",".join(str(s) for s in ev.DEFAULT_SHIFTS)
        shifts = [_float(s, "shift") for s in ev.parse_list(args.shifts or default_shifts,
                                                            "shift")]
        for noise in noises:
            folder = out / ev.safe_name(noise) if len(noises) > 1 else out
            new.note_folder(folder)
            new.note(*(folder / name for name in (f"stress_{ev.safe_name(noise)}.png",
                                                   "stress.json", "stress.md")))
            summary = ev.stress_curve(args.data, methods, shifts, noise,
                                      max_images=args.max_bursts, seed=args.seed, cache=cache,
                                      out=folder, progress=progress)
            name = next(iter(summary))
            print(ev.format_stress_table(summary, name))
        print(f"wrote {out}")
        return 0

    results, tables = [], []
    for noise in noises:
        if layout == "clips":
            specs = ev.clip_bursts(args.data, noise, max_bursts=args.max_bursts)
        else:
            specs = ev.still_bursts(args.data, noise, max_shift=args.max_shift,
                                    max_bursts=args.max_bursts, seed=args.seed)
        on_outputs = _figure_writer(out / "figures", new) if args.figures else None
        results += ev.evaluate(specs, methods, cache, progress=progress, on_outputs=on_outputs)
        summary = ev.summarise(results)
        tables.append(ev.format_table(summary, specs[0].noise))
        print(tables[-1], flush=True)
    config = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    new.note(out / "results.json", out / "results.md")
    json_path, md_path = ev.write_results(out, ev.summarise(results), results,
                                          "\n\n".join(tables), config)
    print(f"wrote {json_path} and {md_path}")
    return 0


def _figure_writer(folder: Path, new):
    """on_outputs callback: a crop figure for the first computed burst of each (clip, noise),
    ``folder`` and each figure noted in ``new`` (a NewPaths) before they are written."""
    from burstjdd.eval.evaluate import safe_name, score
    from burstjdd.eval.figures import crop_figure
    from burstjdd.eval.metrics import protocol_srgb

    done: set[tuple[str, str]] = set()
    new.note_folder(folder)

    def write(spec, burst, outputs) -> None:
        if (spec.group, spec.noise) in done:
            return
        done.add((spec.group, spec.noise))
        images = {"ground truth": protocol_srgb(burst.gt.float(), burst.wb, burst.ccm)}
        psnrs = {}
        for name, out in outputs.items():
            images[name] = protocol_srgb(out.detach().float().cpu(), burst.wb, burst.ccm)
            psnrs[name] = score(out, burst)[0]
        path = folder / f"{safe_name(spec.burst_id)}_{safe_name(spec.noise)}.png"
        new.note(path)
        print(f"figure: {crop_figure(images, path, psnrs=psnrs)}")

    return write
