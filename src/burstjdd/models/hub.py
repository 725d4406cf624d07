"""Save and load model weights: ``config.json`` + ``model.safetensors`` (never pickle).

A weights directory holds

* ``config.json``: ``{"format": "burstjdd-weights", "format_version": 1,
  "burstjdd_version": ..., "model": asdict(ModelConfig)}``;
* ``model.safetensors``: the model's ``state_dict`` (float32, or float16 storage), or, when
  saved with ``part_bytes``, its bytes split in order into ``model.safetensors.000``,
  ``.001``, ... of at most that size (files that must travel under a size limit; the loader
  joins them, ``cat model.safetensors.[0-9]* > model.safetensors`` does the same);
* ``model.safetensors.sha256``: its digest (of the joined bytes) in ``sha256sum`` format;
* ``README.md``: a model card (training data, iterations, hardware, measured quality, ...).

Everything read from disk is treated as untrusted: the config is type-checked against
:class:`ModelConfig`, the digest is verified before a byte of the tensor file is parsed, the
tensors are read by ``safetensors`` only, and the state dict must match the model exactly.
Nothing here touches the network: named weights are directories shipped inside the package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from burstjdd._version import __version__
from burstjdd.errors import BurstJDDError, WeightsError
from burstjdd.models import registry
from burstjdd.limits import parse_json
from burstjdd.models.jddb import ModelConfig, TwoStageJDDB
from burstjdd.raw.files import disk_full_error, require_regular_file, special_file
from burstjdd.typed import WEIGHTS_JSON, convert, field_hints

FORMAT = "burstjdd-weights"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DIGEST_NAME = WEIGHTS_NAME + ".sha256"
CARD_NAME = "README.md"
FILE_NAMES = (CONFIG_NAME, WEIGHTS_NAME, DIGEST_NAME, CARD_NAME)
PART_RE = re.compile(re.escape(WEIGHTS_NAME) + r"\.(\d{3})")  # model.safetensors.000, .001 ...
MAX_PARTS = 1000

_CONFIG_KEYS = ("format", "format_version", "burstjdd_version", "model")
_MAX_CONFIG_BYTES = 1 << 20          # a config is a few hundred bytes; refuse to parse a bomb
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ----------------------------------------------------------------------------------------------
# config <-> dict


def config_to_dict(config: ModelConfig) -> dict:
    """The JSON-ready dict of a model config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(data: object, source: str = "config") -> ModelConfig:
    """Build a :class:`ModelConfig` from untrusted parsed JSON, checking every key and type.

    Unknown keys, missing required keys, values of the wrong type and values the config
    rejects raise :class:`WeightsError` naming the key and ``source`` (e.g. the file).
    """
    where = f"{source}: model"
    if not isinstance(data, Mapping):
        raise WeightsError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(ModelConfig) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise WeightsError(f"{where}: unknown key {unknown[0]!r}"
                           + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    hints = field_hints(ModelConfig)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(data[name], hints[name], f"{where}.{name}", WEIGHTS_JSON)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise WeightsError(f"{where}: missing key {name!r}")
    try:
        return ModelConfig(**kwargs)
    except BurstJDDError as exc:
        raise WeightsError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------------------------
# files


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _model_card(card: Mapping | None, config: dict, digest: str, dtype: torch.dtype,
                parts: int = 0) -> str:
    """Markdown model card: the given ``card`` keys (``title``, ``description``, ``notes``:
    markdown after the table, the others: table rows), then the architecture and the digest
    (``parts``: number of files the tensor file is split into, 0 = not split)."""
    split = "" if not parts else (
        f", split into `{WEIGHTS_NAME}.000` ... `.{parts - 1:03d}` (join them in order: "
        f"`cat {WEIGHTS_NAME}.[0-9]* > {WEIGHTS_NAME}`)")
    lines = ["# burstjdd model weights", ""]
    card = dict(card or {})
    notes = card.pop("notes", None)
    title = card.pop("title", None)
    if title:
        lines[0] = f"# {title}"
    description = card.pop("description", None)
    if description:
        lines += [str(description), ""]
    if card:
        lines += ["| | |", "|---|---|"]
        for key, value in card.items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            text = " ".join(str(text).split()).replace("|", "/")   # one table cell
            lines.append(f"| {key} | {text} |")
        lines.append("")
    if notes:
        lines += [str(notes).strip(), ""]
    lines += [
        "## Files",
        "",
        f"* `{CONFIG_NAME}`: format {FORMAT} v{FORMAT_VERSION}, burstjdd {__version__}",
        f"* `{WEIGHTS_NAME}`: {str(dtype).removeprefix('torch.')} tensors, sha256 `{digest}`"
        + split,
        "",
        "## Model config",
        "",
        "```json",
        json.dumps(config, indent=2),
        "```",
        "",
        "Load with `burstjdd.models.hub.load_pretrained(path)`.",
        "",
    ]
    return "\n".join(lines)


def save_pretrained(model: TwoStageJDDB, directory: str | os.PathLike,
                    card: Mapping | None = None, dtype: torch.dtype | None = None,
                    overwrite: bool = False, part_bytes: int | None = None) -> Path:
    """Write ``model`` as a weights directory (see the module docstring); returns its path.

    ``dtype`` (``torch.float16`` / ``bfloat16`` / ``float32``) sets the storage precision of
    floating tensors (default: as they are in the model); :func:`load_pretrained` upcasts.
    The directory is built in a temporary sibling and renamed into place, so a crash never
    leaves a half-written directory. An existing non-empty ``directory`` is an error unless
    ``overwrite`` is set, and even then only a previous weights directory is replaced.
    ``part_bytes``: when the tensor file is larger, its bytes are written in order as
    ``model.safetensors.000``, ``.001``, ... of at most ``part_bytes`` each (the digest stays
    that of the whole file; :func:`load_pretrained` joins and checks them).
    """
    if part_bytes is not None and (isinstance(part_bytes, bool) or not isinstance(part_bytes, int)
                                   or part_bytes < 1):
        raise WeightsError(f"save_pretrained: part_bytes must be a positive integer, got "
                           f"{part_bytes!r}")
    if not isinstance(model, TwoStageJDDB):
        raise TypeError(f"save_pretrained needs a TwoStageJDDB, got {type(model).__name__}")
    target = Path(directory)
    parent = target.parent
    if dtype is not None and dtype not in _FLOAT_DTYPES:
        raise WeightsError(f"save_pretrained: dtype must be a floating dtype, got {dtype}")
    if target.exists():
        if not target.is_dir():
            raise WeightsError(f"{target}: exists and is not a directory")
        content = {p.name for p in target.iterdir()}
        if content and not overwrite:
            raise WeightsError(f"{target}: directory exists and is not empty (pass "
                               "overwrite=True to replace a previous weights directory)")
        if not all(n in FILE_NAMES or PART_RE.fullmatch(n) for n in content):
            raise WeightsError(f"{target}: refusing to replace a directory that holds other files")
    parent.mkdir(parents=True, exist_ok=True)

    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.clone().contiguous()    # clone: safetensors refuses shared storage
    blob = _st_save(tensors, metadata={"format": FORMAT})
    digest = hashlib.sha256(blob).hexdigest()
    config = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "burstjdd_version": __version__, "model": config_to_dict(model.config)}
    store_dtype = dtype or next((t.dtype for t in tensors.values() if t.is_floating_point()),
                                torch.float32)

    n_parts = 0 if part_bytes is None or len(blob) <= part_bytes else -(-len(blob) // part_bytes)
    if n_parts > MAX_PARTS:
        raise WeightsError(f"save_pretrained: {len(blob)} bytes in parts of {part_bytes} would "
                           f"need {n_parts} files (at most {MAX_PARTS})")

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    try:
        if n_parts:
            for i in range(n_parts):
                (tmp / f"{WEIGHTS_NAME}.{i:03d}").write_bytes(
                    blob[i * part_bytes:(i + 1) * part_bytes])
        else:
            (tmp / WEIGHTS_NAME).write_bytes(blob)
        (tmp / DIGEST_NAME).write_text(f"{digest}  {WEIGHTS_NAME}\n")
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / CARD_NAME).write_text(_model_card(card, config["model"], digest, store_dtype,
                                                 n_parts))
        os.chmod(tmp, 0o755)                          # mkdtemp makes it 0700
        if target.exists() and any(target.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
            os.replace(target, old / "w")
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / "w", target)         # put the previous weights back
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)                   # rename(2) replaces an empty directory
    except BaseException as exc:
        full = disk_full_error(exc, target)           # asked before the partial files go
        shutil.rmtree(tmp, ignore_errors=True)
        if full is not None:
            raise full from None
        raise
    return target


