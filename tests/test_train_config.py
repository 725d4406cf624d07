from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from burstjdd.errors import ConfigError, DataError
from burstjdd.train.config import (
    DataSection,
    OptimSection,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    from_yaml,
    load_config,
    sample_bytes,
    save_config,
    to_yaml,
    validate,
)
from burstjdd.train.losses import LossWeights
from burstjdd.train.schedule import cycle_bounds

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def _strip_comments(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


def _custom() -> TrainConfig:
    return apply_overrides(TrainConfig(), [
        "model.preset=compact", "model.overrides.nf=16", "data.paths=[a, b/c]",
        "data.weights=[1, 3]", "optim.grad_clip=0.5", "schedule.total_steps=1234",
        "run.precision=bf16"])


def _message(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text  # one-line errors
    return text


def test_yaml_round_trip_is_exact() -> None:
    cfg = _custom()
    text = to_yaml(cfg)
    back = from_yaml(text)
    assert back == cfg
    assert to_yaml(back) == text
    assert back.optim.betas == (0.9, 0.99) and isinstance(back.data.paths, tuple)
    assert back.model.overrides == {"nf": 16} and back.data.weights == (1.0, 3.0)


def test_missing_keys_take_the_official_defaults() -> None:
    cfg = from_yaml("optim:\n  batch_size: 4\n")
    assert cfg.optim.batch_size == 4
    assert cfg.optim.lr_g == 1e-4 and cfg.optim.lr_dsnet == 1e-5
    assert cfg.schedule.total_steps == 600_000 and cfg.loss == LossWeights(1.0, 1e5, 1e3)
    assert from_yaml("") == TrainConfig()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads_and_validates(path: Path) -> None:
    cfg = load_config(path)
    validate(cfg, check_paths=False)
    assert to_yaml(cfg) == _strip_comments(path.read_text())  # files are canonical mirrors
    if path.stem.startswith("ablation_"):
        assert cfg.model.variant == path.stem.removeprefix("ablation_")


def test_the_shipped_configs_cover_the_paper_run_and_every_ablation() -> None:
    names = {p.stem for p in CONFIGS}
    variants = {"no_align", "ca_only", "ra_only", "no_e2e", "deep_ra", "no_ip"}
    assert {"paper_reds", "compact_cpu"} | {f"ablation_{v}" for v in variants} <= names
    paper = load_config(CONFIGS[[p.stem for p in CONFIGS].index("paper_reds")])
    assert (paper.schedule.total_steps, paper.optim.batch_size) == (600_000, 2)
    assert (paper.optim.lr_g, paper.optim.lr_dsnet, paper.optim.betas) == (1e-4, 1e-5, (0.9, 0.99))
    assert (paper.data.search_radius, paper.data.crop, paper.data.frames) == (64, 128, 5)
    assert cycle_bounds(600_000, paper.schedule.restart_periods) == (
        0, 50_000, 150_000, 300_000, 450_000, 600_000)
    assert paper.schedule.eta_min == 1e-7 and paper.loss == LossWeights(1.0, 1e5, 1e3)


def test_unknown_keys_name_the_dotted_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr_gg: 0.001\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "'optim.lr_gg'" in _message(exc) and str(path) in _message(exc)
    with pytest.raises(ConfigError) as exc:
        from_yaml("trainer:\n  x: 1\n")
    assert "'trainer'" in _message(exc)


@pytest.mark.parametrize("text, key, expected", [
    ("optim:\n  batch_size: two\n", "optim.batch_size", "must be int"),
    ("optim:\n  batch_size: true\n", "optim.batch_size", "must be int"),
    ("optim:\n  lr_g: fast\n", "optim.lr_g", "must be float"),
    ("optim:\n  grad_clip: [1]\n", "optim.grad_clip", "float or null"),
    ("optim:\n  betas: [0.9, 0.99, 0.999]\n", "optim.betas", "a list of 2"),
    ("data:\n  paths: somewhere\n", "data.paths", "a list of str"),
    ("data:\n  paths: [a, 3]\n", "data.paths[1]", "must be str"),
    ("run:\n  precision: fp16\n", "run.precision", "one of 'auto', 'fp32', 'bf16'"),
    ("run:\n  log_every: 1.5\n", "run.log_every", "must be int"),
    ("model:\n  overrides: [nf]\n", "model.overrides", "a mapping"),
    ("loss:\n  rho: lots\n", "loss.rho", "must be float"),
    ("optim: 3\n", "optim", "a mapping"),
])
def test_wrong_types_name_the_key_and_the_type(text: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        from_yaml(text, "cfg.yaml")
    message = _message(exc)
    assert message.startswith("cfg.yaml: ") and key in message and expected in message


def test_float_fields_accept_exponent_strings() -> None:
    # PyYAML reads 1e-4 (no dot) as a string
    assert from_yaml("optim:\n  lr_g: 1e-4\n").optim.lr_g == 1e-4
    assert from_yaml("optim:\n  lr_g: 1\n").optim.lr_g == 1.0  # an integer is a float too


def test_out_of_range_values_are_errors() -> None:
    for text, key in [("optim:\n  batch_size: 0\n", "optim.batch_size"),
                      ("data:\n  crop: 100\n", "data.crop"),
                      ("schedule:\n  restart_periods: [0.5, 0.25]\n", "sum to 1"),
                      ("run:\n  device: gpu\n", "run.device"),
                      ("loss:\n  eta: -1\n", "loss.eta"),
                      # Adam's rates are float32: 1e38 and beyond overflow inside torch
                      ("optim:\n  lr_g: 1.0e+38\n", "optim.lr_g must be in (0, 1]"),
                      ("optim:\n  lr_dsnet: 1.5\n", "optim.lr_dsnet must be in (0, 1]"),
                      ("optim:\n  weight_decay: 1.0e+308\n",
                       "optim.weight_decay must be in [0, 1]")]:
        with pytest.raises(ConfigError) as exc:
            from_yaml(text)
        assert key in _message(exc)


def test_dotted_overrides_are_parsed_and_type_checked() -> None:
    cfg = apply_overrides(TrainConfig(), [
        "optim.lr_g=2e-4", "optim.betas=[0.8, 0.9]", "schedule.total_steps=1000",
        "model.overrides.nf=32", "optim.grad_clip=null"])
    assert cfg.optim.lr_g == 2e-4 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.schedule.total_steps == 1000 and cfg.model.overrides == {"nf": 32}
    assert cfg.optim.grad_clip is None
    for item, words in [("optim.batch_size=two", ["optim.batch_size", "int"]),
                        ("optim.lr_gg=1", ["'optim.lr_gg'"]),
                        ("optim.nope.deeper=1", ["'optim.nope'"]),
                        ("optim.lr_g.x=1", ["'optim.lr_g'", "not a section"]),
                        ("optim.lr_g", ["key.sub=value"]),
                        ("=3", ["key.sub=value"])]:
        with pytest.raises(ConfigError) as exc:
            apply_overrides(cfg, [item])
        assert all(w in _message(exc) for w in words), _message(exc)


def test_sections_are_typed_and_frozen() -> None:
    assert DataSection(paths=["a"]).paths == ("a",)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="optim.batch_size must be int"):
        OptimSection(batch_size="2")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().optim.lr_g = 1.0  # type: ignore[misc]
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_from_dict([1, 2])


def test_validate(tmp_path: Path) -> None:
    base = apply_overrides(TrainConfig(), [f"data.paths=[{tmp_path}, 'builtin:skimage']"])
    assert validate(base) is base
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as exc:
        validate(apply_overrides(base, [f"data.val_paths=[{missing}]"]))
    assert str(missing) in _message(exc) and "data.val_paths" in _message(exc)
    validate(apply_overrides(base, [f"data.val_paths=[{missing}]"]), check_paths=False)
    bad = [("data.paths=[]", "data.paths is empty"),
           ("model.variant=no_such", "no_such"),
           ("model.overrides.width=3", "width"),
           ("model.overrides.nf=7", "nf"),
           ("schedule.eta_min=0.5", "schedule.eta_min"),
           ("data.paths=['builtin:nope']", "builtin:nope")]
    for item, words in bad:
        with pytest.raises(ConfigError) as exc:
            validate(apply_overrides(base, [item]), check_paths=False)
        assert words in _message(exc), _message(exc)


def test_save_and_load(tmp_path: Path) -> None:
    cfg = _custom()
    path = tmp_path / "run.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert load_config(path, ["run.seed=7"]).run.seed == 7
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "broken.yaml").write_text("optim: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


# ------------------------------------------------------------------------------- limits


@pytest.mark.parametrize("item, words", [
    ("optim.batch_size=100000", ["optim.batch_size", "1..4096"]),
    ("optim.batch_size=true", ["optim.batch_size", "must be int"]),
    ("data.val_samples=100000000", ["data.val_samples", "1..10000"]),
    ("data.workers=1000", ["data.workers", "0..256"]),
    ("data.crop=1048576", ["data.crop", "8..4096"]),
    ("data.search_radius=5000", ["data.search_radius", "0..1024"]),
    ("data.frames=65", ["data.frames", "1..64"]),
    ("schedule.total_steps=10000000000", ["schedule.total_steps", "1..1e+09"]),
    ("run.budget_validations=100000", ["run.budget_validations", "0..10000"]),
    ("run.seed=9223372036854775808", ["run.seed", "64-bit integer"]),
    ("run.seed=99999999999999999999999", ["run.seed", "64-bit integer"]),
    ("data.val_seed=-1", ["data.val_seed", "0..2**63-1"]),
    ("run.seed=" + "9" * 5000, ["run.seed", "4300"]),
    ("optim.lr_g=.inf", ["optim.lr_g", "finite"]),
    ("optim.lr_dsnet=.nan", ["optim.lr_dsnet", "finite"]),
    ("optim.lr_g=" + "9" * 400, ["optim.lr_g", "finite"]),  # an int beyond the float range
    ("optim.betas=[.inf, 0.9]", ["optim.betas[0]", "finite"]),
    ("optim.weight_decay=1e999", ["optim.weight_decay", "finite"]),
    ("schedule.eta_min=-.inf", ["schedule.eta_min", "finite"]),
    ("loss.rho=.inf", ["loss.rho", "finite"]),
    ("run.time_budget_s=.inf", ["run.time_budget_s", "finite"]),
    ("model.overrides.nf=" + "[" * 40 + "]" * 40, ["model.overrides", "nested more than 32"]),
    ("model.overrides." + "a." * 40 + "b=1", ["more than 32 parts"]),
])
def test_every_size_count_and_rate_is_bounded_and_the_message_says_the_range(item, words):
    with pytest.raises(ConfigError) as exc:
        apply_overrides(TrainConfig(), [item])
    assert all(w in _message(exc) for w in words), _message(exc)
    assert len(_message(exc)) < 300


def test_the_largest_allowed_values_are_accepted() -> None:
    cfg = apply_overrides(TrainConfig(), [
        "optim.batch_size=4096", "data.crop=4096", "data.search_radius=1024", "data.frames=64",
        "data.workers=256", "data.val_samples=10000", f"run.seed={2**63 - 1}",
        f"data.val_seed={2**63 - 1}", "schedule.total_steps=1000000000"])
    assert (cfg.optim.batch_size, cfg.data.crop, cfg.run.seed) == (4096, 4096, 2**63 - 1)


def test_yaml_files_are_read_with_limits(tmp_path: Path) -> None:
    # a 9x9 alias bomb (387 million values once expanded) in model.overrides
    bomb = "model:\n  overrides:\n    a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"    {chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n"
        for i in range(8))
    for text, words in [(bomb, "alias bomb"),
                        ("model:\n  overrides:\n    x: " + "[" * 5000 + "]" * 5000, "nested"),
                        ("run:\n  seed: " + "9" * 5000 + "\n", "4300")]:
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as exc:
            load_config(path, ["run.seed=1"])
        assert words in _message(exc) and str(path) in _message(exc), _message(exc)


def test_the_samples_of_a_step_and_the_validation_set_must_fit_in_memory() -> None:
    base = apply_overrides(TrainConfig(), ["data.paths=['builtin:skimage']"])
    with pytest.raises(ConfigError) as exc:  # 2 samples of 5 x 4224^2 px: 2.1 GiB each
        validate(apply_overrides(base, ["data.crop=4096", "optim.batch_size=16"]),
                 check_paths=False)
    assert "optim.batch_size=16" in _message(exc) and "16 GiB" in _message(exc)
    with pytest.raises(ConfigError) as exc:
        validate(apply_overrides(base, ["data.val_paths=['builtin:skimage']",
                                        "data.val_samples=10000"]), check_paths=False)
    assert "data.val_samples" in _message(exc) and "GiB" in _message(exc)
    # without validation paths the validation set is never built
    validate(apply_overrides(base, ["data.val_samples=10000"]), check_paths=False)
    assert sample_bytes(base.data) == 4 * (3 * 5 * 256 * 256 + 3 * 128 * 128)
