"""The composed model: config validation, presets and variants, parameter counts, shapes for
any burst, gradients, the interpolation branch, coarse-alignment plumbing, FLOPs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from burstjdd.errors import BurstFormatError, ConfigError
from burstjdd.raw.cfa import demosaic_bilinear, unpack
from burstjdd.models import demosaicnet
from burstjdd.raw.merge import merge_and_denoise
from burstjdd.models.jddb import (
    PRESETS,
    RESIDUAL_BLUR,
    VARIANTS,
    JDDBOutput,
    ModelConfig,
    TwoStageJDDB,
    build_model,
    gaussian_blur,
    make_config,
)


def count(params) -> int:
    return sum(p.numel() for p in params)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _burst(b: int, n: int, h: int, w: int, seed: int = 0):
    g = _gen(seed)
    frames = torch.rand(b, n, 4, h, w, generator=g)
    return frames, torch.sqrt(1e-3 * frames + 1e-4)


def _tiny(variant: str = "full", **overrides) -> TwoStageJDDB:
    """The paper structure at a tiny width (fast on CPU)."""
    opts = {"nf": 8, "deformable_groups": 2, "extract_blocks": 1, **overrides}
    return build_model("compact", variant, seed=0, **opts)


@pytest.fixture(scope="module")
def paper() -> TwoStageJDDB:
    # On the meta device: exact structure, shapes and FLOPs without the cost of initialising
    # and running 12M parameters (the tiny models above run the same code for real).
    with torch.device("meta"):
        return build_model("paper")


# ------------------------------------------------------------------------------- config


def test_paper_parameter_counts(paper):
    assert count(paper.g_parameters()) == 12_052_144
    assert count(paper.dsnet_parameters()) == 9_840
    parts = {"feature_extract": 152_128, "feature_blocks": 914_820, "align": 1_259_720,
             "fusion": 229_632, "feature_up": 16_448, "unet": 9_479_396}
    for name, expected in parts.items():
        assert count(getattr(paper, name).parameters()) == expected, name
    assert count(paper.parameters()) == 12_052_144 + 9_840


def test_parameter_groups_partition_the_trainable_model():
    model = _tiny()
    g_ids = {id(p) for p in model.g_parameters()}
    d_ids = {id(p) for p in model.dsnet_parameters()}
    frozen = {id(p) for p in model.base_demosaic.parameters()}
    assert d_ids and not g_ids & d_ids
    assert g_ids | d_ids | frozen == {id(p) for p in model.parameters()}
    assert g_ids | d_ids == {id(p) for p in model.parameters() if p.requires_grad}
    for variant in ("no_e2e", "no_align"):
        m = _tiny(variant)
        assert m.dsnet is None and not list(m.dsnet_parameters())


def test_presets_and_variants_configs():
    assert PRESETS["paper"] == ModelConfig()
    assert PRESETS["compact"].nf == 32
    assert make_config(variant="no_align").ca == "none" and not make_config(variant="no_align").ra
    assert make_config(variant="ca_only").ca == "dpbm" and not make_config(variant="ca_only").ra
    assert make_config(variant="ra_only").ca == "none" and make_config(variant="ra_only").ra
    assert make_config(variant="no_e2e").ca == "bicubic"
    deep = make_config(variant="deep_ra")
    assert (deep.ca, deep.ra, deep.ra_extra_offset_layers) == ("none", True, 16)
    assert make_config(variant="no_ip").use_interp is False
    assert make_config("compact", "deep_ra", nf=16).nf == 16


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"preset": "huge"}, "paper, compact"),
        ({"variant": "no_thing"}, "full, no_align"),
        ({"depth": 3}, "nf, deformable_groups"),
        ({"ca": "flow"}, "dpbm, bicubic, none"),
        ({"nf": 12}, "divisible"),
        ({"ra": 1}, "true or false"),
        ({"extract_blocks": -1}, "in 0..64"),
        ({"extract_blocks": 100_000_000}, "in 0..64"),      # would build for minutes
        ({"nf": 10**20}, "in 2..1024"),                      # would overflow in torch
        ({"ra_extra_offset_layers": 65}, "in 0..64"),
        ({"search_stride": True}, "integer"),
        ({"ra": False, "ra_extra_offset_layers": 2}, "needs ra"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_config(**kwargs)


@pytest.mark.parametrize("seed", [10**30, -1, 1.5, True])
def test_seeds_beyond_what_torch_takes_are_config_errors(seed):
    with pytest.raises(ConfigError, match=r"seed must be None or an integer in "
                                          r"0\.\.18446744073709551615, got"):
        build_model("compact", seed=seed)


def test_seeded_build_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = _tiny(), _tiny()
    assert torch.equal(torch.random.get_rng_state(), state)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


# ------------------------------------------------------------------------------- forward shapes


@pytest.mark.parametrize("n,ref", [(1, 0), (2, 0), (2, 1), (5, 0), (5, 2), (5, 4), (7, 3), (7, 6)])
def test_any_burst_size_whole_frame(n, ref):
    model = _tiny()
    frames, noise = _burst(1, n, 9, 6)  # odd packed height: padded to 12 x 8, cropped back
    with torch.no_grad():
        out = model(frames, noise, ref, interp=True)
    assert isinstance(out, JDDBOutput) and out.ca is None
    assert out.image.shape == out.interp.shape == (1, 3, 18, 12)
    assert torch.isfinite(out.image).all() and torch.isfinite(out.interp).all()


@pytest.mark.parametrize("n,ref", [(1, 0), (2, 1), (5, 2), (5, 4)])
def test_patch_forward_shapes(n, ref):
    model = _tiny()
    frames, noise = _burst(2, n, 24, 28)
    origins = torch.tensor([[0, 12], [8, 4]])
    with torch.no_grad():
        out = model(frames, noise, ref, origins=origins, size=16, search_radius=16)
    assert out.image.shape == (2, 3, 32, 32) and out.interp is None
    assert out.ca.frames.shape == out.ca.noise.shape == (2, 1, n, 4, 16, 16)
    # The reference patch is its own crop.
    torch.testing.assert_close(out.ca.frames[1, 0, ref], frames[1, ref, :, 8:24, 4:20])


def test_default_ref_is_centre():
    model = _tiny()
    frames, noise = _burst(1, 4, 8, 8)
    with torch.no_grad():
        a = model(frames, noise).image
        b = model(frames, noise, 2).image
    torch.testing.assert_close(a, b)


def test_paper_preset_forward_shapes(paper):
    with torch.device("meta"):
        frames, noise = torch.rand(1, 5, 4, 16, 12), torch.rand(1, 5, 4, 16, 12)
        with torch.no_grad():
            out = paper(frames, noise, interp=True)
    assert out.image.shape == out.interp.shape == (1, 3, 32, 24)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_runs(variant):
    model = _tiny(variant)
    frames, noise = _burst(1, 3, 16, 16)
    with torch.no_grad():
        out = model(frames, noise, origins=torch.tensor([[4, 0]]), size=8, temperature=1e-2,
                    interp=True)
    assert out.image.shape == out.interp.shape == (1, 3, 16, 16)
    assert (out.ca is None) == (model.config.ca == "none")
    assert (model.align is None) == (not model.config.ra)
    if variant == "deep_ra":
        assert len(model.align.l3_dcn.offset_layers) == 2 * 16


def test_train_and_eval_mode_give_the_same_output():
    model = _tiny()
    frames, noise = _burst(1, 3, 16, 16)
    kwargs = dict(origins=torch.tensor([[4, 0]]), size=8, temperature=1e-2)
    with torch.no_grad():
        model.train()
        a = model(frames, noise, **kwargs)
        model.eval()
        b = model(frames, noise, **kwargs)
    assert type(a) is type(b) and a.interp is None and b.interp is None
    torch.testing.assert_close(a.image, b.image)


def test_bad_inputs_raise():
    model = _tiny()
    frames, noise = _burst(1, 3, 16, 16)
    with pytest.raises(BurstFormatError, match=r"\(1, 3, 4, 16, 16\)"):
        model(frames, noise[:, :2])
    with pytest.raises(BurstFormatError, match="out of range"):
        model(frames, noise, 3)
    with pytest.raises(BurstFormatError, match="multiples of 4"):
        model(frames, noise, origins=torch.tensor([[2, 0]]), size=8)
    with pytest.raises(BurstFormatError, match="outside"):
        model(frames, noise, origins=torch.tensor([[12, 0]]), size=8)
    with pytest.raises(BurstFormatError, match="patch size"):
        model(frames, noise, origins=torch.tensor([[4, 0]]), size=6)
    with pytest.raises(BurstFormatError, match="without a patch size"):
        model(frames, noise, origins=torch.tensor([[4, 0]]))
    with pytest.raises(BurstFormatError, match=r"\(B=1, 2\)"):
        model(frames, noise, origins=torch.tensor([4, 0]), size=8)


# ------------------------------------------------------------------------------- gradients


def test_every_parameter_gets_a_gradient():
    model = _tiny()
    # The DCN offset/mask predictors start at zero, which by design blocks the gradient of
    # every offset-branch conv on the first step; randomise them to test connectivity.
    with torch.no_grad():
        for dcn in (model.align.l1_dcn, model.align.l2_dcn, model.align.l3_dcn):
            w = dcn.conv_offset_mask.weight
            w.copy_(torch.randn(w.shape, generator=_gen(1)) * 0.05)
    model.train()
    frames, noise = _burst(2, 3, 24, 24, seed=2)
    out = model(frames, noise, origins=torch.tensor([[8, 8], [4, 0]]), size=16,
                search_radius=24, temperature=1e-2, interp=True)
    loss = out.image.square().mean() + out.interp.abs().mean()
    loss.backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:  # the residual base's frozen demosaicnet
            assert name.startswith("base_demosaic.") and p.grad is None, name
            continue
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize("origins", [None, torch.tensor([[4, 4]])])
def test_interp_branch_ignores_the_reference_frame_without_ra(origins):
    model = _tiny("no_align")
    frames, noise = _burst(1, 5, 16, 16, seed=3)
    changed = frames.clone()
    changed[:, 2] = torch.rand(changed[:, 2].shape, generator=_gen(4))
    kwargs = dict(origins=origins, size=None if origins is None else 8, interp=True)
    with torch.no_grad():
        a = model(frames, noise, **kwargs)
        b = model(changed, noise, **kwargs)
    torch.testing.assert_close(a.interp, b.interp)
    assert not torch.allclose(a.image, b.image)


# ------------------------------------------------------------------------------- residual


@pytest.mark.parametrize("n,ref", [(1, 0), (5, 2), (5, 4)])
def test_residual_model_adds_the_decoder_output_to_the_classical_base(n, ref):
    model = _tiny(residual=True)
    frames, noise = _burst(2, n, 20, 20, seed=6)
    with torch.no_grad():
        start = model(frames, noise, ref, interp=True)
        model.unet.dec2_conv.simple_block[-1].weight.zero_()  # decoder output exactly 0
        out = model(frames, noise, ref, interp=True)
    # the base: HDR+ alignment + merge + spatial denoising per sample, then demosaicnet
    merged = torch.stack([merge_and_denoise(unpack(f), unpack(v[ref]).square(), ref)
                          for f, v in zip(frames, noise)])  # (2, 40, 40)
    base = demosaicnet.demosaic(model.base_demosaic, merged.clamp(0, 1))
    torch.testing.assert_close(out.image, base)
    bilinear = demosaic_bilinear(unpack(frames))  # (2, n, 3, 40, 40)
    near = [t for t in (ref - 1, ref + 1) if 0 <= t < n]
    expected_ip = bilinear[:, near].mean(1) if near else torch.zeros_like(out.image)
    torch.testing.assert_close(out.interp, gaussian_blur(expected_ip, RESIDUAL_BLUR))
    # Initialised near the base, not at it (so every layer learns from the first step).
    gap = (start.image - out.image).abs()
    assert 0 < gap.mean() < 0.01 * bilinear.abs().mean()


def test_the_base_demosaicker_is_pretrained_and_frozen():
    model = _tiny(residual=True)
    reference = demosaicnet.load_pretrained(demosaicnet.DemosaicNet())
    for (name, p), q in zip(model.base_demosaic.named_parameters(), reference.parameters()):
        assert torch.equal(p, q), name
        assert not p.requires_grad
    g_ids = {id(p) for p in model.g_parameters()}
    assert not g_ids & {id(p) for p in model.base_demosaic.parameters()}
    assert _tiny(residual=False).base_demosaic is None


def test_gaussian_blur_keeps_constants_and_matches_a_direct_kernel():
    flat = torch.full((1, 2, 9, 7), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 1.0), flat)
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[0, 0, 7, 7] = 1.0
    t = torch.arange(-7, 8.0)
    g = torch.exp(-(t[:, None] ** 2 + t[None] ** 2) / 2)
    g = g * (t.abs() <= 3)[:, None] * (t.abs() <= 3)[None]  # radius ceil(3σ) = 3
    torch.testing.assert_close(gaussian_blur(impulse, 1.0)[0, 0], g / g.sum())


def test_only_compact_is_residual():
    assert PRESETS["compact"].residual and not PRESETS["paper"].residual
    with pytest.raises(ConfigError, match="residual must be true or false"):
        ModelConfig(residual=1)


# ------------------------------------------------------------------------------- coarse alignment


def test_coarse_bicubic_recovers_a_known_shift(make_frames):
    model = _tiny("no_e2e")
    # Frame t = one random texture moved by its motion (dy, dx) in packed pixels, so that
    # frame_t[y + dy, x + dx] = frame_ref[y, x]. Shifts on the stage-1 grid (even LR offsets):
    # white noise has no gradient towards an odd offset between the stride-2 candidates.
    texture = torch.rand(4, 80, 80, generator=_gen(5))
    frames = make_frames(texture, [(8, -8), (0, 0), (-16, 8)], 48)[None]
    noise = torch.full_like(frames, 0.01)
    ca = model.coarse(frames, noise, 1, torch.tensor([[[16, 16]]]), 16, radius_px=32,
                      temperature=1e-2)
    assert ca.offsets_lr[0, 0].tolist() == [[2, -2], [0, 0], [-4, 2]]
    for t in range(3):  # hard selection (plain block matching): exact crops
        torch.testing.assert_close(ca.frames[0, 0, t], frames[0, 1, :, 16:32, 16:32])
    assert set(ca.stage1.weights.unique().tolist()) <= {0.0, 1.0}


def test_coarse_alignment_ignores_autocast():
    # the DSNet features and the matching costs stay float32 under bf16 training/restore
    model = _tiny("full")
    frames, noise = _burst(1, 3, 64, 64)
    origins = torch.tensor([[[8, 16]]])
    plain = model.coarse(frames, noise, 1, origins, 16, 32, temperature=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.coarse(frames, noise, 1, origins, 16, 32, temperature=1e-2)
    assert mixed.frames.dtype == torch.float32
    assert torch.equal(mixed.frames, plain.frames)
    assert torch.equal(mixed.offsets_lr, plain.offsets_lr)


@pytest.mark.parametrize("radius_px,radius_lr", [(40, 5), (41, 6), (48, 6)])
def test_coarse_radius_is_in_full_resolution_pixels(radius_px, radius_lr):
    model = _tiny("no_e2e", search_stride=1, refine=False)
    frames, noise = _burst(1, 3, 64, 64)
    ca = model.coarse(frames, noise, 1, torch.tensor([[[24, 24]]]), 16, radius_px)
    assert ca.stage1.candidates[0, 0, 0].abs().max().item() == radius_lr


def test_coarse_none_crops_and_features():
    model = _tiny("no_align")
    frames, noise = _burst(2, 3, 16, 20)
    origins = torch.tensor([[[0, 4], [8, 12]], [[4, 0], [0, 0]]])
    ca = model.coarse(frames, noise, 1, origins, 8, 48)
    assert ca.frames.shape == (2, 2, 3, 4, 8, 8) and ca.stage1.candidates.shape[3] == 0
    torch.testing.assert_close(ca.frames[0, 1], frames[0, :, :, 8:16, 12:20])
    torch.testing.assert_close(ca.noise[1, 0], noise[1, :, :, 4:12, 0:8])
    with pytest.raises(ConfigError):
        model.ca_features(frames)
    feats = _tiny().ca_features(frames)
    assert feats.shape == (2, 3, 16, 4, 5) and feats.requires_grad
    bic = _tiny("no_e2e").ca_features(frames)
    assert bic.shape == (2, 3, 4, 4, 5) and not bic.requires_grad


# ------------------------------------------------------------------------------- cost


def test_compact_needs_at_least_3x_fewer_flops_than_paper(paper):
    def flops(model):
        # a 256 px restore tile: compact's base (demosaicnet) pads every patch by 32 px, which
        # would dominate a tiny patch (measured 2.5x at 32 px, 3.2x here)
        counter = FlopCounterMode(display=False)
        with torch.device("meta"), torch.no_grad(), counter:
            frames = torch.rand(1, 3, 4, 128, 128)
            model(frames, frames)
        return counter.get_total_flops()

    with torch.device("meta"):
        compact = build_model("compact")
    assert dataclasses.replace(compact.config, nf=64, residual=False) == paper.config
    assert 3 * flops(compact) <= flops(paper)