def _regular_file(path: Path) -> bool:
    """Whether ``path`` exists; WeightsError when it is there but not a regular file (a FIFO
    would block the reader, a folder is not a file), instead of calling it missing."""
    require_regular_file(path, WeightsError)
    return path.is_file()


def _read_config(path: Path) -> ModelConfig:
    """Parse and validate ``config.json``; returns the model config."""
    if not _regular_file(path):
        raise WeightsError(f"{path}: missing (not a burstjdd weights directory)")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise WeightsError(f"{path}: too large for a config")
    data = parse_json(path.read_bytes(), str(path), WeightsError)
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    unknown = sorted(set(data) - set(_CONFIG_KEYS))
    if unknown:
        raise WeightsError(f"{path}: unknown key {unknown[0]!r}")
    if data.get("format") != FORMAT:
        raise WeightsError(f"{path}: format is {data.get('format')!r}, expected {FORMAT!r}")
    version = data.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise WeightsError(f"{path}: unsupported format_version {version!r} "
                           f"(this burstjdd reads {FORMAT_VERSION})")
    if "model" not in data:
        raise WeightsError(f"{path}: missing key 'model'")
    return config_from_dict(data["model"], source=str(path))


def weight_parts(directory: str | os.PathLike) -> list[Path]:
    """The split tensor files ``model.safetensors.000``, ``.001``, ... of a weights directory in
    order ([] when there are none); WeightsError when their numbers have a gap."""
    directory = Path(directory)
    found = sorted((int(m.group(1)), p) for p in directory.iterdir()
                   if (m := PART_RE.fullmatch(p.name)) and _regular_file(p))
    if [i for i, _ in found] != list(range(len(found))):
        have = ", ".join(p.name for _, p in found)
        raise WeightsError(f"{directory}: split weights are incomplete (parts must be numbered "
                           f"000, 001, ... without gaps; found {have})")
    return [p for _, p in found]


