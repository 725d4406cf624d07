"""Typed values from plain data: the one converter from parsed JSON / YAML to the fields of typed
frozen dataclasses, checked against their type hints.

Two kinds of input go through it, each with its own :class:`Dialect`:

* :data:`WEIGHTS_JSON`: a weights directory's ``config.json`` (→ ``ModelConfig``,
  :mod:`burstjdd.models.hub`): untrusted parsed JSON, so strict: values must be exactly of the
  JSON type the field takes (an int is a float too, nothing else converts), lists are JSON
  lists; errors are :class:`~burstjdd.errors.WeightsError` "<where>: bad type ...".
* :data:`TRAINING_YAML`: a training config (YAML files, ``key=value`` overrides and the values
  a section is constructed with in Python → :mod:`burstjdd.train.config`): YAML lists or Python
  tuples, and a float field also takes a string that spells a number (PyYAML reads ``1e-4``,
  without a dot, as a string); errors are :class:`~burstjdd.errors.ConfigError` "<where> must
  be <type>, got <type> <value>".

Both read the same type hints: ``bool``, ``int``, ``float``, ``str``, ``None``, ``Any``,
``Literal[...]``, unions (``X | None``), ``tuple[X, Y]``, ``tuple[X, ...]``, ``list[X]`` and
``dict[str, X]``, nested to any depth; an item is named ``<where>[i]``, a mapping value
``<where>.<key>``. A type hint outside these is a bug in the dataclass, not bad input:
:class:`TypeError`. In both dialects an ``int`` field takes a 64-bit integer
(:data:`INT_MIN` .. :data:`INT_MAX`: no setting needs more, and torch, NumPy and the seeds
take no more) and a ``float`` field a finite number (an infinite learning rate or loss weight
is never meant, and NaN would pass no range check); the sections then check their own ranges.

Standard library and :mod:`burstjdd.errors` only (a core module below every layer).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from burstjdd.errors import BurstJDDError, ConfigError, WeightsError

__all__ = ["INT_MAX", "INT_MIN", "TRAINING_YAML", "WEIGHTS_JSON", "Dialect", "convert",
           "field_hints", "hint_name", "short_repr", "yaml_type_name"]

INT_MIN, INT_MAX = -2**63, 2**63 - 1  # the range of an int field: a signed 64-bit integer
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


@dataclass(frozen=True)
class Dialect:
    """What differs between two kinds of input: how values are accepted and how errors read.

    error: the exception raised for bad input; describe: type hint → its name in messages;
    exact: scalars must be exactly of the field's type (parsed JSON: ``type(v) is int``)
    rather than instances of it (Python values may be subclasses); float_text: a float field
    also takes a string spelling a number; sequences: what a tuple or list field takes.

    Message templates, filled by ``str.format`` with ``where`` (the value's dotted key),
    ``got`` (the type name of the bad value), ``expected`` (``describe(hint)``), ``value`` (the
    bad value itself) and ``short`` (its repr, cut to 60 characters); bad_value (a Literal's
    value) also gets ``choices`` (the list of allowed values), bad_length (a fixed-length
    tuple) ``n`` (items expected) and ``m`` (items given); bad_key (a mapping key that is not a
    string) gets the key as ``got``/``value``/``short``; bad_number (an int beyond 64 bits, a
    float that is not finite) gets ``what``: "a 64-bit integer" or "a finite number".
    """

    error: type[BurstJDDError]
    describe: Callable[[Any], str]
    exact: bool
    float_text: bool
    sequences: tuple[type, ...]
    bad_type: str
    bad_value: str
    bad_length: str
    bad_key: str
    bad_number: str


def hint_name(hint: Any) -> str:
    """A type hint's name in Python words (``int``, ``int | None``, ``tuple``)."""
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def yaml_type_name(hint: Any) -> str:
    """A type hint's name in YAML words (tuples and lists are both YAML lists)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else yaml_type_name(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {yaml_type_name(args[0])}"
        return f"a list of {len(args)} ({', '.join(yaml_type_name(a) for a in args)})"
    if origin is list:
        return f"a list of {yaml_type_name(args[0])}"
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def short_repr(value: Any) -> str:
    """``repr(value)`` on one line, cut to 60 characters (for error messages)."""
    try:
        text = repr(value).replace("\n", " ")
    except ValueError:  # it holds an int of more digits than Python writes out (4300)
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= 60 else text[:57] + "..."


WEIGHTS_JSON = Dialect(
    error=WeightsError, describe=hint_name, exact=True, float_text=False, sequences=(list,),
    bad_type="{where}: bad type {got} (expected {expected})",
    bad_value="{where}: bad value {value!r} (expected one of {choices})",
    bad_length="{where}: expected {n} items, got {m}",
    bad_key="{where}: bad type {got} for a key (expected str)",
    bad_number="{where}: bad value {short} (expected {what})",
)

_YAML_BAD = "{where} must be {expected}, got {got} {short}"
TRAINING_YAML = Dialect(
    error=ConfigError, describe=yaml_type_name, exact=False, float_text=True,
    sequences=(list, tuple),
    bad_type=_YAML_BAD, bad_value=_YAML_BAD, bad_length=_YAML_BAD,
    bad_key="{where} keys must be strings, got {got} {short}",
    bad_number="{where} must be {what}, got {short}",
)


def field_hints(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass's fields (ClassVars left out), in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _fail(dialect: Dialect, template: str, where: str, value: Any, hint: Any,
          **extra: Any) -> BurstJDDError:
    """The dialect's error for ``value`` at ``where``, worded by ``template``."""
    return dialect.error(template.format(
        where=where, got=type(value).__name__, expected=dialect.describe(hint), value=value,
        short=short_repr(value), **extra))


def _out_of_range(dialect: Dialect, where: str, value: Any, what: str) -> BurstJDDError:
    """The dialect's bad_number error: ``value`` has the field's type but not a value it takes
    (``what``: "a 64-bit integer", "a finite number"); marked ``out_of_range`` so that a union
    reports it rather than its list of types."""
    error = _fail(dialect, dialect.bad_number, where, value, None, what=what)
    error.out_of_range = True
    return error


def _is(value: Any, tp: type, exact: bool) -> bool:
    """Whether ``value`` is a ``tp``: exactly (``exact``) or as an instance; a bool is never an
    int or a float here."""
    if exact:
        return type(value) is tp
    return isinstance(value, tp) and (tp is bool or not isinstance(value, bool))


def _float(value: Any, dialect: Dialect) -> float | None:
    """``value`` as a float when a float field takes it (a float, an int, or per ``dialect`` a
    string spelling a number; inf for an int beyond the float range), else None."""
    if _is(value, float, dialect.exact) or _is(value, int, dialect.exact):
        try:
            return float(value)
        except OverflowError:  # an int of more than 308 digits
            return math.inf
    if dialect.float_text and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)
    return None


