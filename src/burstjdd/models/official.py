"""Convert the authors' released checkpoints (GuoShi28/2StageAlign) to burstjdd weights.

The official release is two pickled PyTorch state dicts: the generator G (``JDDB_BiGRU``,
nf = 64, 8 deformable groups) and the DSNet (``CNN_downsampling``). They are read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers, so a
checkpoint cannot run code. The official key names and shapes are derived here from the
layer lists in ``docs/official-network.md`` §2 and the module attribute names of the official
``BaseBlocks.py``, ``DAlign_Block.py``, ``JDDB_BiGRU_Dconv_wInter.py`` and ``deep_down.py``.

Conversion is a rename (module-prefix table) with shape checks; no tensor is permuted: our
blocks keep the official inner names and layer order, and our DCN pack splits
``conv_offset_mask`` into (offsets, offsets, mask) chunks with the same (Δrow, Δcol) channel
interleaving as the official mmcv kernel (docs/official-network.md §2.3 (b)).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from burstjdd.errors import WeightsError
from burstjdd.models.hub import (check_state_dict, meta_model, model_from_state, save_pretrained,
                                 sha256_file)
from burstjdd.models.jddb import make_config
from burstjdd.raw.files import require_regular_file

Shape = tuple[int, ...]
NETS = ("G", "DSNet")


# ----------------------------------------------------------------------------------------------
# official key names and shapes


def _conv(prefix: str, cin: int, cout: int, k: int, bias: bool = True) -> dict[str, Shape]:
    """nn.Conv2d: weight (cout, cin, k, k), bias (cout,)."""
    out = {f"{prefix}.weight": (cout, cin, k, k)}
    if bias:
        out[f"{prefix}.bias"] = (cout,)
    return out


def _convT(prefix: str, cin: int, cout: int, k: int = 2) -> dict[str, Shape]:
    """nn.ConvTranspose2d: weight (cin, cout, k, k), bias (cout,)."""
    return {f"{prefix}.weight": (cin, cout, k, k), f"{prefix}.bias": (cout,)}


def _simple_block(prefix: str, depth: int, n: int, cin: int, cout: int) -> dict[str, Shape]:
    """Official ``SimpleBlock``: an nn.Sequential ``simple_block`` of conv3x3 (bias) / LReLU /
    (depth-2) x [conv3x3 (no bias) / LReLU] / conv3x3 (no bias); LReLUs sit at odd indices."""
    out = _conv(f"{prefix}.simple_block.0", cin, n, 3)
    for i in range(depth - 2):
        out |= _conv(f"{prefix}.simple_block.{2 + 2 * i}", n, n, 3, bias=False)
    out |= _conv(f"{prefix}.simple_block.{2 * depth - 2}", n, cout, 3, bias=False)
    return out


def _acnse(prefix: str, n: int) -> dict[str, Shape]:
    """Official ``ACNSeBlock(n)``: square_conv, extract_conv, res_block1/2 (SimpleBlock depth 2),
    channel attention down/up (1x1) and spatial_att (7x7). 55 n^2 + 53.5 n + 1 parameters."""
    return (_conv(f"{prefix}.square_conv", n, n, 3, bias=False)
            | _conv(f"{prefix}.extract_conv", n, n, 3)
            | _simple_block(f"{prefix}.res_block1", 2, n, n, n)
            | _simple_block(f"{prefix}.res_block2", 2, n, n, n)
            | _conv(f"{prefix}.down", n, n // 2, 1)
            | _conv(f"{prefix}.up", n // 2, n, 1)
            | _conv(f"{prefix}.spatial_att", n, 1, 7))


def _dcn_pack(prefix: str, nf: int, groups: int) -> dict[str, Shape]:
    """mmcv/EDVR ``ModulatedDeformConvPack`` 3x3: main weight + bias, and ``conv_offset_mask``
    producing 3 * groups * 9 channels (offsets then modulation)."""
    return {f"{prefix}.weight": (nf, nf, 3, 3), f"{prefix}.bias": (nf,)} \
        | _conv(f"{prefix}.conv_offset_mask", nf, 3 * groups * 9, 3)


def _pcd(prefix: str, nf: int, groups: int) -> dict[str, Shape]:
    """Official ``Self_Easy_PCD``: pyramid convs + ``PCD_Align`` (EDVR names, no cascade)."""
    out: dict[str, Shape] = {}
    for level in (2, 3):
        out |= _conv(f"{prefix}.fea_L{level}_conv1", nf, nf, 3)
        out |= _conv(f"{prefix}.fea_L{level}_conv2", nf, nf, 3)
    core = f"{prefix}.pcd_align"
    out |= _conv(f"{core}.L3_offset_conv1_1", 2 * nf, nf, 3)
    out |= _conv(f"{core}.L3_offset_conv2_1", nf, nf, 3)
    out |= _dcn_pack(f"{core}.L3_dcnpack_1", nf, groups)
    for level in (2, 1):
        out |= _conv(f"{core}.L{level}_offset_conv1_1", 2 * nf, nf, 3)
        out |= _conv(f"{core}.L{level}_offset_conv2_1", 2 * nf, nf, 3)
        out |= _conv(f"{core}.L{level}_offset_conv3_1", nf, nf, 3)
        out |= _dcn_pack(f"{core}.L{level}_dcnpack_1", nf, groups)
        out |= _conv(f"{core}.L{level}_fea_conv_1", 2 * nf, nf, 3)
    return out


def _official_g(nf: int, groups: int) -> dict[str, Shape]:
    """Official ``JDDB_BiGRU`` (in 8 = [packed raw, noise map], out 3)."""
    out = _simple_block("feature_extract", 5, nf, 8, nf)
    for i in range(1, 5):
        out |= _acnse(f"feature_extract_acse{i}", nf)
    out |= _pcd("pcd_align", nf, groups)
    for gate in "zrq":
        out |= _conv(f"ConvBGRU.forward_net.conv{gate}", 2 * nf, nf, 3)
    out |= _conv("ConvBGRU.conv_1x1", 2 * nf, nf, 1)
    out |= _convT("feature_up", nf, nf)
    out |= _simple_block("conv_block_s1", 2, nf, nf, nf) | _acnse("acse_block_s1", nf)
    out |= _conv("pool1", nf, 2 * nf, 3)
    out |= _simple_block("conv_block_s2", 2, 2 * nf, 2 * nf, 2 * nf)
    out |= _acnse("acse_block_s2", 2 * nf)
    out |= _conv("pool2", 2 * nf, 4 * nf, 3)
    out |= _simple_block("conv_block_s3", 2, 4 * nf, 4 * nf, 4 * nf)
    out |= _acnse("acse_block_s3", 4 * nf)
    out |= _simple_block("conv_block_s3_2", 2, 4 * nf, 4 * nf, 4 * nf)
    out |= _convT("up1", 4 * nf, 2 * nf)
    out |= _simple_block("conv_block_s4", 2, 2 * nf, 4 * nf, 2 * nf)
    out |= _acnse("acse_block_s4", 2 * nf)
    out |= _convT("up2", 2 * nf, nf)
    out |= _simple_block("conv_block_s5", 3, nf, 2 * nf, 3)
    return out


def _official_dsnet(width: int = 16) -> dict[str, Shape]:
    """Official ``CNN_downsampling``: conv s2 (no bias), conv, LReLU, conv s2 (no bias), conv,
    LReLU, conv, InstanceNorm (no parameters) in an nn.Sequential ``simple_block``."""
    return (_conv("simple_block.0", 4, width, 3, bias=False)
            | _conv("simple_block.1", width, width, 3)
            | _conv("simple_block.3", width, width, 3, bias=False)
            | _conv("simple_block.4", width, width, 3)
            | _conv("simple_block.6", width, width, 3))


def official_key_shapes(net: str = "G") -> dict[str, Shape]:
    """Key -> shape of the official state dict of ``net`` ("G" or "DSNet"), in module order.

    G has 12,052,144 parameters and the DSNet 9,840 (docs/official-network.md §2.3 (f)).
    """
    if net == "G":
        return _official_g(nf=64, groups=8)
    if net == "DSNet":
        return _official_dsnet()
    raise WeightsError(f"unknown official network {net!r} (expected one of {NETS})")


# ----------------------------------------------------------------------------------------------
# safe loading


def load_weights_only(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU: only tensors and plain containers
    unpickle. Torch's warning about a pickle protocol it did not expect ("... please file an
    issue") is not shown: a file that fails to load is the caller's one-line error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location="cpu", weights_only=True)


def load_official_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an official ``.pth`` state dict without executing code.

    Uses ``torch.load(weights_only=True)``: only tensors and plain containers unpickle.
    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` / ``{"params": ...}``
    and strips a DDP ``module.`` prefix. Raises :class:`WeightsError` otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    try:
        obj = load_weights_only(path)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found is None:
            raise WeightsError(f"{path}: cannot read as a PyTorch checkpoint (corrupt or "
                               "not a checkpoint)") from None
        raise WeightsError(f"{path}: not a plain state dict (it holds a {found.group(1)} "
                           "object; refusing to unpickle it)") from None
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read as a PyTorch checkpoint "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    return plain_state_dict(obj, str(path))


def plain_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """Unwrap ``{"state_dict"|"params": sd}``, check str -> Tensor, strip ``module.``."""
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "params"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{source}: not a plain state dict (top level is {type(obj).__name__})")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsError(f"{source}: not a plain state dict (entry {key!r} is "
                               f"{type(value).__name__})")
        name = key.removeprefix("module.")
        if name in out:
            raise WeightsError(f"{source}: duplicate key {name!r} after removing 'module.'")
        out[name] = value
    return out


# ----------------------------------------------------------------------------------------------
# official names -> ours


def _g_prefix_table() -> dict[str, str]:
    """Official G module prefix -> our module prefix (inner names are identical below these:
    SimpleBlock ``simple_block.{i}``, ACNSeBlock, DCN pack ``weight/bias/conv_offset_mask``)."""
    table = {"feature_extract": "feature_extract", "feature_up": "feature_up",
             "ConvBGRU.conv_1x1": "fusion.conv_1x1"}
    table |= {f"feature_extract_acse{i + 1}": f"feature_blocks.{i}" for i in range(4)}
    for level in (2, 3):
        table[f"pcd_align.fea_L{level}_conv1"] = f"align.pyramid.l{level}_down"
        table[f"pcd_align.fea_L{level}_conv2"] = f"align.pyramid.l{level}_conv"
    for level in (1, 2, 3):
        core = f"pcd_align.pcd_align.L{level}"
        for k in (1, 2, 3):
            table[f"{core}_offset_conv{k}_1"] = f"align.l{level}_offset_conv{k}"
        table[f"{core}_dcnpack_1"] = f"align.l{level}_dcn"
        table[f"{core}_fea_conv_1"] = f"align.l{level}_fea_conv"
    table |= {f"ConvBGRU.forward_net.conv{g}": f"fusion.cell.conv_{g}" for g in "zrq"}
    table |= {  # UNet stages (JDDB_BiGRU.forward order: encoder s1, s2, bottleneck s3, decoder)
        "conv_block_s1": "unet.enc1_conv", "acse_block_s1": "unet.enc1_att",
        "pool1": "unet.down1",
        "conv_block_s2": "unet.enc2_conv", "acse_block_s2": "unet.enc2_att",
        "pool2": "unet.down2",
        "conv_block_s3": "unet.mid_conv1", "acse_block_s3": "unet.mid_att",
        "conv_block_s3_2": "unet.mid_conv2",
        "up1": "unet.up1", "conv_block_s4": "unet.dec1_conv", "acse_block_s4": "unet.dec1_att",
        "up2": "unet.up2", "conv_block_s5": "unet.dec2_conv",
    }
    return table


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    """Our name of an official key: the longest module prefix of ``key`` found in ``table``
    (matched at a '.' boundary, so ``conv_block_s3`` never captures ``conv_block_s3_2``)."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        ours = table.get(".".join(parts[:cut]))
        if ours is not None:
            return ".".join([ours, *parts[cut:]])
    return None


