"""bench (eval/benchmark.py) and analyze (eval/analyze.py) on tiny generated inputs."""

from __future__ import annotations

import pytest
import torch
from skimage import data

from burstjdd.cli import analyze as cli_analyze
from burstjdd.cli import main
from burstjdd.errors import ConfigError
from burstjdd.eval import benchmark as bm
from burstjdd.eval.analyze import analyze_burst
from burstjdd.models.jddb import build_model
from burstjdd.raw.npz import write_npz
from burstjdd.synth.burst import simulate_burst

ROW_FIELDS = {"preset", "size", "stage", "tiles", "padded", "time_s", "warm", "peak_mib",
              "flops", "params_g", "params_dsnet"}


def test_measure_rows_have_all_fields():
    for stage in bm.STAGES:  # 32x32 full-res = one 16x16 packed tile
        row = bm.measure(bm.BenchConfig("compact", (32, 32), stage, repeat=1, tile=16))
        assert ROW_FIELDS <= row.keys()
        assert row["tiles"] == 1 and row["padded"] == [32, 32]
        assert row["flops"] > 0 and row["time_s"] > 0
        assert row["params_dsnet"] == 9840
        assert ("match_flops_est" in row) == (stage == "ca")


def test_tile_grid_pads_to_whole_tiles():
    hp, wp, corners = bm.padded_tile_grid(360, 640, 128)  # 5x720p packed (docstring example)
    assert (hp, wp, len(corners)) == (384, 640, 15)


def test_compact_has_fewer_flops_than_paper():
    torch.set_num_threads(1)
    flops = {p: bm.reconstruct_flops(build_model(p, seed=0), 16) for p in ("paper", "compact")}
    assert 0 < flops["compact"] < flops["paper"]


def test_loop_and_vectorised_ca_agree_on_bench_input():
    row = bm.compare_ca((128, 128), tile=32, repeats=1)
    assert row["offsets"] == 4 * 5  # 4 tiles x 5 frames
    assert torch.equal(row["offsets_vec"], row["offsets_loop"])
    assert row["offsets_differ"] == 0


def _burst(seed: int):
    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    return simulate_burst(img, max_shift=24, n_objects=0, crop=(256, 256), seed=seed)


def test_analyze_recovers_neighbour_shift_statistics():
    # Measured (astronaut, 256x256, high noise, max_shift 24, grid 4 px, radius 96 px):
    # |median - true| <= 1.5 px, |p90 - true| <= 1.5 px, 89 % / 95 % of the block pairs
    # within 1.5 grid px (the rest: flat blocks); the test allows one grid px and 80 %.
    for seed in (1, 2):
        a = analyze_burst(_burst(seed))
        assert a.grid == 4 and a.true_stats is not None
        assert abs(a.stats.median - a.true_stats.median) <= a.grid
        assert abs(a.stats.p90 - a.true_stats.p90) <= a.grid
        err = (a.neighbour - a.true_neighbour).norm(dim=-1)
        assert (err <= 1.5 * a.grid).float().mean() >= 0.8


def test_cli_analyze_writes_pngs(tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "b.npz"
    write_npz(_burst(1), path)
    assert main(["analyze", str(path), "-o", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "true, from flow" in text and "noise (stored)" in text
    # the restore's global motion per frame, with its confidence, and its search radius
    assert "global motion (phase correlation), frame 0: (" in text and "confidence" in text
    assert "restore would search +-48 px around each frame's global shift" in text
    for name in ("shift_histogram.png", "offsets.png"):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.size[0] > 0
    with Image.open(tmp_path / "out" / "offsets.png") as im:
        assert im.size == (512, 512)  # half-resolution render of 256x256, enlarged x4


def test_cli_analyze_bad_path_is_one_line(tmp_path, capsys):
    assert cli_analyze.NAME == "analyze"
    assert main(["analyze", str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.npz" in err and "\n" not in err


def test_cli_analyze_writes_both_pngs_or_neither(tmp_path, capsys):
    path = tmp_path / "b.npz"
    write_npz(_burst(1), path)
    out = tmp_path / "out"
    (out / "offsets.png").mkdir(parents=True)  # the second output cannot be written
    assert main(["analyze", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "offsets.png" in err and "\n" not in err
    assert [p.name for p in out.iterdir()] == ["offsets.png"]  # no shift_histogram.png
    assert main(["analyze", str(path), "-o", str(path)]) == 2  # a file is not a folder
    assert "must be a folder" in capsys.readouterr().err


def test_bench_sizes_are_bounded():
    assert bm.parse_size("16384x2") == (16384, 2)
    for text in ("16386x16384", "0x2", "3x2"):
        with pytest.raises(ConfigError, match="even numbers in 2..16384"):
            bm.parse_size(text)
