"""gitsync's Prometheus metrics: one registry per process, fed after each cycle.

Named and shaped after Flux's ``gotk_reconcile_*`` and Argo CD's ``argocd_app_*`` /
``argocd_git_request_*`` so dashboards read alike: a cycle-duration histogram,
counters of outcomes and object actions, gauges of the specs' state, and client
counters for Git and the Kubernetes API.

Two kinds of metric, kept apart:

* events (cycles, object actions, analysis measurements, Git and API requests) are
  ``prometheus_client`` counters and histograms, only ever incremented;
* state (specs by phase, each canary's step and traffic, the applied revision,
  leadership) is served by one custom collector from the last cycle's
  :class:`~gitsync.telemetry.SpecFigures`, replaced whole under a lock. A spec
  removed from the repo then drops out of the scrape at once, and a scrape never
  sees half of one cycle's state and half of the next (as clearing and re-setting
  labelled gauges would let it).

The registry is a dedicated :class:`~prometheus_client.CollectorRegistry`, not the
library's global one, so two ``Metrics`` in one process (the tests) stay apart and
nothing a dependency registers leaks into gitsync's scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from gitsync.telemetry import Report, SpecFigures, figures

__all__ = ["CONTENT_TYPE", "Metrics"]

#: The classic text format, whatever the scraper's Accept says: every Prometheus
#: since 2.0 reads it, and no content negotiation parses a hostile header.
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
# Cycles range from a skipped one (milliseconds) to a first sync of a thousand
# objects (tens of seconds) and an API outage's timeouts (minutes).
_CYCLE_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_GIT_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The process's metrics; every method is thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._cycle_duration = Histogram(
            "gitsync_cycle_duration_seconds",
            "Duration of reconcile cycles; skipped: nothing new, the cycle ended early.",
            ["skipped"],
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )
        self._cycles = Counter(
            "gitsync_cycles", "Reconcile cycles by outcome.", ["outcome"], registry=r
        )
        self._objects = Counter(
            "gitsync_objects",
            "Objects handled by cycles, by action; failed: the action was wanted but failed.",
            ["action", "failed"],
            registry=r,
        )
        self._measurements = Counter(
            "gitsync_analysis_measurements",
            "Canary analysis measurements by model, metric and verdict.",
            ["namespace", "name", "metric", "verdict"],
            registry=r,
        )
        self._git_duration = Histogram(
            "gitsync_git_request_duration_seconds",
            "Duration of git network operations.",
            ["operation"],
            buckets=_GIT_BUCKETS,
            registry=r,
        )
        self._git_failures = Counter(
            "gitsync_git_request_failures",
            "Git network operations that failed.",
            ["operation"],
            registry=r,
        )
        self._kube_requests = Counter(
            "gitsync_kube_requests",
            "Kubernetes API requests by method and HTTP code ('error': no response).",
            ["method", "code"],
            registry=r,
        )
        self._hooks = Counter(
            "gitsync_webhook_requests",
            "Webhook deliveries by forge and HTTP code.",
            ["forge", "code"],
            registry=r,
        )
        self._state = _State()
        r.register(self._state)

    def record_cycle(self, report: Report) -> None:
        """Count one finished cycle and take its view of the specs."""
        figured = figures(report)
        self._cycle_duration.labels(skipped=_flag(figured.skipped)).observe(figured.duration)
        self._cycles.labels(outcome=figured.outcome).inc()
        for (action, failed), count in figured.objects.items():
            self._objects.labels(action=action, failed=_flag(failed)).inc(count)
        for (namespace, name, metric, verdict), count in figured.measurements.items():
            self._measurements.labels(
                namespace=namespace, name=name, metric=metric, verdict=verdict
            ).inc(count)
        self._state.update(specs=figured.specs, revision=figured.applied_revision)

    def record_git(self, operation: str, seconds: float, *, failed: bool) -> None:
        """A git client observer (:class:`gitsync.clients.git.GitSource`)."""
        self._git_duration.labels(operation=operation).observe(seconds)
        if failed:
            self._git_failures.labels(operation=operation).inc()

    def record_kube(self, method: str, code: int | None) -> None:
        """A Kubernetes client observer (:class:`gitsync.clients.kube.KubeClient`)."""
        self._kube_requests.labels(method=method, code="error" if code is None else str(code)).inc()

    def record_hook(self, forge: str, code: int) -> None:
        self._hooks.labels(forge=forge, code=str(code)).inc()

    def set_leader(self, leading: bool) -> None:
        """For leader election: 1 on the replica that leads, 0 on a standby."""
        self._state.set_leader(leading)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def _flag(value: bool) -> str:
    return "true" if value else "false"


class _State(Collector):
    """The gauges of the last cycle's state, collected from one consistent snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._specs: SpecFigures | None = None
        self._revision: str | None = None
        # The daemon leads until leader election says otherwise.
        self._leading = True

    def update(self, *, specs: SpecFigures | None, revision: str | None) -> None:
        with self._lock:
            if specs is not None:
                self._specs = specs
            if revision is not None:
                self._revision = revision

    def set_leader(self, leading: bool) -> None:
        with self._lock:
            self._leading = leading

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            specs, revision, leading = self._specs, self._revision, self._leading
        leader = GaugeMetricFamily(
            "gitsync_leader", "1 on the replica that leads (reconciles), 0 on a standby."
        )
        leader.add_metric([], 1.0 if leading else 0.0)
        yield leader
        phases = GaugeMetricFamily(
            "gitsync_specs",
            "Specs by kind and phase, as the last cycle saw them.",
            labels=["kind", "phase"],
        )
        step = GaugeMetricFamily(
            "gitsync_rollout_step",
            "The canary step a model's rollout is at.",
            labels=["namespace", "name"],
        )
        traffic = GaugeMetricFamily(
            "gitsync_rollout_canary_traffic_percent",
            "The share of a model's traffic its canary revision gets.",
            labels=["namespace", "name"],
        )
        if specs is not None:
            for (kind, phase), count in sorted(specs.phases.items()):
                phases.add_metric([kind, phase], count)
            for rollout in specs.rollouts:
                step.add_metric([rollout.namespace, rollout.name], rollout.step)
                traffic.add_metric([rollout.namespace, rollout.name], rollout.traffic)
        yield from (phases, step, traffic)
        applied = GaugeMetricFamily(
            "gitsync_last_applied_revision_info",
            "The commit the last successful cycle applied, as its revision label.",
            labels=["revision"],
        )
        if revision is not None:
            applied.add_metric([revision], 1.0)
        yield applied
