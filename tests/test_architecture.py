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
    "quantity",
    "policy",
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


def _source(module: str) -> Path | None:
    """The file of ``gitsync.<module>``: a module, or a package's ``__init__``."""
    path = PACKAGE.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(module: str) -> set[str]:
    source = _source(module)
    assert source is not None, module
    tree = ast.parse(source.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            # ``from gitsync.policy import cel`` imports a module too.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
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
            if name.startswith("gitsync.") and _source(local) is not None:
                todo.append(local)
    return seen


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_core_does_no_io(module: str) -> None:
    reached = _reachable(module)
    bad = {name for name in reached for f in FORBIDDEN if name == f or name.startswith(f + ".")}
    assert not bad, f"gitsync.{module} reaches {sorted(bad)}"


def test_only_the_cel_module_knows_the_cel_engine() -> None:
    # Its error strings are no API: reading them in one place keeps upgrades local.
    users = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(
            name == "cel_expr_python" or name.startswith("cel_expr_python.")
            for name in _imports(".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        )
    }
    assert users == {"policy/cel.py"}
