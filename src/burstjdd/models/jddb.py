"""The two-stage alignment network for JDD-B (Guo et al., CVPR 2022), composed from a typed config.

Pipeline (docs/method.md §1): DSNet features → DPBM coarse alignment of reference patches
(``coarse``), then per-frame features → PCD refined alignment → bidirectional ConvGRU fusion →
learned 2× up-conversion → 3-scale UNet → linear camera RGB (``reconstruct``).

Top-level submodules and the official state-dict prefixes they correspond to
(docs/official-network.md §2.3 (f) "State-dict prefixes"; G = JDDB_BiGRU, DSNet =
CNN_downsampling):

====================  ==========================================================================
ours                  official
====================  ==========================================================================
dsnet.simple_block.*  DSNet checkpoint ``simple_block.{0,1,3,4,6}`` (None unless ca="dpbm")
feature_extract.*     G ``feature_extract`` (SimpleBlock: same ``simple_block.{i}`` inside)
feature_blocks.{i}.*  G ``feature_extract_acse{i+1}`` (ACNSeBlock, same inner names), i = 0..3
align.pyramid.*       G ``pcd_align.fea_L2_conv1/fea_L2_conv2/fea_L3_conv1/fea_L3_conv2``
                      = ``l2_down/l2_conv/l3_down/l3_conv``
align.l{L}_*          G ``pcd_align.pcd_align.L{L}_*_1``: offset_conv{k} → l{L}_offset_conv{k},
                      dcnpack → l{L}_dcn (``weight``, ``bias``, ``conv_offset_mask.*``; the
                      deep_ra ``l3_dcn.offset_layers.*`` have no official counterpart),
                      fea_conv → l{L}_fea_conv
fusion.cell.conv_z/r/q  G ``ConvBGRU.forward_net.convz/convr/convq``
fusion.conv_1x1       G ``ConvBGRU.conv_1x1``
feature_up            G ``feature_up``
unet.enc1_conv/enc1_att/down1          G ``conv_block_s1/acse_block_s1/pool1``
unet.enc2_conv/enc2_att/down2          G ``conv_block_s2/acse_block_s2/pool2``
unet.mid_conv1/mid_att/mid_conv2       G ``conv_block_s3/acse_block_s3/conv_block_s3_2``
unet.up1/dec1_conv/dec1_att            G ``up1/conv_block_s4/acse_block_s4``
unet.up2/dec2_conv                     G ``up2/conv_block_s5``
====================  ==========================================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from burstjdd.checks import check_same_shape, check_shape
from burstjdd.errors import BurstFormatError, ConfigError
from burstjdd.limits import MAX_SEED
from burstjdd.raw.cfa import LR_GRID, demosaic_bilinear, unpack
from burstjdd.raw.merge import merge_and_denoise
from burstjdd.typed import short_repr

from . import demosaicnet, registry
from .blocks import ACNSeBlock, SimpleBlock, autocast_off
from .dpbm import CoarseAlignment, MatchDiagnostics, coarse_align
from .dsnet import LR_SCALE, DSNet, bicubic_features
from .fusion import BiGRUFusion
from .pcd import PCDAlignment
from .unet import UNet, feature_upsampler

CA_MODES = ("dpbm", "bicubic", "none")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`TwoStageJDDB` (the defaults are the official network).

    nf: feature width (UNet widths nf, 2nf, 4nf); deformable_groups: DCN offset groups;
    extract_blocks: ACNSe blocks after the per-frame SimpleBlock; dsnet_width: DSNet channels;
    ca: coarse alignment, "dpbm" (DSNet + differentiable block matching), "bicubic" (plain hard
    block matching on bicubic ×1/4 raw, no DSNet, no gradient: the ``no_e2e`` ablation) or
    "none"; ra: PCD refined alignment (off: per-frame features go straight to fusion);
    ra_extra_offset_layers: extra conv layers in the level-3 offset branch (``deep_ra``);
    use_interp: train with the interpolation loss L_ip (read by training; the forward takes an
    explicit ``interp`` argument); search_stride, refine, propagate: DPBM stage-1 stride on the
    LR grid, stride-1 refinement, temporal propagation of the search centre; residual: the
    decoder predicts a correction added to a classical restoration of the coarsely aligned
    frames (HDR+ tile alignment, Wiener merge, GAT + non-local means, demosaicnet:
    :func:`residual_base`; ours, not the paper's, whose output has "no global residual",
    docs/official-network.md §1; docs/method.md §8.1; training starts from an image as good
    as the best classical pipeline instead of a blank one, which matters for short runs; the
    UNet takes the base as 3 extra input channels, so that it corrects what it sees).
    """

    nf: int = 64
    deformable_groups: int = 8
    extract_blocks: int = 4
    dsnet_width: int = 16
    ca: str = "dpbm"
    ra: bool = True
    ra_extra_offset_layers: int = 0
    use_interp: bool = True
    search_stride: int = 2
    refine: bool = True
    propagate: bool = True
    residual: bool = False

    def __post_init__(self) -> None:
        # Upper bounds far above any useful network (the paper's: nf 64, 8 groups, 4 blocks,
        # DSNet 16, 16 extra offset layers) but below what would exhaust memory or time while
        # the model is built, before any check could run.
        for name, minimum, maximum in (("nf", 2, 1024), ("deformable_groups", 1, 1024),
                                       ("extract_blocks", 0, 64), ("dsnet_width", 1, 1024),
                                       ("ra_extra_offset_layers", 0, 64),
                                       ("search_stride", 1, 64)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) \
                    or not minimum <= value <= maximum:
                raise ConfigError(f"model config: {name} must be an integer in "
                                  f"{minimum}..{maximum}, got {short_repr(value)}")
        for name in ("ra", "use_interp", "refine", "propagate", "residual"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"model config: {name} must be true or false, got {value!r}")
        if self.ca not in CA_MODES:
            raise ConfigError(
                f"model config: ca must be one of {', '.join(CA_MODES)}, got {self.ca!r}"
            )
        if self.nf % 2 or self.nf % self.deformable_groups:
            raise ConfigError(
                f"model config: nf={self.nf} must be even and divisible by "
                f"deformable_groups={self.deformable_groups}"
            )
        if self.ra_extra_offset_layers and not self.ra:
            raise ConfigError("model config: ra_extra_offset_layers > 0 needs ra=true")


