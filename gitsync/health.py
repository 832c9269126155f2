"""Judge live objects: is a model serving, is a training run done?

Pure functions from the live object (as the API server returns it) to a
:class:`HealthReport`. They read only the status the real controllers write (KServe's
InferenceService conditions and traffic, the Training Operator's job conditions,
Kubeflow Trainer's TrainJob conditions and child jobs), so
they work the same against a real cluster and the dev controllers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitsync.traffic import DeploymentMode, deployment_mode, predictor_workload

__all__ = ["Health", "HealthReport", "TrafficTarget", "assess"]


class Health(enum.Enum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"

    @property
    def finished(self) -> bool:
        return self in {Health.SUCCEEDED, Health.FAILED}


@dataclass(frozen=True, slots=True)
class TrafficTarget:
    revision: str
    percent: int
    latest: bool
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class HealthReport:
    health: Health
    message: str = ""
    conditions: tuple[Mapping[str, Any], ...] = ()
    url: str | None = None
    traffic: tuple[TrafficTarget, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _condition(conditions: list[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def _message(condition: Mapping[str, Any] | None, fallback: str) -> str:
    if condition is None:
        return fallback
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    return ": ".join(part for part in (reason, message) if part) or fallback


def assess(obj: Mapping[str, Any]) -> HealthReport:
    """Health of any live object gitsync manages."""
    kind = obj.get("kind")
    if kind == "InferenceService":
        return _inference_service(obj)
    if kind in {"TFJob", "PyTorchJob"}:
        return _training_job(obj)
    if kind == "TrainJob":
        return _train_job(obj)
    # Plain objects (ServiceAccount, ConfigMap, ...) are healthy once they exist.
    return HealthReport(Health.HEALTHY, "applied")


def _inference_service(obj: Mapping[str, Any]) -> HealthReport:
    status = obj.get("status") or {}
    conditions = _conditions(obj)
    ready = _condition(conditions, "Ready")
    predictor = (status.get("components") or {}).get("predictor") or {}
    traffic = tuple(
        TrafficTarget(
            revision=str(t.get("revisionName", "")),
            percent=int(t.get("percent") or 0),
            latest=bool(t.get("latestRevision")),
            tag=t.get("tag"),
        )
        for t in predictor.get("traffic") or []
    )
    serving = None
    standard = deployment_mode(obj) is DeploymentMode.STANDARD
    if standard:
        traffic, serving = _standard_traffic(obj), _stable_workload(obj)
    # Not observedGeneration: KServe copies the Knative Service's generation there, not
    # the InferenceService's (kserve/kserve#6081). A revision still rolling out shows
    # as a latest created revision that is not the latest ready one.
    created = predictor.get("latestCreatedRevision")
    current = not created or created == predictor.get("latestReadyRevision")
    details = {
        key: predictor[key]
        for key in ("latestCreatedRevision", "latestReadyRevision", "latestRolledoutRevision")
        if predictor.get(key)
    }
    if ready is not None and ready.get("status") == "False":
        failing = next(
            (c for c in conditions if c.get("status") == "False" and c.get("type") != "Ready"),
            ready,
        )
        # Standard mode reports a Deployment still rolling out as False (KServe's
        # PropagateRawStatus: MinimumReplicasUnavailable, then the ingress it has not
        # created yet); only a Deployment past its progress deadline has failed.
        starting = standard and not any(
            c.get("reason") == "ProgressDeadlineExceeded" for c in conditions
        )
        health = Health.PROGRESSING if starting else Health.DEGRADED
        message = _message(failing, "not ready")
    elif ready is not None and ready.get("status") == "True" and current:
        revision = predictor.get("latestReadyRevision") or serving
        health, message = Health.HEALTHY, (f"serving {revision}" if revision else "ready")
    elif not current:
        health = Health.PROGRESSING
        message = f"waiting for revision {created} to become ready"
    else:
        health = Health.PROGRESSING
        message = _message(ready, "waiting for the predictor to become ready")
    return HealthReport(
        health,
        message,
        conditions=tuple(conditions),
        url=status.get("url"),
        traffic=traffic,
        details=details,
    )


def _stable_workload(obj: Mapping[str, Any]) -> str:
    """The Deployment of a Standard-mode InferenceService's stable predictor."""
    name = str((obj.get("metadata") or {}).get("name"))
    predictor = ((obj.get("spec") or {}).get("predictor") or {}).get("name")
    return predictor_workload(name, predictor)


