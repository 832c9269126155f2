"""What a cycle decides about training runs, from the cluster and the status branch.

Pure: given the live jobs (by their TrainingRun label), the inventory of the status
branch and the time, it says which run each scheduled TrainingRun starts at this
tick, which runs retire (replaced at a tick, or beyond ``historyLimit``), and which
run each ``fromTrainingRun`` model serves. Rendering and status take these as data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from gitsync.health import Health, assess
from gitsync.inventory import Inventory
from gitsync.loading import Entry
from gitsync.pipeline import (
    Answer,
    Candidate,
    Question,
    choose_run,
    decide_promotion,
    gate_questions,
    remembered,
    scores_of,
    with_answers,
)
from gitsync.render import (
    ANNOTATION_SCHEDULED_AT,
    LABEL_TRAINING_RUN,
    RenderContext,
    TrainedModel,
    render,
)
from gitsync.render.training import JOB_KINDS
from gitsync.schedule import (
    RunFacts,
    ScheduleDecision,
    decide_schedule,
    format_time,
    next_tick,
    parse_time,
)
from gitsync.specs import ModelDeployment, ModelSource, TrainingRun
from gitsync.specs.pipeline import RunSelection
from gitsync.status import run_record, status_path
from gitsync.status_document import RunRecord, Score, StatusDocument
from gitsync.types import ObjectRef

#: How soon a model waiting on a gate's query asks again.
QUERY_RECHECK: Final = timedelta(seconds=60)

__all__ = [
    "JOB_KINDS",
    "QUERY_RECHECK",
    "TrainingPlan",
    "followed",
    "gate_questions_of",
    "jobs_by_training_run",
    "plan_training",
    "preview",
    "resolution",
]


@dataclass(frozen=True, slots=True)
class TrainingPlan:
    #: Each TrainingRun's jobs, newest first.
    jobs: Mapping[ObjectRef, Sequence[Mapping[str, Any]]]
    schedules: Mapping[ObjectRef, ScheduleDecision]
    #: What each fromTrainingRun or fromModelDeployment model serves, by the model.
    trained: Mapping[ObjectRef, TrainedModel]
    #: Runs to delete, and why.
    retire: Mapping[ObjectRef, str]
    #: By model: why it serves nothing (new) yet: gates not passed, a promotion held.
    waiting: Mapping[ObjectRef, str] = field(default_factory=dict)
    #: When a held promotion's hold ends, or a model waiting on a gate's query asks
    #: Prometheus again.
    due: tuple[datetime, ...] = ()
    #: By model: what its queried gates were answered for its runs, to record.
    scores: Mapping[ObjectRef, tuple[Score, ...]] = field(default_factory=dict)

    @property
    def ticks(self) -> dict[ObjectRef, datetime]:
        """The tick each scheduled run starts now, for rendering its job."""
        return {ref: d.start for ref, d in self.schedules.items() if d.start is not None}

    @property
    def wake_at(self) -> datetime | None:
        """The next tick of any schedule, the end of a promotion's hold, or a gate's
        next question: a quiet daemon must look again then."""
        ticks = [d.next_tick for d in self.schedules.values() if d.next_tick is not None]
        return min([*ticks, *self.due], default=None)


def plan_training(
    entries: Sequence[Entry],
    live: Mapping[ObjectRef, Mapping[str, Any]],
    *,
    inventory: Inventory,
    default_namespace: str,
    now: datetime,
    answers: Mapping[Question, Answer] | None = None,
) -> TrainingPlan:
    """``answers`` are Prometheus' answers to :func:`gate_questions_of` the same
    entries, asked by the cycle before it plans."""
    jobs = jobs_by_training_run(live)
    schedules: dict[ObjectRef, ScheduleDecision] = {}
    retire: dict[ObjectRef, str] = {}
    trained: dict[ObjectRef, TrainedModel] = {}
    waiting: dict[ObjectRef, str] = {}
    due: list[datetime] = []
    scores: dict[ObjectRef, tuple[Score, ...]] = {}
    for entry in entries:
        spec = entry.spec
        namespace = entry.namespace(default_namespace)
        if isinstance(spec, ModelDeployment):
            key = entry.key(default_namespace)
            served = _served(
                spec,
                key,
                jobs=jobs,
                inventory=inventory,
                namespace=namespace,
                now=now,
                answers=answers or {},
            )
            if served.trained is not None:
                trained[key] = served.trained
            if served.waiting is not None:
                waiting[key] = served.waiting
            if served.due is not None:
                due.append(served.due)
            if served.scores:
                scores[key] = served.scores
            continue
        if not isinstance(spec, TrainingRun):
            continue
        ref = entry.key(default_namespace)
        runs = jobs.get(ref, [])
        if spec.spec.schedule is not None:
            decision = _schedule(spec, runs, inventory=inventory, ref=ref, now=now)
            schedules[ref] = decision
            if decision.start is not None:
                replaced = (
                    f"replaced by the run of tick {format_time(decision.start)} "
                    "(concurrencyPolicy Replace)"
                )
                retire |= {ObjectRef.of(j): replaced for j in runs if _name(j) in decision.replace}
        finished = [job for job in runs if assess(job).health.finished]
        for job in finished[spec.spec.history_limit :]:
            retire.setdefault(ObjectRef.of(job), f"beyond historyLimit {spec.spec.history_limit}")
    return TrainingPlan(
        jobs=jobs,
        schedules=schedules,
        trained=trained,
        retire=retire,
        waiting=waiting,
        due=tuple(due),
        scores=scores,
    )


def gate_questions_of(
    entries: Sequence[Entry],
    live: Mapping[ObjectRef, Mapping[str, Any]],
    *,
    inventory: Inventory,
    default_namespace: str,
) -> frozenset[Question]:
    """The PromQL questions the models' gates ask of the runs they choose among, but
    for those a model's recorded scores answer already."""
    jobs = jobs_by_training_run(live)
    questions: set[Question] = set()
    for entry in entries:
        spec = entry.spec
        if not isinstance(spec, ModelDeployment) or spec.spec.model is None:
            continue
        model = spec.spec.model
        ref = model.training_run(entry.namespace(default_namespace))
        if ref is None or not any(gate.query for gate in model.gates):
            continue
        candidates = _candidates(jobs.get(ref, ()), inventory.runs(ref))
        asked = gate_questions(candidates, model.gates, training_run=ref)
        known = remembered(asked, _scores(inventory.document(entry.key(default_namespace))))
        questions |= asked - known.keys()
    return frozenset(questions)


