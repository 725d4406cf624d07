"""Differentiable progressive block matching (DPBM): the coarse, patch-level alignment.

Paper: Guo et al., CVPR 2022, §3.2, Eq. 1–2 and Fig. 2; docs/method.md §3. Each reference patch
(p × p on the LR feature grid, P = scale·p packed pixels) is matched against every other frame
of the burst:

* distance (Eq. 1): D_i = mean |P_r − P_t,i| over C·p·p, normalised over the valid candidates
  of this (sample, patch, frame): d_i = D_i / max(||D||₂, 1e-12);
* weights (Eq. 2): w = softmax(−d / T) over the valid candidates (training), or the one-hot
  argmin (inference, ``temperature=None``);
* progressive search (Fig. 2): stage 1 scans the offsets −R..+R with stride s around a centre,
  stage 2 scans ±s with stride 1 around the stage-1 winner; the final weights pick the packed
  frame and noise-map patches: Σ_i w_i · y_t[S·(o + d_i) : S·(o + d_i) + P];
* temporal propagation: frames are visited outward from the reference (ref−1, …, 0 and
  ref+1, …, N−1) and each search is centred on the offset chosen for the previous frame in that
  direction, so the reach grows with the distance to the reference.

Differences from the official code, on purpose (docs/official-network.md §8, items 4, 5, 7,
17): a candidate is valid when its whole patch lies in the frame (``<=``, no off-by-one at the last
row/column); candidate ranges are symmetric (−R..+R and −s..+s, inclusive); offset 0 is the
reference crop itself (origins live on the LR grid); and nothing loops over candidates,
patches or batch items: each patch's search window is gathered by index arithmetic, all its
candidates are strided views (``unfold``) of that window, one L1 ``cdist`` gives every MAD, and
the selected packed patches are gathered the same way (and mixed with w by a batched
matrix product in soft mode).

A radius R that is not a multiple of the stride s is ROUNDED UP to the next multiple
(:func:`search_offsets`), so the stage-1 grid stays uniform, contains 0 and both ±R.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.checks import check_same_shape, check_shape
from burstjdd.errors import BurstFormatError, ConfigError

# Memory budget of one vectorised step. The cost copies every candidate patch once: C·p·p·M
# values per reference patch, budgeted ×2 (the distance kernel; autograd in training). UHD
# example (Hl=270, Wl=480, C=16, p=32, R=16, s=2): M = 17² = 289 candidates, 16·32·32·289 ≈
# 4.7 M values ≈ 19 MB float32 per patch, ~2.4 GB for the K ≈ 128 patches of one frame at once
# (×2 budgeted). So the patches are processed in memory-bounded groups (a loop over groups of
# ~7 patches for UHD, not over single patches), which keeps the peak near 256 MB; the 720p case
# (p=16, R=6: 4096·49 values ≈ 0.8 MB per patch) runs all 60 tiles in one group.
DEFAULT_CHUNK_BYTES = 1 << 28


@dataclass(frozen=True)
class MatchDiagnostics:
    """Everything one search stage looked at, for the losses (paper Eq. 5–6) and for analysis.

    The reference frame is not searched: its row has ``valid`` all False, ``weights`` 0,
    ``distances`` (and ``guide_distances``) +inf and ``candidates`` 0. Losses should keep only
    the searched rows (:attr:`searched`).
    """

    candidates: Tensor  # (B, K, N, M, 2) long, absolute LR offsets (dy, dx) tried
    distances: Tensor  # (B, K, N, M) NMA distance d (Eq. 1); +inf where invalid
    weights: Tensor  # (B, K, N, M) softmax(−d / T) (one-hot argmin when hard); 0 where invalid
    valid: Tensor  # (B, K, N, M) bool: the candidate patch lies inside the LR frame
    guide_distances: Tensor | None  # (B, K, N, M) same candidates on the guide features (L_BM)

    @property
    def searched(self) -> Tensor:
        """(B, K, N) bool: rows that were searched (every frame but the reference)."""
        return self.valid.any(-1)


@dataclass(frozen=True)
class CoarseAlignment:
    """Output of :func:`coarse_align`."""

    frames: Tensor  # (B, K, N, 4, P, P) aligned packed patches; ref = its own crop
    noise: Tensor  # (B, K, N, 4, P, P) noise-map patches with the same weights
    offsets_lr: Tensor  # (B, K, N, 2) long, chosen offsets on the LR grid (ref: 0)
    stage1: MatchDiagnostics
    stage2: MatchDiagnostics | None  # None when refine=False


@dataclass(frozen=True)
class _Stage:
    """One search stage of one frame, over the flattened queries Q = B·K."""

    candidates: Tensor  # (Q, M, 2) long absolute LR offsets
    distances: Tensor  # (Q, M)
    weights: Tensor  # (Q, M)
    valid: Tensor  # (Q, M) bool
    guide_distances: Tensor | None  # (Q, M)

    def best(self) -> Tensor:
        """(Q, 2) long: the candidate with the smallest distance (first one on ties)."""
        idx = self.distances.argmin(-1)
        return self.candidates[torch.arange(idx.shape[0], device=idx.device), idx]


# ---------------------------------------------------------------------------------------------
# small pure helpers (shared with the loop reference in dpbm_loop.py)


def search_offsets(radius_lr: int, stride: int) -> Tensor:
    """Stage-1 offsets along one axis: −R'..+R' with step s, R' = s·ceil(R/s) (R rounded UP to
    a multiple of the stride, so the grid is uniform, symmetric and contains 0, −R and +R).

    Returns (2R'/s + 1,) long, LR pixels.
    """
    r = stride * math.ceil(radius_lr / stride)
    return torch.arange(-r, r + 1, stride)


def refine_offsets(stride: int) -> Tensor:
    """Stage-2 offsets along one axis around the stage-1 winner: −s..+s, step 1. (2s+1,) long."""
    return torch.arange(-stride, stride + 1)


def offset_grid(axis: Tensor) -> Tensor:
    """All (dy, dx) pairs of a 1-D offset list, row-major (dy slowest). (n,) → (n², 2) long."""
    dy, dx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([dy.reshape(-1), dx.reshape(-1)], -1)


def visit_order(n_frames: int, ref: int) -> list[tuple[int, int]]:
    """Frames in search order with the frame each one is propagated from: outward from the
    reference, (ref−1, ref), (ref−2, ref−1), …, (0, 1), then (ref+1, ref), …, (N−1, N−2)."""
    left = [(t, t + 1) for t in range(ref - 1, -1, -1)]
    right = [(t, t - 1) for t in range(ref + 1, n_frames)]
    return left + right


def nma_distances(mad: Tensor, valid: Tensor) -> Tensor:
    """Normalised mean absolute difference, paper Eq. 1.

    mad (..., M) raw MADs D, valid (..., M) bool → d = D / max(||D over valid||₂, 1e-12), +inf
    where invalid (so argmin and softmax ignore those candidates).
    """
    norm = torch.linalg.vector_norm(mad.masked_fill(~valid, 0.0), dim=-1, keepdim=True)
    return torch.where(valid, mad / norm.clamp_min(1e-12), torch.full_like(mad, math.inf))


def match_weights(distances: Tensor, temperature: float | None) -> Tensor:
    """Selection weights, paper Eq. 2: softmax(−d / T) over the last axis, or the one-hot argmin
    when ``temperature`` is None. Invalid candidates (d = +inf) get exactly 0. (..., M)."""
    if temperature is None:
        onehot = F.one_hot(distances.argmin(-1), distances.shape[-1])
        return onehot.to(distances.dtype)
    return torch.softmax(-distances / temperature, dim=-1)


def check_inputs(feats: Tensor, frames: Tensor, noise: Tensor, ref: int, origins_lr: Tensor,
                 patch_lr: int, radius_lr: int, stride: int, temperature: float | None,
                 scale: int, guide: Tensor | None) -> None:
    """Validate the arguments of :func:`coarse_align`; one-line errors naming the problem."""
    if patch_lr < 1 or radius_lr < 0 or stride < 1 or scale < 1:
        raise ConfigError(f"coarse_align: need patch_lr >= 1, radius_lr >= 0, stride >= 1, "
                          f"scale >= 1; got {patch_lr}, {radius_lr}, {stride}, {scale}")
    if temperature is not None and not temperature > 0:
        raise ConfigError(f"coarse_align: temperature must be > 0 or None, got {temperature}")
    dims = check_shape(feats, ("B", "N", "C", "Hl", "Wl"), what="coarse_align: feats")
    b, n, hl, wl = (dims[k] for k in ("B", "N", "Hl", "Wl"))
    # frames lie on the grid the features were computed from: scale × finer
    check_shape(frames, ("B", "N", "C", "H", "W"), what="coarse_align: frames",
                sizes={"B": b, "N": n, "H": scale * hl, "W": scale * wl})
    check_same_shape(noise, frames, what="coarse_align: noise", like_what="frames")
    if guide is not None:
        check_shape(guide, ("B", "N", "C'", "Hl", "Wl"), what="coarse_align: guide", sizes=dims)
    if not 0 <= ref < n:
        raise ConfigError(f"coarse_align: reference index {ref} outside 0..{n - 1}")
    check_shape(origins_lr, ("B", "K", "2"), what="coarse_align: origins_lr", sizes={"B": b})
    if origins_lr.shape[1] < 1 or origins_lr.dtype.is_floating_point \
            or origins_lr.dtype == torch.bool:
        raise BurstFormatError(f"coarse_align: origins_lr must be an integer (B={b}, K>=1, 2) "
                               f"tensor, got {origins_lr.dtype} {tuple(origins_lr.shape)}")
    limit = torch.tensor([hl - patch_lr, wl - patch_lr], device=origins_lr.device)
    if bool(((origins_lr < 0) | (origins_lr > limit)).any()):
        raise BurstFormatError(f"coarse_align: patch origins must lie in [0, {hl - patch_lr}] × "
                               f"[0, {wl - patch_lr}] (LR frame {hl}×{wl}, patch {patch_lr})")


# ---------------------------------------------------------------------------------------------
# gathers (index arithmetic, no loops over patches)


def _crops(source: Tensor, batch_idx: Tensor, top: Tensor, left: Tensor, size: int,
           step: int = 1) -> Tensor:
    """Square crops by index arithmetic on a strided view (no copy until the gather).

    source (B, C, H, W); batch_idx (Q,); top/left (Q,) or (Q, M), in units of ``step`` pixels.
    Returns (Q, [M,] C, size, size): crop = source[b, :, step·top : step·top + size, …]; every
    crop must lie inside ``source``.
    """
    view = source.unfold(2, size, step).unfold(3, size, step)  # (B, C, nY, nX, size, size)
    b = batch_idx.reshape(-1, *([1] * (top.dim() - 1)))
    return view[b, :, top, left]


def _chunk_size(per_query_values: int, element_size: int, chunk_bytes: int) -> int:
    """How many queries fit the memory budget (at least one)."""
    return max(1, chunk_bytes // max(1, per_query_values * element_size))


def _channels_last_padded(x: Tensor, pad: int) -> Tensor:
    """(B, N, C, H, W) → zero-padded, channels-last (B, N, H + 2·pad, W + 2·pad, C), so that a
    candidate patch row (p pixels × C channels) is one contiguous run for the gathers below."""
    b, n = x.shape[:2]
    return F.pad(x.flatten(0, 1), (pad,) * 4).unflatten(0, (b, n)).permute(0, 1, 3, 4, 2) \
        .contiguous()


def _window_mad(source: Tensor, batch_idx: Tensor, top: Tensor, left: Tensor, ref: Tensor,
                n: int, step: int, chunk_bytes: int) -> Tensor:
    """Raw MAD (Eq. 1 numerator) of every candidate of an n × n grid with spacing ``step``.

    source (B, Hs, Ws, C) zero-padded channels-last features; batch_idx/top/left (Q,) top-left
    of each search window in ``source``; ref (Q, p, p, C) channels-last reference patches.
    Candidate j = (jy, jx) (row-major) is the patch at (top + jy·step, left + jx·step).
    Returns (Q, n²): mean |ref − candidate| over C·p·p.
    """
    q, p, _, c = ref.shape
    size = (n - 1) * step + p
    ar = torch.arange(size, device=source.device)
    # cdist(p=1) reads one contiguous copy of the candidates (Q, n², p·p·C) and sums
    # |ref − candidate| without materialising the difference.
    chunk = _chunk_size(2 * c * p * p * n * n, source.element_size(), chunk_bytes)
    out = []
    for q0 in range(0, q, chunk):  # loop over memory-bounded groups of patches
        sl = slice(q0, q0 + chunk)
        rows, cols = top[sl, None] + ar, left[sl, None] + ar  # (q, size)
        win = source[batch_idx[sl, None, None], rows[:, :, None], cols[:, None, :]]  # (q,s,s,C)
        cand = win.unfold(1, p, step).unfold(2, p, step)  # (q, n, n, C, p, p) view
        cand = cand.permute(0, 1, 2, 4, 5, 3).reshape(win.shape[0], n * n, p * p * c)
        dist = torch.cdist(ref[sl].reshape(win.shape[0], 1, -1), cand, p=1)  # (q, 1, n²)
        out.append(dist[:, 0] / (c * p * p))
    return out[0] if len(out) == 1 else torch.cat(out)


def _select(source: Tensor, batch_idx: Tensor, origins: Tensor, stage: _Stage, hard: bool,
            scale: int, patch_lr: int, chunk_bytes: int) -> Tensor:
    """Aligned packed patches of one frame: Σ_i w_i · source[b, :, S·(o+d_i) : S·(o+d_i)+P, …].

    source (B, C, H, W); origins (Q, 2) LR; stage over Q queries. Hard mode gathers only the
    winner. Returns (Q, C, P, P).
    """
    size = scale * patch_lr
    if hard:
        pos = origins + stage.best()  # (Q, 2) LR
        return _crops(source, batch_idx, pos[:, 0], pos[:, 1], size, step=scale)
    # Invalid candidates have weight exactly 0; clamp their positions so the gather stays in
    # range (their content does not matter).
    hl, wl = source.shape[-2] // scale, source.shape[-1] // scale
    hi = torch.tensor([hl - patch_lr, wl - patch_lr], device=source.device)
    pos = torch.minimum((origins[:, None] + stage.candidates).clamp_min(0), hi)  # (Q, M, 2) LR
    weights = stage.weights.to(source.dtype)
    m = pos.shape[1]
    chunk = _chunk_size(m * source.shape[1] * size * size, source.element_size(), chunk_bytes)
    out = []
    for q0 in range(0, pos.shape[0], chunk):  # loop over memory-bounded groups of patches
        sl = slice(q0, q0 + chunk)
        patches = _crops(source, batch_idx[sl], pos[sl, :, 0], pos[sl, :, 1], size, step=scale)
        mixed = torch.bmm(weights[sl, None], patches.flatten(2))  # (q, 1, C·P·P)
        out.append(mixed.view(patches.shape[0], *patches.shape[2:]))  # (q, C, P, P)
    return out[0] if len(out) == 1 else torch.cat(out)


# ---------------------------------------------------------------------------------------------
# the search


def _search(feats_t: Tensor, guide_t: Tensor | None, ref_feat: Tensor, ref_guide: Tensor | None,
            batch_idx: Tensor, origins: Tensor, centre: Tensor, axis: Tensor, step: int,
            pad: int, lr_shape: tuple[int, int], patch_lr: int, temperature: float | None,
            chunk_bytes: int) -> _Stage:
    """One stage for one frame: candidates centre + (dy, dx), dy, dx in ``axis`` (uniform with
    spacing ``step``), for all Q queries at once.

    feats_t (B, Hl+2·pad, Wl+2·pad, C) zero-padded channels-last features of frame t (guide_t
    likewise); ref_feat (Q, p, p, C) reference patches; origins, centre (Q, 2) long LR.
    """
    n = axis.numel()
    rel = offset_grid(axis.to(origins.device))  # (M, 2)
    candidates = centre[:, None] + rel  # (Q, M, 2)
    pos = origins[:, None] + candidates  # (Q, M, 2) candidate top-left, LR
    hi = torch.tensor([lr_shape[0] - patch_lr, lr_shape[1] - patch_lr], device=pos.device)
    valid = ((pos >= 0) & (pos <= hi)).all(-1)  # whole patch inside (<=: no off-by-one)
    top = origins + centre + int(axis[0]) + pad  # (Q, 2) search-window top-left in padded coords
    mad = _window_mad(feats_t, batch_idx, top[:, 0], top[:, 1], ref_feat, n, step, chunk_bytes)
    distances = nma_distances(mad, valid)
    guide_distances = None
    if guide_t is not None and ref_guide is not None:
        gmad = _window_mad(guide_t, batch_idx, top[:, 0], top[:, 1], ref_guide, n, step,
                           chunk_bytes)
        guide_distances = nma_distances(gmad, valid)
    return _Stage(candidates, distances, match_weights(distances, temperature), valid,
                  guide_distances)


def _diagnostics(stages: list[_Stage | None], b: int, k: int, m: int, dtype: torch.dtype,
                 device: torch.device, with_guide: bool) -> MatchDiagnostics:
    """Stack per-frame stages (None for the unsearched reference) into (B, K, N, M, ...)."""
    q = b * k
    inf = torch.full((q, m), math.inf, dtype=dtype, device=device)
    blank = _Stage(torch.zeros(q, m, 2, dtype=torch.long, device=device), inf,
                   torch.zeros(q, m, dtype=dtype, device=device),
                   torch.zeros(q, m, dtype=torch.bool, device=device), inf if with_guide else None)
    rows = [blank if s is None else s for s in stages]

    def stack(name: str) -> Tensor:
        t = torch.stack([getattr(r, name) for r in rows], 1)  # (Q, N, M, ...)
        return t.reshape(b, k, *t.shape[1:])

    return MatchDiagnostics(stack("candidates"), stack("distances"), stack("weights"),
                            stack("valid"), stack("guide_distances") if with_guide else None)


def coarse_align(feats: Tensor, frames: Tensor, noise: Tensor, ref: int, origins_lr: Tensor,
                 patch_lr: int, radius_lr: int, *, stride: int = 2, refine: bool = True,
                 propagate: bool = True, temperature: float | None = None, scale: int = 4,
                 guide: Tensor | None = None,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> CoarseAlignment:
    """Coarse alignment of K reference patches per burst by DPBM (paper §3.2, Eq. 1–2, Fig. 2).

    Args:
        feats: (B, N, C, Hl, Wl) matching features (DSNet output, or bicubic_features).
        frames: (B, N, 4, H, W) packed raw with H = scale·Hl, W = scale·Wl.
        noise: (B, N, 4, H, W) noise maps, selected with the same weights.
        ref: index of the reference frame.
        origins_lr: (B, K, 2) integer top-left (row, col) of each reference patch, LR pixels;
            the whole patch must lie inside the LR frame.
        patch_lr: p, patch side on the LR grid; packed patches are P = scale·p.
        radius_lr: R, stage-1 search radius in LR pixels (= full-res radius / 8); rounded up to
            a multiple of ``stride``.
        stride: s, stage-1 step; stage 2 searches ±s with step 1 around the stage-1 winner.
        refine: run stage 2 (its weights select the patch); else stage-1 weights select.
        propagate: centre each search on the offset chosen for the previous frame (outward from
            the reference); else every search is centred on 0.
        temperature: None = hard argmin (inference); a float T > 0 = softmax(−d/T) soft
            selection, differentiable w.r.t. ``feats`` (training).
        scale: packed pixels per LR pixel (4).
        guide: optional (B, N, C', Hl, Wl) features (clean raw, bilinear ×1/4) whose Eq. 1
            distances at the same candidates are returned as ``guide_distances`` (for L_BM).
        chunk_bytes: memory budget of one vectorised step (see DEFAULT_CHUNK_BYTES).

    Returns:
        CoarseAlignment with frames/noise (B, K, N, 4, P, P), offsets_lr (B, K, N, 2) long and
        the diagnostics of both stages (M = (2R'/s+1)² in stage 1, (2s+1)² in stage 2). The
        stage-1 winner that places stage 2 and the propagated centres are argmins (no gradient).
    """
    check_inputs(feats, frames, noise, ref, origins_lr, patch_lr, radius_lr, stride,
                 temperature, scale, guide)
    b, n, _, hl, wl = feats.shape
    k = origins_lr.shape[1]
    device = feats.device
    hard = temperature is None
    axis1, axis2 = search_offsets(radius_lr, stride), refine_offsets(stride)
    # Zero padding lets every search window exist; validity is tracked separately. Windows
    # reach R' (stage 1) or s (stage 2) beyond a valid centre.
    pad = max(int(axis1[-1]), stride if refine else 0)
    fpad = _channels_last_padded(feats, pad)  # (B, N, Hl + 2·pad, Wl + 2·pad, C)
    gpad = None if guide is None else _channels_last_padded(guide, pad)

    batch_idx = torch.arange(b, device=device).repeat_interleave(k)  # (Q,), Q = B·K
    origins = origins_lr.to(device=device, dtype=torch.long).reshape(b * k, 2)  # (Q, 2)
    ref_feat = _crops(feats[:, ref], batch_idx, origins[:, 0], origins[:, 1],
                      patch_lr).permute(0, 2, 3, 1).contiguous()  # (Q, p, p, C)
    ref_guide = None if guide is None else _crops(
        guide[:, ref], batch_idx, origins[:, 0], origins[:, 1], patch_lr
    ).permute(0, 2, 3, 1).contiguous()

    zero = torch.zeros_like(origins)
    chosen: dict[int, Tensor] = {ref: zero}  # (Q, 2) LR offset chosen per frame
    out_frames: list[Tensor | None] = [None] * n
    out_noise: list[Tensor | None] = [None] * n
    stages1: list[_Stage | None] = [None] * n
    stages2: list[_Stage | None] = [None] * n
    common = dict(batch_idx=batch_idx, origins=origins, pad=pad, lr_shape=(hl, wl),
                  patch_lr=patch_lr, temperature=temperature, chunk_bytes=chunk_bytes)
    for t, prev in visit_order(n, ref):  # a loop over the (few) frames only
        g_t = None if gpad is None else gpad[:, t]
        centre = chosen[prev] if propagate else zero
        s1 = _search(fpad[:, t], g_t, ref_feat, ref_guide, centre=centre, axis=axis1,
                     step=stride, **common)
        final = s1
        if refine:
            final = _search(fpad[:, t], g_t, ref_feat, ref_guide, centre=s1.best(), axis=axis2,
                            step=1, **common)
            stages2[t] = final
        stages1[t] = s1
        chosen[t] = final.best()
        out_frames[t] = _select(frames[:, t], batch_idx, origins, final, hard, scale, patch_lr,
                                chunk_bytes)
        out_noise[t] = _select(noise[:, t], batch_idx, origins, final, hard, scale, patch_lr,
                               chunk_bytes)

    size = scale * patch_lr  # the reference keeps its own crop (offset 0)
    out_frames[ref] = _crops(frames[:, ref], batch_idx, origins[:, 0], origins[:, 1], size,
                             step=scale)
    out_noise[ref] = _crops(noise[:, ref], batch_idx, origins[:, 0], origins[:, 1], size,
                            step=scale)
    offsets = torch.stack([chosen[t] for t in range(n)], 1).reshape(b, k, n, 2)
    diag = dict(b=b, k=k, dtype=feats.dtype, device=device, with_guide=guide is not None)
    return CoarseAlignment(
        frames=torch.stack(out_frames, 1).reshape(b, k, n, *out_frames[ref].shape[1:]),
        noise=torch.stack(out_noise, 1).reshape(b, k, n, *out_noise[ref].shape[1:]),
        offsets_lr=offsets,
        stage1=_diagnostics(stages1, m=axis1.numel() ** 2, **diag),
        stage2=_diagnostics(stages2, m=axis2.numel() ** 2, **diag) if refine else None,
    )
