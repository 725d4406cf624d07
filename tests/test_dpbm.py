"""Tests of the DPBM coarse alignment (models/dpbm.py) and its loop reference (dpbm_loop.py).

Matching-accuracy tests use ``bicubic_features`` (bicubic ×1/4 of the packed raw) as a stand-in
for a trained DSNet: it needs no weights and is what the ``no_e2e`` variant matches on. One test
repeats the check with an UNTRAINED DSNet (random orthogonal weights).

Bursts are crops of one packed canvas (``make_frames``, tests/conftest.py, with motion m in LR
pixels: unit = 4 packed pixels): frame t is the crop at (base − 4·m_t), so the content of
the reference patch at LR origin o lies at o + m_t in frame t, i.e. the expected LR offset is
exactly m_t (m_t LR pixels = 4·m_t packed = 8·m_t full-resolution pixels).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from burstjdd.errors import BurstFormatError, ConfigError
from burstjdd.models.dpbm import coarse_align, match_weights, nma_distances, search_offsets
from burstjdd.models.dpbm_loop import coarse_align_loop
from burstjdd.models.dsnet import DSNet, bicubic_features, bilinear_guide
from burstjdd.raw.noise import NoiseLevel

HIGH_NOISE = NoiseLevel(6.4e-3, 2e-2)  # (shot, read), the paper's "High" level
# Keep true matches this many LR pixels off the frame edge: features there see the edge (the
# bicubic/DSNet support crosses it), so the true match is not an exact copy of the reference.
BORDER = 2


def texture_canvas(size: int, seed: int, scales: tuple[int, ...] = (2, 4, 8, 16)) -> torch.Tensor:
    """Packed (4, size, size) random texture: bicubic-upsampled white noise at each of ``scales``
    (packed pixels per noise sample), summed and mapped to [0.05, 0.95] (×0.6–1 per channel)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(1, 1, size, size)
    for f in scales:
        lo = torch.randn(1, 1, size // f + 3, size // f + 3, generator=g)
        out += F.interpolate(lo, scale_factor=f, mode="bicubic", align_corners=False)[
            ..., f:f + size, f:f + size]
    out = (out - out.min()) / (out.max() - out.min())
    return (0.05 + 0.9 * out[0]) * torch.tensor([0.6, 1.0, 1.0, 0.8]).view(4, 1, 1)


def astronaut_canvas() -> torch.Tensor:
    """skimage's astronaut (512×512 sRGB) as a linear RGGB packed raw (4, 256, 256)."""
    img = torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1) ** 2.2
    return torch.stack([img[0, 0::2, 0::2], img[1, 0::2, 1::2], img[1, 1::2, 0::2],
                        img[2, 1::2, 1::2]])


def origins_grid(b: int, hl: int, p: int, margin: int, step: int) -> torch.Tensor:
    """(B, K, 2) patch origins whose patches stay inside the frame after ±margin LR motion."""
    vals = range(margin, hl - p - margin + 1, step)
    return torch.tensor([[y, x] for y in vals for x in vals]).expand(b, -1, -1).contiguous()