@dataclass(frozen=True, slots=True)
class _Served:
    """What a model fed from upstream serves now, why not (or not a newer one), when
    to look again, and the gate scores to record."""

    trained: TrainedModel | None = None
    waiting: str | None = None
    due: datetime | None = None
    scores: tuple[Score, ...] = ()


def _served(
    spec: ModelDeployment,
    key: ObjectRef,
    *,
    jobs: Mapping[ObjectRef, Sequence[Mapping[str, Any]]],
    inventory: Inventory,
    namespace: str,
    now: datetime,
    answers: Mapping[Question, Answer],
) -> _Served:
    model = spec.spec.model
    if model is None:
        return _Served()
    if (ref := model.training_run(namespace)) is not None:
        return _from_run(
            model,
            ref,
            jobs=jobs,
            inventory=inventory,
            answers=answers,
            recorded=_scores(inventory.document(key)),
            now=now,
        )
    upstream, source = model.upstream(namespace), model.from_model_deployment
    label = model.upstream_label(namespace)
    if upstream is None or source is None or label is None:
        return _Served()
    document = inventory.document(upstream, instance=source.instance)
    promotion = decide_promotion(source, document, now=now)
    if promotion.take is not None and promotion.upstream is not None:
        return _Served(_carried(promotion.take, promotion.upstream, upstream=label))
    # Held: the model keeps what it serves (its own last status says what that is).
    own = inventory.document(key)
    if own is None or own.model is None or own.model.storage_uri is None:
        return _Served(waiting=f"waiting to promote: {promotion.waiting}", due=promotion.due)
    return _Served(
        _carried(own.model.storage_uri, own, upstream=label),
        waiting=promotion.waiting,
        due=promotion.due,
    )


