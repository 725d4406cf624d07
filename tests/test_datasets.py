"""Datasets: determinism from (seed, rank, index) whatever the workers, mixing, eval protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from burstjdd.errors import ConfigError, DataError
from burstjdd.synth.datasets import EvalDataset, SampleConfig, TrainingDataset
from burstjdd.synth.sources import ClipFolderSource, ImageFolderSource

CONFIG = SampleConfig(
    gt_size=16, search_radius=8, shift_range=(0.0, 8.0), clip_shift_range=(0.0, 2.0)
)


def write_clips(root, lengths: dict[str, int], size=(72, 80)):
    for c, (name, n) in enumerate(lengths.items()):
        rng = np.random.default_rng(c)
        base = rng.integers(0, 256, (size[0], size[1] + 2 * n, 3), dtype=np.uint8)
        (root / name).mkdir(parents=True)
        for i in range(n):  # a horizontally panning clip
            frame = np.ascontiguousarray(base[:, 2 * i : 2 * i + size[1]])
            Image.fromarray(frame).save(root / name / f"{i:03d}.png")
    return root


def write_stills(root, n: int, size=(70, 76)):
    root.mkdir(parents=True)
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / f"s{i}.png")
    return root


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    clips = ClipFolderSource(write_clips(root / "clips", {"a": 7, "b": 6}))
    stills = ImageFolderSource(write_stills(root / "stills", 3))
    return clips, stills


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_samples_depend_on_seed_rank_and_index_only(sources):
    ds = TrainingDataset(sources, [1, 1], CONFIG, seed=11, length=8)
    again = TrainingDataset(sources, [1, 1], CONFIG, seed=11, length=8)
    assert same(ds[3], again[3]) and same(ds[3], ds[3])
    assert not torch.equal(ds[3]["frames"], ds[4]["frames"])
    other_rank = TrainingDataset(sources, [1, 1], CONFIG, seed=11, rank=1, length=8)
    other_seed = TrainingDataset(sources, [1, 1], CONFIG, seed=12, length=8)
    assert not torch.equal(ds[3]["frames"], other_rank[3]["frames"])
    assert not torch.equal(ds[3]["frames"], other_seed[3]["frames"])
    assert ds[5]["index"] == 5
    with pytest.raises(IndexError):
        ds[8]


def test_worker_count_does_not_change_samples(sources):
    ds = TrainingDataset(sources, [1, 1], CONFIG, seed=3, length=6)
    serial = list(DataLoader(ds, batch_size=2, num_workers=0))
    parallel = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        assert same(a, b)
    # every sample differs from every other one (different index -> different sample)
    frames = torch.cat([batch["frames"] for batch in serial]).flatten(1)
    assert len(torch.unique(frames, dim=0)) == 6


def test_source_weights(sources):
    only_stills = TrainingDataset(sources, [0, 1], CONFIG, seed=0, length=12)
    assert {int(only_stills[i]["source"]) for i in range(12)} == {1}
    mixed = TrainingDataset(sources, None, CONFIG, seed=0, length=12)
    assert {int(mixed[i]["source"]) for i in range(12)} == {0, 1}
    with pytest.raises(ConfigError, match="weight"):
        TrainingDataset(sources, [1], CONFIG)
    with pytest.raises(ConfigError, match="weight"):
        TrainingDataset(sources, [0, 0], CONFIG)
    with pytest.raises(ConfigError, match="at least one source"):
        TrainingDataset([], None, CONFIG)


def test_short_clips_are_skipped_and_counted(tmp_path):
    clips = ClipFolderSource(write_clips(tmp_path / "c", {"long": 6, "short": 3}))
    with pytest.warns(UserWarning, match="shorter than 5"):
        ds = TrainingDataset([clips], None, CONFIG, length=4)
    assert ds.skipped == {"c": {"short": 1, "small": 0}} and ds.clips == [(0,)]
    assert "skipped 1 short" in ds.summary()
    only_short = ClipFolderSource(write_clips(tmp_path / "d", {"s1": 2, "s2": 4}))
    with pytest.raises(DataError, match="no still or clip of >= 5 frames"):
        TrainingDataset([only_short], None, CONFIG)


def test_too_small_images_are_skipped_or_named(tmp_path):
    need = CONFIG.min_source_size  # 32 px frames + the motion's fixed margin
    assert need > CONFIG.frame_size == 32
    write_stills(tmp_path / "mixed", 2, size=(need - 1, 60))
    write_stills(tmp_path / "mixed" / "big", 1, size=(need, need))
    with pytest.warns(UserWarning, match="smaller than"):
        ds = TrainingDataset([ImageFolderSource(tmp_path / "mixed")], None, CONFIG, length=2)
    assert ds.skipped == {"mixed": {"short": 0, "small": 2}} and ds[1]["gt"].shape == (3, 16, 16)
    with pytest.raises(DataError, match="0 short, 2 small"):
        TrainingDataset([ImageFolderSource(tmp_path / "mixed", recursive=False)], None, CONFIG)
    # a source that cannot tell sizes: the drawn image is named in the error
    tiny = torch.rand(3, need - 1, 60)
    with pytest.raises(DataError, match="too small"):
        TrainingDataset([TensorSource(tiny)], None, CONFIG, length=1)[0]


class TensorSource:
    """A one-still source of an in-memory image (no frame_size)."""

    name = "tensor"

    def __init__(self, image):
        self.image = image

    def __len__(self):
        return 1

    def clip(self, i):
        return [self.image]


def test_eval_dataset_windows_and_stills(sources, tmp_path):
    clips, stills = sources
    ds = EvalDataset(clips, "low")
    # centre frames only: 2..4 of the 7-frame clip, 2..3 of the 6-frame one
    assert len(ds) == 5 and [ds.describe(i) for i in (0, 3)] == ["a#2", "b#2"]
    assert EvalDataset(stills).describe(1) == "s1#0"
    sample = ds[1]
    assert sample["frames"].shape == (5, 4, 36, 40) and sample["gt"].shape == (3, 72, 80)
    assert sample["item"].tolist() == [0, 3] and torch.equal(ds[1]["frames"], sample["frames"])
    moving = EvalDataset(stills, "high", max_shift=4.0, crop=(32, 32))
    assert len(moving) == 3 and moving[0]["frames"].shape == (5, 4, 16, 16)
    assert not torch.equal(moving[0]["frames"][0], moving[0]["frames"][4])
    short = ClipFolderSource(write_clips(tmp_path / "short", {"x": 3}))
    with pytest.raises(DataError, match="'x'.*3 frames"):
        EvalDataset(short)