def align_bursts(bursts: torch.Tensor, feats_fn, p: int, radius: int, margin: int, step: int,
                 **kw):
    """Run coarse_align on (B, N, 4, h, w) bursts with the centre frame as reference."""
    b, n = bursts.shape[:2]
    with torch.no_grad():
        feats = feats_fn(bursts.flatten(0, 1)).unflatten(0, (b, n))
    origins = origins_grid(b, feats.shape[-2], p, margin, step)
    return coarse_align(feats, bursts, bursts, n // 2, origins, p, radius, **kw)


def expected(motions: list[list[tuple[int, int]]], like: torch.Tensor) -> torch.Tensor:
    """(B, K, N, 2) expected offsets: motions[b][t] for every patch."""
    return torch.tensor(motions)[:, None].expand_as(like)


# Every direction at the largest shift the radius allows, split over two bursts (ref = 2).
def radius_motions(r: int) -> list[list[tuple[int, int]]]:
    return [[(r, r), (-r, 0), (0, 0), (0, r), (-r, -r)],
            [(r, -r), (0, -r), (0, 0), (r, 0), (-r, r)]]


@pytest.mark.parametrize("noise", [None, HIGH_NOISE], ids=["clean", "high"])
@pytest.mark.parametrize("refine", [False, True], ids=["stage1", "refined"])
def test_recovers_shifts_at_the_search_radius(noise, refine, make_frames):
    """±R LR pixels (±8R full-res) in both axes and on the diagonals, every patch exact."""
    radius = 6
    canvas = texture_canvas(192, seed=1)
    motions = radius_motions(radius)
    bursts = torch.stack([make_frames(canvas, m, 128, unit=4, noise=noise, seed=i)
                          for i, m in enumerate(motions)])
    out = align_bursts(bursts, bicubic_features, p=8, radius=radius, margin=radius + BORDER,
                       step=4, refine=refine, propagate=False)
    assert torch.equal(out.offsets_lr, expected(motions, out.offsets_lr))


@pytest.mark.parametrize("noise", [None, HIGH_NOISE], ids=["clean", "high"])
def test_refinement_finds_offsets_off_the_stride_grid(noise, make_frames):
    """R = 5 with stride 2: stage 1 scans −6..6 step 2 (R rounded up), so the true offsets ±5
    are only reached by the stride-1 stage 2 around the stage-1 winner.

    Not every patch: stage 2 only helps when the stage-1 grid point next to the truth beats
    every other grid point, which needs content that is smooth at the stride scale (2 LR px =
    16 full-res px). On this smooth texture 97–100 % of the patches are exact (5 seeds, both
    noise levels); on the astronaut image only ~64 % (vs 100 % for on-grid ±6): an inherent
    limit of the coarse stage-1 argmin. Stage 1 alone can find none of them."""
    radius = 5
    canvas = texture_canvas(192, seed=0, scales=(16, 32))
    motions = radius_motions(radius)
    bursts = torch.stack([make_frames(canvas, m, 128, unit=4, noise=noise, seed=i)
                          for i, m in enumerate(motions)])
    kw = dict(p=8, radius=radius, margin=radius + BORDER, step=4, propagate=False)
    moved = [0, 1, 3, 4]
    out = align_bursts(bursts, bicubic_features, **kw)
    hit = (out.offsets_lr == expected(motions, out.offsets_lr)).all(-1)[:, :, moved]
    assert hit.float().mean() >= 0.95
    coarse = align_bursts(bursts, bicubic_features, refine=False, **kw).offsets_lr
    assert not (coarse == expected(motions, coarse)).all(-1)[:, :, moved].any()


def test_recovers_shifts_on_a_natural_image_with_noise(make_frames):
    canvas = astronaut_canvas()
    motions = radius_motions(6)
    bursts = torch.stack([make_frames(canvas, m, 128, unit=4, noise=HIGH_NOISE, seed=i)
                          for i, m in enumerate(motions)])
    out = align_bursts(bursts, bicubic_features, p=8, radius=6, margin=6 + BORDER, step=4,
                       propagate=False)
    assert torch.equal(out.offsets_lr, expected(motions, out.offsets_lr))


def test_untrained_dsnet_matches_most_patches(make_frames):
    """An untrained DSNet (random orthogonal weights) still finds ±R shifts on a natural image,
    noise-free, for nearly all patches. Not all: its InstanceNorm uses each frame's own
    statistics, so features of two crops are not exact shifted copies (measured 99–100 % over
    six DSNet seeds; chance level is below 1 %)."""
    dsnet = DSNet(generator=torch.Generator().manual_seed(0))
    motions = radius_motions(6)
    canvas = astronaut_canvas()
    bursts = torch.stack([make_frames(canvas, m, 128, unit=4) for m in motions])
    out = align_bursts(bursts, dsnet, p=8, radius=6, margin=6 + BORDER, step=3, propagate=False)
    hit = (out.offsets_lr == expected(motions, out.offsets_lr)).all(-1)
    assert hit.float().mean() >= 0.95


@pytest.mark.parametrize("noise", [None, HIGH_NOISE], ids=["clean", "high"])
def test_propagation_reaches_beyond_the_radius(noise, make_frames):
    """Constant motion of 0.8·R per frame: the burst ends are 1.6·R from the reference, beyond
    the R + s reach of a search centred on 0; only temporal propagation recovers them."""
    radius = 10
    step = 8  # 0.8·R
    motions = [[(step * (t - 2), step * (t - 2)) for t in range(5)],
               [(step * (t - 2), -step * (t - 2)) for t in range(5)]]
    canvas = texture_canvas(352, seed=2)
    bursts = torch.stack([make_frames(canvas, m, 224, unit=4, noise=noise, seed=i)
                          for i, m in enumerate(motions)])
    kw = dict(p=8, radius=radius, margin=2 * step + BORDER, step=8)
    out = align_bursts(bursts, bicubic_features, propagate=True, **kw)
    assert torch.equal(out.offsets_lr, expected(motions, out.offsets_lr))

    plain = align_bursts(bursts, bicubic_features, propagate=False, **kw)
    want = expected(motions, plain.offsets_lr)
    hit = (plain.offsets_lr == want).all(-1)  # (B, K, N)
    assert hit[:, :, 1:4].all()  # within reach: found without propagation too
    assert not hit[:, :, [0, 4]].any()  # 1.6·R: out of reach without propagation


def test_search_grid_is_symmetric():
    assert search_offsets(6, 2).tolist() == [-6, -4, -2, 0, 2, 4, 6]
    assert search_offsets(5, 2).tolist() == [-6, -4, -2, 0, 2, 4, 6]  # R rounded up
    assert search_offsets(0, 2).tolist() == [0]

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 3, 2, 32, 32, generator=g)
    frames = torch.randn(1, 3, 4, 128, 128, generator=g)
    out = coarse_align(feats, frames, frames, 1, torch.tensor([[[12, 12]]]), 8, 6)
    cands = out.stage1.candidates[0, 0, 0]  # frame 0, centred on 0
    assert {tuple(c) for c in cands.tolist()} == {(y, x) for y in range(-6, 7, 2)
                                                  for x in range(-6, 7, 2)}
    winner = out.stage1.candidates[0, 0, 0, out.stage1.distances[0, 0, 0].argmin()]
    rel = out.stage2.candidates[0, 0, 0] - winner
    assert {tuple(c) for c in rel.tolist()} == {(y, x) for y in range(-2, 3)
                                                for x in range(-2, 3)}


