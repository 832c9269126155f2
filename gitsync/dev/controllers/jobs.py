"""Simulate the Kubeflow Training Operator (v1) for TFJob and PyTorchJob, for dev and tests.

The Training Operator runs training pods, which the local control plane cannot, yet
gitsync must be developed and tested against jobs whose status moves the way the
operator (v1.9) moves it. This module is that stand-in: a pure function from a job
(and the time) to its next status. Nothing here runs in production and nothing but
``status`` is ever written.

What is simulated, following ``pkg/controller.v1/common/job.go``, the TFJob and
PyTorchJob controllers and ``pkg/util/status.go``:

* the ``Created`` condition at once, ``startTime`` when the job is first reconciled
  and ``replicaStatuses`` for every replica type;
* after a start delay all pods run: ``Running`` with ``active`` = replicas;
* after a run duration the job ends: ``Succeeded`` (every replica counted as
  succeeded) or, with the fail knob, ``Failed`` because the chief/master (else the
  first worker) failed. ``Running`` then turns False, as ``filterOutCondition`` does;
* ``runPolicy.suspend`` (``Suspended`` / ``Resumed``, startTime reset on resume),
  ``runPolicy.activeDeadlineSeconds``, and ``runPolicy.managedBy`` naming another
  controller (the job is left alone).

A finished job is never touched again. Everything the simulator needs to remember is
already in the status (condition times, ``startTime``), so jobs need no extra memory.

Knobs, as annotations on the job: ``dev.gitsync.io/start-delay``,
``dev.gitsync.io/run-duration`` (seconds), ``dev.gitsync.io/fail: "true"``,
``dev.gitsync.io/fail-reason`` and ``dev.gitsync.io/fail-message``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from gitsync.dev.controllers.runner import (
    Outcome,
    condition_true,
    earliest,
    find_condition,
    format_time,
    parse_time,
    seconds_annotation,
)

__all__ = [
    "API_VERSION",
    "FAIL_ANNOTATION",
    "FAIL_MESSAGE_ANNOTATION",
    "FAIL_REASON_ANNOTATION",
    "JOB_KINDS",
    "RUN_DURATION_ANNOTATION",
    "START_DELAY_ANNOTATION",
    "JobSettings",
    "reconcile_job",
]

API_VERSION: Final = "kubeflow.org/v1"

START_DELAY_ANNOTATION: Final = "dev.gitsync.io/start-delay"
RUN_DURATION_ANNOTATION: Final = "dev.gitsync.io/run-duration"
FAIL_ANNOTATION: Final = "dev.gitsync.io/fail"
FAIL_REASON_ANNOTATION: Final = "dev.gitsync.io/fail-reason"
FAIL_MESSAGE_ANNOTATION: Final = "dev.gitsync.io/fail-message"

_OUR_MANAGER: Final = "kubeflow.org/training-operator"
_TRUE, _FALSE = "True", "False"


@dataclass(frozen=True, slots=True)
class _Kind:
    replica_specs: str
    # Replica types in the order the operator walks them; the first present is the
    # "master role" whose completion or failure decides the job.
    master_roles: tuple[str, ...]
    controller: str
    selector: bool  # PyTorchJob publishes a selector for its scale subresource


JOB_KINDS: Final[Mapping[str, _Kind]] = {
    "TFJob": _Kind("tfReplicaSpecs", ("Chief", "Master", "Worker"), "tfjob-controller", False),
    "PyTorchJob": _Kind("pytorchReplicaSpecs", ("Master", "Worker"), "pytorchjob-controller", True),
}


@dataclass(frozen=True, slots=True)
class JobSettings:
    start_delay: float = 1.0
    run_duration: float = 3.0


@dataclass(frozen=True, slots=True)
class _Job:
    kind: str
    spec: _Kind
    name: str
    namespace: str
    replicas: dict[str, int]
    annotations: Mapping[str, str]
    run_policy: Mapping[str, Any]
    now: datetime

    @property
    def stamp(self) -> str:
        return format_time(self.now)

    def reason(self, what: str) -> str:
        return f"{self.kind}{what}"  # the operator's NewReason(kind, reason)


def reconcile_job(obj: Mapping[str, Any], now: datetime, settings: JobSettings) -> Outcome:
    """The job's next status at ``now``: one step of its lifecycle at a time."""
    kind = str(obj.get("kind"))
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    job_kind = JOB_KINDS.get(kind)
    if job_kind is None:
        return Outcome(note=f"{kind} is not simulated")
    if metadata.get("deletionTimestamp"):
        return Outcome()
    run_policy = spec.get("runPolicy") or {}
    managed_by = run_policy.get("managedBy")
    if managed_by and managed_by != _OUR_MANAGER:
        return Outcome(note=f"managed by {managed_by}; left alone")
    old: dict[str, Any] = dict(obj.get("status") or {})
    conditions = list(old.get("conditions") or [])
    if condition_true(conditions, "Succeeded") or condition_true(conditions, "Failed"):
        return Outcome()

    specs = spec.get(job_kind.replica_specs) or {}
    job = _Job(
        kind=kind,
        spec=job_kind,
        name=str(metadata.get("name")),
        namespace=str(metadata.get("namespace")),
        replicas={
            str(rtype): _replicas(replica)
            for rtype, replica in specs.items()
            if isinstance(replica, dict)
        },
        annotations={str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
        run_policy=run_policy,
        now=now,
    )
    status, wake, line = _step(job, copy.deepcopy(old), settings)
    if status == old:
        return Outcome(wake_at=wake)
    return Outcome(status=status, wake_at=wake, transitions=(line,) if line else ())


def _replicas(replica: Mapping[str, Any]) -> int:
    value = replica.get("replicas", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 1


def _step(
    job: _Job, status: dict[str, Any], settings: JobSettings
) -> tuple[dict[str, Any], datetime | None, str]:
    """Advance at most one lifecycle step; returns (status, next wake-up, log line)."""
    conditions = list(status.get("conditions") or [])
    created = find_condition(conditions, "Created") is None
    if created:
        # The operator adds Created on the create event; it is written with the first
        # reconcile's status, so both land in one write here too.
        conditions = _set_condition(
            conditions,
            job,
            kind="Created",
            status=_TRUE,
            reason=job.reason("Created"),
            message=f"{job.kind} {job.name} is created.",
        )
        status["conditions"] = conditions
    admitted = _admit(job, status, conditions, created=created)
    return admitted if admitted is not None else _progress(job, status, conditions, settings)


def _admit(
    job: _Job, status: dict[str, Any], conditions: list[dict[str, Any]], *, created: bool
) -> tuple[dict[str, Any], datetime | None, str] | None:
    """Suspension, resumption and the first acknowledgement; None when none applies."""
    if job.run_policy.get("suspend") is True:
        return _suspend(job, status, conditions)
    if condition_true(conditions, "Suspended"):
        status["conditions"] = _set_condition(
            conditions,
            job,
            kind="Suspended",
            status=_FALSE,
            reason=job.reason("Resumed"),
            message=f"{job.kind} {job.name} is resumed.",
        )
        status["startTime"] = job.stamp
        status["replicaStatuses"] = _replica_statuses(job, counted=None)
        return status, job.now, "Resumed"
    if parse_time(status.get("startTime")) is None:
        status["startTime"] = job.stamp
        status["replicaStatuses"] = _replica_statuses(job, counted=None)
        return status, job.now, "Created" if created else "acknowledged (startTime set)"
    return None


def _progress(
    job: _Job, status: dict[str, Any], conditions: list[dict[str, Any]], settings: JobSettings
) -> tuple[dict[str, Any], datetime | None, str]:
    """Pods start after the start delay and finish after the run duration."""
    start = parse_time(status.get("startTime")) or job.now
    deadline = _active_deadline(job, start)
    if deadline is not None and job.now >= deadline:
        status["completionTime"] = job.stamp
        status["conditions"] = _set_condition(
            conditions,
            job,
            kind="Failed",
            status=_TRUE,
            reason=job.reason("Failed"),
            message=(
                f"Job {job.name} has failed because it was active longer than specified deadline"
            ),
        )
        return status, None, "Failed (activeDeadlineSeconds)"

    running = find_condition(conditions, "Running")
    if running is None or running.get("status") != _TRUE:
        delay = seconds_annotation(job.annotations, START_DELAY_ANNOTATION, settings.start_delay)
        begins = start + timedelta(seconds=delay)
        if job.now < begins:
            return status, earliest(begins, deadline), ""
        status["replicaStatuses"] = _replica_statuses(job, counted="active")
        status["conditions"] = _set_condition(
            conditions,
            job,
            kind="Running",
            status=_TRUE,
            reason=job.reason("Running"),
            message=f"{job.kind} {job.namespace}/{job.name} is running.",
        )
        return status, job.now, "Running"

    duration = seconds_annotation(job.annotations, RUN_DURATION_ANNOTATION, settings.run_duration)
    ends = (parse_time(running.get("lastTransitionTime")) or job.now) + timedelta(seconds=duration)
    if job.now < ends:
        return status, earliest(ends, deadline), ""
    if job.annotations.get(FAIL_ANNOTATION, "").lower() == "true":
        return _fail(job, status, conditions)
    status["completionTime"] = job.stamp
    status["replicaStatuses"] = _replica_statuses(job, counted="succeeded")
    status["conditions"] = _set_condition(
        conditions,
        job,
        kind="Succeeded",
        status=_TRUE,
        reason=job.reason("Succeeded"),
        message=f"{job.kind} {job.namespace}/{job.name} successfully completed.",
    )
    return status, None, "Succeeded"


def _suspend(
    job: _Job, status: dict[str, Any], conditions: list[dict[str, Any]]
) -> tuple[dict[str, Any], datetime | None, str]:
    message = f"{job.kind} {job.name} is suspended."
    if condition_true(conditions, "Running"):
        conditions = _set_condition(
            conditions,
            job,
            kind="Running",
            status=_FALSE,
            reason=job.reason("Suspended"),
            message=message,
        )
    if not condition_true(conditions, "Suspended"):
        conditions = _set_condition(
            conditions,
            job,
            kind="Suspended",
            status=_TRUE,
            reason=job.reason("Suspended"),
            message=message,
        )
    status["conditions"] = conditions
    replica_statuses = status.get("replicaStatuses")
    if isinstance(replica_statuses, dict):
        for replica_status in replica_statuses.values():
            if isinstance(replica_status, dict):
                replica_status.pop("active", None)
    return status, None, "Suspended"


def _fail(
    job: _Job, status: dict[str, Any], conditions: list[dict[str, Any]]
) -> tuple[dict[str, Any], datetime | None, str]:
    culprit = next(
        (rtype for rtype in job.spec.master_roles if rtype in job.replicas),
        next(iter(job.replicas), "Worker"),
    )
    replica_statuses = {}
    for rtype, count in job.replicas.items():
        counts = {"active": count - 1, "failed": 1} if rtype == culprit else {"active": count}
        replica_statuses[rtype] = _selector(job, rtype, {k: v for k, v in counts.items() if v})
    status["replicaStatuses"] = replica_statuses
    status["completionTime"] = job.stamp
    reason = job.annotations.get(FAIL_REASON_ANNOTATION) or job.reason("Failed")
    message = job.annotations.get(FAIL_MESSAGE_ANNOTATION) or (
        f"{job.kind} {job.namespace}/{job.name} has failed because 1 {culprit} replica(s) failed."
    )
    status["conditions"] = _set_condition(
        conditions, job, kind="Failed", status=_TRUE, reason=reason, message=message
    )
    return status, None, f"Failed ({reason})"


def _replica_statuses(job: _Job, *, counted: str | None) -> dict[str, Any]:
    """Every replica type with all its replicas counted under ``counted`` (or none)."""
    return {
        rtype: _selector(job, rtype, {counted: count} if counted and count else {})
        for rtype, count in job.replicas.items()
    }


def _selector(job: _Job, rtype: str, counts: dict[str, Any]) -> dict[str, Any]:
    if job.spec.selector:
        # metav1.FormatLabelSelector of the operator's labels: sorted, comma-separated.
        counts["selector"] = (
            f"training.kubeflow.org/job-name={job.name},"
            f"training.kubeflow.org/operator-name={job.spec.controller},"
            f"training.kubeflow.org/replica-type={rtype.lower()}"
        )
    return counts


def _active_deadline(job: _Job, start: datetime) -> datetime | None:
    seconds = job.run_policy.get("activeDeadlineSeconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        return None
    return start + timedelta(seconds=seconds)


# --- conditions, as pkg/util/status.go keeps them ---------------------------------------


def _set_condition(
    conditions: list[dict[str, Any]],
    job: _Job,
    *,
    kind: str,
    status: str,
    reason: str,
    message: str,
) -> list[dict[str, Any]]:
    """The operator's ``setCondition``: append, keep transition times, settle Running."""
    if condition_true(conditions, "Failed"):
        return conditions
    current = find_condition(conditions, kind)
    if current is not None and current.get("status") == status and current.get("reason") == reason:
        return conditions
    new = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": job.stamp,
        "lastTransitionTime": job.stamp,
    }
    if current is not None and current.get("status") == status:
        new["lastTransitionTime"] = current.get("lastTransitionTime", job.stamp)
    kept = []
    for condition in conditions:
        ctype = condition.get("type")
        if ctype == kind or {kind, ctype} == {"Running", "Restarting"}:
            continue
        if kind in ("Failed", "Succeeded") and ctype == "Running":
            condition = {**condition, "status": _FALSE}  # noqa: PLW2901 - a changed copy
        kept.append(condition)
    return [*kept, new]
