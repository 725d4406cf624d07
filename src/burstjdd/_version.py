"""The package version, in a core module of its own so that any layer can read it without
importing the package root (which sits above every other layer, docs/architecture.md)."""

from __future__ import annotations

__version__ = "0.1.0"  # keep in step with pyproject.toml
