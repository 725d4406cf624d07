"""Training losses of the two-stage alignment network (paper Eq. 5–9, docs/method.md §4).

L = L_r + β·L_ip + ρ·L_one-hot + η·L_BM, with β = 1, ρ = 1e5, η = 1e3 (:class:`LossWeights`).

Reduction, everywhere in this module: every term is SUMMED over all elements of one sample
(channels, pixels, patches, frames, candidates), then AVERAGED over the batch. The paper's weights
were tuned against sums over one 3×128×128 GT crop (docs/official-network.md §4: the official
code sums over the whole batch of 1 sample per GPU), so this reduction keeps ρ and η meaningful
at any batch size, and duplicating every sample of a batch leaves every loss value unchanged.

Deliberate differences from the official code (docs/official-network.md §4, §8 items 2 and 13):

* the "linear" term of L_r and L_ip compares WHITE-BALANCED images, WB(x̂) against WB(x), out of
  place. That is what the official code effectively trains with (its WB helper scales its input
  in place before the linear term is evaluated); we do it on purpose and without the side effect;
* the mask of L_ip sits OUTSIDE the Charbonnier root, as paper Eq. 7 writes it (the code puts it
  inside, so masked-out pixels there still cost ε each);
* L_BM is the squared L2 distance of paper Eq. 6 (the code uses a Charbonnier sum, close to L1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.checks import check_same_shape, check_shape
from burstjdd.errors import BurstFormatError, ConfigError
from burstjdd.raw.color import apply_gains, render

CHARBONNIER_EPS = 1e-3
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # R, G, B (official edge_map_generate)
TERMS = ("reconstruction", "interpolation", "one_hot", "block_matching")


@dataclass(frozen=True)
class LossWeights:
    """Weights of paper Eq. 9, L = L_r + beta·L_ip + rho·L_one-hot + eta·L_BM (official values),
    calibrated for per-sample sums over a 3×128×128 GT crop (see the module docstring)."""

    beta: float = 1.0
    rho: float = 1e5
    eta: float = 1e3

    def __post_init__(self) -> None:
        for name in ("beta", "rho", "eta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"loss.{name} must be a number >= 0, got {value!r}")


def batch_mean_of_sums(x: Tensor) -> Tensor:
    """x (B, ...) → scalar: sum over everything but the batch axis, then mean over the batch."""
    return x.reshape(x.shape[0], -1).sum(1).mean()


def charbonnier(x: Tensor, y: Tensor, eps: float = CHARBONNIER_EPS) -> Tensor:
    """Elementwise Charbonnier penalty sqrt((x − y)² + eps²), same shape as the broadcast inputs.

    Not reduced: the losses below reduce it by a per-sample SUM and a MEAN over the batch.
    """
    return torch.sqrt((x - y) ** 2 + eps * eps)


_IMAGES = ("B", "3", "H", "W")


def _check_image_meta(rgb: Tensor, wb: Tensor, ccm: Tensor, what: str) -> None:
    """Raise BurstFormatError unless rgb is (B, 3, H, W), wb (B, 3) and ccm (B, 3, 3)."""
    dims = check_shape(rgb, _IMAGES, what=f"{what}: images")
    check_shape(wb, ("B", "3"), what=f"{what}: wb", sizes=dims)
    check_shape(ccm, ("B", "3", "3"), what=f"{what}: ccm", sizes=dims)


def isp_srgb(rgb: Tensor, wb: Tensor, ccm: Tensor) -> Tensor:
    """The training ISP Γ: white balance → clamp → CCM → clamp → gamma 1/2.2 (no tone curve).

    rgb (B, 3, H, W) linear camera RGB; wb (B, 3) per-sample gains; ccm (B, 3, 3) per-sample
    white-balanced camera RGB → linear sRGB → (B, 3, H, W) sRGB in [0, 1]. This is
    :func:`burstjdd.raw.color.render`: gradients flow wherever a clamp is inactive, and the gamma
    is applied to max(·, 1e-8) so its gradient stays finite at 0. Elementwise, not reduced.
    """
    _check_image_meta(rgb, wb, ccm, "isp_srgb")
    return render(rgb, wb, ccm)


def reconstruction_loss(pred: Tensor, gt: Tensor, wb: Tensor, ccm: Tensor) -> Tensor:
    """L_r (paper Eq. 8): Σ Charb(WB(x̂), WB(x)) + Σ Charb(Γ(x̂), Γ(x)), ε = 1e-3.

    The linear term is computed after white balance (unclamped), which is what the official code
    effectively trains with (module docstring). pred, gt (B, 3, H, W) linear camera RGB; wb (B, 3);
    ccm (B, 3, 3) → scalar: per-sample sum, mean over the batch.
    """
    check_same_shape(pred, gt, what="reconstruction_loss: prediction", like_what="ground truth")
    _check_image_meta(gt, wb, ccm, "reconstruction_loss")
    linear = charbonnier(apply_gains(pred, wb), apply_gains(gt, wb))
    srgb = charbonnier(isp_srgb(pred, wb, ccm), isp_srgb(gt, wb, ccm))
    return batch_mean_of_sums(linear) + batch_mean_of_sums(srgb)


def gaussian_kernel(size: int = 5, sigma: float = 1.0, *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """(size, size) Gaussian normalised to sum 1, variance sigma² + 1e-6 (official gau_kernel)."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    sq = ax[:, None] ** 2 + ax[None, :] ** 2
    g = torch.exp(-sq / (2 * (sigma * sigma + 1e-6)))
    return (g / g.sum()).to(dtype=dtype, device=device)


