"""Benchmarks 1 and 2 of docs/protocol.md: quality tables and the large-shift stress curve.

Every method (a baseline of :mod:`burstjdd.eval.baselines`, or our model through a
:class:`burstjdd.restore.Restorer`) runs on the SAME bursts; its output and the ground truth
both go through :func:`~burstjdd.eval.metrics.protocol_srgb` and are compared with the
protocol's :func:`~burstjdd.eval.metrics.psnr` / :func:`~burstjdd.eval.metrics.ssim`. Scores are
averaged per clip (or per image group), then over clips ("Average"), as in the paper's Table 1.

* :func:`clip_bursts`: paper-protocol bursts of a REDS-layout folder (``make_test_burst``: fixed
  metadata, noise seeded per clip and frame, 5-frame windows, centre frames only).
* :func:`still_bursts`: synthetic large-shift bursts from a folder of photos (``simulate_burst``).
* :func:`shifted_bursts`: stills with a constant global shift between neighbouring frames, for
  :func:`stress_curve` (PSNR vs shift).
* :class:`ResultCache`: a JSON-lines file of per-burst scores; a re-run only computes the
  (method, burst) pairs whose key changed. Lines that are not a well-formed entry (bad bytes,
  bad JSON, a nesting or integer beyond :mod:`burstjdd.limits`, fields of the wrong type) are
  skipped, as if that burst had not been scored yet.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from burstjdd.errors import BurstJDDError, ConfigError, DataError, WeightsError
from burstjdd.eval import baselines as baselines_module
from burstjdd.eval.baselines import (
    BASELINES,
    BaselineUnavailableError,
    available_baselines,
    get_baseline,
)
from burstjdd.eval.metrics import protocol_srgb, psnr, ssim
from burstjdd.eval.outputs import write_all
from burstjdd.models import demosaicnet, hub
from burstjdd.models.classical import CLASSICAL, is_classical
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.cfa import mosaic
from burstjdd.limits import parse_json
from burstjdd.raw.files import require_regular_file
from burstjdd.raw.noise import NoiseLevel, add_noise, parse_noise
from burstjdd.raw.unprocess import test_isp_params, unprocess
from burstjdd.restore import Restorer
from burstjdd.synth.burst import MAX_SHIFT, make_test_burst, simulate_burst
from burstjdd.synth.motion import BICUBIC_SUPPORT_PX, apply_motion, constant_motion
from burstjdd.synth.sources import ClipFolderSource, ImageFile, ImageFolderSource, derive_seed

__all__ = [
    "AVERAGE", "DEFAULT_SHIFTS", "OURS", "BurstResult", "BurstSpec", "Method", "ResultCache",
    "baseline_method", "clip_bursts", "evaluate", "format_stress_table", "format_table",
    "model_method", "parse_list", "resolve_methods", "safe_name", "score", "shifted_burst",
    "shifted_bursts", "still_bursts", "stress_curve", "summarise", "write_results",
]

AVERAGE = "Average"
OURS = "ours"  # the method name of our model in tables
DEFAULT_SHIFTS = (0, 16, 32, 64, 96, 128)
N_FRAMES = 5
METRIC_VERSION = "protocol-v1"  # bump when the metric or the burst builders change


# ---------------------------------------------------------------------------------------------
# methods


@dataclass(frozen=True)
class Method:
    """A method under test: ``fn(burst) -> (3, H, W)`` linear camera RGB (burst orientation).

    version: everything the output depends on besides the burst (code digest, parameters,
    weights sha256, search radius); part of the cache key.
    """

    name: str
    fn: Callable[[RawBurst], Tensor]
    version: str


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


# The modules the classical pipelines are made of: baselines and our models' residual base.
CLASSICAL_SOURCES = ("burstjdd.raw.merge", "burstjdd.raw.denoise", "burstjdd.raw.noise",
                     "burstjdd.models.demosaicnet")


def _code_of(source: str) -> str:
    """The module's syntax tree without docstrings (comments are not in it): what runs."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def source_digest(*modules: str) -> str:
    """sha256 (16 hex digits) of the code of the named modules, in order; docstrings and
    comments do not count, so editing prose keeps cached scores."""
    digest = hashlib.sha256()
    for name in modules:
        source = Path(importlib.import_module(name).__file__).read_text(encoding="utf-8")
        digest.update(_code_of(source).encode())
    return digest.hexdigest()[:16]


