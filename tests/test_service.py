"""``gitsync run --listen`` as a real process: metrics after real cycles, a real
Prometheus scraping them, and push webhooks waking a daemon that polls every 300 s."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import signal
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gitsync.clients.kube import KubeClient
from gitsync.clients.prometheus import PrometheusClient
from gitsync.dev import prometheus as prom
from gitsync.dev.controlplane import ControlPlane

from .conftest import daemon_argv
from .specrepo import SpecRepo

SECRET = "webhook-secret-for-tests"
ISVC = ("serving.kserve.io/v1beta1", "InferenceService")


def model(name: str, namespace: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"team": "risk"}},
            "spec": {
                "model": {"format": "sklearn", "storageUri": f"s3://models/{name}"},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            },
        }
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(0.02)


@dataclass
class Service:
    repo: SpecRepo
    namespace: str
    port: int
    process: subprocess.Popen[bytes]

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""
        finally:
            connection.close()

    def push_hook(self, body: bytes, *, secret: str = SECRET) -> int:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request(
                "POST",
                "/hooks/github",
                body=body,
                headers={
                    "X-GitHub-Event": "push",
                    "X-Hub-Signature-256": f"sha256={digest}",
                    "Content-Type": "application/json",
                },
            )
            return connection.getresponse().status
        finally:
            connection.close()

    def samples(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """Every sample of /metrics, by sample name and sorted labels."""
        status, body = self.get("/metrics")
        assert status == 200
        found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                    sample.value
                )
        return found

    def cycles(self) -> float:
        return sum(self.samples().get("gitsync_cycles_total", {}).values())


@pytest.fixture
def service(tmp_path: Path, control_plane: ControlPlane, namespace: str) -> Iterator[Service]:
    repo = SpecRepo(tmp_path / "repo")
    repo.write("models/a.yaml", model("a", namespace))
    repo.commit("model a")
    port = free_port()
    argv = [
        *daemon_argv(
            repo_url=repo.url,
            instance=f"svc-{uuid.uuid4().hex[:6]}",
            kubeconfig=control_plane.kubeconfig,
            cache=tmp_path / "cache",
            interval=300,  # only a hook can make it run again within a test
            level="info",
        ),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    log = (tmp_path / "gitsync.log").open("wb")
    process = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GITSYNC_WEBHOOK_SECRET": SECRET},
    )
    served = Service(repo, namespace, port, process)
    try:
        until(lambda: served.get("/readyz")[0] == 200, timeout=60, what="/readyz")
        yield served
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0  # a clean stop, listener included
        assert served.get("/healthz")[0] == 0  # nothing listens any more
        text = (tmp_path / "gitsync.log").read_text()
        assert SECRET not in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def test_metrics_after_a_real_cycle(service: Service, kube: KubeClient) -> None:
    assert kube.get(*ISVC, "a", namespace=service.namespace) is not None
    assert service.get("/healthz")[0] == 200
    samples = service.samples()
    head = service.repo.commit("an empty commit, for the revision")
    # The empty commit is not fetched yet (300 s interval): the revision is the first.
    (revision,) = samples["gitsync_last_applied_revision_info"]
    assert dict(revision)["revision"] != head
    assert samples["gitsync_cycles_total"][(("outcome", "Succeeded"),)] >= 1
    assert samples["gitsync_objects_total"][(("action", "created"), ("failed", "false"))] == 1
    assert samples["gitsync_specs"][(("kind", "ModelDeployment"), ("phase", "Invalid"))] == 0
    model_phases = {
        dict(labels)["phase"]: value
        for labels, value in samples["gitsync_specs"].items()
        if dict(labels)["kind"] == "ModelDeployment"
    }
    assert sum(model_phases.values()) == 1
    assert samples["gitsync_leader"][()] == 1
    assert samples["gitsync_cycle_duration_seconds_count"][(("skipped", "false"),)] >= 1
    assert samples["gitsync_git_request_duration_seconds_count"][(("operation", "fetch"),)] >= 1
    assert samples["gitsync_git_request_duration_seconds_count"][(("operation", "push"),)] >= 1
    kube_requests = samples["gitsync_kube_requests_total"]
    assert kube_requests[(("code", "200"), ("method", "GET"))] >= 1
    assert any(dict(labels)["method"] == "PATCH" for labels in kube_requests)

    # A push hook: the cycle it runs brings the revision to the new head.
    assert service.push_hook(orjson.dumps({"ref": "refs/heads/main"})) == 202
    until(
        lambda: (("revision", head),) in service.samples()["gitsync_last_applied_revision_info"],
        timeout=10,
        what="the new revision in /metrics",
    )


def test_a_signed_push_hook_makes_a_change_live_at_once(service: Service, kube: KubeClient) -> None:
    push = orjson.dumps({"ref": "refs/heads/main"})
    before = service.cycles()

    service.repo.write("models/forged.yaml", model("forged", service.namespace))
    service.repo.commit("model forged")
    assert service.push_hook(push, secret="not the secret") == 401
    time.sleep(1.5)
    assert service.cycles() == before  # no cycle started
    assert kube.get(*ISVC, "forged", namespace=service.namespace) is None

    def applied(name: str) -> Callable[[], bool]:
        return lambda: kube.get(*ISVC, name, namespace=service.namespace) is not None

    latencies = []
    for run in range(5):
        name = f"m{run}"
        service.repo.write(f"models/{name}.yaml", model(name, service.namespace))
        service.repo.commit(f"model {name}")
        started = time.monotonic()
        assert service.push_hook(push) == 202
        until(applied(name), timeout=10, what=f"{name} applied")
        latencies.append(time.monotonic() - started)
    median = statistics.median(latencies)
    print(f"\nwebhook to applied: median {median * 1000:.0f} ms of {latencies}")
    assert median < 1.0


def test_a_real_prometheus_scrapes_it(service: Service, tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    prom.write_config(config, metrics_url=f"http://127.0.0.1:{service.port}/metrics", job="gitsync")
    port = free_port()
    process = subprocess.Popen(
        prom.argv(prom.find_binary(), config=config, data=tmp_path / "prom", port=port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with PrometheusClient(f"http://127.0.0.1:{port}", timeout=5) as client:

            def scraped() -> bool:
                try:
                    return client.value('up{job="gitsync"} == 1') == 1
                except Exception:  # noqa: BLE001 - not serving queries yet
                    return False

            until(scraped, timeout=30, what="Prometheus to scrape gitsync")
            assert client.value('gitsync_leader{job="gitsync"}') == 1
            succeeded = client.value('gitsync_cycles_total{job="gitsync",outcome="Succeeded"}')
            assert succeeded is not None
            assert succeeded >= 1
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_dashboard_is_served_at_the_root_from_the_daemons_mirror(service: Service) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": f"127.0.0.1:{service.port}"})
        response = connection.getresponse()
        page = response.read().decode()
        csp = response.getheader("Content-Security-Policy") or ""
    finally:
        connection.close()
    assert response.status == 200
    assert "default-src 'self'" in csp
    # The model the daemon applied, with the phase its status document holds.
    assert '/ModelDeployment/a">a</a>' in page, page[:3000]
    assert service.namespace in page
    # The listener's own routes are still its own, and the pages are read-only.
    assert service.get("/healthz")[0] == 200
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
    try:
        connection.request("POST", "/", body=b"", headers={"Content-Length": "0"})
        refused = connection.getresponse()
        refused.read()
    finally:
        connection.close()
    assert (refused.status, refused.getheader("Allow")) == (405, "GET")
