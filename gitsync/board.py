"""The dashboard's pages as data: what each page shows, computed from the status
branch and the spec branch, before any HTML.

Pure, so every decision a page makes (which specs a filter keeps, what counts as
the last change of a spec, which status commits are steps of a rollout, which models
a training run feeds) is a function of data that a table test can pin down, and the
templates only lay it out. It shows only what gitsync records: the status documents,
the commits of both branches and the labels of the specs as Git has them now; what
the branches do not hold (how long a cycle took, the raw measurements behind a
verdict) is not made up here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from gitsync.history import Event, SpecCommit, SpecInfo, StatusCommit, timelines
from gitsync.redact import redact
from gitsync.status_document import STATUS_ROOT, Phase, RunRecord, StatusDocument, status_path

__all__ = [
    "Blocked",
    "BoardData",
    "Change",
    "Chart",
    "CycleRow",
    "CyclesPage",
    "Facet",
    "Filters",
    "Link",
    "OverviewPage",
    "OverviewRow",
    "PipelinesPage",
    "RolloutStep",
    "Segment",
    "SpecPage",
    "TrafficPoint",
    "age",
    "cycles_page",
    "key_of",
    "overview_page",
    "path_of_key",
    "pipelines_page",
    "spec_page",
]

#: The label the overview filters teams by (the shipped policies require it).
TEAM_LABEL: Final = "team"
#: Longest filter value taken from a query string; longer ones are cut.
MAX_FILTER: Final = 200
#: Status commits the cycles page lists.
CYCLES_SHOWN: Final = 50
#: The box an analysis chart is drawn in.
CHART_WIDTH: Final = 100
CHART_HEIGHT: Final = 40
# A measurement as Measurement.text writes it: "error-rate 0.2 > 0.01", with
# "vs stable 0.1" after the value for a relative metric.
_MEASUREMENT: Final = re.compile(
    r"^(?P<metric>\S+) (?P<value>\S+)(?: vs stable \S+)? (?P<op><=|>=|<|>) (?P<bound>\S+)$"
)
# Phases that mean something needs a person, listed as the blocked specs of a cycle.
_TROUBLE: Final = frozenset({Phase.INVALID, Phase.FAILED, Phase.DEGRADED, Phase.ROLLED_BACK})


@dataclass(frozen=True, slots=True)
class BoardData:
    """Everything the pages are made of, as read at one head of each branch."""

    status_commit: str | None
    spec_commit: str | None
    #: The current status documents by path.
    documents: Mapping[str, StatusDocument]
    #: Newest first, as :func:`gitsync.audit.status_commits` reads them.
    status_commits: Sequence[StatusCommit] = ()
    #: Newest first, as :func:`gitsync.audit.spec_commits` reads them.
    spec_commits: Sequence[SpecCommit] = ()
    #: Labels by instance-less document path (:func:`gitsync.audit.spec_labels`).
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Filters:
    namespace: str = ""
    team: str = ""
    kind: str = ""
    phase: str = ""
    instance: str = ""
    q: str = ""

    @classmethod
    def of(cls, query: Mapping[str, Sequence[str]]) -> Filters:
        """From a parsed query string: the first value of each known key, trimmed."""

        def first(name: str) -> str:
            values = query.get(name) or ("",)
            return values[0].strip()[:MAX_FILTER]

        return cls(
            namespace=first("namespace"),
            team=first("team"),
            kind=first("kind"),
            phase=first("phase"),
            instance=first("instance"),
            q=first("q"),
        )

    @property
    def active(self) -> bool:
        return any((self.namespace, self.team, self.kind, self.phase, self.instance, self.q))


@dataclass(frozen=True, slots=True)
class Change:
    """A spec's last change on the spec branch (or, before history reaches it, the
    commit its document names)."""

    commit: str
    author: str | None
    summary: str | None
    at: datetime | None

    @property
    def short(self) -> str:
        return self.commit[:7]


@dataclass(frozen=True, slots=True)
class Segment:
    revision: str
    percent: int
    latest: bool


@dataclass(frozen=True, slots=True)
class OverviewRow:
    key: str
    kind: str
    namespace: str
    name: str
    instance: str
    phase: str
    message: str
    version: str
    team: str
    traffic: tuple[Segment, ...]
    rollout: str
    change: Change

    def matches(self, filters: Filters) -> bool:
        wanted = (
            (filters.namespace, self.namespace),
            (filters.team, self.team),
            (filters.kind, self.kind),
            (filters.phase, self.phase),
            (filters.instance, self.instance),
        )
        if any(want and want != have for want, have in wanted):
            return False
        if not filters.q:
            return True
        text = " ".join((self.name, self.namespace, self.kind, self.message, self.version))
        return filters.q.casefold() in text.casefold()


@dataclass(frozen=True, slots=True)
class Facet:
    """One filter's choices, each with how many specs have it."""

    name: str
    choices: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class OverviewPage:
    status_commit: str | None
    rows: tuple[OverviewRow, ...]
    total: int
    phases: tuple[tuple[str, int], ...]
    facets: tuple[Facet, ...]
    filters: Filters


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """A status commit that moved a rollout: where it stood after that commit."""

    at: datetime
    commit: str
    phase: str
    step: int
    traffic: int
    story: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """One analysis metric's measurements over a rollout against its bound, laid out
    in a ``CHART_WIDTH`` x ``CHART_HEIGHT`` box (y grows downwards, as in SVG)."""

    metric: str
    bound: str
    values: tuple[float, ...]
    points: tuple[tuple[float, float], ...]
    bound_y: float


