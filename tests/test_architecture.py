"""The pure core never reaches the outside world; imports point down the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gitsync"
PURE_CORE = [
    "specs",
    "loading",
    "render",
    "diff",
    "health",
    "status",
    "errors",
    "schedule",
    "backoff",
]
FORBIDDEN = {
    "pygit2",
    "kubernetes",
    "urllib3",
    "urllib",
    "http",
    "socket",
    "subprocess",
    "requests",
    "httpx",
    "gitsync.clients",
    "gitsync.apply",
    "gitsync.reconciler",
    "gitsync.daemon",
    "gitsync.cli",
    "gitsync.dev",
}


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _reachable(module: str) -> set[str]:
    """Every module imported from ``module``, following gitsync's own modules."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for name in _imports(current):
            if name in seen:
                continue
            seen.add(name)
            local = name.removeprefix("gitsync.")
            if name.startswith("gitsync.") and (PACKAGE / f"{local}.py").exists():
                todo.append(local)
    return seen


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_core_does_no_io(module: str) -> None:
    reached = _reachable(module)
    bad = {name for name in reached for f in FORBIDDEN if name == f or name.startswith(f + ".")}
    assert not bad, f"gitsync.{module} reaches {sorted(bad)}"
