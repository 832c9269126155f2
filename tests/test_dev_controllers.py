"""The dev controllers against the real control plane: kube-apiserver, etcd, real CRDs.

The session's control plane runs ``python -m gitsync.dev.controllers`` with its default
delays; the objects here shorten them with the per-object annotations, and every
expectation is polled with a deadline.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsync.clients.kube import KubeClient
from gitsync.dev.controllers import FIELD_MANAGER
from gitsync.dev.controlplane import ControlPlane
from tests.objects import FAST, ISVC_API, isvc

JOB_API = "kubeflow.org/v1"
FAST_JOB = {"dev.gitsync.io/start-delay": "0.3", "dev.gitsync.io/run-duration": "0.6"}
REPO_ROOT = Path(__file__).resolve().parents[1]

Obj = dict[str, Any]


# --- helpers --------------------------------------------------------------------------


def replica(container: str, count: int) -> Obj:
    return {
        "replicas": count,
        "restartPolicy": "Never",
        "template": {"spec": {"containers": [{"name": container, "image": "busybox:1.36"}]}},
    }


def eventually(
    kube: KubeClient,
    obj: Mapping[str, Any],
    check: Callable[[Obj], bool],
    *,
    what: str,
    timeout: float = 20.0,
) -> Obj:
    """Poll the live object until ``check`` holds; fail with its last status otherwise."""
    metadata = obj["metadata"]
    deadline = time.monotonic() + timeout
    live: Obj | None = None
    while time.monotonic() < deadline:
        live = kube.get(
            obj["apiVersion"], obj["kind"], metadata["name"], namespace=metadata["namespace"]
        )
        if live is not None:
            try:
                if check(live):
                    return live
            except (KeyError, IndexError, TypeError, StopIteration):
                pass  # the status is not there yet
        time.sleep(0.1)
    status = json.dumps((live or {}).get("status"), indent=2, sort_keys=True)
    pytest.fail(f"{obj['kind']} {metadata['name']}: not {what} after {timeout}s; status:\n{status}")


def condition(obj: Obj, kind: str) -> Obj:
    found: Obj = next(c for c in obj["status"]["conditions"] if c["type"] == kind)
    return found


def is_ready(obj: Obj) -> bool:
    return bool(condition(obj, "Ready")["status"] == "True")


def traffic(obj: Obj) -> list[tuple[str, int]]:
    return [
        (t["revisionName"], t["percent"])
        for t in obj["status"]["components"]["predictor"].get("traffic") or []
    ]


def has_condition(status: Mapping[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in status.get("conditions") or [])


def statuses_until(
    kube: KubeClient,
    created: Obj,
    done: Callable[[Obj], bool],
    *,
    timeout: int = 20,
) -> list[Obj]:
    """Every status the object goes through (by watch: no transition is missed)."""
    seen: list[Obj] = []
    name = created["metadata"]["name"]
    for event in kube.watch(
        created["apiVersion"],
        created["kind"],
        namespace=created["metadata"]["namespace"],
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=timeout,
    ):
        if event.type != "MODIFIED" or event.object["metadata"]["name"] != name:
            continue
        status = event.object.get("status") or {}
        seen.append(status)
        if done(status):
            return seen
    pytest.fail(f"{created['kind']} {name}: not done after {timeout}s; went through {seen}")


def writes_during(kube: KubeClient, obj: Obj, seconds: int) -> list[str]:
    """Watch events on ``obj`` for ``seconds`` (ended by the server, not a sleep)."""
    events = kube.watch(
        obj["apiVersion"],
        obj["kind"],
        namespace=obj["metadata"]["namespace"],
        resource_version=obj["metadata"]["resourceVersion"],
        timeout_seconds=seconds,
    )
    name = obj["metadata"]["name"]
    return [e.type for e in events if e.type != "BOOKMARK" and e.object["metadata"]["name"] == name]


# --- the process ------------------------------------------------------------------------


def _spawn(kubeconfig: Path, **env: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "gitsync.dev.controllers", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _wait_for_log(process: subprocess.Popen[str], text: str, timeout: float = 30.0) -> str:
    """The process's stderr up to the first line containing ``text``."""
    assert process.stderr is not None
    descriptor = process.stderr.fileno()
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline and text not in seen:
        ready, _, _ = select.select([descriptor], [], [], 0.1)
        if ready:
            chunk = os.read(descriptor, 65536)  # unbuffered: select sees all that is left
            if not chunk:
                break  # the process closed stderr: it exited
            seen += chunk.decode(errors="replace")
    if text not in seen:
        process.kill()
        pytest.fail(f"no log line with {text!r}; got:\n{seen}")
    return seen


