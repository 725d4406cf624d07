"""torch Datasets of synthetic bursts: a weighted training mix and paper-protocol test bursts.

Determinism. ``TrainingDataset(sources, weights, config, seed, rank=r)[i]`` draws everything
(source, clip, frames, motion, ISP, noise, augmentation) from one ``torch.Generator`` seeded
with ``derive_seed("train", seed, r, i)``, a 63-bit hash. The DataLoader worker id is
deliberately NOT part of it: the sample at an index is bitwise the same whatever the number of
workers or the order in which they run, so a run resumes exactly. Distinct (seed, rank, index)
triples get distinct generator seeds (a collision has probability ~2^-63), so different indices
and ranks give different samples; give every distributed rank its own ``rank``. For fresh
samples each epoch, build the dataset with a per-epoch seed, e.g. ``derive_seed(base, epoch)``.

``EvalDataset`` is fixed by the protocol (docs/protocol.md): noise seeded per (clip, frame index),
fixed ISP metadata; stills get synthetic motion seeded per (seed, source, image).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from burstjdd.errors import ConfigError, DataError
from burstjdd.raw.noise import NoiseLevel
from burstjdd.raw.unprocess import test_isp_params
from burstjdd.synth.burst import (
    SampleConfig,
    burst_to_sample,
    make_test_sample,
    make_training_sample,
    simulate_burst,
)
from burstjdd.synth.sources import FrameSource, derive_seed

__all__ = ["EvalDataset", "SampleConfig", "TrainingDataset"]


class TrainingDataset(Dataset):
    """A weighted mix of frame sources as training samples (``make_training_sample`` dicts).

    sources: FrameSources; a one-frame clip is a still (synthetic motion), a clip with at least
    ``config.n_frames`` frames is used as video. Skipped, counted in ``skipped[source name]``
    and warned about: clips in between ("short"), and clips whose frames the source knows to be
    smaller than ``config.min_source_size`` ("small", via the sources' ``frame_size(i)``; an
    image of unknown size that is too small raises DataError when drawn).
    weights: relative probability of each source per sample (default: equal).
    length: ``len()`` (samples per epoch). Each sample also holds ``source`` (index into
    ``sources``) and ``index`` () long tensors. DataError when a source has no usable clip.
    """

    def __init__(
        self,
        sources: Sequence[FrameSource],
        weights: Sequence[float] | None = None,
        config: SampleConfig | None = None,
        seed: int = 0,
        *,
        rank: int = 0,
        length: int = 100_000,
    ):
        self.sources = tuple(sources)
        self.config = config or SampleConfig()
        self.seed, self.rank, self.length = int(seed), int(rank), int(length)
        if not self.sources:
            raise ConfigError("TrainingDataset needs at least one source")
        weights = [1.0] * len(self.sources) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.sources) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"need one non-negative weight per source, not all 0 (got {weights})")
        if self.length < 1:
            raise ConfigError(f"length must be >= 1 (got {length})")
        self.weights = torch.tensor(weights, dtype=torch.float64)
        n, need = self.config.n_frames, self.config.min_source_size
        self.clips: list[tuple[int, ...]] = []
        self.skipped: dict[str, dict[str, int]] = {}
        for source in self.sources:
            size_of = getattr(source, "frame_size", lambda i: None)
            usable, short, small = [], 0, 0
            for i in range(len(source)):
                m, size = len(source.clip(i)), size_of(i)
                if 1 < m < n:
                    short += 1
                elif size is not None and min(size) < need:
                    small += 1
                else:
                    usable.append(i)
            self.skipped[source.name] = {"short": short, "small": small}
            if not usable:
                raise DataError(
                    f"source {source.name!r}: no still or clip of >= {n} frames with sides >= "
                    f"{need} px ({short} short, {small} small of {len(source)})"
                )
            self.clips.append(tuple(usable))
        if any(sum(c.values()) for c in self.skipped.values()):
            warnings.warn(
                f"skipped clips shorter than {n} frames or smaller than {need} px: "
                f"{self.skipped}",
                stacklevel=2,
            )

    def __len__(self) -> int:
        return self.length

    def generator(self, index: int) -> torch.Generator:
        """The generator of sample ``index``: seeded by (seed, rank, index), never the worker."""
        return torch.Generator().manual_seed(derive_seed("train", self.seed, self.rank, index))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        g = self.generator(index)
        s = int(torch.multinomial(self.weights, 1, generator=g))
        clips = self.clips[s]
        clip = clips[int(torch.randint(len(clips), (), generator=g))]
        sample = make_training_sample(self.sources[s].clip(clip), self.config, g)
        sample["source"] = torch.tensor(s, dtype=torch.long)
        sample["index"] = torch.tensor(index, dtype=torch.long)
        return sample

    def summary(self) -> str:
        parts = []
        for src, w, c in zip(self.sources, self.weights, self.clips):
            skip = self.skipped[src.name]
            parts.append(
                f"{src.name} (w={float(w):g}, {len(c)} clips; skipped {skip['short']} short, "
                f"{skip['small']} small)"
            )
        return f"{self.length} samples from " + ", ".join(parts)


class EvalDataset(Dataset):
    """Paper-protocol test bursts (docs/protocol.md) of one source, as sample dicts
    (``make_test_sample`` keys; ``item`` = (clip, centre frame) long; whole frames, so use
    batch_size 1 when sizes differ).

    Clips (>= n_frames frames): one burst per centre frame n//2 .. M-1-n//2 (the paper reports
    centre frames only), noise seeded per (clip name, frame index), ``test_isp_params``.
    Stills: ``simulate_burst`` with synthetic camera motion up to ``max_shift`` px (no objects),
    seeded by (seed, source name, image index), cropped to ``crop`` when given.
    DataError for a clip with 1 < M < n_frames frames.
    """

    def __init__(
        self,
        source: FrameSource,
        noise: str | NoiseLevel = "high",
        *,
        n_frames: int = 5,
        max_shift: float = 0.0,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
    ):
        self.source, self.noise, self.n_frames = source, noise, n_frames
        self.max_shift, self.crop, self.seed = max_shift, crop, seed
        names = getattr(source, "clip_names", None)
        self.items: list[tuple[int, int]] = []
        self.names: list[str] = []
        half = n_frames // 2
        for c in range(len(source)):
            frames = source.clip(c)
            name = names[c] if names is not None else Path(frames[0].label.split("#")[0]).stem
            self.names.append(name)
            m = len(frames)
            if m == 1:
                self.items.append((c, 0))
            elif m < n_frames:
                raise DataError(
                    f"clip {name!r} of {source.name!r} has {m} frames, "
                    f"fewer than n_frames={n_frames}"
                )
            else:
                self.items.extend((c, i) for i in range(half, m - (n_frames - 1 - half)))
        if not self.items:
            raise DataError(f"source {source.name!r} holds no bursts")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        c, centre = self.items[index]
        frames = self.source.clip(c)
        if len(frames) == 1:
            seed = derive_seed("eval", self.seed, self.source.name, c)
            burst = simulate_burst(
                frames, n_frames=self.n_frames, noise=self.noise, max_shift=self.max_shift,
                n_objects=0, crop=self.crop, seed=seed,
            )
            sample = burst_to_sample(burst)
            sample["rgb2cam"] = test_isp_params().rgb2cam
        else:
            sample = make_test_sample(
                frames, centre, self.names[c], self.noise, n_frames=self.n_frames
            )
        sample["item"] = torch.tensor([c, centre], dtype=torch.long)
        return sample

    def describe(self, index: int) -> str:
        """'clip#frame' of item ``index`` (for result tables)."""
        c, centre = self.items[index]
        return f"{self.names[c]}#{centre}"
