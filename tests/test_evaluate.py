"""burstjdd evaluate: tables, cache, errors, stress curve, figures (tiny generated data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from burstjdd.cli import main
from burstjdd.errors import ConfigError, DataError
from burstjdd.eval import evaluate as ev
from burstjdd.eval.baselines import bilinear
from burstjdd.eval.figures import crop_figure, pick_region, plot_curves
from burstjdd.eval.metrics import protocol_srgb, psnr
from burstjdd.raw.noise import parse_noise

METHODS = ("bilinear", "mean", "hdrplus")


def _write_clip(folder, n_frames, offset, size=(64, 80)):
    """n_frames PNGs of an astronaut crop moving 1 px per frame to the right."""
    folder.mkdir(parents=True)
    photo = skdata.astronaut()
    h, w = size
    for t in range(n_frames):
        y, x = 100 + offset, 150 + offset + t
        Image.fromarray(photo[y : y + h, x : x + w]).save(folder / f"{t:03d}.png")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    _write_clip(root / "alpha", 6, 0)
    _write_clip(root / "beta", 5, 40)
    return root


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    root = tmp_path_factory.mktemp("stills")
    for name, photo in (("coffee", skdata.coffee()), ("chelsea", skdata.chelsea())):
        Image.fromarray(photo[100:196, 150:278]).save(root / f"{name}.png")  # 96 x 128
    return root


def _counting(name="count"):
    calls = []

    def fn(burst):
        calls.append(burst.meta.get("frames"))
        return bilinear(burst)

    return ev.Method(name, fn, "v1"), calls


def test_table_has_every_method_and_clip(clips, tmp_path):
    specs = ev.clip_bursts(clips, "high")
    # centre frames only: alpha (6 frames) -> 2, 3; beta (5) -> 2
    assert [s.burst_id for s in specs] == ["alpha/002", "alpha/003", "beta/002"]
    methods = ev.resolve_methods(list(METHODS), note=lambda _: None)
    results = ev.evaluate(specs, methods, progress=False)
    assert len(results) == len(specs) * len(METHODS)
    # one score by hand: the protocol ISP on output and GT, PSNR
    burst = specs[0].build()
    expected = psnr(protocol_srgb(bilinear(burst), burst.wb, burst.ccm),
                    protocol_srgb(burst.gt, burst.wb, burst.ccm))
    first = next(r for r in results if r.method == "bilinear" and r.burst == "alpha/002")
    assert first.psnr == pytest.approx(expected, abs=1e-9)

    summary = ev.summarise(results)
    for m in METHODS:
        cells = summary["high"][m]
        alpha = np.mean([r.psnr for r in results if r.method == m and r.group == "alpha"])
        assert cells["alpha"]["psnr"] == pytest.approx(alpha)
        # average over clips, not over bursts (alpha has 2 bursts, beta 1)
        assert cells["Average"]["psnr"] == pytest.approx(
            (cells["alpha"]["psnr"] + cells["beta"]["psnr"]) / 2)
    # the burst methods beat a single noisy frame on this almost static clip
    average = {m: summary["high"][m]["Average"]["psnr"] for m in METHODS}
    assert average["mean"] > average["bilinear"]

    table = ev.format_table(summary, "high")
    lines = table.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["high noise", "alpha", "beta",
                                                              "Average"]
    assert [line.split("|")[1].strip() for line in lines[2:]] == list(METHODS)
    json_path, md_path = ev.write_results(tmp_path, summary, results, table, {"x": 1})
    saved = json.loads(json_path.read_text())
    assert set(saved["summary"]["high"]) == set(METHODS)
    assert len(saved["bursts"]) == len(results)
    assert md_path.read_text().strip() == table


def test_rerun_hits_the_cache_and_noise_change_recomputes(clips, tmp_path):
    specs = ev.clip_bursts(clips, "high", max_bursts=1)
    assert [s.burst_id for s in specs] == ["alpha/002", "beta/002"]
    method, calls = _counting()
    first = ev.evaluate(specs, [method], ev.ResultCache(tmp_path / "c.jsonl"), progress=False)
    assert len(calls) == 2
    again = ev.evaluate(specs, [method], ev.ResultCache(tmp_path / "c.jsonl"), progress=False)
    assert len(calls) == 2 and again == first  # nothing computed, same scores
    low = ev.clip_bursts(clips, "low", max_bursts=1)
    ev.evaluate(low, [method], ev.ResultCache(tmp_path / "c.jsonl"), progress=False)
    assert len(calls) == 4
    changed = ev.Method(method.name, method.fn, "v2")  # new params / weights
    ev.evaluate(specs, [changed], ev.ResultCache(tmp_path / "c.jsonl"), progress=False)
    assert len(calls) == 6


def test_bad_inputs_give_one_line_errors(clips, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError):
        ev.clip_bursts(empty)
    short = tmp_path / "short"
    _write_clip(short / "tiny", 4, 0)
    with pytest.raises(DataError, match="tiny.*4 frames"):
        ev.clip_bursts(short)
    with pytest.raises(ConfigError, match="'nope'.*bilinear.*hdrplus"):
        ev.resolve_methods(["bilinear", "nope"])
    for argv, word in (
        (["--data", str(empty)], "no usable clips"),
        (["--data", str(short)], "tiny"),
        (["--data", str(clips), "--methods", "bilinear,nope"], "nope"),
    ):
        assert main(["evaluate", *argv, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and word in err


def test_stress_curve_mean_degrades_with_shift(stills, tmp_path):
    methods = [ev.baseline_method("mean"), ev.baseline_method("bilinear")]
    shifts = (0, 8, 24)
    summary = ev.stress_curve(stills, methods, shifts, "high", out=tmp_path, progress=False)
    mean = [summary["high"]["mean"][f"{s}"]["psnr"] for s in shifts]
    assert mean[0] > mean[1] > mean[2]
    # the reference frame (content and noise) is the same at every shift: bilinear is flat
    flat = [summary["high"]["bilinear"][f"{s}"]["psnr"] for s in shifts]
    assert flat[0] == flat[1] == flat[2]
    png = tmp_path / "stress_high.png"
    assert Image.open(png).size == (800, 500)
    assert "| mean" in (tmp_path / "stress.md").read_text()


def test_shifted_burst_moves_frames_by_the_shift():
    photo = torch.from_numpy(skdata.coffee()[:96, :160].copy()).permute(2, 0, 1).float() / 255
    burst = ev.shifted_burst(photo, 8, (80, 96), parse_noise("low"), seed=1)
    # frame ref+1 shows the content 8 px further along x (the longer axis)
    flow = burst.flow[burst.ref + 1]
    assert torch.allclose(flow[1], torch.full_like(flow[1], 8.0))
    assert torch.allclose(flow[0], torch.zeros_like(flow[0]))


def test_crop_figure_size_and_region(tmp_path):
    image = torch.full((3, 96, 96), 0.5)
    image[:, 50:90, 10:50] = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    y, x = pick_region(image, 32)
    assert 50 <= y <= 58 and 10 <= x <= 18  # inside the textured square
    images = {"ground truth": image, "a": image * 0.9, "b": image * 0.8}
    path = crop_figure(images, tmp_path / "f.png", psnrs={"a": 30.0, "b": 25.0}, size=32,
                       panel=128)
    assert Image.open(path).size == (3 * 128 + 4 * 8, 128 + 22 + 2 * 8)


def test_plot_curves_draws_each_line(tmp_path):
    path = plot_curves([0, 10, 20], {"a": [30, 25, 20], "b": [28, 28, 28]}, tmp_path / "p.png",
                       size=(400, 300))
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (300, 400, 3)
    for hex_colour in ("#1f77b4", "#d62728"):  # the first two palette colours are drawn
        rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
        assert (pixels == rgb).all(-1).sum() > 50


def test_cli_writes_tables_json_and_figures(clips, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["evaluate", "--data", str(clips), "--methods", "bilinear,mean", "--noise", "high",
            "--max-bursts", "1", "--out", str(out), "--figures", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "alpha" in printed and "beta" in printed and "| mean" in printed
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["summary"]["high"]) == {"bilinear", "mean"}
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["alpha_002_high.png", "beta_002_high.png"]
    assert Image.open(out / "figures" / figures[0]).size == (3 * 256 + 4 * 8, 256 + 22 + 16)


def test_our_model_is_a_method_only_with_weights(tmp_path, monkeypatch):
    from burstjdd.models import hub
    from burstjdd.models.jddb import build_model

    notes = []
    names = [m.name for m in ev.resolve_methods(["bilinear"], note=notes.append)]
    assert names == ["bilinear"] and notes == []  # not asked for: no note
    monkeypatch.setattr(hub, "shipped_weights", lambda: [])  # whether or not some ship
    methods = ev.resolve_methods(None, note=notes.append)
    assert "ours" not in [m.name for m in methods]
    assert len(notes) == 1 and "skipped" in notes[0]
    tiny = dict(nf=8, deformable_groups=2, extract_blocks=1, dsnet_width=4)
    for seed in (0, 1):
        hub.save_pretrained(build_model("compact", seed=seed, **tiny), tmp_path / f"w{seed}")
    versions = {
        (seed, radius): ev.resolve_methods(
            ["bilinear"], model=tmp_path / f"w{seed}", search_radius=radius, device="cpu",
        )[-1]
        for seed, radius in ((0, 8.0), (0, 16.0), (1, 8.0))
    }
    assert {m.name for m in versions.values()} == {"ours"}
    # other weights or another radius: another cache key
    assert len({m.version for m in versions.values()}) == 3
    # resolve_methods builds our model's Method itself, with the same cache key as model_method
    direct = ev.model_method(tmp_path / "w0", search_radius=8.0, device="cpu")
    assert direct.version == versions[(0, 8.0)].version
    # without the global pre-alignment: another cache key
    plain = ev.model_method(tmp_path / "w0", search_radius=8.0, device="cpu", prealign=False)
    assert plain.version != direct.version


def test_still_bursts_are_seeded_and_grouped(stills):
    specs = ev.still_bursts(stills, "high", max_shift=4.0)
    assert [s.burst_id for s in specs] == ["chelsea.png", "coffee.png"]
    assert {s.group for s in specs} == {stills.name}  # images directly in root: one group
    a, b = specs[0].build(), specs[0].build()
    assert torch.equal(a.raw, b.raw) and a.gt is not None
    assert not torch.equal(a.raw[0], a.raw[a.ref])  # the frames move
    other_seed = ev.still_bursts(stills, "high", max_shift=4.0, seed=1)[0]
    assert other_seed.key != specs[0].key
    assert not torch.equal(other_seed.build().raw, a.raw)
    assert len(ev.still_bursts(stills, "high", max_shift=4.0, max_bursts=1)) == 1


def test_cache_versions_follow_code_not_prose(tmp_path, monkeypatch):
    module = tmp_path / "digest_probe.py"
    monkeypatch.syspath_prepend(str(tmp_path))

    def version(source: str) -> str:
        module.write_text(source)
        import importlib
        import sys

        sys.modules.pop("digest_probe", None)
        importlib.invalidate_caches()
        return ev.source_digest("digest_probe")

    code = '"""Doc."""\n\ndef f(x):\n    """Doc."""\n    return x + 1  # why\n'
    prose = '"""Other doc."""\n\ndef f(x):\n    return x + 1\n'
    edited = code.replace("x + 1", "x + 2")
    assert version(code) == version(prose) != version(edited)
    # baselines are versioned by the code they run, not by baselines.py alone
    assert "burstjdd.raw.denoise" in ev.CLASSICAL_SOURCES
    assert ev.baseline_method("dmn").version == ev.source_digest(
        "burstjdd.eval.baselines", *ev.CLASSICAL_SOURCES)


# ------------------------------------------------------------------------------- cache and outputs


def test_cache_lines_that_are_not_entries_are_skipped(tmp_path):
    good = {"key": "k1", "result": {"method": "m", "group": "g", "burst": "b", "noise": "high",
                                    "psnr": 30.5, "ssim": 0.9, "seconds": 1}}
    bad_types = {"key": "k2", "result": {**good["result"], "psnr": "high"}}
    missing = {"key": "k3", "result": {"method": "m"}}
    path = tmp_path / "cache.jsonl"
    path.write_bytes(b"\n".join([
        bytes(range(256)),  # random bytes: not UTF-8
        b"[" * 5000 + b"]" * 5000,  # nested beyond the limit
        b'{"key": "k4", "result": ' + b"1" * 5000 + b"}",  # an integer Python will not read
        json.dumps(bad_types).encode(), json.dumps(missing).encode(), b"[1, 2]",
        json.dumps(good).encode(), b"\xff\xfe unfinished"]))
    cache = ev.ResultCache(path)
    assert list(cache.entries) == ["k1"] and cache.get("k1").psnr == 30.5
    result = ev.BurstResult("m", "g", "b2", "low", 20.0, 0.5, 0.1)
    cache.put("k5", result)  # starts on a line of its own after the unfinished one
    assert set(ev.ResultCache(path).entries) == {"k1", "k5"}


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs")
def test_a_cache_that_is_not_a_regular_file_is_refused(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(DataError, match="FIFO"):
        ev.ResultCache(tmp_path / "fifo.jsonl")  # would block forever if it were read
    with pytest.raises(DataError, match="folder"):
        ev.ResultCache(tmp_path)


def _evaluate_with_results_unwritable(stills, out, capsys):
    """Run evaluate into ``out`` whose results.json is a folder: it fails after scoring."""
    (out / "results.json").mkdir(parents=True)
    argv = ["evaluate", "--data", str(stills), "--layout", "stills", "--methods", "bilinear",
            "--noise", "high", "--max-bursts", "1", "--max-shift", "4", "-o", str(out), "--quiet"]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "results.json" in err[0], err
    return argv


def test_a_failed_evaluate_removes_the_cache_it_created_and_keeps_an_older_one(stills, tmp_path,
                                                                               capsys):
    out = tmp_path / "new"
    _evaluate_with_results_unwritable(stills, out, capsys)
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # no cache.jsonl
    old = tmp_path / "old"
    old.mkdir()
    (old / "cache.jsonl").write_text("{}\n")
    _evaluate_with_results_unwritable(stills, old, capsys)
    lines = (old / "cache.jsonl").read_text().splitlines()
    assert lines[0] == "{}" and len(lines) == 2  # kept, with the score of this run appended


def test_ctrl_c_keeps_the_cache_so_that_the_next_run_continues(stills, tmp_path, monkeypatch,
                                                                 capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ev, "write_results", interrupted)
    out = tmp_path / "e" / "o"
    argv = ["evaluate", "--data", str(stills), "--layout", "stills", "--methods", "bilinear",
            "--noise", "high", "--max-bursts", "1", "--max-shift", "4", "-o", str(out), "--quiet"]
    assert main(argv) == 130
    assert [p.name for p in out.iterdir()] == ["cache.jsonl"]
    assert len(ev.ResultCache(out / "cache.jsonl").entries) == 1