def test_patch_at_the_last_row_and_column_keeps_zero_motion(make_frames):
    """The official strict ``<`` rejected the zero-motion candidate of a patch ending on the
    last LR row/column; here it is valid and wins on a static burst."""
    canvas = texture_canvas(128, seed=3)
    bursts = make_frames(canvas, 3, 128, unit=4, noise=HIGH_NOISE)[None]  # static, noisy
    feats = bicubic_features(bursts[0])[None]  # (1, 3, 4, 32, 32)
    hl, p = 32, 8
    origins = torch.tensor([[[hl - p, hl - p], [0, 0]]])
    out = coarse_align(feats, bursts, bursts, 1, origins, p, 6, propagate=False)
    assert torch.equal(out.offsets_lr, torch.zeros_like(out.offsets_lr))
    s1 = out.stage1
    cands, valid = s1.candidates[0, :, 0], s1.valid[0, :, 0]  # frame 0, (K, M, ...)
    for k, sign in ((0, -1), (1, 1)):  # bottom-right patch: only dy, dx <= 0 fit; top-left: >= 0
        allowed = ((sign * cands[k]) >= 0).all(-1)
        assert torch.equal(valid[k], allowed)
        assert int(valid[k].sum()) == 16  # 4 × 4 of the 7 × 7 grid
    assert torch.isinf(s1.distances[0, :, 0][~valid]).all()
    assert torch.equal(out.frames[0, 0, 0], bursts[0, 0, :, 4 * (hl - p):, 4 * (hl - p):])


