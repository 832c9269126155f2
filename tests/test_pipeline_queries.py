"""A gate that asks Prometheus, end to end: a real Prometheus scrapes the scores an
evaluation service exports for each run, and gitsync serves only a run whose score
Prometheus says is good enough, whatever the run reported itself."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import urllib3

from gitsync.clients.kube import KubeClient
from gitsync.clients.prometheus import PrometheusClient
from gitsync.dev import prometheus as prom
from gitsync.reconciler import Reconciler

from .specrepo import SpecRepo
from .test_pipelines import daemon, finished, model, repo, runs, served, status, train_job, until

__all__ = ["daemon", "repo"]  # fixtures shared with test_pipelines


class Scores:
    """An evaluation service's /metrics: one ``eval_auc`` series a run it scored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scores: dict[str, float] = {}
        scores = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = scores.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/metrics"

    def score(self, run: str, auc: float | None) -> None:
        """Export ``run``'s score, or, with None, no longer."""
        with self._lock:
            if auc is None:
                self._scores.pop(run, None)
            else:
                self._scores[run] = auc

    def exposition(self) -> str:
        with self._lock:
            lines = [f'eval_auc{{job_name="{run}"}} {auc}' for run, auc in self._scores.items()]
        return "# TYPE eval_auc gauge\n" + "".join(f"{line}\n" for line in lines)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def scores(tmp_path: Path) -> Iterator[tuple[Scores, str]]:
    """The evaluation service, and a real Prometheus scraping it every second."""
    exporter = Scores()
    config = tmp_path / "prometheus.yml"
    prom.write_config(config, metrics_url=exporter.url, job="evaluation")
    port = _free_port()
    argv = prom.argv(prom.find_binary(), config=config, data=tmp_path / "tsdb", port=port)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        http = urllib3.PoolManager()
        while True:
            try:
                if http.request("GET", prom.ready_url(address), timeout=1).status == 200:
                    break
            except urllib3.exceptions.HTTPError:
                pass
            assert time.monotonic() < deadline, "Prometheus never became ready"
            time.sleep(0.2)
        yield exporter, address
    finally:
        process.terminate()
        process.wait(timeout=10)
        exporter.close()


def scraped(address: str, run: str, auc: float | None) -> None:
    """Wait until Prometheus answers the run's score, or no data (it scrapes every
    second, and a series gone from a scrape is stale at once)."""
    deadline = time.monotonic() + 30
    with PrometheusClient(address, timeout=5) as client:
        while client.value(f'eval_auc{{job_name="{run}"}}') != auc:
            assert time.monotonic() < deadline, f"Prometheus never scraped {run}'s score"
            time.sleep(0.3)


def test_a_queried_gate_serves_only_what_prometheus_vouches_for(
    daemon: Reconciler,
    repo: SpecRepo,
    kube: KubeClient,
    namespace: str,
    scores: tuple[Scores, str],
) -> None:
    exporter, address = scores
    gate = {
        "metric": "auc",
        "min": 0.8,
        "query": 'max(eval_auc{job_name="{{run}}"})',
        "provider": {"prometheus": {"address": address}},
    }
    source = {
        "fromTrainingRun": "train",
        "select": {"by": "best", "metric": "auc"},
        "gates": [gate],
    }
    # The run reports an auc of 0.99 itself: the gate says Prometheus decides.
    repo.write("train.yaml", train_job(namespace, accuracy=0.99, lr="0.1"))
    repo.write("scorer.yaml", model(namespace, "scorer", source))
    repo.commit("train, gated on the evaluation service's auc")
    until(daemon, finished(repo, namespace, 1))
    report = daemon.cycle()
    first = runs(kube, namespace)["--lr=0.1"]

    # Not scored yet: no data is never a pass, and the model asks again soon.
    assert served(kube, namespace, "scorer") is None
    doc = status(repo, namespace, "ModelDeployment", "scorer")
    assert (doc["phase"], "auc no data: fails" in doc["message"]) == ("Pending", True), doc
    assert report.result.requeue_after is not None and report.result.requeue_after <= 60

    exporter.score(first, 0.7)
    scraped(address, first, 0.7)
    daemon.cycle()
    assert served(kube, namespace, "scorer") is None
    doc = status(repo, namespace, "ModelDeployment", "scorer")
    assert "auc 0.7 < min 0.8" in doc["message"], doc["message"]

    repo.write("train.yaml", train_job(namespace, accuracy=0.99, lr="0.01"))
    repo.commit("a second run")
    until(daemon, finished(repo, namespace, 2))
    second = runs(kube, namespace)["--lr=0.01"]
    exporter.score(second, 0.85)
    scraped(address, second, 0.85)
    until(daemon, lambda: served(kube, namespace, "scorer") == f"s3://models/train/{second}")
    lineage = status(repo, namespace, "ModelDeployment", "scorer")["model"]["fromTrainingRun"]
    assert (lineage["run"], lineage["evidence"]) == (second, ["auc 0.85 >= 0.8"])
    recorded = {(s["run"], s["metric"], s["value"]) for s in lineage["scores"]}
    assert recorded == {(first, "auc", 0.7), (second, "auc", 0.85)}

    # A run's score, once Prometheus gave one, is the run's: the first run's new, higher
    # score is not asked for, and when the second's series goes from Prometheus
    # (retention, a restarted exporter) the model keeps it, without a commit or a wake.
    exporter.score(first, 0.95)
    exporter.score(second, None)
    scraped(address, second, None)
    report = daemon.cycle()
    assert served(kube, namespace, "scorer") == f"s3://models/train/{second}"
    lineage = status(repo, namespace, "ModelDeployment", "scorer")["model"]["fromTrainingRun"]
    assert {(s["run"], s["metric"], s["value"]) for s in lineage["scores"]} == recorded
    assert report.result.requeue_after is None


def test_a_gate_whose_prometheus_is_away_fails_and_says_so(
    daemon: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    gate = {
        "metric": "auc",
        "min": 0.8,
        "query": 'max(eval_auc{job_name="{{run}}"})',
        "provider": {"prometheus": {"address": f"http://127.0.0.1:{_free_port()}"}},
    }
    repo.write("train.yaml", train_job(namespace, accuracy=0.99, lr="0.1"))
    repo.write(
        "scorer.yaml", model(namespace, "scorer", {"fromTrainingRun": "train", "gates": [gate]})
    )
    repo.commit("gated on a Prometheus that is not there")
    until(daemon, finished(repo, namespace, 1))
    report = daemon.cycle()

    assert served(kube, namespace, "scorer") is None
    doc = status(repo, namespace, "ModelDeployment", "scorer")
    assert doc["phase"] == "Pending"
    assert "auc query failed (" in doc["message"], doc["message"]
    # The model looks again within a minute, without a new commit.
    assert report.result.requeue_after is not None and report.result.requeue_after <= 60
