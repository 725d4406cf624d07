"""Training checkpoints: everything an exact resume needs, written atomically.

A checkpoint (``<run>/checkpoint.pt``, the latest one; only rank 0 writes it) holds

* ``step``: optimiser updates done; the data position follows from it (the samples of step s are
  fixed by (seed, s), :func:`burstjdd.train.distributed.rank_indices`), saved as ``data`` too;
* ``model``: the state dict of the bare model (never the DDP wrapper);
* ``optimizer``, ``scheduler``: their state dicts (Adam moments and step counts, lr position);
* ``rng``: the global torch (and CUDA), NumPy and Python ``random`` states of rank 0. Library code
  draws from explicit generators only, so these matter for user code and future layers
  (dropout); on resume every rank gets rank 0's states;
* ``wall_time`` (seconds of training over all sessions) and ``val_psnr`` (last validation).

The file is a ``torch.save`` archive of plain containers and tensors and is read back with
``torch.load(weights_only=True)``: no arbitrary pickle is executed (NumPy's state is stored as a
tensor and plain numbers for that reason). Released weights are NOT checkpoints: ``burstjdd
export`` writes them with :func:`burstjdd.models.hub.save_pretrained` (safetensors).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from burstjdd.errors import WeightsError
from burstjdd.limits import parse_json
from burstjdd.models.hub import model_from_state, save_pretrained
from burstjdd.models.official import load_weights_only
from burstjdd.raw.files import atomic_output, require_regular_file
from burstjdd.train.config import TrainConfig, load_config

FORMAT = "burstjdd-checkpoint"
FORMAT_VERSION = 1

# the files of a run directory (only rank 0 writes them)
CHECKPOINT_NAME = "checkpoint.pt"  # the latest checkpoint
BEST_CHECKPOINT_NAME = "checkpoint_best.pt"  # the best on the validation set (what export takes)
CONFIG_NAME = "config.yaml"  # the resolved TrainConfig
SCALARS_NAME = "scalars.csv"  # one row per log step (and per validation)
LOG_NAME = "train.log"  # human-readable log
RUN_INFO_NAME = "run.json"  # sessions: hardware, steps, wall time (read by ``export``)

__all__ = [
    "BEST_CHECKPOINT_NAME", "CHECKPOINT_NAME", "CONFIG_NAME", "Checkpoint", "LOG_NAME",
    "RUN_INFO_NAME", "SCALARS_NAME",
    "capture_rng", "data_label", "export_run", "load_checkpoint", "model_card", "read_run_info",
    "restore_rng",
    "save_checkpoint", "write_run_info",
]


@dataclass(frozen=True)
class Checkpoint:
    """The content of a checkpoint file (state dicts as torch returns them)."""

    step: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    data: dict[str, Any]
    wall_time: float = 0.0
    val_psnr: float | None = None


def capture_rng() -> dict[str, Any]:
    """The global RNG states: torch CPU (and every CUDA device), NumPy legacy, Python random."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global RNG states saved by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["gauss"]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


# What torch's archive writer says when a write comes up short (its C++ checks; a full disk is
# the usual cause): "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598",
# "PytorchStreamWriter failed writing file ...", "... 49152 requested and 16352 written".
_WRITER_FAILURES = ("inline_container.cc", "PytorchStreamWriter", "requested and")


@contextlib.contextmanager
def _torch_write_errors(path: Path) -> Iterator[None]:
    """Turn torch's failure to write the archive ``path`` (a RuntimeError of C++ file positions,
    above; Python's own OSError for a full disk is named by :func:`~burstjdd.raw.files.
    atomic_output`) into one OSError that names the file and the space left on its disk."""
    try:
        yield
    except RuntimeError as exc:
        if not any(mark in str(exc) for mark in _WRITER_FAILURES):
            raise
        raise OSError(f"cannot write {path}: no space left on device? (torch could not write "
                      f"all of it; {_free(path)})") from None


def _free(path: Path) -> str:
    """"N MiB free on that disk" for the disk of ``path``'s folder (or "free space unknown")."""
    try:
        return f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free on that disk"
    except OSError:
        return "free space unknown"


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> Path:
    """Write ``ckpt`` to ``path`` atomically (a crash leaves the previous file intact); a full
    disk is an OSError naming ``path`` (:func:`_torch_write_errors`)."""
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **ckpt.__dict__}
    with _torch_write_errors(path), atomic_output(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    WeightsError naming the file when it is missing, not a checkpoint, or of another version.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no checkpoint (the run has not saved one yet?)")
    try:
        payload = load_weights_only(path)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise WeightsError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a burstjdd training checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{path}: checkpoint version {payload.get('format_version')!r}, "
                           f"this burstjdd reads version {FORMAT_VERSION}")
    try:
        return Checkpoint(**{k: v for k, v in payload.items()
                             if k not in ("format", "format_version")})
    except TypeError as exc:
        raise WeightsError(f"{path}: malformed checkpoint ({exc})") from None