RESIDUAL_INIT_SCALE = 1e-2  # last decoder conv's initial weights, relative to orthogonal
RESIDUAL_BLUR = 0.7  # σ of the interpolation branch's base blur, full-res px

# The ModelConfig of each registered preset and the ablation variants (both from the registry).
PRESETS: Mapping[str, ModelConfig] = MappingProxyType({
    name: ModelConfig(**registry.MODELS[name].preset) for name in registry.preset_names()})
VARIANTS: Mapping[str, Mapping[str, object]] = registry.VARIANTS


@dataclass
class JDDBOutput:
    """image (B, 3, 2P, 2P) linear camera RGB of the reference; interp: the same decoded
    without the reference frame's own features (L_ip) or None; ca: the coarse alignment that
    produced the patches (None when no coarse alignment ran)."""

    image: Tensor
    interp: Tensor | None
    ca: CoarseAlignment | None


_BURST = ("B", "N", "4", "H", "W")  # packed frames and their noise map


def _check_burst(frames: Tensor, noise: Tensor) -> tuple[int, int, int, int]:
    """(B, N, H, W) of frames and noise of one shape (B, N, 4, H, W), none of them 0; raise
    BurstFormatError otherwise."""
    dims = check_shape(frames, _BURST, what="frames")
    check_same_shape(noise, frames, what="noise", like_what="frames")
    b, n, h, w = (dims[k] for k in "BNHW")
    if b == 0 or n == 0 or h == 0 or w == 0:
        raise BurstFormatError(f"empty burst: frames {tuple(frames.shape)}")
    return b, n, h, w


def _check_ref(ref: int | None, n: int) -> int:
    if ref is None:
        return n // 2
    if isinstance(ref, bool) or not isinstance(ref, int) or not 0 <= ref < n:
        raise BurstFormatError(f"reference index {ref!r} out of range for a burst of {n} frames")
    return ref