@dataclass(frozen=True, slots=True)
class TrafficPoint:
    at: datetime
    commit: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Link:
    key: str
    label: str


@dataclass(frozen=True, slots=True)
class SpecPage:
    row: OverviewRow
    doc: StatusDocument
    url: str | None
    rollout_steps: tuple[RolloutStep, ...]
    charts: tuple[Chart, ...]
    traffic_history: tuple[TrafficPoint, ...]
    events: tuple[Event, ...]
    #: A model served from a training run: that run's page, if the branch has it.
    trained_by: Link | None
    #: A training run: the models serving its output.
    feeds: tuple[Link, ...]
    #: A training run's runs, newest first (its current run first).
    runs: tuple[RunRecord, ...]


@dataclass(frozen=True, slots=True)
class Blocked:
    key: str
    label: str
    phase: str
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CycleRow:
    """A status commit: one cycle that changed what the branch says."""

    commit: str
    at: datetime
    summary: str
    source_commit: str
    changed: tuple[Link, ...]
    removed: int
    blocked: tuple[Blocked, ...]


@dataclass(frozen=True, slots=True)
class CyclesPage:
    status_commit: str | None
    rows: tuple[CycleRow, ...]
    more: int


def key_of(path: str) -> str:
    """The URL key of a document path: the path without ``status/`` and ``.yaml``."""
    return path.removeprefix(f"{STATUS_ROOT}/").removesuffix(".yaml")


def path_of_key(key: str) -> str:
    return f"{STATUS_ROOT}/{key}.yaml"


