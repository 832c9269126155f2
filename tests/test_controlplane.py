"""The local control plane is a real Kubernetes API server, not a mock of one."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gitsync.clients.kube import KubeClient, WatchEvent
from gitsync.dev import binaries, controlplane
from gitsync.dev.controlplane import Component, ControlPlane
from gitsync.errors import ApiConflictError, ApiForbiddenError, ApiInvalidError, ConfigurationError

from .conftest import crds_root


def isvc(namespace: str, name: str = "m", **predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/m/v1"},
                **predictor,
            }
        },
    }


def test_version_is_the_release_built(control_plane: ControlPlane) -> None:
    assert control_plane.version == binaries.pinned_release().kubernetes


def test_crds_are_installed_and_established(kube: KubeClient) -> None:
    names = {
        crd["metadata"]["name"]
        for crd in kube.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")["items"]
    }
    assert {
        "inferenceservices.serving.kserve.io",
        "tfjobs.kubeflow.org",
        "pytorchjobs.kubeflow.org",
    } <= names


def test_openapi_schema_rejects_wrongly_typed_field(kube: KubeClient, namespace: str) -> None:
    bad = isvc(namespace, minReplicas="two")
    with pytest.raises(ApiInvalidError, match="minReplicas"):
        kube.apply(bad, field_manager="test")
    assert (
        kube.get("serving.kserve.io/v1beta1", "InferenceService", "m", namespace=namespace) is None
    )


def test_server_side_apply_conflicts_between_managers_unless_forced(
    kube: KubeClient, namespace: str
) -> None:
    kube.apply(isvc(namespace, minReplicas=1), field_manager="alice")
    with pytest.raises(ApiConflictError, match="minReplicas"):
        kube.apply(isvc(namespace, minReplicas=3), field_manager="bob")

    forced = kube.apply(isvc(namespace, minReplicas=3), field_manager="bob", force=True)

    assert forced["spec"]["predictor"]["minReplicas"] == 3
    managers = {entry["manager"] for entry in forced["metadata"]["managedFields"]}
    assert "bob" in managers


def test_dry_run_validates_without_persisting(kube: KubeClient, namespace: str) -> None:
    preview = kube.apply(isvc(namespace), field_manager="test", dry_run=True)

    assert preview["metadata"]["name"] == "m"
    assert (
        kube.get("serving.kserve.io/v1beta1", "InferenceService", "m", namespace=namespace) is None
    )


def test_rbac_denies_an_identity_without_permissions(
    control_plane: ControlPlane, namespace: str
) -> None:
    kubeconfig = control_plane.client_kubeconfig(user="mallory", groups=("data-scientists",))
    stranger = KubeClient.from_kubeconfig(kubeconfig)
    try:
        with pytest.raises(ApiForbiddenError, match="mallory"):
            stranger.request("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    finally:
        stranger.close()


def test_rbac_allows_what_a_role_grants(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    # An explicit Role: the aggregated ClusterRoles (view, edit) are filled in by
    # kube-controller-manager, which the local control plane does not run.
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "configmap-reader", "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
        field_manager="test",
    )
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "carol-reads", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "configmap-reader",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}
            ],
        },
        field_manager="test",
    )
    carol = KubeClient.from_kubeconfig(control_plane.client_kubeconfig(user="carol"))
    try:
        listing = carol.request("GET", f"/api/v1/namespaces/{namespace}/configmaps")
        assert listing["kind"] == "ConfigMapList"
        with pytest.raises(ApiForbiddenError, match="carol"):
            carol.request("GET", "/api/v1/namespaces/default/configmaps")
    finally:
        carol.close()


def test_watch_sees_a_change(kube: KubeClient, namespace: str) -> None:
    start = kube.list("v1", "ConfigMap", namespace=namespace)["metadata"]["resourceVersion"]
    seen: list[WatchEvent] = []

    def watch() -> None:
        for event in kube.watch(
            "v1", "ConfigMap", namespace=namespace, resource_version=start, timeout_seconds=10
        ):
            seen.append(event)
            if event.type == "MODIFIED":
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "watched", "namespace": namespace},
        "data": {"model": "v1"},
    }
    kube.apply(config_map, field_manager="test")
    kube.apply({**config_map, "data": {"model": "v2"}}, field_manager="test")
    watcher.join(timeout=15)

    changes = [(e.type, e.object["data"]["model"]) for e in seen if e.type != "BOOKMARK"]
    assert changes == [("ADDED", "v1"), ("MODIFIED", "v2")]


def test_service_account_issuer_is_configured(
    control_plane: ControlPlane, kube: KubeClient
) -> None:
    discovery = kube.request("GET", "/.well-known/openid-configuration")
    assert discovery["issuer"] == "https://kubernetes.default.svc.cluster.local"


def test_binaries_from_environment_must_hold_both_programs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etcd").write_text("#!/bin/sh\n")
    (tmp_path / "etcd").chmod(0o755)
    monkeypatch.setenv("GITSYNC_KUBE_BIN", str(tmp_path))
    with pytest.raises(ConfigurationError, match="kube-apiserver"):
        binaries.ensure_binaries()


def test_pinned_release_matches_the_tools_module() -> None:
    release = binaries.pinned_release()
    assert release.kubernetes.startswith("v1.")
    assert release.etcd.startswith("v3.6.")
    go_mod = binaries.TOOLS_MODULE.joinpath("go.mod").read_text()
    minor_patch = release.kubernetes.removeprefix("v1.")
    # Every staging module must be replaced with the matching v0.<minor>.<patch>.
    assert f"k8s.io/apimachinery => k8s.io/apimachinery v0.{minor_patch}" in go_mod


def _gitsync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitsync", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_cli_up_is_idempotent_and_down_leaves_nothing_running(tmp_path: Path) -> None:
    folder = tmp_path / "plane"
    crds = str(crds_root() / "training-operator-v1")

    first = _gitsync("dev", "up", "--dir", str(folder), "--crds", crds)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"export KUBECONFIG={folder.resolve() / 'kubeconfig'}"
    state = json.loads((folder / "state.json").read_text())
    pids = {name: record["pid"] for name, record in state.items()}
    # Prometheus runs only when asked for (--prometheus).
    assert set(pids) == {c.value for c in Component if c is not Component.PROMETHEUS}

    again = _gitsync("dev", "up", "--dir", str(folder), "--crds", crds)
    assert again.returncode == 0, again.stderr
    state_again = json.loads((folder / "state.json").read_text())
    assert {name: record["pid"] for name, record in state_again.items()} == pids

    status = _gitsync("dev", "status", "--dir", str(folder))
    assert status.returncode == 0
    assert status.stdout.count("running") == 3

    down = _gitsync("dev", "down", "--dir", str(folder))
    assert down.returncode == 0
    assert all(not row.running for row in controlplane.status(folder))
    for pid in pids.values():
        assert not _alive(pid), f"process {pid} survived dev down"
    assert _gitsync("dev", "status", "--dir", str(folder)).returncode == 3


def test_up_after_the_api_server_was_killed_keeps_its_port(tmp_path: Path) -> None:
    folder = tmp_path / "plane"
    first = _gitsync("dev", "up", "--dir", str(folder), "--no-controllers")
    assert first.returncode == 0, first.stderr
    kubeconfig = folder / "kubeconfig"
    old_kubeconfig = kubeconfig.read_bytes()
    record = json.loads((folder / "state.json").read_text())[Component.APISERVER.value]
    kube = KubeClient.from_kubeconfig(kubeconfig)
    try:
        # An open connection, so the killed server's end of it lingers in TIME_WAIT.
        assert kube.list("v1", "Namespace")["items"]
        os.kill(record["pid"], signal.SIGKILL)
        _wait_dead(record["pid"])
    finally:
        kube.close()

    again = _gitsync("dev", "up", "--dir", str(folder), "--no-controllers")
    try:
        assert again.returncode == 0, again.stderr
        restarted = json.loads((folder / "state.json").read_text())[Component.APISERVER.value]
        assert restarted["pid"] != record["pid"]
        assert restarted["endpoint"] == record["endpoint"]
        assert kubeconfig.read_bytes() == old_kubeconfig
        kube = KubeClient.from_kubeconfig(kubeconfig)
        try:
            assert kube.list("v1", "Namespace")["items"]
        finally:
            kube.close()
    finally:
        controlplane.down(folder)


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} survived SIGKILL"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def test_anonymous_requests_are_denied(control_plane: ControlPlane) -> None:
    context = ssl.create_default_context(cafile=str(control_plane.folder / "pki" / "ca.crt"))
    with pytest.raises(urllib.request.HTTPError) as caught:
        urllib.request.urlopen(f"{control_plane.server}/api/v1/namespaces", context=context)  # noqa: S310
    assert caught.value.code in {401, 403}
