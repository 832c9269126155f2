"""The architecture contracts (pyproject.toml, checked by lint-imports) agree with each other.

lint-imports checks each contract on its own: that imports point down the layers, and
that the pure core reaches no I/O. Nothing there says that the two contracts name the
same pure core, so a module added to the core layer but not to the no-I/O contract
could start processes or open sockets unnoticed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _contract(contracts: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (contract,) = (c for c in contracts if c["type"] == kind)
    return contract


def test_the_no_io_contract_covers_exactly_the_pure_core_layer() -> None:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    layers = _contract(config["contracts"], "layers")
    (container,) = layers["containers"]
    names = [[name.strip() for name in re.split(r"[|:]", layer)] for layer in layers["layers"]]
    # The pure core is every layer below the one with the clients of the outside world.
    clients = next(i for i, layer in enumerate(names) if "clients" in layer)
    core = {f"{container}.{name}" for layer in names[clients + 1 :] for name in layer}
    no_io = _contract(config["contracts"], "forbidden")
    assert set(no_io["source_modules"]) == core


def test_the_cli_imports_the_clients_only_in_the_commands_that_need_them() -> None:
    """`gitsync validate` and `--help` start in a fraction of what importing the
    Kubernetes client, pygit2 and the reconciler takes; a top-level import in cli.py
    (or in a module it imports) would silently bring that back."""
    heavy = ["urllib3", "pygit2", "structlog", "gitsync.reconciler", "gitsync.apply"]
    probe = f"import sys, gitsync.cli; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
