"""The installed package: console script, lazy exports, CLI error handling."""

from __future__ import annotations

import subprocess
import sys

import pytest

import burstjdd
from burstjdd import cli


def test_console_script_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "burstjdd", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: burstjdd" in out.stdout
    for name, _, _ in cli.COMMANDS:
        assert name in out.stdout


def test_help_does_not_import_torch():
    code = "import sys, burstjdd.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", [n for n in burstjdd.__all__ if n != "__version__"])
def test_every_export_resolves(name):
    assert getattr(burstjdd, name) is not None


def test_unknown_attribute_is_attribute_error():
    with pytest.raises(AttributeError):
        burstjdd.does_not_exist  # noqa: B018


def test_every_command_module_follows_the_protocol():
    import importlib

    for name, module, _ in cli.COMMANDS:
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), name
