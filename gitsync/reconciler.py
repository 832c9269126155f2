"""One reconcile cycle: Git -> validated specs -> cluster -> status back in Git.

The cycle is a fixed sequence of steps over one :class:`Reconciler`, which keeps what
is worth keeping between cycles (parsed files by blob id, which commit last changed
each file, namespaces known to exist, the last status documents) so that a cycle in
which nothing changed reads no YAML, writes nothing to the cluster and commits
nothing. The CLI runs one cycle; the daemon runs them on a schedule.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import structlog

from gitsync.apply import execute
from gitsync.clients.git import Author, GitSource, LastChanges, Revision
from gitsync.clients.kube import Informer, KubeClient
from gitsync.diff import Action, Change, ChangeSet, PrunePolicy, holds, plan_changes
from gitsync.errors import ApiUnavailableError, GitError, GitsyncError, NotFoundError, Remedy
from gitsync.health import Health, HealthReport, assess
from gitsync.loading import (
    Diagnostic,
    Entry,
    FileResult,
    LoadResult,
)
from gitsync.policy import VerdictMemo, enforce, entry_object
from gitsync.render import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_SCHEDULED_AT,
    LABEL_INSTANCE,
    LABEL_TRAINING_RUN,
    RenderContext,
    ResourceKey,
    TrainedModel,
    applied_hash,
    pending,
    render,
    resource_key,
)
from gitsync.rollout import (
    STATE_ANNOTATION,
    Decision,
    Measurement,
    RolloutPhase,
    RolloutState,
    analysis_due,
    decide,
    judge,
    predictor_hash,
    render_query,
)
from gitsync.schedule import RunFacts, ScheduleDecision, decide_schedule, format_time, parse_time
from gitsync.snapshot import read_snapshot
from gitsync.specs import Config, ModelDeployment, Rollout, TrainingRun
from gitsync.status import (
    README_PATH,
    STATUS_ROOT,
    SpecStatus,
    build_status,
    commit_message,
    document,
    dump_document,
    finished_runs,
    parse_document,
    readme,
    run_record,
    status_path,
)

__all__ = ["CycleReport", "Reconciler", "SyncOptions"]

log = structlog.get_logger(__name__)

#: Kinds gitsync renders itself; listed every cycle so removed specs can be pruned.
_RENDERED_KINDS: tuple[tuple[str, str], ...] = (
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("kubeflow.org/v1", "TFJob"),
    ("kubeflow.org/v1", "PyTorchJob"),
)
_SETTLED = {Health.HEALTHY, Health.SUCCEEDED, Health.FAILED, Health.DEGRADED, Health.RUNNING}
_CONTROLLED_KINDS = frozenset(kind for _, kind in _RENDERED_KINDS)
_JOB_KINDS = frozenset({"TFJob", "PyTorchJob"})
_ISVC_API = "serving.kserve.io/v1beta1"


DEFAULT_AUTHOR = Author("gitsync", "gitsync@localhost")


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """What to reconcile and how; the CLI and the daemon build one from flags."""

    path: str = ""
    instance: str = "default"
    status_branch: str | None = None
    status_author: Author = DEFAULT_AUTHOR
    wait_timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle found and did."""

    cycle_id: str
    revision: Revision
    changes: ChangeSet
    diagnostics: tuple[Diagnostic, ...]
    statuses: tuple[SpecStatus, ...]
    status_commit: str | None
    status_error: str | None = None
    skipped: bool = False
    duration: float = 0.0

    @property
    def failed(self) -> bool:
        """True when some spec could not be applied (invalid, or an apply error)."""
        return bool(
            self.diagnostics
            or self.changes.failures
            or self.changes.prune_refused
            or self.status_error
        )


@dataclass
class _Memory:
    """What a Reconciler carries from one cycle to the next."""

    parsed: dict[str, FileResult] = field(default_factory=dict)  # by "blob:path"
    last_changes: LastChanges | None = None
    namespaces: set[str] = field(default_factory=set)
    head: str | None = None
    status_docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    status_bytes: dict[str, bytes] = field(default_factory=dict)
    #: path -> (digest of the document's JSON, its YAML)
    dumped: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    rendered: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)
    #: Each spec as the last cycle read it: ``oldObject`` for transition policies.
    previous_specs: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    verdicts: VerdictMemo = field(default_factory=dict)
    spec_objects: dict[int, tuple[Entry, dict[str, Any]]] = field(default_factory=dict)
    status_head: str | None = None
    extra_kinds: set[tuple[str, str]] = field(default_factory=set)
    live_version: int | None = None
    #: The last cycle left nothing that another try could fix (transient failures,
    #: an unpublished status): with the same commit and no live change, skip.
    settled: bool = False
    #: The next schedule tick: a settled cycle is not skipped from then on.
    wake_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Training:
    """What this cycle knows about training runs, found in the cluster and the status
    documents, for rendering (pure data) and for the status."""

    #: Each TrainingRun's jobs, newest first, by (namespace, TrainingRun name).
    jobs: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]]
    schedules: Mapping[tuple[str, str], ScheduleDecision]
    trained: Mapping[tuple[str, str], TrainedModel]
    #: Runs to delete, and why: replaced at a tick, or beyond the historyLimit.
    retire: Mapping[ResourceKey, str]


