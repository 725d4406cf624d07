"""``Restorer(..., strength=S)``: the noise level the model is told, scaled by S (classical model,
a small simulated burst)."""

from __future__ import annotations

import math

import pytest
import torch

from burstjdd.errors import ConfigError
from burstjdd.restore import RestoreOptions, Restorer
from burstjdd.synth.burst import simulate_burst

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def burst():
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(3, 24, 32, generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    return simulate_burst(photo, n_frames=3, max_shift=4, n_objects=0, crop=(48, 64), seed=0,
                          noise="high")


def _roughness(image: torch.Tensor) -> float:
    """Mean absolute difference of horizontal and vertical neighbours: what denoising removes."""
    return float((image[:, 1:] - image[:, :-1]).abs().mean()
                 + (image[:, :, 1:] - image[:, :, :-1]).abs().mean())


def test_the_noise_map_the_model_is_told_scales_with_the_strength(burst, monkeypatch):
    told = {}
    for strength in (1.0, 0.5, 2.0):
        restorer = Restorer.from_pretrained("classical", device="cpu", strength=strength)
        real = restorer.model.reconstruct

        def spy(frames, noise, ref, *args, strength=strength, real=real, **kwargs):
            told[strength] = noise.clone()
            return real(frames, noise, ref, *args, **kwargs)

        monkeypatch.setattr(restorer.model, "reconstruct", spy)
        restorer.restore(burst, progress=False)
    assert float(told[1.0].min()) > 0
    assert torch.equal(told[0.5], 0.5 * told[1.0]) and torch.equal(told[2.0], 2.0 * told[1.0])


def test_a_lower_strength_keeps_more_texture_and_1_is_the_default(burst):
    out = {s: Restorer.from_pretrained("classical", device="cpu", strength=s)
           .restore(burst, progress=False) for s in (0.0, 1.0, 2.0)}
    default = Restorer.from_pretrained("classical", device="cpu").restore(burst, progress=False)
    assert torch.equal(out[1.0], default)
    rough = [_roughness(out[s]) for s in (0.0, 1.0, 2.0)]
    assert rough[0] > rough[1] > rough[2], rough


@pytest.mark.parametrize("bad", [-0.1, 2.01, math.nan, math.inf, True, "1", None])
def test_strengths_outside_0_to_2_are_refused(bad):
    with pytest.raises(ConfigError, match="strength must be a number in 0..2"):
        RestoreOptions(strength=bad)