def _check_origins(
    origins: Tensor | Sequence, b: int, h: int, w: int, size: int, device: torch.device
) -> Tensor:
    """Validate patch origins (B, K, 2) and size P (packed pixels) against (H, W) frames:
    integers, multiples of 4 (the LR grid), patches inside the frame. Returns them as long."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % LR_SCALE:
        raise BurstFormatError(
            f"patch size must be a positive multiple of {LR_SCALE} packed pixels, got {size!r}"
        )
    if h % LR_SCALE or w % LR_SCALE:
        raise BurstFormatError(
            f"coarse alignment needs H, W multiples of {LR_SCALE}, got frames of {h}x{w}"
        )
    origins = torch.as_tensor(origins, device=device)
    check_shape(origins, ("B", "K", "2"), what="origins", sizes={"B": b})
    if origins.is_floating_point() or origins.dtype == torch.bool:
        raise BurstFormatError(f"origins must be integer, got {origins.dtype}")
    origins = origins.long()
    # One host sync per call: the origins are few and usually come from the host anyway.
    if bool((origins % LR_SCALE != 0).any()):
        raise BurstFormatError(
            f"patch origins must be multiples of {LR_SCALE} packed pixels (the LR grid)"
        )
    limit = torch.tensor([h - size, w - size], device=device)
    if bool(((origins < 0) | (origins > limit)).any()):
        raise BurstFormatError(
            f"a {size}x{size} patch origin lies outside frames of {h}x{w} packed pixels"
        )
    return origins


def _crop_patches(x: Tensor, origins: Tensor, size: int) -> Tensor:
    """x (B, N, C, H, W), origins (B, K, 2) long top-left (row, col) → (B, K, N, C, P, P)."""
    b = x.shape[0]
    ar = torch.arange(size, device=x.device)
    rows = origins[..., 0:1] + ar  # (B, K, P)
    cols = origins[..., 1:2] + ar  # (B, K, P)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    patches = x.permute(0, 3, 4, 1, 2)[bi, rows[:, :, :, None], cols[:, :, None, :]]
    return patches.permute(0, 1, 4, 5, 2, 3)  # (B, K, P, P, N, C) -> (B, K, N, C, P, P)


def _empty_diagnostics(
    b: int, k: int, n: int, device: torch.device, dtype: torch.dtype
) -> MatchDiagnostics:
    """Diagnostics of a search that tried no candidate (M = 0): ca="none"."""
    return MatchDiagnostics(
        candidates=torch.zeros(b, k, n, 0, 2, dtype=torch.long, device=device),
        distances=torch.zeros(b, k, n, 0, dtype=dtype, device=device),
        weights=torch.zeros(b, k, n, 0, dtype=dtype, device=device),
        valid=torch.zeros(b, k, n, 0, dtype=torch.bool, device=device),
        guide_distances=None,
    )


class TwoStageJDDB(nn.Module):
    """Generator G (+ DSNet) of the two-stage alignment network, built from a ModelConfig.

    ``seed`` (optional, 0..MAX_SEED) makes the initialisation deterministic without touching
    the caller's global RNG state (the layers draw from a forked, seeded default generator).
    """

    def __init__(self, config: ModelConfig, *, seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ConfigError(f"TwoStageJDDB needs a ModelConfig, got {type(config).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or not 0 <= seed <= MAX_SEED):
            raise ConfigError(f"seed must be None or an integer in 0..{MAX_SEED}, got "
                              f"{short_repr(seed)}")
        self.config = config
        rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        with rng:
            if seed is not None:
                torch.manual_seed(seed)
            nf = config.nf
            self.dsnet = DSNet(config.dsnet_width) if config.ca == "dpbm" else None
            self.feature_extract = SimpleBlock(5, nf, 8, nf)
            self.feature_blocks = nn.ModuleList(
                ACNSeBlock(nf) for _ in range(config.extract_blocks)
            )
            self.align = (
                PCDAlignment(nf, config.deformable_groups, config.ra_extra_offset_layers)
                if config.ra else None
            )
            self.fusion = BiGRUFusion(nf)
            self.feature_up = feature_upsampler(nf)
            self.unet = UNet(nf, 3, extra_in=3 if config.residual else 0)
            if config.residual:  # start near the base image (see residual_base); not exactly at
                # it, so that every layer gets a gradient from the first step
                with torch.no_grad():
                    self.unet.dec2_conv.simple_block[-1].weight.mul_(RESIDUAL_INIT_SCALE)
            # The residual base's demosaicker: pretrained, frozen (build_model loads its
            # weights; a weights file holds them with the rest of the state dict).
            self.base_demosaic = demosaicnet.DemosaicNet().requires_grad_(False) \
                if config.residual else None

    # ------------------------------------------------------------------ parameters
    def dsnet_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the DSNet (own learning rate, 1e-5 officially); none unless ca="dpbm"."""
        return iter(()) if self.dsnet is None else self.dsnet.parameters()

    def g_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the generator G (lr 1e-4 officially): everything except the DSNet and
        the residual base's frozen demosaicnet."""
        for name, p in self.named_parameters():
            if not name.startswith(("dsnet.", "base_demosaic.")):
                yield p

    # ------------------------------------------------------------------ coarse alignment
    def ca_features(self, frames: Tensor) -> Tensor:
        """Matching features on the LR grid: frames (B, N, 4, H, W) noisy packed raw →
        (B, N, C, ceil(H/4), ceil(W/4)); DSNet (C = dsnet_width, differentiable) for ca="dpbm",
        bicubic ×1/4 (C = 4, no gradient) for ca="bicubic"."""
        check_shape(frames, _BURST, what="frames")
        if self.config.ca == "none":
            raise ConfigError("model config ca='none' has no coarse-alignment features")
        b, n = frames.shape[:2]
        folded = frames.reshape(b * n, *frames.shape[2:])
        feats = self.dsnet(folded) if self.dsnet is not None else bicubic_features(folded)
        return feats.view(b, n, *feats.shape[1:])

    def coarse(
        self,
        frames: Tensor,
        noise: Tensor,
        ref: int,
        origins: Tensor | Sequence,
        size: int,
        radius_px: float,
        temperature: float | None = None,
        guide: Tensor | None = None,
        feats: Tensor | None = None,
    ) -> CoarseAlignment:
        """Coarse alignment (DPBM, paper §3.1) of K reference patches per sample.

        frames/noise (B, N, 4, H, W) packed, H and W multiples of 4; origins (B, K, 2) top-left
        (row, col) of each reference patch in PACKED pixels, multiples of 4 (the reference crop
        lives on the LR grid, docs/official-network.md §8 item 7); size P packed pixels, a
        multiple of 4; radius_px search radius in FULL-RESOLUTION pixels (1 LR px = 8 full-res
        px, so R_lr = ceil(radius_px / 8)); temperature None = hard argmin, float = soft (training;
        ignored for ca="bicubic", which is plain hard block matching); guide (B, N, C, H/4, W/4)
        clean guidance features for L_BM or None; feats: ``ca_features(frames)`` when the caller
        already has them (whole-image restore computes them once for all its tiles).
        ca="none" just crops the patches. Returns a CoarseAlignment with frames/noise
        (B, K, N, 4, P, P).
        """
        b, n, h, w = _check_burst(frames, noise)
        ref = _check_ref(ref, n)
        origins = _check_origins(origins, b, h, w, size, frames.device)
        if radius_px < 0:
            raise BurstFormatError(f"search radius must be >= 0 full-res pixels, got {radius_px}")

        if self.config.ca == "none":
            k = origins.shape[1]
            return CoarseAlignment(
                frames=_crop_patches(frames, origins, size),
                noise=_crop_patches(noise, origins, size),
                offsets_lr=torch.zeros(b, k, n, 2, dtype=torch.long, device=frames.device),
                stage1=_empty_diagnostics(b, k, n, frames.device, frames.dtype),
                stage2=None,
            )
        cfg = self.config
        with autocast_off(frames):  # float32 under any autocast: costs feed argmins/softmaxes
            return coarse_align(
                self.ca_features(frames) if feats is None else feats, frames, noise, ref,
                origins // LR_SCALE, size // LR_SCALE, math.ceil(radius_px / LR_GRID),
                stride=cfg.search_stride, refine=cfg.refine, propagate=cfg.propagate,
                temperature=temperature if cfg.ca == "dpbm" else None, scale=LR_SCALE,
                guide=guide,
            )

    # ------------------------------------------------------------------ refined alignment + fusion
    def reconstruct(
        self, frames: Tensor, noise: Tensor, ref: int, interp: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Refined alignment, fusion and decoding of (coarsely aligned) packed patches.

        frames/noise (B, N, 4, h, w) packed raw and noise map, h and w multiples of 4 →
        image (B, 3, 2h, 2w) linear camera RGB of frame ``ref``, and, when ``interp``, the image
        decoded from the GRU states before the reference (paper Eq. 7) else None.
        """
        b, n, h, w = _check_burst(frames, noise)
        ref = _check_ref(ref, n)
        if h % 4 or w % 4:
            raise BurstFormatError(
                f"reconstruct needs h, w multiples of 4, got frames {tuple(frames.shape)}"
            )
        x = torch.cat([frames, noise], dim=2).reshape(b * n, 8, h, w)  # per frame [y, M] (§1)
        f = self.feature_extract(x)
        for block in self.feature_blocks:
            f = block(f)
        f = f.view(b, n, self.config.nf, h, w)
        if self.align is not None:
            f = self.align(f, ref)
        fused, fused_ip = self.fusion(f, ref, interp)
        z = fused if fused_ip is None else torch.cat([fused, fused_ip], dim=0)  # one decoder pass
        z = self.feature_up(z)  # (B or 2B, nf, 2h, 2w)
        if self.base_demosaic is None:
            out = self.unet(z)  # (B or 2B, 3, 2h, 2w)
        else:  # the decoder sees the base it corrects, beside the fused features
            base = residual_base(frames, noise, ref, fused_ip is not None, self.base_demosaic)
            out = self.unet(torch.cat([z, base], dim=1)) + base
        return (out, None) if fused_ip is None else (out[:b], out[b:])

    def forward(
        self,
        frames: Tensor,
        noise: Tensor,
        ref: int | None = None,
        *,
        origins: Tensor | Sequence | None = None,
        size: int | None = None,
        search_radius: float = 48,
        temperature: float | None = None,
        interp: bool = False,
        guide: Tensor | None = None,
    ) -> JDDBOutput:
        """Restore the reference frame of a burst.

        frames/noise (B, N, 4, H, W) packed RGGB raw in [0, 1] and its noise map; ref default N//2.
        With ``origins`` (B, 2) (packed top-left of one reference patch per sample, multiples of 4)
        and ``size`` P: coarse alignment of that patch against whole frames (training: frames
        with context in, the reference crop out) → image (B, 3, 2P, 2P). Without: the whole frame
        is the region (no coarse alignment: a frame-sized block cannot move), H and W padded to
        multiples of 4 by replication → image (B, 3, 2H, 2W). search_radius in full-resolution
        pixels; temperature None = hard block matching, float = soft (training); interp: also
        return the interpolation-branch image (L_ip).
        """
        b, n, h, w = _check_burst(frames, noise)
        ref = _check_ref(ref, n)
        if origins is None:
            if size is not None:
                raise BurstFormatError("size was given without origins")
            ph, pw = -h % 4, -w % 4
            if ph or pw:
                frames = F.pad(frames.reshape(b * n, 4, h, w), (0, pw, 0, ph), mode="replicate")
                noise = F.pad(noise.reshape(b * n, 4, h, w), (0, pw, 0, ph), mode="replicate")
                frames = frames.view(b, n, 4, h + ph, w + pw)
                noise = noise.view(b, n, 4, h + ph, w + pw)
            image, image_ip = self.reconstruct(frames, noise, ref, interp)
            if ph or pw:
                image = image[..., : 2 * h, : 2 * w]
                image_ip = None if image_ip is None else image_ip[..., : 2 * h, : 2 * w]
            return JDDBOutput(image, image_ip, None)

        if size is None:
            raise BurstFormatError("origins were given without a patch size")
        origins = torch.as_tensor(origins, device=frames.device)
        check_shape(origins, ("B", "2"), what="origins", sizes={"B": b})
        ca = self.coarse(
            frames, noise, ref, origins[:, None], size, search_radius, temperature, guide
        )
        image, image_ip = self.reconstruct(ca.frames[:, 0], ca.noise[:, 0], ref, interp)
        return JDDBOutput(image, image_ip, None if self.config.ca == "none" else ca)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of images (B, C, H, W) with standard deviation ``sigma`` pixels,
    radius ceil(3σ), reflected borders; same shape, dtype and device."""
    r = math.ceil(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).repeat(x.shape[1], 1)[:, None]  # (C, 1, 2r + 1)
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k[..., None, :], groups=x.shape[1])  # along W
    return F.conv2d(x, k[..., None], groups=x.shape[1])  # along H


