"""Weights directories: save/load round trip, fp16 storage, and refusal of untrusted input."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import typing

import pytest
import torch
from safetensors.torch import load_file, save_file

from burstjdd.errors import WeightsError
from burstjdd.models import hub
from burstjdd.models.jddb import build_model
from burstjdd.typed import WEIGHTS_JSON, convert


def tiny_model(seed: int = 0):
    """A very small full-pipeline model (DSNet + DPBM + PCD + GRU + UNet)."""
    return build_model("compact", nf=8, deformable_groups=2, extract_blocks=1, dsnet_width=4,
                       seed=seed).eval()


def tiny_burst():
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(1, 3, 4, 24, 24, generator=g)   # (B, N, 4, H, W) packed
    return frames, 0.05 + 0.1 * frames


def run(model):
    """One forward through coarse alignment + reconstruction → (1, 3, 16, 16)."""
    frames, noise = tiny_burst()
    with torch.no_grad():
        return model(frames, noise, origins=[[8, 4]], size=8, search_radius=16).image


def rewrite_weights(directory, state):
    """Replace model.safetensors by ``state`` and refresh its digest (a consistent but
    wrong directory, so the state-dict check itself is what must fail)."""
    save_file(state, str(directory / hub.WEIGHTS_NAME))
    digest = hub.sha256_file(directory / hub.WEIGHTS_NAME)
    (directory / hub.DIGEST_NAME).write_text(f"{digest}  {hub.WEIGHTS_NAME}\n")


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture
def saved(tmp_path, model):
    out = hub.save_pretrained(model, tmp_path / "w", card={"training data": "none (random)",
                                                            "iterations": 0})
    return model, out


def test_round_trip_identical_state_and_output(saved):
    model, out = saved
    loaded = hub.load_pretrained(out)
    assert loaded.config == model.config
    assert not loaded.training
    a, b = model.state_dict(), loaded.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) and b[k].dtype == torch.float32 for k in a)
    assert torch.equal(run(model), run(loaded))


def test_directory_layout_digest_and_card(saved):
    _, out = saved
    assert sorted(p.name for p in out.iterdir()) == sorted(hub.FILE_NAMES)
    digest = hashlib.sha256((out / hub.WEIGHTS_NAME).read_bytes()).hexdigest()
    assert (out / hub.DIGEST_NAME).read_text() == f"{digest}  {hub.WEIGHTS_NAME}\n"
    config = json.loads((out / hub.CONFIG_NAME).read_text())
    assert config["format"] == "burstjdd-weights" and config["format_version"] == 1
    assert config["model"]["nf"] == 8 and config["model"]["ca"] == "dpbm"
    card = (out / hub.CARD_NAME).read_text()
    assert "| training data | none (random) |" in card and digest in card
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]   # no temp left


def test_fp16_storage_loads_and_runs_in_fp32(tmp_path, model):
    out = hub.save_pretrained(model, tmp_path / "w16", dtype=torch.float16)
    stored = load_file(str(out / hub.WEIGHTS_NAME))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    loaded = hub.load_pretrained(out)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    rounded = tiny_model()
    rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    # fp16 storage = the fp32 model with its weights rounded to fp16, computing in fp32.
    assert torch.equal(run(loaded), run(rounded))
    assert torch.isfinite(run(loaded)).all()


def test_corrupted_byte_fails_sha256(saved):
    _, out = saved
    blob = bytearray((out / hub.WEIGHTS_NAME).read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (out / hub.WEIGHTS_NAME).write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        hub.load_pretrained(out)


def test_malformed_digest_file(saved):
    _, out = saved
    (out / hub.DIGEST_NAME).write_text("not-a-digest\n")
    with pytest.raises(WeightsError, match="sha256"):
        hub.load_pretrained(out)


def test_extra_or_missing_tensor_or_wrong_shape(saved):
    model, out = saved
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rewrite_weights(out, state | {"extra.weight": torch.zeros(3)})
    with pytest.raises(WeightsError, match="unexpected 1: extra.weight"):
        hub.load_pretrained(out)
    dropped = next(iter(state))
    rewrite_weights(out, {k: v for k, v in state.items() if k != dropped})
    with pytest.raises(WeightsError, match=f"missing 1: {dropped}"):
        hub.load_pretrained(out)
    rewrite_weights(out, state | {"feature_up.bias": torch.zeros(9)})
    with pytest.raises(WeightsError, match="shape mismatch.*feature_up.bias"):
        hub.load_pretrained(out)
    rewrite_weights(out, state | {"feature_up.bias": torch.full((8,), float("nan"))})
    with pytest.raises(WeightsError, match="non-finite.*feature_up.bias"):
        hub.load_pretrained(out)
    rewrite_weights(out, state)                       # sanity: the rewrite itself is fine
    hub.load_pretrained(out)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c["model"].update(colour="red"), "unknown key 'colour'"),
    (lambda c: c.update(extra=1), "unknown key 'extra'"),
    (lambda c: c["model"].update(nf="8"), r"model\.nf: bad type str"),
    (lambda c: c["model"].update(nf=8.0), r"model\.nf: bad type float"),
    (lambda c: c["model"].update(ra=1), r"model\.ra: bad type int"),
    (lambda c: c["model"].update(nf=-2), "nf must be an integer in 2..1024"),
    (lambda c: c.update(format="other"), "format is 'other'"),
    (lambda c: c.update(format_version=2), "unsupported format_version 2"),
    (lambda c: c.pop("model"), "missing key 'model'"),
    (lambda c: c.update(model=[1, 2]), "expected an object"),
])
def test_bad_config_is_refused_naming_the_key(saved, edit, message):
    _, out = saved
    config = json.loads((out / hub.CONFIG_NAME).read_text())
    edit(config)
    (out / hub.CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=message):
        hub.load_pretrained(out)


def test_config_dict_round_trip_and_missing_files(saved, tmp_path):
    model, out = saved
    assert hub.config_from_dict(hub.config_to_dict(model.config)) == model.config
    (out / hub.CONFIG_NAME).write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        hub.load_pretrained(out)
    (out / hub.CONFIG_NAME).unlink()
    with pytest.raises(WeightsError, match="config.json: missing"):
        hub.load_pretrained(out)
    with pytest.raises(WeightsError, match="not a weights directory"):
        hub.load_pretrained(tmp_path / "nowhere")


def _coerce(value, hint, where):
    """The weights config's field type checker (:mod:`burstjdd.typed`, JSON dialect)."""
    return convert(value, hint, where, WEIGHTS_JSON)


