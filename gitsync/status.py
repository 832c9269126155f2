"""Status documents: what gitsync commits back to Git after each cycle.

Pure functions from what a cycle learnt (validation, the change applied, the live
object's health) to one YAML document per spec at
``status/<instance>/<namespace>/<Kind>/<name>.yaml``, a ``status/<instance>/README.md``
table, the ``status/README.md`` overview of every instance sharing the branch, and a
commit message. Documents are deterministic (no "last seen" clock): a cycle where nothing
changed produces byte-identical files, so it commits nothing. Condition transition
times are carried over from the previous document unless the condition changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from gitsync.conditions import Condition as OwnedCondition
from gitsync.conditions import ConditionStatus, summarize
from gitsync.diff import Action, Change
from gitsync.errors import Remedy
from gitsync.health import Health, HealthReport
from gitsync.loading import Diagnostic
from gitsync.redact import redact
from gitsync.render import ANNOTATION_SCHEDULED_AT, ANNOTATION_SOURCE_COMMIT, output_uri
from gitsync.status_document import (
    OVERVIEW_PATH,
    STATUS_ROOT,
    ChildJobs,
    Condition,
    ModelInfo,
    Phase,
    RolloutInfo,
    RunRecord,
    ScheduleInfo,
    StatusDocument,
    TrainerProgress,
    dump_document,
    instance_prefix,
    parse_document,
    readme_path,
    status_path,
)
from gitsync.trailers import Trailers

__all__ = [
    "OVERVIEW_PATH",
    "STATUS_ROOT",
    "Phase",
    "SpecStatus",
    "build_status",
    "commit_message",
    "dump_document",
    "overview",
    "parse_document",
    "readme",
    "readme_path",
    "run_record",
    "status_path",
]

#: A spec's status is its status document (plus the transitions its commit tells).
SpecStatus = StatusDocument

_PHASE_OF_HEALTH: Final = {health: Phase(health.value) for health in Health}
_STALLED: Final = {Phase.INVALID, Phase.FAILED, Phase.DEGRADED, Phase.ROLLED_BACK}
_IN_PROGRESS: Final = {Phase.PROGRESSING, Phase.PENDING, Phase.RUNNING, Phase.UNKNOWN}
_HEALTH_STATUS: Final[Mapping[Phase, ConditionStatus]] = {
    Phase.HEALTHY: "True",
    Phase.SUCCEEDED: "True",
    Phase.FAILED: "False",
    Phase.DEGRADED: "False",
    Phase.ROLLED_BACK: "False",
}
_VALID: Final = OwnedCondition("Valid", "True", "Valid", "the spec loads and passes its policies")


def _conditions(
    phase: Phase,
    message: str,
    *,
    invalid: bool,
    change: Change | None,
    revision: str,
    previous_doc: StatusDocument | None,
    now: str,
) -> tuple[Condition, ...]:
    """The spec's conditions: Valid, Applied and Healthy, each owned by the part of
    the cycle that decides it, and Ready, Reconciling and Stalled derived from them."""
    reason = phase.value
    valid = OwnedCondition("Valid", "False", reason, message) if invalid else _VALID
    owned = [valid]
    # A spec with nothing to apply yet (it waits on a training run, or between
    # ticks) has no Applied condition rather than one stuck at Unknown.
    if change is not None and change.error is not None:
        owned.append(OwnedCondition("Applied", "False", "ApplyFailed", change.error))
    elif change is not None and change.action is not Action.SKIPPED:
        # One message whatever the action, so the cycle after a create commits nothing.
        owned.append(OwnedCondition("Applied", "True", "Applied", f"{change.key} is applied"))
    if not invalid:
        health = _HEALTH_STATUS.get(phase, "Unknown")
        owned.append(OwnedCondition("Healthy", health, reason, message))
    return summarize(
        owned,
        reconciling=OwnedCondition("Reconciling", "True", reason, message)
        if phase in _IN_PROGRESS
        else None,
        stalled=OwnedCondition("Stalled", "True", reason, message) if phase in _STALLED else None,
        revision=revision,
        previous=previous_doc.conditions if previous_doc is not None else (),
        now=now,
    )


def build_status(
    *,
    kind: str,
    name: str,
    namespace: str,
    instance: str,
    source: str,
    source_commit: str,
    now: str,
    previous: StatusDocument | None = None,
    diagnostics: Sequence[Diagnostic] = (),
    change: Change | None = None,
    health: HealthReport | None = None,
    resources: Sequence[str] = (),
    model: ModelInfo | None = None,
    run: RunRecord | None = None,
    runs: Sequence[RunRecord] = (),
    history_limit: int = 10,
    schedule: ScheduleInfo | None = None,
    waiting: str | None = None,
    rollout: RolloutInfo | None = None,
    transitions: Sequence[str] = (),
    errors: Sequence[str] = (),
) -> SpecStatus:
    """The status of one spec, from the most decisive fact known about it.

    A ``rollout`` that was rolled back or aborted decides the phase (RolledBack, for
    as long as Git names the rejected model); one in progress makes it Progressing.
    ``waiting`` (why a spec has nothing to apply yet) makes it Pending while nothing
    of it is live. ``run`` is a TrainingRun's newest run and ``runs`` all its runs in
    the cluster, newest first; with the previous document's history they make the
    last ``history_limit`` runs. ``errors`` are the spec's faults found beyond
    validation (an analysis query Prometheus rejects): they make it Invalid too.
    """
    # Messages come from errors that may quote a URL: the status branch is public.
    problems = tuple(redact(p) for p in (*(str(d) for d in diagnostics), *errors))
    if diagnostics:
        phase, message = (
            Phase.INVALID,
            f"{len(diagnostics)} validation error(s); first: {problems[0]}",
        )
    elif errors:
        phase, message = Phase.INVALID, f"{errors[0]}; fix it in a new commit"
    elif change is not None and change.error is not None:
        phase, message = _phase_of_error(change), change.error
    elif change is not None and change.action is Action.SKIPPED and health is None:
        phase, message = Phase.UNKNOWN, change.reason
    elif rollout is not None and rollout.phase in {"RolledBack", "Aborted"}:
        phase, message = Phase.ROLLED_BACK, rollout.reason or "rolled back"
    elif rollout is not None and rollout.phase in {"Progressing", "Paused"}:
        phase = Phase.PROGRESSING
        message = (transitions[-1] if transitions else None) or (
            rollout.story or f"canary {rollout.traffic}%"
        )
    elif health is not None:
        phase, message = _PHASE_OF_HEALTH[health.health], health.message
    elif waiting is not None:
        phase, message = Phase.PENDING, waiting
    else:
        phase, message = Phase.UNKNOWN, "not observed yet"
    message = redact(message)
    if change is not None and change.drift:
        message = f"{message} (drift {'reverted' if change.writes else 'detected'})"
    if schedule is not None and schedule.skipped:
        message = f"{message}; {schedule.skipped}"
    history = _run_history(previous, [*([run] if run else []), *runs], history_limit)
    return SpecStatus(
        kind=kind,
        name=name,
        namespace=namespace,
        instance=instance,
        source=source,
        source_commit=source_commit,
        phase=phase,
        message=message,
        conditions=_conditions(
            phase,
            message,
            invalid=bool(problems),
            change=change,
            revision=source_commit,
            previous_doc=previous,
            now=now,
        ),
        resources=tuple(resources),
        model=model,
        run=run,
        runs=history,
        schedule=schedule,
        errors=problems,
        rollout=rollout,
        transitions=tuple(transitions),
    )


def _phase_of_error(change: Change) -> Phase:
    # Rejected by the API server's schema: only a new commit can fix it.
    return Phase.INVALID if change.error_remedy is Remedy.WAIT_FOR_COMMIT else Phase.DEGRADED


def _run_history(
    previous: StatusDocument | None, observed: Sequence[RunRecord], limit: int
) -> tuple[RunRecord, ...]:
    """The last ``limit`` runs, newest first: those observed now (which replace their
    own older entries), then the remembered ones no longer in the cluster."""
    current: dict[str, RunRecord] = {}
    for run in observed:
        current.setdefault(run.name, run)
    older = [r for r in (previous.runs if previous else ()) if r.name not in current]
    return (*current.values(), *older)[:limit]


def run_record(name: str, health: HealthReport, job: Mapping[str, Any] | None) -> RunRecord:
    """One run as its TrainingRun's status records it.

    ``job`` is the run's object (live, or as just written); it names where the run
    writes its model, the commit of the spec that started it and, for a scheduled
    run, its tick.
    """
    annotations = ((job or {}).get("metadata") or {}).get("annotations") or {}
    return RunRecord(
        name=name,
        phase=health.health.value,
        start_time=health.details.get("startTime"),
        completion_time=health.details.get("completionTime"),
        replica_statuses=health.details.get("replicaStatuses"),
        reason=health.message if health.health is Health.FAILED else None,
        output_uri=output_uri(job) if job is not None else None,
        source_commit=annotations.get(ANNOTATION_SOURCE_COMMIT) or None,
        scheduled_at=annotations.get(ANNOTATION_SCHEDULED_AT) or None,
        jobs_status=tuple(_child_jobs(c) for c in health.details.get("jobsStatus") or ()),
        trainer_status=_trainer_progress(health.details.get("trainerStatus")),
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _child_jobs(status: Mapping[str, Any]) -> ChildJobs:
    return ChildJobs(
        name=str(status.get("name", "")),
        active=_count(status.get("active")),
        ready=_count(status.get("ready")),
        succeeded=_count(status.get("succeeded")),
        failed=_count(status.get("failed")),
        suspended=_count(status.get("suspended")),
    )


def _trainer_progress(status: object) -> TrainerProgress | None:
    """A TrainJob's ``trainerStatus`` (the CRD bounds it: 256 metrics of 64 chars)."""
    if not isinstance(status, Mapping):
        return None
    metrics = {
        str(metric.get("name")): str(metric.get("value"))
        for metric in status.get("metrics") or []
        if isinstance(metric, Mapping) and metric.get("name")
    }
    progress, remaining = status.get("progressPercentage"), status.get("estimatedRemainingSeconds")
    return TrainerProgress(
        progress_percentage=progress if isinstance(progress, int) else None,
        estimated_remaining_seconds=remaining if isinstance(remaining, int) else None,
        metrics=metrics or None,
        last_updated_time=str(status["lastUpdatedTime"]) if status.get("lastUpdatedTime") else None,
    )


