"""Health is read from the status fields the real controllers write."""

from __future__ import annotations

from typing import Any

import pytest

from gitsync.health import Health, TrafficTarget, assess


def isvc(*conditions: dict[str, str], created: str = "m-predictor-00002") -> dict[str, Any]:
    return {
        "kind": "InferenceService",
        "metadata": {"generation": 2},
        "status": {
            # KServe reports the Knative Service's generation here: never compared.
            "observedGeneration": 7,
            "url": "http://m.ml.example.com",
            "conditions": list(conditions),
            "components": {
                "predictor": {
                    "latestCreatedRevision": created,
                    "latestReadyRevision": "m-predictor-00002",
                    "traffic": [
                        {
                            "revisionName": "m-predictor-00002",
                            "percent": 10,
                            "latestRevision": True,
                        },
                        {"revisionName": "m-predictor-00001", "percent": 90, "tag": "prev"},
                    ],
                }
            },
        },
    }


def cond(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("obj", "health", "message"),
    [
        (isvc(cond("Ready", "True")), Health.HEALTHY, "serving m-predictor-00002"),
        (
            isvc(cond("Ready", "True"), created="m-predictor-00003"),
            Health.PROGRESSING,
            "waiting for revision m-predictor-00003 to become ready",
        ),
        (isvc(cond("Ready", "Unknown", "RevisionMissing")), Health.PROGRESSING, "RevisionMissing"),
        (
            isvc(
                cond("PredictorReady", "False", "RevisionFailed", "crash"), cond("Ready", "False")
            ),
            Health.DEGRADED,
            "RevisionFailed: crash",
        ),
        (isvc(), Health.PROGRESSING, "waiting for the predictor to become ready"),
    ],
)
def test_inference_service(obj: dict[str, Any], health: Health, message: str) -> None:
    report = assess(obj)
    assert (report.health, report.message) == (health, message)


def test_inference_service_traffic_and_url() -> None:
    report = assess(isvc(cond("Ready", "True")))
    assert report.url == "http://m.ml.example.com"
    assert report.traffic == (
        TrafficTarget("m-predictor-00002", 10, latest=True),
        TrafficTarget("m-predictor-00001", 90, latest=False, tag="prev"),
    )


def job(*conditions: dict[str, str]) -> dict[str, Any]:
    return {"kind": "TFJob", "status": {"conditions": list(conditions), "startTime": "t0"}}


@pytest.mark.parametrize(
    ("obj", "health"),
    [
        (job(), Health.PENDING),
        (job(cond("Created", "True")), Health.PENDING),
        (job(cond("Created", "True"), cond("Running", "True")), Health.RUNNING),
        (job(cond("Running", "False"), cond("Succeeded", "True")), Health.SUCCEEDED),
        (job(cond("Running", "False"), cond("Failed", "True", "OOMKilled")), Health.FAILED),
        (job(cond("Restarting", "True")), Health.RUNNING),
    ],
)
def test_training_job(obj: dict[str, Any], health: Health) -> None:
    assert assess(obj).health is health


def test_a_suspended_training_job_says_so() -> None:
    suspended = job(
        cond("Created", "True"), cond("Running", "False"), cond("Suspended", "True", "Suspended")
    )
    report = assess(suspended)
    assert report.health is Health.PENDING
    assert report.message.startswith("Suspended")


def test_other_objects_are_healthy_once_applied() -> None:
    assert assess({"kind": "ServiceAccount"}).health is Health.HEALTHY


def train_job(*conditions: tuple[str, str, str], **status: Any) -> dict[str, Any]:
    return {
        "kind": "TrainJob",
        "metadata": {"creationTimestamp": "2026-03-01T10:00:00Z"},
        "status": {
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": "m", "lastTransitionTime": "T"}
                for t, s, r in conditions
            ],
            **status,
        },
    }


NODE_ACTIVE = [{"name": "node", "active": 1, "ready": 1, "succeeded": 0, "failed": 0}]


@pytest.mark.parametrize(
    ("obj", "health", "message"),
    [
        (train_job(), Health.PENDING, "waiting for the runtime's jobs"),
        (train_job(jobsStatus=NODE_ACTIVE), Health.RUNNING, "running: node 1 active"),
        (
            train_job(("Suspended", "True", "Suspended"), jobsStatus=NODE_ACTIVE),
            Health.PENDING,
            "Suspended: m",
        ),
        (
            train_job(("Suspended", "False", "Resumed"), jobsStatus=NODE_ACTIVE),
            Health.RUNNING,
            "running: node 1 active",
        ),
        (
            train_job(("Complete", "True", "AllJobsCompleted")),
            Health.SUCCEEDED,
            "AllJobsCompleted: m",
        ),
        (train_job(("Failed", "True", "DeadlineExceeded")), Health.FAILED, "DeadlineExceeded: m"),
        # v2.3 has no Created or Running condition; an old Running one means nothing.
        (
            train_job(("Running", "True", "Running")),
            Health.PENDING,
            "waiting for the runtime's jobs",
        ),
    ],
)
def test_train_job(obj: dict[str, Any], health: Health, message: str) -> None:
    report = assess(obj)
    assert (report.health, report.message) == (health, message)


def test_train_job_times_come_from_its_conditions() -> None:
    """A TrainJob has no startTime or completionTime: creation (or the last resume)
    starts it and the condition that ended it dates its end."""
    done = assess(train_job(("Complete", "True", "AllJobsCompleted")))
    assert (done.details["startTime"], done.details["completionTime"]) == (
        "2026-03-01T10:00:00Z",
        "T",
    )
    resumed = assess(train_job(("Suspended", "False", "Resumed"), jobsStatus=NODE_ACTIVE))
    assert resumed.details["startTime"] == "T"


def standard(*conditions: dict[str, str]) -> dict[str, Any]:
    """A Standard-mode (raw deployment) InferenceService, as KServe v0.20 reports one."""
    return {
        "kind": "InferenceService",
        "metadata": {"name": "m", "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
        "status": {"deploymentMode": "Standard", "conditions": list(conditions)},
    }


@pytest.mark.parametrize(
    ("obj", "health"),
    [
        pytest.param(
            standard(
                cond("PredictorReady", "False", "MinimumReplicasUnavailable", "0 of 2 available"),
                cond("IngressReady", "False", "", "Predictor ingress not created"),
                cond("Ready", "False"),
            ),
            Health.PROGRESSING,
            id="still-rolling-out",
        ),
        pytest.param(
            standard(
                cond("PredictorReady", "False", "ProgressDeadlineExceeded", "timed out"),
                cond("Ready", "False"),
            ),
            Health.DEGRADED,
            id="past-its-progress-deadline",
        ),
        pytest.param(
            isvc(
                cond("IngressReady", "False", "", "Predictor ingress not created"),
                cond("Ready", "False"),
            ),
            Health.DEGRADED,
            id="serverless-false-is-degraded",
        ),
    ],
)
def test_a_standard_mode_deployment_rolling_out_is_progressing(
    obj: dict[str, Any], health: Health
) -> None:
    assert assess(obj).health is health
