"""Canary metrics for real: synthetic per-revision metrics, a real Prometheus, its client.

Three layers, each tested where it is cheapest and then end to end:

* the dev controllers' synthetic metrics (:mod:`gitsync.dev.controllers.metrics`) as
  pure functions: the text format (checked by ``promtool``), linear counters, the
  histogram's quantiles, and the simulator remembering each revision's knobs;
* :class:`~gitsync.clients.prometheus.PrometheusClient` against small fake servers
  for what a real Prometheus will not do on demand (5xx, hanging, not Prometheus);
* the session's real control plane with ``up(prometheus=True)``: InferenceServices
  applied to the real API server, their status written by the dev controllers,
  scraped every second by the Debian ``prometheus`` server, and asked with PromQL.

Waits are bounded and polled; the module takes about 40 s, mostly waiting for
Prometheus' rate() windows to fill.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

from gitsync.clients.kube import KubeClient
from gitsync.clients.prometheus import (
    MetricQueryError,
    MetricsUnavailableError,
    PrometheusClient,
    Sample,
)
from gitsync.dev import controlplane
from gitsync.dev import prometheus as prom
from gitsync.dev.controllers.inferenceservice import IsvcSettings, reconcile_inference_service
from gitsync.dev.controllers.metrics import (
    BUCKETS,
    MetricsServer,
    RevisionProfile,
    SyntheticTraffic,
    profile_of,
)
from gitsync.dev.controlplane import Component, ControlPlane
from gitsync.errors import ConfigurationError, Remedy, SpecError, TransientError
from tests.objects import ISVC_API, isvc

RATE_WINDOW_S = 5  # what the queries below average over
# A window is full once Prometheus scraped a few times past its length.
SETTLE_S = RATE_WINDOW_S + 2.5

Obj = dict[str, Any]


# --- helpers ----------------------------------------------------------------------------


def served(obj: Mapping[str, Any], revisions: Mapping[str, int]) -> Obj:
    """``obj`` with a status whose predictor sends ``revisions`` their percentages."""
    result = copy.deepcopy(dict(obj))
    result.setdefault("status", {})["components"] = {
        "predictor": {
            "traffic": [
                {"revisionName": name, "percent": percent, "latestRevision": False}
                for name, percent in revisions.items()
            ]
        }
    }
    return result


def remembered(obj: Obj, revision: str, *, error_rate: float, latency: float) -> Obj:
    number = revision.rsplit("-", 1)[-1]
    memory = obj.setdefault("status", {}).setdefault("annotations", {})
    memory[f"dev.gitsync.io/predictor-{number}-error-rate"] = str(error_rate)
    memory[f"dev.gitsync.io/predictor-{number}-latency-seconds"] = str(latency)
    return obj


_LINE = re.compile(r"^([a-z_]+)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Sample lines of an exposition, by metric name and label set."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(_LABEL.findall(labels))
        assert (name, pairs) not in samples, f"duplicate series: {line!r}"
        samples[name, pairs] = float(value)
    return samples


def value(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    found = [v for (n, pairs), v in samples.items() if n == name and wanted <= pairs]
    assert len(found) == 1, f"{name}{labels}: {len(found)} series"
    return found[0]


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile on (upper bound, cumulative count) pairs."""
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def wait_for(check: Callable[[], Any], *, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"not {what} after {timeout}s (last: {last!r})")


def traffic(kube: KubeClient, namespace: str, name: str) -> list[tuple[str, int]]:
    live = kube.get(ISVC_API, "InferenceService", name, namespace=namespace) or {}
    predictor = ((live.get("status") or {}).get("components") or {}).get("predictor") or {}
    return [(t["revisionName"], t["percent"]) for t in predictor.get("traffic") or []]


# --- synthetic metrics, pure ---------------------------------------------------------------


