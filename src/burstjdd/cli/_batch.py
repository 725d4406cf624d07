"""``burstjdd restore ROOT --batch -o OUT_DIR``: every burst under ROOT with one model load,
shared among the processes of a torchrun launch.

Bursts: the entries of ROOT, in name order, hidden ones (name starting with ".") left out:

* each ``.npz`` file, a burst file, named by its stem;
* each sub-folder that holds raw files (:data:`~burstjdd.raw.camera.RAW_SUFFIXES`), named by
  the folder, restored as ``burstjdd restore FOLDER`` would (every raw file in it).

Nothing deeper is listed (ROOT and its sub-folders only), so a symlink loop cannot make the
listing run forever; OUT_DIR is never taken as a burst, even inside ROOT.

Outputs: ``OUT_DIR/<name>.<format>``. One that exists is skipped, so a stopped run continues
where it was; each is written atomically, so a stopped run leaves no partial file. A burst that
fails (a bad file, an output path that is a folder, running out of memory) is reported and the
next one is restored; the exit status is 2 when any failed.

Processes: under torchrun (``WORLD_SIZE`` > 1; :func:`~burstjdd.train.distributed.from_env`),
rank r of W restores the bursts i with i mod W = r of the listing: none twice, none lost, with
no communication between the processes (ROOT and OUT_DIR must be the same folders for every
rank, e.g. on a shared file system across machines). On CUDA each process uses the GPU of its
local rank.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from burstjdd.cli import _one_line, _out_of_memory
from burstjdd.errors import BurstFormatError, BurstJDDError, ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from burstjdd.raw.burst import RawBurst
    from burstjdd.raw.noise import NoiseLevel
    from burstjdd.restore import Restorer
    from burstjdd.train.distributed import DistContext

FORMATS = ("png", "tif", "npy", "dng")  # --format, the outputs' extension
DEFAULT_FORMAT = "png"


@dataclass(frozen=True)
class Job:
    """One burst of a batch: its ``name`` (the output's stem) and ``source`` (a ``.npz`` file
    or a folder of raw files)."""

    name: str
    source: Path


@dataclass
class Summary:
    """What a batch did: bursts restored, skipped (output already there) and failed, with the
    failures' (name, one-line reason)."""

    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        return f"done {self.done}, skipped {self.skipped}, failed {len(self.failed)}"


def _holds_raw_files(folder: Path) -> bool:
    """Whether ``folder`` holds a raw file (the rule of ``read_burst`` for a folder); a folder
    that cannot be listed counts as one, so that restoring it reports why."""
    from burstjdd.raw.camera import RAW_SUFFIXES

    try:
        return any(not p.name.startswith(".") and p.suffix.lower() in RAW_SUFFIXES
                   and p.is_file() for p in folder.iterdir())
    except OSError:
        return True


