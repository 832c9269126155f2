"""Promotion between gitsync instances, end to end: staging and production are two
instances (two clusters in life; here two folders of one repo on one API server)
sharing one status branch, and production takes what staging serves once staging's
own status, in staging's folder of the branch, shows it has proven itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitsync.clients.git import Author, GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.health import Health, HealthReport
from gitsync.loading import load_file, load_tree
from gitsync.reconciler import Reconciler, SyncOptions
from gitsync.status import build_status, status_path
from gitsync.status_document import ModelInfo
from gitsync.status_store import StatusStore

from .specrepo import SpecRepo, git
from .test_pipelines import model, served, status, until


@pytest.fixture
def instances(
    tmp_path: Path, control_plane: ControlPlane, namespace: str
) -> Iterator[tuple[SpecRepo, Reconciler, Reconciler, str]]:
    repo = SpecRepo(tmp_path / "repo")
    for folder in ("staging", "production"):
        repo.write(f"{folder}/gitsync.yaml", f"defaults: {{namespace: {namespace}}}\n")
    suffix = uuid.uuid4().hex[:6]
    kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    # Production runs as `gitsync run` does, with informers, so a cycle in which
    # nothing it watches moved is skipped: staging's status commits must wake it.
    reconcilers = [
        Reconciler(
            git=GitSource(repo.url, branch="main", cache_dir=tmp_path / f"cache-{folder}"),
            kube=kube,
            options=SyncOptions(path=folder, instance=f"{folder}-{suffix}"),
            watch=folder == "production",
        )
        for folder in ("staging", "production")
    ]
    yield repo, reconcilers[0], reconcilers[1], f"staging-{suffix}"
    for reconciler in reconcilers:
        reconciler.close()
    kube.close()


def test_production_promotes_from_the_staging_instance_after_its_hold(
    instances: tuple[SpecRepo, Reconciler, Reconciler, str], kube: KubeClient, namespace: str
) -> None:
    repo, staging, production, staging_instance = instances
    upstream = {
        "name": "fraud-staging",
        "namespace": namespace,
        "instance": staging_instance,
        "healthyFor": "4s",
    }
    repo.write("staging/model.yaml", model(namespace, "fraud-staging", {"storageUri": "s3://m/v1"}))
    repo.write(
        "production/model.yaml", model(namespace, "fraud", {"fromModelDeployment": upstream})
    )
    repo.commit("staging serves v1; production, another instance, follows it")

    # Production first: staging has written nothing yet.
    production.cycle()
    doc = status(repo, namespace, "ModelDeployment", "fraud")
    assert doc["phase"] == "Pending"
    assert f"no status of fraud-staging from instance {staging_instance} yet" in doc["message"]

    until(staging, lambda: served(kube, namespace, "fraud-staging") == "s3://m/v1")
    until(
        staging,
        lambda: status(repo, namespace, "ModelDeployment", "fraud-staging")["phase"] == "Healthy",
    )
    until(production, lambda: served(kube, namespace, "fraud") == "s3://m/v1")
    lineage = status(repo, namespace, "ModelDeployment", "fraud")["model"]["fromTrainingRun"]
    assert lineage["promotedFrom"] == (
        f"ModelDeployment {namespace}/fraud-staging of instance {staging_instance}"
    )
    # Each instance wrote in its own folder of the one branch.
    folders = {path.split("/")[1] for path in repo.status_files() if path.count("/") == 4}
    assert {staging_instance, f"production-{staging_instance.removeprefix('staging-')}"} <= folders

    # Staging moves to v2; production follows only once v2 has held in staging.
    repo.write("staging/model.yaml", model(namespace, "fraud-staging", {"storageUri": "s3://m/v2"}))
    repo.commit("staging serves v2")
    production.cycle()
    assert served(kube, namespace, "fraud") == "s3://m/v1"
    until(staging, lambda: served(kube, namespace, "fraud-staging") == "s3://m/v2")
    until(
        staging,
        lambda: status(repo, namespace, "ModelDeployment", "fraud-staging")["phase"] == "Healthy",
    )
    # v2 is Healthy in staging, but not yet for its 4s: production keeps v1.
    production.cycle()
    assert served(kube, namespace, "fraud") == "s3://m/v1"
    held = status(repo, namespace, "ModelDeployment", "fraud")["model"]["fromTrainingRun"]
    assert "healthyFor 4s ends" in held["held"], held
    until(production, lambda: served(kube, namespace, "fraud") == "s3://m/v2")


def test_validate_leaves_another_instance_s_upstream_to_that_instance() -> None:
    """The upstream is declared in a repo this one does not see: no 'no such
    ModelDeployment' error, and no cycle through it; without ``instance`` the same
    reference is checked against the repo."""

    def errors(source: dict[str, object]) -> list[str]:
        content = model("ml-serving", "fraud", {"fromModelDeployment": source}).encode()
        loaded = load_tree([load_file("fraud.yaml", content)], default_namespace="ml-serving")
        return [d.message for d in loaded.diagnostics]

    assert errors({"name": "fraud", "namespace": "ml-staging", "instance": "staging"}) == []
    # The other repo's default namespace is not this one's: it must be named.
    (needs_namespace,) = errors({"name": "fraud", "instance": "staging"})
    assert "instance 'staging' needs namespace" in needs_namespace
    assert errors({"name": "fraud-staging"}) == [
        "no ModelDeployment ml-serving/fraud-staging in the repo"
    ]


def test_only_a_document_that_is_what_its_path_says_is_followed(tmp_path: Path) -> None:
    """A copy of staging's document under another name (a hand edit of the shared
    branch) is not taken as that model's word."""
    repo = SpecRepo(tmp_path / "repo")
    repo.write("README.md", "specs\n")
    repo.commit("a repo")
    staging = StatusStore(
        GitSource(repo.url, branch="main", cache_dir=tmp_path / "staging"),
        author=Author("gitsync", "g@x"),
        instance="staging",
    )
    staging.read("gitsync/status")
    status = build_status(
        kind="ModelDeployment",
        name="fraud",
        namespace="ml",
        instance="staging",
        source="fraud.yaml",
        source_commit="c" * 40,
        now="2026-12-01T12:00:00Z",
        health=HealthReport(Health.HEALTHY, "serving"),
        model=ModelInfo(storage_uri="s3://m/fraud/v1"),
    )
    staging.publish([status], branch="gitsync/status", source_commit="c" * 40)
    real = status_path("ModelDeployment", "ml", "fraud", instance="staging")
    copy = status_path("ModelDeployment", "ml", "fraud-copy", instance="staging")
    # A person copies the document to another model's path, on the shared branch.
    work = tmp_path / "person"
    git("clone", "-q", "--branch", "gitsync/status", str(repo.remote), str(work), cwd=tmp_path)
    (work / copy).write_bytes((work / real).read_bytes())
    git("add", copy, cwd=work)
    git("-c", "user.name=P", "-c", "user.email=p@x", "commit", "-qm", "copy", cwd=work)
    git("push", "-q", "origin", "gitsync/status", cwd=work)

    production = StatusStore(
        GitSource(repo.url, branch="main", cache_dir=tmp_path / "production"),
        author=Author("gitsync", "g@x"),
        instance="production",
    )
    follow = frozenset({real, copy})
    inventory = production.read("gitsync/status", follow=follow)
    assert set(inventory.others) == {real}
    assert inventory.others[real].model is not None
    assert inventory.others[real].model.storage_uri == "s3://m/fraud/v1"
    # After a push that may not have landed, the branch is read anew: what the store
    # follows is read again with it, not lost.
    production.forget()
    assert set(production.read("gitsync/status", follow=follow).others) == {real}
    # And a follower that stops following reads nothing of the other instance.
    assert production.read("gitsync/status").others == {}