def test_exposition_is_valid_prometheus_text_format(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package: run hack/setup"
    traffic_ = SyntheticTraffic()
    obj = remembered(
        served(
            {"metadata": {"namespace": "ns", "name": "m"}},
            {"m-predictor-00002": 20, "m-predictor-00001": 80},
        ),
        "m-predictor-00002",
        error_rate=0.2,
        latency=0.2,
    )
    traffic_.advance([obj], 0.0)
    traffic_.advance([obj], 10.0)
    text = traffic_.exposition()

    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert text.count("# TYPE revision_requests_total counter") == 1
    assert text.count("# TYPE revision_request_duration_seconds histogram") == 1

    samples = parse(text)
    for revision in ("m-predictor-00001", "m-predictor-00002"):
        series = {"namespace": "ns", "inferenceservice": "m", "revision": revision}
        buckets = sorted(
            (float(dict(pairs)["le"]), count)
            for (name, pairs), count in samples.items()
            if name == "revision_request_duration_seconds_bucket" and set(series.items()) <= pairs
        )
        assert [bound for bound, _ in buckets] == [*BUCKETS, math.inf]
        counts = [count for _, count in buckets]
        assert counts == sorted(counts), "buckets are cumulative"
        total = value(samples, "revision_request_duration_seconds_count", **series)
        assert counts[-1] == total
        ok = value(samples, "revision_requests_total", code="200", **series)
        errors = value(samples, "revision_requests_total", code="500", **series)
        assert ok + errors == pytest.approx(total)


def test_counters_grow_linearly_with_each_revisions_share() -> None:
    traffic_ = SyntheticTraffic()
    base = {"metadata": {"namespace": "ns", "name": "m"}}
    one = served(base, {"m-predictor-00001": 100})
    split = remembered(
        served(base, {"m-predictor-00001": 80, "m-predictor-00002": 20}),
        "m-predictor-00002",
        error_rate=0.2,
        latency=0.2,
    )
    traffic_.advance([one], 0.0)
    traffic_.advance([one], 10.0)  # 20 req/s for 10 s
    traffic_.advance([split], 20.0)  # the split seen at 20 s counts from 10 s; 00002 starts
    traffic_.advance([split], 30.0)
    samples = parse(traffic_.exposition())

    first = {"revision": "m-predictor-00001"}
    second = {"revision": "m-predictor-00002"}
    assert value(samples, "revision_request_duration_seconds_count", **first) == pytest.approx(
        200 + 160 + 160
    )
    assert value(samples, "revision_request_duration_seconds_count", **second) == pytest.approx(40)
    # Each revision answers with the knobs it was created with; 00001 has the defaults.
    assert value(samples, "revision_requests_total", code="500", **first) == pytest.approx(0.52)
    assert value(samples, "revision_requests_total", code="500", **second) == pytest.approx(8.0)
    assert value(samples, "revision_request_duration_seconds_sum", **second) == pytest.approx(
        40 * RevisionProfile(0.2, 0.2).mean_seconds
    )


def test_idle_revisions_are_hidden_but_keep_their_count_and_gone_isvcs_are_forgotten() -> None:
    traffic_ = SyntheticTraffic()
    base = {"metadata": {"namespace": "ns", "name": "m"}}
    both = served(base, {"m-predictor-00001": 50, "m-predictor-00002": 50})
    only_two = served(base, {"m-predictor-00002": 100})
    traffic_.advance([both], 0.0)
    traffic_.advance([both], 1.0)
    traffic_.advance([only_two], 2.0)
    assert "m-predictor-00001" not in traffic_.exposition()
    traffic_.advance([both], 3.0)
    # Counters never go down: 10 + 10 requests from before it was idle.
    count = value(
        parse(traffic_.exposition()),
        "revision_request_duration_seconds_count",
        revision="m-predictor-00001",
    )
    assert count == pytest.approx(20.0)
    traffic_.advance([], 4.0)
    assert "revision=" not in traffic_.exposition()
    traffic_.advance([both], 5.0)
    assert value(
        parse(traffic_.exposition()),
        "revision_request_duration_seconds_count",
        revision="m-predictor-00001",
    ) == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("rate", "expected"), [("5", 50.0), ("0", 0.0), ("-3", 200.0), ("fast", 200.0)]
)
def test_requests_per_second_annotation(rate: str, expected: float) -> None:
    traffic_ = SyntheticTraffic()
    obj = served(
        {
            "metadata": {
                "namespace": "ns",
                "name": "m",
                "annotations": {"dev.gitsync.io/requests-per-second": rate},
            }
        },
        {"m-predictor-00001": 100},
    )
    traffic_.advance([obj], 0.0)
    traffic_.advance([obj], 10.0)
    assert value(
        parse(traffic_.exposition()), "revision_request_duration_seconds_count"
    ) == pytest.approx(expected)