class MetricsSource(Protocol):
    """Where canary analysis gets a number: one value, or None when there is no data."""

    def value(self, promql: str) -> float | None: ...


def _prometheus(address: str) -> MetricsSource:
    from gitsync.clients.prometheus import PrometheusClient  # noqa: PLC0415

    return PrometheusClient(address)


class _Listed:
    """Live objects by one LIST per kind and cycle: for a single `gitsync sync`."""

    version: int | None = None  # unknown: every cycle must look

    def __init__(self, kube: KubeClient, selector: str) -> None:
        self._kube = kube
        self._selector = selector

    def objects(self, kinds: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        found = []
        for api_version, kind in kinds:
            try:
                listing = self._kube.list(api_version, kind, label_selector=self._selector)
            except NotFoundError:
                continue  # the kind is not served (CRD missing): nothing of it to prune
            for item in listing.get("items", []):
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                found.append(item)
        return found

    def close(self) -> None:
        """Nothing to release."""


class _Watched:
    """Live objects kept current by an informer per kind: for the daemon.

    A cycle reads memory instead of listing, and ``version`` tells whether anything
    changed at all since the last cycle (drift, a controller's status, a deletion).
    """

    def __init__(self, kube: KubeClient, selector: str, *, sync_timeout: float = 30.0) -> None:
        self._kube = kube
        self._selector = selector
        self._sync_timeout = sync_timeout
        self._informers: dict[tuple[str, str], Informer] = {}

    @property
    def version(self) -> int:
        return sum(informer.version for informer in self._informers.values())

    def objects(self, kinds: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        for api_version, kind in kinds:
            if (api_version, kind) not in self._informers:
                informer = Informer(
                    self._kube, api_version=api_version, kind=kind, label_selector=self._selector
                )
                informer.start()
                self._informers[(api_version, kind)] = informer
        found: list[dict[str, Any]] = []
        for api_version, kind in kinds:
            informer = self._informers[(api_version, kind)]
            deadline = time.monotonic() + self._sync_timeout
            while not informer.synced and informer.error is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if isinstance(informer.error, NotFoundError) and not informer.synced:
                continue  # the kind is not served (CRD missing): nothing of it to prune
            if informer.error is not None or not informer.synced:
                # A cache that may be stale is no ground for applying or pruning.
                raise ApiUnavailableError(
                    f"watch of {kind} is not current: {informer.error or 'not synced yet'}"
                )
            found.extend(informer.snapshot().values())
        return found

    def close(self) -> None:
        for informer in self._informers.values():
            informer.stop()


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
        metrics: Callable[[str], MetricsSource] | None = None,
    ) -> None:
        """``watch`` keeps live objects current with informers (for the daemon) instead
        of listing them every cycle, and lets a cycle with nothing new end at once."""
        self._git = git
        self._kube = kube
        self._options = options
        self._clock = clock
        self._memory = _Memory()
        self._metrics = metrics or _prometheus
        selector = f"{LABEL_INSTANCE}={options.instance}"
        self._live_source: _Listed | _Watched = (
            _Watched(kube, selector) if watch else _Listed(kube, selector)
        )

    def close(self) -> None:
        """Stop the informers, if any."""
        self._live_source.close()

    def cycle(self) -> CycleReport:
        """Run one cycle. Raises only when it could not run (Git or cluster away)."""
        started = time.monotonic()
        cycle_id = uuid.uuid4().hex[:12]
        revision = self._git.fetch()
        bound = log.bind(cycle=cycle_id, commit=revision.commit[:12], repo=self._git.url)
        live_version = self._live_source.version
        if (
            self._memory.settled
            and revision.commit == self._memory.head
            and live_version is not None
            and live_version == self._memory.live_version
            and (self._memory.wake_at is None or self._clock() < self._memory.wake_at)
        ):
            bound.debug("nothing changed")
            return CycleReport(
                cycle_id,
                revision,
                ChangeSet(),
                (),
                (),
                None,
                skipped=True,
                duration=time.monotonic() - started,
            )
        self._memory.settled = False

        snapshot = read_snapshot(
            self._git, revision.commit, root=self._options.path, parsed=self._memory.parsed
        )
        self._memory.parsed = dict(snapshot.parsed)
        config, loaded, blobs = snapshot.config, snapshot.loaded, snapshot.blobs
        if config_problems := snapshot.config_diagnostics:
            # Without a valid gitsync.yaml we do not know the defaults: apply nothing,
            # prune nothing, and say why.
            bound.warning("invalid gitsync.yaml; nothing applied", errors=len(config_problems))
            self._memory.head, self._memory.live_version = revision.commit, live_version
            self._memory.settled = True
            return CycleReport(
                cycle_id,
                revision,
                ChangeSet(),
                tuple(config_problems),
                (),
                None,
                duration=time.monotonic() - started,
            )

        self._memory.last_changes = self._git.last_changes(
            revision.commit, list(blobs), previous=self._memory.last_changes
        )
        status_branch = self._options.status_branch or config.status_branch
        self._read_statuses(status_branch)
        live = self._live(loaded.entries)
        training = self._training(loaded.entries, live, default_namespace=config.defaults.namespace)
        context = RenderContext(
            instance=self._options.instance,
            default_namespace=config.defaults.namespace,
            source_commits=self._memory.last_changes.by_path,
            trained=training.trained,
            ticks={ref: d.start for ref, d in training.schedules.items() if d.start is not None},
        )
        desired = self._render(loaded.entries, context, blobs)
        verdicts = enforce(
            snapshot.policies,
            [
                (entry, body if body is not None else _preview(entry, context, training))
                for entry, body in zip(loaded.entries, desired, strict=True)
            ],
            default_namespace=config.defaults.namespace,
            old_objects=self._memory.previous_specs,
            memo=self._memory.verdicts,
        )
        kept = {id(entry) for entry in verdicts.entries}
        desired = [b for e, b in zip(loaded.entries, desired, strict=True) if id(e) in kept]
        # oldObject is the spec as last accepted: a denied change must not become the
        # base its own next attempt is judged against.
        accepted = {
            (e.kind, e.namespace(config.defaults.namespace), e.name): self._spec_object(e)
            for e in verdicts.entries
        }
        denied_keys = {
            (e.kind, e.namespace(config.defaults.namespace), e.name)
            for e in loaded.entries
            if id(e) not in kept
        }
        self._memory.spec_objects = {
            id(e): self._memory.spec_objects[id(e)] for e in verdicts.entries
        }
        self._memory.previous_specs = {
            **{k: v for k, v in self._memory.previous_specs.items() if k in denied_keys},
            **accepted,
        }
        loaded = verdicts.applied_to(loaded)
        desired, rollouts = self._step_rollouts(loaded.entries, desired, live)
        plan = plan_changes(
            [body for body in desired if body is not None],
            live,
            instance=self._options.instance,
            failed_paths=loaded.failed_paths,
            declared_runs=[
                (entry.namespace(config.defaults.namespace), entry.name)
                for entry in loaded.entries
                if isinstance(entry.spec, TrainingRun)
            ],
            finished_runs=finished_runs(self._memory.status_docs.values()),
            retire=training.retire,
            held={
                _subject(entry, config.defaults.namespace): str(pending(entry, context))
                for entry, body in zip(loaded.entries, desired, strict=True)
                if body is None and isinstance(entry.spec, ModelDeployment)
            },
            prune=PrunePolicy(enabled=config.prune.enabled, max_ratio=config.prune.max_ratio),
            self_heal=config.self_heal,
        )
        changes, written = execute(
            self._kube,
            plan,
            create_namespaces=config.create_namespaces,
            known_namespaces=self._memory.namespaces,
        )
        self._push_reverts(loaded.entries, rollouts, written, revision)
        observed = {**live, **written}
        # What a write returns carries the status from before it: until the controller
        # has written a newer one, that status says nothing about the new spec.
        stale = {key for key, obj in written.items() if obj.get("kind") in _CONTROLLED_KINDS}
        if self._options.wait_timeout > 0 and stale:
            self._wait_for_health(written, observed, stale)

        statuses = self._statuses(
            loaded=loaded,
            desired=desired,
            changes=changes,
            observed=observed,
            stale=stale,
            config=config,
            rollouts=rollouts,
            training=training,
            context=context,
        )
        status_commit, status_error = self._publish(
            statuses, status_branch=status_branch, revision=revision
        )
        report = CycleReport(
            cycle_id=cycle_id,
            revision=revision,
            changes=changes,
            diagnostics=loaded.diagnostics,
            statuses=tuple(statuses),
            status_commit=status_commit,
            status_error=status_error,
            duration=time.monotonic() - started,
        )
        self._memory.head, self._memory.live_version = revision.commit, live_version
        self._memory.wake_at = min(
            (d.next_tick for d in training.schedules.values() if d.next_tick is not None),
            default=None,
        )
        # A rollout in progress has timers and analyses to run even when nothing moves.
        self._memory.settled = (
            status_error is None
            and not any(d.state.phase.active for d in rollouts.values())
            and all(change.error_remedy is Remedy.WAIT_FOR_COMMIT for change in changes.failures)
        )
        bound.info(
            "cycle finished",
            duration_ms=round(report.duration * 1000, 1),
            invalid=len(loaded.diagnostics),
            status_commit=status_commit,
            **changes.summary(),
        )
        for change in changes.changes:
            if change.writes or change.error:
                bound.info(
                    "object " + (change.action.value if not change.error else "failed"),
                    object=str(change.key),
                    reason=change.reason,
                    error=change.error,
                )
        if changes.prune_refused:
            bound.warning("prune refused", reason=changes.prune_refused)
        return report

    # --- steps ----------------------------------------------------------------------

    def _spec_object(self, entry: Entry) -> dict[str, Any]:
        """The spec as written, the same object while the entry is (so the policy memo
        recognises an unchanged oldObject by identity)."""
        cached = self._memory.spec_objects.get(id(entry))
        if cached is None or cached[0] is not entry:
            cached = (entry, entry_object(entry))
            self._memory.spec_objects[id(entry)] = cached
        return cached[1]

    def _render(
        self, entries: Sequence[Entry], context: RenderContext, blobs: Mapping[str, str]
    ) -> list[dict[str, Any] | None]:
        """Render every entry, reusing the bodies of entries whose inputs did not change;
        None for an entry with nothing to apply yet (see :func:`render.pending`)."""
        rendered: dict[tuple[str, ...], dict[str, Any]] = {}
        bodies: list[dict[str, Any] | None] = []
        for entry in entries:
            if pending(entry, context) is not None:
                bodies.append(None)
                continue
            key = (
                blobs[entry.path],
                entry.path,
                str(entry.document),
                context.source_commits.get(entry.path, ""),
                context.default_namespace,
                repr(_resolution(entry, context)),
            )
            body = self._memory.rendered.get(key) or render(entry, context)
            rendered[key] = body
            bodies.append(body)
        self._memory.rendered = rendered
        return bodies

    def _training(
        self,
        entries: Sequence[Entry],
        live: Mapping[ResourceKey, Mapping[str, Any]],
        *,
        default_namespace: str,
    ) -> _Training:
        """Each TrainingRun's jobs and schedule, the runs to retire, and the run each
        ``fromTrainingRun`` model serves: from live jobs and the status documents."""
        jobs = _jobs_by_training_run(live)
        now = self._clock()
        schedules: dict[tuple[str, str], ScheduleDecision] = {}
        retire: dict[ResourceKey, str] = {}
        trained: dict[tuple[str, str], TrainedModel] = {}
        for entry in entries:
            spec = entry.spec
            namespace = entry.namespace(default_namespace)
            if isinstance(spec, ModelDeployment):
                ref = spec.spec.model.training_run(namespace)
                if ref is not None and (found := self._latest_success(ref, jobs.get(ref, ()))):
                    trained[ref] = found
                continue
            if not isinstance(spec, TrainingRun):
                continue
            ref = (namespace, entry.name)
            runs = jobs.get(ref, [])
            if spec.spec.schedule is not None:
                decision = self._schedule(spec, runs, self._status_doc("TrainingRun", ref), now)
                schedules[ref] = decision
                if decision.start is not None:
                    replaced = (
                        f"replaced by the run of tick {format_time(decision.start)} "
                        "(concurrencyPolicy Replace)"
                    )
                    retire |= {
                        resource_key(job): replaced
                        for job in runs
                        if _name(job) in decision.replace
                    }
            finished = [job for job in runs if assess(job).health.finished]
            for job in finished[spec.spec.history_limit :]:
                retire.setdefault(
                    resource_key(job), f"beyond historyLimit {spec.spec.history_limit}"
                )
        return _Training(jobs=jobs, schedules=schedules, trained=trained, retire=retire)

    def _status_doc(self, kind: str, ref: tuple[str, str]) -> Mapping[str, Any]:
        return self._memory.status_docs.get(status_path(kind, *ref)) or {}

    def _schedule(
        self,
        spec: TrainingRun,
        jobs: Sequence[Mapping[str, Any]],
        doc: Mapping[str, Any],
        now: datetime,
    ) -> ScheduleDecision:
        assert spec.spec.schedule is not None  # noqa: S101 - the caller checked
        recorded = doc.get("schedule") or {}
        live = [
            RunFacts(
                name=_name(job),
                active=not assess(job).health.finished,
                scheduled_at=parse_time(
                    _metadata_map(job, "annotations").get(ANNOTATION_SCHEDULED_AT)
                ),
            )
            for job in jobs
        ]
        remembered = [
            RunFacts(name=str(r.get("name")), active=False, scheduled_at=parse_time(tick))
            for r in doc.get("runs") or []
            if isinstance(r, Mapping) and (tick := r.get("scheduledAt"))
        ]
        return decide_schedule(
            schedule=spec.spec.schedule,
            policy=spec.spec.concurrency_policy,
            runs=[*live, *remembered],
            since=parse_time(recorded.get("since")),
            recorded_tick=parse_time(recorded.get("lastTick")),
            now=now,
        )

    def _latest_success(
        self, ref: tuple[str, str], jobs: Sequence[Mapping[str, Any]]
    ) -> TrainedModel | None:
        """The latest Succeeded run of a TrainingRun that names an output, by completion
        time: live jobs first, then the status history (a job may be gone after its
        TTL)."""
        records: list[Mapping[str, Any]] = [
            run_record(_name(job), assess(job), job) for job in jobs
        ]
        seen = {r["name"] for r in records}
        records += [
            r
            for r in self._status_doc("TrainingRun", ref).get("runs") or []
            if isinstance(r, Mapping) and r.get("name") not in seen
        ]
        succeeded = [
            r for r in records if r.get("phase") == Health.SUCCEEDED.value and r.get("outputUri")
        ]
        if not succeeded:
            return None
        best = max(succeeded, key=lambda r: (str(r.get("completionTime") or ""), str(r["name"])))
        return TrainedModel(
            run=str(best["name"]),
            output_uri=str(best["outputUri"]),
            completion_time=str(best.get("completionTime") or ""),
            source_commit=str(best.get("sourceCommit") or ""),
        )

    def _step_rollouts(
        self,
        entries: Sequence[Entry],
        desired: Sequence[dict[str, Any] | None],
        live: Mapping[ResourceKey, Mapping[str, Any]],
    ) -> tuple[list[dict[str, Any] | None], dict[ResourceKey, Decision]]:
        """Give each canary ModelDeployment the traffic split and state its rollout is at.

        Other objects pass unchanged. The bodies come back re-stamped, so an unchanged
        rollout step still plans as unchanged.
        """
        now = self._clock()
        bodies: list[dict[str, Any] | None] = []
        decisions: dict[ResourceKey, Decision] = {}
        for entry, body in zip(entries, desired, strict=True):
            spec = entry.spec
            if (
                body is None
                or not isinstance(spec, ModelDeployment)
                or spec.spec.rollout.strategy != "canary"
            ):
                bodies.append(body)
                continue
            key = resource_key(body)
            current = live.get(key)
            rollout = spec.spec.rollout
            target = predictor_hash(body)
            state = RolloutState.from_live(current)
            measurements: list[Measurement] = []
            if state is not None and state.target == target and analysis_due(state, rollout, now):
                measurements = self._analyse(rollout, key, state)
            matches = current is not None and holds(
                (current.get("spec") or {}).get("predictor"), body["spec"]["predictor"]
            )
            decision = decide(
                desired_hash=target,
                live=current,
                rollout=rollout,
                now=now,
                measurements=measurements,
                live_matches_desired=matches,
            )
            decisions[key] = decision
            bodies.append(_with_rollout(body, decision))
        return bodies, decisions

    def _push_reverts(
        self,
        entries: Sequence[Entry],
        rollouts: Mapping[ResourceKey, Decision],
        written: Mapping[ResourceKey, Mapping[str, Any]],
        revision: Revision,
    ) -> None:
        """For a canary rolled back in this cycle whose spec says ``onFailure: revert``,
        push a branch ``gitsync/revert/<name>`` that puts the spec file back as it was
        before the commit that changed it, for someone to review and merge. Git stays
        the source of truth: gitsync proposes, it does not rewrite main."""
        commits = self._memory.last_changes.by_path if self._memory.last_changes else {}
        for key, decision in rollouts.items():
            if decision.state.phase is not RolloutPhase.ROLLED_BACK or not decision.transition:
                continue
            entry = next(
                (
                    e
                    for e in entries
                    if isinstance(e.spec, ModelDeployment)
                    and e.name == key.name
                    and e.namespace(key.namespace) == key.namespace
                ),
                None,
            )
            if entry is None or key not in written:
                continue
            assert isinstance(entry.spec, ModelDeployment)  # noqa: S101 - filtered above
            offending = commits.get(entry.path)
            if entry.spec.spec.rollout.on_failure != "revert" or not offending:
                continue
            parent = self._git.first_parent(offending)
            blob = self._git.files(parent).get(entry.path) if parent else None
            content = self._git.read_blob(blob) if blob else None
            message = (
                f"Revert {entry.name} to its spec before {offending[:7]}\n\n"
                f"gitsync rolled the canary back: {decision.state.reason}\n\n"
                f"Reverts: {offending}\nGitsync-Source-Commit: {revision.commit}\n"
            )
            try:
                self._git.publish(
                    {entry.path: content},
                    branch=f"gitsync/revert/{entry.name}",
                    message=message,
                    author=self._options.status_author,
                    start_from=revision.commit,
                )
            except GitError as exc:
                log.warning("revert branch not pushed", spec=entry.name, error=str(exc))

    def _analyse(
        self, rollout: Rollout, key: ResourceKey, state: RolloutState
    ) -> list[Measurement]:
        """Run every metric's queries; a query that fails is a measurement without data."""
        assert rollout.analysis is not None  # noqa: S101 - analysis_due checked it
        client = self._metrics(rollout.analysis.provider.prometheus.address)
        results = []
        for metric in rollout.analysis.metrics:
            values: list[float | None] = []
            for query in (metric.query, metric.baseline_query):
                if query is None:
                    values.append(None)
                    continue
                promql = render_query(query, namespace=key.namespace, name=key.name, state=state)
                try:
                    values.append(client.value(promql))
                except GitsyncError as exc:
                    log.warning("metric query failed", metric=metric.name, error=str(exc))
                    values.append(None)
            results.append(judge(metric, values[0], values[1]))
        return results

    def _live(self, entries: Sequence[Entry]) -> dict[ResourceKey, Mapping[str, Any]]:
        """Every object of this instance, of every kind we render, were given, or
        recorded in a status document (so a kind whose last file is gone is pruned)."""
        kinds = set(_RENDERED_KINDS) | self._memory.extra_kinds
        kinds |= {
            (str(e.manifest["apiVersion"]), str(e.manifest["kind"]))
            for e in entries
            if e.manifest is not None
        }
        for doc in self._memory.status_docs.values():
            for resource in doc.get("resources") or []:
                api_version, kind, *_ = str(resource).split(" ")
                kinds.add((api_version, kind))
        self._memory.extra_kinds = kinds - set(_RENDERED_KINDS)
        live: dict[ResourceKey, Mapping[str, Any]] = {}
        for item in self._live_source.objects(sorted(kinds)):
            live[resource_key(item)] = item
        return live

    def _wait_for_health(
        self,
        written: Mapping[ResourceKey, Mapping[str, Any]],
        observed: dict[ResourceKey, Mapping[str, Any]],
        stale: set[ResourceKey],
    ) -> None:
        """Poll what was just written until its controller reports it settled, or the
        wait times out; ``observed`` and ``stale`` are updated in place."""
        deadline = time.monotonic() + self._options.wait_timeout
        pending = set(stale)
        while pending and time.monotonic() < deadline:
            for key in sorted(pending):
                before = written[key]
                live = self._kube.get(
                    str(before["apiVersion"]), key.kind, key.name, namespace=key.namespace or None
                )
                if live is None:
                    pending.discard(key)
                    continue
                observed[key] = live
                if _resource_version(live) != _resource_version(before):
                    stale.discard(key)
                    if assess(live).health in _SETTLED:
                        pending.discard(key)
            if pending:
                time.sleep(0.25)

    def _read_statuses(self, branch: str) -> None:
        head = self._git.fetch_branch(branch)
        commit = head.commit if head else None
        if commit == self._memory.status_head:
            return
        docs: dict[str, dict[str, Any]] = {}
        raw: dict[str, bytes] = {}
        if commit is not None:
            for path, blob in self._git.files(commit, under=STATUS_ROOT).items():
                content = self._git.read_blob(blob)
                raw[path] = content
                if path.endswith(".yaml"):
                    docs[path] = parse_document(content)
        self._memory.status_docs, self._memory.status_bytes = docs, raw
        self._memory.status_head = commit

    def _statuses(
        self,
        *,
        loaded: LoadResult,
        desired: Sequence[Mapping[str, Any] | None],
        changes: ChangeSet,
        observed: Mapping[ResourceKey, Mapping[str, Any]],
        stale: set[ResourceKey],
        config: Config,
        rollouts: Mapping[ResourceKey, Decision],
        training: _Training,
        context: RenderContext,
    ) -> list[SpecStatus]:
        now = format_time(self._clock())
        by_key = {change.key: change for change in changes.changes}
        commits = self._memory.last_changes.by_path if self._memory.last_changes else {}
        previous = self._memory.status_docs
        deleted = {c.key for c in changes.of(Action.DELETED) if c.error is None}
        jobs = _jobs_by_training_run({k: v for k, v in observed.items() if k not in deleted})
        statuses: dict[str, SpecStatus] = {}
        for entry, body in zip(loaded.entries, desired, strict=True):
            namespace = entry.namespace(config.defaults.namespace)
            runs = (
                jobs.get((namespace, entry.name), []) if isinstance(entry.spec, TrainingRun) else []
            )
            subject: tuple[str, ResourceKey] | None = None
            if body is not None:
                subject = (str(body["apiVersion"]), resource_key(body))
            elif isinstance(entry.spec, ModelDeployment):
                subject = (_ISVC_API, _subject(entry, config.defaults.namespace))
            elif runs:  # a scheduled TrainingRun between ticks: its newest run
                subject = (str(runs[0]["apiVersion"]), resource_key(runs[0]))
            key = subject[1] if subject is not None else None
            status = _entry_status(
                entry,
                body,
                subject,
                change=by_key.get(key) if key else None,
                live=observed.get(key) if key else None,
                stale=stale,
                runs=runs,
                rollout=rollouts.get(key) if key else None,
                schedule=training.schedules.get((namespace, entry.name)),
                context=context,
                waiting=pending(entry, context) if body is None else None,
                namespace=namespace,
                source_commit=commits.get(entry.path, ""),
                now=now,
                previous=previous,
            )
            statuses[status.path] = status
        problems: dict[str, list[Diagnostic]] = {}
        for diagnostic in loaded.diagnostics:
            problems.setdefault(diagnostic.path, []).append(diagnostic)
        for rejected in loaded.rejected:
            declared = rejected.key(config.defaults.namespace)
            status = build_status(
                kind=declared.kind,
                name=declared.name,
                namespace=declared.namespace,
                source=rejected.path,
                source_commit=commits.get(rejected.path, ""),
                now=now,
                previous=previous.get(
                    status_path(declared.kind, declared.namespace, declared.name)
                ),
                diagnostics=problems.get(rejected.path, ()),
            )
            statuses[status.path] = status
        # A file so broken that its documents cannot even be named: its specs keep their
        # status documents, marked Invalid, rather than vanishing.
        for path, doc in previous.items():
            if path in statuses or doc.get("source") not in loaded.failed_paths:
                continue
            source = str(doc.get("source"))
            statuses[path] = build_status(
                kind=str(doc.get("kind")),
                name=str(doc.get("name")),
                namespace=str(doc.get("namespace") or ""),
                source=source,
                source_commit=commits.get(source, str(doc.get("sourceCommit") or "")),
                now=now,
                previous=doc,
                diagnostics=problems.get(source, ()),
            )
        return sorted(statuses.values(), key=lambda s: s.path)

    def _publish(
        self, statuses: Sequence[SpecStatus], *, status_branch: str, revision: Revision
    ) -> tuple[str | None, str | None]:
        docs = {s.path: document(s) for s in statuses}
        files: dict[str, bytes | None] = {path: self._dump(path, doc) for path, doc in docs.items()}
        files[README_PATH] = readme(statuses)
        removed = [p for p in self._memory.status_bytes if p not in files]
        changed = {p: c for p, c in files.items() if self._memory.status_bytes.get(p) != c}
        if not changed and not removed:
            return None, None
        message = commit_message(
            before=self._memory.status_docs,
            after=[s for s in statuses if s.path in changed],
            removed=removed,
            source_commit=revision.commit,
            instance=self._options.instance,
        )
        try:
            commit = self._git.publish(
                {**changed, **dict.fromkeys(removed)},
                branch=status_branch,
                message=message,
                author=self._options.status_author,
            )
        except GitError as exc:
            log.warning("status push failed", branch=status_branch, error=str(exc))
            self._memory.status_head = None  # re-read the branch next cycle
            return None, str(exc)
        self._memory.status_bytes = {p: c for p, c in files.items() if c is not None}
        self._memory.status_docs = docs
        self._memory.status_head = commit
        return commit, None

    def _dump(self, path: str, doc: Mapping[str, Any]) -> bytes:
        """YAML of a status document, reused while its content stays the same: dumping
        a thousand documents each cycle would cost more than everything else."""
        key = hashlib.blake2b(orjson.dumps(doc), digest_size=16).digest()
        cached = self._memory.dumped.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        content = dump_document(doc)
        self._memory.dumped[path] = (key, content)
        return content


def _entry_status(
    entry: Entry,
    body: Mapping[str, Any] | None,
    subject: tuple[str, ResourceKey] | None,
    *,
    change: Change | None,
    live: Mapping[str, Any] | None,
    stale: set[ResourceKey],
    runs: Sequence[Mapping[str, Any]],
    rollout: Decision | None,
    schedule: ScheduleDecision | None,
    context: RenderContext,
    waiting: str | None,
    namespace: str,
    source_commit: str,
    now: str,
    previous: Mapping[str, Mapping[str, Any]],
) -> SpecStatus:
    """The status of one spec. ``body`` is what it renders to (None while it waits),
    ``subject`` the API version and key of the object it reports on, if any."""
    path = status_path(entry.kind, namespace, entry.name)
    before = previous.get(path) or {}
    key = subject[1] if subject is not None else None
    health = _health(live, stale=key in stale) if live is not None else None
    model = run = schedule_info = None
    transition = rollout.transition if rollout is not None else None
    records: list[dict[str, Any]] = []
    if isinstance(entry.spec, ModelDeployment):
        ref = entry.spec.spec.model.training_run(namespace)
        trained = context.trained.get(ref) if ref is not None else None
        model = _model_info(entry.spec, body, health, trained)
        if trained is not None and trained.run != (before.get("model") or {}).get(
            "fromTrainingRun", {}
        ).get("run"):
            lineage = (
                f"serves {trained.output_uri} from run {trained.run} of TrainingRun "
                f"{entry.spec.spec.model.from_training_run} (spec {trained.source_commit[:7]})"
            )
            transition = f"{lineage}; {transition}" if transition else lineage
    elif isinstance(entry.spec, TrainingRun):
        records = [
            run_record(_name(job), _health(job, stale=resource_key(job) in stale), job)
            for job in runs
        ]
        run = next((r for r in records if key is not None and r["name"] == key.name), None)
        if schedule is not None:
            schedule_info = _schedule_info(schedule, before.get("schedule") or {})
            if run is None and not records:
                upcoming = schedule_info.get("nextTick", "never")
                waiting = f"no run yet; the next tick is at {upcoming}"
    return build_status(
        kind=entry.kind,
        name=entry.name,
        namespace=namespace,
        source=entry.path,
        source_commit=source_commit,
        now=now,
        previous=before or None,
        change=change,
        health=health,
        resources=[f"{subject[0]} {subject[1]}"] if subject is not None else [],
        model=model,
        run=run,
        runs=records,
        history_limit=entry.spec.spec.history_limit if isinstance(entry.spec, TrainingRun) else 10,
        schedule=schedule_info,
        waiting=waiting,
        rollout=_rollout_info(rollout) if rollout is not None else None,
        transition=transition,
    )


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


def _with_rollout(body: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The body carrying the decided traffic split and rollout state, re-stamped."""
    predictor = {k: v for k, v in body["spec"]["predictor"].items() if k != "canaryTrafficPercent"}
    if decision.traffic is not None:
        predictor["canaryTrafficPercent"] = decision.traffic
    metadata = dict(body["metadata"])
    metadata["annotations"] = {
        **metadata.get("annotations", {}),
        STATE_ANNOTATION: decision.state.to_annotation(),
    }
    stamped = {**body, "metadata": metadata, "spec": {**body["spec"], "predictor": predictor}}
    metadata["annotations"][ANNOTATION_APPLIED_HASH] = applied_hash(stamped)
    return stamped


def _rollout_info(decision: Decision) -> dict[str, Any]:
    state = decision.state
    info: dict[str, Any] = {
        "phase": state.phase.value,
        "traffic": 100 if decision.traffic is None else decision.traffic,
        "step": state.step + 1,
    }
    for key, value in (
        ("canaryRevision", state.canary_revision),
        ("stableRevision", state.stable_revision),
        ("startedAt", state.started_at),
        ("reason", state.reason),
        ("story", state.story),
    ):
        if value:
            info[key] = value
    if state.evidence:
        info["evidence"] = [m.text() for m in state.evidence]
    return info


def _resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _model_info(
    spec: ModelDeployment,
    body: Mapping[str, Any] | None,
    health: HealthReport | None,
    trained: TrainedModel | None,
) -> dict[str, Any]:
    info: dict[str, Any] = {"format": spec.spec.model.format}
    if body is not None:
        info["storageUri"] = body["spec"]["predictor"]["model"]["storageUri"]
    if spec.spec.model.from_training_run is not None:
        lineage: dict[str, Any] = {"name": spec.spec.model.from_training_run}
        if trained is not None:
            lineage |= {
                "run": trained.run,
                "sourceCommit": trained.source_commit,
                "completionTime": trained.completion_time,
            }
        info["fromTrainingRun"] = lineage
    if health is not None:
        if health.url:
            info["url"] = health.url
        if health.traffic:
            info["traffic"] = [
                {"revision": t.revision, "percent": t.percent, "latest": t.latest}
                for t in health.traffic
            ]
    return info


def _schedule_info(decision: ScheduleDecision, previous: Mapping[str, Any]) -> dict[str, Any]:
    """The ``schedule`` of a TrainingRun's status. A skipped tick is told until the
    next tick moves lastTick on."""
    info: dict[str, Any] = {"since": format_time(decision.since)}
    if decision.last_tick is not None:
        info["lastTick"] = format_time(decision.last_tick)
    if decision.next_tick is not None:
        info["nextTick"] = format_time(decision.next_tick)
    skipped = decision.skipped
    if skipped is None and previous.get("lastTick") == info.get("lastTick"):
        skipped = previous.get("skipped")
    if skipped:
        info["skipped"] = skipped
    return info


def _jobs_by_training_run(
    objects: Mapping[ResourceKey, Mapping[str, Any]],
) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """The training jobs among ``objects`` by (namespace, TrainingRun name), newest first."""
    jobs: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for key, obj in objects.items():
        if key.kind in _JOB_KINDS and (
            owner := _metadata_map(obj, "labels").get(LABEL_TRAINING_RUN)
        ):
            jobs.setdefault((key.namespace, str(owner)), []).append(obj)
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


def _subject(entry: Entry, default_namespace: str) -> ResourceKey:
    """The InferenceService a ModelDeployment renders to, known without rendering it."""
    return ResourceKey(
        group=_ISVC_API.rpartition("/")[0],
        kind="InferenceService",
        namespace=entry.namespace(default_namespace),
        name=entry.name,
    )


def _preview(entry: Entry, context: RenderContext, training: _Training) -> dict[str, Any] | None:
    """What policies judge of an entry with nothing to apply: for a scheduled run
    between ticks, the run its next tick would start (what a run does is the same at
    every tick). A model waiting for its training run has no rendering yet."""
    ref = (entry.namespace(context.default_namespace), entry.name)
    decision = training.schedules.get(ref)
    if not isinstance(entry.spec, TrainingRun) or decision is None:
        return None
    tick = decision.next_tick or decision.last_tick or decision.since
    return render(entry, replace(context, ticks={**context.ticks, ref: tick}))


def _resolution(entry: Entry, context: RenderContext) -> TrainedModel | datetime | None:
    """What of the context's resolved data an entry's rendering depends on."""
    namespace = entry.namespace(context.default_namespace)
    spec = entry.spec
    if isinstance(spec, ModelDeployment) and (ref := spec.spec.model.training_run(namespace)):
        return context.trained.get(ref)
    if isinstance(spec, TrainingRun):
        return context.ticks.get((namespace, entry.name))
    return None


def _metadata_map(obj: Mapping[str, Any], field_name: str) -> Mapping[str, Any]:
    return ((obj.get("metadata") or {}).get(field_name)) or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))