def _stop_within(process: subprocess.Popen[str], signum: int, seconds: float) -> str:
    started = time.monotonic()
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=seconds + 5)
    finally:
        process.kill()
    elapsed = time.monotonic() - started
    assert process.returncode == 0, stderr
    assert elapsed < seconds, f"took {elapsed:.1f}s to stop:\n{stderr}"
    return stderr


@pytest.fixture
def unreachable_kubeconfig(tmp_path: Path) -> Path:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": f"https://127.0.0.1:{port}",
                    "insecure-skip-tls-verify": True,
                },
            }
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_process_stops_promptly_on_signal(control_plane: ControlPlane, signum: int) -> None:
    process = _spawn(control_plane.kubeconfig)
    _wait_for_log(process, "dev controllers running")
    stderr = _stop_within(process, signum, 2.5)
    assert "stopped" in stderr


def test_process_survives_an_unreachable_api_server(unreachable_kubeconfig: Path) -> None:
    process = _spawn(unreachable_kubeconfig)
    _wait_for_log(process, "watch interrupted")
    assert process.poll() is None, "exited while the API server was away"
    _stop_within(process, signal.SIGTERM, 2.5)


def test_malformed_delay_setting_is_a_usage_error(unreachable_kubeconfig: Path) -> None:
    process = _spawn(unreachable_kubeconfig, GITSYNC_DEV_ISVC_READY_DELAY="soon")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "not a number of seconds" in stderr


# --- InferenceService ---------------------------------------------------------------------


@pytest.fixture
def ready_isvc(kube: KubeClient, namespace: str) -> Obj:
    obj = isvc(namespace)
    kube.apply(obj, field_manager="test", force=True)
    return eventually(kube, obj, is_ready, what="Ready")


def test_isvc_becomes_ready_with_its_first_revision(ready_isvc: Obj, namespace: str) -> None:
    predictor = ready_isvc["status"]["components"]["predictor"]
    assert predictor["latestCreatedRevision"] == "m-predictor-00001"
    assert predictor["latestReadyRevision"] == "m-predictor-00001"
    assert predictor["latestRolledoutRevision"] == "m-predictor-00001"
    assert traffic(ready_isvc) == [("m-predictor-00001", 100)]
    assert predictor["url"] == f"http://m-predictor.{namespace}.example.com"
    assert ready_isvc["status"]["url"] == f"http://m.{namespace}.example.com"
    assert ready_isvc["status"]["address"]["url"] == f"http://m.{namespace}.svc.cluster.local"
    assert ready_isvc["status"]["observedGeneration"] == 1
    for kind in ("PredictorReady", "IngressReady", "RoutesReady", "LatestDeploymentReady"):
        assert condition(ready_isvc, kind)["status"] == "True"


def test_controller_writes_only_status_and_only_when_it_changes(
    kube: KubeClient, ready_isvc: Obj
) -> None:
    ours = [e for e in ready_isvc["metadata"]["managedFields"] if e["manager"] == FIELD_MANAGER]
    assert ours
    assert {entry.get("subresource") for entry in ours} == {"status"}
    assert ready_isvc["metadata"]["generation"] == 1
    assert writes_during(kube, ready_isvc, 2) == []