def _read_weight_bytes(directory: Path) -> tuple[bytes, Path]:
    """The bytes of ``model.safetensors``, or of its parts joined in order; and the path to
    name in errors."""
    weights = directory / WEIGHTS_NAME
    if _regular_file(weights):
        return weights.read_bytes(), weights
    parts = weight_parts(directory)
    if not parts:
        raise WeightsError(f"{weights}: missing")
    named = directory / f"{WEIGHTS_NAME}.[000-{len(parts) - 1:03d}]"
    return b"".join(p.read_bytes() for p in parts), named


def weights_digest(directory: str | os.PathLike) -> str:
    """The sha256 (hex) of a weights directory's tensor file, whole or split, as its digest
    file states it (a cache key; :func:`load_pretrained` is what verifies it)."""
    digest_file = Path(directory) / DIGEST_NAME
    if not _regular_file(digest_file):
        raise WeightsError(f"{digest_file}: missing")
    fields = digest_file.read_text(errors="replace").split()
    if not fields or not re.fullmatch(r"[0-9a-f]{64}", fields[0].lower()):
        raise WeightsError(f"{digest_file}: expected '<sha256 hex>  {WEIGHTS_NAME}'")
    return fields[0].lower()


def _read_verified_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors`` (or join its parts), check it against its sha256 file, then
    parse it."""
    digest_file = directory / DIGEST_NAME
    if not _regular_file(digest_file):
        raise WeightsError(f"{digest_file}: missing")
    fields = digest_file.read_text(errors="replace").split()
    if len(fields) != 2 or not re.fullmatch(r"[0-9a-f]{64}", fields[0].lower()) \
            or fields[1].lstrip("*") != WEIGHTS_NAME:
        raise WeightsError(f"{digest_file}: expected '<sha256 hex>  {WEIGHTS_NAME}'")
    blob, weights = _read_weight_bytes(directory)  # hash exactly the bytes parsed below
    if not hmac.compare_digest(hashlib.sha256(blob).hexdigest(), fields[0].lower()):
        raise WeightsError(f"{weights}: sha256 mismatch (file corrupt or modified)")
    try:
        return _st_load(blob)
    except Exception as exc:              # safetensors raises its own error types
        raise WeightsError(f"{weights}: not a valid safetensors file ({exc})") from None


def check_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor],
                     source: str, check_finite: bool = True) -> None:
    """Raise :class:`WeightsError` unless ``found`` has exactly the keys and shapes of
    ``expected``, floating where expected is floating, and (``check_finite``) no NaN/inf."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {_few(unexpected)}")
        raise WeightsError(f"{source}: state dict does not match the network ({'; '.join(parts)})")
    wrong = [f"{k} {tuple(found[k].shape)} != {tuple(v.shape)}"
             for k, v in expected.items() if found[k].shape != v.shape]
    if wrong:
        raise WeightsError(f"{source}: shape mismatch in {len(wrong)} tensors: {_few(wrong)}")
    wrong = [k for k, v in expected.items()
             if v.is_floating_point() != found[k].is_floating_point()]
    if wrong:
        raise WeightsError(f"{source}: wrong dtype for {_few(wrong)}")
    bad = [k for k, v in found.items()
           if check_finite and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"{source}: non-finite values in {_few(bad)}")