def _from_run(
    model: ModelSource,
    ref: ObjectRef,
    *,
    jobs: Mapping[ObjectRef, Sequence[Mapping[str, Any]]],
    inventory: Inventory,
    answers: Mapping[Question, Answer],
    recorded: Sequence[Score],
    now: datetime,
) -> _Served:
    """The run of TrainingRun ``ref`` the model serves, or why none. A run's recorded
    score answers its question; Prometheus' answers this cycle, the rest."""
    runs = _candidates(jobs.get(ref, ()), inventory.runs(ref))
    questions = gate_questions(runs, model.gates, training_run=ref)
    known = {
        **{q: answers[q] for q in questions if q in answers},
        **remembered(questions, recorded),
    }
    candidates = [with_answers(c, model.gates, known, training_run=ref) for c in runs]
    scores = scores_of(runs, model.gates, known, training_run=ref)
    # Prometheus may answer later (an evaluation job still to push a run's score):
    # while a run has no score, the model looks again without a new commit; a query
    # Prometheus refuses waits for the commit that fixes it.
    unscored = [
        q for q in questions if (a := known.get(q)) is None or (a.value is None and a.retry)
    ]
    due = now + QUERY_RECHECK if unscored else None
    choice = choose_run(candidates, selection=model.select or RunSelection(), gates=model.gates)
    if choice.chosen is None:
        if not choice.judged:
            why = f"waiting for a Succeeded run of TrainingRun {ref.namespace}/{ref.name}"
        else:
            why = f"waiting for TrainingRun {ref.namespace}/{ref.name}: {choice.reason}"
        return _Served(waiting=why, due=due, scores=scores)
    chosen = choice.chosen
    passed = next(j for j in choice.judged if j.run == chosen.run)
    trained = TrainedModel(
        run=chosen.run,
        output_uri=chosen.output_uri,
        completion_time=chosen.completion_time,
        source_commit=chosen.source_commit,
        evidence=passed.evidence,
    )
    return _Served(trained, due=due, scores=scores)


def _scores(document: StatusDocument | None) -> tuple[Score, ...]:
    """The gate scores a model's document recorded."""
    lineage = document.model.from_training_run if document and document.model else None
    return lineage.scores if lineage is not None else ()


def followed(entries: Sequence[Entry], *, default_namespace: str, instance: str) -> frozenset[str]:
    """The status documents of other instances that this one's models are promoted
    from: what the cycle reads of the shared branch besides its own folder."""
    paths = set()
    for entry in entries:
        spec = entry.spec
        if not isinstance(spec, ModelDeployment) or spec.spec.model is None:
            continue
        source = spec.spec.model.from_model_deployment
        upstream = spec.spec.model.upstream(entry.namespace(default_namespace))
        if source is None or upstream is None or source.instance in (None, instance):
            continue
        paths.add(
            status_path(upstream.kind, upstream.namespace, upstream.name, instance=source.instance)
        )
    return frozenset(paths)


def _carried(output_uri: str, document: StatusDocument, *, upstream: str) -> TrainedModel:
    """A promoted model's serving, with the lineage ``document`` records for it (the
    run that trained it, the commit, the gates it passed)."""
    lineage = document.model.from_training_run if document.model else None
    return TrainedModel(
        run=(lineage.run if lineage else None) or "",
        output_uri=output_uri,
        completion_time=(lineage.completion_time if lineage else None) or "",
        source_commit=(lineage.source_commit if lineage else None) or "",
        evidence=lineage.evidence if lineage else (),
        promoted_from=upstream,
    )


def _candidates(
    jobs: Sequence[Mapping[str, Any]], remembered: Sequence[RunRecord]
) -> list[Candidate]:
    """The Succeeded runs that name an output, live jobs first, then the status
    history (a job may be gone after its TTL), with the metrics they reported."""
    records = [run_record(_name(job), assess(job), job) for job in jobs]
    seen = {r.name for r in records}
    records += [r for r in remembered if r.name not in seen]
    return [
        Candidate(
            run=r.name,
            output_uri=str(r.output_uri),
            completion_time=r.completion_time or "",
            source_commit=r.source_commit or "",
            metrics=_metrics(r),
        )
        for r in records
        if r.phase == Health.SUCCEEDED.value and r.output_uri
    ]


def _metrics(record: RunRecord) -> dict[str, float]:
    """A run's reported metrics that are numbers (the CRD carries them as text)."""
    reported = (record.trainer_status.metrics if record.trainer_status else None) or {}
    numbers: dict[str, float] = {}
    for name, text in reported.items():
        try:
            value = float(text)
        except ValueError:
            continue
        if math.isfinite(value):
            numbers[name] = value
    return numbers


