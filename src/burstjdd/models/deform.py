"""Modulated deformable convolution (DCNv2) with two interchangeable backends.

``deform_conv2d`` follows ``torchvision.ops.deform_conv2d`` exactly (arguments, offset layout,
sampling convention) and runs either torchvision's kernel, where torchvision imports and the op
works on the input's device, or a pure-PyTorch implementation (``grid_sample`` + one matmul).
The official checkpoints use the same layout (docs/official-network.md §2.3 (b)), so both
backends run them unchanged.

Sampling convention (both backends): output pixel (i, j), kernel tap k = a·kw + b of deformable
group g samples the input at

    row = i·stride_h − pad_h + a·dil_h + offset[:, 2(g·kh·kw + k)]
    col = j·stride_w − pad_w + b·dil_w + offset[:, 2(g·kh·kw + k) + 1]

by bilinear interpolation with zeros outside the image, multiplies it by
``mask[:, g·kh·kw + k]`` and the tap's weight.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from burstjdd.checks import check_shape
from burstjdd.errors import ConfigError

from .blocks import LRELU_SLOPE

__all__ = ["BACKENDS", "DCNv2Pack", "deform_conv2d", "resolve_backend", "torchvision_available"]

BACKENDS = ("auto", "torchvision", "torch")


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


@functools.lru_cache(maxsize=None)
def torchvision_available(device_type: str = "cpu") -> bool:
    """Whether ``torchvision.ops.deform_conv2d`` imports and runs on ``device_type``.

    Probed once per device type and process (a tiny forward); any failure means "no"."""
    try:
        from torchvision.ops import deform_conv2d as tv_deform_conv2d

        x = torch.ones(1, 1, 3, 3, device=device_type)
        weight = torch.ones(1, 1, 3, 3, device=device_type)
        offset = torch.zeros(1, 18, 1, 1, device=device_type)
        mask = torch.ones(1, 9, 1, 1, device=device_type)
        out = tv_deform_conv2d(x, offset, weight, mask=mask)
        return bool(out.shape == (1, 1, 1, 1))
    except Exception:  # noqa: BLE001 - an unusable torchvision of any kind means "use ours"
        return False


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(
            f"unknown deformable-conv backend {backend!r}; valid: {', '.join(BACKENDS)}"
        )


def resolve_backend(backend: str, device_type: str) -> str:
    """Map ``backend`` ("auto" | "torchvision" | "torch") to the one that will run."""
    _check_backend(backend)
    if backend == "auto":
        return "torchvision" if torchvision_available(device_type) else "torch"
    if backend == "torchvision" and not torchvision_available(device_type):
        raise ConfigError(
            f"deformable-conv backend 'torchvision' requested but torchvision.ops.deform_conv2d "
            f"does not import or run on {device_type!r}; use backend='torch' or 'auto'"
        )
    return backend


def deform_conv2d(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    backend: str = "auto",
) -> Tensor:
    """Modulated deformable convolution (Zhu et al., DCNv2), torchvision's semantics.

    x (B, C, H, W); offset (B, 2·G·kh·kw, Ho, Wo) in input pixels, channel 2(g·kh·kw + k) =
    Δrow, 2(g·kh·kw + k) + 1 = Δcol; weight (O, C, kh, kw) (one conv group); bias (O,); mask
    (B, G·kh·kw, Ho, Wo) or None (all ones). G deformable groups split C into G equal slices.
    Returns (B, O, Ho, Wo).
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    _check_shapes(x, offset, weight, bias, mask, stride, padding, dilation)
    if resolve_backend(backend, x.device.type) == "torchvision":
        from torchvision.ops import deform_conv2d as tv_deform_conv2d

        return tv_deform_conv2d(
            x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask
        )
    return _deform_conv2d_torch(x, offset, weight, bias, mask, stride, padding, dilation)


