"""Shape checks with one-line errors that name the input, the expected layout and the shape.

In the spirit of kornia's ``KORNIA_CHECK_SHAPE(x, ["B", "C", "H", "W"])``. A layout is a list
of dimension tokens:

* a digit string is an exact size: ``"4"``;
* ``"*"`` is any number of dimensions (zero or more; at most one per layout), usually leading:
  ``["*", "3", "H", "W"]`` is an image with any batch dims;
* anything else is a name (``"B"``, ``"H"``, ``"Hl"``, ``"C'"``): any size, bound on first
  use. A name used twice must have the same size both times, within one layout and across
  calls: :func:`check_shape` returns the sizes it bound, and passing them back as ``sizes``
  checks that, say, ``origins`` have the ``B`` of ``frames``.

``multiple_of`` asks for named sizes divisible by a factor (the even H, W of a mosaic);
:func:`check_same_shape` compares two inputs of any rank (noise and frames, prediction and
ground truth) and names both shapes.

The error class is a parameter because the caller knows what went wrong for the user: a
malformed burst or tensor (``BurstFormatError``, the default), a bad configuration
(``ConfigError``), an unusable data source (``DataError``).

Core layer: imports nothing of the package but :mod:`burstjdd.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from burstjdd.errors import BurstFormatError, BurstJDDError

_ANY = "*"


class Shaped(Protocol):
    """Anything with a ``shape``: a tensor, a NumPy array."""

    @property
    def shape(self) -> tuple[int, ...]: ...


def _render(layout: Sequence[str], sizes: Mapping[str, int]) -> str:
    """``(B=2, 3, H, W)``: the layout with the sizes already known; ``"*"`` shown as ``...``."""
    parts = []
    for token in layout:
        if token == _ANY:
            parts.append("...")
        elif token in sizes:
            parts.append(f"{token}={sizes[token]}")
        else:
            parts.append(token)
    return f"({', '.join(parts)})"


def _render_multiples(multiple_of: Mapping[str, int]) -> str:
    """`` with H, W multiples of 2`` (grouped by factor), or nothing."""
    groups: dict[int, list[str]] = {}
    for name, factor in multiple_of.items():
        groups.setdefault(factor, []).append(name)
    if not groups:
        return ""
    text = "; ".join(
        f"{', '.join(names)} multiples of {factor}" if len(names) > 1
        else f"{names[0]} a multiple of {factor}"
        for factor, names in groups.items()
    )
    return f" with {text}"


def _dims(layout: Sequence[str], shape: tuple[int, ...]) -> list[tuple[str, int]] | None:
    """Pair each non-``"*"`` token with its size, or None when the rank cannot fit."""
    if layout.count(_ANY) > 1:
        raise ValueError(f"layout {list(layout)}: at most one '*'")
    if _ANY not in layout:
        return list(zip(layout, shape)) if len(shape) == len(layout) else None
    star = layout.index(_ANY)
    head, tail = layout[:star], layout[star + 1 :]
    if len(shape) < len(head) + len(tail):
        return None
    return list(zip(head, shape)) + list(zip(tail, shape[len(shape) - len(tail) :]))


def check_shape(
    x: Shaped,
    layout: Sequence[str],
    *,
    what: str,
    error: type[BurstJDDError] = BurstFormatError,
    sizes: Mapping[str, int] | None = None,
    multiple_of: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Check ``x.shape`` against ``layout`` (see the module docstring); return the named sizes.

    ``sizes``: names already bound (by an earlier call, or computed by the caller), which must
    match. ``multiple_of``: name -> factor, e.g. ``{"H": 2, "W": 2}`` for even H and W. Raises
    ``error("<what> must have shape (B=2, 3, H, W), got (2, 4, 8, 8)")`` on any mismatch
    (names already known are shown with their size). Returns ``sizes`` plus every name bound
    here (a new dict). A factor for a name the layout does not contain, or two ``"*"``, is a
    programming error (``ValueError``).
    """
    known = dict(sizes or {})
    multiples = dict(multiple_of or {})
    unknown = set(multiples) - set(layout)
    if unknown:
        raise ValueError(f"multiple_of names {sorted(unknown)} that are not in {list(layout)}")
    shape = tuple(int(s) for s in x.shape)
    bound = dict(known)
    dims = _dims(layout, shape)
    fits = dims is not None
    for token, size in dims or ():
        if token.isdigit():
            fits = size == int(token)
        else:
            fits = bound.setdefault(token, size) == size and size % multiples.get(token, 1) == 0
        if not fits:
            break
    if not fits:
        raise error(
            f"{what} must have shape {_render(layout, known)}{_render_multiples(multiples)}, "
            f"got {shape}"
        )
    return bound


def check_same_shape(
    x: Shaped,
    like: Shaped,
    *,
    what: str,
    like_what: str,
    error: type[BurstJDDError] = BurstFormatError,
) -> None:
    """Raise ``error("<what> (shape) differs in shape from <like_what> (shape)")`` unless
    ``x`` and ``like`` have the same shape (of any rank)."""
    if tuple(x.shape) != tuple(like.shape):
        raise error(
            f"{what} {tuple(x.shape)} differs in shape from {like_what} {tuple(like.shape)}"
        )


__all__ = ["Shaped", "check_same_shape", "check_shape"]
