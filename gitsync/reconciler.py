"""One reconcile cycle: Git -> validated specs -> cluster -> status back in Git.

The cycle is a fixed sequence of steps over one :class:`Reconciler`, which keeps what
is worth keeping between cycles (parsed files by blob id, which commit last changed
each file, namespaces known to exist, the last status documents) so that a cycle in
which nothing changed reads no YAML, writes nothing to the cluster and commits
nothing. The CLI runs one cycle; the daemon runs them on a schedule.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import structlog

from gitsync.apply import execute
from gitsync.clients.git import Author, GitSource, LastChanges, Revision
from gitsync.clients.kube import Informer, KubeClient
from gitsync.diff import Change, ChangeSet, PrunePolicy, holds, plan_changes
from gitsync.errors import ApiUnavailableError, GitError, GitsyncError, NotFoundError, Remedy
from gitsync.health import Health, HealthReport, assess
from gitsync.loading import (
    Diagnostic,
    Entry,
    FileResult,
    LoadResult,
)
from gitsync.policy import enforce, entry_object
from gitsync.render import (
    ANNOTATION_APPLIED_HASH,
    LABEL_INSTANCE,
    RenderContext,
    ResourceKey,
    applied_hash,
    render,
    resource_key,
)
from gitsync.rollout import (
    STATE_ANNOTATION,
    Decision,
    Measurement,
    RolloutState,
    analysis_due,
    decide,
    judge,
    predictor_hash,
    render_query,
)
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
    dumped: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # path: (json, yaml)
    rendered: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)
    #: Each spec as the last cycle read it: ``oldObject`` for transition policies.
    previous_specs: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    status_head: str | None = None
    extra_kinds: set[tuple[str, str]] = field(default_factory=set)
    live_version: int | None = None
    #: The last cycle left nothing that another try could fix (transient failures,
    #: an unpublished status): with the same commit and no live change, skip.
    settled: bool = False


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
        context = RenderContext(
            instance=self._options.instance,
            default_namespace=config.defaults.namespace,
            source_commits=self._memory.last_changes.by_path,
        )
        desired = self._render(loaded.entries, context, blobs)
        verdicts = enforce(
            snapshot.policies,
            list(zip(loaded.entries, desired, strict=True)),
            default_namespace=config.defaults.namespace,
            old_objects=self._memory.previous_specs,
        )
        kept = {id(entry) for entry in verdicts.entries}
        desired = [b for e, b in zip(loaded.entries, desired, strict=True) if id(e) in kept]
        # oldObject is the spec as last accepted: a denied change must not become the
        # base its own next attempt is judged against.
        accepted = {
            (e.kind, e.namespace(config.defaults.namespace), e.name): entry_object(e)
            for e in verdicts.entries
        }
        denied_keys = {
            (e.kind, e.namespace(config.defaults.namespace), e.name)
            for e in loaded.entries
            if id(e) not in kept
        }
        self._memory.previous_specs = {
            **{k: v for k, v in self._memory.previous_specs.items() if k in denied_keys},
            **accepted,
        }
        loaded = verdicts.applied_to(loaded)
        status_branch = self._options.status_branch or config.status_branch
        self._read_statuses(status_branch)

        live = self._live(desired)
        desired, rollouts = self._step_rollouts(loaded.entries, desired, live)
        plan = plan_changes(
            desired,
            live,
            instance=self._options.instance,
            failed_paths=loaded.failed_paths,
            declared_runs=[
                (entry.namespace(config.defaults.namespace), entry.name)
                for entry in loaded.entries
                if isinstance(entry.spec, TrainingRun)
            ],
            finished_runs=finished_runs(self._memory.status_docs.values()),
            prune=PrunePolicy(enabled=config.prune.enabled, max_ratio=config.prune.max_ratio),
            self_heal=config.self_heal,
        )
        changes, written = execute(
            self._kube,
            plan,
            create_namespaces=config.create_namespaces,
            known_namespaces=self._memory.namespaces,
        )
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

    def _render(
        self, entries: Sequence[Entry], context: RenderContext, blobs: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Render every entry, reusing the bodies of entries whose inputs did not change."""
        rendered: dict[tuple[str, ...], dict[str, Any]] = {}
        bodies = []
        for entry in entries:
            key = (
                blobs[entry.path],
                entry.path,
                str(entry.document),
                context.source_commits.get(entry.path, ""),
                context.default_namespace,
            )
            body = self._memory.rendered.get(key) or render(entry, context)
            rendered[key] = body
            bodies.append(body)
        self._memory.rendered = rendered
        return bodies

    def _step_rollouts(
        self,
        entries: Sequence[Entry],
        desired: Sequence[dict[str, Any]],
        live: Mapping[ResourceKey, Mapping[str, Any]],
    ) -> tuple[list[dict[str, Any]], dict[ResourceKey, Decision]]:
        """Give each canary ModelDeployment the traffic split and state its rollout is at.

        Other objects pass unchanged. The bodies come back re-stamped, so an unchanged
        rollout step still plans as unchanged.
        """
        now = self._clock()
        bodies: list[dict[str, Any]] = []
        decisions: dict[ResourceKey, Decision] = {}
        for entry, body in zip(entries, desired, strict=True):
            spec = entry.spec
            if not isinstance(spec, ModelDeployment) or spec.spec.rollout.strategy != "canary":
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

    def _live(self, desired: Sequence[Mapping[str, Any]]) -> dict[ResourceKey, Mapping[str, Any]]:
        """Every object of this instance, of every kind we render, were given, or
        recorded in a status document (so a kind whose last file is gone is pruned)."""
        kinds = set(_RENDERED_KINDS) | self._memory.extra_kinds
        kinds |= {(str(o["apiVersion"]), str(o["kind"])) for o in desired}
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
        desired: Sequence[Mapping[str, Any]],
        changes: ChangeSet,
        observed: Mapping[ResourceKey, Mapping[str, Any]],
        stale: set[ResourceKey],
        config: Config,
        rollouts: Mapping[ResourceKey, Decision],
    ) -> list[SpecStatus]:
        now = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        by_key = {change.key: change for change in changes.changes}
        commits = self._memory.last_changes.by_path if self._memory.last_changes else {}
        previous = self._memory.status_docs
        statuses: dict[str, SpecStatus] = {}
        for entry, body in zip(loaded.entries, desired, strict=True):
            key = resource_key(body)
            status = _entry_status(
                entry,
                body,
                change=by_key.get(key),
                live=observed.get(key),
                stale=key in stale,
                rollout=rollouts.get(key),
                namespace=entry.namespace(config.defaults.namespace),
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
        key = orjson.dumps(doc)
        cached = self._memory.dumped.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        content = dump_document(doc)
        self._memory.dumped[path] = (key, content)
        return content


def _entry_status(
    entry: Entry,
    body: Mapping[str, Any],
    *,
    change: Change | None,
    live: Mapping[str, Any] | None,
    stale: bool,
    rollout: Decision | None,
    namespace: str,
    source_commit: str,
    now: str,
    previous: Mapping[str, Mapping[str, Any]],
) -> SpecStatus:
    key = resource_key(body)
    health = assess(live) if live is not None else None
    if stale:
        waiting = Health.PROGRESSING if key.kind == "InferenceService" else Health.PENDING
        health = HealthReport(waiting, "applied; waiting for the controller to report")
    model = run = None
    if isinstance(entry.spec, ModelDeployment):
        model = _model_info(entry.spec, health)
    elif isinstance(entry.spec, TrainingRun):
        run = _run_info(key.name, health) if health is not None else None
    path = status_path(entry.kind, namespace, entry.name)
    return build_status(
        kind=entry.kind,
        name=entry.name,
        namespace=namespace,
        source=entry.path,
        source_commit=source_commit,
        now=now,
        previous=previous.get(path),
        change=change,
        health=health,
        resources=[f"{body['apiVersion']} {key}"],
        model=model,
        run=run,
        rollout=_rollout_info(rollout) if rollout is not None else None,
        transition=rollout.transition if rollout is not None else None,
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
    ):
        if value:
            info[key] = value
    if state.evidence:
        info["evidence"] = [m.text() for m in state.evidence]
    return info


def _resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _model_info(spec: ModelDeployment, health: HealthReport | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "format": spec.spec.model.format,
        "storageUri": spec.spec.model.storage_uri,
    }
    if health is not None:
        if health.url:
            info["url"] = health.url
        if health.traffic:
            info["traffic"] = [
                {"revision": t.revision, "percent": t.percent, "latest": t.latest}
                for t in health.traffic
            ]
    return info


def _run_info(name: str, health: HealthReport) -> dict[str, Any]:
    info: dict[str, Any] = {"name": name, "phase": health.health.value}
    for key in ("startTime", "completionTime", "replicaStatuses"):
        if key in health.details:
            info[key] = health.details[key]
    if health.health is Health.FAILED:
        info["reason"] = health.message
    return info