def test_soft_selection_tends_to_hard_and_weights_are_normalised():
    g = torch.Generator().manual_seed(4)
    b, n, hl = 2, 4, 24
    feats = torch.randn(b, n, 3, hl, hl, generator=g)
    frames = torch.rand(b, n, 4, 4 * hl, 4 * hl, generator=g)
    noise = torch.rand(b, n, 4, 4 * hl, 4 * hl, generator=g)
    origins = torch.tensor([[[0, 0], [10, 12], [20, 3]], [[5, 20], [20, 20], [9, 0]]])
    hard = coarse_align(feats, frames, noise, 1, origins, 4, 5)
    sharp = coarse_align(feats, frames, noise, 1, origins, 4, 5, temperature=1e-6)
    assert torch.equal(sharp.offsets_lr, hard.offsets_lr)
    torch.testing.assert_close(sharp.frames, hard.frames, rtol=0, atol=1e-6)
    torch.testing.assert_close(sharp.noise, hard.noise, rtol=0, atol=1e-6)

    soft = coarse_align(feats, frames, noise, 1, origins, 4, 5, temperature=1e-2)
    for st in (soft.stage1, soft.stage2):
        searched = st.searched  # every frame but the reference
        assert searched[:, :, 1].logical_not().all() and searched[:, :, [0, 2, 3]].all()
        total = st.weights.sum(-1)
        torch.testing.assert_close(total[searched], torch.ones_like(total[searched]))
        assert (st.weights[~st.valid] == 0).all()
        assert (~st.valid[searched]).any()  # the border patches do have invalid candidates
        torch.testing.assert_close(st.weights[searched],
                                   match_weights(st.distances[searched], 1e-2))
    assert soft.stage2.weights.amax(-1)[soft.stage2.searched].min() < 0.99  # really soft
    # the soft patch is the weighted sum of the candidate crops (checked for one patch)
    w, c = soft.stage2.weights[1, 0, 3], soft.stage2.candidates[1, 0, 3]
    crops = [frames[1, 3, :, 4 * (5 + dy):4 * (5 + dy) + 16, 4 * (20 + dx):4 * (20 + dx) + 16]
             if ok else torch.zeros(4, 16, 16)
             for (dy, dx), ok in zip(c.tolist(), soft.stage2.valid[1, 0, 3].tolist())]
    mixed = (w[:, None, None, None] * torch.stack(crops)).sum(0)
    torch.testing.assert_close(soft.frames[1, 0, 3], mixed)


def test_nma_distance_is_eq1():
    mad = torch.tensor([3.0, 4.0, 100.0])
    valid = torch.tensor([True, True, False])
    d = nma_distances(mad, valid)
    torch.testing.assert_close(d[:2], torch.tensor([0.6, 0.8]))  # / ||(3, 4)|| = 5
    assert d[2] == float("inf")


def test_guide_distances_use_the_same_candidates():
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(1, 3, 2, 16, 16, generator=g)
    frames = torch.rand(1, 3, 4, 64, 64, generator=g)
    origins = torch.tensor([[[0, 0], [6, 7]]])
    same = coarse_align(feats, frames, frames, 1, origins, 4, 4, guide=feats)
    for st in (same.stage1, same.stage2):
        assert torch.equal(st.guide_distances, st.distances)
    guide = bilinear_guide(frames.flatten(0, 1)).unflatten(0, (1, 3))
    other = coarse_align(feats, frames, frames, 1, origins, 4, 4, guide=guide)
    gd = other.stage1.guide_distances
    assert torch.equal(torch.isinf(gd), ~other.stage1.valid)
    assert not torch.allclose(gd[other.stage1.valid], other.stage1.distances[other.stage1.valid])