def _traffic_text(model: ModelInfo | None) -> str:
    if model is None:
        return ""
    return ", ".join(f"{t.revision} {t.percent}%" for t in model.traffic)


def readme(statuses: Iterable[SpecStatus], *, instance: str) -> bytes:
    """A Markdown table of an instance's specs, for people browsing the status branch."""
    rows = sorted(statuses, key=lambda s: (s.namespace, s.kind, s.name))
    lines = [
        f"# gitsync status: {instance}",
        "",
        "One row per spec; each links to its status document. Source is the commit that",
        "last changed the spec's file.",
        "",
        "| Namespace | Kind | Name | Phase | Model / run | Traffic | Source | Message |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        what = ""
        if s.model is not None:
            what = s.model.storage_uri or ""
        elif s.run is not None:
            what = s.run.name
        message = s.message.replace("|", "\\|").replace("\n", " ")
        link = f"[{s.name}]({s.path.removeprefix(instance_prefix(instance))})"
        lines.append(
            f"| {s.namespace} | {s.kind} | {link} | {s.phase.value} | {what} | "
            f"{_traffic_text(s.model)} | `{s.source}@{s.source_commit[:7]}` | {message} |"
        )
    return ("\n".join(lines) + "\n").encode("utf-8")


def overview(phases: Mapping[str, Iterable[Phase]], *, old_layout: int = 0) -> bytes:
    """The branch's front page: each instance (name -> the phases of its documents),
    linking to its own table, with its documents counted by phase. ``old_layout``
    counts documents left from before instances, which no instance owns."""
    lines = [
        "# gitsync status",
        "",
        "One row per gitsync instance reporting on this branch; each links to its table.",
        "",
        "| Instance | Specs | By phase |",
        "|---|---|---|",
    ]
    for instance, of_instance in sorted(phases.items()):
        counts: dict[str, int] = {}
        for phase in of_instance:
            counts[phase.value] = counts.get(phase.value, 0) + 1
        by_phase = ", ".join(f"{n} {phase}" for phase, n in sorted(counts.items()))
        link = f"[{instance}]({readme_path(instance).removeprefix(STATUS_ROOT + '/')})"
        lines.append(f"| {link} | {sum(counts.values())} | {by_phase} |")
    if old_layout:
        lines += [
            "",
            f"{old_layout} document(s) lie in the old layout (`{STATUS_ROOT}/<namespace>/...`,"
            " no instance): an instance moves those its own commits wrote into its folder;",
            "the rest are left for an operator to remove.",
        ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def commit_message(
    *,
    before: Mapping[str, StatusDocument],
    after: Sequence[SpecStatus],
    removed: Sequence[str],
    source_commit: str,
    instance: str,
) -> str:
    """One summary line, a line per changed spec, then trailers."""
    details = []
    for status in after:
        old = before.get(status.path)
        old_phase = old.phase.value if old else None
        if old_phase == status.phase.value and old and old.message == status.message:
            continue
        arrow = f"{old_phase} -> {status.phase.value}" if old_phase else status.phase.value
        details.append(
            f"- {status.kind} {status.namespace}/{status.name}: {arrow}: {status.message}"
        )
    details.extend(f"- removed {path}" for path in removed)
    counts: dict[str, int] = {}
    for status in after:
        counts[status.phase.value] = counts.get(status.phase.value, 0) + 1
    summary = ", ".join(f"{n} {phase.lower()}" for phase, n in sorted(counts.items()))
    subject = f"gitsync status: {summary or 'no specs'} [source {source_commit[:7]}]"
    stories = [f"{s.name}: {told}" for s in after for told in s.transitions]
    # The controller moving traffic after a step is news too: say where it went.
    stories += [
        f"{s.name}: traffic now {_traffic_text(s.model)}"
        for s in after
        if not s.transitions
        and s.model is not None
        and s.model.traffic
        and _traffic_of(before.get(s.path)) != s.model.traffic
    ]
    if len(stories) == 1:
        subject = f"{stories[0]} [source {source_commit[:7]}]"
    elif stories:
        details = [*(f"- {story}" for story in stories), *details]
    trailers = Trailers(source_commit=source_commit, instance=instance).format()
    return redact("\n".join([subject, "", *details, "", trailers]))


def _traffic_of(doc: StatusDocument | None) -> tuple[Any, ...]:
    return doc.model.traffic if doc is not None and doc.model is not None else ()