def baseline_method(name: str) -> Method:
    """The registered baseline ``name`` as a Method; its version is a digest of the source of
    the baselines module and the modules it runs, so editing either invalidates its cached
    scores."""
    return Method(name, get_baseline(name),
                  source_digest(baselines_module.__name__, *CLASSICAL_SOURCES))


def model_method(weights: str | os.PathLike, *, search_radius: float | None = None,
                 device: str = "auto", name: str | None = None, prealign: bool = True) -> Method:
    """Our model as a method of ``burstjdd evaluate``: weights directory or shipped name →
    ``Method(name, fn(burst) -> (3, H, W) linear camera RGB, version)``, run by a
    :class:`~burstjdd.restore.Restorer`.

    version = (weights sha256, digest of the classical pipeline's source, search radius in
    full-res px, digest of the global pre-alignment's source or "noprealign"): other weights,
    an edited merge/denoiser/demosaicker (which every model with a classical base runs),
    another radius or pre-alignment are another cache key. prealign: the restore's global
    pre-alignment (docs/method.md §7.1). WeightsError when the weights cannot be loaded.
    """
    options = {"device": device, "search_radius": search_radius, "prealign": prealign}
    if is_classical(weights):
        restorer = Restorer.from_pretrained(CLASSICAL, **options)
        weights_id, name = f"{CLASSICAL}:{demosaicnet.WEIGHTS_SHA256}", name or CLASSICAL
    else:
        path = hub.resolve_weights(weights)
        restorer = Restorer.from_pretrained(path, **options)
        weights_id = f"model:{hub.weights_digest(path)}"
    align = source_digest("burstjdd.raw.global_align") if prealign else "noprealign"
    version = f"{weights_id}:{_pipeline_digest()}:{search_radius}:{align}"
    return Method(name or OURS, lambda burst: restorer.restore(burst, progress=False), version)


def _pipeline_digest() -> str:
    """sha256 (16 hex digits) of the source of the classical pipeline, which the classical
    model and every residual model run: merge, denoiser, noise, demosaicnet, the base and its
    model."""
    return source_digest(*CLASSICAL_SOURCES, "burstjdd.models.jddb", "burstjdd.models.classical")


def resolve_methods(names: Sequence[str] | None = None, *, model: str | None = None,
                    search_radius: float | None = None, device: str = "auto",
                    note: Callable[[str], None] = print, prealign: bool = True) -> list[Method]:
    """The methods to run, in order.

    names: baseline names (None/empty: every available baseline, plus our model when weights
    exist); ``ours`` in names asks for our model. Unknown names raise ConfigError listing the
    valid ones; a requested baseline whose optional dependency is missing raises
    BaselineUnavailableError. model: weights directory or shipped name; without it the default
    shipped weights are used if there are any, else our model is skipped with a ``note``
    (an error when ``ours`` was named explicitly). search_radius (full-res px, None: by image
    size), device and prealign: how our model runs (:func:`model_method`).
    """
    valid = [*BASELINES, OURS]
    names = list(names or [])
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; expected one of {', '.join(valid)}")
    want_ours = OURS in names or not names or model is not None
    base = [n for n in names if n != OURS] if names else available_baselines()
    methods = [baseline_method(n) for n in dict.fromkeys(base)]
    for m in methods:  # fail now, not after an hour of other methods
        reason = BASELINES[m.name].unavailable_reason()
        if reason is not None:
            raise BaselineUnavailableError(f"baseline {m.name!r} cannot run: {reason}")
    if want_ours:
        weights = model
        if weights is None:
            weights = hub.default_weights("cuda" if torch.cuda.is_available() else "cpu")
        if weights is not None:
            methods.append(model_method(weights, search_radius=search_radius, device=device,
                                        prealign=prealign))
        elif OURS in names:
            raise WeightsError(f"method {OURS!r} needs --model DIR: no weights are shipped")
        else:
            note("note: our model skipped (no --model given and no weights are shipped)")
    return methods


# ---------------------------------------------------------------------------------------------
# bursts


@dataclass(frozen=True)
class BurstSpec:
    """One test burst, built lazily (a cached re-run never decodes it).

    group: the clip (or image group) it is averaged in; burst_id: unique, stable id;
    key: everything the burst depends on (data path, frame, noise, seed, builder settings).
    """

    group: str
    burst_id: str
    noise: str
    key: str
    build: Callable[[], RawBurst]


