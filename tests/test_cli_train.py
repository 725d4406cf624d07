"""``burstjdd train`` and ``burstjdd export`` end to end, and bad configs stopping early."""

from __future__ import annotations

import pytest
import torch
import yaml

from burstjdd import cli
from burstjdd.models.hub import load_pretrained
from burstjdd.train.checkpoint import load_checkpoint

TRAIN = ("train", "burstjdd.cli.train",
         "train the model (or an ablation) on your data; resume a run")
EXPORT = ("export", "burstjdd.cli.export", "export a training run's weights for restore")

TINY = {
    "model": {"preset": "compact",
              "overrides": {"nf": 8, "deformable_groups": 2, "extract_blocks": 1,
                            "dsnet_width": 4}},
    "data": {"crop": 32, "search_radius": 8, "frames": 3, "workers": 0},
    "schedule": {"total_steps": 2},
    "run": {"log_every": 1, "device": "cpu", "precision": "fp32"},
}


@pytest.fixture(autouse=True)
def commands(monkeypatch):
    """The two subcommands in the registry (until cli/__init__.py lists them itself)."""
    names = {c[0] for c in cli.COMMANDS}
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + tuple(
        c for c in (TRAIN, EXPORT) if c[0] not in names))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add synchronisation
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_train_two_steps_then_export(config, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--config", str(config), "--data", "builtin:skimage", "--out", str(run),
            "--quiet", "run.checkpoint_every=1"]
    assert cli.main(argv) == 0
    assert "step 2 of 2" in capsys.readouterr().out
    rows = (run / "scalars.csv").read_text().splitlines()
    assert rows[0].startswith("step,total,reconstruction")
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt.step == 2
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["paths"] == ["builtin:skimage"] and saved["run"]["out_dir"] == str(run)
    assert saved["run"]["checkpoint_every"] == 1

    # resuming a finished run has nothing left to do
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 0
    assert load_checkpoint(run / "checkpoint.pt").step == 2

    weights = tmp_path / "weights"
    assert cli.main(["export", str(run), "-o", str(weights)]) == 0
    model = load_pretrained(weights)
    assert model.config.nf == 8 and model.config.dsnet_width == 4
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt.model[key]), key
    card = (weights / "README.md").read_text()
    assert "builtin:skimage" in card and "| iterations | 2 of 2" in card
    assert "not measured" in card and "| hardware | " in card and "| hardware | unknown" not in card
    # a previous weights directory is replaced (docs/cli.md), a folder with other files is not
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.png").write_bytes(b"keep")
    assert cli.main(["export", str(run), "-o", str(tmp_path / "mine")]) == 2
    assert "other files" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["photo.png"]
    notes = tmp_path / "quality.md"
    notes.write_text("## Measured quality\n\n| method | PSNR |\n|---|---|\n| ours | 1.0 |\n")
    assert cli.main(["export", str(run), "-o", str(weights), "--notes", str(notes)]) == 0
    card = (weights / "README.md").read_text()
    assert card.index("| iterations |") < card.index("## Measured quality\n\n| method |")
    assert card.index("| ours | 1.0 |") < card.index("## Files")
    assert cli.main(["export", str(run), "-o", str(tmp_path / "w2"), "--notes",
                     str(tmp_path / "missing.md")]) == 2
    assert "--notes" in capsys.readouterr().err and not (tmp_path / "w2").exists()


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("burstjdd train: error:"), err
    return err[0]


@pytest.mark.parametrize("case, expected", [
    ("unknown key", "unknown key 'optim.lr_gg'"),
    ("wrong type", "optim.batch_size must be int"),
    ("missing data path", "does not exist"),
    ("empty dataset", "no colour images"),
    ("too small images", "no still or clip"),
])
def test_bad_config_stops_with_one_line_before_the_run_dir(case, expected, config, tmp_path,
                                                           capsys):
    data = tmp_path / "data"
    data.mkdir()
    argv = ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet",
            "--data", str(data)]
    if case == "unknown key":
        config.write_text(yaml.safe_dump({**TINY, "optim": {"lr_gg": 1e-4}}))
    elif case == "wrong type":
        argv.append("optim.batch_size=two")
    elif case == "missing data path":
        argv[-1] = str(tmp_path / "nowhere")
    elif case == "too small images":
        from PIL import Image

        Image.new("RGB", (40, 40), (200, 90, 30)).save(data / "small.png")
    assert cli.main(argv) == 2
    assert expected in _one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_bad_invocations(config, tmp_path, capsys):
    assert cli.main(["train", "--data", "builtin:skimage"]) == 2
    assert "--config" in _one_line_error(capsys)
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a training run" in _one_line_error(capsys)
    assert cli.main(["train", "--resume", str(tmp_path), "--config", str(config)]) == 2
    assert "drop --config" in _one_line_error(capsys)
    assert cli.main(["export", str(tmp_path), "-o", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a training run" in err and not (tmp_path / "w").exists()