def test_canary_rollout_promotion_and_rollback(
    kube: KubeClient, ready_isvc: Obj, namespace: str
) -> None:
    kube.apply(isvc(namespace, storage="s3://b/m/v2", canary=10), field_manager="test", force=True)
    split = eventually(
        kube,
        ready_isvc,
        lambda o: (
            traffic(o) == [("m-predictor-00002", 10), ("m-predictor-00001", 90)] and is_ready(o)
        ),
        what="split 10/90",
    )
    predictor = split["status"]["components"]["predictor"]
    assert predictor["latestRolledoutRevision"] == "m-predictor-00001"
    assert [t.get("tag") for t in predictor["traffic"]] == [None, "prev"]
    assert [t["latestRevision"] for t in predictor["traffic"]] == [True, False]

    # Removing canaryTrafficPercent from the applied configuration promotes the canary.
    kube.apply(isvc(namespace, storage="s3://b/m/v2"), field_manager="test", force=True)
    promoted = eventually(
        kube, ready_isvc, lambda o: traffic(o) == [("m-predictor-00002", 100)], what="promoted"
    )
    predictor = promoted["status"]["components"]["predictor"]
    assert predictor["latestRolledoutRevision"] == "m-predictor-00002"
    assert predictor["previousRolledoutRevision"] == "m-predictor-00001"

    kube.apply(isvc(namespace, storage="s3://b/m/v2", canary=0), field_manager="test", force=True)
    rolled_back = eventually(
        kube,
        ready_isvc,
        lambda o: traffic(o) == [("m-predictor-00002", 0), ("m-predictor-00001", 100)],
        what="rolled back",
    )
    predictor = rolled_back["status"]["components"]["predictor"]
    assert predictor["latestRolledoutRevision"] == "m-predictor-00001"
    assert predictor["latestCreatedRevision"] == "m-predictor-00002"  # no new revision
    assert is_ready(rolled_back)


def test_fail_annotation_keeps_the_new_revision_from_ever_being_ready(
    kube: KubeClient, ready_isvc: Obj, namespace: str
) -> None:
    failing = isvc(namespace, storage="s3://b/m/v2", annotations={"dev.gitsync.io/fail": "true"})
    kube.apply(failing, field_manager="test", force=True)
    failed = eventually(
        kube,
        ready_isvc,
        lambda o: condition(o, "PredictorReady")["status"] == "False",
        what="PredictorReady=False",
    )
    assert condition(failed, "PredictorReady")["reason"] == "RevisionFailed"
    assert "m-predictor-00002" in condition(failed, "PredictorReady")["message"]
    assert condition(failed, "Ready")["status"] == "False"
    predictor = failed["status"]["components"]["predictor"]
    assert predictor["latestCreatedRevision"] == "m-predictor-00002"
    assert predictor["latestReadyRevision"] == "m-predictor-00001"
    assert traffic(failed) == [("m-predictor-00001", 100)]
    # Never means never: the status stays put well past the ready delay.
    assert writes_during(kube, failed, 2) == []

    kube.apply(isvc(namespace, storage="s3://b/m/v2"), field_manager="test", force=True)
    recovered = eventually(
        kube, ready_isvc, lambda o: traffic(o) == [("m-predictor-00002", 100)], what="recovered"
    )
    assert is_ready(recovered)


def test_standard_mode_is_simulated_and_model_mesh_left_alone(
    kube: KubeClient, namespace: str
) -> None:
    mode = "serving.kserve.io/deploymentMode"
    raw = isvc(namespace, name="raw", annotations={**FAST, mode: "RawDeployment"})
    kube.apply(raw, field_manager="test", force=True)
    mesh = isvc(namespace, name="mesh", annotations={mode: "ModelMesh"})
    kube.apply(mesh, field_manager="test", force=True)
    ready = eventually(kube, raw, is_ready, what="Ready")
    # The real API server took the Standard-mode status: no Knative revisions in it.
    assert ready["status"]["deploymentMode"] == "Standard"
    assert ready["status"]["components"]["predictor"] == {
        "url": f"http://raw-predictor-{namespace}.example.com"
    }
    assert condition(ready, "PredictorReady")["reason"] == "NewReplicaSetAvailable"
    live = kube.get(ISVC_API, "InferenceService", "mesh", namespace=namespace)
    assert live is not None
    assert not live.get("status")


# --- jobs -----------------------------------------------------------------------------------


