"""The status of every spec, from what one cycle learnt about it.

Pure: the loaded entries, what they rendered to, the changes applied, the live
objects observed, the rollout decisions and the training plan go in; one
:class:`~gitsync.status.SpecStatus` per spec comes out, for the specs that are valid,
those that were rejected, and those whose file broke so badly that they cannot even
be named (they keep their documents, marked Invalid, rather than vanishing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gitsync.analysis import Analysis
from gitsync.diff import Action, Change, ChangeSet
from gitsync.health import Health, HealthReport, assess
from gitsync.inventory import Inventory
from gitsync.loading import Diagnostic, Entry, LoadResult
from gitsync.render import RenderContext, TrainedModel, pending
from gitsync.rollout import Decision
from gitsync.schedule import ScheduleDecision, format_time
from gitsync.specs import ModelDeployment, TrainingRun
from gitsync.status import SpecStatus, build_status, run_record, status_path
from gitsync.status_document import (
    Lineage,
    ModelInfo,
    RolloutInfo,
    RunRecord,
    ScheduleInfo,
    Score,
    StatusDocument,
    Traffic,
)
from gitsync.training import TrainingPlan, jobs_by_training_run
from gitsync.types import ObjectRef, format_resource

__all__ = ["ISVC_API", "Observations", "inference_service_key", "spec_statuses"]

ISVC_API = "serving.kserve.io/v1beta1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Observations:
    """What a cycle knows of the cluster after it wrote."""

    #: Live objects, updated with what the cycle wrote (and waited for).
    objects: Mapping[ObjectRef, Mapping[str, Any]] = field(default_factory=dict)
    #: Objects just written whose controller has not reported on them yet.
    stale: frozenset[ObjectRef] = frozenset()
    #: False when the cycle could not look at the cluster: specs keep what their
    #: documents said rather than all turning Unknown.
    complete: bool = True


def spec_statuses(
    *,
    loaded: LoadResult,
    desired: Sequence[Mapping[str, Any] | None],
    changes: ChangeSet,
    observed: Observations,
    rollouts: Mapping[ObjectRef, Decision],
    analyses: Mapping[ObjectRef, Analysis],
    training: TrainingPlan,
    context: RenderContext,
    inventory: Inventory,
    now: str,
    carried: Mapping[str, SpecStatus] = MappingProxyType({}),
) -> list[SpecStatus]:
    """Every spec's status, sorted by document path. ``carried`` are the documents,
    by path, of specs not in ``loaded`` whose status is the one they have (see
    gitsync.focus): no other status is made for their paths."""
    commits = context.source_commits
    default_namespace = context.default_namespace
    previous = inventory.documents
    instance = inventory.instance
    by_key = {change.key: change for change in changes.changes}
    deleted = {c.key for c in changes.of(Action.DELETED) if c.error is None}
    jobs = jobs_by_training_run({k: v for k, v in observed.objects.items() if k not in deleted})
    statuses: dict[str, SpecStatus] = dict(carried)
    for entry, body in zip(loaded.entries, desired, strict=True):
        namespace = entry.namespace(default_namespace)
        path = status_path(entry.kind, namespace, entry.name, instance=instance)
        if not observed.complete and path in previous:
            statuses[path] = previous[path]
            continue
        ref = entry.key(default_namespace)
        runs = jobs.get(ref, []) if isinstance(entry.spec, TrainingRun) else []
        subject: tuple[str, ObjectRef] | None = None
        if body is not None:
            subject = (str(body["apiVersion"]), ObjectRef.of(body))
        elif isinstance(entry.spec, ModelDeployment):
            subject = (ISVC_API, inference_service_key(entry, default_namespace))
        elif runs:  # a scheduled TrainingRun between ticks: its newest run
            subject = (str(runs[0]["apiVersion"]), ObjectRef.of(runs[0]))
        key = subject[1] if subject is not None else None
        status = _entry_status(
            entry,
            body,
            subject,
            change=by_key.get(key) if key else None,
            live=observed.objects.get(key) if key else None,
            stale=observed.stale,
            runs=runs,
            rollout=rollouts.get(key) if key else None,
            analysis=analyses.get(key) if key else None,
            schedule=training.schedules.get(ref),
            context=context,
            waiting=pending(entry, context) if body is None else None,
            namespace=namespace,
            instance=instance,
            source_commit=commits.get(entry.path, ""),
            now=now,
            previous=previous,
        )
        statuses[status.path] = status
    problems: dict[str, list[Diagnostic]] = {}
    for diagnostic in loaded.diagnostics:
        problems.setdefault(diagnostic.path, []).append(diagnostic)
    for rejected in loaded.rejected:
        declared = rejected.key(default_namespace)
        status = build_status(
            kind=declared.kind,
            name=declared.name,
            namespace=declared.namespace,
            instance=instance,
            source=rejected.path,
            source_commit=commits.get(rejected.path, ""),
            now=now,
            previous=previous.get(
                status_path(declared.kind, declared.namespace, declared.name, instance=instance)
            ),
            diagnostics=problems.get(rejected.path, ()),
        )
        statuses[status.path] = status
    for path, doc in previous.items():
        if path not in statuses and doc.source in loaded.failed_paths:
            statuses[path] = build_status(
                kind=doc.kind,
                name=doc.name,
                namespace=doc.namespace,
                instance=instance,
                source=doc.source,
                source_commit=commits.get(doc.source, doc.source_commit),
                now=now,
                previous=doc,
                diagnostics=problems.get(doc.source, ()),
            )
    return sorted(statuses.values(), key=lambda s: s.path)


def inference_service_key(entry: Entry, default_namespace: str) -> ObjectRef:
    """The InferenceService a ModelDeployment renders to, known without rendering it."""
    return ObjectRef(
        group=ISVC_API.rpartition("/")[0],
        kind="InferenceService",
        namespace=entry.namespace(default_namespace),
        name=entry.name,
    )


def _entry_status(
    entry: Entry,
    body: Mapping[str, Any] | None,
    subject: tuple[str, ObjectRef] | None,
    *,
    change: Change | None,
    live: Mapping[str, Any] | None,
    stale: frozenset[ObjectRef],
    runs: Sequence[Mapping[str, Any]],
    rollout: Decision | None,
    analysis: Analysis | None,
    schedule: ScheduleDecision | None,
    context: RenderContext,
    waiting: str | None,
    namespace: str,
    instance: str,
    source_commit: str,
    now: str,
    previous: Mapping[str, StatusDocument],
) -> SpecStatus:
    """The status of one spec. ``body`` is what it renders to (None while it waits),
    ``subject`` the API version and key of the object it reports on, if any."""
    before = previous.get(status_path(entry.kind, namespace, entry.name, instance=instance))
    key = subject[1] if subject is not None else None
    health = _health(live, stale=key in stale) if live is not None else None
    model = run = schedule_info = None
    # A decision whose write failed did not happen: the live object keeps the journal
    # it had, so neither its transitions nor its state are told.
    if rollout is not None and change is not None and change.error is not None:
        rollout = None
        kept_rollout = before.rollout if before is not None else None
    else:
        kept_rollout = _rollout_info(rollout) if rollout is not None else None
    transitions = _untold(rollout, before)
    records: list[RunRecord] = []
    if isinstance(entry.spec, ModelDeployment):
        key = entry.key(context.default_namespace)
        trained = context.trained.get(key)
        # A promotion on hold: the model keeps serving, and says what it waits for.
        held = context.waiting.get(key) if trained is not None else None
        model = _model_info(
            entry.spec,
            body,
            health,
            trained,
            namespace=namespace,
            held=held,
            scores=context.scores.get(key, ()),
            before=before,
            now=now,
        )
        if trained is not None and trained.output_uri != _served_uri(before):
            transitions = (_lineage_story(entry.spec, trained), *transitions)
        if held is not None and held != _held(before):
            transitions = (*transitions, f"promotion held: {held}")
    elif isinstance(entry.spec, TrainingRun):
        refs = [(ObjectRef.of(job), job) for job in runs]
        records = [run_record(ref.name, _health(job, stale=ref in stale), job) for ref, job in refs]
        run = next((r for r in records if key is not None and r.name == key.name), None)
        if schedule is not None:
            schedule_info = _schedule_info(schedule, before.schedule if before else None)
            if run is None and not records:
                upcoming = schedule_info.next_tick or "never"
                waiting = f"no run yet; the next tick is at {upcoming}"
    return build_status(
        kind=entry.kind,
        name=entry.name,
        namespace=namespace,
        instance=instance,
        source=entry.path,
        source_commit=source_commit,
        now=now,
        previous=before,
        change=change,
        health=health,
        resources=[format_resource(*subject)] if subject is not None else [],
        model=model,
        run=run,
        runs=records,
        history_limit=entry.spec.spec.history_limit if isinstance(entry.spec, TrainingRun) else 10,
        schedule=schedule_info,
        waiting=waiting,
        rollout=kept_rollout,
        transitions=transitions,
        errors=analysis.errors if analysis is not None else (),
    )


def _untold(rollout: Decision | None, before: StatusDocument | None) -> tuple[str, ...]:
    """What the status commit must tell of a rollout: every transition on the live
    object newer than the last one the status branch told. A document from before
    the journal told everything but this cycle's transition."""
    if rollout is None:
        return ()
    told = before.rollout.told if before is not None and before.rollout is not None else None
    if told is None and before is not None:
        return (rollout.transition,) if rollout.transition else ()
    newest = rollout.state.told_up_to
    if told is not None and (newest is None or newest < told):
        told = None  # the journal started again (the object was recreated): tell it all
    return rollout.state.untold(told)


