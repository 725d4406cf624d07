"""Training loop: exact resume, data order, schedule plumbing, loss white balance, validation."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from burstjdd.errors import ConfigError, DataError, WeightsError
from burstjdd.models.jddb import JDDBOutput
from burstjdd.raw.color import render
from burstjdd.train.checkpoint import (
    capture_rng,
    data_label,
    export_run,
    load_checkpoint,
    read_run_info,
    restore_rng,
)
from burstjdd.train.config import config_from_dict
from burstjdd.train.distributed import DistContext
from burstjdd.train.loop import (
    Runtime,
    StepBatchSampler,
    build_training_dataset,
    build_validation_set,
    check_config,
    describe_hardware,
    loss_targets,
    resolve_data_paths,
    train,
    validation_psnr,
)
from burstjdd.train.schedule import lr_at

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_MODEL = {"preset": "compact",
              "overrides": {"nf": 8, "deformable_groups": 2, "extract_blocks": 1, "dsnet_width": 4}}


def tiny_config(paths, total_steps=4, **sections):
    """32 px GT crops, 8 px search radius, 3 frames, tiny compact model, CPU fp32."""
    tree = {
        "model": TINY_MODEL,
        "data": {"paths": [str(paths)], "crop": 32, "search_radius": 8, "frames": 3,
                 "workers": 0},
        "optim": {"batch_size": 2},
        "schedule": {"total_steps": total_steps},
        "run": {"log_every": 1, "val_every": 1000, "checkpoint_every": 1000, "device": "cpu",
                "precision": "fp32"},
    }
    for name, values in sections.items():
        tree[name] = {**tree[name], **values}
    return config_from_dict(tree)


def read_scalars(run_dir):
    with open(run_dir / "scalars.csv", newline="") as f:
        return list(csv.DictReader(f))


def quiet_train(*args, **kwargs):
    return train(*args, progress=False, echo=False, **kwargs)


@pytest.fixture(scope="module")
def straight_run(stills, tmp_path_factory):
    """An uninterrupted 4-step run (the reference of the resume test)."""
    run_dir = tmp_path_factory.mktemp("runs") / "straight"
    result = quiet_train(tiny_config(stills), run_dir)
    return run_dir, result


def test_resumed_run_is_bitwise_equal_to_an_uninterrupted_one(stills, straight_run, tmp_path):
    straight_dir, straight = straight_run
    cfg = tiny_config(stills)
    first = quiet_train(cfg, tmp_path / "r", stop_at=2)
    assert first.step == 2
    half = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    # a crash after step 3 was logged but before it was checkpointed: resume drops that row
    with open(tmp_path / "r" / "scalars.csv", "a") as f:
        f.write("3,999,1,1,1,,1,1,1,1,\n")
    second = quiet_train(cfg, tmp_path / "r", resume=True)
    assert second.step == straight.step == 4
    a = load_checkpoint(straight_dir / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert a.step == b.step == 4 and a.model.keys() == b.model.keys()
    for key in a.model:
        assert torch.equal(a.model[key], b.model[key]), key
    # training moved the parameters between the two halves (so the equality above means something)
    assert any(not torch.equal(half.model[k], b.model[k]) for k in b.model)
    for sa, sb in zip(a.optimizer["state"].values(), b.optimizer["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert a.scheduler == b.scheduler
    # same losses, step by step, in both scalar logs
    rows_a, rows_b = read_scalars(straight_dir), read_scalars(tmp_path / "r")
    assert [r["step"] for r in rows_b] == ["1", "2", "3", "4"]
    assert [r["total"] for r in rows_a] == [r["total"] for r in rows_b]
    assert b.wall_time > half.wall_time > 0


def test_scalars_follow_the_schedule(straight_run):
    run_dir, _ = straight_run
    rows = read_scalars(run_dir)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    # T = 1e-2 before half the run (updates 0, 1), 1e-3 after; L_BM on for update 0 only
    # (round(4 / 3) = 1); lr of update u is lr_at(u)
    assert [float(r["temperature"]) for r in rows] == [1e-2, 1e-2, 1e-3, 1e-3]
    assert [r["block_matching"] != "" for r in rows] == [True, False, False, False]
    for u, r in enumerate(rows):
        assert float(r["lr_g"]) == pytest.approx(lr_at(u, 4, 1e-4), rel=1e-6)
        assert float(r["lr_dsnet"]) == pytest.approx(lr_at(u, 4, 1e-5), rel=1e-6)
        terms = [float(r[k]) if r[k] else 0.0 for k in
                 ("reconstruction", "interpolation", "one_hot", "block_matching")]
        weighted = terms[0] + terms[1] + 1e5 * terms[2] + 1e3 * terms[3]
        assert float(r["total"]) == pytest.approx(weighted, rel=1e-5)
        assert float(r["samples_per_s"]) > 0 and r["val_psnr"] == ""
    text = (run_dir / "config.yaml").read_text()
    assert str(run_dir) in text and "total_steps: 4" in text


def test_data_order_depends_on_step_only():
    one = DistContext()
    assert list(StepBatchSampler(0, 3, 2, one)) == [[0, 1], [2, 3], [4, 5]]
    # a resumed loader starts where the stopped one would have gone on
    assert list(StepBatchSampler(2, 3, 2, one)) == [[4, 5]]
    ranks = [list(StepBatchSampler(1, 3, 4, DistContext(r, 2))) for r in range(2)]
    assert ranks == [[[4, 5], [8, 9]], [[6, 7], [10, 11]]]
    assert len(StepBatchSampler(5, 3, 2, one)) == 0


def test_loss_white_balance_is_the_official_red_blue_gains(stills):
    ds = build_training_dataset(tiny_config(stills))
    sample = ds[0]
    batch = {k: v[None] for k, v in sample.items()}
    wb = loss_targets(batch)["wb"][0]
    assert torch.equal(wb, torch.stack([sample["red_gain"], torch.tensor(1.0),
                                        sample["blue_gain"]]))
    # the sample's own wb (render / protocol ISP) also carries the rgb gain
    torch.testing.assert_close(sample["wb"], wb * sample["rgb_gain"])
    assert not torch.allclose(sample["wb"], wb)
    assert torch.equal(loss_targets(batch)["ccm"], batch["cam2rgb"])


class ZeroModel(nn.Module):
    """Predicts black: validation PSNR is then a function of the GT alone."""

    def forward(self, frames, noise, ref, *, origins, size, **kwargs):
        return JDDBOutput(torch.zeros(frames.shape[0], 3, 2 * size, 2 * size), None, None)


def test_validation_psnr_uses_the_protocol_isp(stills):
    cfg = tiny_config(stills, data={"val_paths": [str(stills)]})
    batches, summary = build_validation_set(cfg, n_samples=3, batch_size=2)
    # 3 bursts at each of the default levels, low then high
    assert [b["gt"].shape[0] for b in batches] == [2, 1, 2, 1]
    assert "low: 3 samples" in summary and "high: 3 samples" in summary
    levels = torch.cat([b["noise"] for b in batches])  # (6, 2) float32 [shot, read]
    expected = torch.tensor([[0.0025, 0.01]] * 3 + [[0.0064, 0.02]] * 3)
    torch.testing.assert_close(levels, expected, rtol=0, atol=0)
    got = validation_psnr(ZeroModel(), batches, cfg, Runtime(torch.device("cpu"), None))
    expected = []
    for b in batches:
        for gt, wb, ccm in zip(b["gt"], b["wb"], b["cam2rgb"]):
            a = 255 * render(torch.zeros_like(gt), wb, ccm).double().numpy()
            g = 255 * render(gt, wb, ccm).double().numpy()
            expected.append(10 * math.log10(255**2 / np.mean((a - g) ** 2)))
    assert got == pytest.approx(float(np.mean(expected)), rel=1e-12)
    # the same fixed bursts every time
    again, _ = build_validation_set(cfg, n_samples=3, batch_size=2)
    assert torch.equal(again[1]["frames"], batches[1]["frames"])


def test_validation_bursts_follow_val_seed_not_run_seed(stills):
    def first_frames(**sections):
        cfg = tiny_config(stills, data={"val_paths": [str(stills)], **sections.pop("data", {})},
                          **sections)
        return build_validation_set(cfg, n_samples=1, batch_size=1)[0][0]["frames"]

    base = first_frames()
    assert torch.equal(first_frames(run={"seed": 5}), base)  # legs of any seed: same bursts
    assert not torch.equal(first_frames(data={"val_seed": 5}), base)


def test_validation_runs_in_training(stills, tmp_path):
    cfg = tiny_config(stills, total_steps=2, data={"val_paths": [f"stills:{stills}"]},
                      run={"val_every": 1})
    result = quiet_train(cfg, tmp_path / "v", val_samples=2)
    rows = read_scalars(tmp_path / "v")
    assert [float(r["val_psnr"]) for r in rows][-1] == pytest.approx(result.val_psnr)
    assert rows[0]["step"] == "0" and rows[0]["total"] == ""  # the untrained baseline
    assert all(r["val_psnr"] for r in rows) and 0 < result.val_psnr < 60
    assert load_checkpoint(tmp_path / "v" / "checkpoint.pt").val_psnr == result.val_psnr


def test_bad_runs_fail_before_creating_the_run_dir(stills, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        check_config(tiny_config(tmp_path / "missing"))
    with pytest.raises(DataError, match="does not exist"):  # a kind prefix is understood
        check_config(tiny_config(f"stills:{tmp_path / 'missing'}"))
    with pytest.raises(ConfigError, match="multiple of the number of processes"):
        check_config(tiny_config(stills, optim={"batch_size": 3}), DistContext(0, 2))
    with pytest.raises(ConfigError, match="stop_at"):
        quiet_train(tiny_config(stills), tmp_path / "s", stop_at=5)
    assert not (tmp_path / "s").exists()
    with pytest.raises(ConfigError, match="not empty"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("")
        quiet_train(tiny_config(stills), tmp_path / "full")


def test_resume_refuses_a_changed_trajectory(stills, straight_run):
    run_dir, _ = straight_run
    with pytest.raises(ConfigError, match="optim.lr_g"):
        quiet_train(tiny_config(stills, optim={"lr_g": 2e-4}), run_dir, resume=True)
    # the data may move and logging may change: nothing left to do, the run is complete
    moved = tiny_config(stills, run={"log_every": 7})
    assert quiet_train(moved, run_dir, resume=True).step == 4


def test_data_paths_become_absolute(monkeypatch, stills):
    monkeypatch.chdir(stills.parent)
    cfg = resolve_data_paths(tiny_config(f"stills:{stills.name}", data={
        "val_paths": ["builtin:skimage", stills.name]}))
    assert cfg.data.paths == (f"stills:{stills}",)
    assert cfg.data.val_paths == ("builtin:skimage", str(stills))


def test_rng_states_round_trip():
    import random

    state = capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_foreign_or_missing_checkpoints_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="no checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a burstjdd training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_validation_floors_rank_the_trivial_answers_on_a_static_scene():
    """Static scene: the mean of 5 independent noisy frames beats the noisy reference, and with
    no noise both equal the bilinear demosaic of the clean crop."""
    from burstjdd.eval.baselines import demosaic_bilinear
    from burstjdd.eval.metrics import protocol_srgb, psnr
    from burstjdd.raw.cfa import mosaic, pack
    from burstjdd.train.loop import validation_floors

    g = torch.Generator().manual_seed(0)
    up = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=(48, 48),
                                         mode="bicubic", align_corners=False)
    scene = (0.2 + 0.6 * up[0]).clamp(0, 1)  # (3, 48, 48)
    clean = pack(mosaic(scene)).expand(5, 4, 24, 24)
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    gt = scene[:, 8:40, 8:40]  # the 32x32 crop at packed origin (4, 4)

    def batch(frames):
        return {"frames": frames[None], "origin": torch.tensor([[4, 4]]), "gt": gt[None],
                "ref": torch.tensor([2]), "wb": torch.ones(1, 3), "cam2rgb": torch.eye(3)[None]}

    floors = validation_floors([batch(noisy)])
    assert floors["unaligned_mean"] > floors["noisy_ref"] + 3.0
    exact = validation_floors([batch(clean)])
    expected = psnr(protocol_srgb(demosaic_bilinear(mosaic(gt)), torch.ones(3), torch.eye(3)),
                    protocol_srgb(gt, torch.ones(3), torch.eye(3)))
    assert exact["noisy_ref"] == pytest.approx(expected, abs=1e-6)
    assert exact["unaligned_mean"] == pytest.approx(expected, abs=1e-6)


def test_init_from_starts_from_exported_weights(stills, tmp_path):
    from burstjdd.models.hub import save_pretrained
    from burstjdd.models.jddb import build_model
    from burstjdd.train.loop import make_train_state

    source = build_model("compact", seed=7, **TINY_MODEL["overrides"])
    save_pretrained(source, tmp_path / "w")
    cfg = check_config(tiny_config(stills, model={"init_from": str(tmp_path / "w")}))
    state = make_train_state(cfg, torch.device("cpu"))
    for (name, a), b in zip(state.model.state_dict().items(), source.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    fresh = make_train_state(tiny_config(stills), torch.device("cpu")).model
    assert not torch.equal(fresh.unet.enc1_conv.simple_block[0].weight,
                           state.model.unet.enc1_conv.simple_block[0].weight)

    save_pretrained(build_model("compact", seed=7, nf=16, deformable_groups=2), tmp_path / "big")
    with pytest.raises(ConfigError, match="model.init_from"):
        check_config(tiny_config(stills, model={"init_from": str(tmp_path / "big")}))
    with pytest.raises(WeightsError, match="not a weights directory"):
        check_config(tiny_config(stills, model={"init_from": str(tmp_path / "missing")}))


@pytest.mark.parametrize("edit, match", [
    ({"model": {**TINY_MODEL, "overrides": {**TINY_MODEL["overrides"], "nf": 16}}},
     "shape|does not match"),
    ({"optim": {"lr_g": 2e-4}}, "optim.lr_g"),
    ({"schedule": {"eta_min": 1e-6}}, "schedule.eta_min"),
    ({"schedule": {"total_steps": 3}}, "at step 4, beyond schedule.total_steps=3"),
    ({"run": {"seed": 3}}, "run.seed"),
], ids=["model", "lr", "eta_min", "steps", "seed"])
def test_resume_checks_the_checkpoint_not_only_the_edited_config_yaml(stills, straight_run,
                                                                      tmp_path, edit, match):
    # config.yaml edited by hand: it is both the config and the file it was compared with, so
    # only the checkpoint tells (a model edit once ended in load_state_dict's traceback)
    import shutil

    from burstjdd.train.config import save_config

    run_dir = tmp_path / "run"
    shutil.copytree(straight_run[0], run_dir)
    cfg = tiny_config(stills, **edit)
    save_config(cfg, run_dir / "config.yaml")
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    with pytest.raises(ConfigError, match=match):
        quiet_train(cfg, run_dir, resume=True)
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


def test_export_takes_the_best_checkpoint_and_the_card_lists_every_leg(stills, tmp_path):
    val = {"val_paths": [f"stills:{stills}"], "val_samples": 1}
    first = tiny_config(stills, total_steps=3, data=val, run={"val_every": 1})
    quiet_train(first, tmp_path / "a")
    info = read_run_info(tmp_path / "a")
    rows = [r for r in read_scalars(tmp_path / "a") if r["val_psnr"]]
    best = max(rows, key=lambda r: float(r["val_psnr"]))
    assert info["best"]["step"] == int(best["step"])  # chosen on the validation set alone
    assert load_checkpoint(tmp_path / "a" / "checkpoint_best.pt").step == int(best["step"])
    export_run(tmp_path / "a", tmp_path / "wa")
    card_a = (tmp_path / "wa" / "README.md").read_text()
    assert "## Training legs" in card_a and "| 1 | a | 0→3 | 6 of 32 px |" in card_a
    assert str(stills) not in card_a  # data named without the machine's path (data_label)
    # a later session continues from those weights: its card keeps the first leg
    second = tiny_config(stills, total_steps=2, data=val, run={"val_every": 1},
                         model={"init_from": str(tmp_path / "wa")})
    quiet_train(second, tmp_path / "b")
    export_run(tmp_path / "b", tmp_path / "wb")
    card_b = (tmp_path / "wb" / "README.md").read_text()
    assert "| 1 | a | 0→3 | 6 of 32 px |" in card_b and "| 2 | b | 0→2 | 4 of 32 px |" in card_b


@pytest.mark.parametrize("spec, label", [
    ("stills:/work/shared/data/train/stills/set14", "stills:train/stills/set14"),
    ("/srv/data/clips/data/val_video", "val_video"),     # the last folder called data
    ("/home/me/photos/div2k", "div2k"),                  # no data root: the folder's name
    ("builtin:astronaut", "builtin:astronaut"),
])
def test_the_model_card_names_data_relative_to_the_data_root(spec, label):
    assert data_label(spec) == label


def test_hardware_names_the_threads_torch_computes_with():
    # the model card once said "(2 threads)" for a leg that torch trained on one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        text = describe_hardware(Runtime(torch.device("cpu"), None))
    finally:
        torch.set_num_threads(threads)
    assert "; torch on 1 of " in text and text.endswith(" threads)")


def test_hardware_names_the_cpu_model_and_its_isa(monkeypatch):
    import burstjdd.hardware as hardware

    info = ("AMD EPYC 9R14", frozenset({"avx2", "avx512f", "avx512_bf16", "fma"}))
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: info)
    assert hardware.native_bf16()
    text = hardware.describe_cpu(threads=2)
    assert text.startswith("AMD EPYC 9R14 (AVX2 AVX512 AVX512-BF16; torch on 2 of ")
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("Intel Core i7", frozenset({"avx2"})))
    assert not hardware.native_bf16() and "(AVX2; " in hardware.describe_cpu(threads=1)


# ------------------------------------------------------------------------------- guards


def _loss_going_bad_at(monkeypatch, step, kind="loss"):
    """Make the training loss (``kind`` "loss") or only its gradient ("gradient") non-finite
    from update ``step`` on (1-based; validation never calls total_loss)."""
    from burstjdd.train import loop

    real, calls = loop.total_loss, []

    def total_loss(out, targets, weights, use_bm):
        loss, report = real(out, targets, weights, use_bm=use_bm)
        calls.append(1)
        if len(calls) >= step:
            if kind == "loss":
                loss = loss * math.nan
            else:  # finite value, NaN gradient: d sqrt(x)/dx at 0 is inf, times 0
                loss = loss + 0.0 * torch.sqrt(0.0 * out.image.sum())
            report["total"] = float(loss.detach())
        return loss, report

    monkeypatch.setattr(loop, "total_loss", total_loss)


@pytest.mark.parametrize("kind, words", [("loss", "the loss is nan"),
                                         ("gradient", "the gradient norm is nan")])
def test_a_non_finite_step_stops_the_run_and_keeps_the_last_good_checkpoint(
        stills, tmp_path, monkeypatch, kind, words):
    from burstjdd.train.loop import DivergedError

    _loss_going_bad_at(monkeypatch, 3, kind)
    cfg = tiny_config(stills, run={"checkpoint_every": 2})
    with pytest.raises(DivergedError) as exc:
        quiet_train(cfg, tmp_path / "r")
    message = str(exc.value)
    assert message.startswith(f"step 3: {words}; training stopped") and "\n" not in message
    assert "the last good checkpoint (step 2) is kept" in message and "optim.lr_g" in message
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert ckpt.step == 2 and all(torch.isfinite(t).all() for t in ckpt.model.values())
    assert read_run_info(tmp_path / "r")["sessions"][-1]["end_step"] == 2
    assert "step 3: " in (tmp_path / "r" / "train.log").read_text()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(stills, tmp_path,
                                                                       monkeypatch):
    _loss_going_bad_at(monkeypatch, 1)
    with pytest.raises(ConfigError, match="step 1: the loss is nan; training stopped and no "
                                          "checkpoint had been written yet"):
        quiet_train(tiny_config(stills), tmp_path / "new" / "deeper" / "r")
    assert not (tmp_path / "new").exists()  # the parents it made went too
    (tmp_path / "empty").mkdir()  # a folder that was there stays, empty as it was
    with pytest.raises(ConfigError, match="step 1"):
        quiet_train(tiny_config(stills), tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def test_checkpoints_never_hold_non_finite_weights(stills, tmp_path, monkeypatch):
    from burstjdd.train import loop

    real = loop.train_step

    def step_then_poison(model, state, *args):
        report = real(model, state, *args)
        if state.step == 2:
            next(state.model.parameters()).data[0] = math.inf
        return report

    monkeypatch.setattr(loop, "train_step", step_then_poison)
    cfg = tiny_config(stills, run={"checkpoint_every": 1})
    with pytest.raises(loop.DivergedError, match=r"step 2: the weights are not finite; .*"
                                                 r"checkpoint \(step 1\) is kept"):
        quiet_train(cfg, tmp_path / "r")
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt").step == 1


def test_a_full_disk_is_one_error_naming_the_checkpoint(tmp_path, monkeypatch):
    from burstjdd.train import checkpoint

    def full(obj, path):  # what torch raises when the disk takes fewer bytes than written
        Path(path).write_bytes(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"the previous checkpoint")
    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(OSError) as exc:
        checkpoint.save_checkpoint(checkpoint.Checkpoint(1, {}, {}, {}, {}, {}), path)
    message = str(exc.value)
    assert message.startswith(f"cannot write {path}:") and "no space left on device" in message
    assert "MiB free on that disk" in message
    assert path.read_bytes() == b"the previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file
    monkeypatch.setattr(checkpoint.torch, "save", lambda obj, p: 1 / 0)  # a bug stays a bug
    with pytest.raises(ZeroDivisionError):
        checkpoint.save_checkpoint(checkpoint.Checkpoint(1, {}, {}, {}, {}, {}), path)


def test_workers_are_bounded_by_the_cpus(stills, monkeypatch):
    from burstjdd.train import loop

    monkeypatch.setattr(loop, "usable_cpus", lambda: 2)
    check_config(tiny_config(stills, data={"workers": 8}))
    with pytest.raises(ConfigError, match=r"data.workers=9 is more than 4 per CPU .* \(2\): "
                                          r"use at most 8"):
        check_config(tiny_config(stills, data={"workers": 9}))


def test_a_file_is_not_a_run_directory(stills, tmp_path):
    (tmp_path / "file").write_text("mine")
    for run_dir in (tmp_path / "file", tmp_path / "file" / "run"):
        with pytest.raises(ConfigError, match="must be a folder, new or empty, but .*file is a "
                                              "file"):
            quiet_train(tiny_config(stills), run_dir)
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("text, words", [
    ("[" * 100 + "]" * 100, "nested more than 32"),
    ('{"sessions": {"a": 1}}', "'sessions' is not a list"),
    ('{"sessions": [{"start_step": "x"}]}', "sessions[0].start_step is not an integer"),
    ('{"sessions": [{"wall_s": Infinity}]}', "sessions[0].wall_s is not a finite number"),
    ('{"best": [1]}', "'best' is not an object"),
    ('{"sessions": [], "x": ' + "1" * 5000 + "}", "4300"),
])
def test_run_json_is_read_with_limits_and_checked(tmp_path, text, words):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(WeightsError) as exc:
        read_run_info(tmp_path)
    assert words in str(exc.value) and "run.json" in str(exc.value)
    (tmp_path / "run.json").write_bytes(bytes(range(128, 256)))
    with pytest.raises(WeightsError, match="not UTF-8"):
        read_run_info(tmp_path)
