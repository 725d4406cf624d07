from __future__ import annotations

import pytest
import torch

from burstjdd.errors import BurstFormatError
from burstjdd.raw.cfa import (
    PATTERNS,
    check_pattern,
    from_rggb,
    mosaic,
    pack,
    to_rggb,
    unpack,
)

LEADING = [(), (2,), (2, 3)]


def _rand(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))


def test_check_pattern_canonicalises_and_rejects():
    assert check_pattern("rggb") == "RGGB"
    assert check_pattern(" GbRg ") == "GBRG"
    with pytest.raises(BurstFormatError, match="RGGB, BGGR, GRBG, GBRG"):
        check_pattern("RGBG")
    with pytest.raises(BurstFormatError):
        check_pattern(None)  # type: ignore[arg-type]


def test_pack_hand_checked():
    raw = torch.arange(16.0).view(4, 4)
    packed = pack(raw)
    assert packed.shape == (4, 2, 2)
    assert packed[0].tolist() == [[0, 2], [8, 10]]  # R  = (0, 0) of each cell
    assert packed[1].tolist() == [[1, 3], [9, 11]]  # Gr = (0, 1)
    assert packed[2].tolist() == [[4, 6], [12, 14]]  # Gb = (1, 0)
    assert packed[3].tolist() == [[5, 7], [13, 15]]  # B  = (1, 1)


@pytest.mark.parametrize("leading", LEADING)
def test_pack_unpack_identity(leading):
    raw = _rand(*leading, 6, 10)
    packed = pack(raw)
    assert packed.shape == (*leading, 4, 3, 5)
    assert torch.equal(unpack(packed), raw)
    assert torch.equal(pack(unpack(packed)), packed)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("leading", LEADING)
def test_to_from_rggb_identity(pattern, leading):
    x = _rand(*leading, 4, 8)
    y = to_rggb(x, pattern)
    assert y.shape == x.shape
    assert torch.equal(from_rggb(y, pattern), x)
    assert torch.equal(to_rggb(from_rggb(x, pattern), pattern), x)
    if pattern != "RGGB":
        assert not torch.equal(y, x)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_to_rggb_normalises_phase(pattern):
    rgb = _rand(2, 3, 6, 8)
    rggb = mosaic(to_rggb(rgb, pattern), "RGGB")
    assert torch.equal(to_rggb(mosaic(rgb, pattern), pattern), rggb)
    # and back: an RGGB result restored to the file's phase is that phase's mosaic
    assert torch.equal(from_rggb(rggb, pattern), mosaic(rgb, pattern))


@pytest.mark.parametrize(
    "pattern, cell",
    [
        ("RGGB", [[1, 2], [2, 3]]),
        ("BGGR", [[3, 2], [2, 1]]),
        ("GRBG", [[2, 1], [3, 2]]),
        ("GBRG", [[2, 3], [1, 2]]),
    ],
)
def test_mosaic_hand_checked(pattern, cell):
    rgb = torch.stack([torch.full((4, 6), float(v)) for v in (1, 2, 3)])  # R=1, G=2, B=3
    raw = mosaic(rgb, pattern)
    assert raw.shape == (4, 6)
    assert raw[:2, :2].tolist() == cell
    assert torch.equal(raw, torch.tensor(cell, dtype=raw.dtype).repeat(2, 3))


def test_mosaic_rggb_matches_pack_channels():
    rgb = _rand(3, 3, 4, 6)
    packed = pack(mosaic(rgb))
    assert torch.equal(packed[:, 0], rgb[:, 0, 0::2, 0::2])
    assert torch.equal(packed[:, 1], rgb[:, 1, 0::2, 1::2])
    assert torch.equal(packed[:, 2], rgb[:, 1, 1::2, 0::2])
    assert torch.equal(packed[:, 3], rgb[:, 2, 1::2, 1::2])


def test_dtype_and_device_follow_input():
    rgb = _rand(3, 4, 4).double()
    assert mosaic(rgb, "GBRG").dtype == torch.float64
    meta = torch.empty(2, 3, 4, 4, device="meta", dtype=torch.float16)
    out = pack(to_rggb(mosaic(meta, "BGGR"), "BGGR"))
    assert out.device.type == "meta" and out.dtype == torch.float16 and out.shape == (2, 4, 2, 2)


@pytest.mark.parametrize(
    "call",
    [
        lambda: pack(torch.zeros(3, 5)),
        lambda: pack(torch.zeros(4, 7)),
        lambda: pack(torch.zeros(4)),
        lambda: unpack(torch.zeros(3, 2, 2)),
        lambda: mosaic(torch.zeros(3, 5, 4)),
        lambda: mosaic(torch.zeros(4, 4, 4)),
        lambda: mosaic(torch.zeros(3, 4, 4), "XYZW"),
        lambda: to_rggb(torch.zeros(4, 5), "GRBG"),
        lambda: from_rggb(torch.zeros(5, 4), "GBRG"),
    ],
)
def test_bad_input_raises_format_error(call):
    with pytest.raises(BurstFormatError):
        call()
