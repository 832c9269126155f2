"""What gitsync says about itself: figures from a finished cycle, and probe verdicts.

Metrics are derived from the :class:`~gitsync.reconciler.CycleReport` a cycle already
returns, once, after the cycle, instead of counters sprinkled through the core: the
core stays functions of data, and the figures cannot disagree with what the cycle
reported (the log line, the status commit). The Prometheus side (registry, metric
types, exposition) is :mod:`gitsync.metrics`; here are only plain values.

Label values are bounded: outcomes, actions, phases and verdicts are enums, and
the only free-form values are the names of specs and of their analysis metrics,
which the spec repository bounds.

The probe verdicts judge a :class:`Progress` the daemon's loop keeps: liveness asks
whether the loop made progress within the bound it promised (see :func:`alive`),
readiness whether it completed a cycle, or is a standby that by design does not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gitsync.analysis import Analysis
from gitsync.diff import ChangeSet
from gitsync.result import CycleResult, Outcome
from gitsync.status_document import Phase, StatusDocument
from gitsync.types import ObjectRef

__all__ = [
    "CycleFigures",
    "Progress",
    "Report",
    "RolloutFigure",
    "SpecFigures",
    "alive",
    "figures",
    "ready",
]


class _Revision(Protocol):
    @property
    def commit(self) -> str: ...


class Report(Protocol):
    """What the figures need of a finished cycle (the reconciler's ``CycleReport``)."""

    @property
    def revision(self) -> _Revision | None: ...
    @property
    def changes(self) -> ChangeSet: ...
    @property
    def statuses(self) -> tuple[StatusDocument, ...]: ...
    @property
    def result(self) -> CycleResult: ...
    @property
    def skipped(self) -> bool: ...
    @property
    def duration(self) -> float: ...
    @property
    def analyses(self) -> Mapping[ObjectRef, Analysis]: ...


@dataclass(frozen=True, slots=True)
class RolloutFigure:
    namespace: str
    name: str
    step: int
    traffic: int


@dataclass(frozen=True, slots=True)
class SpecFigures:
    """The specs as one cycle saw them: a state, replacing the previous one whole."""

    #: (kind, phase) -> specs; every phase of every kind seen, zeros included, so a
    #: phase that empties reads 0 instead of vanishing.
    phases: Mapping[tuple[str, str], int]
    rollouts: tuple[RolloutFigure, ...]


@dataclass(frozen=True, slots=True)
class CycleFigures:
    outcome: str
    skipped: bool
    duration: float
    #: (action, failed) -> objects.
    objects: Mapping[tuple[str, bool], int]
    #: (namespace, name, metric, verdict) -> measurements.
    measurements: Mapping[tuple[str, str, str, str], int]
    #: None when the cycle says nothing new about the specs (it was skipped, or cut
    #: short before it could tell): the previous state stands.
    specs: SpecFigures | None
    #: The commit this cycle brought the cluster to; None unless it succeeded.
    applied_revision: str | None


def figures(report: Report) -> CycleFigures:
    """The figures of one finished cycle."""
    objects = Counter((c.action.value, c.error is not None) for c in report.changes.changes)
    measurements = Counter(
        (key.namespace, key.name, m.metric, m.verdict.value)
        for key, analysis in report.analyses.items()
        for m in analysis.measurements
    )
    succeeded = report.result.outcome is Outcome.SUCCEEDED
    # A cycle that succeeded with no statuses has no specs; one that failed without
    # statuses could not read them, and says nothing about them.
    tells = not report.skipped and (bool(report.statuses) or succeeded)
    return CycleFigures(
        outcome=report.result.outcome.value,
        skipped=report.skipped,
        duration=report.duration,
        objects=dict(objects),
        measurements=dict(measurements),
        specs=_spec_figures(report.statuses) if tells else None,
        applied_revision=report.revision.commit if succeeded and report.revision else None,
    )


def _spec_figures(statuses: tuple[StatusDocument, ...]) -> SpecFigures:
    phases = {(kind, phase.value): 0 for kind in {s.kind for s in statuses} for phase in Phase}
    for status in statuses:
        phases[status.kind, status.phase.value] += 1
    rollouts = tuple(
        RolloutFigure(s.namespace, s.name, step=s.rollout.step, traffic=s.rollout.traffic)
        for s in sorted(statuses, key=lambda s: (s.namespace, s.name))
        if s.rollout is not None
    )
    return SpecFigures(phases=phases, rollouts=rollouts)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where the daemon's loop stands, in ``time.monotonic()`` seconds."""

    #: Cycles finished, whatever their outcome.
    cycles: int
    #: The loop promised its next sign of life (a cycle starting or ending) by then.
    due_by: float
    #: When the running cycle started; None while the loop waits.
    busy_since: float | None = None


def alive(progress: Progress, *, now: float) -> bool:
    """True while the loop keeps its promise: a cycle running for less than the cycle
    timeout, or a wait no longer than the delay it chose plus the cycle timeout.

    The bound follows the loop's own pacing rather than a fixed interval, so a
    daemon backing off for ten minutes from a broken remote is still alive (the
    kubelet restarting it would fix nothing), while a cycle hung on a dead socket
    past the timeout is not (a restart does fix that).
    """
    return now <= progress.due_by


def ready(progress: Progress, *, standby: bool) -> bool:
    """True once a cycle has finished (whatever its outcome: a cycle that found a
    broken spec still serves hooks and metrics), or at once for a standby replica,
    which waits for the lease instead of running cycles."""
    return standby or progress.cycles > 0
