"""Faults of the world around gitsync: the git remote going away and coming back, and
pushes arriving faster than the daemon reconciles. Each test asserts its figure:
objects wrongly deleted 0, commits lost 0, crashes 0.

Everything is real: a ``git daemon`` remote on 127.0.0.1, the session's API server,
``gitsync run`` as a process.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from pathlib import Path

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.errors import GitUnavailableError, Remedy
from gitsync.reconciler import Reconciler, SyncOptions
from gitsync.result import Outcome

from ..conftest import daemon_argv
from ..gitremotes import GitDaemon
from ..specrepo import SpecRepo, git
from ..test_reconcile import model as spec

ISVC = ("serving.kserve.io/v1beta1", "InferenceService")


def model(name: str, namespace: str, version: int) -> str:
    return spec(name, namespace, f"s3://models/{name}/v{version}")


def served(kube: KubeClient, namespace: str, instance: str) -> dict[str, str]:
    """storageUri of each of the instance's InferenceServices, by name."""
    items = kube.list(*ISVC, namespace=namespace, label_selector=f"gitsync.io/instance={instance}")
    return {
        item["metadata"]["name"]: item["spec"]["predictor"]["model"]["storageUri"]
        for item in items["items"]
    }


def test_the_git_remote_going_away_requeues_and_deletes_nothing(
    tmp_path: Path, control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    repo = SpecRepo(tmp_path / "repo")
    for name in ("a", "b", "c"):
        repo.write(f"{name}.yaml", model(name, namespace, 1))
    repo.commit("three models")
    daemon = GitDaemon(repo.remote.parent, tmp_path / "git-daemon.log")
    port = daemon.port
    instance = f"outage-{uuid.uuid4().hex[:6]}"
    source = GitSource(
        daemon.url(repo.remote),
        branch="main",
        cache_dir=tmp_path / "cache",
        connect_timeout=2.0,
        io_timeout=5.0,
    )
    reconciler = Reconciler(git=source, kube=kube, options=SyncOptions(instance=instance))
    try:
        assert not reconciler.cycle().failed
        before = served(kube, namespace, instance)
        assert len(before) == 3

        daemon.stop()
        repo.write("b.yaml", model("b", namespace, 2))
        repo.commit("b v2 while the remote is away")
        outcomes = [reconciler.cycle() for _ in range(3)]
        for report in outcomes:
            assert isinstance(report.error, GitUnavailableError)
            assert report.result.outcome is Outcome.REQUEUE
            assert report.result.remedy is Remedy.RETRY
        assert served(kube, namespace, instance) == before  # nothing deleted, nothing moved

        daemon = GitDaemon(repo.remote.parent, tmp_path / "git-daemon.log", port=port)
        back = reconciler.cycle()
        assert back.result.outcome is Outcome.SUCCEEDED
        assert served(kube, namespace, instance) == {**before, "b": "s3://models/b/v2"}
        head = git("rev-parse", "main", cwd=repo.remote)
        assert back.revision is not None
        assert back.revision.commit == head
        print("\ngit outage: 3 cycles requeued, 0 objects deleted, change live on the first back")
    finally:
        reconciler.close()
        source.close()
        daemon.stop()


def test_every_commit_pushed_under_load_is_reflected_live(
    tmp_path: Path, control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    repo = SpecRepo(tmp_path / "repo")
    names = [f"m{i}" for i in range(5)]
    versions = dict.fromkeys(names, 1)
    for name in names:
        repo.write(f"models/{name}.yaml", model(name, namespace, 1))
    repo.commit("five models")
    instance = f"load-{uuid.uuid4().hex[:6]}"
    argv = daemon_argv(
        repo_url=repo.url,
        instance=instance,
        kubeconfig=control_plane.kubeconfig,
        cache=tmp_path / "cache",
        interval=0.3,
        level="error",
    )
    rng = random.Random(11)
    pushed = 0
    daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while pushed < 30 and time.monotonic() < deadline:
            name = rng.choice(names)
            versions[name] += 1
            repo.write(f"models/{name}.yaml", model(name, namespace, versions[name]))
            repo.commit(f"{name} v{versions[name]}")
            pushed += 1
            time.sleep(rng.uniform(0.0, 0.3))
        head = git("rev-parse", "main", cwd=repo.remote)
        expected = {name: f"s3://models/{name}/v{v}" for name, v in versions.items()}
        settle = time.monotonic() + 30
        while served(kube, namespace, instance) != expected:
            assert daemon.poll() is None, daemon.stderr.read().decode() if daemon.stderr else ""
            assert time.monotonic() < settle, served(kube, namespace, instance)
            time.sleep(0.3)
        # The status branch reaches the last commit too.
        while True:
            subjects = git("log", "--format=%s", "-1", "gitsync/status", cwd=repo.remote)
            if f"[source {head[:7]}]" in subjects:
                break
            assert time.monotonic() < settle, subjects
            time.sleep(0.3)
        assert daemon.poll() is None  # no crash
        print(f"\npush load: {pushed} commits pushed, all live, 0 lost")
    finally:
        daemon.terminate()
        daemon.wait(timeout=15)