def test_label_values_are_escaped() -> None:
    traffic_ = SyntheticTraffic()
    obj = served({"metadata": {"namespace": 'a"b\\c\nd', "name": "m"}}, {"m-predictor-00001": 100})
    traffic_.advance([obj], 0.0)
    text = traffic_.exposition()
    assert 'namespace="a\\"b\\\\c\\nd"' in text
    assert len(text.splitlines()) == len(parse(text)) + 4  # HELP and TYPE, twice


@pytest.mark.parametrize("latency", [0.001, 0.01, 0.05, 0.1, 0.2, 1.0, 5.0])
def test_p95_is_one_and_a_half_times_a_round_latency(latency: float) -> None:
    profile = RevisionProfile(latency_seconds=latency)
    buckets = [(bound, 1000 * profile.within(bound)) for bound in BUCKETS] + [(math.inf, 1000)]
    assert histogram_quantile(0.95, buckets) == pytest.approx(1.5 * latency, rel=1e-9)
    assert histogram_quantile(0.5, buckets) == pytest.approx(latency, rel=1e-9)


@pytest.mark.parametrize("latency", [0.0013, 0.03, 0.07, 0.123, 0.42, 3.0, 6.0])
def test_p95_is_close_to_one_and_a_half_times_any_latency(latency: float) -> None:
    profile = RevisionProfile(latency_seconds=latency)
    buckets = [(bound, 1000 * profile.within(bound)) for bound in BUCKETS] + [(math.inf, 1000)]
    assert histogram_quantile(0.95, buckets) == pytest.approx(1.5 * latency, rel=0.06)
    assert histogram_quantile(0.5, buckets) == pytest.approx(latency, rel=0.01)


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, RevisionProfile(0.001, 0.05)),
        (
            {"dev.gitsync.io/error-rate": "0.2", "dev.gitsync.io/latency-seconds": "0.3"},
            RevisionProfile(0.2, 0.3),
        ),
        ({"dev.gitsync.io/error-rate": "1"}, RevisionProfile(1.0, 0.05)),
        ({"dev.gitsync.io/error-rate": "1.5"}, RevisionProfile(0.001, 0.05)),
        ({"dev.gitsync.io/error-rate": "nan"}, RevisionProfile(0.001, 0.05)),
        ({"dev.gitsync.io/latency-seconds": "0"}, RevisionProfile(0.001, 0.05)),
        ({"dev.gitsync.io/latency-seconds": "inf"}, RevisionProfile(0.001, 0.05)),
        ({"dev.gitsync.io/latency-seconds": "slow"}, RevisionProfile(0.001, 0.05)),
    ],
)
def test_profile_knobs(annotations: Mapping[str, str], expected: RevisionProfile) -> None:
    assert RevisionProfile.from_annotations(annotations) == expected


# --- the simulator remembers each revision's knobs ------------------------------------------


T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = IsvcSettings(ready_delay=1.0)


def settle(obj: Obj, seconds: float) -> Obj:
    """Reconcile at T0 + ``seconds`` and at every wake-up up to 5 s later."""
    now, until = T0 + timedelta(seconds=seconds), T0 + timedelta(seconds=seconds + 5)
    for _ in range(50):
        outcome = reconcile_inference_service(obj, now, SETTINGS)
        if outcome.status is not None:
            obj = {**obj, "status": outcome.status}
        if outcome.wake_at is None or outcome.wake_at > until:
            return obj
        now = max(now, outcome.wake_at)
    raise AssertionError("the simulator did not settle")


def update(current: Obj, desired: Obj) -> Obj:
    return {**copy.deepcopy(desired), "status": copy.deepcopy(current["status"])}


