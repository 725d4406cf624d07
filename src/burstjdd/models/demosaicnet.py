"""Gharbi et al. 2016 Bayer demosaicnet ("Deep joint demosaicking and denoising", SIGGRAPH Asia
2016), the noise-free Bayer model released with the MIT-licensed ``demosaicnet`` package.

Its pretrained weights ship inside burstjdd, converted once from that package's ``bayer.pth``
into safetensors (:func:`convert`, run by ``python -m burstjdd.models.demosaicnet``), so neither
the package nor a pickle is needed at run time. Used by the ``dmn`` and ``hdrplus_dmn`` baselines
and by the residual base of the ``compact`` model (:func:`burstjdd.models.jddb.residual_base`).
"""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load as _st_load
from safetensors.torch import save_file
from torch import Tensor, nn

from burstjdd.errors import BurstFormatError, WeightsError
from burstjdd.raw.cfa import colour_masks

__all__ = ["PAD", "DemosaicNet", "convert", "demosaic", "load_pretrained", "pretrained_state"]

WEIGHTS_FILE = "demosaicnet_bayer.safetensors"
# sha256 of the bundled file: a damaged or replaced file is refused, never parsed.
WEIGHTS_SHA256 = "0c689ab65ef4414869343b466be94359631aa1d434b252a336abe25a8d91c034"
# Border lost by the unpadded network (31 px per side), rounded up to keep the Bayer phase.
PAD = 32


class DemosaicNet(nn.Module):
    """The Bayer demosaicnet (``BayerDemosaick`` of the ``demosaicnet`` package: depth 15, width
    64, unpadded convolutions; same parameter names), 560,886 parameters.

    Input (B, 3, H, W): a GRBG mosaic split into its colour channels (zeros elsewhere);
    output (B, 3, H - 62, W - 62): every unpadded convolution eats into the border.
    """

    def __init__(self, depth: int = 15, width: int = 64) -> None:
        super().__init__()
        self.width = width
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["pack_mosaic"] = nn.Conv2d(3, 4, 2, stride=2)
        for i in range(depth):
            n_in = 4 if i == 0 else width
            n_out = 2 * width if i == depth - 1 else width
            layers[f"conv{i + 1}"] = nn.Conv2d(n_in, n_out, 3)
            layers[f"relu{i + 1}"] = nn.ReLU(inplace=True)
        self.main_processor = nn.Sequential(layers)
        self.residual_predictor = nn.Conv2d(width, 12, 1)
        self.upsampler = nn.ConvTranspose2d(12, 3, 2, stride=2, groups=3)
        self.fullres_processor = nn.Sequential(
            OrderedDict(
                post_conv=nn.Conv2d(6, width, 3),
                post_relu=nn.ReLU(inplace=True),
                output=nn.Conv2d(width, 3, 1),
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        features = self.main_processor(x)  # (B, 2 width, H/2 - 30, W/2 - 30)
        filtered = features[:, : self.width] * features[:, self.width :]
        upsampled = self.upsampler(self.residual_predictor(filtered))  # (B, 3, H - 60, W - 60)
        crop = (x.shape[-1] - upsampled.shape[-1]) // 2
        skip = x[..., crop : crop + upsampled.shape[-2], crop : crop + upsampled.shape[-1]]
        return self.fullres_processor(torch.cat([skip, upsampled], 1))


def demosaic(net: nn.Module, raw: Tensor, gains: Tensor | None = None) -> Tensor:
    """Demosaic linear RGGB mosaics (..., H, W), H and W even and >= 4, with ``net``.

    The network was trained on sRGB-like images, so the mosaic is multiplied by the per-channel
    ``gains`` (3,) (white balance; None: 1, which changed the result by < 0.01 dB on held-out
    bursts) and gamma-encoded (x^(1/2.2)) before it, decoded and divided by the gains after it.
    The GRBG layout it expects is an RGGB mosaic flipped left-right; borders are reflected by
    ``PAD`` px (an even amount keeps the Bayer phase). -> (..., 3, H, W) linear camera RGB,
    raw's dtype/device (the net runs in its own dtype).
    """
    lead, (h, w) = raw.shape[:-2], raw.shape[-2:]
    if min(h, w) < 4 or h % 2 or w % 2:
        raise BurstFormatError(f"demosaicnet needs even image sides of at least 4 px, got {h}x{w}")
    gain_map = torch.ones(3, 1, 1, dtype=raw.dtype, device=raw.device) if gains is None \
        else gains.to(raw).reshape(3, 1, 1)
    planes = colour_masks(raw.reshape(-1, h, w), "RGGB") * gain_map  # (B, 3, H, W)
    encoded = planes.clamp_min(0.0) ** (1.0 / 2.2)
    grbg = _reflect_pad(encoded.flip(-1), PAD)
    dtype = next(net.parameters()).dtype
    out = net(grbg.to(dtype))[..., 1:-1, 1:-1].to(raw.dtype).flip(-1)  # (B, 3, H, W)
    return ((out.clamp_min(0.0) ** 2.2) / gain_map).reshape(*lead, 3, h, w)


def _reflect_pad(x: Tensor, pad: int) -> Tensor:
    """Reflect-pad (B, C, H, W) by ``pad`` (even) px per side, in several even steps where the
    image is smaller than the pad: an even reflection keeps the Bayer phase of every pixel."""
    while pad > 0:
        step = min(pad, (min(x.shape[-2:]) - 1) // 2 * 2)
        x = F.pad(x, (step,) * 4, mode="reflect")
        pad -= step
    return x


def _bundled_path() -> Path:
    return Path(str(resources.files("burstjdd.models").joinpath("data", WEIGHTS_FILE)))


def pretrained_state() -> dict[str, Tensor]:
    """The bundled pretrained state dict (float32), sha256-verified before it is parsed;
    WeightsError when the file is missing or damaged."""
    path = _bundled_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the bundled demosaicnet weights "
                           f"({exc.strerror}); reinstall burstjdd") from None
    if hashlib.sha256(data).hexdigest() != WEIGHTS_SHA256:
        raise WeightsError(f"{path}: sha256 mismatch, the bundled demosaicnet weights are "
                           "damaged; reinstall burstjdd")
    return _st_load(data)


def load_pretrained(net: DemosaicNet) -> DemosaicNet:
    """Copy the bundled pretrained weights into ``net`` (in place; dtype/device kept)."""
    with torch.no_grad():
        net.load_state_dict(pretrained_state(), strict=True)
    return net


def convert(source: str | Path, target: str | Path) -> str:
    """Convert the ``demosaicnet`` package's ``bayer.pth`` (loaded with weights_only: no pickled
    code runs) into a safetensors file; returns its sha256."""
    state = torch.load(source, map_location="cpu", weights_only=True)
    DemosaicNet().load_state_dict(state, strict=True)  # every key and shape checked
    save_file({k: v.float().contiguous() for k, v in state.items()}, str(target))
    return hashlib.sha256(Path(target).read_bytes()).hexdigest()


if __name__ == "__main__":  # python -m burstjdd.models.demosaicnet [bayer.pth]
    import importlib.util

    if len(sys.argv) > 1:
        src = Path(sys.argv[1])
    else:
        spec = importlib.util.find_spec("demosaicnet")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("pip install --no-deps demosaicnet, or pass the path of bayer.pth")
        src = Path(next(iter(spec.submodule_search_locations))) / "data" / "bayer.pth"
    print(convert(src, _bundled_path()))
