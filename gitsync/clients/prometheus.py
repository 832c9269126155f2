"""The one module that talks to Prometheus: instant PromQL queries over its HTTP API.

Canary analysis judges a new revision by numbers such as its error ratio or its p95
latency, each the answer to one PromQL query written in a spec. This module sends
such a query (``POST /api/v1/query``) and turns the answer into one number, into "no
data", or into an error whose type says what to do about it, as everywhere in gitsync
(:mod:`gitsync.errors`):

* Prometheus unreachable, timing out or failing on its side:
  :class:`MetricsUnavailableError`, transient (retry; until then the analysis has no
  verdict);
* a query Prometheus rejects (syntax, or an evaluation error such as many-to-many
  matching), or one whose result is not a single number (several series, a range
  vector, a string): :class:`MetricQueryError`, a spec error that only a new commit
  fixes;
* an address that is not a Prometheus API (404, a login page) or that refuses us
  (401, 403): :class:`~gitsync.errors.ConfigurationError`, for the operator.

No data is not zero: an empty result, NaN (the 0/0 of an error ratio while a revision
serves no requests) or an infinity is returned as ``None``, which the analysis must
treat as inconclusive, never as a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
import urllib3

from gitsync.errors import ConfigurationError, GitsyncError, SpecError, TransientError

__all__ = [
    "MetricQueryError",
    "MetricsUnavailableError",
    "PrometheusClient",
    "Sample",
]

_DEFAULT_TIMEOUT_S: Final = 10.0
_QUERY_PATH: Final = "/api/v1/query"
_SHOWN_SERIES: Final = 3


class MetricsUnavailableError(TransientError):
    """Prometheus could not be reached, timed out, or failed on its side."""


class MetricQueryError(SpecError):
    """Prometheus rejected a query, or its result is not one number: fix the spec."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One number a query returned, at the time Prometheus evaluated it.

    ``labels`` are the series' labels for a one-series vector, empty for a scalar.
    """

    value: float
    timestamp: datetime
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class PrometheusClient:
    """Instant queries against one Prometheus (or a compatible API, such as Thanos).

    ``address`` is the base URL the API lives under, e.g. ``http://127.0.0.1:9090`` or
    ``https://monitoring.example.com/prometheus``. ``timeout`` (seconds) bounds the
    connection, the wait for the answer, and the query's evaluation on the server.
    """

    def __init__(self, address: str, *, timeout: float = _DEFAULT_TIMEOUT_S) -> None:
        url = urlsplit(address)
        if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
            raise ConfigurationError(
                f"Prometheus address {address!r}: expected http(s)://host[:port][/path]"
            )
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigurationError(f"Prometheus timeout {timeout!r}: expected seconds > 0")
        self.address = address.rstrip("/")
        self.timeout = timeout
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False
        )

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def query(self, promql: str, *, at: datetime | None = None) -> Sample | None:
        """Evaluate ``promql`` at ``at`` (default: now, by Prometheus' clock).

        Returns the one number it yields, or None when there is no data (no series,
        NaN, ±Inf). Raises :class:`MetricsUnavailableError`, :class:`MetricQueryError`
        or :class:`~gitsync.errors.ConfigurationError` (see the module's docstring).
        """
        fields = {"query": promql, "timeout": f"{self.timeout:g}s"}
        if at is not None:
            if at.tzinfo is None:
                raise ValueError("query time must be timezone-aware")
            fields["time"] = f"{at.timestamp():.3f}"
        url = self.address + _QUERY_PATH
        try:
            # POST with a form body: a long query does not run into URL length limits.
            response = self._pool.request("POST", url, fields=fields, encode_multipart=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise MetricsUnavailableError(f"Prometheus {self.address}: {exc}") from exc
        body = _json(response.data)
        if response.status != 200:
            raise self._error(promql, response.status, body, response.data)
        if (
            body is None
            or body.get("status") != "success"
            or not isinstance(body.get("data"), dict)
        ):
            raise ConfigurationError(
                f"{url}: not a Prometheus API answer: {_snippet(response.data)}"
            )
        return _one_number(f"PromQL {promql!r} (Prometheus {self.address})", body["data"])

    def value(self, promql: str, *, at: datetime | None = None) -> float | None:
        """Just the number :meth:`query` returns, or None when there is no data."""
        sample = self.query(promql, at=at)
        return None if sample is None else sample.value

    def _error(
        self, promql: str, status: int, body: dict[str, Any] | None, raw: bytes
    ) -> GitsyncError:
        message = str(body.get("error")) if body and body.get("error") else _snippet(raw)
        kind = f" ({body['errorType']})" if body and body.get("errorType") else ""
        text = f"Prometheus {self.address}: HTTP {status}{kind}: {message}"
        if status in (400, 422) and body is not None:
            # bad_data (400: it does not parse) and execution (422: it cannot be
            # evaluated, e.g. many-to-many matching) are the query's fault.
            return MetricQueryError(f"PromQL {promql!r}: {text}")
        if status == 429 or status >= 500:
            return MetricsUnavailableError(f"PromQL {promql!r}: {text}")
        return ConfigurationError(text)


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _snippet(raw: bytes) -> str:
    return raw[:300].decode("utf-8", errors="replace").strip() or "(empty body)"


def _one_number(what: str, data: Mapping[str, Any]) -> Sample | None:
    """The one number in a query's ``data``; ``what`` names the query in errors."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _sample(what, result, {})
    if kind == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            shown = ", ".join(_series(item) for item in result[:_SHOWN_SERIES])
            more = ", ..." if len(result) > _SHOWN_SERIES else ""
            raise MetricQueryError(
                f"{what} returned {len(result)} series, not one number "
                f"({shown}{more}): aggregate them, e.g. with sum(), or narrow the selector"
            )
        item = result[0] if isinstance(result[0], dict) else {}
        labels = item.get("metric")
        return _sample(what, item.get("value"), labels if isinstance(labels, dict) else {})
    if kind == "matrix":
        raise MetricQueryError(
            f"{what} returned a range vector, not one number: "
            "wrap it in a function such as rate() or avg_over_time()"
        )
    raise MetricQueryError(f"{what} returned a {kind}, not a number")


def _sample(what: str, pair: object, labels: Mapping[str, Any]) -> Sample | None:
    """A ``[unix time, "value"]`` pair as the API returns it."""
    bad = ConfigurationError(f"{what}: not a Prometheus sample: {pair!r}")
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise bad
    try:
        value = float(str(pair[1]))
        moment = datetime.fromtimestamp(float(pair[0]), tz=UTC)
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad from exc
    if not math.isfinite(value):
        return None
    return Sample(
        value=value,
        timestamp=moment,
        labels=MappingProxyType({str(k): str(v) for k, v in labels.items()}),
    )


def _series(item: object) -> str:
    metric = item.get("metric") if isinstance(item, dict) else None
    pairs = metric.items() if isinstance(metric, dict) else ()
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(pairs, key=str))
    return "{" + labels + "}"