def test_each_revision_keeps_the_knobs_it_was_created_with() -> None:
    obj = settle(isvc("ns", annotations={"dev.gitsync.io/latency-seconds": "0.1"}), 0)
    status = obj["status"]
    assert profile_of(status, "m-predictor-00001") == RevisionProfile(0.001, 0.1)

    # The knobs are part of the revision template: changing one alone makes a canary.
    bad = {"dev.gitsync.io/latency-seconds": "0.1", "dev.gitsync.io/error-rate": "0.2"}
    obj = settle(update(obj, isvc("ns", canary=20, annotations=bad)), 10)
    status = obj["status"]
    split = status["components"]["predictor"]["traffic"]
    assert [(t["revisionName"], t["percent"]) for t in split] == [
        ("m-predictor-00002", 20),
        ("m-predictor-00001", 80),
    ]
    assert profile_of(status, "m-predictor-00002") == RevisionProfile(0.2, 0.1)
    assert profile_of(status, "m-predictor-00001") == RevisionProfile(0.001, 0.1)

    # Promoted: 00001 serves nothing and its memory goes; 00002's stays.
    obj = settle(update(obj, isvc("ns", annotations=bad)), 20)
    memory = obj["status"]["annotations"]
    assert not any("-00001-" in key for key in memory)
    assert memory["dev.gitsync.io/predictor-00002-error-rate"] == "0.2"
    assert profile_of(obj["status"], "m-predictor-00002") == RevisionProfile(0.2, 0.1)


def test_the_request_rate_knob_does_not_make_a_revision() -> None:
    obj = settle(isvc("ns"), 0)
    obj = settle(
        update(obj, isvc("ns", annotations={"dev.gitsync.io/requests-per-second": "1"})), 10
    )
    assert obj["status"]["components"]["predictor"]["latestCreatedRevision"] == "m-predictor-00001"


# --- the metrics endpoint -------------------------------------------------------------------


def test_metrics_server_serves_only_metrics_and_refuses_a_taken_port() -> None:
    objects = [served({"metadata": {"namespace": "ns", "name": "m"}}, {"m-predictor-00001": 100})]
    clock = iter(float(t) for t in range(100))
    server = MetricsServer(lambda: objects, clock=lambda: next(clock))
    server.start()
    try:
        http = urllib3.PoolManager(retries=False)
        response = http.request("GET", server.url)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'revision="m-predictor-00001"' in response.data.decode()
        assert http.request("GET", server.url.replace("/metrics", "/")).status == 404
        with pytest.raises(OSError, match="in use"):
            MetricsServer(lambda: objects, port=server.port)
    finally:
        server.stop()


# --- the client against fakes -------------------------------------------------------------


_FAKE_ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/down/api/v1/query": (
        503,
        "application/json",
        b'{"status":"error","errorType":"unavailable","error":"tsdb not ready"}',
    ),
    "/login/api/v1/query": (200, "text/html", b"<html>Sign in</html>"),
    "/proxy/api/v1/query": (502, "text/html", b"<html>Bad gateway</html>"),
    "/garbage/api/v1/query": (
        200,
        "application/json",
        b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}}',
    ),
    # A Prometheus-compatible server whose labels are not a map: no crash, and the
    # sample still reads.
    "/odd-labels/api/v1/query": (
        200,
        "application/json",
        b'{"status":"success","data":{"resultType":"vector",'
        b'"result":[{"metric":["job"],"value":[1,"0.5"]}]}}',
    ),
    "/odd-series/api/v1/query": (
        200,
        "application/json",
        b'{"status":"success","data":{"resultType":"vector",'
        b'"result":[{"metric":["a"],"value":[1,"1"]},{"metric":7,"value":[1,"2"]}]}}',
    ),
}