def test_field_type_checker_on_json_values():
    assert _coerce([1, 2], tuple[int, ...], "x") == (1, 2)
    assert _coerce([1, 2.5], tuple[int, float], "x") == (1, 2.5)
    assert _coerce(3, float, "x") == 3.0 and _coerce(None, int | None, "x") is None
    for value, hint, message in ((True, int, "bad type bool"), (1, bool, "bad type int"),
                                 ([1, "a"], tuple[int, ...], r"x\[1\]: bad type str"),
                                 ([1], tuple[int, int], "expected 2 items"),
                                 ("c", typing.Literal["a", "b"], "bad value 'c'")):
        with pytest.raises(WeightsError, match=message):
            _coerce(value, hint, "x")


def test_load_never_unpickles(saved, tmp_path, monkeypatch):
    model, out = saved
    assert (out / hub.WEIGHTS_NAME).read_bytes()[:1] != b"\x80"   # not a pickle stream

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert torch.equal(run(hub.load_pretrained(out)), run(model))
    monkeypatch.undo()

    pth = tmp_path / "model.pth"
    torch.save(model.state_dict(), pth)
    with pytest.raises(WeightsError, match="not a weights directory.*convert-official"):
        hub.load_pretrained(pth)


def test_save_is_atomic_and_does_not_clobber(tmp_path, monkeypatch, model):
    target = tmp_path / "w"

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(hub, "_model_card", crash)
    with pytest.raises(RuntimeError):
        hub.save_pretrained(model, target)
    assert list(tmp_path.iterdir()) == []              # no half directory, no temp left
    monkeypatch.undo()

    hub.save_pretrained(model, target)
    other = tiny_model(seed=1)
    with pytest.raises(WeightsError, match="not empty"):
        hub.save_pretrained(other, target)
    hub.save_pretrained(other, target, overwrite=True)
    assert torch.equal(run(hub.load_pretrained(target)), run(other))
    assert [p.name for p in tmp_path.iterdir()] == ["w"]

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(WeightsError, match="other files"):
        hub.save_pretrained(model, user, overwrite=True)
    assert (user / "notes.txt").read_text() == "keep me"


def test_resolve_weights(saved, tmp_path, monkeypatch):
    _, out = saved
    assert hub.resolve_weights(out) == out
    assert hub.resolve_weights(str(out)) == out
    with pytest.raises(WeightsError, match="is a file"):
        hub.resolve_weights(out / hub.CONFIG_NAME)

    shipped = tmp_path / "shipped"
    (shipped / "demo").mkdir(parents=True)
    (shipped / "demo" / hub.CONFIG_NAME).write_text("{}")
    (shipped / "no-config").mkdir()
    monkeypatch.setattr(hub, "_shipped_root", lambda: shipped)
    assert hub.shipped_weights() == ["demo"]
    assert hub.resolve_weights("demo") == shipped / "demo"
    with pytest.raises(WeightsError, match="shipped: demo"):
        hub.resolve_weights("unknown-model")

    monkeypatch.setattr(hub, "_shipped_root", lambda: None)
    with pytest.raises(WeightsError, match="no weights are shipped yet"):
        hub.resolve_weights("demo")


@pytest.mark.parametrize("shipped,cpu,gpu", [
    (["compact", "paper"], "compact", "paper"),
    (["compact"], "compact", "compact"),
    (["paper"], "paper", "paper"),
    ([], None, None),
])
def test_default_weights_fit_the_device(monkeypatch, shipped, cpu, gpu):
    monkeypatch.setattr(hub, "shipped_weights", lambda: shipped)
    assert hub.default_weights("cpu") == hub.default_weights(torch.device("cpu")) == cpu
    assert hub.default_weights("cuda") == hub.default_weights("mps") == gpu


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("name", [hub.CONFIG_NAME, hub.WEIGHTS_NAME, hub.DIGEST_NAME])
def test_a_fifo_in_a_weights_folder_is_named_not_called_missing(saved, name):
    _, out = saved
    (out / name).unlink()
    os.mkfifo(out / name)  # opening it for reading would block
    with pytest.raises(WeightsError, match=f"{name}: is a named pipe \\(FIFO\\), not a regular"):
        hub.load_pretrained(out)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_given_as_weights_is_named(tmp_path):
    os.mkfifo(tmp_path / "w")
    with pytest.raises(WeightsError, match="is a named pipe \\(FIFO\\), not a weights directory"):
        hub.resolve_weights(tmp_path / "w")


def test_a_deeply_nested_config_is_one_error(saved):
    _, out = saved
    (out / hub.CONFIG_NAME).write_text("[" * 10_000 + "]" * 10_000)
    with pytest.raises(WeightsError, match="nested more than 32 levels"):
        hub.load_pretrained(out)
