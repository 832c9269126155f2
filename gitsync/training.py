"""What a cycle decides about training runs, from the cluster and the status branch.

Pure: given the live jobs (by their TrainingRun label), the inventory of the status
branch and the time, it says which run each scheduled TrainingRun starts at this
tick, which runs retire (replaced at a tick, or beyond ``historyLimit``), and which
run each ``fromTrainingRun`` model serves. Rendering and status take these as data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gitsync.health import Health, assess
from gitsync.inventory import Inventory
from gitsync.loading import Entry
from gitsync.render import (
    ANNOTATION_SCHEDULED_AT,
    LABEL_TRAINING_RUN,
    RenderContext,
    TrainedModel,
    render,
)
from gitsync.render.training import JOB_KINDS
from gitsync.schedule import RunFacts, ScheduleDecision, decide_schedule, format_time, parse_time
from gitsync.specs import ModelDeployment, TrainingRun
from gitsync.status import run_record
from gitsync.status_document import RunRecord
from gitsync.types import ObjectRef

__all__ = [
    "JOB_KINDS",
    "TrainingPlan",
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
    #: The run each fromTrainingRun model serves, by the TrainingRun it names.
    trained: Mapping[ObjectRef, TrainedModel]
    #: Runs to delete, and why.
    retire: Mapping[ObjectRef, str]

    @property
    def ticks(self) -> dict[ObjectRef, datetime]:
        """The tick each scheduled run starts now, for rendering its job."""
        return {ref: d.start for ref, d in self.schedules.items() if d.start is not None}

    @property
    def wake_at(self) -> datetime | None:
        """The next tick of any schedule: a quiet daemon must look again then."""
        ticks = [d.next_tick for d in self.schedules.values() if d.next_tick is not None]
        return min(ticks, default=None)


def plan_training(
    entries: Sequence[Entry],
    live: Mapping[ObjectRef, Mapping[str, Any]],
    *,
    inventory: Inventory,
    default_namespace: str,
    now: datetime,
) -> TrainingPlan:
    jobs = jobs_by_training_run(live)
    schedules: dict[ObjectRef, ScheduleDecision] = {}
    retire: dict[ObjectRef, str] = {}
    trained: dict[ObjectRef, TrainedModel] = {}
    for entry in entries:
        spec = entry.spec
        namespace = entry.namespace(default_namespace)
        if isinstance(spec, ModelDeployment):
            ref = spec.spec.training_run(namespace)
            if ref is not None and (
                found := _latest_success(jobs.get(ref, ()), inventory.runs(ref))
            ):
                trained[ref] = found
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
    return TrainingPlan(jobs=jobs, schedules=schedules, trained=trained, retire=retire)


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


def _latest_success(
    jobs: Sequence[Mapping[str, Any]], remembered: Sequence[RunRecord]
) -> TrainedModel | None:
    """The latest Succeeded run that names an output, by completion time: live jobs
    first, then the status history (a job may be gone after its TTL)."""
    records = [run_record(_name(job), assess(job), job) for job in jobs]
    seen = {r.name for r in records}
    records += [r for r in remembered if r.name not in seen]
    succeeded = [r for r in records if r.phase == Health.SUCCEEDED.value and r.output_uri]
    if not succeeded:
        return None
    best = max(succeeded, key=lambda r: (r.completion_time or "", r.name))
    return TrainedModel(
        run=best.name,
        output_uri=str(best.output_uri),
        completion_time=best.completion_time or "",
        source_commit=best.source_commit or "",
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
    tick = decision.next_tick or decision.last_tick or decision.since
    return render(entry, replace(context, ticks={**context.ticks, ref: tick}))


def resolution(entry: Entry, context: RenderContext) -> TrainedModel | datetime | None:
    """What of the context's resolved data an entry's rendering depends on."""
    namespace = entry.namespace(context.default_namespace)
    spec = entry.spec
    if isinstance(spec, ModelDeployment) and (ref := spec.spec.training_run(namespace)):
        return context.trained.get(ref)
    if isinstance(spec, TrainingRun):
        return context.ticks.get(entry.key(context.default_namespace))
    return None


def _metadata_map(obj: Mapping[str, Any], field_name: str) -> Mapping[str, Any]:
    return ((obj.get("metadata") or {}).get(field_name)) or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))
