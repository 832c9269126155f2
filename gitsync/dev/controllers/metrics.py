"""Synthetic request metrics per InferenceService revision, for Prometheus to scrape.

Canary analysis judges a new revision by its request metrics in Prometheus: error
ratio, latency. The simulated KServe serves no requests (it has no pods), so without
this module gitsync's analysis could only be tested against mocks. Here the dev
controllers make the numbers up from what the simulator knows, deterministically:
every revision that receives traffic (``status.components.predictor.traffic``) serves
its share of a steady request rate, with the error ratio and latency it was created
with, and the counters grow linearly with the time it has been receiving traffic.

Served in the Prometheus text format (``GET /metrics`` on 127.0.0.1), one series set
per revision with a share of traffic above zero, labelled ``namespace``,
``inferenceservice`` and ``revision``. Standard mode has no revisions: there each
predictor Deployment (the stable ``{isvc}-predictor``, a canary's
``{isvc}-{name}-predictor``) is a series set of its own, its name in ``revision``, so
one analysis query (``revision="{{canary_revision}}"``) serves both modes; the
stable Deployment serves what the canaries do not, a canary its ``trafficPercent``
once ``canaryStatuses`` says it is ready:

* ``revision_requests_total{..., code="200"|"500"}``, a counter;
* ``revision_request_duration_seconds``, a histogram (``_bucket{le}``, ``_sum``,
  ``_count``): a log-normal latency whose median is the revision's latency and whose
  95th percentile is 1.5 times it. ``histogram_quantile(0.95, ...)`` returns exactly
  1.5 x latency when the latency is 1, 2 or 5 times a power of ten (1.5 x latency is
  then a bucket bound), and within 6% of it for any latency from 1 ms to 6 s.

Knobs, as annotations on the InferenceService: ``dev.gitsync.io/error-rate``
(fraction of requests answered 500, default 0.001) and
``dev.gitsync.io/latency-seconds`` (median latency, default 0.05) are read when a
revision is created and stay fixed for it (the simulator remembers them in
``status.annotations``; like KServe, which copies annotations into the revision
template, changing one creates a new revision; in Standard mode they are read when a
Deployment is created, and a rolling update keeps them). ``dev.gitsync.io/requests-per-second``
(default 20, split by the traffic percentages) applies at once.

Counts are fractional on purpose: a 0.1% error ratio at a few requests a second is
then exactly 0.1% over any window, which whole requests could not be. These metrics
are for development and tests only.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from gitsync.traffic import DeploymentMode, deployment_mode, predictor_workload

__all__ = [
    "BUCKETS",
    "DEFAULT_ERROR_RATE",
    "DEFAULT_LATENCY_SECONDS",
    "DEFAULT_REQUESTS_PER_SECOND",
    "ERROR_RATE_ANNOTATION",
    "LATENCY_ANNOTATION",
    "REQUESTS_PER_SECOND_ANNOTATION",
    "REVISION_KNOBS",
    "MetricsServer",
    "RevisionProfile",
    "SyntheticTraffic",
    "profile_of",
    "remember_profiles",
]

ERROR_RATE_ANNOTATION: Final = "dev.gitsync.io/error-rate"
LATENCY_ANNOTATION: Final = "dev.gitsync.io/latency-seconds"
REQUESTS_PER_SECOND_ANNOTATION: Final = "dev.gitsync.io/requests-per-second"
#: The knobs a revision is created with: part of its template, like KServe's annotations.
REVISION_KNOBS: Final = frozenset({ERROR_RATE_ANNOTATION, LATENCY_ANNOTATION})

DEFAULT_ERROR_RATE: Final = 0.001
DEFAULT_LATENCY_SECONDS: Final = 0.05
DEFAULT_REQUESTS_PER_SECOND: Final = 20.0

# Ten bounds a decade, 1 ms to 10 s, at most a third apart: fine enough for
# histogram_quantile's linear interpolation to stay close to the true quantile, and
# holding 1.5, 3 and 7.5 so that 1.5 x a round latency is a bound itself.
_MANTISSAS: Final = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.5)
BUCKETS: Final = (
    *(round(m * 10.0**exponent, 6) for exponent in range(-3, 1) for m in _MANTISSAS),
    10.0,
)

_Z95: Final = 1.6448536269514722  # the standard normal's 95th percentile
_SIGMA: Final = math.log(1.5) / _Z95  # p95 = 1.5 x median
_COMPONENT: Final = "predictor"  # the component whose traffic the analysis judges
_MEMORY_PREFIX: Final = "dev.gitsync.io/"
_MEMORY_FIELDS: Final = ("error-rate", "latency-seconds")
_TICK_S: Final = 1.0
_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


# --- what a revision is created with ------------------------------------------------


def _number(value: object, default: float, *, low: float, high: float = math.inf) -> float:
    try:
        number = float(str(value))
    except ValueError:
        return default
    return number if math.isfinite(number) and low <= number <= high else default


@dataclass(frozen=True, slots=True)
class RevisionProfile:
    """How a revision answers: its share of 500s and its median latency."""

    error_rate: float = DEFAULT_ERROR_RATE
    latency_seconds: float = DEFAULT_LATENCY_SECONDS

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, Any]) -> RevisionProfile:
        """The knobs on an InferenceService; an unusable value falls back to its default."""
        return cls(
            error_rate=_number(
                annotations.get(ERROR_RATE_ANNOTATION, DEFAULT_ERROR_RATE),
                DEFAULT_ERROR_RATE,
                low=0.0,
                high=1.0,
            ),
            latency_seconds=_number(
                annotations.get(LATENCY_ANNOTATION, DEFAULT_LATENCY_SECONDS),
                DEFAULT_LATENCY_SECONDS,
                low=1e-6,
            ),
        )

    def within(self, seconds: float) -> float:
        """The fraction of requests answered within ``seconds`` (the log-normal CDF)."""
        return 0.5 * (
            1.0 + math.erf(math.log(seconds / self.latency_seconds) / (_SIGMA * math.sqrt(2.0)))
        )

    @property
    def mean_seconds(self) -> float:
        return self.latency_seconds * math.exp(_SIGMA**2 / 2.0)


def _memory_keys(revision: str) -> tuple[str, str]:
    """Where the simulator remembers a profile: a predictor revision's by its number,
    a Standard-mode Deployment's (``...-predictor``) by its name."""
    number = revision.rsplit("-", 1)[-1]
    if number.isdigit():
        prefix = f"{_MEMORY_PREFIX}{_COMPONENT}-{number}-"
    else:
        prefix = f"{_MEMORY_PREFIX}deploy-{revision}-"
    return prefix + _MEMORY_FIELDS[0], prefix + _MEMORY_FIELDS[1]


