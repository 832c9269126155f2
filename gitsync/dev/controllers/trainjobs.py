"""Simulate Kubeflow Trainer (v2) for TrainJob, for dev and tests.

Like :mod:`.jobs` for the v1 operator: a pure function from a TrainJob (its runtime,
and the time) to its next status, so that gitsync is developed against TrainJobs whose
status moves the way Trainer v2.3 moves it. Nothing here runs in production and
nothing but ``status`` is written.

What is simulated, following ``pkg/controller/trainjob_controller.go`` and the
JobSet plugin's ``Status`` (which copies the JobSet's conditions and child-job
counts):

* no condition while the job starts: v2 has no ``Created`` or ``Running``; instead
  ``jobsStatus`` lists every replicated job of the runtime (``node``, ``launcher``,
  the initializers) with its child Jobs counted, all zero at first;
* after a start delay every child Job is ``active`` and ``ready``;
* after a run duration ``Complete`` (reason ``AllJobsCompleted``, as JobSet says it)
  with every child Job ``succeeded``, or with the fail knob ``Failed`` (``FailedJobs``)
  with the trainer's Job ``failed``;
* ``spec.suspend`` (``Suspended`` True, then False with reason ``Resumed``),
  ``activeDeadlineSeconds`` from creation or the last resume (``DeadlineExceeded``),
  and ``managedBy`` naming another controller (left alone);
* a runtime that is not there: no status, as the real controller only records an
  event; it is looked at again shortly.

``trainerStatus`` is what a trainer reports to Trainer's status server (an alpha
feature, gate ``TrainJobStatus``): here it comes from annotations, like the failure
knobs: ``dev.gitsync.io/progress`` (percent while running; 100 once Complete) and
``dev.gitsync.io/metrics`` (``name=value,...``). Without either there is none, as for a
trainer that does not report. The knobs of :mod:`.jobs` (start delay, run duration,
fail, fail reason and message) apply as well.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from gitsync.dev.controllers.jobs import (
    FAIL_ANNOTATION,
    FAIL_MESSAGE_ANNOTATION,
    FAIL_REASON_ANNOTATION,
    RUN_DURATION_ANNOTATION,
    START_DELAY_ANNOTATION,
    JobSettings,
)
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
    "KIND",
    "METRICS_ANNOTATION",
    "PROGRESS_ANNOTATION",
    "RUNTIME_KINDS",
    "RuntimeLookup",
    "reconcile_train_job",
]

API_VERSION: Final = "trainer.kubeflow.org/v1alpha1"
KIND: Final = "TrainJob"
RUNTIME_KINDS: Final = ("ClusterTrainingRuntime", "TrainingRuntime")

PROGRESS_ANNOTATION: Final = "dev.gitsync.io/progress"
METRICS_ANNOTATION: Final = "dev.gitsync.io/metrics"

_OUR_MANAGER: Final = "trainer.kubeflow.org/trainjob-controller"
_TRAINER_JOB: Final = "node"
_RETRY_MISSING_RUNTIME: Final = timedelta(seconds=2)
_TRUE, _FALSE = "True", "False"

#: (kind, namespace or "" for a cluster runtime, name) -> the runtime object.
RuntimeLookup = Callable[[str, str, str], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class _TrainJob:
    name: str
    namespace: str
    created: datetime
    annotations: Mapping[str, str]
    spec: Mapping[str, Any]
    #: Each replicated job of the runtime and how many child Jobs it has.
    replicated: tuple[tuple[str, int], ...]
    now: datetime

    @property
    def stamp(self) -> str:
        return format_time(self.now)


def reconcile_train_job(
    obj: Mapping[str, Any], now: datetime, settings: JobSettings, runtimes: RuntimeLookup
) -> Outcome:
    """The TrainJob's next status at ``now``: one step of its lifecycle at a time."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if metadata.get("deletionTimestamp"):
        return Outcome()
    managed_by = spec.get("managedBy")
    if managed_by and managed_by != _OUR_MANAGER:
        return Outcome(note=f"managed by {managed_by}; left alone")
    old: dict[str, Any] = dict(obj.get("status") or {})
    conditions = list(old.get("conditions") or [])
    if condition_true(conditions, "Complete") or condition_true(conditions, "Failed"):
        return Outcome()
    ref = spec.get("runtimeRef") or {}
    kind = str(ref.get("kind") or "ClusterTrainingRuntime")
    namespace = "" if kind == "ClusterTrainingRuntime" else str(metadata.get("namespace"))
    runtime = runtimes(kind, namespace, str(ref.get("name")))
    if runtime is None:
        return Outcome(
            wake_at=now + _RETRY_MISSING_RUNTIME,
            note=f"{kind} {ref.get('name')} not found; the TrainJob waits for it",
        )
    job = _TrainJob(
        name=str(metadata.get("name")),
        namespace=str(metadata.get("namespace")),
        created=parse_time(metadata.get("creationTimestamp")) or now,
        annotations={str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
        spec=spec,
        replicated=_replicated_jobs(runtime),
        now=now,
    )
    status, wake, line = _step(job, copy.deepcopy(old), settings)
    if status == old:
        return Outcome(wake_at=wake)
    return Outcome(status=status, wake_at=wake, transitions=(line,) if line else ())


def _replicated_jobs(runtime: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    jobs = ((runtime.get("spec") or {}).get("template") or {}).get("spec") or {}
    found = []
    for replicated in jobs.get("replicatedJobs") or []:
        if isinstance(replicated, Mapping) and replicated.get("name"):
            count = replicated.get("replicas", 1)
            valid = isinstance(count, int) and not isinstance(count, bool) and count >= 0
            found.append((str(replicated["name"]), count if valid else 1))
    return tuple(found) or ((_TRAINER_JOB, 1),)


def _step(
    job: _TrainJob, status: dict[str, Any], settings: JobSettings
) -> tuple[dict[str, Any], datetime | None, str]:
    """Advance at most one lifecycle step; returns (status, next wake-up, log line)."""
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    admitted = _admit(job, status, conditions)
    if admitted is not None:
        return admitted
    resumed = find_condition(conditions, "Suspended")
    start = (parse_time(resumed.get("lastTransitionTime")) if resumed else None) or job.created
    return _progress(job, status, conditions, start=start, settings=settings)


def _admit(
    job: _TrainJob, status: dict[str, Any], conditions: list[dict[str, Any]]
) -> tuple[dict[str, Any], datetime | None, str] | None:
    """Suspension, resumption and the first child-job counts; None when none applies."""
    if job.spec.get("suspend") is True:
        status["conditions"] = _set_condition(
            conditions,
            job,
            kind="Suspended",
            status=_TRUE,
            reason="Suspended",
            message="TrainJob is suspended",
        )
        status["jobsStatus"] = _jobs_status(job, counted="suspended")
        return status, None, "Suspended"
    if condition_true(conditions, "Suspended"):
        status["conditions"] = _set_condition(
            conditions,
            job,
            kind="Suspended",
            status=_FALSE,
            reason="Resumed",
            message="TrainJob is resumed",
        )
        status["jobsStatus"] = _jobs_status(job, counted=None)
        return status, job.now, "Resumed"
    if "jobsStatus" not in status:
        status["jobsStatus"] = _jobs_status(job, counted=None)
        return status, job.now, "Created"
    return None


def _progress(
    job: _TrainJob,
    status: dict[str, Any],
    conditions: list[dict[str, Any]],
    *,
    start: datetime,
    settings: JobSettings,
) -> tuple[dict[str, Any], datetime | None, str]:
    """Child Jobs run after the start delay and finish after the run duration."""
    deadline = _deadline(job, start)
    if deadline is not None and job.now >= deadline:
        status["conditions"] = _set_condition(
            conditions,
            job,
            kind="Failed",
            status=_TRUE,
            reason="DeadlineExceeded",
            message="TrainJob exceeded its active deadline",
        )
        status["jobsStatus"] = _jobs_status(job, counted=None)
        return status, None, "Failed (activeDeadlineSeconds)"
    delay = seconds_annotation(job.annotations, START_DELAY_ANNOTATION, settings.start_delay)
    duration = seconds_annotation(job.annotations, RUN_DURATION_ANNOTATION, settings.run_duration)
    begins = start + timedelta(seconds=delay)
    ends = begins + timedelta(seconds=duration)
    if job.now < begins:
        return status, earliest(begins, deadline), ""
    running = _jobs_status(job, counted="active", also="ready")
    if status.get("jobsStatus") != running:
        # Its own write even when the run is already over (a slow first look): the
        # child jobs were running in between, and a watcher sees that.
        status["jobsStatus"] = running
        if trainer := _trainer_status(job, finished=False):
            status["trainerStatus"] = trainer
        return status, earliest(max(ends, job.now), deadline), "Running"
    if job.now < ends:
        return status, earliest(ends, deadline), ""
    if job.annotations.get(FAIL_ANNOTATION, "").lower() == "true":
        status["jobsStatus"] = _jobs_status(job, counted=None, failed=_TRAINER_JOB)
        reason = job.annotations.get(FAIL_REASON_ANNOTATION) or "FailedJobs"
        message = (
            job.annotations.get(FAIL_MESSAGE_ANNOTATION)
            or "jobset failed due to one or more job failures"
        )
        status["conditions"] = _set_condition(
            conditions, job, kind="Failed", status=_TRUE, reason=reason, message=message
        )
        return status, None, f"Failed ({reason})"
    status["jobsStatus"] = _jobs_status(job, counted="succeeded")
    if trainer := _trainer_status(job, finished=True):
        status["trainerStatus"] = trainer
    status["conditions"] = _set_condition(
        conditions,
        job,
        kind="Complete",
        status=_TRUE,
        reason="AllJobsCompleted",
        message="jobset completed successfully",
    )
    return status, None, "Complete"


def _jobs_status(
    job: _TrainJob, *, counted: str | None, also: str | None = None, failed: str | None = None
) -> list[dict[str, Any]]:
    """Every replicated job with its child Jobs counted under ``counted`` (and ``also``);
    ``failed`` names the one whose Job failed. All five counts are always present."""
    statuses = []
    for name, replicas in job.replicated:
        counts = dict.fromkeys(("active", "failed", "ready", "succeeded", "suspended"), 0)
        for key in (counted, also):
            if key is not None:
                counts[key] = replicas
        if name == failed:
            counts["failed"] = 1
        statuses.append({"name": name, **counts})
    return statuses


def _trainer_status(job: _TrainJob, *, finished: bool) -> dict[str, Any] | None:
    """What the trainer reports, from the knobs; None for a trainer that reports nothing."""
    progress_text = job.annotations.get(PROGRESS_ANNOTATION)
    metrics_text = job.annotations.get(METRICS_ANNOTATION)
    if progress_text is None and metrics_text is None:
        return None
    status: dict[str, Any] = {"lastUpdatedTime": job.stamp}
    if progress_text is not None:
        try:
            progress = min(100, max(0, int(progress_text)))
        except ValueError:
            progress = 0
        status["progressPercentage"] = 100 if finished else progress
        if finished:
            status["estimatedRemainingSeconds"] = 0
    metrics = []
    for pair in (metrics_text or "").split(","):
        name, _, value = pair.partition("=")
        # The CRD's bounds: 1 to 64 characters each.
        if 0 < len(name.strip()) <= 64 and 0 < len(value.strip()) <= 64:
            metrics.append({"name": name.strip(), "value": value.strip()})
    if metrics:
        status["metrics"] = metrics
    return status


def _deadline(job: _TrainJob, start: datetime) -> datetime | None:
    seconds = job.spec.get("activeDeadlineSeconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        return None
    return start + timedelta(seconds=seconds)


# --- conditions, as apimachinery's meta.SetStatusCondition keeps them -------------------


def _set_condition(
    conditions: list[dict[str, Any]],
    job: _TrainJob,
    *,
    kind: str,
    status: str,
    reason: str,
    message: str,
) -> list[dict[str, Any]]:
    """Replace in place (the transition time kept when the status stays), else append."""
    new = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": job.stamp,
    }
    for index, current in enumerate(conditions):
        if isinstance(current, dict) and current.get("type") == kind:
            if current.get("status") == status:
                new["lastTransitionTime"] = current.get("lastTransitionTime", job.stamp)
            return [*conditions[:index], new, *conditions[index + 1 :]]
    return [*conditions, new]