def test_gradients_reach_every_dsnet_parameter():
    """Soft (training) mode: a loss on the aligned frames, on the weights (one-hot style) and on
    the guide distances (L_BM style) reaches every DSNet parameter except the bias of the last
    conv, which the InstanceNorm right after it cancels exactly (in the official net too)."""
    g = torch.Generator().manual_seed(6)
    dsnet = DSNet(generator=g)
    b, n, h = 1, 3, 64
    clean = texture_canvas(h, seed=6).expand(b * n, 4, h, h)
    noisy = (clean + 0.02 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    feats = dsnet(noisy).unflatten(0, (b, n))
    guide = bilinear_guide(clean).unflatten(0, (b, n))
    frames = noisy.unflatten(0, (b, n))
    origins = torch.tensor([[[0, 0], [4, 6], [8, 8]]])
    out = coarse_align(feats, frames, frames, 1, origins, 8, 4, temperature=0.1, guide=guide)
    st = out.stage2
    rows = st.searched
    loss = (out.frames - out.frames[:, :, 1:2].detach()).square().mean()
    loss = loss + (st.weights.var(-1)[rows] - 1 / st.weights.shape[-1]).abs().sum()
    d, gd = st.distances[st.valid], st.guide_distances[st.valid]
    loss = loss + (d - gd).square().sum()
    loss.backward()
    for name, prm in dsnet.named_parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name
        if name == "simple_block.6.bias":
            assert prm.grad.abs().max() < 1e-6
        else:
            assert prm.grad.abs().sum() > 0, name


@pytest.mark.parametrize("temperature", [None, 0.05], ids=["hard", "soft"])
def test_loop_reference_gives_identical_results(temperature):
    g = torch.Generator().manual_seed(7)
    b, n, c, hl, wl = 2, 4, 3, 20, 24
    dt = torch.float64  # no float32 near-ties between the two summation orders
    feats = torch.randn(b, n, c, hl, wl, generator=g, dtype=dt)
    frames = torch.randn(b, n, 4, 4 * hl, 4 * wl, generator=g, dtype=dt)
    noise = torch.rand(b, n, 4, 4 * hl, 4 * wl, generator=g, dtype=dt)
    guide = torch.randn(b, n, 2, hl, wl, generator=g, dtype=dt)
    origins = torch.tensor([[[0, 0], [16, 20], [8, 8]], [[3, 5], [10, 2], [16, 0]]])
    kw = dict(temperature=temperature, guide=guide)
    fast = coarse_align(feats, frames, noise, 1, origins, 4, 3, **kw)
    slow = coarse_align_loop(feats, frames, noise, 1, origins, 4, 3, **kw)
    assert torch.equal(fast.offsets_lr, slow.offsets_lr)
    assert (fast.offsets_lr[:, :, 2] != 0).any()  # frame 3 was searched around moved centres
    torch.testing.assert_close(fast.frames, slow.frames)
    torch.testing.assert_close(fast.noise, slow.noise)
    for a, r in ((fast.stage1, slow.stage1), (fast.stage2, slow.stage2)):
        assert torch.equal(a.candidates, r.candidates)
        assert torch.equal(a.valid, r.valid)
        torch.testing.assert_close(a.distances, r.distances)
        torch.testing.assert_close(a.weights, r.weights)
        torch.testing.assert_close(a.guide_distances, r.guide_distances)


def test_without_refinement_stage1_selects():
    g = torch.Generator().manual_seed(8)
    feats = torch.randn(1, 3, 2, 16, 16, generator=g)
    frames = torch.rand(1, 3, 4, 64, 64, generator=g)
    out = coarse_align(feats, frames, frames, 1, torch.tensor([[[6, 6]]]), 4, 4, refine=False,
                       propagate=False)
    assert out.stage2 is None
    assert (out.offsets_lr % 2 == 0).all()  # on the stride-2 grid
    dy, dx = (6 + out.offsets_lr[0, 0, 0]).tolist()
    assert torch.equal(out.frames[0, 0, 0], frames[0, 0, :, 4 * dy:4 * dy + 16, 4 * dx:4 * dx + 16])
    w = out.stage1.weights[0, 0, 0]
    assert w.sum() == 1 and w.max() == 1  # one-hot


def test_bad_inputs_raise():
    feats = torch.zeros(1, 3, 2, 16, 16)
    frames = torch.zeros(1, 3, 4, 64, 64)
    origins = torch.tensor([[[0, 0]]])
    with pytest.raises(BurstFormatError, match="frames"):
        coarse_align(feats, frames[..., :60], frames[..., :60], 1, origins, 4, 2)
    with pytest.raises(BurstFormatError, match="origins"):
        coarse_align(feats, frames, frames, 1, torch.tensor([[[13, 0]]]), 4, 2)
    with pytest.raises(BurstFormatError, match="noise"):
        coarse_align(feats, frames, frames[:, :2], 1, origins, 4, 2)
    with pytest.raises(ConfigError, match="temperature"):
        coarse_align(feats, frames, frames, 1, origins, 4, 2, temperature=0.0)
    with pytest.raises(ConfigError, match="reference"):
        coarse_align(feats, frames, frames, 3, origins, 4, 2)
