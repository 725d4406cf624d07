"""Official checkpoints: key list, safe loading, conversion to our weights, and the CLI."""

from __future__ import annotations

import math

import pytest
import torch

from burstjdd import cli
from burstjdd.errors import WeightsError
from burstjdd.models import hub, official
from burstjdd.models.jddb import make_config


class NotATensor:
    """A custom object: torch.load(weights_only=True) must refuse to rebuild it."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def n_params(shapes: dict) -> int:
    return sum(math.prod(s) for s in shapes.values())


def random_official(net: str, seed: int) -> dict[str, torch.Tensor]:
    """An official-looking state dict: official names/shapes, small random values."""
    g = torch.Generator().manual_seed(seed)
    return {k: 0.02 * torch.randn(s, generator=g)
            for k, s in official.official_key_shapes(net).items()}


@pytest.fixture(scope="module")
def g_state():
    return random_official("G", 0)


@pytest.fixture(scope="module")
def dsnet_state():
    return random_official("DSNet", 1)


def test_official_key_shapes_match_the_paper_counts():
    g, ds = official.official_key_shapes("G"), official.official_key_shapes("DSNet")
    # docs/official-network.md §2.3 (f): G 12,052,144 and DSNet 9,840 parameters.
    assert n_params(g) == 12_052_144
    assert n_params(ds) == 9_840
    for n, prefix in ((64, "feature_extract_acse1."), (128, "acse_block_s2."),
                      (256, "acse_block_s3.")):   # ACNSe(n): 55 n^2 + 53.5 n + 1
        part = {k: s for k, s in g.items() if k.startswith(prefix)}
        assert n_params(part) == 55 * n * n + 53.5 * n + 1
    assert g["pcd_align.pcd_align.L1_dcnpack_1.conv_offset_mask.weight"] == (216, 64, 3, 3)
    assert g["up1.weight"] == (256, 128, 2, 2)                 # ConvTranspose: (in, out, k, k)
    assert g["conv_block_s5.simple_block.4.weight"] == (3, 64, 3, 3)
    assert "conv_block_s5.simple_block.4.bias" not in g     # last SimpleBlock conv: no bias
    assert list(ds) == ["simple_block.0.weight", "simple_block.1.weight", "simple_block.1.bias",
                        "simple_block.3.weight", "simple_block.4.weight", "simple_block.4.bias",
                        "simple_block.6.weight", "simple_block.6.bias"]
    with pytest.raises(WeightsError, match="unknown official network"):
        official.official_key_shapes("D")


def test_every_official_key_maps_to_a_distinct_key_of_ours():
    names = official.official_to_ours("G") | official.official_to_ours("DSNet")
    expected = hub.meta_model(make_config("paper"), "test").state_dict()
    assert sorted(names.values()) == sorted(expected)
    assert names["conv_block_s3.simple_block.0.weight"] == "unet.mid_conv1.simple_block.0.weight"
    assert names["conv_block_s3_2.simple_block.0.weight"] == "unet.mid_conv2.simple_block.0.weight"
    assert names["simple_block.6.bias"] == "dsnet.simple_block.6.bias"
    shapes = official.official_key_shapes("G")
    assert all(tuple(expected[names[k]].shape) == s for k, s in shapes.items())


@pytest.fixture
def with_convert_command(monkeypatch):
    """The CLI registry with our subcommand (the lead registers it in burstjdd.cli)."""
    from burstjdd.cli import convert

    monkeypatch.setattr(cli, "COMMANDS", ((convert.NAME, "burstjdd.cli.convert", convert.HELP),))


def test_convert_round_trip_through_the_cli(tmp_path, g_state, dsnet_state,
                                            with_convert_command, capsys):
    g_path, ds_path = tmp_path / "G.pth", tmp_path / "DSNet.pth"
    # DDP prefix on G, a {"state_dict": ...} wrapper on the DSNet: both must be accepted.
    torch.save({f"module.{k}": v for k, v in g_state.items()}, g_path)
    torch.save({"state_dict": dsnet_state}, ds_path)
    out = tmp_path / "converted"
    assert cli.main(["convert-official", str(g_path), str(ds_path), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    model = hub.load_pretrained(out)
    ours = model.state_dict()
    for net, state in (("G", g_state), ("DSNet", dsnet_state)):
        for key, ours_key in official.official_to_ours(net).items():
            assert torch.equal(ours[ours_key], state[key]), key
    card = (out / hub.CARD_NAME).read_text()
    assert hub.sha256_file(g_path) in card and "DSNet.pth" in card
    frames = torch.rand(1, 5, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        image = model(frames, 0.1 * frames + 0.01, origins=[[4, 4]], size=8,
                      search_radius=16).image
    assert image.shape == (1, 3, 16, 16) and torch.isfinite(image).all()


def test_convert_refuses_missing_unexpected_and_misshaped_keys(g_state, dsnet_state):
    dropped = "pcd_align.pcd_align.L2_dcnpack_1.conv_offset_mask.bias"
    with pytest.raises(WeightsError, match=f"official G checkpoint.*missing 1: {dropped}"):
        official.convert_official({k: v for k, v in g_state.items() if k != dropped},
                                  dsnet_state)
    with pytest.raises(WeightsError, match="unexpected 1: simple_block.7.weight"):
        official.convert_official(g_state, dsnet_state | {"simple_block.7.weight": torch.ones(1)})
    with pytest.raises(WeightsError, match=r"shape mismatch.*up2.bias \(32,\)"):
        official.convert_official(g_state | {"up2.bias": torch.zeros(32)}, dsnet_state)
    with pytest.raises(WeightsError, match="not a plain state dict"):
        official.convert_official(g_state | {"epoch": 3}, dsnet_state)


def test_unsafe_or_unreadable_checkpoints_are_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "obj": NotATensor()}, evil)
    with pytest.raises(WeightsError, match="not a plain state dict.*NotATensor"):
        official.load_official_state(evil)
    meta = tmp_path / "meta.pth"
    torch.save({"weight": torch.zeros(2), "iteration": 600_000}, meta)
    with pytest.raises(WeightsError, match="entry 'iteration' is int"):
        official.load_official_state(meta)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        official.load_official_state(junk)
    with pytest.raises(WeightsError, match="no such file"):
        official.load_official_state(tmp_path / "absent.pth")
    clash = tmp_path / "clash.pth"
    torch.save({"w": torch.zeros(1), "module.w": torch.ones(1)}, clash)
    with pytest.raises(WeightsError, match="duplicate key 'w'"):
        official.load_official_state(clash)


def test_cli_missing_file_exits_2_with_one_line(tmp_path, with_convert_command, capsys):
    code = cli.main(["convert-official", str(tmp_path / "G.pth"), str(tmp_path / "D.pth"),
                     "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "G.pth: no such file" in err
    assert not (tmp_path / "out").exists()
