"""Canary analysis: the measurements a rollout step asks for, taken from a metrics
source and judged against the spec's bounds.

The rollout state machine (:mod:`gitsync.rollout`) decides from measurements; this
module only takes them. What goes wrong while measuring is decided by the error's
type: a metrics server that is away gives a measurement without data (inconclusive,
never a pass), while a query Prometheus rejects is the spec's fault (or, for an
address that is not Prometheus, the operator's): no measurement is recorded, the
canary holds where it is, and the spec reports the error instead of rolling back
for "no data".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from gitsync.errors import GitsyncError, Remedy
from gitsync.rollout import Measurement, RolloutState, judge, render_query
from gitsync.specs import Rollout
from gitsync.types import ObjectRef

__all__ = ["Analysis", "MetricsSource", "MetricsSources", "measure"]

log = structlog.get_logger(__name__)


class MetricsSource(Protocol):
    """Where analysis gets a number: one value, or None when there is no data."""

    def value(self, promql: str) -> float | None: ...


#: A metrics source for a provider address.
MetricsSources = Callable[[str], MetricsSource]


@dataclass(frozen=True, slots=True)
class Analysis:
    measurements: tuple[Measurement, ...] = ()
    #: Queries that cannot give a number until a commit (or the operator) fixes them.
    errors: tuple[str, ...] = ()


def measure(
    rollout: Rollout, *, key: ObjectRef, state: RolloutState, sources: MetricsSources
) -> Analysis:
    """Run every metric's queries once."""
    assert rollout.analysis is not None  # noqa: S101 - analysis_due checked it
    try:
        source = sources(rollout.analysis.provider.prometheus.address)
    except GitsyncError as exc:  # an address no client can be made for: this spec's
        return Analysis(errors=(f"analysis provider: {exc}",))
    measurements, errors = [], []
    for metric in rollout.analysis.metrics:
        values: list[float | None] = []
        for query in (metric.query, metric.baseline_query):
            if query is None:
                values.append(None)
                continue
            promql = render_query(query, namespace=key.namespace, name=key.name, state=state)
            try:
                values.append(source.value(promql))
            except GitsyncError as exc:
                if exc.remedy is not Remedy.RETRY:
                    errors.append(f"analysis metric {metric.name!r}: {exc}")
                    break
                log.warning("metric query failed", metric=metric.name, error=str(exc))
                values.append(None)
        else:
            measurements.append(judge(metric, values[0], values[1]))
    if errors:
        # Half a set of measurements is no verdict: hold the step until all can be taken.
        return Analysis(errors=tuple(errors))
    return Analysis(measurements=tuple(measurements))
