"""Weights split into parts of bounded size (save_pretrained(part_bytes=...)) and joined on load."""

from __future__ import annotations

import hashlib

import pytest
import torch

from burstjdd.cli import main as cli_main
from burstjdd.errors import WeightsError
from burstjdd.models import hub
from burstjdd.models.jddb import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"nf": 8, "deformable_groups": 2, "extract_blocks": 1, "dsnet_width": 4}
MIB = 2**20
PART = 400_000  # bytes: the tiny model (with its demosaicnet base) makes a few parts


@pytest.fixture(scope="module")
def model():
    return build_model("compact", seed=1, **TINY)


def test_split_weights_load_back_exactly(model, tmp_path):
    out = hub.save_pretrained(model, tmp_path / "w", part_bytes=PART)
    names = sorted(p.name for p in out.iterdir())
    parts = hub.weight_parts(out)
    assert hub.WEIGHTS_NAME not in names and len(parts) >= 3
    assert all(p.stat().st_size <= PART for p in parts)
    assert [p.name for p in parts] == [f"{hub.WEIGHTS_NAME}.{i:03d}" for i in range(len(parts))]
    joined = b"".join(p.read_bytes() for p in parts)
    digest = hashlib.sha256(joined).hexdigest()
    assert (out / hub.DIGEST_NAME).read_text() == f"{digest}  {hub.WEIGHTS_NAME}\n"
    assert hub.weights_digest(out) == digest
    assert f"`.{len(parts) - 1:03d}`" in (out / hub.CARD_NAME).read_text()
    loaded = hub.load_pretrained(out)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_small_files_are_not_split(model, tmp_path):
    out = hub.save_pretrained(model, tmp_path / "w", part_bytes=100 * MIB)
    assert sorted(p.name for p in out.iterdir()) == sorted(hub.FILE_NAMES)
    assert hub.weight_parts(out) == []


def test_a_changed_part_fails_the_digest(model, tmp_path):
    out = hub.save_pretrained(model, tmp_path / "w", part_bytes=PART)
    part = hub.weight_parts(out)[1]
    blob = bytearray(part.read_bytes())
    blob[100] ^= 1
    part.write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        hub.load_pretrained(out)


def test_a_missing_part_is_named(model, tmp_path):
    out = hub.save_pretrained(model, tmp_path / "w", part_bytes=PART)
    hub.weight_parts(out)[1].unlink()
    with pytest.raises(WeightsError, match="incomplete"):
        hub.load_pretrained(out)
    # the last part missing leaves no gap: the digest catches it
    out2 = hub.save_pretrained(model, tmp_path / "w2", part_bytes=PART)
    hub.weight_parts(out2)[-1].unlink()
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        hub.load_pretrained(out2)


def test_overwrite_replaces_a_split_directory(model, tmp_path):
    hub.save_pretrained(model, tmp_path / "w", part_bytes=PART)
    out = hub.save_pretrained(model, tmp_path / "w", overwrite=True)
    assert hub.weight_parts(out) == [] and (out / hub.WEIGHTS_NAME).is_file()
    hub.load_pretrained(out)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_part_size_is_refused(model, tmp_path, bad):
    with pytest.raises(WeightsError, match="part_bytes"):
        hub.save_pretrained(model, tmp_path / "w", part_bytes=bad)


def test_paper_fp16_fits_the_transfer_limit_in_two_parts(tmp_path):
    """The lent GPU's $OUT takes files of at most 16 MiB: the paper network in float16 (~23 MiB)
    goes in 15 MiB parts."""
    out = hub.save_pretrained(build_model("paper", seed=0), tmp_path / "paper",
                              dtype=torch.float16, part_bytes=15 * MIB)
    parts = hub.weight_parts(out)
    assert len(parts) == 2 and all(p.stat().st_size <= 15 * MIB for p in parts)
    assert len(list(out.iterdir())) == 5
    assert hub.load_pretrained(out).config == build_model("paper").config


def test_export_cli_splits(tmp_path, capsys):
    import skimage.data
    from PIL import Image
    from test_train_loop import quiet_train, tiny_config

    stills = tmp_path / "stills"
    stills.mkdir()
    for i, name in enumerate(("astronaut", "coffee")):
        Image.fromarray(getattr(skimage.data, name)()[100:180, 100:180]).save(stills / f"{i}.png")
    quiet_train(tiny_config(stills, total_steps=1), tmp_path / "run")
    code = cli_main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "w"),
                     "--dtype", "float16", "--part-mib", "0.02"])
    assert code == 0
    assert len(hub.weight_parts(tmp_path / "w")) >= 2
    hub.load_pretrained(tmp_path / "w")
    assert cli_main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "x"),
                     "--part-mib", "0"]) == 2
    assert "--part-mib must be > 0" in capsys.readouterr().err
