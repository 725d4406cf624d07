"""benchmarks/gpu_leg.sh run whole on the CPU, so that the one device call of a lent GPU
(docs/gpu.md) does not lose its lease to a typo: tiny data pack, tiny sizes, 15 s budget."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from burstjdd.models import hub
from burstjdd.models.jddb import build_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_leg.sh"
SMOKE_ITEMS = ["cuda", "train_step_bf16_paper", "train_step_bf16_compact",
               "dcn_torchvision_vs_torch", "ca_vectorised_vs_loop", "device_synthesis"]
TINY_TRAINING = ("data.crop=32 data.search_radius=8 data.frames=3 optim.batch_size=2 "
                 "run.log_every=2 run.budget_probe_steps=3 run.budget_validations=1 "
                 "data.val_samples=2")
BUDGET_S = 15


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    lo = rng.random((h // 16 + 2, w // 16 + 2, 3))
    big = np.array(Image.fromarray((lo * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
    return np.clip(big.astype(int) + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def _source_tree(root: Path) -> Path:
    """A miniature of /work/shared/data/train: stills/<set>, video/<clip>, with the held-out
    set14 and gopro_rafting."""
    rng = np.random.default_rng(0)
    for folder, n in (("stills/setA", 3), ("stills/set14", 2)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_image(rng, 96, 112)).save(root / folder / f"{i}.png")
    for folder in ("video/clipA", "video/gopro_rafting"):
        (root / folder).mkdir(parents=True)
        base = _image(rng, 120, 140)
        for t in range(8):
            Image.fromarray(base[t:t + 96, 2 * t:2 * t + 112]).save(root / folder / f"{t:03d}.png")
    return root


def _make_pack(tmp: Path) -> Path:
    src = _source_tree(tmp / "src")
    pack = tmp / "pack"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_data_pack.py"), "--src",
                    str(src), "--out", str(pack), "--workers", "1"], check=True,
                   capture_output=True, text=True, timeout=120)
    return pack


def _env(tmp: Path, pack: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEG_")}
    env.update(OUT=str(tmp / "out"), LEG_PACK=str(pack), OMP_NUM_THREADS="1",
               LEG_OVERRIDES=TINY_TRAINING, CUDA_VISIBLE_DEVICES="", **extra)
    return env


def test_make_data_pack_layout(tmp_path):
    pack = _make_pack(tmp_path)
    manifest = json.loads((pack / "manifest.json").read_text())
    assert set(manifest["folders"]) == {"train/stills/setA", "train/clips/clipA",
                                        "val/stills/set14", "val/clips/gopro_rafting"}
    assert manifest["total_bytes"] <= manifest["max_bytes"] == 40 * 2**20
    assert all(p.suffix == ".webp" for p in (pack / "train").rglob("*") if p.is_file())
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from make_data_pack import pack_paths
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert pack_paths(pack, "val_paths") == [f"stills:{pack}/val/stills", f"{pack}/val/clips"]


@pytest.mark.slow
def test_the_whole_leg_runs_on_the_cpu_and_brings_back_every_file(tmp_path):
    pack = _make_pack(tmp_path)
    # parts of half the fp16 weights: the split path runs, and $OUT holds its 8 files at most
    n_bytes = sum(t.numel() * 2 for t in build_model("compact").state_dict().values()
                  if t.is_floating_point())
    part_mib = f"{n_bytes * 0.55 / 2**20:.3f}"
    proc = subprocess.run(["bash", str(SCRIPT), "compact", str(BUDGET_S)],
                          env=_env(tmp_path, pack, LEG_PART_MIB=part_mib), capture_output=True,
                          text=True, timeout=300, check=False)
    out = tmp_path / "out"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    parts = [f"weights/{hub.WEIGHTS_NAME}.000", f"weights/{hub.WEIGHTS_NAME}.001"]
    assert files == sorted(["leg.log", "leg.json", "scalars.csv", "weights/README.md",
                            "weights/config.json", f"weights/{hub.DIGEST_NAME}", *parts])
    assert len(files) <= 8
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for f in files for part in f.split("/"))
    assert all((out / f).stat().st_size <= 16 * 2**20 for f in files)

    data = json.loads((out / "leg.json").read_text())
    assert data["status"] == "done" and data["out_check"]["ok"], data.get("out_check")
    assert all(p["ok"] for p in data["phases"].values()), data["phases"]
    assert list(data["phases"]) == ["env", "smoke", "bench", "throughput", "train", "export"]
    assert [r["name"] for r in data["smoke"]] == SMOKE_ITEMS
    status = {r["name"]: r["status"] for r in data["smoke"]}
    assert status["cuda"] == "skipped"
    assert {status[k] for k in SMOKE_ITEMS if k not in ("cuda", "dcn_torchvision_vs_torch")} \
        == {"ok"}
    assert {(r["preset"], tuple(r["size"])) for r in data["bench"]["rows"]} == {
        ("paper", (128, 128)), ("compact", (128, 128))}
    assert all(r["total_s"] > 0 and 0 < r["ca_share"] < 1 for r in data["bench"]["rows"])
    assert data["bench"]["ca_vs_loop"]["offsets_differ"] == 0
    tp = data["throughput"]
    assert tp["loader"]["samples_per_s"] > 0 and tp["synth"]["samples_per_s"] > 0
    assert tp["steps"]["base"]["samples_per_s"] > 0
    assert data["choice"]["synthesis"] in ("loader", "device")

    train = data["train"]
    budget = train["time_budget"]
    assert budget["total_steps"] == train["config"]["schedule"]["total_steps"]
    assert 5 <= train["step"] <= budget["total_steps"]  # the guard may stop a few steps early
    assert budget["budget_s"] <= BUDGET_S
    assert train["config"]["run"]["time_budget_s"] is None  # the saved run is an ordinary one
    assert train["wall_time_s"] <= BUDGET_S
    assert len(train["validation_rows"]) >= 2 and np.isfinite(train["val_psnr"])
    assert train["config"]["data"]["val_paths"] == [f"stills:{pack}/val/stills",
                                                    f"{pack}/val/clips"]

    weights = out / "weights"
    assert len(hub.weight_parts(weights)) == 2
    assert data["export"]["sha256"] == hub.weights_digest(weights)
    model = hub.load_pretrained(weights)
    assert model.config == build_model("compact").config
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())

    log = (out / "leg.log").read_text()
    assert "==== train.log ====" in log and "GPU leg summary" in log
    assert "time budget" in log and "total_steps fixed to" in log
    scalars = (out / "scalars.csv").read_text().splitlines()
    assert scalars[0].startswith("step,total") and len(scalars) > 3


def test_the_leg_stops_at_once_without_a_pack_or_with_bad_weights(tmp_path):
    env = _env(tmp_path, tmp_path / "no-pack")
    proc = subprocess.run(["bash", str(SCRIPT), "compact", "10"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "no data pack" in proc.stdout and "make_data_pack.py" in proc.stdout
    data = json.loads((tmp_path / "out" / "leg.json").read_text())
    assert data["status"] == "no data pack"

    pack = _make_pack(tmp_path)
    proc = subprocess.run(["bash", str(SCRIPT), "compact", "10", str(tmp_path / "nothing")],
                          env=_env(tmp_path, pack), capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2 and "INIT_WEIGHTS" in proc.stdout
    proc = subprocess.run(["bash", str(SCRIPT), "compact"], env=_env(tmp_path, pack),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_the_choice_follows_the_measurements():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_leg import decide
        from train_speed import choose
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    # loader faster than the steps: it keeps up, no need to load the device with synthesis
    c = choose(300.0, 2000.0, {"base": 100.0, "channels_last": 102.0})
    assert c["synthesis"] == "loader" and c["variant"] == "base"  # +2 % is noise
    # loader slower than the steps: device synthesis wins when it is fast
    c = choose(80.0, 2000.0, {"base": 300.0, "channels_last": 360.0})
    assert c["synthesis"] == "device" and c["variant"] == "channels_last"
    assert c["expected_samples_per_s"] == pytest.approx(1 / (1 / 2000 + 1 / 360))
    # ... and not when it is slow
    assert choose(80.0, 100.0, {"base": 300.0})["synthesis"] == "loader"
    settings = {"synth": "auto", "channels_last": "auto", "compile": False}
    assert decide(settings, {"choice": c}) == c
    assert decide({**settings, "synth": "loader", "channels_last": "0"},
                  {"choice": c})["synthesis"] == "loader"
    assert decide({**settings, "channels_last": "0"}, {"choice": c})["variant"] == "base"
    assert decide(settings, None) == {"synthesis": "loader", "variant": "base"}


def test_the_dcn_comparison_runs(monkeypatch):
    """The smoke item that compares torchvision's DCN with ours runs on CUDA only; its code is
    run here with torchvision's path routed to ours (so every relative error is 0)."""
    import burstjdd.models.deform as deform

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_leg
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    original = deform.deform_conv2d

    def routed(*args, backend="auto", **kwargs):
        return original(*args, backend="torch", **kwargs)

    monkeypatch.setattr(deform, "deform_conv2d", routed)
    text = gpu_leg._compare_dcn(torch.device("cpu"))
    assert text.startswith("relative errors: output 0.0e+00") and "grad mask" in text