def convert(value: Any, hint: Any, where: str, dialect: Dialect) -> Any:
    """``value`` checked against the type hint ``hint`` and converted: int → float for a float
    field, a list → tuple for a tuple field, and per ``dialect`` (see :class:`Dialect`).

    ``where``: the dotted key named in errors. Raises ``dialect.error`` on bad input,
    TypeError on a type hint this module does not handle.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    exact = dialect.exact

    def bad() -> BurstJDDError:
        return _fail(dialect, dialect.bad_type, where, value, hint)

    if hint is Any:
        return value
    if origin is Literal:
        if any(_is(value, type(a), exact) and value == a for a in args):
            return value
        raise _fail(dialect, dialect.bad_value, where, value, hint, choices=list(args))
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for arm in args:
            if arm is type(None):
                continue
            try:
                return convert(value, arm, where, dialect)
            except dialect.error as exc:
                if getattr(exc, "out_of_range", False):  # the arm's type, a bad value: say so
                    raise
        raise bad()
    if hint is type(None):
        if value is None:
            return None
        raise bad()
    if hint in (bool, int, str):
        if not _is(value, hint, exact):
            raise bad()
        if hint is int and not INT_MIN <= value <= INT_MAX:
            raise _out_of_range(dialect, where, value, "a 64-bit integer")
        return value
    if hint is float:
        number = _float(value, dialect)
        if number is None:
            raise bad()
        if not math.isfinite(number):
            raise _out_of_range(dialect, where, value, "a finite number")
        return number
    if origin in (tuple, list) and args:
        if not isinstance(value, dialect.sequences):
            raise bad()
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _fail(dialect, dialect.bad_length, where, value, hint, n=len(args),
                            m=len(value))
        else:
            args = (args[0],) * len(value)
        items = [convert(v, a, f"{where}[{i}]", dialect)
                 for i, (v, a) in enumerate(zip(value, args))]
        return tuple(items) if origin is tuple else items
    if origin is dict and args:
        if not isinstance(value, Mapping):
            raise bad()
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _fail(dialect, dialect.bad_key, where, k, hint)
            out[k] = convert(v, args[1], f"{where}.{k}", dialect)
        return out
    raise TypeError(f"config field {where}: unsupported type hint {hint!r}")  # a bug, not input
