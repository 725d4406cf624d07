"""The shipped models: ``compact`` loads offline, sha256-verified, and is refused when tampered
with; it is the default of restore and demo (it beats the best classical pipeline in every
column of the README's evaluation), ``classical`` is the fast path, and both stay above
measured PSNR floors."""

from __future__ import annotations

import shutil

import pytest
import torch

from burstjdd.cli import main
from burstjdd.cli.demo import demo_burst
from burstjdd.errors import WeightsError
from burstjdd.eval.baselines import hdrplus_dmn
from burstjdd.eval.metrics import protocol_srgb, psnr
from burstjdd.models import hub
from burstjdd.models.classical import ClassicalJDDB
from burstjdd.models.jddb import TwoStageJDDB
from burstjdd.restore import Restorer

pytestmark = pytest.mark.usefixtures("one_thread")

# Measured on demo_burst("astronaut", 192, seed 0): 32 px between neighbouring frames, two
# moving objects, `high` noise. compact (leg 3) 28.47 dB, classical 27.35, hdrplus_dmn 27.36.
# (On the same burst of "coffee": 29.85 / 29.45 / 29.61; of "chelsea": 31.21 / 30.52 / 30.74.)
# Floors: 0.5 dB under the measured value.
FLOOR_DB = {"compact": 27.97, "classical": 26.85}


def _psnr(rgb: torch.Tensor, burst) -> float:
    srgb, gt = (protocol_srgb(x, burst.wb, burst.ccm) for x in (rgb, burst.gt))
    return psnr(srgb, gt)


@pytest.fixture(scope="module")
def burst():
    return demo_burst("astronaut", 192, 0)


def test_compact_ships_with_its_card_and_is_the_default():
    assert "compact" in hub.shipped_weights()
    card = (hub.resolve_weights("compact") / hub.CARD_NAME).read_text(encoding="utf-8")
    assert "## Training legs" in card and all(f"| {leg} |" in card for leg in (1, 2, 3))
    assert hub.default_model("cpu") == "compact"  # hub.LEARNED_IS_DEFAULT says why
    default = Restorer.from_pretrained(device="cpu")
    assert isinstance(default.model, TwoStageJDDB) and default.name == "compact"
    fast = Restorer.from_pretrained("classical", device="cpu")
    assert isinstance(fast.model, ClassicalJDDB) and fast.name == "classical"


@pytest.mark.slow
def test_the_shipped_models_stay_above_their_floors(burst):
    scores = {name: _psnr(Restorer.from_pretrained(name, device="cpu")
                          .restore(burst, progress=False), burst) for name in FLOOR_DB}
    for name, floor in FLOOR_DB.items():
        assert scores[name] >= floor, (name, scores[name])
    assert scores["compact"] > _psnr(hdrplus_dmn(burst), burst)


def test_a_tampered_shipped_model_is_refused_with_one_line(tmp_path, monkeypatch, capsys):
    root = tmp_path / "weights"
    shutil.copytree(hub.resolve_weights("compact"), root / "compact")
    blob = root / "compact" / hub.WEIGHTS_NAME
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit anywhere in the tensors
    blob.write_bytes(bytes(data))
    monkeypatch.setattr(hub, "_shipped_root", lambda: root)
    with pytest.raises(WeightsError, match="sha256"):
        Restorer.from_pretrained("compact", device="cpu")
    out = tmp_path / "o.png"
    assert main(["restore", str(tmp_path / "missing.npz"), "-o", str(out), "--model",
                 "compact"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sha256" in err and "Traceback" not in err
    assert not out.exists()
