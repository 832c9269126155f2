"""The Python a user's `gitsync` runs on, for the benchmarks that time whole processes.

`pip install gitsync` (or the image's wheel) brings gitsync's runtime dependencies
and nothing else. The project's own venv also holds the dev extras, and one of them
changes what a `gitsync sync` pays at start-up: import-linter brings rich, which
structlog imports when it finds it (about 40-60 ms of every process here). So the
process benchmarks run gitsync's source tree (PYTHONPATH) on a venv that holds only
the dependencies pyproject.toml names, made once (about half a minute) and kept under
~/.cache/gitsync, keyed by the Python version and that list. The tree's modules are
compiled to bytecode as installing a wheel does (see bench/sync_process.py).
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

from gitsync.dev.binaries import cache_root

ROOT = Path(__file__).resolve().parents[1]


def runtime_python() -> Path:
    """A python with gitsync's runtime dependencies only."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dependencies = sorted(project["project"]["dependencies"])
    key = hashlib.sha256(json.dumps([sys.version, dependencies]).encode()).hexdigest()[:12]
    folder = cache_root() / f"bench-venv-{key}"
    python = folder / "bin" / "python"
    if python.exists():
        return python
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"making a venv of gitsync's runtime dependencies in {folder}", file=sys.stderr)
    venv.create(partial, with_pip=True, symlinks=True)
    subprocess.run(
        [str(partial / "bin" / "python"), "-m", "pip", "install", "--quiet", *dependencies],
        check=True,
    )
    # Bytecode, as pip writes it for a wheel (PYTHONDONTWRITEBYTECODE keeps every
    # process compiling what lacks it otherwise).
    compileall.compile_dir(partial / "lib", quiet=1)
    partial.rename(folder)
    return python


def tree_environment(tree: Path, **extra: str) -> dict[str, str]:
    """The environment that runs gitsync from source ``tree``, compiled first."""
    compileall.compile_dir(tree / "gitsync", quiet=1)
    return {**os.environ, "PYTHONPATH": str(tree.resolve()), **extra}