def _health(live: Mapping[str, Any], *, stale: bool) -> HealthReport:
    """The health of a live object; one just written is waiting for its controller."""
    health = assess(live)
    if not stale:
        return health
    # Its phase is unknown until the controller reports, but where traffic goes
    # right now (the URL, the split) is still what the old status says.
    waiting = Health.PROGRESSING if live.get("kind") == "InferenceService" else Health.PENDING
    return HealthReport(
        waiting,
        "applied; waiting for the controller to report",
        url=health.url,
        traffic=health.traffic,
    )


def _rollout_info(decision: Decision) -> RolloutInfo:
    state = decision.state
    return RolloutInfo(
        phase=state.phase.value,
        traffic=100 if decision.traffic is None else decision.traffic,
        step=state.step + 1,
        canary_revision=state.canary_revision or None,
        stable_revision=state.stable_revision or None,
        started_at=state.started_at or None,
        reason=state.reason or None,
        story=state.story or None,
        told=state.told_up_to,
        evidence=tuple(m.text() for m in state.evidence),
    )


def _model_info(
    spec: ModelDeployment,
    body: Mapping[str, Any] | None,
    health: HealthReport | None,
    trained: TrainedModel | None,
    *,
    namespace: str,
    held: str | None,
    scores: tuple[Score, ...],
    before: StatusDocument | None,
    now: str,
) -> ModelInfo:
    """``namespace`` is the spec's, with the repo's default filled in: an upstream
    named without one is in it."""
    lineage = None
    upstream = spec.spec.model.upstream_label(namespace) if spec.spec.model else None
    # From the spec, so a follower not promoted yet still says whom it follows.
    source = spec.spec.from_training_run or upstream
    if source is not None:
        lineage = Lineage(
            name=source,
            run=(trained.run or None) if trained else None,
            source_commit=(trained.source_commit or None) if trained else None,
            completion_time=(trained.completion_time or None) if trained else None,
            evidence=trained.evidence if trained else (),
            promoted_from=upstream,
            held=held,
            scores=scores,
        )
    storage_uri = ((body or {}).get("spec", {}).get("predictor", {}).get("model") or {}).get(
        "storageUri"
    )
    kept = before.model if before is not None else None
    if storage_uri is None:
        served_since = None
    elif kept is not None and kept.storage_uri == storage_uri and kept.served_since:
        served_since = kept.served_since
    else:
        served_since = now
    return ModelInfo(
        format=spec.spec.model.format if spec.spec.model is not None else None,
        storage_uri=storage_uri,
        served_since=served_since,
        from_training_run=lineage,
        url=(health.url or None) if health else None,
        traffic=tuple(
            Traffic(revision=t.revision, percent=t.percent, latest=t.latest)
            for t in (health.traffic if health else ())
        ),
    )