class _Fake(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        status, content_type, body = _FAKE_ANSWERS.get(
            self.path, (404, "text/plain", b"404 page not found")
        )
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "error", "remedy"),
    [
        ("/down", MetricsUnavailableError, Remedy.RETRY),
        ("/proxy", MetricsUnavailableError, Remedy.RETRY),
        ("/login", ConfigurationError, Remedy.FAIL),
        ("/nothing-here", ConfigurationError, Remedy.FAIL),
        ("/garbage", ConfigurationError, Remedy.FAIL),
    ],
)
def test_client_errors_by_what_went_wrong(
    fake: str, path: str, error: type[Exception], remedy: Remedy
) -> None:
    with PrometheusClient(fake + path, timeout=2) as client, pytest.raises(error) as caught:
        client.query("up")
    assert caught.value.remedy is remedy  # type: ignore[attr-defined]
    assert fake in str(caught.value)


def test_unreachable_prometheus_is_transient_and_fails_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = PrometheusClient(f"http://127.0.0.1:{port}", timeout=5)
    started = time.monotonic()
    with pytest.raises(MetricsUnavailableError) as caught:
        client.query("up")
    assert time.monotonic() - started < 1.0
    assert isinstance(caught.value, TransientError)
    assert isinstance(caught.value.__cause__, urllib3.exceptions.HTTPError)


