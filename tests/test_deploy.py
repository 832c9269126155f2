"""deploy/ is what running gitsync in a cluster takes: its RBAC is enough, and no more."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.errors import ApiForbiddenError
from gitsync.reconciler import Reconciler, SyncOptions
from gitsync.rollout import KSERVE_DISALLOWED_ANNOTATIONS

from .specrepo import SpecRepo

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "repo"
SERVICE_ACCOUNT_USER = "system:serviceaccount:gitsync-system:gitsync"


def _documents(name: str) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


@pytest.fixture(scope="module")
def as_gitsync(control_plane: ControlPlane) -> KubeClient:
    admin = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    for document in _documents("rbac.yaml"):
        admin.apply(document, field_manager="test")
    admin.close()
    kubeconfig = control_plane.client_kubeconfig(
        user=SERVICE_ACCOUNT_USER, groups=("system:serviceaccounts",)
    )
    return KubeClient.from_kubeconfig(kubeconfig)


def test_the_deployment_is_accepted_by_the_api_server(
    kube: KubeClient, as_gitsync: KubeClient
) -> None:
    for document in _documents("gitsync.yaml"):
        accepted = kube.apply(document, field_manager="test", dry_run=True)
        assert accepted["kind"] == document["kind"]


def test_a_whole_cycle_runs_as_the_service_account(as_gitsync: KubeClient, tmp_path: Path) -> None:
    repo = SpecRepo(tmp_path / "repo")
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        text = re.sub(r"\bml-(serving|training|nlp)\b", r"deploy-ml-\1", path.read_text())
        repo.write(str(path.relative_to(EXAMPLES)), text)
    repo.commit("examples in their own namespaces")
    git = GitSource(repo.url, branch="main", cache_dir=tmp_path / "cache")
    reconciler = Reconciler(git=git, kube=as_gitsync, options=SyncOptions(instance="deploy"))

    report = reconciler.cycle()

    assert report.changes.failures == [], [c.error for c in report.changes.failures]
    assert len(report.changes.writes) == 8  # 3 models, 3 runs, 2 plain objects
    git.close()


def test_the_service_account_cannot_touch_what_it_does_not_manage(as_gitsync: KubeClient) -> None:
    with pytest.raises(ApiForbiddenError):
        as_gitsync.request("GET", "/api/v1/namespaces/default/secrets")
    with pytest.raises(ApiForbiddenError):
        as_gitsync.delete("v1", "Namespace", "default")


def test_kserve_is_told_to_keep_gitsync_bookkeeping_out_of_revisions() -> None:
    (config_map,) = _documents("kserve-config-patch.yaml")
    data = config_map["data"]
    assert isinstance(data, dict)
    listed = set(json.loads(data["inferenceService"])["serviceAnnotationDisallowedList"])
    assert listed >= KSERVE_DISALLOWED_ANNOTATIONS
