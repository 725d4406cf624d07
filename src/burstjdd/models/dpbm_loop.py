"""Loop reference of :func:`burstjdd.models.dpbm.coarse_align`, for tests and benchmarks only.

Written the obvious way, in the style of the official code (docs/official-network.md §3, §8
item 17): Python loops over batch items, patches, frames and candidates, each candidate patch
sliced and compared on its own. Same arguments, candidate order, tie-breaking (first minimum)
and outputs as the vectorised version, with the official bugs fixed the same way (``<=``
validity, symmetric ranges). Not differentiable by design (it runs under ``torch.no_grad``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from burstjdd.models.dpbm import (
    CoarseAlignment,
    MatchDiagnostics,
    check_inputs,
    refine_offsets,
    search_offsets,
    visit_order,
)


def _search_one(feats_t: Tensor, guide_t: Tensor | None, ref_feat: Tensor,
                ref_guide: Tensor | None, oy: int, ox: int, centre: tuple[int, int],
                axis: list[int], patch_lr: int,
                temperature: float | None) -> tuple[list, list, list, list, list | None, int]:
    """One stage for one (sample, patch, frame): candidates, distances d, weights, validity,
    guide distances (Python lists in row-major (dy, dx) order) and the index of the best one."""
    hl, wl = feats_t.shape[-2:]
    p = patch_lr
    cands, mads, gmads, valid = [], [], [], []
    for dy in axis:
        for dx in axis:
            cy, cx = centre[0] + dy, centre[1] + dx
            y, x = oy + cy, ox + cx
            ok = 0 <= y and y + p <= hl and 0 <= x and x + p <= wl
            cands.append((cy, cx))
            valid.append(ok)
            if ok:
                mads.append(float((feats_t[:, y:y + p, x:x + p] - ref_feat).abs().mean()))
                if guide_t is not None:
                    gmads.append(float((guide_t[:, y:y + p, x:x + p] - ref_guide).abs().mean()))
            else:
                mads.append(math.inf)
                gmads.append(math.inf)

    def normalise(values: list[float]) -> list[float]:
        norm = max(math.sqrt(sum(v * v for v, ok in zip(values, valid) if ok)), 1e-12)
        return [v / norm if ok else math.inf for v, ok in zip(values, valid)]

    dist = normalise(mads)
    best = 0
    for i, d in enumerate(dist):
        if d < dist[best]:
            best = i
    if temperature is None:
        weights = [1.0 if i == best else 0.0 for i in range(len(dist))]
    else:
        top = -dist[best] / temperature
        exps = [math.exp(-d / temperature - top) if ok else 0.0 for d, ok in zip(dist, valid)]
        weights = [e / sum(exps) for e in exps]
    gdist = normalise(gmads) if guide_t is not None else None
    return cands, dist, weights, valid, gdist, best


@torch.no_grad()
def coarse_align_loop(feats: Tensor, frames: Tensor, noise: Tensor, ref: int, origins_lr: Tensor,
                      patch_lr: int, radius_lr: int, *, stride: int = 2, refine: bool = True,
                      propagate: bool = True, temperature: float | None = None, scale: int = 4,
                      guide: Tensor | None = None) -> CoarseAlignment:
    """Per-candidate loop implementation of ``coarse_align`` (same arguments and outputs)."""
    check_inputs(feats, frames, noise, ref, origins_lr, patch_lr, radius_lr, stride,
                 temperature, scale, guide)
    b_n, n = feats.shape[:2]
    k_n = origins_lr.shape[1]
    p, big = patch_lr, scale * patch_lr
    axis1, axis2 = search_offsets(radius_lr, stride).tolist(), refine_offsets(stride).tolist()
    m1, m2 = len(axis1) ** 2, len(axis2) ** 2

    def blank(m: int) -> dict[str, Tensor]:
        return {"candidates": torch.zeros(b_n, k_n, n, m, 2, dtype=torch.long),
                "distances": torch.full((b_n, k_n, n, m), math.inf, dtype=feats.dtype),
                "weights": torch.zeros(b_n, k_n, n, m, dtype=feats.dtype),
                "valid": torch.zeros(b_n, k_n, n, m, dtype=torch.bool),
                "guide_distances": torch.full((b_n, k_n, n, m), math.inf, dtype=feats.dtype)}

    diag1, diag2 = blank(m1), blank(m2)
    out_f = frames.new_zeros(b_n, k_n, n, frames.shape[2], big, big)
    out_m = noise.new_zeros(b_n, k_n, n, noise.shape[2], big, big)
    offsets = torch.zeros(b_n, k_n, n, 2, dtype=torch.long)

    def store(diag: dict[str, Tensor], b: int, k: int, t: int, res: tuple) -> None:
        cands, dist, weights, valid, gdist, _ = res
        diag["candidates"][b, k, t] = torch.tensor(cands)
        diag["distances"][b, k, t] = torch.tensor(dist)
        diag["weights"][b, k, t] = torch.tensor(weights)
        diag["valid"][b, k, t] = torch.tensor(valid)
        if gdist is not None:
            diag["guide_distances"][b, k, t] = torch.tensor(gdist)

    for b in range(b_n):
        for k in range(k_n):
            oy, ox = (int(v) for v in origins_lr[b, k])
            ref_feat = feats[b, ref, :, oy:oy + p, ox:ox + p]
            ref_guide = None if guide is None else guide[b, ref, :, oy:oy + p, ox:ox + p]
            out_f[b, k, ref] = frames[b, ref, :, scale * oy:scale * oy + big,
                                      scale * ox:scale * ox + big]
            out_m[b, k, ref] = noise[b, ref, :, scale * oy:scale * oy + big,
                                     scale * ox:scale * ox + big]
            chosen = {ref: (0, 0)}
            for t, prev in visit_order(n, ref):
                g_t = None if guide is None else guide[b, t]
                centre = chosen[prev] if propagate else (0, 0)
                res = _search_one(feats[b, t], g_t, ref_feat, ref_guide, oy, ox, centre, axis1,
                                  p, temperature)
                store(diag1, b, k, t, res)
                if refine:
                    res = _search_one(feats[b, t], g_t, ref_feat, ref_guide, oy, ox,
                                      res[0][res[5]], axis2,
                                      p, temperature)
                    store(diag2, b, k, t, res)
                cands, _, weights, valid, _, best = res
                chosen[t] = cands[best]
                offsets[b, k, t] = torch.tensor(chosen[t])
                for (cy, cx), w, ok in zip(cands, weights, valid):
                    if ok and w != 0.0:
                        y, x = scale * (oy + cy), scale * (ox + cx)
                        out_f[b, k, t] += w * frames[b, t, :, y:y + big, x:x + big]
                        out_m[b, k, t] += w * noise[b, t, :, y:y + big, x:x + big]

    def finish(diag: dict[str, Tensor]) -> MatchDiagnostics:
        return MatchDiagnostics(diag["candidates"], diag["distances"], diag["weights"],
                                diag["valid"], diag["guide_distances"] if guide is not None
                                else None)

    return CoarseAlignment(out_f, out_m, offsets, finish(diag1),
                           finish(diag2) if refine else None)
