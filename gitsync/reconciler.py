"""One reconcile cycle: Git -> validated specs -> cluster -> status back in Git.

A cycle is the ordered list of steps in :attr:`Reconciler.STEPS`. Each step takes
the frozen :class:`Cycle` (what the cycle has learnt so far) and returns it with
more filled in, or a :class:`Stop` that ends the cycle early. Whatever happens,
the statuses the cycle can vouch for are published in ``finally``, and the cycle
ends in a typed :class:`~gitsync.result.CycleResult` that tells the daemon when to
run again. The CLI runs one cycle; the daemon runs them on a schedule.

The logic lives in the modules the steps call (loading, evaluation, training,
rollout, analysis, diff, apply, spec_status); the steps only pass data between
them. What is worth keeping between cycles is kept by the collaborators that own it
(the evaluator's renderings and verdicts, the status store's documents, the live
source's informers), so a cycle in which nothing changed reads no YAML, writes
nothing to the cluster and commits nothing.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson
import structlog

from gitsync.analysis import Analysis, MetricsSource, MetricsSources, measure
from gitsync.apply import execute
from gitsync.cache import DiskCache
from gitsync.clients.git import Author, GitSource, LastChanges, Revision
from gitsync.clients.kube import KubeClient, resource_version
from gitsync.clients.prometheus import PrometheusClient
from gitsync.diff import Action, ChangeSet, HoldsMemo, PrunePolicy, holds, plan_changes
from gitsync.errors import GitError, GitsyncError, LeadershipLostError, Remedy
from gitsync.evaluation import Evaluation, Evaluator
from gitsync.event_recorder import EventRecorder
from gitsync.events import cycle_events
from gitsync.focus import Focus, Listed, narrow
from gitsync.health import Health, assess
from gitsync.inventory import Inventory
from gitsync.ledger import Ledger, version_of
from gitsync.live import (
    ListedSource,
    LiveSource,
    WatchedSource,
    instance_selector,
    kinds_to_observe,
)
from gitsync.loading import Diagnostic, FileResult
from gitsync.pipeline import Answer, Question
from gitsync.render import RenderContext, pending
from gitsync.render.training import TRAINJOB_API
from gitsync.replay import Observed, Settled
from gitsync.result import CycleResult, Outcome
from gitsync.revert import revert_proposals
from gitsync.rollout import (
    Decision,
    RolloutState,
    analysis_due,
    decide,
    next_due,
    predictor_hash,
)
from gitsync.rollout import with_decision as _with_decision
from gitsync.schedule import format_time
from gitsync.sharding import WHOLE, Shard, keep_declared_elsewhere
from gitsync.snapshot import Snapshot, read_snapshot
from gitsync.spec_status import ISVC_API, Observations, inference_service_key, spec_statuses
from gitsync.specs import DEFAULT_STATUS_BRANCH, ModelDeployment, TrainingRun
from gitsync.status import SpecStatus
from gitsync.status_document import dump_document
from gitsync.status_store import StatusStore
from gitsync.training import (
    TrainingPlan,
    followed,
    gate_questions_of,
    plan_training,
    preview,
)
from gitsync.types import ObjectRef
from gitsync.verdict_cache import DiskVerdictStore

__all__ = ["Cycle", "CycleReport", "Reconciler", "Stop", "SyncOptions"]

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

#: Kinds gitsync renders itself; listed every cycle so removed specs can be pruned.
_RENDERED_KINDS: tuple[tuple[str, str], ...] = (
    (ISVC_API, "InferenceService"),
    ("kubeflow.org/v1", "TFJob"),
    ("kubeflow.org/v1", "PyTorchJob"),
    (TRAINJOB_API, "TrainJob"),
)
_CONTROLLED_KINDS = frozenset(kind for _, kind in _RENDERED_KINDS)
_SETTLED = {Health.HEALTHY, Health.SUCCEEDED, Health.FAILED, Health.DEGRADED, Health.RUNNING}

DEFAULT_AUTHOR = Author("gitsync", "gitsync@localhost")


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """What to reconcile and how; the CLI and the daemon build one from flags."""

    path: str = ""
    instance: str = "default"
    status_branch: str | None = None
    status_author: Author = DEFAULT_AUTHOR
    wait_timeout: float = 0.0
    #: This process's share of the instance's spec files (and of their objects).
    shard: Shard = WHOLE


@dataclass(frozen=True, slots=True, kw_only=True)
class Cycle:
    """What one cycle has learnt so far; each step returns it with more filled in."""

    id: str
    now: datetime
    #: The last sync's ledger this cycle starts from (see __init__).
    start_from: Ledger | None = None
    revision: Revision | None = None
    live_version: int | None = None
    snapshot: Snapshot | None = None
    last_changes: LastChanges | None = None
    status_branch: str = ""
    inventory: Inventory | None = None
    #: Other instances' status documents the specs follow (see read_inventory).
    follows: frozenset[str] = frozenset()
    live: Mapping[ObjectRef, Mapping[str, Any]] = field(default_factory=dict)
    observed_live: bool = False
    #: The specs taken afresh when the others' outcomes carry from the last sync's
    #: (see gitsync.focus); None: every spec.
    focus: Focus | None = None
    training: TrainingPlan = field(default_factory=lambda: TrainingPlan({}, {}, {}, {}))
    #: Some gate query got no number (an error, not "no data"): asked again by the
    #: next sync, whatever the daemon's recheck rules (see _settlement).
    query_failed: bool = False
    context: RenderContext | None = None
    evaluation: Evaluation | None = None
    #: The evaluation's bodies with each canary's decided traffic split.
    desired: tuple[dict[str, Any] | None, ...] = ()
    rollouts: Mapping[ObjectRef, Decision] = field(default_factory=dict)
    analyses: Mapping[ObjectRef, Analysis] = field(default_factory=dict)
    #: Seconds until a rollout has timed work (an analysis, a pause ending).
    requeue_after: float | None = None
    plan: ChangeSet | None = None
    changes: ChangeSet = field(default_factory=ChangeSet)
    written: Mapping[ObjectRef, Mapping[str, Any]] = field(default_factory=dict)
    #: The API server went away during the writes: what was done is recorded above.
    interrupted: GitsyncError | None = None
    observed: Observations = field(default_factory=lambda: Observations(complete=False))

    @staticmethod
    def need(value: _T | None, what: str) -> _T:
        """``value``, known because an earlier step provided it."""
        if value is None:  # a step ran before the one that provides it: a bug
            raise RuntimeError(f"cycle step order: {what} is not known yet")
        return value


@dataclass(frozen=True, slots=True)
class Stop:
    """Ends a cycle before its last step."""

    result: CycleResult
    diagnostics: tuple[Diagnostic, ...] = ()
    skipped: bool = False


Step = Callable[["Reconciler", Cycle], "Cycle | Stop"]


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle found and did, and when to run again."""

    cycle_id: str
    revision: Revision | None
    changes: ChangeSet
    diagnostics: tuple[Diagnostic, ...]
    statuses: tuple[SpecStatus, ...]
    status_commit: str | None
    result: CycleResult
    #: The error that cut the cycle short, if one did.
    error: GitsyncError | None = None
    status_error: str | None = None
    skipped: bool = False
    duration: float = 0.0
    #: The canary analyses this cycle ran, by the InferenceService measured.
    analyses: Mapping[ObjectRef, Analysis] = field(default_factory=dict)
    #: The rollout decisions taken, the objects as last seen, and the status
    #: documents the cycle started from: what the cycle's Events are derived from.
    rollouts: Mapping[ObjectRef, Decision] = field(default_factory=dict)
    objects: Mapping[ObjectRef, Mapping[str, Any]] = field(default_factory=dict)
    previous: Mapping[str, SpecStatus] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """True when something could not be done: a spec invalid or not applied, a
        prune refused, the status not published, or the cycle cut short."""
        return bool(
            self.diagnostics
            or self.changes.failures
            or self.changes.prune_refused
            or self.status_error
            or self.result.outcome is not Outcome.SUCCEEDED
        )