def high_frequency_mask(gt: Tensor) -> Tensor:
    """Soft high-frequency mask m_h of L_ip (paper Eq. 7; docs/official-network.md §4), no
    gradient.

    gray = 0.2989 R + 0.5870 G + 0.1140 B of the GT (linear camera RGB, BEFORE white balance);
    g = 5×5 Gaussian σ = 1 applied with zero padding 2 (so image borders look high-frequency, as
    in the official code); hf = g ∗ |gray − g ∗ gray|; min–max normalised per image
    ((hf − min) / (max − min + 1e-6), in [0, 1)); repeated over 3 channels.
    gt (B, 3, H, W) → (B, 3, H, W).
    """
    check_shape(gt, _IMAGES, what="high_frequency_mask: gt")
    gt = gt.detach()
    weights = torch.tensor(GRAY_WEIGHTS, dtype=gt.dtype, device=gt.device)
    gray = torch.einsum("c,bchw->bhw", weights, gt)[:, None]  # (B, 1, H, W)
    kernel = gaussian_kernel(dtype=gt.dtype, device=gt.device)[None, None]  # (1, 1, 5, 5)
    hf = F.conv2d((gray - F.conv2d(gray, kernel, padding=2)).abs(), kernel, padding=2)
    lo = hf.amin(dim=(-2, -1), keepdim=True)
    hi = hf.amax(dim=(-2, -1), keepdim=True)
    return ((hf - lo) / (hi - lo + 1e-6)).expand(-1, 3, -1, -1)


def interpolation_loss(pred_interp: Tensor, gt: Tensor, mask: Tensor, wb: Tensor,
                       ccm: Tensor) -> Tensor:
    """L_ip (paper Eq. 7): Σ m ⊙ Charb(WB(x̂ⁱ), WB(x)) + Σ m ⊙ Charb(Γ(x̂ⁱ), Γ(x)).

    The mask multiplies the Charbonnier value (outside the root, as the paper writes; the official
    code puts it inside), so pixels with m = 0 cost nothing and get no gradient. pred_interp, gt
    (B, 3, H, W) linear camera RGB; mask (B, 3, H, W) or broadcastable, e.g. from
    :func:`high_frequency_mask`; wb (B, 3); ccm (B, 3, 3) → scalar: per-sample sum, batch mean.
    """
    check_same_shape(pred_interp, gt, what="interpolation_loss: prediction",
                     like_what="ground truth")
    _check_image_meta(gt, wb, ccm, "interpolation_loss")
    linear = mask * charbonnier(apply_gains(pred_interp, wb), apply_gains(gt, wb))
    srgb = mask * charbonnier(isp_srgb(pred_interp, wb, ccm), isp_srgb(gt, wb, ccm))
    return batch_mean_of_sums(linear) + batch_mean_of_sums(srgb)


def one_hot_loss(weights: Tensor, valid: Tensor, searched: Tensor | None = None) -> Tensor:
    """L_one-hot (paper Eq. 5): Σ over searched vectors of |Σ w − 1| + |Var(w) − 1/M|.

    weights, valid (B, ..., M): the selection weights of each searched (patch, frame) vector and
    which of its M slots are real candidates (M varies per vector); Var is the unbiased variance
    over the valid candidates. A vector counts when it has at least 2 valid candidates (and
    ``searched`` (B, ...) bool says so, when given): the reference frame's rows, which
    :class:`~burstjdd.models.dpbm.MatchDiagnostics` fills with valid = False and weights 0, drop
    out. A one-hot vector over M candidates has unbiased variance exactly 1/M, so it costs 0; a
    uniform one costs 1/M. → scalar: per-sample sum over vectors, mean over the batch.
    """
    _check_vectors(weights, valid, "one_hot_loss")
    v = valid.to(weights.dtype)
    w = weights * v  # slots that are not candidates carry no weight, whatever they hold
    m = v.sum(-1)  # (B, ...) M per vector
    active = m >= 2
    if searched is not None:
        active = active & searched.to(torch.bool)
    m_safe = torch.where(active, m, torch.full_like(m, 2.0))  # keeps 1/M and 1/(M−1) finite
    mean = w.sum(-1) / m_safe
    var = (v * (w - mean[..., None]) ** 2).sum(-1) / (m_safe - 1)
    per_vector = (w.sum(-1) - 1).abs() + (var - 1 / m_safe).abs()
    return batch_mean_of_sums(torch.where(active, per_vector, torch.zeros_like(per_vector)))