def parse_list(text: str | Sequence[str] | None, what: str) -> list[str]:
    """"a,b,c" -> ["a", "b", "c"] (spaces stripped); ConfigError when empty."""
    items = text if isinstance(text, (list, tuple)) else str(text or "").split(",")
    items = [s.strip() for s in items if s.strip()]
    if not items:
        raise ConfigError(f"empty {what} list")
    return items


def _noise_name(noise: str | NoiseLevel) -> tuple[str, NoiseLevel]:
    level = noise if isinstance(noise, NoiseLevel) else parse_noise(noise)
    return (noise if isinstance(noise, str) else f"{level.shot:g},{level.read:g}"), level


def _spread(indices: Sequence[int], cap: int | None) -> list[int]:
    """At most ``cap`` of ``indices``, evenly spread over them (first and last kept)."""
    if cap is None or cap >= len(indices):
        return list(indices)
    if cap < 1:
        raise ConfigError(f"max bursts must be >= 1, got {cap}")
    picks = np.linspace(0, len(indices) - 1, cap).round().astype(int)
    return [indices[i] for i in dict.fromkeys(picks.tolist())]


def clip_bursts(root: str | os.PathLike, noise: str | NoiseLevel = "high", *,
                max_bursts: int | None = None, n_frames: int = N_FRAMES) -> list[BurstSpec]:
    """Paper-protocol bursts (docs/protocol.md) of every clip of ``root``
    (``<root>/<clip>/<frame>``).

    One burst per centre frame (frames n//2 .. len - 1 - n//2), at most ``max_bursts`` per clip,
    evenly spread. DataError: no clip, or a clip shorter than ``n_frames`` (named).
    """
    source = ClipFolderSource(root, min_frames=1)
    name, level = _noise_name(noise)
    specs = []
    for i, clip in enumerate(source.clip_names):
        frames = source.frame_paths[i]
        if len(frames) < n_frames:
            raise DataError(f"{source.root / clip}: clip has {len(frames)} frames, fewer than "
                            f"the {n_frames} of a test burst")
        half = n_frames // 2
        for centre in _spread(range(half, len(frames) - half), max_bursts):
            key = _digest("clip", str(source.root.resolve()), clip, [f.name for f in frames],
                          centre, name, n_frames)
            specs.append(BurstSpec(
                clip, f"{clip}/{frames[centre].stem}", name, key,
                lambda f=frames, c=centre, n=clip: make_test_burst(
                    [ImageFile(p) for p in f], c, n, level, n_frames=n_frames),
            ))
    return specs


def _stills(root: str | os.PathLike) -> tuple[ImageFolderSource, list[str]]:
    """The images under root and their group: the sub-folder they are in (root's own name for
    images directly in root)."""
    source = ImageFolderSource(root, recursive=True)
    groups = [p.parent.name if p.parent != source.root else source.root.name
              for p in source.paths]
    return source, groups


def still_bursts(root: str | os.PathLike, noise: str | NoiseLevel = "high", *,
                 max_shift: float = 64.0, max_bursts: int | None = None, seed: int = 0,
                 n_frames: int = N_FRAMES) -> list[BurstSpec]:
    """Synthetic large-shift bursts (``simulate_burst``: camera motion up to ``max_shift``
    full-res px between neighbouring frames plus 2 moving objects), one per image under
    ``root``, seeded by (seed, image path relative to root); at most ``max_bursts`` images per
    group (sub-folder). DataError when root holds no colour image."""
    source, groups = _stills(root)
    name, level = _noise_name(noise)
    by_group: dict[str, list[Path]] = defaultdict(list)
    for path, group in zip(source.paths, groups):
        by_group[group].append(path)
    specs = []
    for group, paths in by_group.items():
        for path in [paths[i] for i in _spread(range(len(paths)), max_bursts)]:
            rel = path.relative_to(source.root).as_posix()
            burst_seed = derive_seed(seed, rel)
            key = _digest("still", str(source.root.resolve()), rel, name, max_shift, burst_seed,
                          n_frames)
            specs.append(BurstSpec(
                group, rel, name, key,
                lambda p=path, s=burst_seed: simulate_burst(
                    p, n_frames=n_frames, noise=level, max_shift=max_shift, seed=s),
            ))
    return specs