@dataclass(frozen=True, slots=True)
class _Memo:
    """What a cycle leaves for the next to decide whether it may skip, and to read
    only what changed."""

    head: str | None = None
    live_version: int | None = None
    #: Nothing is left that another try of the same commit could change.
    settled: bool = False
    #: The next schedule tick: a settled cycle is not skipped from then on.
    wake_at: datetime | None = None
    parsed: Mapping[str, FileResult] = field(default_factory=dict)
    last_changes: LastChanges | None = None
    kinds: frozenset[tuple[str, str]] = frozenset()
    #: For an instance following another's documents: the status branch, and its
    #: head as this instance last knew it. Another instance's status commit moves
    #: nothing this one watches, so a settled cycle looks at the branch before it
    #: skips.
    watched_status: tuple[str, str | None] | None = None
    #: The status branch the last loaded gitsync.yaml names.
    status_branch: str | None = None


class Reconciler:
    """Reconciles one spec folder of one Git branch into one cluster."""

    def __init__(
        self,
        *,
        git: GitSource,
        kube: KubeClient,
        options: SyncOptions,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        watch: bool = False,
        metrics: MetricsSources | None = None,
        cache_dir: Path | None = None,
        may_write: Callable[[], bool] = lambda: True,
        events: EventRecorder | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        """``watch`` keeps live objects current with informers (for the daemon) instead
        of listing them every cycle, and lets a cycle with nothing new end at once;
        ``cache_dir`` keeps policy verdicts, and the YAML of spec files and status
        documents, beyond this process (in eval/, specs/ and status/ of a folder of
        this configuration's under its scopes/).
        ``may_write`` is asked before every apply, delete and push (the leader
        election's guard): once it says no, the cycle writes nothing more; ``events``
        posts each cycle's Events on the objects it touched. ``ledger`` is what the
        last sync of these options found unchanged, as a former process left it (see
        gitsync.replay): the first cycle takes afresh only the specs whose inputs
        moved since and carries the others' outcomes (see gitsync.focus). Only the
        first: later cycles of a process keep their own memory instead, in which a
        carried spec's last accepted version is missing (a later cycle's policies see
        it as new). So a ledger is for a reconciler of one cycle, as `gitsync sync`
        runs it; the daemon never takes one."""
        self._git = git
        self._may_write = may_write
        self._events = events
        self._kube = kube
        self._options = options
        self._clock = clock
        self._metrics = metrics or self._prometheus
        self._prometheus_clients: dict[str, PrometheusClient] = {}
        selector = instance_selector(options.instance)
        self._live_source: LiveSource = (
            WatchedSource(kube, selector=selector)
            if watch
            else ListedSource(kube, selector=selector)
        )
        caches = _caches(cache_dir, git=git, options=options)
        self._caches = tuple(caches.values())
        self._evaluator = Evaluator(store=DiskVerdictStore(caches["eval"]) if caches else None)
        self._store = StatusStore(
            git,
            author=options.status_author,
            instance=options.instance,
            parsed=caches.get("status"),
            shard=options.shard,
        )
        self._documents = caches.get("specs")
        self._programs = caches.get("eval")
        self._namespaces: set[str] = set()
        self._holds: HoldsMemo = {}
        self._memo = _Memo()
        self._settled: Settled | None = None
        self._ledger: Ledger | None = None
        self._start_from = ledger

    @property
    def mirror(self) -> Path:
        """The bare mirror of the spec repo this reconciler fetches into."""
        return self._git.path

    @property
    def settled(self) -> Settled | None:
        """What the last cycle read, when running it again on the same inputs would
        write nothing and report the same (see :mod:`gitsync.replay`); None when it
        wrote, failed, has a rollout in progress, or listed nothing (the daemon's
        informers keep their own account)."""
        return self._settled

    @property
    def ledger(self) -> Ledger | None:
        """What the last cycle found unchanged, for a later process's first cycle to
        carry (see gitsync.focus); None when it was cut short, its statuses were not
        published, or it listed nothing (the daemon's informers keep their own)."""
        return self._ledger

    @property
    def status_branch(self) -> str:
        """The status branch it writes: the option, else what the spec repo's
        gitsync.yaml named at the last cycle that read it, else the default."""
        return self._options.status_branch or self._memo.status_branch or DEFAULT_STATUS_BRANCH

    def close(self) -> None:
        """Stop the informers, if any, post the Events still queued, close the
        metrics clients, and compact the disk caches (see :mod:`gitsync.cache`)."""
        self._live_source.close()
        if self._events is not None:
            self._events.close()
        for client in self._prometheus_clients.values():
            client.close()
        for cache in self._caches:
            cache.compact()

    def _prometheus(self, address: str) -> MetricsSource:
        """One client (one connection pool) per Prometheus address, for the process."""
        if (client := self._prometheus_clients.get(address)) is None:
            client = self._prometheus_clients[address] = PrometheusClient(address)
        return client

    # --- the cycle ----------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        """Run the steps in order; publish what is known; say when to run again."""
        started = time.monotonic()
        cycle = Cycle(id=uuid.uuid4().hex[:12], now=self._clock(), start_from=self._start_from)
        self._start_from = None
        stop: Stop | None = None
        error: GitsyncError | None = None
        try:
            for step in self.STEPS:
                outcome = step(self, cycle)
                if isinstance(outcome, Stop):
                    stop = outcome
                    break
                cycle = outcome
        except GitsyncError as exc:
            error = exc
        finally:
            # Also on an unexpected exception: what was applied gets its status.
            statuses = self._statuses(cycle, skip=stop is not None)
            if self._events is not None and not (stop is not None and stop.skipped):
                # Queued before the statuses are committed, so the API server takes
                # them while this process dumps and commits (a first sync of 1,000
                # spent 0.6 s on each, one after the other); an Event never holds up
                # or fails a cycle (see gitsync.event_recorder).
                self._events.record(
                    cycle_events(
                        changes=cycle.changes,
                        rollouts=cycle.rollouts,
                        statuses=statuses or [],
                        objects=cycle.observed.objects,
                        previous=cycle.inventory.documents if cycle.inventory is not None else {},
                    )
                )
            status_commit, status_error = self._publish(cycle, statuses)
        error = cycle.interrupted or error  # the first cause, when the writes were cut short
        if stop is not None and stop.skipped:
            return self._report(cycle, stop, started=started)
        result = self._result(cycle, stop=stop, error=error, status_error=status_error)
        report = CycleReport(
            cycle_id=cycle.id,
            revision=cycle.revision,
            changes=cycle.changes,
            diagnostics=stop.diagnostics if stop else self._diagnostics(cycle),
            statuses=tuple(statuses or ()),
            status_commit=status_commit,
            result=result,
            error=error,
            status_error=str(status_error) if status_error else None,
            duration=time.monotonic() - started,
            analyses=cycle.analyses,
            rollouts=cycle.rollouts,
            objects=cycle.observed.objects,
            previous=cycle.inventory.documents if cycle.inventory is not None else {},
        )
        self._remember(cycle, report)
        self._log(cycle, report)
        return report

    # --- steps, in order ----------------------------------------------------------------

    def _fetch_source(self, cycle: Cycle) -> Cycle | Stop:
        return replace(cycle, revision=self._git.fetch(), live_version=self._live_source.version)

    def _skip_if_settled(self, cycle: Cycle) -> Cycle | Stop:
        memo, revision = self._memo, cycle.need(cycle.revision, "revision")
        if (
            memo.settled
            and revision.commit == memo.head
            and cycle.live_version is not None
            and cycle.live_version == memo.live_version
            and (memo.wake_at is None or cycle.now < memo.wake_at)
            and not self._others_moved(memo.watched_status)
        ):
            return Stop(CycleResult.succeeded(), skipped=True)
        self._memo = replace(memo, settled=False)
        return cycle

    def _load_specs(self, cycle: Cycle) -> Cycle | Stop:
        revision = cycle.need(cycle.revision, "revision")
        snapshot = read_snapshot(
            self._git,
            revision.commit,
            root=self._options.path,
            parsed=self._memo.parsed,
            documents=self._documents,
            programs=self._programs,
            shard=self._options.shard,
        )
        self._memo = replace(self._memo, parsed=snapshot.parsed)
        if snapshot.config_diagnostics:
            # Without a valid gitsync.yaml the defaults are unknown: apply nothing,
            # prune nothing, publish nothing, and say why.
            log.warning("invalid gitsync.yaml; nothing applied")
            return Stop(
                CycleResult.stalled(
                    str(snapshot.config_diagnostics[0]), remedy=Remedy.WAIT_FOR_COMMIT
                ),
                diagnostics=snapshot.config_diagnostics,
            )
        last_changes = self._git.last_changes(
            revision.commit, list(snapshot.blobs), previous=self._memo.last_changes
        )
        self._memo = replace(
            self._memo, last_changes=last_changes, status_branch=snapshot.config.status_branch
        )
        return replace(
            cycle,
            snapshot=snapshot,
            last_changes=last_changes,
            status_branch=self._options.status_branch or snapshot.config.status_branch,
        )

    def _read_inventory(self, cycle: Cycle) -> Cycle | Stop:
        snapshot = cycle.need(cycle.snapshot, "snapshot")
        follow = followed(
            snapshot.loaded.entries,
            default_namespace=snapshot.config.defaults.namespace,
            instance=self._options.instance,
        )
        inventory = self._store.read(cycle.status_branch, follow=follow)
        return replace(cycle, inventory=inventory, follows=follow)

    def _observe_live(self, cycle: Cycle) -> Cycle | Stop:
        snapshot = cycle.need(cycle.snapshot, "snapshot")
        inventory = cycle.need(cycle.inventory, "inventory")
        kinds = kinds_to_observe(
            rendered=(*_RENDERED_KINDS, *self._memo.kinds),
            manifests=[e.manifest for e in snapshot.loaded.entries if e.manifest is not None],
            recorded=inventory.applied_kinds(),
        )
        self._memo = replace(self._memo, kinds=frozenset(kinds) - set(_RENDERED_KINDS))
        # Another shard's objects are not this one's to prune, step or report.
        shard = self._options.shard
        live = {
            ObjectRef.of(item): item
            for item in self._live_source.objects(kinds)
            if shard.owns_object(item)
        }
        return replace(cycle, live=live, observed_live=True)

    def _narrow(self, cycle: Cycle) -> Cycle | Stop:
        ledger = cycle.start_from
        if ledger is None or not isinstance(self._live_source, ListedSource):
            return cycle
        snapshot = cycle.need(cycle.snapshot, "snapshot")
        root = self._options.path.strip("/")
        try:
            focus = narrow(
                ledger,
                snapshot=snapshot,
                root=root,
                last_changes=cycle.need(cycle.last_changes, "last changes"),
                inventory=cycle.need(cycle.inventory, "inventory"),
                status_branch=cycle.status_branch,
                listed=Listed(objects=cycle.live, kinds=self._live_source.kinds),
                instance=self._options.instance,
                now=cycle.now,
                diff=lambda old: self._git.changes(old, snapshot.commit, under=root),
            )
        except GitError as exc:  # the ledger's commit is not in the mirror: a full cycle
            log.info("the last sync's commit cannot be compared", error=str(exc))
            return cycle
        return replace(cycle, focus=focus)

    def _plan_training(self, cycle: Cycle) -> Cycle | Stop:
        snapshot = cycle.need(cycle.snapshot, "snapshot")
        inventory = cycle.need(cycle.inventory, "inventory")
        namespace = snapshot.config.defaults.namespace
        questions = gate_questions_of(
            snapshot.loaded.entries, cycle.live, inventory=inventory, default_namespace=namespace
        )
        answers = {question: self._ask(question) for question in questions}
        training = plan_training(
            snapshot.loaded.entries,
            cycle.live,
            inventory=inventory,
            default_namespace=namespace,
            now=cycle.now,
            answers=answers,
        )
        failed = any(answer.error is not None for answer in answers.values())
        return replace(cycle, training=training, query_failed=failed)

    def _ask(self, question: Question) -> Answer:
        """A gate's query, answered; any failure is an answer too (the gate fails,
        its evidence says why), never a pass and never the cycle's end."""
        try:
            return Answer(self._metrics(question.address).value(question.promql))
        except GitsyncError as exc:
            log.warning("gate query failed", query=question.promql, error=str(exc))
            return Answer(None, error=str(exc), retry=exc.remedy is Remedy.RETRY)

    def _evaluate(self, cycle: Cycle) -> Cycle | Stop:
        snapshot = cycle.need(cycle.snapshot, "snapshot")
        last_changes = cycle.need(cycle.last_changes, "last changes")
        context = RenderContext(
            instance=self._options.instance,
            default_namespace=snapshot.config.defaults.namespace,
            source_commits=last_changes.by_path,
            trained=cycle.training.trained,
            waiting=cycle.training.waiting,
            scores=cycle.training.scores,
            ticks=cycle.training.ticks,
        )
        evaluation = self._evaluator.evaluate(
            cycle.focus.loaded if cycle.focus is not None else snapshot.loaded,
            policies=snapshot.policies,
            context=context,
            blobs=snapshot.blobs,
            preview=lambda entry: preview(entry, context, cycle.training),
        )
        return replace(cycle, context=context, evaluation=evaluation, desired=evaluation.desired)

    def _step_rollouts(self, cycle: Cycle) -> Cycle | Stop:
        """Give each canary ModelDeployment the traffic split and state its rollout
        is at, measuring first when an analysis is due."""
        evaluation = cycle.need(cycle.evaluation, "evaluation")
        bodies: list[dict[str, Any] | None] = []
        decisions: dict[ObjectRef, Decision] = {}
        analyses: dict[ObjectRef, Analysis] = {}
        soonest: float | None = None
        for entry, body in evaluation.pairs():
            spec = entry.spec
            if (
                body is None
                or not isinstance(spec, ModelDeployment)
                or spec.spec.rollout.strategy != "canary"
            ):
                bodies.append(body)
                continue
            key = ObjectRef.of(body)
            current = cycle.live.get(key)
            rollout = spec.spec.rollout
            target = predictor_hash(body)
            state = RolloutState.from_live(current)
            analysis = Analysis()
            if (
                state is not None
                and state.target == target
                and analysis_due(state, rollout, cycle.now)
            ):
                analysis = measure(rollout, key=key, state=state, sources=self._metrics)
                analyses[key] = analysis
            decision = decide(
                desired_hash=target,
                live=current,
                rollout=rollout,
                now=cycle.now,
                measurements=analysis.measurements,
                live_matches_desired=current is not None
                and holds((current.get("spec") or {}).get("predictor"), body["spec"]["predictor"]),
            )
            decisions[key] = decision
            bodies.append(_with_decision(body, decision, live=current))
            if (due := next_due(decision.state, rollout, cycle.now)) is not None:
                soonest = due if soonest is None else min(soonest, due)
        return replace(
            cycle,
            desired=tuple(bodies),
            rollouts=decisions,
            analyses=analyses,
            requeue_after=soonest,
        )

    def _plan_changes(self, cycle: Cycle) -> Cycle | Stop:
        snapshot = cycle.need(cycle.snapshot, "snapshot")
        evaluation = cycle.need(cycle.evaluation, "evaluation")
        context = cycle.need(cycle.context, "render context")
        inventory = cycle.need(cycle.inventory, "inventory")
        config, namespace = snapshot.config, snapshot.config.defaults.namespace
        loaded = evaluation.loaded
        plan = plan_changes(
            [body for body in cycle.desired if body is not None],
            cycle.live,
            instance=self._options.instance,
            failed_paths=loaded.failed_paths,
            declared_runs=[
                entry.key(namespace)
                for entry in loaded.entries
                if isinstance(entry.spec, TrainingRun)
            ],
            finished_runs=inventory.finished_runs(),
            retire=cycle.training.retire,
            held={
                inference_service_key(entry, namespace): str(pending(entry, context))
                for entry, body in zip(loaded.entries, cycle.desired, strict=True)
                if body is None and isinstance(entry.spec, ModelDeployment)
            },
            prune=PrunePolicy(enabled=config.prune.enabled, max_ratio=config.prune.max_ratio),
            self_heal=config.self_heal,
            memo=self._holds,
            unchanged=cycle.focus.carried.keys() if cycle.focus is not None else (),
        )
        shard = self._options.shard
        if not shard.whole and plan.of(Action.DELETED):
            plan = keep_declared_elsewhere(plan, declared=self._declared(cycle), shard=shard)
        return replace(cycle, plan=plan)

    def _declared(self, cycle: Cycle) -> dict[ObjectRef, str]:
        """Every spec of the whole repo, by identity -> its file: read (from the
        cache, mostly) only when a shard is about to delete something."""
        revision = cycle.need(cycle.revision, "revision")
        whole = read_snapshot(
            self._git,
            revision.commit,
            root=self._options.path,
            documents=self._documents,
            programs=self._programs,
        )
        namespace = whole.config.defaults.namespace
        loaded = whole.loaded
        return {
            **{r.key(namespace): r.path for r in loaded.rejected},
            **{e.key(namespace): e.path for e in loaded.entries},
        }

    def _apply_changes(self, cycle: Cycle) -> Cycle | Stop:
        snapshot = cycle.need(cycle.snapshot, "snapshot")
        applied = execute(
            self._kube,
            cycle.need(cycle.plan, "plan"),
            create_namespaces=snapshot.config.create_namespaces,
            known_namespaces=self._namespaces,
            may_write=self._may_write,
        )
        changes, written = applied.changes, applied.written
        # Not raised here: what was written before the server went away is recorded and
        # its statuses published; the cycle then ends cut short by that error.
        # What a write returns carries the status from before it: until the controller
        # has written a newer one, that status says nothing about the new spec.
        stale = {key for key, obj in written.items() if obj.get("kind") in _CONTROLLED_KINDS}
        observed = Observations(objects={**cycle.live, **written}, stale=frozenset(stale))
        return replace(
            cycle,
            changes=changes,
            written=written,
            observed=observed,
            interrupted=applied.interrupted,
        )

    def _propose_reverts(self, cycle: Cycle) -> Cycle | Stop:
        revision = cycle.need(cycle.revision, "revision")
        evaluation = cycle.need(cycle.evaluation, "evaluation")
        context = cycle.need(cycle.context, "render context")
        for proposal in revert_proposals(
            evaluation.loaded.entries,
            cycle.rollouts,
            written=cycle.written,
            last_commits=context.source_commits,
            default_namespace=context.default_namespace,
        ):
            try:
                parent = self._git.first_parent(proposal.offending)
                blob = self._git.files(parent).get(proposal.path) if parent else None
                self._git.publish(
                    {proposal.path: self._git.read_blob(blob) if blob else None},
                    branch=proposal.branch,
                    message=proposal.message(source_commit=revision.commit),
                    author=self._options.status_author,
                    start_from=revision.commit,
                    may_push=self._may_write,
                )
            except (GitError, LeadershipLostError) as exc:
                # A proposal is a courtesy: the rollback itself has happened.
                log.warning("revert branch not pushed", spec=proposal.name, error=str(exc))
        return cycle

    def _await_health(self, cycle: Cycle) -> Cycle | Stop:
        """Poll what was just written until its controller reports it settled, or
        ``wait_timeout`` passes (``gitsync sync --wait``)."""
        if self._options.wait_timeout <= 0 or not cycle.observed.stale:
            return cycle
        objects = dict(cycle.observed.objects)
        stale = set(cycle.observed.stale)
        waiting = set(stale)
        deadline = time.monotonic() + self._options.wait_timeout
        while waiting and time.monotonic() < deadline:
            for key in sorted(waiting):
                before = cycle.written[key]
                live = self._kube.get(
                    str(before["apiVersion"]), key.kind, key.name, namespace=key.namespace or None
                )
                if live is None:
                    waiting.discard(key)
                    continue
                objects[key] = live
                if resource_version(live) != resource_version(before):
                    stale.discard(key)
                    if assess(live).health in _SETTLED:
                        waiting.discard(key)
            if waiting:
                time.sleep(0.25)
        return replace(cycle, observed=Observations(objects=objects, stale=frozenset(stale)))

    STEPS: ClassVar[tuple[Step, ...]] = (
        _fetch_source,
        _skip_if_settled,
        _load_specs,
        _read_inventory,
        _observe_live,
        _narrow,
        _plan_training,
        _evaluate,
        _step_rollouts,
        _plan_changes,
        _apply_changes,
        _propose_reverts,
        _await_health,
    )

    # --- after the steps ----------------------------------------------------------------

    def _statuses(self, cycle: Cycle, *, skip: bool) -> list[SpecStatus] | None:
        """The statuses the cycle can vouch for; None (nothing to publish) before the
        specs and the status branch were read, or when a step stopped the cycle
        (nothing new to say, or a gitsync.yaml that cannot be read)."""
        if skip or cycle.snapshot is None or cycle.inventory is None:
            return None
        evaluation = cycle.evaluation
        loaded = evaluation.loaded if evaluation is not None else cycle.snapshot.loaded
        context = cycle.context or RenderContext(
            instance=self._options.instance,
            default_namespace=cycle.snapshot.config.defaults.namespace,
            source_commits=cycle.last_changes.by_path if cycle.last_changes else {},
        )
        return spec_statuses(
            loaded=loaded,
            desired=cycle.desired if evaluation is not None else (None,) * len(loaded.entries),
            changes=cycle.changes,
            observed=cycle.observed,
            rollouts=cycle.rollouts,
            analyses=cycle.analyses,
            training=cycle.training,
            context=context,
            inventory=cycle.inventory,
            now=format_time(cycle.now),
            carried={
                doc.path: doc
                for doc in (cycle.focus.carried.values() if cycle.focus and evaluation else ())
            },
        )

    def _publish(
        self, cycle: Cycle, statuses: list[SpecStatus] | None
    ) -> tuple[str | None, GitsyncError | None]:
        """Publish ``statuses``: the commit, or why the push failed."""
        if statuses is None:
            return None, None
        assert cycle.revision is not None  # noqa: S101 - a snapshot comes from a revision
        try:
            commit = self._store.publish(
                statuses,
                branch=cycle.status_branch,
                source_commit=cycle.revision.commit,
                may_push=self._may_write,
            )
        except GitsyncError as exc:  # a push refused, a remote away: said, never raised
            log.warning("status push failed", branch=cycle.status_branch, error=str(exc))
            self._store.forget()
            return None, exc
        return commit, None

    def _result(
        self,
        cycle: Cycle,
        *,
        stop: Stop | None,
        error: GitsyncError | None,
        status_error: GitsyncError | None,
    ) -> CycleResult:
        """The cycle's outcome, from the types of what failed: the worst remedy wins."""
        if stop is not None:
            return stop.result
        if error is not None:
            return CycleResult.from_error(error)
        if status_error is not None:
            return CycleResult.from_error(status_error)
        failures = cycle.changes.failures
        if forbidden := [c for c in failures if c.error_remedy is Remedy.FAIL]:
            return CycleResult.stalled(f"{forbidden[0].key}: {forbidden[0].error}")
        if transient := [c for c in failures if c.error_remedy is Remedy.RETRY]:
            return CycleResult.requeue(f"{transient[0].key}: {transient[0].error}")
        # A schedule's next tick or a promotion's hold ends on its own clock: wake then,
        # not at the next poll, which may be minutes later.
        soonest = [cycle.requeue_after] if cycle.requeue_after is not None else []
        if (wake_at := cycle.training.wake_at) is not None:
            soonest.append(max(0.0, (wake_at - cycle.now).total_seconds()))
        return CycleResult.succeeded(requeue_after=min(soonest, default=None))

    def _diagnostics(self, cycle: Cycle) -> tuple[Diagnostic, ...]:
        if cycle.evaluation is not None:
            return cycle.evaluation.loaded.diagnostics
        return cycle.snapshot.loaded.diagnostics if cycle.snapshot is not None else ()

    def _remember(self, cycle: Cycle, report: CycleReport) -> None:
        if cycle.revision is None:
            return
        # A rollout in progress has timers and analyses to run even when nothing moves;
        # a transient failure deserves another try; input that cannot be read (an
        # invalid gitsync.yaml) waits for the next commit.
        waits_for_commit = (
            report.result.outcome is Outcome.STALLED
            and report.result.remedy is Remedy.WAIT_FOR_COMMIT
        )
        settled = waits_for_commit or (
            report.result.outcome is Outcome.SUCCEEDED
            and report.status_error is None
            and cycle.observed_live
            and not any(d.state.phase.active for d in cycle.rollouts.values())
            and all(c.error_remedy is Remedy.WAIT_FOR_COMMIT for c in cycle.changes.failures)
            and not _upstream_moved(cycle, report, instance=self._options.instance)
        )
        # The commit the followed documents were read at, not this cycle's own status
        # commit: that one may have landed on top of another instance's newer one.
        read_at = cycle.inventory.commit if cycle.inventory else None
        self._settled = self._settlement(cycle, report) if settled else None
        self._ledger = self._ledger_of(cycle, report)
        self._memo = replace(
            self._memo,
            head=cycle.revision.commit,
            live_version=cycle.live_version,
            settled=settled,
            wake_at=cycle.training.wake_at,
            watched_status=(cycle.status_branch, read_at) if cycle.follows else None,
        )

    def _settlement(self, cycle: Cycle, report: CycleReport) -> Settled | None:
        """What a settled cycle read, when it also wrote nothing and every change went
        through: a re-run then finds the same and says the same. A status commit is
        no bar: the re-run reads that commit and finds its documents already true.

        Not settled for a sync, although the daemon may skip such a cycle: one whose
        gate query failed (a refusal may be an auth proxy's 403 or an error that
        depends on the data, which the next sync should ask about again, as it did
        before records existed), and one whose status push lost a race and was made
        again on a newer head, which holds someone else's commit it never read."""
        source, revision, inventory = self._live_source, cycle.revision, cycle.inventory
        changes = report.changes
        if (
            not isinstance(source, ListedSource)
            or (live := source.fingerprint) is None
            or revision is None
            or inventory is None
            or report.result.outcome is not Outcome.SUCCEEDED
            or report.error is not None
            or changes.writes
            or changes.failures
            or changes.prune_refused
            or cycle.query_failed
        ):
            return None
        status_head = report.status_commit or inventory.commit
        if (
            report.status_commit
            and self._git.first_parent(report.status_commit) != inventory.commit
        ):
            return None
        return Settled(
            observed=Observed(
                head=revision.commit,
                status_head=status_head,
                live=live,
            ),
            status_branch=cycle.status_branch,
            kinds=source.kinds,
            wake_at=_wake_at(cycle, report),
        )

    def _ledger_of(self, cycle: Cycle, report: CycleReport) -> Ledger | None:
        """What the cycle found unchanged and left on the branch, when it listed the
        live objects, ran to the end and published its statuses."""
        revision = cycle.revision
        if (
            not isinstance(self._live_source, ListedSource)
            or not cycle.observed_live
            or revision is None
            or report.error is not None
            or report.status_error is not None
        ):
            return None
        return Ledger(
            head=revision.commit,
            status_branch=cycle.status_branch,
            kinds=self._live_source.kinds,
            wake_at=_wake_at(cycle, report),
            unchanged={
                change.key: version_of(change.live)
                for change in report.changes.changes
                if change.action is Action.UNCHANGED and change.live is not None
            },
            documents=self._store.files,
        )

    def _others_moved(self, watched: tuple[str, str | None] | None) -> bool:
        """Whether the status branch moved since this instance last read it, when it
        follows another instance's documents there."""
        if watched is None:
            return False
        branch, known = watched
        try:
            head = self._git.fetch_branch(branch)
        except GitError:
            return True  # unknown: the cycle runs, and meets the remote's trouble itself
        return (head.commit if head else None) != known

    def _report(self, cycle: Cycle, stop: Stop, *, started: float) -> CycleReport:
        log.debug("nothing changed", cycle=cycle.id)
        return CycleReport(
            cycle_id=cycle.id,
            revision=cycle.revision,
            changes=ChangeSet(),
            diagnostics=(),
            statuses=(),
            status_commit=None,
            result=stop.result,
            skipped=True,
            duration=time.monotonic() - started,
        )

    def _log(self, cycle: Cycle, report: CycleReport) -> None:
        bound = log.bind(
            cycle=cycle.id,
            commit=cycle.revision.commit[:12] if cycle.revision else None,
            repo=self._git.url,
        )
        bound.info(
            "cycle finished",
            outcome=report.result.outcome.value,
            duration_ms=round(report.duration * 1000, 1),
            invalid=len(report.diagnostics),
            carried=len(cycle.focus.carried) if cycle.focus is not None else 0,
            status_commit=report.status_commit,
            **report.changes.summary(),
        )
        if report.error is not None:
            # The caller reports it at its own level (the CLI as its error, the daemon
            # with its next delay): logged here only for the cycle's own record.
            bound.info("cycle cut short", error=str(report.error), remedy=report.error.remedy.value)
        for change in report.changes.changes:
            if change.writes or change.error:
                bound.info(
                    "object " + (change.action.value if not change.error else "failed"),
                    object=str(change.key),
                    reason=change.reason,
                    error=change.error,
                )
        if report.changes.prune_refused:
            bound.warning("prune refused", reason=report.changes.prune_refused)


def _caches(
    cache_dir: Path | None, *, git: GitSource, options: SyncOptions
) -> dict[str, DiskCache]:
    """The disk caches of this configuration (repo, branch, folder, instance, shard):
    each in a folder of its own, so that what a process uses, which is what
    compaction keeps, is the whole working set of the folder. Instances sharing one
    folder would each drop the others' entries (see gitsync.cache)."""
    if cache_dir is None:
        return {}
    shard = options.shard
    scope = orjson.dumps(
        [git.url, git.branch, options.path, options.instance, shard.index, shard.count]
    )
    folder = cache_dir / "scopes" / hashlib.sha256(scope).hexdigest()[:16]
    return {name: DiskCache(folder / name) for name in ("eval", "specs", "status")}


def _wake_at(cycle: Cycle, report: CycleReport) -> datetime | None:
    """When the clock alone may change what a re-run decides (a schedule's tick, a
    hold's end): the soonest is in the result already."""
    after = report.result.requeue_after
    return None if after is None else cycle.now + timedelta(seconds=after)


def _upstream_moved(cycle: Cycle, report: CycleReport, *, instance: str) -> bool:
    """Whether this cycle's statuses changed the document of a model another one of
    this instance is promoted from. The follower decided from that document as the
    cycle found it on the status branch; when the cycle's own status commit changes it
    (the upstream written for the first time, or become Healthy), nothing live moves
    afterwards to wake a daemon, so the next cycle must run and decide again from the
    new one. (Another instance's upstream is not among this cycle's statuses.)"""
    if cycle.snapshot is None:
        return False
    default = cycle.snapshot.config.defaults.namespace
    upstreams = {
        ref
        for entry in cycle.snapshot.loaded.entries
        if isinstance(entry.spec, ModelDeployment)
        and entry.spec.spec.model is not None
        and (source := entry.spec.spec.model.from_model_deployment) is not None
        and source.instance in (None, instance)
        and (ref := entry.spec.spec.upstream(entry.namespace(default))) is not None
    }
    return any(
        ObjectRef.spec(doc.kind, doc.namespace, doc.name) in upstreams
        and (
            (before := report.previous.get(doc.path)) is None
            or dump_document(before) != dump_document(doc)
        )
        for doc in report.statuses
    )
