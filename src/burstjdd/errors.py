"""Error types. Every error a user can cause by bad input is a ``BurstJDDError``.

The command line prints ``burstjdd: error: <message>`` (one line) for these and exits with
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BurstJDDError(Exception):
    """Base class of every error caused by bad input, bad files or bad configuration."""


class BurstFormatError(BurstJDDError, ValueError):
    """A burst (``.npz`` or raw files) is malformed: missing key, wrong shape, bad values."""


class ConfigError(BurstJDDError, ValueError):
    """A configuration (model, training, evaluation) is invalid."""


class WeightsError(BurstJDDError, ValueError):
    """A weights directory or checkpoint is missing, corrupt, unsafe or does not match."""


class DataError(BurstJDDError, ValueError):
    """A data source (image folder, clip folder, video) is empty, unreadable or too small."""
