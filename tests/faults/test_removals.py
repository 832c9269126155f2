"""Only what Git really removed is pruned; an object the API server refuses fails
alone. Against the real API server, through whole cycles."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
import yaml

from gitsync.clients.kube import KubeClient
from gitsync.diff import Action
from gitsync.reconciler import Reconciler
from gitsync.result import Outcome

from ..specrepo import SpecRepo
from ..test_reconcile import actions, model, names


def configmaps(namespace: str, *names: str) -> str:
    return "---\n".join(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
        f"data: {{owner: {name}}}\n"
        for name in names
    )


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> SpecRepo:
    spec_repo = SpecRepo(tmp_path / "repo")
    spec_repo.write("specs/gitsync.yaml", f"defaults: {{namespace: {namespace}}}\n")
    for name in ("alpha", "beta", "gamma", "delta"):
        spec_repo.write(f"specs/models/{name}.yaml", model(name, namespace))
    spec_repo.write("specs/platform/config.yaml", configmaps(namespace, "one", "two"))
    spec_repo.commit("initial specs")
    return spec_repo


def configmap_names(kube: KubeClient, namespace: str) -> set[str]:
    items = kube.list("v1", "ConfigMap", namespace=namespace)["items"]
    return {i["metadata"]["name"] for i in items} - {"kube-root-ca.crt"}


def status_phase(repo: SpecRepo, namespace: str, name: str) -> str:
    """The phase in the spec's document, in whichever instance's folder it is."""
    (doc,) = (
        yaml.safe_load(content)
        for path, content in repo.status_files().items()
        if path.endswith(f"/{namespace}/ModelDeployment/{name}.yaml")
    )
    return str(doc["phase"])


def test_a_file_turned_into_something_else_is_kept_and_invalid(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    work = repo.work / "specs/models"
    (work / "alpha.yaml").unlink()
    os.symlink("beta.yaml", work / "alpha.yaml")  # a symlink where a spec was
    (work / "beta.yaml").write_text(
        model("beta", namespace) + "metadata:\n  name: renamed\n"  # a duplicate key
    )
    (work / "gamma.yaml").unlink()
    (work / "gamma.yaml").mkdir()  # a folder named like the spec
    (work / "gamma.yaml" / "notes.txt").write_text("moved\n")
    (work / "delta.yaml").write_text(
        model("delta", namespace).replace("gitsync.io/v1alpha1", "gitsync.io/v1alpha2")
    )
    repo.commit("break every file in a different way")

    report = reconciler.cycle()

    assert report.changes.of(Action.DELETED) == []
    assert names(kube, namespace) == {"alpha", "beta", "gamma", "delta"}
    problems = {d.path: d.message for d in report.diagnostics}
    assert "symbolic link" in problems["specs/models/alpha.yaml"]
    assert "duplicate key 'metadata'" in problems["specs/models/beta.yaml"]
    assert "folder" in problems["specs/models/gamma.yaml"]
    assert "gitsync.io/v1alpha2" in problems["specs/models/delta.yaml"]
    for name in ("alpha", "beta", "gamma", "delta"):
        assert status_phase(repo, namespace, name) == "Invalid"


def test_a_manifest_that_fails_to_apply_keeps_the_rest_of_its_file(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    # "two" now names another kind: its apply fails, and "one" (same file) is
    # declared no more -- but the file did not go away.
    repo.write(
        "specs/platform/config.yaml",
        configmaps(namespace, "two").replace("apiVersion: v1", "apiVersion: example.com/v9"),
    )
    repo.commit("change an apiVersion")

    report = reconciler.cycle()

    (failed,) = report.changes.failures
    assert (failed.key.group, failed.key.name) == ("example.com", "two")
    kept = {c.key.name: c.reason for c in report.changes.of(Action.SKIPPED)}
    assert kept.keys() == {"one", "two"}  # the ConfigMap "two" is no longer declared
    assert all("failed to apply" in reason for reason in kept.values())
    assert configmap_names(kube, namespace) == {"one", "two"}


def test_what_git_really_removed_is_pruned(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    reconciler.cycle()
    repo.delete("specs/models/alpha.yaml")  # a file deleted
    repo.write("specs/platform/config.yaml", configmaps(namespace, "one"))  # a document
    (repo.work / "specs/models/beta.yaml").rename(repo.work / "specs/models/b.yaml")  # rename
    repo.commit("remove alpha and a document; rename beta")

    report = reconciler.cycle()

    deleted = {c.key.name for c in report.changes.of(Action.DELETED)}
    assert deleted == {"alpha", "two"}
    assert names(kube, namespace) == {"beta", "gamma", "delta"}
    assert configmap_names(kube, namespace) == {"one"}


def test_an_object_too_big_for_the_api_server_fails_alone(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    """A 900 KB string shared by aliases four times: a file within the limits whose
    ConfigMap (3.6 MB) is over the API server's 3 MB request limit (HTTP 413)."""
    reconciler.cycle()
    big = "x" * 900_000
    repo.write(
        "specs/platform/big.yaml",
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big, namespace: {namespace}}}\n"
        f"data:\n  a: &big {big}\n  b: *big\n  c: *big\n  d: *big\n",
    )
    repo.write("specs/models/epsilon.yaml", model("epsilon", namespace))
    repo.commit("a ConfigMap too big, and a new model")

    report = reconciler.cycle()

    assert report.error is None
    assert "HTTP 413" in actions(report)["big"]
    assert actions(report)["epsilon"] == "created"
    assert report.result.outcome is Outcome.SUCCEEDED  # waits for a commit, no retry
    assert report.status_commit is not None
    assert status_phase(repo, namespace, "epsilon") != "Invalid"
    assert "big" not in configmap_names(kube, namespace)


def test_an_object_admission_denies_fails_alone(
    reconciler: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    """A real admission denial: a ValidatingAdmissionPolicy (built into the API server,
    so no webhook server is needed) that refuses ConfigMaps labelled forbidden."""
    policy = f"deny-forbidden-{uuid.uuid4().hex[:6]}"
    kube.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["configmaps"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "!has(object.metadata.labels) || "
                        "!('forbidden' in object.metadata.labels)",
                        "message": "forbidden ConfigMaps are not admitted",
                    }
                ],
            },
        },
        field_manager="test",
    )
    kube.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
        field_manager="test",
    )
    try:
        reconciler.cycle()
        repo.write(
            "specs/platform/denied.yaml",
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: denied\n  namespace: "
            f"{namespace}\n  labels: {{forbidden: 'yes'}}\ndata: {{a: b}}\n",
        )
        repo.write("specs/models/zeta.yaml", model("zeta", namespace))
        repo.commit("a ConfigMap admission denies, and a new model")
        # The policy is enforced once the API server has compiled it: a few seconds.
        deadline = time.monotonic() + 30
        while True:
            report = reconciler.cycle()
            if "denied" in actions(report) and "not admitted" in actions(report)["denied"]:
                break
            assert time.monotonic() < deadline, actions(report)
            kube.delete("v1", "ConfigMap", "denied", namespace=namespace)
            time.sleep(0.5)

        assert report.error is None
        assert "zeta" in names(kube, namespace)
        assert "denied" not in configmap_names(kube, namespace)
        assert {"one", "two"} <= configmap_names(kube, namespace)
        assert status_phase(repo, namespace, "zeta") != "Invalid"
        print(f"\nadmission denial: {actions(report)['denied']}")
    finally:
        kube.delete("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", policy)
        kube.delete("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", policy)