def residual_base(frames: Tensor, noise: Tensor, ref: int, interp: bool,
                  demosaicker: nn.Module) -> Tensor:
    """What the decoder's output is added to when ``ModelConfig.residual``: a classical
    restoration of the (coarsely aligned) frames, computed without gradient.

    Per sample, the frames are aligned to the reference once more by HDR+'s tile search
    (which fixes what the coarse alignment's 8-px grid and per-patch offset leave), merged
    by HDR+'s pairwise Wiener merge (which rejects what still differs from the reference by
    more than the noise) and denoised by GAT + non-local means at the noise the merge leaves
    (:func:`~burstjdd.raw.merge.merge_and_denoise`, variance = the reference's noise map
    squared), then demosaicked by the frozen pretrained demosaicnet ``demosaicker``
    (:func:`~burstjdd.models.demosaicnet.demosaic`). frames/noise (B, N, 4, h, w) packed RGGB
    and noise map, h, w > 16 → (B, 3, 2h, 2w). With ``interp`` also the base of the
    interpolation branch, which must not see the reference: the bilinear demosaic of the mean
    of its neighbours ref ± 1 (zeros for N = 1), blurred by σ = RESIDUAL_BLUR px, stacked after
    the first → (2B, 3, 2h, 2w), the layout of ``reconstruct``'s single decoder pass.
    """
    with torch.no_grad():
        mosaics, var = unpack(frames.float()), unpack(noise[:, ref].float().square())
        if frames.is_meta:  # shapes only (FLOP counting): the merge's steps are data-dependent
            merged = mosaics[:, ref]  # (and made of FFTs, which the counter does not see)
        else:  # float32 under any autocast: the merge's costs feed argmins
            with autocast_off(frames):
                merged = torch.stack([merge_and_denoise(m, v, ref)
                                      for m, v in zip(mosaics, var)])
        rgb = [demosaicnet.demosaic(demosaicker, merged.clamp(0.0, 1.0)).to(frames.dtype)]
        if interp:
            near = [t for t in (ref - 1, ref + 1) if 0 <= t < frames.shape[1]]
            ip = demosaic_bilinear(unpack(frames[:, near])).mean(1) if near \
                else torch.zeros_like(rgb[0])
            rgb.append(gaussian_blur(ip, RESIDUAL_BLUR))
        return torch.cat(rgb, dim=0)


