"""`burstjdd info BURST`."""

from __future__ import annotations

import pytest
import torch

from burstjdd.cli import build_parser, main
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.npz import write_npz

# The malformed-file cases are shared with the reader tests (pytest puts tests/ on sys.path).
from test_io import MALFORMED, full_burst, valid_kwargs, write_malformed


def test_info_is_listed_in_help():
    assert "show what a burst file contains" in build_parser().format_help()


def test_info_prints_the_metadata(tmp_path, capsys):
    path = tmp_path / "b.npz"
    write_npz(full_burst(), path)
    assert main(["info", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"file:    {path}"
    for expected in [
        "frames:  3 (reference 0)",
        "size:    12 x 8 (width x height)",
        "pattern: GRBG",
        "wb:      [2.1, 1, 1.7]",
        "noise:   shot 0.0025, read 0.01 (stored)",
        "gt:      yes",
        "flow:    yes",
        "valid:   yes",
        "meta:    frames, scale, source",
    ]:
        assert expected in lines
    assert any(line.startswith("ccm:     [[") for line in lines)


def test_info_estimates_missing_noise(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    clean = torch.linspace(0.1, 0.9, 64).repeat(64, 1).expand(2, 64, 64)
    raw = (clean + 0.02 * torch.randn(2, 64, 64, generator=g)).clamp(0, 1)
    burst = RawBurst(**{**valid_kwargs(), "raw": raw})
    level = burst.noise_level()
    write_npz(burst, tmp_path / "b.npz")
    assert main(["info", str(tmp_path / "b.npz")]) == 0
    out = capsys.readouterr().out
    assert f"noise:   estimated: shot {level.shot:.4g}, read {level.read:.4g}" in out.splitlines()
    assert "gt:      no" in out and "flow:    no" in out and "meta:    (none)" in out


def test_info_survives_a_burst_too_small_to_estimate(tmp_path, capsys):
    write_npz(RawBurst(**valid_kwargs()), tmp_path / "tiny.npz")  # 8 x 12 frames
    assert main(["info", str(tmp_path / "tiny.npz")]) == 0
    assert "noise:   not stored, cannot be estimated (" in capsys.readouterr().out


@pytest.mark.parametrize("case_id", [c[0] for c in MALFORMED])
def test_info_reports_malformed_file_in_one_line(tmp_path, capsys, case_id):
    path = write_malformed(case_id, tmp_path)
    assert main(["info", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("burstjdd info: error: ")
    assert str(path) in err and "Traceback" not in err


def test_info_reports_missing_file_in_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.npz")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "missing.npz" in err