def shifted_burst(srgb: Tensor, shift: float, crop: tuple[int, int], noise: NoiseLevel,
                  seed: int, n_frames: int = N_FRAMES) -> RawBurst:
    """A burst of a still with a constant global shift of ``shift`` full-res px between
    neighbouring frames along the image's longer axis (frame t displaced by (t - ref) * shift).

    srgb (3, Hs, Ws) in [0, 1]; crop (H, W) even, centred; fixed test metadata, RGGB, noise
    from ``seed`` (the same for every shift, so only the shift changes between points).
    """
    ref = n_frames // 2
    step = (0.0, float(shift)) if srgb.shape[-1] >= srgb.shape[-2] else (float(shift), 0.0)
    isp = test_isp_params()
    clean, flow, valid = apply_motion(unprocess(srgb, isp), constant_motion(n_frames, ref, step),
                                      crop)
    generator = torch.Generator().manual_seed(seed)
    raw = add_noise(mosaic(clean, "RGGB"), noise.shot, noise.read, generator)
    return RawBurst(raw=raw, cfa="RGGB", wb=isp.wb, ccm=isp.cam2rgb, noise=noise, ref=ref,
                    gt=clean[ref].contiguous(), flow=flow, valid=valid,
                    meta={"generator": "burstjdd.eval.shifted_burst", "shift": float(shift)})


def _stress_crop(size: tuple[int, int], max_shift: float, n_frames: int) -> tuple[int, int]:
    """Largest centred crop (multiples of 8) that every shift up to max_shift can fill."""
    long_ax = 1 if size[1] >= size[0] else 0
    pad = BICUBIC_SUPPORT_PX + 1
    ref = n_frames // 2
    reach = math.ceil(max_shift * max(ref, n_frames - 1 - ref))  # farthest frame's offset
    crop = [size[0] - 2 * pad, size[1] - 2 * pad]
    crop[long_ax] -= 2 * reach
    crop = [c - c % 8 for c in crop]
    if min(crop) < 16:
        raise DataError(f"image {size[0]}x{size[1]} too small for shifts up to {max_shift:g} px")
    return crop[0], crop[1]


def shifted_bursts(root: str | os.PathLike, shifts: Sequence[float],
                   noise: str | NoiseLevel = "high", *, max_images: int | None = None,
                   seed: int = 0, n_frames: int = N_FRAMES) -> list[BurstSpec]:
    """Bursts of :func:`shifted_burst` for every (image, shift): group = the shift ("0", "16",
    ...), so per-group averages are the points of the stress curve. All shifts of an image use
    the same crop (the one the largest shift allows) and the same noise seed."""
    source, _ = _stills(root)
    name, level = _noise_name(noise)
    shifts = [float(s) for s in shifts]
    if not shifts or not all(0 <= s <= MAX_SHIFT for s in shifts):
        raise ConfigError(f"shifts must be numbers of pixels in 0..{MAX_SHIFT:g}, got "
                          f"{', '.join(f'{s:g}' for s in shifts) or 'none'}")
    specs = []
    for i in _spread(range(len(source)), max_images):
        path, (h, w) = source.paths[i], source.sizes[i]
        rel = path.relative_to(source.root).as_posix()
        crop = _stress_crop((h, w), max(shifts), n_frames)
        burst_seed = derive_seed("stress", seed, rel)
        for shift in shifts:
            key = _digest("shift", str(source.root.resolve()), rel, name, shift, crop, burst_seed,
                          n_frames)
            specs.append(BurstSpec(
                f"{shift:g}", f"{rel}@{shift:g}", name, key,
                lambda p=path, s=shift, c=crop, sd=burst_seed: shifted_burst(
                    ImageFile(p)(), s, c, level, sd, n_frames),
            ))
    return specs


# ---------------------------------------------------------------------------------------------
# running and caching


@dataclass(frozen=True)
class BurstResult:
    """The scores of one method on one burst (PSNR in dB, SSIM in [0, 1], seconds of the
    method alone)."""

    method: str
    group: str
    burst: str
    noise: str
    psnr: float
    ssim: float
    seconds: float


_RESULT_TYPES = {"method": str, "group": str, "burst": str, "noise": str, "psnr": float,
                 "ssim": float, "seconds": float}


