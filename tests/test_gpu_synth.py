"""Batched device synthesis (burstjdd.synth.gpu) against the per-sample path it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from burstjdd.errors import ConfigError
from burstjdd.synth.datasets import SampleConfig, TrainingDataset
from burstjdd.synth.gpu import DeviceSynthesis, FrameCache, PlanDataset
from burstjdd.synth.sources import ClipFolderSource, ImageFolderSource

pytestmark = pytest.mark.usefixtures("one_thread")


def _smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured colour image: low-frequency colour field plus fine noise texture."""
    lo = rng.random((h // 16 + 2, w // 16 + 2, 3))
    big = np.array(Image.fromarray((lo * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
    fine = rng.integers(-40, 40, (h, w, 3))
    return np.clip(big.astype(int) + fine, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three stills of 120x140 and one 7-frame clip of 112x120 (moving texture)."""
    root = tmp_path_factory.mktemp("synthdata")
    rng = np.random.default_rng(0)
    stills = root / "stills"
    stills.mkdir()
    for i in range(3):
        Image.fromarray(_smooth_image(rng, 120, 140)).save(stills / f"s{i}.png")
    clip = root / "clips" / "c0"
    clip.mkdir(parents=True)
    base = _smooth_image(rng, 140, 160)
    for t in range(7):
        Image.fromarray(base[t:t + 112, 2 * t:2 * t + 120]).save(clip / f"{t:03d}.png")
    return stills, root / "clips"


CONFIG = SampleConfig(n_frames=5, gt_size=32, search_radius=16, shift_range=(0.0, 8.0),
                      clip_shift_range=(0.0, 4.0), objects=(0, 2))


def _dataset(data, length=24, config=CONFIG):
    stills, clips = data
    return TrainingDataset([ImageFolderSource(stills), ClipFolderSource(clips)], None, config,
                           seed=3, length=length)


def _batch(ds, synth, indices):
    plans = default_collate([synth.plans[i] for i in indices])
    return synth.render(plans), default_collate([ds[i] for i in indices])


def test_clean_frames_match_the_per_sample_path(data):
    ds = _dataset(data)
    synth = DeviceSynthesis(ds, "cpu", threads=2)
    fast, ref = _batch(ds, synth, list(range(12)))
    assert set(ref) == set(fast)
    for key, value in ref.items():
        assert fast[key].shape == value.shape, key
        assert fast[key].dtype == value.dtype, key
    # same source, clip, frames, motion, objects, ISP, dihedral and noise level: the clean
    # frames agree up to float rounding, only the noise draw differs
    assert torch.equal(fast["source"], ref["source"])
    assert (ref["source"] == 0).any() and (ref["source"] == 1).any()  # stills and the clip
    for key in ("origin", "ref", "noise", "wb", "cam2rgb", "rgb2cam", "rgb_gain", "red_gain",
                "blue_gain", "index"):
        assert torch.equal(fast[key], ref[key]), key
    assert (fast["clean"] - ref["clean"]).abs().max() < 2e-4
    assert (fast["gt"] - ref["gt"]).abs().max() < 2e-4
    assert not torch.equal(fast["frames"], ref["frames"])  # another noise realisation


def test_objects_and_transforms_are_exercised(data):
    """The indices above must cover moving objects and several dihedral transforms, or the
    agreement proves little."""
    ds = _dataset(data)
    synth = DeviceSynthesis(ds, "cpu", threads=1)
    plans = default_collate([synth.plans[i] for i in range(12)])
    assert plans["obj_active"].any()
    assert len(set(plans["dihedral"].tolist())) >= 3
    assert (~plans["identity"]).any() and plans["identity"][:, 2].all()  # ref is exact


def test_noise_statistics_match(data):
    """Noise of both paths: residual variance follows shot·x + read² alike (whole frames)."""
    ds = _dataset(data, length=32)
    synth = DeviceSynthesis(ds, "cpu", threads=2)
    fast, ref = _batch(ds, synth, list(range(32)))

    def normalised_residual(batch):
        level = batch["noise"]  # (B, 2)
        shot, read = level[:, 0].view(-1, 1, 1, 1, 1), level[:, 1].view(-1, 1, 1, 1, 1)
        clean = batch["clean"]
        inside = (clean > 0.02) & (clean < 0.9)  # away from the clipping at 0 and 1
        z = (batch["frames"] - clean) / (shot * clean + read**2).sqrt()
        return z[inside]

    zf, zr = normalised_residual(fast), normalised_residual(ref)
    assert abs(float(zf.mean())) < 0.02 and abs(float(zr.mean())) < 0.02
    assert abs(float(zf.std()) - 1) < 0.02 and abs(float(zr.std()) - 1) < 0.02
    # frame statistics of the two streams agree
    for key in ("frames", "noise_map", "gt"):
        assert torch.allclose(fast[key].mean(), ref[key].mean(), rtol=0.01, atol=1e-3), key
        assert torch.allclose(fast[key].std(), ref[key].std(), rtol=0.02, atol=1e-3), key


def test_render_is_deterministic_and_follows_the_device(data):
    ds = _dataset(data)
    synth = DeviceSynthesis(ds, torch.device("cpu"), threads=1)
    plans = default_collate([synth.plans[i] for i in (4, 5)])
    a, b = synth.render(plans), synth.render(plans)
    for key in a:
        assert torch.equal(a[key], b[key]), key
        assert a[key].device.type == "cpu"


def test_plans_are_light_and_picklable(data):
    import pickle

    ds = _dataset(data)
    cache = FrameCache(ds, "cpu", threads=1)
    plans = PlanDataset(ds, cache.sizes, cache.counts)
    blob = pickle.dumps(plans)
    assert len(blob) < 10_000  # no pixels travel to the workers
    again = pickle.loads(blob)
    assert torch.equal(again[7]["cam_o"], plans[7]["cam_o"])
    assert cache.nbytes == sum(3 * 120 * 140 for _ in range(3)) + 7 * 3 * 112 * 120


def test_cache_limit_is_a_one_line_error(data):
    with pytest.raises(ConfigError, match="run.synthesis=loader"):
        FrameCache(_dataset(data), "cpu", limit=1000)
