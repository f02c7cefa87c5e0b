"""The structure drawn from the imports: no cycle between modules nor between subpackages, and
science/ stays pure (DESIGN.md section 3; docs/architecture.md); and no module in src/ grows
past a line budget (a module over it holds more than one job: split it by job)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "dsa110d"

LINE_BUDGET = 500
"""Lines per module in src/ (issue #21: one job per module)."""
OVER_BUDGET: dict[str, str] = {}
"""Modules allowed over the budget for now, each with why: the list may only shrink."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every dsa110d module ``path`` imports, at any depth (function-level imports count)."""
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        yield from (name for name in names if name in known)


def _graph(depth: int | None) -> dict[str, set[str]]:
    """Import edges between modules (``depth`` None) or their first ``depth`` name parts."""
    known = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        here = ".".join(module.split(".")[:depth])
        for target in _imports(path, known):
            there = ".".join(target.split(".")[:depth])
            if there != here:
                graph.setdefault(here, set()).add(there)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as a path, or [] (depth-first search with colours)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


@pytest.mark.parametrize("depth", [None, 2, 3, 4])
def test_no_import_cycle(depth: int | None) -> None:
    assert _cycle(_graph(depth)) == []


def test_science_imports_nothing_above_config() -> None:
    above = ("dsa110d.state", "dsa110d.services", "dsa110d.supervisor", "dsa110d.cli")
    known = _modules()
    wrong = [
        f"{module} -> {target}"
        for module, path in known.items()
        if module.startswith("dsa110d.science")
        for target in _imports(path, known)
        if target.startswith(above)
    ]
    assert wrong == []


def _lines() -> dict[str, int]:
    return {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }


def test_no_module_over_the_line_budget() -> None:
    over = {
        name: count
        for name, count in _lines().items()
        if count > LINE_BUDGET and name not in OVER_BUDGET
    }
    assert over == {}, f"over {LINE_BUDGET} lines: split by job (docs/architecture.md)"


def test_the_allowed_modules_are_still_over_the_budget() -> None:
    """A module split below the budget leaves the allow-list (else it may grow again)."""
    lines = _lines()
    stale = [name for name in OVER_BUDGET if lines.get(name, 0) <= LINE_BUDGET]
    assert stale == [], f"no longer over {LINE_BUDGET} lines: remove from OVER_BUDGET"