def _standard_traffic(obj: Mapping[str, Any]) -> tuple[TrafficTarget, ...]:
    """Standard mode's split: each canary its ``trafficPercent`` (v0.20 routes it
    whether or not the canary is ready), the stable Deployment the rest."""
    status = obj.get("status") or {}
    if not ((status.get("components") or {}).get("predictor") or {}).get("url"):
        return ()  # nothing serves yet
    name = str((obj.get("metadata") or {}).get("name"))
    canaries = tuple(
        TrafficTarget(
            revision=predictor_workload(name, str(c.get("name"))),
            percent=int(c.get("trafficPercent") or 0),
            latest=True,
        )
        for c in status.get("canaryStatuses") or []
    )
    rest = 100 - sum(c.percent for c in canaries)
    return (TrafficTarget(_stable_workload(obj), max(0, rest), latest=not canaries), *canaries)


def _training_job(obj: Mapping[str, Any]) -> HealthReport:
    status = obj.get("status") or {}
    conditions = _conditions(obj)
    details = {
        key: status[key]
        for key in ("startTime", "completionTime", "replicaStatuses")
        if status.get(key)
    }
    for kind, health in (
        ("Failed", Health.FAILED),
        ("Succeeded", Health.SUCCEEDED),
        # runPolicy.suspend: the operator turns Running False and keeps the job waiting.
        ("Suspended", Health.PENDING),
        ("Restarting", Health.RUNNING),
        ("Running", Health.RUNNING),
    ):
        condition = _condition(conditions, kind)
        if condition is not None and condition.get("status") == "True":
            return HealthReport(
                health, _message(condition, kind.lower()), tuple(conditions), details=details
            )
    created = _condition(conditions, "Created")
    return HealthReport(
        Health.PENDING,
        _message(created, "waiting to be scheduled"),
        tuple(conditions),
        details=details,
    )


def _train_job(obj: Mapping[str, Any]) -> HealthReport:
    """A Kubeflow Trainer v2 TrainJob, judged as a TFJob is.

    Its controller (v2.3) copies ``Complete`` and ``Failed`` from the JobSet, sets
    ``Suspended``, and has no Running condition: a job runs while any child Job is
    active. It records no start or completion time either; the condition that ended
    it (or the resume) dates them.
    """
    status = obj.get("status") or {}
    conditions = _conditions(obj)
    children = [c for c in status.get("jobsStatus") or [] if isinstance(c, Mapping)]
    resumed = _condition(conditions, "Suspended")
    started = (
        resumed.get("lastTransitionTime")
        if resumed is not None and resumed.get("status") == "False"
        else (obj.get("metadata") or {}).get("creationTimestamp")
    )
    details: dict[str, Any] = {
        key: value
        for key, value in (
            ("startTime", started),
            ("jobsStatus", children),
            ("trainerStatus", status.get("trainerStatus")),
        )
        if value
    }
    for kind, health in (("Failed", Health.FAILED), ("Complete", Health.SUCCEEDED)):
        condition = _condition(conditions, kind)
        if condition is not None and condition.get("status") == "True":
            if condition.get("lastTransitionTime"):
                details["completionTime"] = condition["lastTransitionTime"]
            return HealthReport(
                health, _message(condition, kind.lower()), tuple(conditions), details=details
            )
    if resumed is not None and resumed.get("status") == "True":
        return HealthReport(
            Health.PENDING, _message(resumed, "suspended"), tuple(conditions), details=details
        )
    active = {str(c.get("name")): c.get("active") for c in children if c.get("active")}
    if active:
        running = ", ".join(f"{name} {count} active" for name, count in sorted(active.items()))
        return HealthReport(
            Health.RUNNING, f"running: {running}", tuple(conditions), details=details
        )
    return HealthReport(
        Health.PENDING, "waiting for the runtime's jobs", tuple(conditions), details=details
    )
