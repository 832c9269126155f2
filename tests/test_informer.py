"""The informer waits out a throttled watch (HTTP 429) without calling it a failure.

A starting kube-apiserver answers watches with 429 "storage is initializing" for a
moment, which a test cannot time against the real one; so the server here is scripted
over real HTTP: discovery, one list, then 429s, then a watch that delivers an event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import yaml
from structlog.testing import capture_logs

from gitsync.clients.kube import Informer, KubeClient
from gitsync.errors import NotFoundError
from gitsync.live import WatchedSource
from gitsync.types import ObjectRef

THROTTLED_WATCHES = 3


class _Scripted(BaseHTTPRequestHandler):
    watches = 0
    #: Requests for a group the server does not serve (no such CRD).
    unserved = 0

    def do_GET(self) -> None:
        if self.path.startswith("/apis/example.com/"):
            type(self).unserved += 1
            self._json(404, {"kind": "Status", "code": 404, "message": "not found"})
        elif self.path == "/api/v1":
            self._json(
                200,
                {"resources": [{"name": "configmaps", "kind": "ConfigMap", "namespaced": True}]},
            )
        elif "watch=true" not in self.path:
            self._json(200, {"items": [], "metadata": {"resourceVersion": "5"}})
        elif type(self).watches < THROTTLED_WATCHES:
            type(self).watches += 1
            body = {"kind": "Status", "code": 429, "message": "storage is initializing"}
            self._json(429, body, retry_after="1")
        else:
            obj = {"metadata": {"name": "m", "namespace": "ns", "resourceVersion": "6"}}
            self._json(200, {"type": "ADDED", "object": obj})

    def _json(self, status: int, body: object, retry_after: str | None = None) -> None:
        data = orjson.dumps(body) + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        """Quiet."""


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeClient]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    client = KubeClient.from_kubeconfig(kubeconfig)
    try:
        yield client
    finally:
        client.close()
        server.shutdown()


def test_a_throttled_watch_is_a_quiet_wait(kube: KubeClient) -> None:
    informer = Informer(kube, api_version="v1", kind="ConfigMap")
    errors = []
    with capture_logs() as logs:
        informer.start()
        try:
            assert informer.wait_synced(10)
            deadline = time.monotonic() + 30
            while informer.get(ObjectRef("", "ConfigMap", "ns", "m")) is None:
                errors.append(informer.error)
                assert time.monotonic() < deadline, "the watch never resumed"
                time.sleep(0.05)
        finally:
            informer.stop()
    assert _Scripted.watches == THROTTLED_WATCHES
    # Never in an error state (which fails a cycle), and nothing said above debug.
    assert set(errors) == {None}
    assert [e for e in logs if e["log_level"] != "debug"] == []
    assert [e["event"] for e in logs] == ["watch throttled"] * THROTTLED_WATCHES


def test_a_kind_the_server_does_not_serve_is_skipped_told_once_and_not_retried_each_cycle(
    kube: KubeClient,
) -> None:
    """A cluster without the Kubeflow CRDs (a serving-only install): each cycle skips
    the kind at once instead of kicking its informer, rediscovering the API and
    warning again; the informer's own backoff looks for the CRD meanwhile."""
    source = WatchedSource(kube, selector="gitsync.io/instance=x")
    with capture_logs() as logs:
        try:
            for _ in range(20):
                assert source.objects([("example.com/v1", "Widget")]) == []
        finally:
            source.close()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["watch interrupted"]
    # The first discovery, and at most one retry of the informer's own (0.5 s) backoff.
    assert _Scripted.unserved <= 2


def test_a_group_version_is_discovered_once_until_discovery_is_dropped(kube: KubeClient) -> None:
    """A sync looks for TFJob and PyTorchJob where kubeflow.org is not served, and for
    Secret in a v1 without it: one discovery request each group version, not each
    kind; dropping discovery (new CRDs may be installed) asks again."""
    before = _Scripted.unserved
    for kind in ("TFJob", "PyTorchJob", "TFJob"):
        with pytest.raises(NotFoundError):
            kube.resource("example.com/v1", kind)
    assert kube.resource("v1", "ConfigMap").plural == "configmaps"
    with pytest.raises(NotFoundError):
        kube.resource("v1", "Secret")
    assert _Scripted.unserved - before == 1
    assert kube.requests["GET"] == 2  # example.com/v1 and v1, once each
    kube.forget_discovery()
    with pytest.raises(NotFoundError):
        kube.resource("example.com/v1", "TFJob")
    assert _Scripted.unserved - before == 2