def test_tfjob_runs_and_succeeds(kube: KubeClient, namespace: str) -> None:
    job = {
        "apiVersion": JOB_API,
        "kind": "TFJob",
        "metadata": {"name": "train", "namespace": namespace, "annotations": FAST_JOB},
        "spec": {
            "tfReplicaSpecs": {
                "Chief": replica("tensorflow", 1),
                "Worker": replica("tensorflow", 2),
            }
        },
    }
    created = kube.apply(job, field_manager="test", force=True)
    seen = statuses_until(kube, created, lambda s: has_condition(s, "Succeeded"))

    running = next(s for s in seen if has_condition(s, "Running") and len(s["conditions"]) == 2)
    assert running["replicaStatuses"] == {"Chief": {"active": 1}, "Worker": {"active": 2}}
    status = seen[-1]
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Created", "True", "TFJobCreated"),
        ("Running", "False", "TFJobRunning"),
        ("Succeeded", "True", "TFJobSucceeded"),
    ]
    assert status["replicaStatuses"] == {"Chief": {"succeeded": 1}, "Worker": {"succeeded": 2}}
    assert status["startTime"] <= status["completionTime"]
    done = kube.get(JOB_API, "TFJob", "train", namespace=namespace)
    assert done is not None
    # Finished means finished: nothing is written any more.
    assert writes_during(kube, done, 2) == []


def test_pytorchjob_fail_knob_fails_it_with_the_reason(kube: KubeClient, namespace: str) -> None:
    job = {
        "apiVersion": JOB_API,
        "kind": "PyTorchJob",
        "metadata": {
            "name": "train",
            "namespace": namespace,
            "annotations": {
                **FAST_JOB,
                "dev.gitsync.io/fail": "true",
                "dev.gitsync.io/fail-reason": "OOMKilled",
            },
        },
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": replica("pytorch", 1),
                "Worker": replica("pytorch", 2),
            }
        },
    }
    kube.apply(job, field_manager="test", force=True)
    failed = eventually(
        kube, job, lambda o: condition(o, "Failed")["status"] == "True", what="Failed"
    )
    failure = condition(failed, "Failed")
    assert failure["reason"] == "OOMKilled"
    assert (
        failure["message"]
        == f"PyTorchJob {namespace}/train has failed because 1 Master replica(s) failed."
    )
    assert condition(failed, "Running")["status"] == "False"
    assert failed["status"]["replicaStatuses"]["Master"]["failed"] == 1
    assert "completionTime" in failed["status"]


# --- TrainJob (Kubeflow Trainer v2) -------------------------------------------------------

TRAINJOB_API = "trainer.kubeflow.org/v1alpha1"


def test_trainjob_on_a_shipped_runtime_runs_to_complete_with_its_metrics(
    kube: KubeClient, namespace: str
) -> None:
    """On the real TrainJob CRD and the torch-distributed runtime Kubeflow ships (both
    installed by the control plane), the status passes the CRD's own validation."""
    job = {
        "apiVersion": TRAINJOB_API,
        "kind": "TrainJob",
        "metadata": {
            "name": "finetune",
            "namespace": namespace,
            "annotations": {
                **FAST_JOB,
                "dev.gitsync.io/progress": "50",
                "dev.gitsync.io/metrics": "accuracy=0.94,loss=0.11",
            },
        },
        "spec": {"runtimeRef": {"name": "torch-distributed"}, "trainer": {"numNodes": 2}},
    }
    created = kube.apply(job, field_manager="test", force=True)
    seen = statuses_until(
        kube, created, lambda s: any(c["type"] == "Complete" for c in s.get("conditions", []))
    )

    running = next(s for s in seen if (s.get("jobsStatus") or [{}])[0].get("active"))
    assert running["trainerStatus"]["progressPercentage"] == 50
    status = seen[-1]
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Complete", "True", "AllJobsCompleted")
    ]
    assert status["jobsStatus"] == [
        {"name": "node", "active": 0, "failed": 0, "ready": 0, "succeeded": 1, "suspended": 0}
    ]
    assert status["trainerStatus"]["progressPercentage"] == 100
    assert status["trainerStatus"]["metrics"] == [
        {"name": "accuracy", "value": "0.94"},
        {"name": "loss", "value": "0.11"},
    ]
    done = kube.get(TRAINJOB_API, "TrainJob", "finetune", namespace=namespace)
    assert done is not None
    assert writes_during(kube, done, 2) == []