def find_bursts(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[Job]:
    """The bursts under ``root`` (module docstring), in name order; ``exclude``: a folder that
    is never a burst (the output folder). ConfigError when ``root`` is not a folder, holds no
    burst, or two bursts would write the same output (``a.npz`` and ``a/``)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: --batch needs a folder of bursts (sub-folders of raw files "
                          f"or .npz files)")
    skip = Path(exclude).resolve() if exclude is not None else None
    jobs: list[Job] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if entry.resolve() != skip and _holds_raw_files(entry):
                jobs.append(Job(entry.name, entry))
        elif entry.suffix.lower() == ".npz":  # special files too: restoring one says why not
            jobs.append(Job(entry.stem, entry))
    if not jobs:
        hint = " (it holds raw files itself: restore it without --batch)" \
            if _holds_raw_files(root) else ""
        raise ConfigError(f"{root}: no bursts found: --batch restores each sub-folder of raw "
                          f"files and each .npz file{hint}")
    seen: dict[str, Job] = {}
    for job in jobs:
        if job.name in seen:
            raise ConfigError(f"{root}: bursts {seen[job.name].source.name} and "
                              f"{job.source.name} would write the same output; rename one")
        seen[job.name] = job
    return jobs


def rank_share(jobs: Sequence[Job], ctx: DistContext) -> list[Job]:
    """The jobs of rank ``ctx.rank``: those at positions i with i mod world_size = rank."""
    return list(jobs[ctx.rank :: ctx.world_size])


def rank_device(requested: str, ctx: DistContext) -> str:
    """The device of this process: ``requested``, except that a multi-process run on CUDA
    ("auto" or "cuda" where CUDA works) uses ``cuda:<local rank>``, one GPU per process."""
    import torch

    if not ctx.distributed or requested not in ("auto", "cuda") or \
            not torch.cuda.is_available():
        return requested
    count = torch.cuda.device_count()
    if ctx.local_rank >= count:
        raise ConfigError(f"local rank {ctx.local_rank} has no GPU ({count} visible): start at "
                          f"most {count} processes per machine (torchrun --nproc_per_node)")
    return f"cuda:{ctx.local_rank}"


def prepare_output_folder(out_dir: Path) -> None:
    """Create ``out_dir`` as needed and check that files can be written in it (before any
    burst is restored); ConfigError/PermissionError naming it otherwise."""
    import tempfile

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out_dir}: cannot create the output folder "
                          f"({exc.strerror or type(exc).__name__})") from None
    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".burstjdd.", suffix=".probe"):
            pass
    except OSError as exc:
        raise PermissionError(f"{out_dir}: cannot write to it ({exc.strerror})") from None


def restore_one(restorer: Restorer, inputs: Any, output: Path, *, space: str,
                ref: int | str | None, noise: NoiseLevel | None,
                progress: bool) -> tuple[RawBurst, Tensor]:
    """Read a burst (``read_burst(inputs, ref=ref)``, its noise level replaced by ``noise``
    when given, else the stored or estimated one), restore it and write it to ``output``;
    returns (burst, image)."""
    from burstjdd.raw.io import read_burst
    from burstjdd.raw.writers import write_image

    burst = read_burst(inputs, ref=ref)
    if noise is None:  # estimated here, so that a failure can say how to go on
        try:
            noise = burst.noise_level()
        except BurstFormatError as exc:
            raise BurstFormatError(f"{exc}; give the level with --noise low, high or "
                                   "SHOT:READ") from None
    burst = dataclasses.replace(burst, noise=noise)
    image = restorer.restore(burst, progress=progress)
    write_image(image, output, space=space, burst=burst)
    return burst, image


def restore_batch(restorer: Restorer, jobs: Sequence[Job], out_dir: Path, ext: str, *,
                  space: str = "srgb", ref: int | str | None = None,
                  noise: NoiseLevel | None = None, progress: bool = True,
                  desc: str = "bursts") -> Summary:
    """Restore ``jobs`` into ``out_dir/<name>.<ext>`` (skipping outputs that exist), going on
    after a failure; each failure is kept with its one-line reason (bad input, OSError, out of
    memory); anything else is a bug and propagates, as does KeyboardInterrupt."""
    from tqdm import tqdm

    from burstjdd.raw.files import check_replaceable

    summary = Summary()
    for job in tqdm(jobs, desc=desc, unit="burst", disable=not progress):
        output = out_dir / f"{job.name}.{ext}"
        if os.path.lexists(output):
            try:
                check_replaceable(output)  # a folder or a FIFO there is a failure, not done
            except OSError as exc:
                summary.failed.append((job.name, str(exc)))
            else:
                summary.skipped += 1
            continue
        try:
            restore_one(restorer, job.source, output, space=space, ref=ref, noise=noise,
                        progress=False)
        except (BurstJDDError, OSError, MemoryError, RuntimeError) as exc:
            if isinstance(exc, (MemoryError, RuntimeError)) and not _out_of_memory(exc):
                raise
            reason = _one_line(str(exc), 200) or type(exc).__name__
            summary.failed.append((job.name, reason))
        else:
            summary.done += 1
    return summary


def run_batch(args: argparse.Namespace) -> int:
    """``restore --batch``: list the bursts of the one INPUT folder, restore this process's
    share with one model, print the summary (and each failure on stderr); 2 if any failed."""
    import sys

    from burstjdd.eval.outputs import require_folder
    from burstjdd.raw.noise import parse_noise
    from burstjdd.restore import Restorer
    from burstjdd.train.distributed import from_env

    if len(args.inputs) != 1:
        raise ConfigError(f"--batch takes one folder of bursts, got {len(args.inputs)} inputs")
    fmt = args.format or DEFAULT_FORMAT
    if fmt == "png" and args.space == "linear":
        raise ConfigError("--format png is 8-bit sRGB only; use tif, npy or dng with "
                          "--space linear")
    out_dir = require_folder(args.output)
    ctx = from_env()
    jobs = rank_share(find_bursts(args.inputs[0], exclude=out_dir), ctx)
    noise = parse_noise(args.noise) if args.noise is not None else None
    restorer = Restorer.from_pretrained(args.model, device=rank_device(args.device, ctx),
                                        tile=args.tile, search_radius=args.search_radius,
                                        strength=args.strength, precision=args.precision,
                                        prealign=args.prealign)
    prepare_output_folder(out_dir)
    where = f" (rank {ctx.rank} of {ctx.world_size})" if ctx.distributed else ""
    summary = restore_batch(restorer, jobs, out_dir, fmt, space=args.space,
                            ref=args.ref, noise=noise, progress=not args.quiet,
                            desc=f"bursts{where}")
    print(f"{summary.line()}{where}; outputs in {out_dir}")
    for name, reason in summary.failed:
        print(f"burstjdd restore: error: burst {name}: {reason}", file=sys.stderr)
    return 2 if summary.failed else 0
