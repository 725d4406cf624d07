"""Bounded JSON/YAML parsing: nesting, alias bombs, self-references, huge integers."""

from __future__ import annotations

import time

import pytest

from burstjdd.errors import ConfigError
from burstjdd.limits import MAX_NESTING, parse_json, parse_yaml


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The 'billion laughs' in YAML: each level lists the previous one ``width`` times."""
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines)


@pytest.mark.parametrize("text, reason", [
    (alias_bomb(), "alias bomb"),
    ("&a [*a]", "refers to itself"),
    ("[" * 5000 + "]" * 5000, "levels deep"),
    ("x: " + "9" * 5000, "4300"),
    ("a: [", "not valid YAML"),
])
def test_bad_yaml_is_one_error_quickly(text, reason):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=reason) as exc:
        parse_yaml(text, "my.yaml", ConfigError)
    assert str(exc.value).startswith("my.yaml: ") and "\n" not in str(exc.value)
    assert time.perf_counter() - start < 5


def test_yaml_within_limits_reads_as_safe_load():
    assert parse_yaml("a: &x [1, 2]\nb: *x\nc: .inf", "c", ConfigError) == {
        "a": [1, 2], "b": [1, 2], "c": float("inf")}
    assert parse_yaml("", "c", ConfigError) is None
    nested = "[" * MAX_NESTING + "]" * MAX_NESTING
    assert parse_yaml(nested, "c", ConfigError) is not None
    with pytest.raises(ConfigError, match="levels deep"):
        parse_yaml("[" + nested + "]", "c", ConfigError)


@pytest.mark.parametrize("text, reason", [
    ("[" * 100_000 + "]" * 100_000, "levels deep"),  # json's own RecursionError
    ("[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1), "levels deep"),
    ("9" * 5000, "4300"),
    (b"\xff\xfe{}", "UTF-8"),
    ("{", "not valid JSON"),
])
def test_bad_json_is_one_error(text, reason):
    with pytest.raises(ConfigError, match=reason):
        parse_json(text, "meta", ConfigError)


def test_json_within_limits():
    nested = "[" * MAX_NESTING + "]" * MAX_NESTING
    assert parse_json(nested, "m", ConfigError) is not None
    assert parse_json(b'{"a": [1, 2.5]}', "m", ConfigError) == {"a": [1, 2.5]}
