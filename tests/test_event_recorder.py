"""Events on the real API server: a cycle that creates, reverts drift, steps a canary
and rolls it back tells each on the InferenceService; a quiet cycle tells nothing; a
repeat counts in its series; kubectl events finds them."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.binaries import ensure_kubectl
from gitsync.dev.controlplane import ControlPlane
from gitsync.event_recorder import REPORTING_CONTROLLER, EventRecorder
from gitsync.events import EventAction, EventIntent, Reason
from gitsync.reconciler import Reconciler, SyncOptions

from .specrepo import SpecRepo
from .test_canary import ISVC, canary_model, deploy_v1, drive, rollout_phase
from .test_reconcile import model


@pytest.fixture
def repo(tmp_path: Path) -> SpecRepo:
    return SpecRepo(tmp_path / "repo")


@pytest.fixture
def recorder(control_plane: ControlPlane) -> Iterator[EventRecorder]:
    kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    events = EventRecorder(kube, reporting_instance=f"test-{uuid.uuid4().hex[:6]}")
    yield events
    events.close()
    kube.close()


@pytest.fixture
def reconciler(
    repo: SpecRepo, control_plane: ControlPlane, tmp_path: Path, recorder: EventRecorder
) -> Iterator[Reconciler]:
    git = GitSource(repo.url, branch="main", cache_dir=tmp_path / "cache")
    kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    instance = f"events-{uuid.uuid4().hex[:6]}"
    made = Reconciler(git=git, kube=kube, options=SyncOptions(instance=instance), events=recorder)
    yield made
    made.close()
    kube.close()
    git.close()


def events_of(kube: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    """events.k8s.io/v1 Events regarding ``name``, by field selector, oldest first."""
    listed = kube.request(
        "GET",
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        query={"fieldSelector": f"regarding.name={name}"},
    )
    return sorted(listed["items"], key=lambda e: e["eventTime"])


def hand_edit(kube: KubeClient, namespace: str, uri: str) -> None:
    """What `kubectl edit` does, as a merge patch (no resourceVersion to conflict on)."""
    kube.request(
        "PATCH",
        f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/fraud",
        query={"fieldManager": "kubectl-edit"},
        body={"spec": {"predictor": {"model": {"storageUri": uri}}}},
        content_type="application/merge-patch+json",
    )


def test_a_cycle_tells_what_it_did_on_the_inference_service(
    repo: SpecRepo,
    reconciler: Reconciler,
    recorder: EventRecorder,
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
    control_plane: ControlPlane,
) -> None:
    deploy_v1(repo, reconciler, namespace, prometheus_url)
    for uri in ("s3://hand/edited", "s3://hand/again"):
        hand_edit(kube, namespace, uri)
        reverted = reconciler.cycle()
        assert [c.drift for c in reverted.changes.writes] == [True]
    assert recorder.flush(10)

    posted = recorder.posted
    quiet = reconciler.cycle()
    assert quiet.changes.writes == []
    assert recorder.flush(10)
    assert recorder.posted == posted  # a no-op cycle tells nothing

    bad = canary_model(
        namespace, prometheus_url, version=2, annotations={"dev.gitsync.io/error-rate": "0.3"}
    )
    repo.write("models/fraud.yaml", bad)
    repo.commit("fraud v2: a bad model")
    drive(reconciler, lambda report: rollout_phase(report) == "RolledBack", timeout=60)
    assert recorder.flush(10)
    assert recorder.failed == 0

    live = kube.get(*ISVC, "fraud", namespace=namespace)
    assert live is not None
    events = events_of(kube, namespace, "fraud")
    reasons = [e["reason"] for e in events]
    # A revision turning ready and the analysis rounds move no traffic: no Event.
    assert reasons == ["Created", "DriftReverted", "Configured", "RolloutStep", "RolledBack"]
    for event in events:
        assert event["regarding"]["uid"] == live["metadata"]["uid"]
        assert event["regarding"]["kind"] == "InferenceService"
        assert event["reportingController"] == REPORTING_CONTROLLER
        assert event["reportingInstance"].startswith("test-")
        assert event["eventTime"].endswith("Z")
        assert len(event["note"].encode()) <= 1024
    (drift,) = [e for e in events if e["reason"] == "DriftReverted"]
    assert drift["series"]["count"] == 2  # the repeat counted, not a new Event
    assert drift["type"] == "Warning"
    assert events[0]["note"].startswith("created from models/fraud.yaml@")
    assert events[3]["note"] == "canary started: 0% -> 20%"
    rolled = events[-1]
    assert rolled["type"] == "Warning"
    assert rolled["action"] == "Rollout"
    assert "canary rolled back at 20% (error-rate 0.3" in rolled["note"]

    # What `kubectl events --for` asks for: the core/v1 view by involvedObject.
    kubectl = ensure_kubectl()
    shown = subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "events",
            "-n",
            namespace,
            "--for",
            "inferenceservice.serving.kserve.io/fraud",
            "-o",
            "json",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    items = orjson.loads(shown.stdout)["items"]
    assert sorted(i["reason"] for i in items) == sorted(reasons)
    (counted,) = [i for i in items if i["reason"] == "DriftReverted"]
    assert counted["series"]["count"] == 2
    assert {i["involvedObject"]["uid"] for i in items} == {live["metadata"]["uid"]}


def test_an_event_that_cannot_be_posted_is_logged_and_dropped(
    recorder: EventRecorder, kube: KubeClient, namespace: str
) -> None:
    # A namespace that does not exist: the API server refuses the Event (404).
    gone = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u", "namespace": "nope"}
    fine = {**gone, "namespace": namespace}
    recorder.record(
        [
            EventIntent(gone, Reason.CREATED, EventAction.APPLY, "lost"),
            EventIntent(fine, Reason.CREATED, EventAction.APPLY, "kept"),
        ]
    )
    assert recorder.flush(10)
    assert (recorder.failed, recorder.posted) == (1, 1)
    assert [e["note"] for e in events_of(kube, namespace, "x")] == ["kept"]


def test_a_series_ends_after_six_minutes_and_a_deleted_event_starts_anew(
    kube: KubeClient, namespace: str
) -> None:
    now = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]
    recorder = EventRecorder(kube, reporting_instance="clocked", clock=lambda: now[0])
    regarding = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "y",
        "uid": "u",
        "namespace": namespace,
    }
    drift = EventIntent(regarding, Reason.DRIFT_REVERTED, EventAction.APPLY, "reverted")
    try:
        for minutes in (0, 1, 2):  # one series of three
            now[0] = datetime(2026, 12, 1, 12, minutes, tzinfo=UTC)
            recorder.record([drift])
        assert recorder.flush(10)
        (first,) = events_of(kube, namespace, "y")
        assert first["series"]["count"] == 3
        assert first["series"]["lastObservedTime"] == "2026-12-01T12:02:00.000000Z"

        now[0] = datetime(2026, 12, 1, 12, 9, tzinfo=UTC)  # seven minutes on: a new Event
        recorder.record([drift])
        assert recorder.flush(10)
        assert [e.get("series") for e in events_of(kube, namespace, "y")][1] is None

        name = events_of(kube, namespace, "y")[1]["metadata"]["name"]
        kube.request("DELETE", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events/{name}")
        now[0] = datetime(2026, 12, 1, 12, 10, tzinfo=UTC)  # its series is gone: created again
        recorder.record([drift])
        assert recorder.flush(10)
        assert len(events_of(kube, namespace, "y")) == 2
        assert recorder.failed == 0
    finally:
        recorder.close()


def test_a_refused_spec_is_told_once_on_the_object_it_deployed_before(
    repo: SpecRepo,
    reconciler: Reconciler,
    recorder: EventRecorder,
    kube: KubeClient,
    namespace: str,
) -> None:
    repo.write("models/fraud.yaml", model("fraud", namespace))
    repo.commit("fraud v1")
    assert not reconciler.cycle().failed
    broken = model("fraud", namespace).replace("storageUri", "storageURI")
    repo.write("models/fraud.yaml", broken)
    repo.commit("fraud: a typo")

    refused = reconciler.cycle()
    still = reconciler.cycle()  # still invalid: told once, not every cycle
    assert refused.diagnostics and still.diagnostics
    assert recorder.flush(10)

    live = kube.get(*ISVC, "fraud", namespace=namespace)
    assert live is not None  # a broken spec deletes nothing
    events = events_of(kube, namespace, "fraud")
    assert [e["reason"] for e in events] == ["Created", "InvalidSpec"]
    warning = events[1]
    assert warning["type"] == "Warning"
    assert warning["action"] == "Validate"
    assert warning["regarding"]["uid"] == live["metadata"]["uid"]
    assert "storageURI" in warning["note"]
    assert "series" not in warning


def test_events_beyond_the_queue_are_dropped_and_said_once(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    recorder = EventRecorder(kube, reporting_instance="small-queue", queue_size=2)
    regarding = {"apiVersion": "v1", "kind": "ConfigMap", "uid": "u", "namespace": namespace}
    intents = [
        EventIntent({**regarding, "name": f"c{i}"}, Reason.CREATED, EventAction.APPLY, "x")
        for i in range(200)
    ]
    try:
        with capture_logs() as logs:
            recorder.record(intents)
        assert recorder.flush(30)
    finally:
        recorder.close()
        kube.close()
    (said,) = [e for e in logs if e["event"] == "events dropped: too many queued"]
    # Recording 200 takes far less than posting 3, so most never fit in the queue.
    assert said["dropped"] == recorder.failed > 100
    assert recorder.posted + recorder.failed == 200
