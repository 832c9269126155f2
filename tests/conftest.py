"""Shared fixtures: one real control plane per test session, a namespace per test."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitsync.clients.kube import KubeClient
from gitsync.clients.prometheus import PrometheusClient
from gitsync.dev import controlplane
from gitsync.dev import prometheus as prom
from gitsync.dev.controlplane import ControlPlane

REPO_ROOT = Path(__file__).resolve().parents[1]


def daemon_argv(
    *, repo_url: str, instance: str, kubeconfig: Path, cache: Path, interval: float, level: str
) -> list[str]:
    """``gitsync run`` as a process, polling fast and without jitter, for the tests
    that kill it or load it."""
    return [
        sys.executable,
        "-m",
        "gitsync",
        "run",
        "--repo",
        repo_url,
        "--instance",
        instance,
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(cache),
        "--interval",
        str(interval),
        "--jitter",
        "0",
        "--log-level",
        level,
    ]


def crds_root() -> Path:
    """The shared CRDs: ``$GITSYNC_CRDS_DIR`` or ``../shared/crds`` beside the repo."""
    explicit = os.environ.get("GITSYNC_CRDS_DIR")
    root = Path(explicit) if explicit else REPO_ROOT.parent / "shared" / "crds"
    if not root.is_dir():
        pytest.fail(f"CRDs not found at {root}: set GITSYNC_CRDS_DIR", pytrace=False)
    return root


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real kube-apiserver + etcd with the full KServe, Training Operator (v1) and
    Kubeflow Trainer (v2, with its shipped runtimes) CRDs."""
    folder = tmp_path_factory.mktemp("controlplane")
    root = crds_root()
    plane = controlplane.up(
        folder,
        crd_dirs=[
            root / "kserve" / "full",
            root / "training-operator-v1",
            root / "trainer-v2",
            root / "trainer-v2-runtimes",
        ],
        progress=print,
    )
    try:
        yield plane
    finally:
        controlplane.down(folder)


@pytest.fixture(scope="session")
def prometheus_url(control_plane: ControlPlane) -> str:
    """Prometheus beside the session's control plane, scraping the dev controllers.

    ``up`` is idempotent, so this only adds Prometheus; the session's ``down`` stops
    it with the rest. Prometheus hands its first targets to the scraper only after a
    few seconds: wait until the controllers' endpoint is scraped and up.
    """
    plane = controlplane.up(control_plane.folder, prometheus=True)
    assert plane.prometheus_url is not None
    deadline = time.monotonic() + 30
    with PrometheusClient(plane.prometheus_url, timeout=5) as client:
        while client.query(f'up{{job="{prom.JOB}"}} == 1') is None:
            if time.monotonic() > deadline:
                pytest.fail("Prometheus never scraped the dev controllers", pytrace=False)
            time.sleep(0.2)
    return plane.prometheus_url


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[KubeClient]:
    client = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    yield client
    client.close()


@pytest.fixture
def namespace(kube: KubeClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete("v1", "Namespace", name)
