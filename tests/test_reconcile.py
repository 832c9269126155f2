"""The reconcile cycle end to end: a real Git remote, a real API server, status in Git."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsync.cache import ENTRIES, DiskCache
from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.diff import Action
from gitsync.reconciler import CycleReport, Reconciler, SyncOptions
from gitsync.render import ANNOTATION_SOURCE_COMMIT, LABEL_INSTANCE

from .gitremotes import GitDaemon
from .specrepo import SpecRepo

ISVC = ("serving.kserve.io/v1beta1", "InferenceService")


def model(name: str, namespace: str, uri: str = "s3://models/m/v1", **extra: Any) -> str:
    spec: dict[str, Any] = {
        "apiVersion": "gitsync.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "risk"}},
        "spec": {
            "model": {"format": "sklearn", "storageUri": uri},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            **extra,
        },
    }
    return yaml.safe_dump(spec, sort_keys=False)


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> SpecRepo:
    spec_repo = SpecRepo(tmp_path / "repo")
    spec_repo.write("specs/gitsync.yaml", f"defaults: {{namespace: {namespace}}}\n")
    for name in ("alpha", "beta", "gamma"):
        spec_repo.write(f"specs/models/{name}.yaml", model(name, namespace))
    spec_repo.write(
        "specs/platform/sa.yaml",
        "apiVersion: v1\nkind: ServiceAccount\n"
        f"metadata: {{name: reader, namespace: {namespace}}}\n",
    )
    spec_repo.write("README.md", "not a spec\n")
    spec_repo.commit("initial specs")
    return spec_repo


@pytest.fixture(params=["file", "git-daemon"])
def remote_url(request: pytest.FixtureRequest, repo: SpecRepo, tmp_path: Path) -> Iterator[str]:
    """The spec repo over file:// and over the git protocol on 127.0.0.1."""
    if request.param == "file":
        yield repo.url
        return
    daemon = GitDaemon(repo.remote.parent, tmp_path / "git-daemon.log")
    try:
        yield daemon.url(repo.remote)
    finally:
        daemon.stop()


@pytest.fixture
def instance() -> str:
    return f"test-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def reconciler(
    remote_url: str, control_plane: ControlPlane, tmp_path: Path, instance: str
) -> Iterator[Reconciler]:
    git = GitSource(remote_url, branch="main", cache_dir=tmp_path / "cache")
    kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    yield Reconciler(git=git, kube=kube, options=SyncOptions(path="specs", instance=instance))
    kube.close()
    git.close()


def names(kube: KubeClient, namespace: str) -> set[str]:
    return {i["metadata"]["name"] for i in kube.list(*ISVC, namespace=namespace)["items"]}


def gitsync_write(obj: dict[str, Any]) -> tuple[int, str]:
    """The generation and the time of gitsync's last apply, from managedFields."""
    (entry,) = [m for m in obj["metadata"]["managedFields"] if m["manager"] == "gitsync"]
    return obj["metadata"]["generation"], entry["time"]


def actions(report: CycleReport) -> dict[str, str]:
    return {c.key.name: (c.error or c.action.value) for c in report.changes.changes}