def official_to_ours(net: str = "G") -> dict[str, str]:
    """Official key -> our state-dict key for every key of ``official_key_shapes(net)``."""
    table = _g_prefix_table() if net == "G" else {"simple_block": "dsnet.simple_block"}
    return {key: _rename(key, table) for key in official_key_shapes(net)}


def _map_net(state: Mapping[str, torch.Tensor], net: str) -> dict[str, torch.Tensor]:
    """Check one official state dict against its official names/shapes and rename it."""
    shapes = official_key_shapes(net)
    expected = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    check_state_dict(expected, state, f"official {net} checkpoint")
    names = official_to_ours(net)
    return {names[k]: state[k].detach().to(torch.float32).clone().contiguous() for k in shapes}


def convert_official(g_state: Mapping[str, torch.Tensor],
                     dsnet_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the official G and DSNet state dicts onto ``build_model("paper").state_dict()``.

    Every official key must be consumed (none missing, none unexpected, official shapes) and
    every key of our model filled with the right shape; otherwise :class:`WeightsError`
    lists the offenders. Tensors are returned as contiguous float32 copies.
    """
    ours = _map_net(plain_state_dict(g_state, "G"), "G") \
        | _map_net(plain_state_dict(dsnet_state, "DSNet"), "DSNet")
    expected = meta_model(make_config("paper"), "official weights").state_dict()
    check_state_dict(expected, ours, "converted official weights", check_finite=False)
    return ours


def convert_files(g_path: str | os.PathLike, dsnet_path: str | os.PathLike,
                  out_dir: str | os.PathLike, dtype: torch.dtype | None = None,
                  overwrite: bool = False) -> Path:
    """Read the official ``G.pth`` and ``DSNet.pth`` safely, convert them, and write a burstjdd
    weights directory (``hub.save_pretrained``) whose card names the sources and their sha256."""
    g_path, dsnet_path = Path(g_path), Path(dsnet_path)
    for p in (g_path, dsnet_path):
        require_regular_file(p, WeightsError)  # a FIFO would block the read
    state = convert_official(load_official_state(g_path), load_official_state(dsnet_path))
    model = model_from_state(make_config("paper"), state, "converted official weights",
                             check_finite=False)           # convert_official checked it
    card = {
        "title": "burstjdd paper network, converted from the official release",
        "description": "Weights of the authors' released checkpoints (Guo et al., CVPR 2022, "
                       "GuoShi28/2StageAlign) converted with `burstjdd convert-official`; "
                       "architecture `paper` (G 12,052,144 + DSNet 9,840 parameters).",
        "source": "official release (converted, not retrained)",
        "G checkpoint": g_path.name,
        "G sha256": sha256_file(g_path),
        "DSNet checkpoint": dsnet_path.name,
        "DSNet sha256": sha256_file(dsnet_path),
        "training data": "REDS train + val clips (authors' training; docs/official-network.md "
                         "§5)",
        "iterations": "as released (the authors test REDS4 with 600k-iteration and "
                      "Videezy4K with 550k-iteration checkpoints)",
        "noise map": "official G trained with shot*y + read, tested with "
                     "sqrt(shot*y + read^2); burstjdd feeds the latter "
                     "(docs/official-network.md §1)",
        "measured quality": "not measured by the converter",
    }
    return save_pretrained(model, out_dir, card=card, dtype=dtype, overwrite=overwrite)