def age(at: datetime | None, now: datetime) -> str:
    """How long ago, in the largest whole unit: ``42s``, ``5m``, ``3h``, ``2d``."""
    if at is None:
        return "-"
    seconds = max(0, int((now - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _last_changes(data: BoardData) -> dict[str, SpecCommit]:
    """The newest spec commit of each spec file that history reaches."""
    last: dict[str, SpecCommit] = {}
    for commit in data.spec_commits:
        for path in commit.paths:
            last.setdefault(path, commit)
    return last


def _version(doc: StatusDocument) -> str:
    model = doc.model
    if model is not None and model.storage_uri:
        return redact(model.storage_uri)
    if model is not None and model.from_training_run is not None:
        lineage = model.from_training_run
        return f"run {lineage.run}" if lineage.run else f"from {lineage.name}"
    if doc.run is not None:
        return doc.run.name
    return ""


def _segments(doc: StatusDocument) -> tuple[Segment, ...]:
    if doc.model is None:
        return ()
    return tuple(Segment(t.revision, t.percent, t.latest) for t in doc.model.traffic)


def _row(
    path: str, doc: StatusDocument, data: BoardData, last: Mapping[str, SpecCommit]
) -> OverviewRow:
    labels = data.labels.get(status_path(doc.kind, doc.namespace, doc.name, instance=""), {})
    commit = last.get(doc.source)
    change = (
        Change(commit.commit, commit.author, commit.summary, commit.at)
        if commit is not None
        else Change(doc.source_commit, None, None, None)
    )
    rollout = doc.rollout
    return OverviewRow(
        key=key_of(path),
        kind=doc.kind,
        namespace=doc.namespace,
        name=doc.name,
        instance=doc.instance,
        phase=doc.phase.value,
        message=doc.message,
        version=_version(doc),
        team=labels.get(TEAM_LABEL, ""),
        traffic=_segments(doc),
        rollout=f"{rollout.phase} at {rollout.traffic}%" if rollout is not None else "",
        change=change,
    )


def _rows(data: BoardData) -> list[OverviewRow]:
    last = _last_changes(data)
    return [_row(path, doc, data, last) for path, doc in sorted(data.documents.items())]


def _counts(values: Sequence[str]) -> tuple[tuple[str, int], ...]:
    counts: dict[str, int] = {}
    for value in values:
        if value:
            counts[value] = counts.get(value, 0) + 1
    return tuple(sorted(counts.items()))


def overview_page(data: BoardData, filters: Filters) -> OverviewPage:
    """Every spec the branch reports on, those ``filters`` keep, and the choices of
    each filter (counted over every spec, so a filter never hides its own way back)."""
    rows = _rows(data)
    facets = tuple(
        Facet(name, _counts([getattr(row, name) for row in rows]))
        for name in ("namespace", "team", "kind", "phase", "instance")
    )
    return OverviewPage(
        status_commit=data.status_commit,
        rows=tuple(row for row in rows if row.matches(filters)),
        total=len(rows),
        phases=_counts([row.phase for row in rows]),
        facets=facets,
        filters=filters,
    )


def _rollout_steps(path: str, commits: Sequence[StatusCommit]) -> tuple[RolloutStep, ...]:
    """The status commits where the rollout of ``path`` moved, newest first: each
    commit whose rollout differs from the one before it (oldest to newest)."""
    steps: list[RolloutStep] = []
    previous = None
    for commit in reversed(commits):
        doc = commit.documents.get(path)
        rollout = doc.rollout if doc is not None else None
        if rollout is None or rollout == previous:
            continue
        previous = rollout
        steps.append(
            RolloutStep(
                at=commit.at,
                commit=commit.commit,
                phase=rollout.phase,
                step=rollout.step,
                traffic=rollout.traffic,
                story=rollout.story or rollout.reason or "",
                evidence=rollout.evidence,
            )
        )
    return tuple(reversed(steps))


def _charts(steps: Sequence[RolloutStep]) -> tuple[Chart, ...]:
    """A chart for each metric whose evidence reads as a number against a numeric
    bound (as :meth:`gitsync.rollout.Measurement.text` writes it), oldest first."""
    series: dict[str, tuple[str, float, list[float]]] = {}
    for step in reversed(steps):
        for text in step.evidence:
            found = _MEASUREMENT.match(text)
            if found is None:
                continue
            try:
                value, bound = float(found["value"]), float(found["bound"])
            except ValueError:
                continue
            # The operator tells the verdict (<= passed, > failed): the bound is the number.
            series.setdefault(found["metric"], (found["bound"], bound, []))[2].append(value)
    charts = []
    for metric, (label, bound, values) in sorted(series.items()):
        top = max([*values, bound]) * 1.25 or 1.0
        span = max(1, len(values) - 1)

        def y(value: float, top: float = top) -> float:
            return round(CHART_HEIGHT - value / top * CHART_HEIGHT, 2)

        points = tuple(
            (round(i / span * CHART_WIDTH if len(values) > 1 else CHART_WIDTH / 2, 2), y(v))
            for i, v in enumerate(values)
        )
        charts.append(Chart(metric, label, tuple(values), points, y(bound)))
    return tuple(charts)


def _traffic_history(path: str, commits: Sequence[StatusCommit]) -> tuple[TrafficPoint, ...]:
    """Each status commit that changed the traffic split of ``path``, newest first."""
    points: list[TrafficPoint] = []
    previous: tuple[Segment, ...] | None = None
    for commit in reversed(commits):
        doc = commit.documents.get(path)
        segments = _segments(doc) if doc is not None else ()
        if not segments or segments == previous:
            continue
        previous = segments
        points.append(TrafficPoint(commit.at, commit.commit, segments))
    return tuple(reversed(points))


def _label(doc: StatusDocument) -> str:
    return f"{doc.kind} {doc.namespace}/{doc.name}" if doc.namespace else f"{doc.kind} {doc.name}"


def spec_page(data: BoardData, key: str) -> SpecPage | None:
    """One spec's page; None when the branch has no document at ``key``."""
    path = path_of_key(key)
    doc = data.documents.get(path)
    if doc is None:
        return None
    row = _row(path, doc, data, _last_changes(data))
    (timeline,) = timelines(
        specs={path: SpecInfo.of(doc)},
        spec_commits=data.spec_commits,
        status_commits=data.status_commits,
    )
    same_instance = {p: d for p, d in sorted(data.documents.items()) if d.instance == doc.instance}
    lineage = doc.model.from_training_run if doc.model is not None else None
    trained_by = next(
        (
            Link(key_of(p), _label(d))
            for p, d in same_instance.items()
            if lineage is not None and d.kind == "TrainingRun" and d.name == lineage.name
        ),
        None,
    )
    feeds = tuple(
        Link(key_of(p), _label(d))
        for p, d in same_instance.items()
        if doc.kind == "TrainingRun"
        and d.model is not None
        and d.model.from_training_run is not None
        and d.model.from_training_run.name == doc.name
    )
    return SpecPage(
        row=row,
        doc=doc,
        url=redact(doc.model.url) if doc.model is not None and doc.model.url else None,
        rollout_steps=(steps := _rollout_steps(path, data.status_commits)),
        charts=_charts(steps),
        traffic_history=_traffic_history(path, data.status_commits),
        events=timeline.events,
        trained_by=trained_by,
        feeds=feeds,
        runs=(doc.run, *doc.runs) if doc.run and doc.run not in doc.runs else doc.runs,
    )


def cycles_page(data: BoardData) -> CyclesPage:
    """The newest status commits, each with the specs it changed and, of those, the
    ones that need a person (Invalid, Failed, Degraded, RolledBack) with why."""
    rows = []
    for commit in data.status_commits[:CYCLES_SHOWN]:
        documents = sorted(commit.documents.items())
        rows.append(
            CycleRow(
                commit=commit.commit,
                at=commit.at,
                summary=commit.summary,
                source_commit=commit.source_commit,
                changed=tuple(Link(key_of(p), _label(d)) for p, d in documents),
                removed=len(commit.removed),
                blocked=tuple(
                    Blocked(key_of(p), _label(d), d.phase.value, d.errors or (d.message,))
                    for p, d in documents
                    if d.phase in _TROUBLE
                ),
            )
        )
    return CyclesPage(
        status_commit=data.status_commit,
        rows=tuple(rows),
        more=max(0, len(data.status_commits) - CYCLES_SHOWN),
    )


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a pipeline: a training run, or a model fed by the step before."""

    label: str
    #: Its page, when the branch has a status document for it.
    key: str | None
    phase: str
    #: What it serves (a model), or its latest run (a training run).
    serves: str
    #: The gates its run passed, or what it waits for.
    detail: str


@dataclass(frozen=True, slots=True)
class PipelinesPage:
    status_commit: str | None
    #: Each chain from a training run (or a model fed by none) to a model nothing
    #: follows: train -> gate -> staging -> production.
    chains: tuple[tuple[Stage, ...], ...]


def pipelines_page(data: BoardData) -> PipelinesPage:
    """The train -> gate -> promote chains the status documents record: which run
    each model serves and the gates it passed, and whom a model is promoted from."""
    # Chains are followed by instance: staging and production may each have a
    # ModelDeployment ml/fraud, and a production model may follow staging's.
    instances = {doc.instance for doc in data.documents.values()}
    documents = {
        _of_instance(_label(d), d.instance): (path, d) for path, d in sorted(data.documents.items())
    }
    upstream_of: dict[str, str] = {}
    for label, (_, doc) in documents.items():
        lineage = doc.model.from_training_run if doc.model else None
        if lineage is None:
            continue
        if lineage.promoted_from:
            upstream_of[label] = _of_instance(lineage.promoted_from, doc.instance)
        else:
            owner, _, name = lineage.name.rpartition("/")
            upstream = f"TrainingRun {owner or doc.namespace}/{name}"
            upstream_of[label] = _of_instance(upstream, doc.instance)
    followers: dict[str, list[str]] = {}
    for label, upstream in upstream_of.items():
        followers.setdefault(upstream, []).append(label)
    chains: list[tuple[Stage, ...]] = []

    def walk(label: str, chain: tuple[Stage, ...], seen: frozenset[str]) -> None:
        chain = (*chain, _stage(label, documents.get(label)))
        after = [f for f in followers.get(label, []) if f not in seen]
        if not after:
            chains.append(chain)
        for follower in sorted(after):
            walk(follower, chain, seen | {follower})

    for root in sorted(set(followers) - set(upstream_of)):
        walk(root, (), frozenset({root}))
    if len(instances) <= 1:  # one instance: its name would only be noise
        chains = [tuple(replace(s, label=_without_instance(s.label)) for s in c) for c in chains]
    return PipelinesPage(status_commit=data.status_commit, chains=tuple(chains))


_OF_INSTANCE: Final = " of instance "


def _of_instance(label: str, instance: str) -> str:
    """``label`` naming its instance; a label that names one already keeps it, and an
    old-layout document (no instance) has none to name."""
    if _OF_INSTANCE in label or not instance:
        return label
    return f"{label}{_OF_INSTANCE}{instance}"


def _without_instance(label: str) -> str:
    return label.partition(_OF_INSTANCE)[0]


def _stage(label: str, found: tuple[str, StatusDocument] | None) -> Stage:
    if found is None:
        return Stage(label=label, key=None, phase="Unknown", serves="", detail="no status yet")
    path, doc = found
    if doc.kind == "TrainingRun":
        latest = doc.runs[0] if doc.runs else doc.run
        serves = f"run {latest.name} ({latest.phase})" if latest else ""
        return Stage(label, key_of(path), doc.phase.value, serves, doc.message)
    lineage = doc.model.from_training_run if doc.model else None
    serves = (doc.model.storage_uri or "") if doc.model else ""
    if lineage is not None and lineage.run:
        serves = f"{serves} (run {lineage.run})"
    detail = "; ".join(lineage.evidence) if lineage and lineage.evidence else doc.message
    return Stage(label, key_of(path), doc.phase.value, serves, detail)