def _cached_entry(line: bytes) -> tuple[str, BurstResult] | None:
    """(key, result) of one cache line, or None when the line is not a well-formed entry
    (bad UTF-8 or JSON, too deep, or fields missing or of the wrong type)."""
    try:
        entry = parse_json(line, "cache line", DataError)
    except BurstJDDError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        return None
    result = entry.get("result")
    if not isinstance(result, dict) or set(result) != set(_RESULT_TYPES):
        return None
    for name, kind in _RESULT_TYPES.items():
        value = result[name]
        ok = isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
        if not ok or isinstance(value, bool):
            return None
    return entry["key"], BurstResult(**result)


class ResultCache:
    """Per-(method version, burst key) scores in a JSON-lines file; appended as results come,
    so an interrupted run keeps what it computed. Lines that are not a well-formed entry are
    skipped (module docstring). A ``path`` that is a folder or a special file (a FIFO would
    block the read) is a DataError."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else Path(path)
        self.entries: dict[str, BurstResult] = {}
        self._unfinished_line = False  # the file ends inside a line: start ours on a new one
        if self.path is None:
            return
        require_regular_file(self.path, DataError)
        if self.path.is_file():
            data = self.path.read_bytes()
            self._unfinished_line = bool(data) and not data.endswith(b"\n")
            for line in data.splitlines():
                entry = _cached_entry(line)
                if entry is not None:
                    self.entries[entry[0]] = entry[1]

    @staticmethod
    def key(method: Method, spec: BurstSpec) -> str:
        return _digest(METRIC_VERSION, method.name, method.version, spec.key)

    def get(self, key: str) -> BurstResult | None:
        return self.entries.get(key)

    def put(self, key: str, result: BurstResult) -> None:
        self.entries[key] = result
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write("\n" * self._unfinished_line
                        + json.dumps({"key": key, "result": asdict(result)}) + "\n")
            self._unfinished_line = False


def score(output: Tensor, burst: RawBurst) -> tuple[float, float]:
    """(PSNR, SSIM) of a method's output (3, H, W) linear camera RGB against ``burst.gt``, both
    rendered with the protocol ISP (docs/protocol.md "Rendering to sRGB")."""
    pred = protocol_srgb(output.detach().float().cpu(), burst.wb, burst.ccm)
    target = protocol_srgb(burst.gt.float(), burst.wb, burst.ccm)
    return psnr(pred, target), ssim(pred, target)


def evaluate(specs: Sequence[BurstSpec], methods: Sequence[Method],
             cache: ResultCache | None = None, *, progress: bool = True,
             on_outputs: Callable[[BurstSpec, RawBurst, dict[str, Tensor]], None] | None = None,
             ) -> list[BurstResult]:
    """Run every method on every burst (the same burst for all methods); cached pairs are
    not recomputed and their burst is not even built. on_outputs(spec, burst, outputs) is
    called for bursts that were computed (outputs: method name -> (3, H, W))."""
    from tqdm import tqdm

    cache = cache if cache is not None else ResultCache(None)
    results = []
    for spec in tqdm(specs, desc="bursts", unit="burst", disable=not progress):
        keys = {m.name: ResultCache.key(m, spec) for m in methods}
        todo = [m for m in methods if cache.get(keys[m.name]) is None]
        burst = spec.build() if todo else None
        if burst is not None and burst.gt is None:
            raise DataError(f"{spec.burst_id}: burst has no ground truth")
        outputs = {}
        for m in todo:
            start = time.perf_counter()
            out = m.fn(burst)
            seconds = time.perf_counter() - start
            p, s = score(out, burst)
            cache.put(keys[m.name], BurstResult(m.name, spec.group, spec.burst_id, spec.noise,
                                                p, s, round(seconds, 4)))
            outputs[m.name] = out
        if on_outputs is not None and outputs:
            on_outputs(spec, burst, outputs)
        results.extend(cache.get(keys[m.name]) for m in methods)
    return results


# ---------------------------------------------------------------------------------------------
# tables


def summarise(results: Iterable[BurstResult]) -> dict:
    """{noise: {method: {group: {"psnr", "ssim", "n"}, ..., "Average": {...}}}}: mean over the
    bursts of each group, then the mean over groups (every group weighs the same)."""
    acc: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in results:
        acc[r.noise][r.method][r.group].append((r.psnr, r.ssim))
    summary: dict = {}
    for noise, by_method in acc.items():
        summary[noise] = {}
        for method, by_group in by_method.items():
            cells = {g: {"psnr": float(np.mean([v[0] for v in vals])),
                         "ssim": float(np.mean([v[1] for v in vals])), "n": len(vals)}
                     for g, vals in by_group.items()}
            cells[AVERAGE] = {
                "psnr": float(np.mean([c["psnr"] for c in cells.values()])),
                "ssim": float(np.mean([c["ssim"] for c in cells.values()])),
                "n": sum(c["n"] for c in cells.values()),
            }
            summary[noise][method] = cells
    return summary


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def format_table(summary: dict, noise: str) -> str:
    """The paper's Table 1 layout for one noise level: rows = methods, columns = groups
    (clips) + Average, cells "PSNR/SSIM" (dB with 2 decimals / 4 decimals). Markdown."""
    by_method = summary[noise]
    groups = list(dict.fromkeys(g for cells in by_method.values() for g in cells
                                if g != AVERAGE))
    rows = [[m, *(f"{c[g]['psnr']:.2f}/{c[g]['ssim']:.4f}" if g in c else "-"
                  for g in [*groups, AVERAGE])] for m, c in by_method.items()]
    return _markdown([f"{noise} noise", *groups, AVERAGE], rows)


def format_stress_table(summary: dict, noise: str) -> str:
    """PSNR (dB) vs neighbouring-frame shift (columns, px) per method (rows). Markdown."""
    by_method = summary[noise]
    shifts = sorted({g for c in by_method.values() for g in c if g != AVERAGE}, key=float)
    rows = [[m, *(f"{c[s]['psnr']:.2f}" if s in c else "-" for s in shifts)]
            for m, c in by_method.items()]
    return _markdown([f"PSNR ({noise}) \\ shift px", *shifts], rows)


def write_results(out: str | os.PathLike, summary: dict, results: Sequence[BurstResult],
                  tables: str, config: dict, stem: str = "results") -> tuple[Path, Path]:
    """<out>/<stem>.json (config, summary, per-burst results) and <out>/<stem>.md (tables),
    written together (:func:`~burstjdd.eval.outputs.write_all`). Returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"config": config, "summary": summary, "bursts": [asdict(r) for r in results]}
    paths = out / f"{stem}.json", out / f"{stem}.md"
    texts = json.dumps(data, indent=1, allow_nan=True), tables + "\n"
    write_all({path: lambda tmp, t=text: Path(tmp).write_text(t)
               for path, text in zip(paths, texts)})
    return paths