def block_matching_loss(distances: Tensor, guide_distances: Tensor, valid: Tensor) -> Tensor:
    """L_BM (paper Eq. 6): Σ over valid candidates of (d_noisy − d_clean)².

    distances (B, ..., M) NMA distances on the DSNet features of the noisy frames; guide_distances
    (B, ..., M) the same candidates on the clean guide (+inf where invalid, masked here);
    valid (B, ..., M) bool. This is the paper's squared L2; the official code uses a Charbonnier
    sum (close to L1) on the normalised scores instead. → scalar: per-sample sum, batch mean.
    """
    _check_vectors(distances, valid, "block_matching_loss")
    check_same_shape(guide_distances, distances, what="block_matching_loss: guide_distances",
                     like_what="distances")
    # masked_fill (not a product) so the +inf of invalid slots never turns into NaN values/grads
    diff = distances.masked_fill(~valid, 0.0) - guide_distances.masked_fill(~valid, 0.0)
    return batch_mean_of_sums(diff**2)


def total_loss(out: Any, batch: Mapping[str, Tensor], weights: LossWeights = LossWeights(),
               use_bm: bool = True) -> tuple[Tensor, dict[str, float | None]]:
    """Training objective (paper Eq. 9): L = L_r + β L_ip + ρ L_one-hot + η L_BM.

    out: a :class:`~burstjdd.models.jddb.JDDBOutput` (duck-typed): ``image`` (B, 3, H, W),
    ``interp`` (B, 3, H, W) or None, ``ca`` None or a CoarseAlignment whose ``stage1`` / ``stage2``
    (None without refinement) MatchDiagnostics hold (B, K, N, M) ``weights``, ``valid``,
    ``distances`` and ``guide_distances`` (None without a clean guide). batch: "gt" (B, 3, H, W)
    linear camera RGB, "wb" (B, 3), "ccm" (B, 3, 3). use_bm: L_BM is on (the first third of
    training, :func:`burstjdd.train.schedule.bm_loss_active`).

    L_one-hot and L_BM add up the stage-1 and stage-2 diagnostics (both come from the DSNet).
    A term whose inputs are absent (no interp output, no coarse alignment, no guide distances,
    or ``use_bm`` False) is skipped. Each term is a per-sample sum, mean over the batch.
    Returns (L as a 0-dim tensor, {"total": L, "reconstruction": L_r, "interpolation": L_ip,
    "one_hot": L_one-hot, "block_matching": L_BM}) with the UNWEIGHTED term values as floats and
    None for skipped terms.
    """
    try:
        gt, wb, ccm = batch["gt"], batch["wb"], batch["ccm"]
    except KeyError as exc:
        raise BurstFormatError(f"total_loss: the batch has no {exc.args[0]!r} entry") from None
    gt, wb, ccm = _at_least_fp32(gt), _at_least_fp32(wb), _at_least_fp32(ccm)
    terms: dict[str, Tensor | None] = dict.fromkeys(TERMS)
    terms["reconstruction"] = reconstruction_loss(_at_least_fp32(out.image), gt, wb, ccm)
    if out.interp is not None:
        terms["interpolation"] = interpolation_loss(
            _at_least_fp32(out.interp), gt, high_frequency_mask(gt), wb, ccm)
    stages = [] if out.ca is None else [s for s in (out.ca.stage1, out.ca.stage2) if s is not None]
    stages = [s for s in stages if s.weights.shape[-1] > 0]  # M = 0: nothing was searched
    if stages:
        terms["one_hot"] = sum(one_hot_loss(_at_least_fp32(s.weights), s.valid) for s in stages)
    guided = [s for s in stages if s.guide_distances is not None]
    if use_bm and guided:
        terms["block_matching"] = sum(
            block_matching_loss(_at_least_fp32(s.distances), _at_least_fp32(s.guide_distances),
                                s.valid) for s in guided)

    factors = {"reconstruction": 1.0, "interpolation": weights.beta, "one_hot": weights.rho,
               "block_matching": weights.eta}
    loss = sum(factors[k] * v for k, v in terms.items() if v is not None)
    report: dict[str, float | None] = {"total": float(loss.detach())}
    report.update({k: None if v is None else float(v.detach()) for k, v in terms.items()})
    return loss, report


def _at_least_fp32(x: Tensor) -> Tensor:
    """fp16/bf16 (autocast outputs) → fp32: sums over ~5e4 elements need the mantissa."""
    return x.float() if x.is_floating_point() and x.element_size() < 4 else x


def _check_vectors(values: Tensor, valid: Tensor, what: str) -> None:
    """Raise BurstFormatError unless values are (B, ..., M) and valid a bool mask like them."""
    check_shape(values, ("B", "*", "M"), what=f"{what}: values")
    check_same_shape(valid, values, what=f"{what}: valid", like_what="values")
    if valid.dtype != torch.bool:
        raise BurstFormatError(f"{what}: valid must be a bool mask, got {valid.dtype}")


__all__ = [
    "CHARBONNIER_EPS", "LossWeights", "batch_mean_of_sums", "block_matching_loss", "charbonnier",
    "gaussian_kernel", "high_frequency_mask", "interpolation_loss", "isp_srgb", "one_hot_loss",
    "reconstruction_loss", "total_loss",
]
