"""deploy/ is what running gitsync in a cluster takes: its RBAC is enough, and no more."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.errors import ApiForbiddenError
from gitsync.reconciler import Reconciler, SyncOptions
from gitsync.rollout import KSERVE_DISALLOWED_ANNOTATIONS
from gitsync.status_document import Phase

from .specrepo import SpecRepo
from .test_reconcile import model

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "repo"
SERVICE_ACCOUNT_USER = "system:serviceaccount:gitsync-system:gitsync"
ISVC = ("serving.kserve.io/v1beta1", "InferenceService")


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


def _by_kind(name: str) -> dict[str, dict[str, Any]]:
    return {str(d["kind"]): d for d in _documents(name)}


def test_two_replicas_elect_a_leader_and_keep_one_through_a_drain() -> None:
    manifests = _by_kind("gitsync.yaml")
    deployment, service, budget = (
        manifests["Deployment"],
        manifests["Service"],
        manifests["PodDisruptionBudget"],
    )
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert "--leader-elect" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GITSYNC_LISTEN"] == ":8080"
    # The leader's address for standbys to hand hooks to: the pod's own IP.
    assert env["GITSYNC_ADVERTISE_URL"] == "http://$(POD_IP):8080"
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The Lease the replicas share is the one rbac.yaml lets them renew.
    instance = next(e["value"] for e in container["env"] if e["name"] == "GITSYNC_INSTANCE")
    (role,) = [d for d in _documents("rbac.yaml") if d["kind"] == "Role"]
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert named[0]["resourceNames"] == [f"gitsync-{instance}"]
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == labels
    # The ServiceMonitor (Prometheus Operator CRD, not installed here) scrapes that port.
    (monitor,) = _documents("servicemonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"] == service["metadata"]["labels"]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_a_whole_cycle_runs_as_the_service_account(as_gitsync: KubeClient, tmp_path: Path) -> None:
    repo = SpecRepo(tmp_path / "repo")
    texts = {
        str(path.relative_to(EXAMPLES)): re.sub(
            r"\bml-(serving|training|nlp|staging)\b", r"deploy-ml-\1", path.read_text()
        )
        for path in sorted(EXAMPLES.rglob("*.yaml"))
    }
    for path, text in texts.items():
        repo.write(path, text)
    repo.commit("examples in their own namespaces")
    git = GitSource(repo.url, branch="main", cache_dir=tmp_path / "cache")
    reconciler = Reconciler(git=git, kube=as_gitsync, options=SyncOptions(instance="deploy"))

    report = reconciler.cycle()

    assert report.changes.failures == [], [c.error for c in report.changes.failures]
    declared = [
        doc
        for text in texts.values()
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict) and "metadata" in doc and doc.get("kind") != "Policy"
    ]
    # The pipeline's models serve what training produces: in this first cycle no run
    # has Succeeded, so they write nothing and say what they wait for.
    sources = {"fromTrainingRun", "fromModelDeployment"}
    fed = {
        (doc["metadata"]["namespace"], doc["metadata"]["name"]): source
        for doc in declared
        if doc["kind"] == "ModelDeployment"
        for source in sources & set(doc["spec"].get("model") or {})
    }
    pending = {
        (s.namespace, s.name): s.message
        for s in report.statuses
        if s.kind == "ModelDeployment" and s.phase is Phase.PENDING
    }
    assert set(pending) == set(fed) and len(fed) == 2, pending
    waits = {"fromTrainingRun": "waiting for a Succeeded run", "fromModelDeployment": "waiting to"}
    for key, source in fed.items():
        assert pending[key].startswith(waits[source]), pending[key]
    # Every other model, run and plain object of the examples, written with gitsync's RBAC.
    assert len(report.changes.writes) == len(declared) - len(fed) >= 12
    git.close()


def test_the_service_account_cannot_touch_what_it_does_not_manage(as_gitsync: KubeClient) -> None:
    with pytest.raises(ApiForbiddenError):
        as_gitsync.request("GET", "/api/v1/namespaces/default/secrets")
    with pytest.raises(ApiForbiddenError):
        as_gitsync.delete("v1", "Namespace", "default")


@pytest.fixture(scope="module")
def pod_secrets(
    control_plane: ControlPlane, as_gitsync: KubeClient, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """What a pod of the ServiceAccount finds in /var/run/secrets/kubernetes.io/
    serviceaccount: a bound token from the TokenRequest API, the cluster CA and the
    namespace."""
    admin = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    issued = admin.request(
        "POST",
        "/api/v1/namespaces/gitsync-system/serviceaccounts/gitsync/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    admin.close()
    folder = tmp_path_factory.mktemp("serviceaccount")
    (folder / "token").write_text(issued["status"]["token"])
    (folder / "ca.crt").write_bytes((control_plane.folder / "pki" / "ca.crt").read_bytes())
    (folder / "namespace").write_text("gitsync-system")
    return folder


def _pod_environment(control_plane: ControlPlane, home: Path) -> dict[str, str]:
    """Only what the kubelet sets: the API server's Service address, no kubeconfig."""
    address = urlsplit(control_plane.server)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "KUBERNETES_SERVICE_HOST": str(address.hostname),
        "KUBERNETES_SERVICE_PORT": str(address.port),
    }