def build_model(
    preset: str = "paper", variant: str | None = None, *, seed: int | None = None,
    **overrides: object
) -> TwoStageJDDB:
    """Build a model from a preset ("paper" | "compact"), an ablation variant ("full" |
    "no_align" | "ca_only" | "ra_only" | "no_e2e" | "deep_ra" | "no_ip"; None: the preset's
    default, "full") and ModelConfig field overrides (applied last); presets and variants are
    those of :mod:`burstjdd.models.registry`. Unknown names raise ConfigError listing the valid
    ones.
    A residual model's base demosaicker gets the bundled pretrained demosaicnet weights."""
    model = TwoStageJDDB(make_config(preset, variant, **overrides), seed=seed)
    base = model.base_demosaic
    if base is not None and not any(p.is_meta for p in base.parameters()):
        demosaicnet.load_pretrained(base)
    return model


def make_config(preset: str = "paper", variant: str | None = None,
                **overrides: object) -> ModelConfig:
    """The ModelConfig of ``build_model`` (same arguments), without building the model."""
    if not isinstance(preset, str) or preset not in PRESETS:  # a list is not hashable
        raise ConfigError(f"unknown model preset {preset!r}; valid: {', '.join(PRESETS)}")
    if variant is None:
        variant = registry.MODELS[preset].variant
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ConfigError(f"unknown model variant {variant!r}; valid: {', '.join(VARIANTS)}")
    fields = [f.name for f in dataclasses.fields(ModelConfig)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown model option(s) {', '.join(unknown)}; valid: {', '.join(fields)}"
        )
    return dataclasses.replace(PRESETS[preset], **{**VARIANTS[variant], **overrides})