def remember_profiles(
    memory: Mapping[str, Any],
    annotations: Mapping[str, Any],
    *,
    latest: str,
    serving: Iterable[str],
) -> dict[str, str]:
    """The profile memory to keep in ``status.annotations``.

    The latest revision keeps what it was created with, or takes the knobs now on the
    object when it has no memory yet (it was just created); revisions still serving
    traffic keep theirs; every other revision's memory is dropped.
    """
    kept: dict[str, str] = {}
    for revision in {*serving, latest}:
        keys = _memory_keys(revision)
        if all(key in memory for key in keys):
            kept.update({key: str(memory[key]) for key in keys})
        elif revision == latest:
            profile = RevisionProfile.from_annotations(annotations)
            kept[keys[0]] = repr(profile.error_rate)
            kept[keys[1]] = repr(profile.latency_seconds)
    return kept


def profile_of(status: Mapping[str, Any], revision: str) -> RevisionProfile:
    """A revision's profile from the simulator's memory (defaults when there is none)."""
    memory = status.get("annotations") or {}
    keys = _memory_keys(revision)
    if not all(key in memory for key in keys):
        return RevisionProfile()
    return RevisionProfile.from_annotations(
        {ERROR_RATE_ANNOTATION: memory[keys[0]], LATENCY_ANNOTATION: memory[keys[1]]}
    )


# --- accruing requests ------------------------------------------------------------------


SeriesKey = tuple[str, str, str]  # namespace, InferenceService, revision


@dataclass(slots=True)
class _Series:
    profile: RevisionProfile
    requests: float = 0.0


def _shares(obj: Mapping[str, Any]) -> dict[str, float]:
    """Each revision's fraction of the predictor's traffic (a revision may be listed
    twice); in Standard mode each predictor Deployment's."""
    status = obj.get("status") or {}
    if deployment_mode(obj) is DeploymentMode.STANDARD:
        return _standard_shares(obj)
    predictor = (status.get("components") or {}).get(_COMPONENT) or {}
    shares: dict[str, float] = defaultdict(float)
    for target in predictor.get("traffic") or []:
        name, percent = target.get("revisionName"), target.get("percent")
        if isinstance(name, str) and isinstance(percent, int | float) and percent > 0:
            shares[name] += float(percent) / 100.0
    return shares