def test_in_a_pod_gitsync_runs_on_its_service_account_token_and_rbac_is_enough(
    control_plane: ControlPlane,
    kube: KubeClient,
    pod_secrets: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    namespace = "deploy-in-pod"
    kube.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        field_manager="test",
    )
    repo = SpecRepo(tmp_path / "repo")
    repo.write("m.yaml", model("m", namespace, "s3://models/m/v1"))
    repo.commit("m v1")
    environment = _pod_environment(control_plane, tmp_path)
    argv = [
        sys.executable, "-m", "gitsync", "run", "--repo", repo.url, "--instance", "production",
        "--cache-dir", str(tmp_path / "cache"), "--serviceaccount-dir", str(pod_secrets),
        "--interval", "0.5", "--log-format", "json", "--leader-elect",
    ]  # fmt: skip
    log = tmp_path / "gitsync.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(argv, env=environment, stdout=subprocess.DEVNULL, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while not _reported(repo):
            assert daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert kube.get(*ISVC, "m", namespace=namespace) is not None
        lease = kube.get(
            "coordination.k8s.io/v1", "Lease", "gitsync-production", namespace="gitsync-system"
        )
        assert lease is not None
        assert lease["spec"]["holderIdentity"].startswith(socket.gethostname() + "_")
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=30)
    assert code == 0, log.read_text()
    assert "lease released" in log.read_text()  # update of the Lease allowed too
    released = kube.get(
        "coordination.k8s.io/v1", "Lease", "gitsync-production", namespace="gitsync-system"
    )
    assert released is not None
    assert released["spec"]["holderIdentity"] == ""

    # The same token, in this process: what it may do beyond a cycle, and what not.
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    as_pod = KubeClient.connect(serviceaccount_dir=pod_secrets)
    try:
        event = as_pod.create(
            {
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": "m.1879a2b3c4d5e6f7", "namespace": namespace},
                "eventTime": "2026-12-01T12:00:00.000000Z",
                "reportingController": "gitsync.io/gitsync",
                "reportingInstance": "gitsync-0",
                "action": "Apply",
                "reason": "Applied",
                "type": "Normal",
                "regarding": {"kind": "ModelDeployment", "namespace": namespace, "name": "m"},
            }
        )
        assert event["metadata"]["name"].startswith("m.")
        patched = as_pod.request(  # an event series is counted by patching it
            "PATCH",
            f"/apis/events.k8s.io/v1/namespaces/{namespace}/events/{event['metadata']['name']}",
            body={"series": {"count": 2, "lastObservedTime": "2026-12-01T12:00:01.000000Z"}},
            content_type="application/merge-patch+json",
        )
        assert patched["series"]["count"] == 2
        denied = [
            lambda: as_pod.delete(
                "coordination.k8s.io/v1", "Lease", "gitsync-production", namespace="gitsync-system"
            ),
            lambda: as_pod.get(
                "coordination.k8s.io/v1", "Lease", "kube-scheduler", namespace="gitsync-system"
            ),
            lambda: as_pod.request("GET", "/api/v1/namespaces/gitsync-system/secrets"),
            lambda: as_pod.request("GET", "/apis/events.k8s.io/v1/namespaces/default/events"),
        ]
        for attempt in denied:
            with pytest.raises(ApiForbiddenError):
                attempt()
    finally:
        as_pod.close()


def _reported(repo: SpecRepo) -> bool:
    """The remote has a status commit."""
    found = subprocess.run(
        ["git", "log", "--format=%s", "gitsync/status"],
        cwd=repo.remote, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return found.returncode == 0 and "[source" in found.stdout


def test_kserve_is_told_to_keep_gitsync_bookkeeping_out_of_revisions() -> None:
    (config_map,) = _documents("kserve-config-patch.yaml")
    data = config_map["data"]
    assert isinstance(data, dict)
    listed = set(json.loads(data["inferenceService"])["serviceAnnotationDisallowedList"])
    assert listed >= KSERVE_DISALLOWED_ANNOTATIONS
