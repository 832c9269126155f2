"""What the fault tests share: a reconciler of the ``specs`` folder of each test's
``repo`` fixture, as its own instance, on the session's API server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.reconciler import Reconciler, SyncOptions

from ..specrepo import SpecRepo


@pytest.fixture
def reconciler(repo: SpecRepo, control_plane: ControlPlane, tmp_path: Path) -> Iterator[Reconciler]:
    git = GitSource(repo.url, branch="main", cache_dir=tmp_path / "cache")
    kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    options = SyncOptions(path="specs", instance=f"test-{uuid.uuid4().hex[:6]}")
    yield Reconciler(git=git, kube=kube, options=options)
    kube.close()
    git.close()
