"""sRGB -> linear camera RGB, after Brooks et al., "Unprocessing Images for Learned Raw
Denoising" (CVPR 2019), as used by the JDD-B training and test data (docs/method.md §5,
docs/official-network.md §5-6).

Metadata are sampled into an :class:`IspParams` (explicit ``torch.Generator``), then applied by
the deterministic :func:`unprocess`. :func:`process` is its forward twin with the tone curve;
the metric ISP (no tone curve) is :func:`burstjdd.raw.color.render`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from burstjdd.checks import check_shape
from burstjdd.errors import ConfigError
from burstjdd.raw.color import (
    apply_ccm,
    gamma_expand,
    inverse_smoothstep,
    invert_gains,
    render,
    safe_invert_gains,
    smoothstep,
)

# XYZ -> camera matrices of four cameras, from Brooks et al.'s released code.
XYZ2CAMS: tuple[tuple[tuple[float, ...], ...], ...] = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.613, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.838, -0.263, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.097, 0.1581, 0.5181)),
)

# Linear sRGB -> XYZ, D65 white.
RGB2XYZ: tuple[tuple[float, ...], ...] = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)

# Highlight inflection of the safe inverse gains (pixels with channel mean above it are
# not inverted exactly).
INFLECTION = 0.9


@dataclass(frozen=True, eq=False)
class IspParams:
    """Camera metadata of one synthetic burst (float32 CPU tensors; floats for the gains).

    rgb2cam (3, 3): linear sRGB -> camera RGB, rows sum to 1 (white stays white).
    cam2rgb (3, 3): its inverse, white-balanced camera RGB -> linear sRGB.
    rgb_gain: global brightening; red_gain, blue_gain: white balance.
    """

    rgb2cam: Tensor
    cam2rgb: Tensor
    rgb_gain: float
    red_gain: float
    blue_gain: float

    def __post_init__(self) -> None:
        for name in ("rgb2cam", "cam2rgb"):
            m = torch.as_tensor(getattr(self, name), dtype=torch.float32, device="cpu")
            check_shape(m, ("3", "3"), what=f"IspParams.{name}", error=ConfigError)
            object.__setattr__(self, name, m)
        for name in ("rgb_gain", "red_gain", "blue_gain"):
            value = float(getattr(self, name))
            if not value > 0.0:
                raise ConfigError(f"IspParams.{name}: expected a positive gain, got {value}")
            object.__setattr__(self, name, value)

    @property
    def wb(self) -> Tensor:
        """(3,) float32 forward gains [red, 1, blue] * rgb_gain, as :func:`render` applies them."""
        gains = torch.tensor([self.red_gain, 1.0, self.blue_gain], dtype=torch.float32)
        return gains * self.rgb_gain


def rgb2cam_from_xyz2cam(xyz2cam: Tensor) -> Tensor:
    """sRGB -> camera matrix from an XYZ -> camera one (e.g. a DNG ColorMatrix).

    xyz2cam (..., 3, 3) -> xyz2cam @ RGB2XYZ with each row divided by its sum, so that sRGB
    white maps to camera white (1, 1, 1). Computed in xyz2cam's dtype.
    """
    rgb2xyz = torch.tensor(RGB2XYZ, dtype=xyz2cam.dtype, device=xyz2cam.device)
    rgb2cam = xyz2cam @ rgb2xyz
    return rgb2cam / rgb2cam.sum(dim=-1, keepdim=True)


def _params_from_xyz2cam(
    xyz2cam: Tensor, rgb_gain: float, red_gain: float, blue_gain: float
) -> IspParams:
    # float64, so that cam2rgb is the inverse of rgb2cam to float32 precision.
    rgb2cam = rgb2cam_from_xyz2cam(xyz2cam.double())
    return IspParams(
        rgb2cam=rgb2cam.float(),
        cam2rgb=torch.linalg.inv(rgb2cam).float(),
        rgb_gain=rgb_gain,
        red_gain=red_gain,
        blue_gain=blue_gain,
    )


def sample_isp_params(generator: torch.Generator) -> IspParams:
    """Draw Brooks et al.'s random metadata (one set per burst), all from ``generator``.

    xyz2cam: convex combination of the four :data:`XYZ2CAMS` with weights U(1e-8, 1e8)
    normalised to sum 1; rgb_gain = 1 / N(0.8, 0.1); red_gain ~ U(1.9, 2.4);
    blue_gain ~ U(1.5, 1.9). Draws are float64, in this order, on the generator's device.
    """

    def uniform(n: int, low: float, high: float) -> Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=generator.device)
        return (low + (high - low) * u).cpu()

    weights = uniform(len(XYZ2CAMS), 1e-8, 1e8)
    weights = weights / weights.sum()
    xyz2cam = torch.einsum("n,nij->ij", weights, torch.tensor(XYZ2CAMS, dtype=torch.float64))
    normal = torch.randn(1, generator=generator, dtype=torch.float64, device=generator.device)
    rgb_gain = 1.0 / (0.8 + 0.1 * normal.item())
    red_gain = uniform(1, 1.9, 2.4).item()
    blue_gain = uniform(1, 1.5, 1.9).item()
    return _params_from_xyz2cam(xyz2cam, rgb_gain, red_gain, blue_gain)


def test_isp_params() -> IspParams:
    """The fixed metadata of the synthetic test protocol (docs/protocol.md "Synthetic test
    bursts"; the official test scripts, docs/official-network.md §6).

    xyz2cam = the first Brooks matrix, red gain 2.0, blue gain 1.7, rgb gain 1.0.
    """
    return _params_from_xyz2cam(torch.tensor(XYZ2CAMS[0]), 1.0, 2.0, 1.7)


test_isp_params.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def _linear_camera(srgb: Tensor, params: IspParams) -> Tensor:
    """White-balanced linear camera RGB of an sRGB image (unprocess before its gains)."""
    # inverse_smoothstep clamps to [0, 1] first (step 1 of Brooks et al.)
    return apply_ccm(gamma_expand(inverse_smoothstep(srgb)), params.rgb2cam)


def unprocess(srgb: Tensor, params: IspParams) -> Tensor:
    """sRGB image -> linear camera RGB (Brooks et al., Sec. 3), deterministic given ``params``.

    clamp [0, 1] -> inverse smoothstep -> gamma expansion (2.2) -> rgb2cam -> safe inverse
    gains (forward gains ``params.wb``) -> clamp [0, 1]. srgb (..., 3, H, W) in [0, 1] ->
    (..., 3, H, W) in [0, 1], same dtype/device.

    Saturation: information is lost where the safe inverse gains leave the exact inverse
    (channel mean of the camera RGB above 0.9, to keep highlights white) or where a clamp
    clips a channel; :func:`saturation_mask` marks these pixels. Everywhere else
    ``process(unprocess(x, p), p, tone=True)`` gives back x up to rounding.
    """
    return safe_invert_gains(_linear_camera(srgb, params), params.wb, INFLECTION).clamp(0.0, 1.0)


def saturation_mask(srgb: Tensor, params: IspParams) -> Tensor:
    """Pixels that :func:`unprocess` does not invert exactly: (..., 3, H, W) -> bool (..., H, W).

    True where the input is outside [0, 1], where the camera RGB has channel mean above 0.9
    (highlight-preserving gains), or where a channel of the camera RGB, before or after the
    inverse gains, is outside [0, 1] (clipped by unprocess's clamp or by the ISP's clamps).
    """
    out_of_range = ((srgb < 0) | (srgb > 1)).any(dim=-3)
    camera = _linear_camera(srgb, params)
    raw = invert_gains(camera, params.wb)
    clipped = ((camera < 0) | (camera > 1) | (raw > 1)).any(dim=-3)
    return out_of_range | clipped | (camera.mean(dim=-3) > INFLECTION)


def process(camera_rgb: Tensor, params: IspParams, tone: bool = False) -> Tensor:
    """Forward ISP with ``params``: :func:`render` (gains ``params.wb``, ``params.cam2rgb``,
    gamma), then the smoothstep tone curve if ``tone``. With ``tone=True`` it inverts
    :func:`unprocess` outside :func:`saturation_mask`. camera_rgb (..., 3, H, W) -> sRGB.
    """
    srgb = render(camera_rgb, params.wb, params.cam2rgb)
    return smoothstep(srgb) if tone else srgb