def stress_curve(root: str | os.PathLike, methods: Sequence[Method],
                 shifts: Sequence[float] = DEFAULT_SHIFTS, noise: str | NoiseLevel = "high", *,
                 max_images: int | None = None, seed: int = 0, cache: ResultCache | None = None,
                 out: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Benchmark 2 (docs/protocol.md): mean PSNR/SSIM of each method vs the global shift between
    neighbouring frames, on the stills under ``root`` (at most ``max_images``).

    Returns ``summarise`` of the results ({noise: {method: {"<shift>": cell, "Average"}}}).
    With ``out``: writes stress.json, stress.md and stress_<noise>.png (the curves).
    """
    from burstjdd.eval.figures import plot_curves

    specs = shifted_bursts(root, shifts, noise, max_images=max_images, seed=seed)
    results = evaluate(specs, methods, cache, progress=progress)
    summary = summarise(results)
    if out is not None:
        name = specs[0].noise
        table = format_stress_table(summary, name)
        xs = sorted({float(s) for s in shifts})
        curves = {m: [summary[name][m][f"{x:g}"]["psnr"] for x in xs] for m in summary[name]}
        plot_curves(xs, curves, Path(out) / f"stress_{safe_name(name)}.png",
                    title=f"PSNR vs shift between neighbouring frames ({name} noise)",
                    xlabel="shift (px)", ylabel="PSNR (dB)")
        write_results(out, summary, results, table,
                      {"root": str(root), "shifts": xs, "noise": name, "seed": seed,
                       "max_images": max_images}, stem="stress")
    return summary


def safe_name(text: str) -> str:
    """``text`` usable as a file name (anything but letters, digits, "-_." becomes "_")."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
