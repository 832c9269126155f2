"""A seeded corruption campaign: a synced spec repo broken at random, several files
per commit, a cycle after each. Nothing whose file still exists in some form may be
deleted, and no cycle may raise. ``pytest -s`` prints what was tried."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from gitsync.clients.kube import KubeClient
from gitsync.reconciler import Reconciler
from gitsync.render import LABEL_INSTANCE

from ..specrepo import SpecRepo
from ..test_reconcile import model

SEED = 20240901
CORRUPTIONS = 40
PER_COMMIT = 4

TRAINING = """\
apiVersion: gitsync.io/v1alpha1
kind: TrainingRun
metadata: {{name: {name}, namespace: {namespace}, labels: {{team: risk}}}}
spec:
  framework: pytorch
  image: registry.example.com/train:1.0
  resources: {{requests: {{cpu: 100m, memory: 128Mi}}}}
"""


def bomb() -> str:
    lines = ['  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


Corruption = Callable[[Path, random.Random], None]


def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    content = path.read_bytes() if path.is_file() and not path.is_symlink() else b"a: 1\n"
    _clear(path)
    path.write_bytes(change(content))


def _clear(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _symlink(path: Path, rng: random.Random) -> None:
    _clear(path)
    os.symlink(rng.choice(["elsewhere.yaml", "../gitsync.yaml", "/etc/passwd"]), path)


def _folder(path: Path, rng: random.Random) -> None:
    _clear(path)
    path.mkdir()
    (path / "README").write_text("a folder now\n")


CORRUPT: dict[str, Corruption] = {
    "duplicate-key": lambda p, r: _rewrite(p, lambda c: c + b"metadata:\n  name: renamed\n"),
    "symlink": _symlink,
    "folder": _folder,
    "api-version": lambda p, r: _rewrite(
        p, lambda c: c.replace(b"apiVersion: ", b"apiVersion: " + r.choice([b"v", b"x.io/"]), 1)
    ),
    "syntax": lambda p, r: _rewrite(p, lambda c: c + b"spec: [unclosed\n"),
    "binary": lambda p, r: _rewrite(p, lambda c: c[: r.randrange(len(c))] + bytes(range(16))),
    "huge": lambda p, r: _rewrite(p, lambda c: c + b"# " + b"x" * (2 << 20) + b"\n"),
    "alias-bomb": lambda p, r: _rewrite(p, lambda c: c + b"bomb:\n" + bomb().encode()),
    "invalid-utf8": lambda p, r: _rewrite(p, lambda c: c.replace(b"name: ", b"name: \xc3\x28", 1)),
    "truncation": lambda p, r: _rewrite(p, lambda c: c[: r.randrange(1, max(2, len(c) // 2))]),
}


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> SpecRepo:
    spec_repo = SpecRepo(tmp_path / "repo")
    spec_repo.write("specs/gitsync.yaml", f"defaults: {{namespace: {namespace}}}\n")
    for index in range(10):
        spec_repo.write(f"specs/models/m{index}.yaml", model(f"m{index}", namespace))
    for name in ("train-a", "train-b"):
        spec_repo.write(
            f"specs/training/{name}.yaml", TRAINING.format(name=name, namespace=namespace)
        )
    spec_repo.write(
        "specs/platform/config.yaml",
        "---\n".join(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {n}, namespace: {namespace}}}\n"
            for n in ("settings", "features")
        ),
    )
    spec_repo.commit("initial specs")
    return spec_repo


def managed(kube: KubeClient, namespace: str, instance: str) -> set[tuple[str, str]]:
    """(kind, name) of what this instance manages (listed items carry no kind)."""
    selector = f"{LABEL_INSTANCE}={instance}"
    kinds = [
        ("serving.kserve.io/v1beta1", "InferenceService"),
        ("kubeflow.org/v1", "PyTorchJob"),
        ("v1", "ConfigMap"),
    ]
    return {
        (kind, item["metadata"]["name"])
        for api_version, kind in kinds
        for item in kube.list(api_version, kind, namespace=namespace, label_selector=selector)[
            "items"
        ]
    }


def test_random_corruptions_delete_nothing(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    started = time.monotonic()
    first = reconciler.cycle()
    assert first.error is None
    assert first.diagnostics == (), first.diagnostics
    instance = reconciler._options.instance
    synced = managed(kube, namespace, instance)
    assert len(synced) == 14, synced  # 10 models, 2 runs, 2 ConfigMaps

    rng = random.Random(SEED)
    paths = sorted(p for p in (repo.work / "specs").rglob("*.yaml") if p.name != "gitsync.yaml")
    tried: Counter[str] = Counter()
    deleted: set[tuple[str, str]] = set()
    for _ in range(CORRUPTIONS // PER_COMMIT):
        for path in rng.sample(paths, PER_COMMIT):
            kind = rng.choice(sorted(CORRUPT))
            CORRUPT[kind](path, rng)
            tried[kind] += 1
        repo.commit("corrupt some specs")
        report = reconciler.cycle()
        assert report.error is None, report.error
        deleted |= synced - managed(kube, namespace, instance)

    summary = ", ".join(f"{kind} {count}" for kind, count in sorted(tried.items()))
    elapsed = time.monotonic() - started
    print(f"\ncorruptions tried: {summary}; objects deleted: {len(deleted)}; {elapsed:.1f} s")
    assert deleted == set()
    assert elapsed < 60
