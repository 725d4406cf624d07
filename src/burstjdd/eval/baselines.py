"""Classical baselines for burst joint denoising and demosaicking (docs/protocol.md
"Baselines").

Every baseline is a callable ``method(burst: RawBurst) -> Tensor (3, H, W)`` returning linear
camera RGB in the burst's own CFA orientation (the restorer's signature), to be rendered with
:func:`burstjdd.eval.metrics.protocol_srgb`. Internally the mosaics are brought to RGGB with
:func:`~burstjdd.raw.cfa.to_rggb` and the output is flipped back with ``from_rggb``.

=========  ===================================================================================
name       method
=========  ===================================================================================
bilinear   reference frame, bilinear demosaic, no denoising
malvar     reference frame, GAT + non-local means denoising, Malvar et al. 2004 demosaic
menon      reference frame, GAT + non-local means denoising, Menon et al. 2007 demosaic
dmn        reference frame, GAT + non-local means denoising, Gharbi et al. 2016 demosaicnet
mean       unaligned temporal mean of all frames, bilinear demosaic
hdrplus    HDR+ tile alignment and Wiener merge (Hasinoff et al. 2016), GAT + non-local means
           at the remaining noise level, Malvar demosaic
hdrplus_dmn  the same merge and denoiser, then demosaicnet: the strongest classical pipeline
=========  ===================================================================================

The denoiser (:func:`denoise_raw`) is scikit-image's non-local means on the packed raw (the
four half-resolution Bayer planes, denoised jointly) after the generalised Anscombe transform
with the burst's noise level, inverted with Makitalo and Foi's closed-form unbiased inverse,
followed by the inverse of the clipped-mean function, which removes the bias that clipping
the noisy raw at 0 leaves in dark pixels. ``hdrplus`` uses the same denoiser after its merge,
so that against ``malvar`` it differs only by the burst. The HDR+ alignment and merge live in
:mod:`burstjdd.raw.merge` (shared with the model's residual base), demosaicnet and its bundled
weights in :mod:`burstjdd.models.demosaicnet`. ``malvar``, ``menon`` and ``hdrplus`` need the
optional ``colour-demosaicing`` package; :func:`available_baselines` lists the baselines that
can run here, and calling one whose dependency is missing raises
:class:`BaselineUnavailableError` naming what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from burstjdd.errors import ConfigError
from burstjdd.models.demosaicnet import DemosaicNet, demosaic, load_pretrained
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.cfa import (
    demosaic_bilinear,
    from_rggb,
    to_rggb,
)
from burstjdd.raw.denoise import NlmParams, anscombe, denoise_raw, inverse_anscombe
from burstjdd.raw.merge import HdrPlusParams, Merged, align_tiles, hdrplus_merge, merge_and_denoise
from burstjdd.raw.noise import clipped_mean, invert_clipped_mean

__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineUnavailableError",
    "HdrPlusParams",
    "Merged",
    "NlmParams",
    "align_tiles",
    "anscombe",
    "available_baselines",
    "bilinear",
    "clipped_mean",
    "demosaic_bilinear",
    "demosaic_colour",
    "demosaic_dmn",
    "denoise_raw",
    "dmn",
    "get_baseline",
    "hdrplus",
    "hdrplus_dmn",
    "hdrplus_merge",
    "inverse_anscombe",
    "invert_clipped_mean",
    "malvar",
    "menon",
    "temporal_mean",
]


class BaselineUnavailableError(ConfigError):
    """A baseline was asked for whose optional dependency is not installed."""


# ---------------------------------------------------------------------------------------------
# Optional dependencies

_COLOUR_HINT = "colour-demosaicing is not installed (pip install 'burstjdd[baselines]')"


def _colour_missing() -> str | None:
    return _COLOUR_HINT if importlib.util.find_spec("colour_demosaicing") is None else None


def _import_colour() -> ModuleType:
    if _colour_missing():
        raise BaselineUnavailableError(_COLOUR_HINT)
    with warnings.catch_warnings():
        # colour-science warns at import time when matplotlib (plotting only) is absent
        warnings.simplefilter("ignore")
        return importlib.import_module("colour_demosaicing")


# ---------------------------------------------------------------------------------------------
# Demosaicking. Mosaics are RGGB (..., H, W); outputs (..., 3, H, W).

# Reflect padding by an even amount keeps the Bayer phase (the mirrored pixel has the colour
# of its site), unlike edge-duplicating padding, so borders are demosaicked like the interior.
_BORDER = 4


def demosaic_colour(raw: Tensor, method: str) -> Tensor:
    """Demosaic one RGGB mosaic (H, W) with colour-demosaicing: "malvar" or "menon".

    Malvar, He and Cutler 2004 (gradient-corrected linear filters) or Menon, Andriani and
    Calvagno 2007 (directional filtering with a posteriori decision, refining step on). Runs in
    float64 NumPy on the CPU; returns (3, H, W) in raw's dtype/device (values may leave [0, 1]).
    """
    functions = {
        "malvar": "demosaicing_CFA_Bayer_Malvar2004",
        "menon": "demosaicing_CFA_Bayer_Menon2007",
    }
    if method not in functions:
        raise ConfigError(f"unknown colour-demosaicing method {method!r}; expected malvar, menon")
    fn = getattr(_import_colour(), functions[method])
    padded = np.pad(raw.detach().cpu().double().numpy(), _BORDER, mode="reflect")
    rgb = np.asarray(fn(padded, "RGGB"))[_BORDER:-_BORDER, _BORDER:-_BORDER]  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).to(raw)


def demosaic_dmn(raw: Tensor, wb: Tensor) -> Tensor:
    """Demosaic one RGGB mosaic (H, W) with the pretrained demosaicnet (Gharbi et al. 2016,
    :func:`burstjdd.models.demosaicnet.demosaic`), white-balanced with ``wb`` (3,) before the
    network. (H, W) -> (3, H, W) linear camera RGB, raw's dtype/device; the noise-free model,
    so denoise first."""
    net = load_pretrained(DemosaicNet()).to(raw.device).eval()
    with torch.no_grad():
        return demosaic(net, raw, wb)


# ---------------------------------------------------------------------------------------------
# The baselines: RawBurst -> (3, H, W) linear camera RGB in the burst's orientation.


def _reference_rggb(burst: RawBurst) -> Tensor:
    return to_rggb(burst.raw[burst.ref], burst.cfa)  # (H, W)


def bilinear(burst: RawBurst) -> Tensor:
    """Bilinear demosaic of the reference frame, no denoising."""
    return from_rggb(demosaic_bilinear(_reference_rggb(burst)), burst.cfa)


def _denoised_reference(burst: RawBurst) -> Tensor:
    return denoise_raw(_reference_rggb(burst), burst.noise_level())


def malvar(burst: RawBurst) -> Tensor:
    """Reference frame: GAT + non-local means, then Malvar 2004."""
    return from_rggb(demosaic_colour(_denoised_reference(burst), "malvar"), burst.cfa)


def menon(burst: RawBurst) -> Tensor:
    """Reference frame: GAT + non-local means, then Menon 2007."""
    return from_rggb(demosaic_colour(_denoised_reference(burst), "menon"), burst.cfa)


def dmn(burst: RawBurst) -> Tensor:
    """Reference frame: GAT + non-local means, then demosaicnet (Gharbi 2016)."""
    return from_rggb(demosaic_dmn(_denoised_reference(burst), burst.wb), burst.cfa)


def temporal_mean(burst: RawBurst) -> Tensor:
    """Unaligned mean of all frames, then bilinear demosaic."""
    return from_rggb(demosaic_bilinear(to_rggb(burst.raw.mean(0), burst.cfa)), burst.cfa)


def _merged_denoised(burst: RawBurst) -> Tensor:
    """HDR+ alignment and Wiener merge of all frames onto the reference, then GAT + non-local
    means at the noise variance the merge leaves: an RGGB mosaic (H, W)."""
    noise = burst.noise_level()
    raw = to_rggb(burst.raw, burst.cfa)
    var = noise.shot * raw[burst.ref].clamp_min(0.0) + noise.read**2
    return merge_and_denoise(raw, var, burst.ref, HdrPlusParams(), noise)


def hdrplus(burst: RawBurst) -> Tensor:
    """HDR+ alignment and Wiener merge of all frames, GAT + non-local means at the noise
    variance the merge leaves, then Malvar 2004 (one frame: ``malvar`` up to rounding)."""
    return from_rggb(demosaic_colour(_merged_denoised(burst), "malvar"), burst.cfa)


def hdrplus_dmn(burst: RawBurst) -> Tensor:
    """As :func:`hdrplus`, with demosaicnet (Gharbi 2016) instead of Malvar: the strongest
    classical pipeline here (one frame: ``dmn`` up to rounding)."""
    return from_rggb(demosaic_dmn(_merged_denoised(burst), burst.wb), burst.cfa)


@dataclass(frozen=True)
class Baseline:
    """A registered baseline: ``baseline(burst) -> (3, H, W)`` linear camera RGB."""

    name: str
    description: str
    fn: Callable[[RawBurst], Tensor]
    missing: Callable[[], str | None] = lambda: None  # reason it cannot run, or None

    def unavailable_reason(self) -> str | None:
        """Why this baseline cannot run here (a missing optional dependency), or None."""
        return self.missing()

    def __call__(self, burst: RawBurst) -> Tensor:
        reason = self.missing()
        if reason is not None:
            raise BaselineUnavailableError(f"baseline {self.name!r} cannot run: {reason}")
        return self.fn(burst)


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("bilinear", "reference frame: bilinear demosaic, no denoising", bilinear),
        Baseline("malvar", "reference frame: GAT+NLM, Malvar 2004", malvar, _colour_missing),
        Baseline("menon", "reference frame: GAT+NLM, Menon 2007", menon, _colour_missing),
        Baseline("dmn", "reference frame: GAT+NLM, demosaicnet (Gharbi 2016)", dmn),
        Baseline("mean", "unaligned temporal mean of all frames, bilinear demosaic", temporal_mean),
        Baseline(
            "hdrplus",
            "HDR+ tile alignment + Wiener merge (Hasinoff 2016), GAT+NLM, Malvar 2004",
            hdrplus,
            _colour_missing,
        ),
        Baseline(
            "hdrplus_dmn",
            "HDR+ tile alignment + Wiener merge, GAT+NLM, demosaicnet (Gharbi 2016)",
            hdrplus_dmn,
        ),
    )
}


def get_baseline(name: str) -> Baseline:
    """The registered baseline ``name``; unknown names raise ``ConfigError`` listing them."""
    try:
        return BASELINES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}"
        ) from None


def available_baselines() -> list[str]:
    """Names of the baselines whose optional dependencies are installed (in registry order)."""
    return [name for name, b in BASELINES.items() if b.unavailable_reason() is None]
