"""`gitsync history` and `gitsync status` read the audit trail back out of Git."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from gitsync.clients.git import Author, GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.health import Health, HealthReport
from gitsync.reconciler import Reconciler, SyncOptions
from gitsync.status import build_status
from gitsync.status_store import StatusStore

from .specrepo import SpecRepo, git


def model(namespace: str, uri: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "fraud", "namespace": namespace, "labels": {"team": "risk"}},
            "spec": {
                "model": {"format": "sklearn", "storageUri": uri},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            },
        }
    )


def gitsync(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitsync", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", "GITSYNC_KUBECONFIG"}},
    )


def test_history_joins_spec_commits_merges_and_status_commits(
    tmp_path: Path, control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    repo = SpecRepo(tmp_path / "repo")
    repo.write("models/fraud.yaml", model(namespace, "s3://m/v1"))
    first = repo.commit("fraud: first model")
    reconciler = Reconciler(
        git=GitSource(repo.url, branch="main", cache_dir=tmp_path / "cache"),
        kube=kube,
        options=SyncOptions(instance=namespace),
    )
    reconciler.cycle()

    # v2 arrives through a reviewed branch and a merge commit.
    git("checkout", "-q", "-b", "v2", cwd=repo.work)
    repo.write("models/fraud.yaml", model(namespace, "s3://m/v2"))
    feature = repo.commit("fraud: model v2")
    git("checkout", "-q", "main", cwd=repo.work)
    git("merge", "-q", "--no-ff", "-m", "Merge pull request #7: fraud v2", "v2", cwd=repo.work)
    git("push", "-q", "origin", "main", cwd=repo.work)
    merge = git("rev-parse", "HEAD", cwd=repo.work)
    reconciler.cycle()
    git("fetch", "-q", "origin", "gitsync/status:refs/remotes/origin/gitsync/status", cwd=repo.work)

    result = gitsync("history", "fraud", "--format", "json", cwd=repo.work)

    assert result.returncode == 0, result.stderr
    (timeline,) = json.loads(result.stdout)
    assert (timeline["kind"], timeline["namespace"], timeline["sources"]) == (
        "ModelDeployment",
        namespace,
        ["models/fraud.yaml"],
    )
    spec_events = [e for e in timeline["events"] if e["kind"] == "spec"]
    assert [e["commit"] for e in spec_events] == [merge, first]
    assert spec_events[0]["text"] == (
        f"Dana Scientist: Merge pull request #7: fraud v2 (merged from {feature[:7]}) "
        "[models/fraud.yaml]"
    )
    status_events = [e for e in timeline["events"] if e["kind"] == "status"]
    assert len(status_events) == 2
    assert status_events[0]["text"].endswith(f"[source {merge[:7]}]")
    assert status_events[1]["text"].endswith(f"[source {first[:7]}]")
    assert timeline["events"][0]["kind"] == "status"  # newest first: applied after the merge

    table = gitsync("history", cwd=repo.work)
    assert f"ModelDeployment {namespace}/fraud (models/fraud.yaml)" in table.stdout

    current = gitsync(
        "status", "fraud", "--kubeconfig", str(control_plane.kubeconfig), cwd=repo.work
    )
    assert current.returncode == 0, current.stderr
    assert current.stdout.startswith(f"ModelDeployment {namespace}/fraud: ")
    assert "live: " in current.stdout

    missing = gitsync("history", "nope", cwd=repo.work)
    assert missing.returncode == 2
    assert "no spec named 'nope'" in missing.stderr


def test_before_any_status_history_shows_the_spec_commits_and_status_says_so(
    tmp_path: Path,
) -> None:
    repo = SpecRepo(tmp_path / "repo")
    repo.write("models/fraud.yaml", model("ml", "s3://m/v1"))
    first = repo.commit("fraud: first model")
    repo.write("models/fraud.yaml", model("ml", "s3://m/v2"))
    second = repo.commit("fraud: model v2")
    note = "no status branch 'gitsync/status' yet"

    result = gitsync("history", "fraud", "--format", "json", cwd=repo.work)

    assert result.returncode == 0, result.stderr
    assert f"{note}: showing spec history only" in result.stderr
    assert "Traceback" not in result.stderr
    (timeline,) = json.loads(result.stdout)
    assert (timeline["kind"], timeline["namespace"], timeline["sources"]) == (
        "ModelDeployment",
        "ml",
        ["models/fraud.yaml"],
    )
    assert [(e["kind"], e["commit"]) for e in timeline["events"]] == [
        ("spec", second),
        ("spec", first),
    ]
    missing = gitsync("history", "nope", cwd=repo.work)
    assert missing.returncode == 2
    assert "no spec named 'nope' on main" in missing.stderr

    for output in ("table", "json"):
        current = gitsync("status", "--format", output, cwd=repo.work)
        assert current.returncode == 0, current.stderr
        assert note in current.stderr
        assert "Traceback" not in current.stderr
        assert current.stdout == ("[]\n" if output == "json" else "")


def test_status_and_history_read_every_instance_and_filter_one(tmp_path: Path) -> None:
    repo = SpecRepo(tmp_path / "repo")
    repo.write("prod/fraud.yaml", model("ml", "s3://m/v1"))
    spec = repo.commit("fraud in prod and staging")
    for instance, phase in (("prod", Health.HEALTHY), ("staging", Health.FAILED)):
        source = GitSource(repo.url, branch="main", cache_dir=tmp_path / f"cache-{instance}")
        store = StatusStore(source, author=Author("gitsync", "g@x"), instance=instance)
        store.read("gitsync/status")
        status = build_status(
            kind="ModelDeployment",
            name="fraud",
            namespace="ml",
            instance=instance,
            source="prod/fraud.yaml",
            source_commit=spec,
            now="t",
            health=HealthReport(phase, f"{instance} says"),
        )
        assert store.publish([status], branch="gitsync/status", source_commit=spec)
        source.close()
    git("fetch", "-q", "origin", "gitsync/status:refs/remotes/origin/gitsync/status", cwd=repo.work)

    both = gitsync("status", cwd=repo.work)
    assert both.returncode == 0, both.stderr
    assert both.stdout.splitlines() == [
        "[prod] ModelDeployment ml/fraud: Healthy: prod says",
        "[staging] ModelDeployment ml/fraud: Failed: staging says",
    ]
    one = gitsync("status", "--instance", "staging", "--format", "json", cwd=repo.work)
    assert [(r["instance"], r["phase"]) for r in json.loads(one.stdout)] == [("staging", "Failed")]
    alone = gitsync("status", "--instance", "prod", cwd=repo.work)
    assert alone.stdout == "ModelDeployment ml/fraud: Healthy: prod says\n"

    timelines = json.loads(gitsync("history", "--format", "json", cwd=repo.work).stdout)
    assert [(t["instance"], len(t["events"])) for t in timelines] == [("prod", 2), ("staging", 2)]
    labelled = gitsync("history", cwd=repo.work).stdout
    assert "[prod] ModelDeployment ml/fraud (prod/fraud.yaml)\n" in labelled
    assert "[staging] ModelDeployment ml/fraud (prod/fraud.yaml)\n" in labelled
    table = gitsync("history", "--instance", "staging", cwd=repo.work).stdout
    assert table.startswith("ModelDeployment ml/fraud (prod/fraud.yaml)\n")
    assert "Failed: staging says" in table
    assert "prod says" not in table
