"""Bounded parsing of untrusted text: JSON and YAML with limits on nesting, size and aliases.

Every JSON or YAML document that comes from disk or the command line (npz metadata, weights
``config.json``, ``run.json``, training configs and ``key=value`` overrides, evaluate's cache)
is read through these functions, so a deeply nested document, a YAML alias bomb, a
self-referencing alias or a 5000-digit integer is one clear error instead of a RecursionError,
an endless expansion or a ValueError from deep inside the parser.

:func:`available_memory` is what size checks compare against before they allocate;
:data:`MAX_SEED` bounds every seed of the library.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from burstjdd.errors import BurstJDDError

MAX_NESTING = 32  # levels of lists/maps; our own documents use at most 5
MAX_SEED = 2**64 - 1  # the largest seed torch.Generator.manual_seed takes
MAX_NODES = 100_000  # scalars + containers after expanding YAML aliases
_LONG_INT = "an integer has more digits than Python reads (4300); no setting needs that many"


def _fail(error: type[BurstJDDError], what: str, reason: str) -> BurstJDDError:
    return error(f"{what}: {reason}")


def check_nesting(value: Any, what: str, error: type[BurstJDDError],
                  limit: int = MAX_NESTING) -> Any:
    """Return ``value`` (a parsed JSON document) if its lists and dicts nest at most ``limit``
    levels deep; otherwise raise ``error``. Iterative, so any depth is safe to check."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                raise _fail(error, what, f"nested more than {limit} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


def parse_json(text: str | bytes, what: str, error: type[BurstJDDError]) -> Any:
    """``json.loads(text)`` with a nesting limit (:data:`MAX_NESTING`); bad UTF-8, bad JSON,
    too deep a document or an integer too long for Python all raise ``error`` naming ``what``."""
    import json

    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text)
    except RecursionError:
        raise _fail(error, what, f"nested more than {MAX_NESTING} levels deep") from None
    except UnicodeDecodeError:
        raise _fail(error, what, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _fail(error, what, f"not valid JSON ({exc})") from None
    except ValueError:  # an integer over Python's digit limit
        raise _fail(error, what, _LONG_INT) from None
    return check_nesting(value, what, error)


def _measure(node: yaml.Node, depth: int, memo: dict[int, int], what: str,
             error: type[BurstJDDError]) -> int:
    """Nodes under ``node`` once aliases are expanded; raises past the depth or size limits.
    ``memo`` (node id → size) makes an alias bomb cost its composed size, not its expansion;
    a self-referencing alias recurses until the depth limit."""
    if depth > MAX_NESTING:
        raise _fail(error, what, f"nested more than {MAX_NESTING} levels deep "
                                 "(or an alias refers to itself)")
    key = id(node)
    if key in memo:
        return memo[key]
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    size = 1 + sum(_measure(child, depth + 1, memo, what, error) for child in children)
    if size > MAX_NODES:
        raise _fail(error, what, f"more than {MAX_NODES:,} values once YAML aliases are "
                                 "expanded (an alias bomb?)")
    memo[key] = size
    return size


def parse_yaml(text: str, what: str, error: type[BurstJDDError]) -> Any:
    """``yaml.safe_load(text)`` with limits on nesting (:data:`MAX_NESTING`) and on the size
    once aliases are expanded (:data:`MAX_NODES`); a syntax error, an alias bomb, a
    self-referencing alias or an integer too long for Python raise ``error`` naming ``what``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, 1, {}, what, error)
        return loader.construct_document(node)
    except BurstJDDError:  # a limit above (our errors are ValueErrors too)
        raise
    except yaml.YAMLError as exc:
        raise _fail(error, what, f"not valid YAML ({' '.join(str(exc).split())})") from None
    except ValueError:  # the only ValueError of SafeLoader: an integer over Python's limit
        raise _fail(error, what, _LONG_INT) from None
    except RecursionError:  # the composer itself recursed on a deep document
        raise _fail(error, what, f"nested more than {MAX_NESTING} levels deep") from None
    finally:
        loader.dispose()


def available_memory() -> int | None:
    """Bytes of memory this process can take now without swapping: Linux's MemAvailable (free
    memory plus the page cache it can reclaim), else the free pages of ``sysconf``
    (macOS), else None (unknown: callers then skip their memory check)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