def _schedule(
    spec: TrainingRun,
    jobs: Sequence[Mapping[str, Any]],
    *,
    inventory: Inventory,
    ref: ObjectRef,
    now: datetime,
) -> ScheduleDecision:
    assert spec.spec.schedule is not None  # noqa: S101 - the caller checked
    recorded = inventory.schedule(ref)
    live = [
        RunFacts(
            name=_name(job),
            active=not assess(job).health.finished,
            scheduled_at=parse_time(_metadata_map(job, "annotations").get(ANNOTATION_SCHEDULED_AT)),
        )
        for job in jobs
    ]
    remembered = [
        RunFacts(name=r.name, active=False, scheduled_at=parse_time(r.scheduled_at))
        for r in inventory.runs(ref)
        if r.scheduled_at
    ]
    return decide_schedule(
        schedule=spec.spec.schedule,
        policy=spec.spec.concurrency_policy,
        runs=[*live, *remembered],
        since=parse_time(recorded.since if recorded else None),
        recorded_tick=parse_time(recorded.last_tick if recorded else None),
        now=now,
    )


def jobs_by_training_run(
    objects: Mapping[ObjectRef, Mapping[str, Any]],
) -> dict[ObjectRef, list[Mapping[str, Any]]]:
    """The training jobs among ``objects`` by the TrainingRun they ran for, newest first."""
    jobs: dict[ObjectRef, list[Mapping[str, Any]]] = {}
    for key, obj in objects.items():
        if key.kind in JOB_KINDS and (
            owner := _metadata_map(obj, "labels").get(LABEL_TRAINING_RUN)
        ):
            jobs.setdefault(ObjectRef.spec("TrainingRun", key.namespace, str(owner)), []).append(
                obj
            )
    for runs in jobs.values():
        # Created in the same second (two ticks caught up at once): the tick decides.
        runs.sort(
            key=lambda job: (
                str((job.get("metadata") or {}).get("creationTimestamp") or ""),
                str(_metadata_map(job, "annotations").get(ANNOTATION_SCHEDULED_AT) or ""),
                _name(job),
            ),
            reverse=True,
        )
    return jobs


def preview(entry: Entry, context: RenderContext, plan: TrainingPlan) -> dict[str, Any] | None:
    """What policies judge of an entry with nothing to apply: for a scheduled run
    between ticks, the run its next tick would start (what a run does is the same at
    every tick). A model waiting for its training run has no rendering yet."""
    ref = entry.key(context.default_namespace)
    decision = plan.schedules.get(ref)
    if not isinstance(entry.spec, TrainingRun) or decision is None:
        return None
    return _at_tick(entry, context, decision.next_tick or decision.last_tick or decision.since)


def preview_unplanned(
    entry: Entry, context: RenderContext, *, now: datetime
) -> dict[str, Any] | None:
    """:func:`preview` outside a cycle (``validate``, ``plan``), where nothing is known
    of the cluster: a scheduled run is judged as the run its next tick after ``now``
    would start. Without this a policy reading the rendered job saw nothing, and
    denied every scheduled run a sync accepts."""
    spec = entry.spec
    if not isinstance(spec, TrainingRun) or spec.spec.schedule is None:
        return None
    return _at_tick(entry, context, next_tick(schedule=spec.spec.schedule, after=now) or now)


def _at_tick(entry: Entry, context: RenderContext, tick: datetime) -> dict[str, Any]:
    ref = entry.key(context.default_namespace)
    return render(entry, replace(context, ticks={**context.ticks, ref: tick}))


def resolution(entry: Entry, context: RenderContext) -> TrainedModel | datetime | str | None:
    """What of the context's resolved data an entry's rendering depends on."""
    spec = entry.spec
    if isinstance(spec, ModelDeployment) and spec.spec.resolved:
        key = entry.key(context.default_namespace)
        return context.trained.get(key) or context.waiting.get(key)
    if isinstance(spec, TrainingRun):
        return context.ticks.get(entry.key(context.default_namespace))
    return None


def _metadata_map(obj: Mapping[str, Any], field_name: str) -> Mapping[str, Any]:
    return ((obj.get("metadata") or {}).get(field_name)) or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))