def _standard_shares(obj: Mapping[str, Any]) -> dict[str, float]:
    """The stable Deployment serves what the canaries do not; a canary serves its
    ``trafficPercent`` once ready (until then its share reaches no pod)."""
    status = obj.get("status") or {}
    name = str((obj.get("metadata") or {}).get("name"))
    shares: dict[str, float] = {}
    rest = 100.0
    for canary in status.get("canaryStatuses") or []:
        percent = canary.get("trafficPercent")
        if not isinstance(percent, int) or isinstance(percent, bool):
            continue
        rest -= percent
        if canary.get("ready") is True and percent > 0:
            shares[predictor_workload(name, str(canary.get("name")))] = percent / 100.0
    ready = any(
        c.get("type") == "PredictorReady" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    stable = ((obj.get("spec") or {}).get("predictor") or {}).get("name")
    if ready and rest > 0:
        shares[predictor_workload(name, stable)] = rest / 100.0
    return shares


class SyntheticTraffic:
    """Request counts per revision, accrued at each InferenceService's current split.

    Not thread-safe; :class:`MetricsServer` serialises the calls. A revision's counters
    start at zero when it first receives traffic and keep their count while it has
    none (they are only not exposed then), so they never go down; they live in this
    process only, and a restart of the controllers is a counter reset to Prometheus,
    which ``rate()`` handles.
    """

    def __init__(self) -> None:
        self._series: dict[SeriesKey, _Series] = {}
        self._serving: list[SeriesKey] = []
        self._last: float | None = None

    def advance(self, isvcs: Iterable[Mapping[str, Any]], now: float) -> None:
        """Accrue the requests served since the last call, at the traffic split seen now."""
        elapsed = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        present: set[tuple[str, str]] = set()
        serving: list[SeriesKey] = []
        for obj in isvcs:
            metadata = obj.get("metadata") or {}
            namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name"))
            present.add((namespace, name))
            rate = _number(
                (metadata.get("annotations") or {}).get(
                    REQUESTS_PER_SECOND_ANNOTATION, DEFAULT_REQUESTS_PER_SECOND
                ),
                DEFAULT_REQUESTS_PER_SECOND,
                low=0.0,
            )
            for revision, share in _shares(obj).items():
                key = (namespace, name, revision)
                series = self._series.get(key)
                if series is None:
                    profile = profile_of(obj.get("status") or {}, revision)
                    self._series[key] = _Series(profile)  # its counters start now
                else:
                    series.requests += rate * share * elapsed
                serving.append(key)
        self._series = {key: s for key, s in self._series.items() if key[:2] in present}
        self._serving = sorted(serving)

    def exposition(self) -> str:
        """The series of the revisions serving now, in the Prometheus text format."""
        lines = [
            "# HELP revision_requests_total Requests answered by an InferenceService "
            "revision (synthetic: gitsync dev controllers).",
            "# TYPE revision_requests_total counter",
        ]
        for key in self._serving:
            series = self._series[key]
            errors = series.requests * series.profile.error_rate
            labels = _labels(key)
            lines.append(
                f'revision_requests_total{{{labels},code="200"}} {_value(series.requests - errors)}'
            )
            lines.append(f'revision_requests_total{{{labels},code="500"}} {_value(errors)}')
        lines += [
            "# HELP revision_request_duration_seconds Request latency of an InferenceService "
            "revision (synthetic: gitsync dev controllers).",
            "# TYPE revision_request_duration_seconds histogram",
        ]
        for key in self._serving:
            series = self._series[key]
            labels = _labels(key)
            for bound in BUCKETS:
                count = series.requests * series.profile.within(bound)
                lines.append(
                    f'revision_request_duration_seconds_bucket{{{labels},le="{bound:g}"}} '
                    f"{_value(count)}"
                )
            lines.append(
                f'revision_request_duration_seconds_bucket{{{labels},le="+Inf"}} '
                f"{_value(series.requests)}"
            )
            lines.append(
                f"revision_request_duration_seconds_sum{{{labels}}} "
                f"{_value(series.requests * series.profile.mean_seconds)}"
            )
            lines.append(
                f"revision_request_duration_seconds_count{{{labels}}} {_value(series.requests)}"
            )
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(key: SeriesKey) -> str:
    namespace, name, revision = (_escape(part) for part in key)
    return f'namespace="{namespace}",inferenceservice="{name}",revision="{revision}"'


def _value(number: float) -> str:
    return repr(float(number))


# --- serving ------------------------------------------------------------------------------


class MetricsServer:
    """``GET /metrics`` on 127.0.0.1, over the InferenceServices ``objects()`` returns.

    Requests accrue on every scrape and on a one-second tick, so that a split that
    changes while nobody scrapes is still counted at about the right moment.
    """

    def __init__(
        self,
        objects: Callable[[], Iterable[Mapping[str, Any]]],
        *,
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._objects = objects
        self._clock = clock
        self._traffic = SyntheticTraffic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        render = self.render

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = render().encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", _CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape a second would drown the controllers' own log

        # Binds now, so that a taken port fails the caller, not a thread.
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def render(self) -> str:
        with self._lock:
            self._traffic.advance(self._objects(), self._clock())
            return self._traffic.exposition()

    def start(self) -> None:
        for target, name in ((self._server.serve_forever, "serve"), (self._tick, "tick")):
            thread = threading.Thread(target=target, name=f"metrics-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        if self._threads:
            self._server.shutdown()
        self._server.server_close()

    def _tick(self) -> None:
        while not self._stop.wait(_TICK_S):
            with self._lock:
                self._traffic.advance(self._objects(), self._clock())