def _check_shapes(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    mask: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> None:
    """Raise ConfigError naming the shapes when the arguments do not fit together."""
    # The ranks first; how the sizes relate (groups, output size) is reported below, all
    # problems in one message.
    check_shape(x, ("B", "C", "H", "W"), what="deform_conv2d: x", error=ConfigError)
    check_shape(offset, ("B", "2·G·kh·kw", "Ho", "Wo"), what="deform_conv2d: offset",
                error=ConfigError)
    check_shape(weight, ("O", "C", "kh", "kw"), what="deform_conv2d: weight", error=ConfigError)
    b, c, h, w = x.shape
    o, cw, kh, kw = weight.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    taps = kh * kw
    groups = offset.shape[1] // (2 * taps) if offset.shape[1] % (2 * taps) == 0 else 0
    problems = []
    if cw != c:
        problems.append(f"weight in-channels {cw} != x channels {c} (one conv group only)")
    if groups == 0 or c % groups:
        problems.append(
            f"offset channels {offset.shape[1]} are not 2·G·{taps} with G dividing {c}"
        )
    if tuple(offset.shape) != (b, offset.shape[1], ho, wo):
        problems.append(f"offset {tuple(offset.shape)} does not match output ({b}, ·, {ho}, {wo})")
    if mask is not None and groups and tuple(mask.shape) != (b, groups * taps, ho, wo):
        problems.append(f"mask {tuple(mask.shape)} != ({b}, {groups * taps}, {ho}, {wo})")
    if bias is not None and tuple(bias.shape) != (o,):
        problems.append(f"bias {tuple(bias.shape)} != ({o},)")
    if problems:
        raise ConfigError("deform_conv2d: " + "; ".join(problems))


# Samples per pass of the pure-PyTorch kernel are chosen so that its largest temporary, the
# column tensor, stays under this many elements: allocations above glibc's mmap threshold (at
# most 32 MiB) are returned to the OS when freed and page-faulted in again on every call, which
# cost more than the arithmetic (measured: 0.4 of 0.75 s for 10 frames of 32 channels at 128²).
_COLUMN_ELEMENTS = 1 << 22


def _deform_conv2d_torch(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    mask: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """Pure-PyTorch DCNv2: ``grid_sample`` builds the (B, C·kh·kw, Ho·Wo) column tensor
    (bilinear, zeros outside the image: torchvision's convention), the mask scales it and a
    batched matmul contracts it with the weight; a few samples at a time (bounded temporaries).
    Differentiable w.r.t. x, offset, mask, weight and bias."""
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    taps = kh * kw
    groups = offset.shape[1] // (2 * taps)

    # Positions in float32 at least: half precision cannot hold pixel coordinates of large
    # images, nor a sub-pixel position beyond 2 px, so under bf16/fp16 autocast the grid and
    # the sampling stay float32 too.
    pos_dtype = torch.promote_types(offset.dtype, torch.float32)
    dev = x.device
    tap_row = (torch.arange(kh, device=dev, dtype=pos_dtype) * dilation[0]).repeat_interleave(kw)
    tap_col = (torch.arange(kw, device=dev, dtype=pos_dtype) * dilation[1]).repeat(kh)
    out_row = torch.arange(ho, device=dev, dtype=pos_dtype) * stride[0] - padding[0]
    out_col = torch.arange(wo, device=dev, dtype=pos_dtype) * stride[1] - padding[1]
    # grid_sample wants coordinates normalised by the image size (align_corners=False: pixel p
    # is at (2p+1)/size - 1). Zero-padding the input to power-of-two sizes (zeros outside the
    # image either way) makes that normalisation and grid_sample's inverse exact in binary
    # floating point, so integer positions sample exactly one pixel, as torchvision's kernel does.
    hp, wp = 1 << (h - 1).bit_length(), 1 << (w - 1).bit_length()
    x_pad = F.pad(x, (0, wp - w, 0, hp - h)) if (hp, wp) != (h, w) else x
    base_row = (2 * (tap_row.view(taps, 1, 1) + out_row.view(1, ho, 1)) + 1) / hp - 1  # (K,Ho,1)
    base_col = (2 * (tap_col.view(taps, 1, 1) + out_col.view(1, 1, wo)) + 1) / wp - 1  # (K,1,Wo)
    w_flat = weight.reshape(1, o, c * taps)
    step = max(1, _COLUMN_ELEMENTS // (c * taps * ho * wo))
    out = torch.cat([
        _deform_columns_matmul(x_pad[i : i + step], offset[i : i + step],
                               None if mask is None else mask[i : i + step], w_flat, groups,
                               (base_row, base_col), (hp, wp), pos_dtype)
        for i in range(0, b, step)]) if b > step else _deform_columns_matmul(
        x_pad, offset, mask, w_flat, groups, (base_row, base_col), (hp, wp), pos_dtype)
    if bias is not None:
        out = out + bias.view(1, o, 1)
    return out.view(b, o, ho, wo)


def _deform_columns_matmul(x_pad: Tensor, offset: Tensor, mask: Tensor | None, w_flat: Tensor,
                           groups: int, base: tuple[Tensor, Tensor], size: tuple[int, int],
                           pos_dtype: torch.dtype) -> Tensor:
    """One pass of :func:`_deform_conv2d_torch` over B samples: x_pad (B, C, Hp, Wp) padded to
    powers of two ``size``, offset (B, 2·G·K, Ho, Wo), mask (B, G·K, Ho, Wo) or None, w_flat
    (1, O, C·K), base (normalised grid positions of the taps without offset: rows (K, Ho, 1),
    cols (K, 1, Wo)) → (B, O, Ho·Wo), without bias."""
    b, c, hp, wp = x_pad.shape
    ho, wo = offset.shape[-2:]
    taps = base[0].shape[0]
    off = offset.to(pos_dtype).view(b, groups, taps, 2, ho, wo)
    # 2/size is a power of two: the normalisation of the offset is exact
    grid = torch.stack((base[1] + off[:, :, :, 1] * (2 / wp), base[0] + off[:, :, :, 0] * (2 / hp)),
                       dim=-1).view(b * groups, taps * ho, wo, 2)
    columns = F.grid_sample(
        x_pad.reshape(b * groups, c // groups, hp, wp).to(pos_dtype), grid, mode="bilinear",
        padding_mode="zeros", align_corners=False,
    ).view(b, groups, c // groups, taps, ho * wo)  # (B, G, Cg, K, Ho·Wo)
    if mask is not None:
        scale = mask.to(pos_dtype).view(b, groups, 1, taps, ho * wo)
        # in place where no gradient needs the unscaled columns (inference): no new tensor
        columns = columns.mul_(scale) if not torch.is_grad_enabled() else columns * scale
    # (B, G, Cg, K, L) -> (B, C·K, L): channel-major then tap, as weight.view(O, C·K). bmm
    # rather than matmul: the same product without matmul's large fixed overhead on CPU.
    columns = columns.to(x_pad.dtype).reshape(b, c * taps, ho * wo)
    return torch.bmm(w_flat.expand(b, *w_flat.shape[1:]), columns)


class DCNv2Pack(nn.Module):
    """Deformable conv whose offsets and mask are predicted from a separate feature map.

    ``conv_offset_mask`` (k×k conv, in → G·3·k², bias, zero-initialised) maps the offset
    feature to three equal chunks: offsets = cat(chunk1, chunk2), mask = σ(chunk3); so a fresh
    pack is a plain conv with mask 0.5. Main weight U(±1/sqrt(in·k²)), zero bias (official
    DCN_sep / BasicSR DCNv2Pack; docs/official-network.md §2.3 (b)). ``extra_offset_layers``
    conv3×3+LReLU layers (default init) transform the offset feature first: the ``deep_ra``
    ablation.

    forward(x (B, in, H, W), offset_feature (B, in, H, W)) → (B, out, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        deformable_groups: int = 8,
        extra_offset_layers: int = 0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if in_channels % deformable_groups:
            raise ConfigError(
                f"DCNv2Pack: in_channels {in_channels} not divisible by "
                f"deformable_groups {deformable_groups}"
            )
        _check_backend(backend)
        self.kernel_size = kernel_size
        self.deformable_groups = deformable_groups
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        if extra_offset_layers > 0:
            layers: list[nn.Module] = []
            for _ in range(extra_offset_layers):
                layers += [nn.Conv2d(in_channels, in_channels, 3, 1, 1), nn.LeakyReLU(LRELU_SLOPE)]
            self.offset_layers: nn.Sequential | None = nn.Sequential(*layers)
        else:
            self.offset_layers = None
        self.conv_offset_mask = nn.Conv2d(
            in_channels,
            deformable_groups * 3 * kernel_size * kernel_size,
            kernel_size,
            padding=kernel_size // 2,
            bias=True,
        )
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def offsets_and_mask(self, offset_feature: Tensor) -> tuple[Tensor, Tensor]:
        """(B, in, H, W) → offsets (B, 2·G·k², H, W) in pixels, mask (B, G·k², H, W) in
        (0, 1)."""
        if self.offset_layers is not None:
            offset_feature = self.offset_layers(offset_feature)
        o1, o2, m = torch.chunk(self.conv_offset_mask(offset_feature), 3, dim=1)
        return torch.cat((o1, o2), dim=1), torch.sigmoid(m)

    def forward(self, x: Tensor, offset_feature: Tensor) -> Tensor:
        offset, mask = self.offsets_and_mask(offset_feature)
        pad = self.kernel_size // 2
        return deform_conv2d(
            x, offset, self.weight, self.bias, mask, stride=1, padding=pad, backend=self.backend
        )