def test_first_sync_then_noop(
    reconciler: Reconciler, instance: str, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    first = reconciler.cycle()

    assert actions(first) == {
        "alpha": "created",
        "beta": "created",
        "gamma": "created",
        "reader": "created",
    }
    assert not first.failed
    assert names(kube, namespace) == {"alpha", "beta", "gamma"}
    files = repo.status_files()
    assert f"status/{instance}/{namespace}/ModelDeployment/alpha.yaml" in files
    assert f"status/{instance}/{namespace}/ServiceAccount/reader.yaml" in files
    assert f"status/{instance}/README.md" in files
    assert f"[{instance}]({instance}/README.md)" in files["status/README.md"]
    doc = yaml.safe_load(files[f"status/{instance}/{namespace}/ModelDeployment/alpha.yaml"])
    assert doc["source"] == "specs/models/alpha.yaml"
    assert doc["model"]["storageUri"] == "s3://models/m/v1"
    conditions = {c["type"]: c["status"] for c in doc["conditions"]}
    assert doc["conditions"][0]["type"] == "Ready"
    assert conditions["Valid"] == conditions["Applied"] == "True"
    # kstatus: abnormal-true conditions appear only while True.
    assert "Stalled" not in conditions
    assert ("Reconciling" in conditions) == (doc["phase"] != "Healthy")
    (status_commit,) = repo.log("gitsync/status")
    assert first.status_commit and status_commit.startswith(first.status_commit)

    second = reconciler.cycle()

    assert set(actions(second).values()) == {"unchanged"}
    assert second.changes.writes == []


def test_unrelated_commit_writes_nothing(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    before = kube.get(*ISVC, "alpha", namespace=namespace)
    repo.write("README.md", "docs changed\n")
    repo.commit("docs only")

    report = reconciler.cycle()

    assert report.changes.writes == []
    after = kube.get(*ISVC, "alpha", namespace=namespace)
    assert before and after
    # The dev controller writes status meanwhile; what gitsync owns must be untouched.
    assert gitsync_write(after) == gitsync_write(before)


def test_comment_only_edit_writes_nothing(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    before = kube.get(*ISVC, "alpha", namespace=namespace)
    repo.write("specs/models/alpha.yaml", "# owned by the risk team\n" + model("alpha", namespace))
    repo.commit("alpha: add a comment")

    report = reconciler.cycle()

    assert report.changes.writes == []
    after = kube.get(*ISVC, "alpha", namespace=namespace)
    assert before and after
    assert gitsync_write(after) == gitsync_write(before)


def test_edit_applies_only_that_spec_and_records_its_commit(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    repo.write("specs/models/beta.yaml", model("beta", namespace, uri="s3://models/m/v2"))
    commit = repo.commit("beta: model v2")

    report = reconciler.cycle()

    assert actions(report)["beta"] == "configured"
    assert [c.key.name for c in report.changes.writes] == ["beta"]
    live = kube.get(*ISVC, "beta", namespace=namespace)
    assert live is not None
    assert live["spec"]["predictor"]["model"]["storageUri"] == "s3://models/m/v2"
    assert live["metadata"]["annotations"][ANNOTATION_SOURCE_COMMIT] == commit
    alpha = kube.get(*ISVC, "alpha", namespace=namespace)
    assert (
        alpha is not None and alpha["metadata"]["annotations"][ANNOTATION_SOURCE_COMMIT] != commit
    )


def test_deleted_spec_is_pruned(
    reconciler: Reconciler, instance: str, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    repo.delete("specs/models/gamma.yaml")
    repo.commit("retire gamma")

    report = reconciler.cycle()

    assert actions(report)["gamma"] == "deleted"
    assert names(kube, namespace) == {"alpha", "beta"}
    assert f"status/{instance}/{namespace}/ModelDeployment/gamma.yaml" not in repo.status_files()


def test_corrupted_file_is_invalid_and_nothing_of_it_is_pruned(
    reconciler: Reconciler, instance: str, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    repo.write("specs/models/alpha.yaml", "apiVersion: [unclosed\n")
    repo.write(
        "specs/models/beta.yaml",
        model("beta", namespace).replace("storageUri", "storageURI"),
    )
    repo.write("specs/models/delta.yaml", model("delta", namespace))
    repo.commit("break two files, add one")

    report = reconciler.cycle()

    assert report.failed
    assert {d.path for d in report.diagnostics} == {
        "specs/models/alpha.yaml",
        "specs/models/beta.yaml",
    }
    assert actions(report)["delta"] == "created"
    assert report.changes.of(Action.DELETED) == []
    assert names(kube, namespace) == {"alpha", "beta", "gamma", "delta"}
    files = repo.status_files()
    for name in ("alpha", "beta"):
        doc = yaml.safe_load(files[f"status/{instance}/{namespace}/ModelDeployment/{name}.yaml"])
        assert doc["phase"] == "Invalid"
    beta = yaml.safe_load(files[f"status/{instance}/{namespace}/ModelDeployment/beta.yaml"])
    assert beta["errors"] == [
        "specs/models/beta.yaml:11:5: spec.model.storageURI: unknown field 'storageURI'; "
        "did you mean 'storageUri'?"
    ]


def test_duplicates_are_invalid_in_both_places_and_kept(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    repo.write("specs/models/alpha-copy.yaml", model("alpha", namespace, uri="s3://other"))
    repo.commit("copy alpha by mistake")

    report = reconciler.cycle()

    messages = sorted(str(d) for d in report.diagnostics)
    assert len(messages) == 2
    assert "is also declared at specs/models/alpha" in messages[0]
    assert report.changes.of(Action.DELETED) == []
    live = kube.get(*ISVC, "alpha", namespace=namespace)
    assert live is not None
    assert live["spec"]["predictor"]["model"]["storageUri"] == "s3://models/m/v1"


def test_drift_is_reverted_and_reported(
    reconciler: Reconciler, instance: str, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    # What `kubectl edit` does: an update by another field manager.
    # A merge patch carries no resourceVersion, so the dev controller writing
    # status meanwhile cannot turn the edit into a 409.
    kube.request(
        "PATCH",
        f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/alpha",
        query={"fieldManager": "kubectl-edit"},
        body={"spec": {"predictor": {"model": {"storageUri": "s3://hand/edited"}}}},
        content_type="application/merge-patch+json",
    )

    report = reconciler.cycle()

    (change,) = [c for c in report.changes.changes if c.key.name == "alpha"]
    assert (change.action, change.drift) == (Action.CONFIGURED, True)
    reverted = kube.get(*ISVC, "alpha", namespace=namespace)
    assert reverted is not None
    assert reverted["spec"]["predictor"]["model"]["storageUri"] == "s3://models/m/v1"
    doc = yaml.safe_load(
        repo.status_files()[f"status/{instance}/{namespace}/ModelDeployment/alpha.yaml"]
    )
    assert "drift reverted" in doc["message"]


def test_mass_deletion_is_refused(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    for name in ("alpha", "beta", "gamma"):
        repo.delete(f"specs/models/{name}.yaml")
    repo.commit("oops: removed almost everything")

    report = reconciler.cycle()

    assert report.changes.prune_refused is not None
    assert report.failed
    assert names(kube, namespace) == {"alpha", "beta", "gamma"}


def test_other_instances_objects_are_never_pruned(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    kube.apply(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": "foreign",
                "namespace": namespace,
                "labels": {
                    LABEL_INSTANCE: "someone-else",
                    "app.kubernetes.io/managed-by": "gitsync",
                },
            },
            "spec": {
                "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://x"}}
            },
        },
        field_manager="gitsync",
    )
    reconciler.cycle()
    assert "foreign" in names(kube, namespace)


def test_watching_skips_quiet_cycles_and_wakes_on_drift(
    repo: SpecRepo, control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    git = GitSource(repo.url, branch="main", cache_dir=tmp_path / "cache")
    reconciler = Reconciler(
        git=git,
        kube=KubeClient.from_kubeconfig(control_plane.kubeconfig),
        options=SyncOptions(path="specs", instance=f"w-{uuid.uuid4().hex[:6]}"),
        watch=True,
    )
    try:
        reconciler.cycle()
        # Controllers report status for a few seconds; then nothing moves.
        deadline = time.monotonic() + 30
        while not (report := reconciler.cycle()).skipped:
            assert time.monotonic() < deadline, "cycles never became quiet"
            time.sleep(0.3)
        assert report.changes.changes == ()

        kube.request(
            "PATCH",
            f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/beta",
            query={"fieldManager": "kubectl-edit"},
            # A field gitsync renders (one it leaves to KServe, such as minReplicas, is
            # not gitsync's to revert).
            body={"spec": {"predictor": {"model": {"resources": {"requests": {"cpu": "7"}}}}}},
            content_type="application/merge-patch+json",
        )
        deadline = time.monotonic() + 10
        while (report := reconciler.cycle()).skipped:
            assert time.monotonic() < deadline, "the edit was never noticed"
            time.sleep(0.1)

        assert [(c.key.name, c.drift) for c in report.changes.writes] == [("beta", True)]
        reverted = kube.get(*ISVC, "beta", namespace=namespace)
        assert reverted is not None
        assert reverted["spec"]["predictor"]["model"]["resources"]["requests"]["cpu"] == "100m"
    finally:
        reconciler.close()
        git.close()


def test_a_spec_denied_by_policy_is_not_applied_and_the_rest_go_on(
    reconciler: Reconciler, instance: str, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    unowned = yaml.safe_load(model("delta", namespace))
    del unowned["metadata"]["labels"]
    repo.write("specs/models/delta.yaml", yaml.safe_dump(unowned))
    repo.write("specs/models/beta.yaml", model("beta", namespace, uri="s3://models/m/v2"))
    repo.commit("delta without a team; beta v2")

    report = reconciler.cycle()

    assert [str(d).split(": ", 1)[1] for d in report.diagnostics] == [
        "denied by policy require-team-label: metadata.labels.team is required: "
        "name the team that owns this object"
    ]
    assert actions(report)["beta"] == "configured"
    assert "delta" not in actions(report)
    assert "delta" not in names(kube, namespace)
    doc = yaml.safe_load(
        repo.status_files()[f"status/{instance}/{namespace}/ModelDeployment/delta.yaml"]
    )
    assert doc["phase"] == "Invalid"
    assert "require-team-label" in doc["errors"][0]


def test_each_configuration_has_its_own_caches_and_a_cycle_compacts_them(
    repo: SpecRepo, kube: KubeClient, instance: str, tmp_path: Path
) -> None:
    cache = tmp_path / "gitsync-cache"

    def cycle(name: str) -> None:
        git = GitSource(repo.url, branch="main", cache_dir=cache / "git")
        options = SyncOptions(path="specs", instance=name)
        reconciler = Reconciler(git=git, kube=kube, options=options, cache_dir=cache)
        try:
            assert not reconciler.cycle().failed
        finally:
            reconciler.close()
            git.close()

    cycle(instance)
    (scope,) = (cache / "scopes").iterdir()
    folders = [scope / name for name in ("eval", "specs", "status")]
    used = {folder: (folder / ENTRIES).read_bytes() for folder in folders}
    assert all(used.values())
    # Spec versions gone by: 1.2 MB of entries no later cycle asks for, in each folder.
    for folder in folders:
        stale = DiskCache(folder)
        for index in range(3000):
            stale.put(hashlib.sha256(f"old {index}".encode()).hexdigest(), {"pad": "x" * 400})
    cycle(instance)
    for folder in folders:
        kept = (folder / ENTRIES).read_bytes()
        assert len(kept) < 2 * len(used[folder]) + 4096  # what the cycle used, and no more
        assert set(used[folder].split(b"\n")) <= set(kept.split(b"\n"))

    cycle(f"{instance}-other")  # another instance: a folder of its own, not this one's
    assert len(list((cache / "scopes").iterdir())) == 2