def _held(doc: StatusDocument | None) -> str | None:
    lineage = doc.model.from_training_run if doc is not None and doc.model is not None else None
    return lineage.held if lineage is not None else None


def _served_uri(doc: StatusDocument | None) -> str | None:
    return doc.model.storage_uri if doc is not None and doc.model is not None else None


def _lineage_story(spec: ModelDeployment, trained: TrainedModel) -> str:
    """The transition a model tells when what it serves changes: which run, which
    commit trained it, the gates it passed, and where it was promoted from."""
    run = f"run {trained.run}" if trained.run else "its model"
    commit = f" (spec {trained.source_commit[:7]})" if trained.source_commit else ""
    gates = f"; gates: {', '.join(trained.evidence)}" if trained.evidence else ""
    if trained.promoted_from is not None:
        return (
            f"promoted from {trained.promoted_from}: serves {trained.output_uri}, "
            f"{run}{commit}{gates}"
        )
    return (
        f"serves {trained.output_uri} from {run} of TrainingRun "
        f"{spec.spec.from_training_run}{commit}{gates}"
    )


def _schedule_info(decision: ScheduleDecision, previous: ScheduleInfo | None) -> ScheduleInfo:
    """The ``schedule`` of a TrainingRun's status. A skipped tick is told until the
    next tick moves lastTick on."""
    last_tick = format_time(decision.last_tick) if decision.last_tick is not None else None
    skipped = decision.skipped
    if skipped is None and previous is not None and previous.last_tick == last_tick:
        skipped = previous.skipped
    return ScheduleInfo(
        since=format_time(decision.since),
        last_tick=last_tick,
        next_tick=format_time(decision.next_tick) if decision.next_tick is not None else None,
        skipped=skipped or None,
    )