# ---------------------------------------------------------------------- run information


def read_run_info(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``run.json`` of a run directory ({} when there is none), read with the limits of
    :func:`~burstjdd.limits.parse_json`; WeightsError if it is a special file, corrupt, or its
    fields are not what ``train`` writes (:func:`_check_run_info`)."""
    path = Path(run_dir) / RUN_INFO_NAME
    require_regular_file(path, WeightsError)  # a FIFO would block the read
    if not path.is_file():
        return {}
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: unreadable run information ({exc.strerror})") from None
    info = parse_json(text, f"{path}: run information", WeightsError)
    _check_run_info(info, path)
    return info


def _check_run_info(info: Any, path: Path) -> None:
    """WeightsError naming the first field of a run.json that ``train`` would not have written:
    ``sessions`` a list of objects whose ``start_step`` / ``end_step`` are integers and
    ``wall_s`` a finite number; ``best``, ``validation``, ``time_budget`` objects."""
    def bad(what: str) -> WeightsError:
        return WeightsError(f"{path}: run information: {what} (edited by hand? put back the "
                            "run.json that train wrote)")

    if not isinstance(info, dict):
        raise bad("not a JSON object")
    for key in ("best", "validation", "time_budget"):
        if info.get(key) is not None and not isinstance(info[key], dict):
            raise bad(f"{key!r} is not an object")
    sessions = info.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
        raise bad("'sessions' is not a list of objects")
    for i, session in enumerate(sessions):
        for key in ("start_step", "end_step"):
            value = session.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(f"sessions[{i}].{key} is not an integer")
        wall = session.get("wall_s", 0.0)
        if isinstance(wall, bool) or not isinstance(wall, (int, float)) or \
                not math.isfinite(wall):
            raise bad(f"sessions[{i}].wall_s is not a finite number")


def write_run_info(run_dir: str | os.PathLike, info: dict[str, Any]) -> None:
    """Write ``run.json`` atomically."""
    with atomic_output(Path(run_dir) / RUN_INFO_NAME) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600} h {s % 3600 // 60:02d} min ({seconds:.0f} s)"


LEGS_HEADING = "## Training legs"
_LEGS_HEADER = ("| leg | run | steps | samples | wall time | hardware | validation PSNR | data |\n"
                "|---|---|---|---|---|---|---|---|")


def previous_legs(weights_dir: str | os.PathLike | None) -> list[str]:
    """The rows of the "Training legs" table in the model card of ``weights_dir`` (the weights
    a run started from, ``model.init_from``), so that a card lists every leg of a model that
    was trained over several sessions; [] when there are none."""
    if weights_dir is None:
        return []
    try:
        text = (Path(weights_dir).expanduser() / "README.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if LEGS_HEADING not in text:
        return []
    rows = []
    for line in text.split(LEGS_HEADING, 1)[1].splitlines()[4:]:  # heading, blank, header, rule
        if not line.startswith("| "):
            break
        rows.append(line)
    return rows


def legs_table(cfg: TrainConfig, info: dict[str, Any], run_name: str) -> str:
    """Markdown table of the training legs of a model: those of the weights it started from
    (:func:`previous_legs`), then one row per session of this run (steps, samples, wall time,
    hardware, the best validation PSNR so far, data)."""
    rows = previous_legs(cfg.model.init_from)
    best = (info.get("best") or {}).get("val_psnr")
    sessions = [s for s in info.get("sessions", []) if isinstance(s, dict)]
    for i, s in enumerate(sessions):
        start, end = int(s.get("start_step", 0)), int(s.get("end_step", 0))
        psnr = f"{best:.3f} dB (best of run)" if isinstance(best, float) and \
            i == len(sessions) - 1 else "-"
        rows.append(f"| {len(rows) + 1} | {run_name} | {start}→{end} | "
                    f"{(end - start) * cfg.optim.batch_size} of {cfg.data.crop} px | "
                    f"{_duration(float(s.get('wall_s', 0.0)))} | {s.get('hardware', '?')} | "
                    f"{psnr} | {', '.join(Path(p).name for p in cfg.data.paths)} |")
    return "\n".join([LEGS_HEADING, "", _LEGS_HEADER, *rows])


DATA_ROOT_NAME = "data"  # model cards name data paths relative to the last folder so called


def data_label(spec: str) -> str:
    """A data source (a ``data.paths`` entry) as a model card names it, never a machine path: a
    ``kind:`` prefix (``stills:``, ``builtin:``) is kept, and the path is given relative to its
    data root, the last folder called ``data`` on it (``stills:/srv/data/train/stills/set14``
    -> ``stills:train/stills/set14``), or by its last component when it has none."""
    kind, sep, rest = spec.partition(":")
    if not sep or len(kind) < 2 or not kind.isalpha():  # no prefix ("C:" is a drive, not one)
        kind, sep, rest = "", "", spec
    if kind == "builtin":
        return spec
    parts = Path(rest).parts
    roots = [i for i, part in enumerate(parts) if part == DATA_ROOT_NAME]
    below = parts[roots[-1] + 1:] if roots and roots[-1] + 1 < len(parts) else parts[-1:]
    return f"{kind}{sep}{'/'.join(below)}"


def model_card(cfg: TrainConfig, ckpt: Checkpoint, info: dict[str, Any], run_name: str
               ) -> dict[str, str]:
    """Model-card entries (:func:`burstjdd.models.hub.save_pretrained`) filled from a run: data,
    iterations, hardware and wall time from the run log, last validation PSNR; data paths
    relative to the data root (:func:`data_label`)."""
    sessions = [s for s in info.get("sessions", []) if isinstance(s, dict)]
    hardware = sorted({str(s["hardware"]) for s in sessions if s.get("hardware")})
    val = info.get("validation") or {}
    if ckpt.val_psnr is None:
        psnr_text = "not measured (the run had no data.val_paths)"
    else:
        psnr_text = (f"{ckpt.val_psnr:.2f} dB: mean over {val.get('samples', '?')} fixed synthetic "
                     f"bursts from {', '.join(map(data_label, cfg.data.val_paths))} "
                     f"(docs/protocol.md ISP and "
                     f"PSNR, "
                     f"each burst's own metadata)")
    return {
        "title": f"burstjdd {cfg.model.preset} model ({cfg.model.variant})",
        "description": f"Weights of the training run {run_name!r}, exported by `burstjdd export`.",
        "model": f"preset {cfg.model.preset}, variant {cfg.model.variant}, overrides "
                 f"{cfg.model.overrides or 'none'}",
        "training data": ", ".join(map(data_label, cfg.data.paths)),
        "training samples": f"synthetic raw bursts (make_training_sample) of "
                            f"{cfg.data.frames} frames, "
                            f"{cfg.data.crop} px GT crops, search radius "
                            f"{cfg.data.search_radius} px",
        "iterations": f"{ckpt.step} of {cfg.schedule.total_steps} (global batch "
                      f"{cfg.optim.batch_size})",
        "hardware": "; ".join(hardware) or "unknown",
        "wall time": _duration(ckpt.wall_time),
        "final validation PSNR": psnr_text,
    }


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
               dtype: torch.dtype | None = None, notes: str | None = None,
               part_bytes: int | None = None) -> Path:
    """Weights only of a run's best checkpoint on the validation set (``checkpoint_best.pt``;
    the latest one when the run has none, e.g. no validation) as a weights directory (safetensors +
    config.json + sha256 + model card, :func:`burstjdd.models.hub.save_pretrained`);
    ``notes``: markdown appended to the model card (measured quality, say).

    WeightsError/ConfigError (one line, naming the file) when the run has no readable config or
    checkpoint, or the weights do not match the run's model config.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_NAME).is_file():
        raise WeightsError(f"{run_dir}: not a training run directory (no {CONFIG_NAME})")
    cfg = load_config(run_dir / CONFIG_NAME)
    name = BEST_CHECKPOINT_NAME if (run_dir / BEST_CHECKPOINT_NAME).is_file() else CHECKPOINT_NAME
    ckpt = load_checkpoint(run_dir / name)
    source = str(run_dir / name)
    model = model_from_state(cfg.model.model_config(), ckpt.model, source)
    info = read_run_info(run_dir)
    card = model_card(cfg, ckpt, info, run_dir.resolve().name)
    card["notes"] = legs_table(cfg, info, run_dir.resolve().name) + (f"\n\n{notes}" if notes else "")
    return save_pretrained(model, out, card=card, dtype=dtype, overwrite=overwrite,
                           part_bytes=part_bytes)  # split files of at most part_bytes
