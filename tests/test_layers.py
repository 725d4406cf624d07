"""The package's layers: no module imports from a layer above its own, and no import cycle.

Run: ``python -m pytest tests/test_layers.py``

Layers, bottom to top (docs/architecture.md):

0. core: dependency-free helpers at the package root (``burstjdd.errors``, ``burstjdd.checks``,
   ``burstjdd.typed``, ``burstjdd._version``, ...): EVERY root module other than ``restore``,
   ``__init__`` and ``__main__`` is counted as core, so a new root module starts at the bottom;
1. ``burstjdd.raw``; 2. ``burstjdd.synth``; 3. ``burstjdd.models``; 4. ``burstjdd.restore``;
5. ``burstjdd.train`` and ``burstjdd.eval``, siblings: either may import the other (today
   training validates with ``eval.metrics``; eval imports nothing of train), and the cycle
   check keeps them from importing each other in a loop;
6. ``burstjdd.cli``; 7. the package root ``burstjdd/__init__.py`` and ``__main__.py``.

A module may import from its own layer and the layers below (through ``import``, ``from ...
import``, relative imports, at module level or inside a function; ``if TYPE_CHECKING:`` imports
count too). ``from burstjdd import NAME`` where NAME is not a submodule imports the package root
(its ``__init__``), the top layer: read shared names from their core module instead. Imports by
name strings (``importlib.import_module``) are not seen.

Cycles are checked twice: among the imports that run when a module is imported (module level
and class bodies, not functions or ``if TYPE_CHECKING:``), and among all imports.
"""

from __future__ import annotations

import ast
import itertools
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "burstjdd"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# sub-package (or root module) -> layer rank; root modules not listed are core (rank 0)
LAYERS = {"raw": 1, "synth": 2, "models": 3, "restore": 4, "train": 5, "eval": 5, "cli": 6,
          "__init__": 7, "__main__": 7}
LAYER_NAMES = {0: "core", 1: "raw", 2: "synth", 3: "models", 4: "restore", 5: "train/eval",
               6: "cli", 7: "root"}


@dataclass(frozen=True)
class Import:
    """One imported module: ``target`` (dotted name, inside the package), where it is imported
    (``line``, the import's source text) and whether it runs when the importer is imported."""

    target: str
    line: int
    text: str
    at_import: bool


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py under src/burstjdd (a package's __init__.py
    is the package itself)."""
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def layer(name: str) -> int:
    """Layer rank of a module of the package (see the module docstring)."""
    parts = name.split(".")
    if len(parts) == 1:
        return LAYERS["__init__"]
    if parts[1] in LAYERS:
        return LAYERS[parts[1]]
    if len(parts) == 2 and not _is_package(name):
        return 0  # a root module: core
    raise AssertionError(f"{name}: sub-package {parts[1]!r} has no layer; add it to LAYERS in "
                         f"tests/test_layers.py and to docs/architecture.md")


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name that ``from <node.module> import ...`` (maybe relative) reads."""
    if not node.level:
        return node.module or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules of the package that an import statement imports (submodules when a name
    imported ``from`` a package is one, else the package itself)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    source = _resolve(module, node)
    if source.split(".")[0] != PACKAGE:
        return []
    return list(dict.fromkeys(f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES
                              else source for a in node.names))


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_in(module: str, source: str) -> list[Import]:
    """Every import of a package module in ``source`` (the code of ``module``), with whether it
    runs when the module is imported."""
    found: list[Import] = []

    def visit(node: ast.AST, at_import: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend(Import(t, child.lineno, ast.unparse(child), at_import)
                             for t in _targets(module, child))
            deferred = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, at_import and not deferred and not _is_type_checking(child))

    visit(ast.parse(source, filename=str(MODULES.get(module, module))), True)
    return found


IMPORTS = {name: imports_in(name, path.read_text(encoding="utf-8"))
           for name, path in MODULES.items()}


def _where(module: str, imp: Import) -> str:
    path = MODULES[module].relative_to(SRC.parents[1])
    return f"{path}:{imp.line}: {module} ({LAYER_NAMES[layer(module)]}) imports {imp.target} " \
           f"({LAYER_NAMES[layer(imp.target)]}): {imp.text}"


def test_every_module_has_a_layer():
    assert len(MODULES) > 50, f"found only {len(MODULES)} modules under {SRC}"
    for name in MODULES:
        layer(name)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [_where(module, imp) for module, imports in IMPORTS.items() for imp in imports
              if layer(imp.target) > layer(module)]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of a directed graph as [a, b, ..., a], or None when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


@pytest.mark.parametrize("at_import_only", [True, False], ids=["module-level", "any-level"])
def test_no_import_cycle(at_import_only):
    """module-level: the imports that run on import (a cycle there can fail half-initialised);
    any-level: every import, a function's too (a cycle there is two modules that need each
    other, such as raw.io and raw.dng once were)."""
    def edges(module: str) -> list[Import]:
        return [i for i in IMPORTS[module] if (i.at_import or not at_import_only)
                and i.target != module]

    cycle = _cycle({m: {i.target for i in edges(m)} for m in IMPORTS})
    if cycle is not None:
        steps = []
        for a, b in itertools.pairwise(cycle):
            imp = next(i for i in edges(a) if i.target == b)
            steps.append(f"{MODULES[a].relative_to(SRC.parents[1])}:{imp.line}: {a} imports "
                         f"{b}: {imp.text}")
        pytest.fail("import cycle:\n" + "\n".join(steps))


def test_the_checker_sees_every_kind_of_import():
    """The parser itself: relative, function-level, type-only and root-name imports."""
    source = textwrap.dedent("""\
        from typing import TYPE_CHECKING
        from . import dpbm
        from ..raw.cfa import pack
        import burstjdd.synth.burst as burst
        if TYPE_CHECKING:
            from burstjdd.eval.evaluate import Method
        def f():
            from burstjdd import __version__, restore
        class C:
            from .. import errors
    """)
    found = [(i.target, i.line, i.at_import) for i in imports_in("burstjdd.models.jddb", source)]
    assert found == [
        ("burstjdd.models.dpbm", 2, True), ("burstjdd.raw.cfa", 3, True),
        ("burstjdd.synth.burst", 4, True), ("burstjdd.eval.evaluate", 6, False),
        ("burstjdd", 8, False),  # a name of the root's __init__: the top layer
        ("burstjdd.restore", 8, False), ("burstjdd.errors", 10, True)]
    assert layer("burstjdd") == layer("burstjdd.__main__") == 7
    assert layer("burstjdd.errors") == 0 and layer("burstjdd.restore") == 4
    assert layer("burstjdd.train.loop") == layer("burstjdd.eval.metrics") == 5
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