def test_a_prometheus_that_does_not_answer_times_out_as_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # connections complete in the backlog; nobody ever answers
        client = PrometheusClient(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(MetricsUnavailableError, match="timed out"):
            client.query("up")
        assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("address", ["127.0.0.1:9090", "ftp://host", "http://", "http://host/?q=1"])
def test_client_rejects_addresses_it_cannot_use(address: str) -> None:
    with pytest.raises(ConfigurationError):
        PrometheusClient(address)


def test_query_time_must_be_timezone_aware(fake: str) -> None:
    with pytest.raises(ValueError, match="timezone"):
        PrometheusClient(fake).query("up", at=datetime(2025, 1, 1))


# --- the real thing -------------------------------------------------------------------------


@pytest.fixture
def client(prometheus_url: str) -> Iterator[PrometheusClient]:
    with PrometheusClient(prometheus_url, timeout=5) as prometheus_client:
        yield prometheus_client


def test_up_records_prometheus_and_keeps_it_running(
    control_plane: ControlPlane, prometheus_url: str
) -> None:
    folder = control_plane.folder
    state = json.loads((folder / "state.json").read_text())
    record = state[Component.PROMETHEUS.value]
    assert record["endpoint"] == prometheus_url
    assert record["log"] == str(folder / "logs" / "prometheus.log")
    assert prometheus_url.startswith("http://127.0.0.1:")
    assert not prometheus_url.endswith(":9090")

    config = yaml.safe_load((folder / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["honor_labels"] is True
    assert config["global"]["scrape_interval"] == "1s"
    controllers = state[Component.CONTROLLERS.value]["endpoint"]
    assert controllers == f"http://{job['static_configs'][0]['targets'][0]}/metrics"

    # Idempotent, and reported even when not asked for again.
    again = controlplane.up(folder, prometheus=True)
    assert again.prometheus_url == prometheus_url
    assert controlplane.up(folder).prometheus_url == prometheus_url
    after = json.loads((folder / "state.json").read_text())
    assert {k: v["pid"] for k, v in after.items()} == {k: v["pid"] for k, v in state.items()}
    rows = {row.component: row for row in controlplane.status(folder)}
    assert rows[Component.PROMETHEUS].running
    assert rows[Component.CONTROLLERS].endpoint == controllers


def test_prometheus_config_is_rewritten_only_when_the_target_changes(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    assert prom.write_config(config, metrics_url="http://127.0.0.1:1234/metrics")
    assert not prom.write_config(config, metrics_url="http://127.0.0.1:1234/metrics")
    assert prom.write_config(config, metrics_url="http://127.0.0.1:1235/metrics")
    with pytest.raises(ConfigurationError):
        prom.write_config(config, metrics_url="127.0.0.1:1235")


def test_query_result_shapes(client: PrometheusClient) -> None:
    at = datetime(2025, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
    sample = client.query("time()", at=at)
    assert sample == Sample(value=at.timestamp(), timestamp=at, labels={})
    vector = client.query('label_replace(vector(2), "revision", "m-predictor-00001", "", "")')
    assert vector is not None
    assert vector.value == 2.0
    assert dict(vector.labels) == {"revision": "m-predictor-00001"}
    # No data, never a number: nothing matched, 0/0, x/0.
    assert client.query('revision_requests_total{revision="no-such-revision"}') is None
    assert client.query("0 / 0") is None
    assert client.query("vector(1) / 0") is None
    assert client.query("-vector(1) / 0") is None
    assert client.value("vector(2)") == 2.0
    assert client.value("0 / 0") is None


@pytest.mark.parametrize(
    ("promql", "match"),
    [
        ("sum(rate(revision_requests_total[1m])", "unclosed left parenthesis"),
        (
            'label_replace(vector(1), "a", "x", "", "") or '
            'label_replace(vector(2), "a", "y", "", "")',
            "2 series",
        ),
        ("up[1m]", "range vector"),
        ('"text"', "string"),
        (
            'vector(1) + on() (label_replace(vector(1), "b", "1", "", "") or '
            'label_replace(vector(1), "b", "2", "", ""))',
            "many-to-many",
        ),
    ],
)
def test_queries_that_only_a_new_spec_can_fix(
    client: PrometheusClient, promql: str, match: str
) -> None:
    with pytest.raises(MetricQueryError, match=match) as caught:
        client.query(promql)
    assert isinstance(caught.value, SpecError)
    assert caught.value.remedy is Remedy.WAIT_FOR_COMMIT
    assert repr(promql) in str(caught.value)


def _rate(selector: str) -> str:
    return f"rate(revision_requests_total{{{selector}}}[{RATE_WINDOW_S}s])"


def _requests(namespace: str, revision: str, code: str = "") -> str:
    selector = f'namespace="{namespace}",revision="{revision}"'
    if code:
        selector += f',code="{code}"'
    return f"sum({_rate(selector)})"


def _error_ratio(namespace: str, revision: str) -> str:
    return f"{_requests(namespace, revision, '500')} / {_requests(namespace, revision)}"


def _p95(namespace: str, revision: str) -> str:
    selector = f'namespace="{namespace}",revision="{revision}"'
    return (
        "histogram_quantile(0.95, sum by (le) (rate("
        f"revision_request_duration_seconds_bucket{{{selector}}}[{RATE_WINDOW_S}s])))"
    )


def _number(client: PrometheusClient, promql: str) -> float:
    sample = client.query(promql)
    assert sample is not None, f"no data for {promql}"
    return sample.value


def test_canary_metrics_through_real_prometheus(
    kube: KubeClient, namespace: str, client: PrometheusClient
) -> None:
    stable, canary = "m-predictor-00001", "m-predictor-00002"
    kube.apply(isvc(namespace), field_manager="test")
    kube.apply(
        isvc(namespace, name="idle", annotations={"dev.gitsync.io/requests-per-second": "0"}),
        field_manager="test",
    )
    wait_for(lambda: traffic(kube, namespace, "m") == [(stable, 100)], what="serving")
    wait_for(lambda: traffic(kube, namespace, "idle"), what="idle serving")
    time.sleep(SETTLE_S)

    assert _number(client, _requests(namespace, stable)) == pytest.approx(20.0, rel=0.05)
    assert _number(client, _error_ratio(namespace, stable)) == pytest.approx(0.001, rel=0.01)
    assert _number(client, _p95(namespace, stable)) == pytest.approx(0.075, rel=0.02)
    # No traffic: 0/0 is no data, not a 0% error ratio.
    assert client.query(_error_ratio(namespace, "idle-predictor-00001")) is None
    assert client.query(_error_ratio(namespace, canary)) is None

    # A bad canary: new knobs make revision 2, which gets 20% of the requests.
    bad = {"dev.gitsync.io/error-rate": "0.2", "dev.gitsync.io/latency-seconds": "0.2"}
    kube.apply(isvc(namespace, canary=20, annotations=bad), field_manager="test")
    wait_for(lambda: traffic(kube, namespace, "m") == [(canary, 20), (stable, 80)], what="split")
    time.sleep(SETTLE_S)

    every_revision = _rate(f'namespace="{namespace}",inferenceservice="m"')
    share = f"{_requests(namespace, canary)} / sum({every_revision})"
    assert _number(client, share) == pytest.approx(0.2, abs=0.02)
    assert _number(client, _error_ratio(namespace, canary)) == pytest.approx(0.2, rel=0.01)
    assert _number(client, _error_ratio(namespace, stable)) == pytest.approx(0.001, rel=0.01)
    assert _number(client, _p95(namespace, canary)) == pytest.approx(0.3, rel=0.02)
    assert _number(client, _p95(namespace, stable)) == pytest.approx(0.075, rel=0.02)
    with pytest.raises(MetricQueryError, match="4 series"):
        client.query(every_revision)


def test_up_and_down_with_prometheus_on_a_fresh_folder(tmp_path: Path) -> None:
    folder = tmp_path / "plane"
    try:
        controlplane.up(folder, controllers=False)
        with pytest.raises(ConfigurationError, match="controllers"):
            controlplane.up(folder, controllers=False, prometheus=True)
        assert Component.PROMETHEUS.value not in json.loads((folder / "state.json").read_text())
        assert Component.PROMETHEUS not in {row.component for row in controlplane.status(folder)}

        plane = controlplane.up(folder, prometheus=True)
        assert plane.prometheus_url is not None
        with PrometheusClient(plane.prometheus_url, timeout=5) as client:
            assert client.query("vector(1)") is not None
    finally:
        stopped = controlplane.down(folder)
    assert stopped == [
        Component.PROMETHEUS,
        Component.CONTROLLERS,
        Component.APISERVER,
        Component.ETCD,
    ]
    with pytest.raises(MetricsUnavailableError):
        PrometheusClient(plane.prometheus_url, timeout=2).query("vector(1)")
    assert all(not row.running for row in controlplane.status(folder))


def test_standard_mode_series_are_per_deployment_and_a_canary_serves_once_ready() -> None:
    """No revisions in Standard mode: the stable Deployment serves what the canaries do
    not, a canary its trafficPercent once canaryStatuses calls it ready."""

    def standard(canary_ready: bool) -> dict[str, Any]:
        return {
            "metadata": {"namespace": "ns", "name": "m"},
            "spec": {"predictor": {"name": "v1"}},
            "status": {
                "deploymentMode": "Standard",
                "conditions": [{"type": "PredictorReady", "status": "True"}],
                "canaryStatuses": [{"name": "v2", "ready": canary_ready, "trafficPercent": 20}],
                "annotations": {
                    "dev.gitsync.io/deploy-m-v2-predictor-error-rate": "0.2",
                    "dev.gitsync.io/deploy-m-v2-predictor-latency-seconds": "0.05",
                },
            },
        }

    traffic_ = SyntheticTraffic()
    traffic_.advance([standard(canary_ready=False)], 0.0)
    traffic_.advance([standard(canary_ready=False)], 10.0)
    samples = parse(traffic_.exposition())
    stable = {"revision": "m-v1-predictor"}
    # Until the canary is ready its 20% reaches no pod.
    assert value(samples, "revision_request_duration_seconds_count", **stable) == pytest.approx(160)
    assert not any(("revision", "m-v2-predictor") in pairs for _, pairs in samples)

    traffic_.advance([standard(canary_ready=True)], 20.0)
    traffic_.advance([standard(canary_ready=True)], 30.0)
    samples = parse(traffic_.exposition())
    canary = {"revision": "m-v2-predictor"}
    assert value(samples, "revision_request_duration_seconds_count", **canary) == pytest.approx(40)
    assert value(samples, "revision_requests_total", code="500", **canary) == pytest.approx(8.0)


def test_odd_shapes_from_a_compatible_server_are_read_or_refused_by_type(fake: str) -> None:
    with PrometheusClient(fake + "/odd-labels", timeout=2) as client:
        assert client.value("up") == 0.5
    with (
        PrometheusClient(fake + "/odd-series", timeout=2) as client,
        pytest.raises(MetricQueryError, match="returned 2 series"),
    ):
        client.value("up")