def _few(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def load_pretrained(directory: str | os.PathLike, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> TwoStageJDDB:
    """Load a weights directory written by :func:`save_pretrained` (in eval mode).

    Validates ``config.json``, verifies the sha256 of ``model.safetensors`` before parsing
    it, loads the tensors with ``safetensors`` (no pickle) and requires an exact state-dict
    match. Tensors stored in float16 are upcast; the model computes in ``dtype``.
    Any problem raises :class:`WeightsError` naming the file.
    """
    path = Path(directory)
    if not path.is_dir():
        hint = " (a PyTorch checkpoint? use `burstjdd convert-official`)" \
            if path.suffix in (".pth", ".pt", ".ckpt", ".pkl") else ""
        raise WeightsError(f"{path}: not a weights directory{hint}")
    if dtype not in _FLOAT_DTYPES:
        raise WeightsError(f"load_pretrained: dtype must be a floating dtype, got {dtype}")
    config = _read_config(path / CONFIG_NAME)
    state = _read_verified_weights(path)
    model = model_from_state(config, state, str(path / WEIGHTS_NAME))
    return model.to(device=device, dtype=dtype).eval()


def meta_model(config: ModelConfig, source: str) -> TwoStageJDDB:
    """The model's structure on the meta device: no memory, no (slow orthogonal) init."""
    try:
        with torch.device("meta"):
            return TwoStageJDDB(config)
    except BurstJDDError as exc:
        raise WeightsError(f"{source}: {exc}") from None


def model_from_state(config: ModelConfig, state: Mapping[str, torch.Tensor], source: str,
                     check_finite: bool = True) -> TwoStageJDDB:
    """A CPU model of ``config`` holding exactly ``state`` (checked with
    :func:`check_state_dict`; fp16/bf16 tensors are upcast to the model's dtypes)."""
    model = meta_model(config, source)
    expected = model.state_dict()
    check_state_dict(expected, state, source, check_finite)
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        # A tensor outside the state dict (non-persistent buffer) needs the real init.
        model = TwoStageJDDB(config)
        model.load_state_dict(state, strict=True)
    return model


# ----------------------------------------------------------------------------------------------
# names


def _shipped_root() -> Path | None:
    root = resources.files("burstjdd").joinpath("weights")
    return Path(str(root)) if isinstance(root, Path) and root.is_dir() else None


def shipped_weights() -> list[str]:
    """Names of the weights directories shipped inside the package (``burstjdd/weights/``)."""
    root = _shipped_root()
    if root is None:
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and _NAME_RE.fullmatch(p.name) and (p / CONFIG_NAME).is_file())


def default_weights(device: str | torch.device = "cpu") -> str | None:
    """The shipped learned weights to use when none are named: the name of the best model for
    ``device`` (a torch device or its type name; ranks of :mod:`burstjdd.models.registry`)
    whose weights ship, or None when none ship."""
    kind = "cpu" if torch.device(device).type == "cpu" else "accelerator"
    shipped = shipped_weights()
    return next((e.name for e in registry.preferred(kind) if e.weights in shipped), None)


# restore and demo take a shipped learned model by default only once it beats the best classical
# pipeline (hdrplus_dmn) in every column of the README's evaluation (Vid4 and Kodak with 64 px
# shifts, low and high noise). The compact model that ships does (session 5: +0.50 to +0.52 dB,
# SSIM higher in all four); ``--model classical`` is the fast path.
LEARNED_IS_DEFAULT = True


def default_model(device: str | torch.device = "cpu") -> str:
    """What ``burstjdd restore`` and ``demo`` use when no model is named: the shipped learned
    weights of :func:`default_weights` where ``LEARNED_IS_DEFAULT``, else the ``classical``
    pipeline (which needs no trained weights but the bundled demosaicnet), so that restore
    always works."""
    learned = default_weights(device) if LEARNED_IS_DEFAULT else None
    return learned or registry.CLASSICAL


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """The weights directory for a path or a shipped name. Never uses the network.

    An existing directory is returned as is; otherwise ``name_or_path`` must be a model of
    :mod:`burstjdd.models.registry` whose weights directory ships in ``burstjdd/weights/``, or
    the name of any directory shipped there. Anything else raises :class:`WeightsError`
    listing the shipped names.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "checkpoint.pt").is_file() and not (path / CONFIG_NAME).exists():
        raise WeightsError(f"{path}: a training run, not weights: export it first with "
                           f"`burstjdd export {path} -o DIR`")
    if path.is_dir():
        return path
    if path.exists():
        kind = special_file(path) or "a file"  # a FIFO or a device: say which
        raise WeightsError(f"{path}: is {kind}, not a weights directory")
    name = str(name_or_path)
    entry = registry.get(name)
    folder = entry.weights if entry is not None and entry.weights is not None else name
    shipped = shipped_weights()
    if folder in shipped:
        return _shipped_root() / folder
    known = f"shipped: {', '.join(shipped)}" if shipped else "no weights are shipped yet"
    raise WeightsError(f"{name}: no such weights directory or shipped name ({known})")
