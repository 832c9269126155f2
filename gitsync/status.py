"""Status documents: what gitsync commits back to Git after each cycle.

Pure functions from what a cycle learnt (validation, the change applied, the live
object's health) to one YAML document per spec at
``status/<namespace>/<Kind>/<name>.yaml``, a ``status/README.md`` table, and a commit
message. Documents are deterministic (no "last seen" clock): a cycle where nothing
changed produces byte-identical files, so it commits nothing. Condition transition
times are carried over from the previous document unless the condition changed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from gitsync.conditions import Condition, ConditionStatus, summarize
from gitsync.diff import Action, Change
from gitsync.errors import Remedy
from gitsync.health import Health, HealthReport
from gitsync.loading import Diagnostic
from gitsync.render import ANNOTATION_SCHEDULED_AT, ANNOTATION_SOURCE_COMMIT, output_uri
from gitsync.trailers import Trailers

__all__ = [
    "README_PATH",
    "STATUS_ROOT",
    "Phase",
    "SpecStatus",
    "build_status",
    "commit_message",
    "document",
    "dump_document",
    "parse_document",
    "readme",
    "render_document",
    "run_record",
    "status_path",
]

STATUS_ROOT: Final = "status"
README_PATH: Final = f"{STATUS_ROOT}/README.md"


class Phase(enum.Enum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    INVALID = "Invalid"
    ROLLED_BACK = "RolledBack"
    UNKNOWN = "Unknown"


_PHASES: Final = frozenset(p.value for p in Phase)
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
_VALID: Final = Condition("Valid", "True", "Valid", "the spec loads and passes its policies")


@dataclass(frozen=True, slots=True)
class SpecStatus:
    kind: str
    name: str
    namespace: str
    source: str
    source_commit: str
    phase: Phase
    message: str
    conditions: tuple[Mapping[str, str], ...] = ()
    resources: tuple[str, ...] = ()
    model: Mapping[str, Any] | None = None
    run: Mapping[str, Any] | None = None
    runs: tuple[Mapping[str, Any], ...] = ()
    schedule: Mapping[str, Any] | None = None
    errors: tuple[str, ...] = field(default_factory=tuple)
    rollout: Mapping[str, Any] | None = None
    #: What this cycle did to a rollout, in words (the status commit tells it).
    transition: str | None = None

    @property
    def path(self) -> str:
        return status_path(self.kind, self.namespace, self.name)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> SpecStatus:
        """The status a document records, to publish again unchanged."""
        phase = doc.get("phase")
        return cls(
            kind=str(doc.get("kind")),
            name=str(doc.get("name")),
            namespace=str(doc.get("namespace") or ""),
            source=str(doc.get("source") or ""),
            source_commit=str(doc.get("sourceCommit") or ""),
            phase=Phase(phase) if phase in _PHASES else Phase.UNKNOWN,
            message=str(doc.get("message") or ""),
            conditions=tuple(c for c in doc.get("conditions") or [] if isinstance(c, Mapping)),
            resources=tuple(str(r) for r in doc.get("resources") or []),
            model=doc.get("model"),
            run=doc.get("run"),
            runs=tuple(doc.get("runs") or ()),
            schedule=doc.get("schedule"),
            errors=tuple(str(e) for e in doc.get("errors") or []),
            rollout=doc.get("rollout"),
        )


def status_path(kind: str, namespace: str, name: str) -> str:
    return f"{STATUS_ROOT}/{namespace or '_cluster'}/{kind}/{name}.yaml"


def _conditions(
    phase: Phase,
    message: str,
    *,
    invalid: bool,
    change: Change | None,
    revision: str,
    previous_doc: Mapping[str, Any] | None,
    now: str,
) -> tuple[dict[str, str], ...]:
    """The spec's conditions: Valid, Applied and Healthy, each owned by the part of
    the cycle that decides it, and Ready, Reconciling and Stalled derived from them."""
    reason = phase.value
    valid = Condition("Valid", "False", reason, message) if invalid else _VALID
    owned = [valid]
    # A spec with nothing to apply yet (it waits on a training run, or between
    # ticks) has no Applied condition rather than one stuck at Unknown.
    if change is not None and change.error is not None:
        owned.append(Condition("Applied", "False", "ApplyFailed", change.error))
    elif change is not None and change.action is not Action.SKIPPED:
        # One message whatever the action, so the cycle after a create commits nothing.
        owned.append(Condition("Applied", "True", "Applied", f"{change.key} is applied"))
    if not invalid:
        health = _HEALTH_STATUS.get(phase, "Unknown")
        owned.append(Condition("Healthy", health, reason, message))
    return summarize(
        owned,
        reconciling=Condition("Reconciling", "True", reason, message)
        if phase in _IN_PROGRESS
        else None,
        stalled=Condition("Stalled", "True", reason, message) if phase in _STALLED else None,
        revision=revision,
        previous=(previous_doc or {}).get("conditions") or (),
        now=now,
    )


def build_status(
    *,
    kind: str,
    name: str,
    namespace: str,
    source: str,
    source_commit: str,
    now: str,
    previous: Mapping[str, Any] | None = None,
    diagnostics: Sequence[Diagnostic] = (),
    change: Change | None = None,
    health: HealthReport | None = None,
    resources: Sequence[str] = (),
    model: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
    runs: Sequence[Mapping[str, Any]] = (),
    history_limit: int = 10,
    schedule: Mapping[str, Any] | None = None,
    waiting: str | None = None,
    rollout: Mapping[str, Any] | None = None,
    transition: str | None = None,
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
    problems = (*(str(d) for d in diagnostics), *errors)
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
    elif rollout is not None and rollout.get("phase") in {"RolledBack", "Aborted"}:
        phase, message = Phase.ROLLED_BACK, str(rollout.get("reason") or "rolled back")
    elif rollout is not None and rollout.get("phase") in {"Progressing", "Paused"}:
        phase = Phase.PROGRESSING
        message = transition or str(rollout.get("story") or f"canary {rollout.get('traffic')}%")
    elif health is not None:
        phase, message = _PHASE_OF_HEALTH[health.health], health.message
    elif waiting is not None:
        phase, message = Phase.PENDING, waiting
    else:
        phase, message = Phase.UNKNOWN, "not observed yet"
    if change is not None and change.drift:
        message = f"{message} (drift {'reverted' if change.writes else 'detected'})"
    if schedule is not None and schedule.get("skipped"):
        message = f"{message}; {schedule['skipped']}"
    history = _run_history(previous, [*([run] if run else []), *runs], history_limit)
    return SpecStatus(
        kind=kind,
        name=name,
        namespace=namespace,
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
        transition=transition,
    )


def _phase_of_error(change: Change) -> Phase:
    # Rejected by the API server's schema: only a new commit can fix it.
    return Phase.INVALID if change.error_remedy is Remedy.WAIT_FOR_COMMIT else Phase.DEGRADED


def _run_history(
    previous: Mapping[str, Any] | None, observed: Sequence[Mapping[str, Any]], limit: int
) -> tuple[Mapping[str, Any], ...]:
    """The last ``limit`` runs, newest first: those observed now (which replace their
    own older entries), then the remembered ones no longer in the cluster."""
    current: dict[str, Mapping[str, Any]] = {}
    for run in observed:
        current.setdefault(str(run.get("name")), run)
    older = [
        r
        for r in (previous or {}).get("runs") or []
        if isinstance(r, Mapping) and str(r.get("name")) not in current
    ]
    return (*current.values(), *older)[:limit]


def run_record(name: str, health: HealthReport, job: Mapping[str, Any] | None) -> dict[str, Any]:
    """One run as its TrainingRun's status records it.

    ``job`` is the run's object (live, or as just written); it names where the run
    writes its model, the commit of the spec that started it and, for a scheduled
    run, its tick.
    """
    record: dict[str, Any] = {"name": name, "phase": health.health.value}
    for key in ("startTime", "completionTime", "replicaStatuses"):
        if key in health.details:
            record[key] = health.details[key]
    if health.health is Health.FAILED:
        record["reason"] = health.message
    annotations = ((job or {}).get("metadata") or {}).get("annotations") or {}
    if job is not None and (uri := output_uri(job)):
        record["outputUri"] = uri
    if commit := annotations.get(ANNOTATION_SOURCE_COMMIT):
        record["sourceCommit"] = commit
    if tick := annotations.get(ANNOTATION_SCHEDULED_AT):
        record["scheduledAt"] = tick
    return record


def render_document(status: SpecStatus) -> bytes:
    """The status document as YAML (see :func:`document` for its content)."""
    return dump_document(document(status))


def dump_document(doc: Mapping[str, Any]) -> bytes:
    text = yaml.dump(
        dict(doc), Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True, width=1000
    )
    return text.encode("utf-8")


def document(status: SpecStatus) -> dict[str, Any]:
    """The content of a status document: plain data, as :func:`parse_document` reads it."""
    doc: dict[str, Any] = {
        "kind": status.kind,
        "name": status.name,
        "namespace": status.namespace,
        "source": status.source,
        "sourceCommit": status.source_commit,
        "phase": status.phase.value,
        "message": status.message,
        "conditions": [dict(c) for c in status.conditions],
    }
    if status.resources:
        doc["resources"] = list(status.resources)
    if status.model is not None:
        doc["model"] = dict(status.model)
    if status.run is not None:
        doc["run"] = dict(status.run)
    if status.runs:
        doc["runs"] = [dict(r) for r in status.runs]
    if status.schedule is not None:
        doc["schedule"] = dict(status.schedule)
    if status.rollout is not None:
        doc["rollout"] = dict(status.rollout)
    if status.errors:
        doc["errors"] = list(status.errors)
    return doc


def parse_document(content: bytes) -> dict[str, Any]:
    """A previous status document; an unreadable one counts as absent."""
    try:
        data = yaml.load(content, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _traffic_text(model: Mapping[str, Any] | None) -> str:
    if not model:
        return ""
    return ", ".join(f"{t.get('revision')} {t.get('percent')}%" for t in model.get("traffic") or [])


def readme(statuses: Iterable[SpecStatus]) -> bytes:
    """A Markdown table of every spec, for people browsing the status branch."""
    rows = sorted(statuses, key=lambda s: (s.namespace, s.kind, s.name))
    lines = [
        "# gitsync status",
        "",
        "One row per spec; each links to its status document. Source is the commit that",
        "last changed the spec's file.",
        "",
        "| Namespace | Kind | Name | Phase | Model / run | Traffic | Source | Message |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        what = ""
        if s.model:
            what = str(s.model.get("storageUri") or "")
        elif s.run:
            what = str(s.run.get("name") or "")
        message = s.message.replace("|", "\\|").replace("\n", " ")
        link = f"[{s.name}]({s.path.removeprefix(STATUS_ROOT + '/')})"
        lines.append(
            f"| {s.namespace} | {s.kind} | {link} | {s.phase.value} | {what} | "
            f"{_traffic_text(s.model)} | `{s.source}@{s.source_commit[:7]}` | {message} |"
        )
    return ("\n".join(lines) + "\n").encode("utf-8")


def commit_message(
    *,
    before: Mapping[str, Mapping[str, Any]],
    after: Sequence[SpecStatus],
    removed: Sequence[str],
    source_commit: str,
    instance: str,
) -> str:
    """One summary line, a line per changed spec, then trailers."""
    details = []
    for status in after:
        old = before.get(status.path)
        old_phase = old.get("phase") if old else None
        if old_phase == status.phase.value and old and old.get("message") == status.message:
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
    stories = [f"{s.name}: {s.transition}" for s in after if s.transition]
    # The controller moving traffic after a step is news too: say where it went.
    stories += [
        f"{s.name}: traffic now {_traffic_text(s.model)}"
        for s in after
        if not s.transition
        and s.model
        and s.model.get("traffic")
        and (before.get(s.path) or {}).get("model", {}).get("traffic") != s.model.get("traffic")
    ]
    if len(stories) == 1:
        subject = f"{stories[0]} [source {source_commit[:7]}]"
    elif stories:
        details = [*(f"- {story}" for story in stories), *details]
    trailers = Trailers(source_commit=source_commit, instance=instance).format()
    return "\n".join([subject, "", *details, "", trailers])
