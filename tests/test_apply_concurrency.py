"""Concurrent writes keep apply's guarantees: against the real API server, many objects
in namespaces that do not exist yet, a prune, and an object the server refuses.

The client is wrapped to record every request, in the order the server got them, and
how many were in flight at once: that is how the ordering guarantees (each namespace
created once and before its objects, Namespaces of the plan before the rest, deletions
after every write) are checked, and that the workers really ran side by side.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from click.testing import CliRunner

from gitsync.apply import execute
from gitsync.cli import cli
from gitsync.clients.kube import (
    DEFAULT_BURST,
    DEFAULT_CONCURRENCY,
    DEFAULT_QPS,
    KubeClient,
    TokenBucket,
)
from gitsync.clients.kubeconfig import Endpoint
from gitsync.dev.controlplane import ControlPlane
from gitsync.diff import Action, Change, ChangeSet
from gitsync.errors import ApiUnavailableError, ConfigurationError, LeadershipLostError, Remedy
from gitsync.render import ANNOTATION_SOURCE_PATH
from gitsync.types import ObjectRef

WORKERS = 8


class _Anonymous:
    """No credentials: for clients whose requests never reach a server."""

    def headers(self) -> dict[str, str]:
        return {}

    def rejected(self, sent: Mapping[str, str]) -> None:
        pass


#: A port nothing listens on (discard), for clients that must not get that far.
NOWHERE = Endpoint("http://127.0.0.1:9", None, None, None, _Anonymous())


class Recording(KubeClient):
    """Records each request; after ``outage_after`` writes, the server "goes away"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.log: list[tuple[str, str]] = []
        self.in_flight = 0
        self.peak = 0
        self.outage_after: int | None = None

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with self.lock:
            writes = sum(1 for m, p in self.log if m == "PATCH" and "/configmaps/" in p)
            if self.outage_after is not None and writes >= self.outage_after:
                raise ApiUnavailableError(f"{method} {path}: connection refused")
            self.log.append((method, path))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            return super().request(method, path, **kwargs)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture
def client(control_plane: ControlPlane) -> Iterator[Recording]:
    recording = Recording.from_kubeconfig(control_plane.kubeconfig, concurrency=WORKERS)
    assert isinstance(recording, Recording)
    yield recording
    recording.close()


def config_map(namespace: str, name: str, source: str, data: object = "v1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {ANNOTATION_SOURCE_PATH: source},
        },
        "data": {"value": data},
    }


def created(body: Mapping[str, Any]) -> Change:
    return Change(ObjectRef.of(body), Action.CREATED, desired=body)


def deleted(body: Mapping[str, Any]) -> Change:
    return Change(ObjectRef.of(body), Action.DELETED, live=body)


def test_concurrent_writes_keep_order_and_guarantees(client: Recording) -> None:
    prefix = f"c-{uuid.uuid4().hex[:6]}"
    namespaces = [f"{prefix}-{i}" for i in range(3)]
    # Objects to prune, in the first namespace, created before the plan runs.
    doomed = [config_map(namespaces[0], f"old-{i}", f"old/{i}.yaml") for i in range(5)]
    # ... one of them from a file that still has an object, which the server refuses.
    kept = config_map(namespaces[0], "old-kept", "mixed.yaml")
    refused = config_map(namespaces[0], "refused", "mixed.yaml", data=7)  # data holds strings
    plan_bodies = [
        config_map(namespaces[i % 3], f"cm-{i:03d}", f"specs/{i}.yaml") for i in range(60)
    ]
    labelled = {"apiVersion": "v1", "kind": "Namespace"}
    labelled["metadata"] = {"name": namespaces[2], "labels": {"team": "risk"}}
    changes = [
        deleted(doomed[0]),
        *(created(body) for body in plan_bodies[:30]),
        deleted(kept),
        created(refused),
        *(deleted(body) for body in doomed[1:]),
        *(created(body) for body in plan_bodies[30:]),
        created(labelled),  # last in the plan; written before the objects in it
    ]
    client.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespaces[0]}},
        field_manager="test",
    )
    for body in [*doomed, kept]:
        client.apply(body, field_manager="test")
    client.log.clear()
    known: set[str] = set()
    try:
        applied = execute(
            client, ChangeSet(tuple(changes)), create_namespaces=True, known_namespaces=known
        )
        log = list(client.log)  # before the clean-up's requests
    finally:
        for name in namespaces:
            client.delete("v1", "Namespace", name)

    assert applied.interrupted is None
    # Results in the plan's order, each with its outcome.
    assert [c.key for c in applied.changes.changes] == [c.key for c in changes]
    outcome = {c.key.name: (c.action, c.error is not None) for c in applied.changes.changes}
    assert outcome.pop("refused") == (Action.CREATED, True)
    assert outcome.pop("old-kept") == (Action.SKIPPED, False)
    assert set(outcome.values()) <= {(Action.CREATED, False), (Action.DELETED, False)}
    assert set(applied.written) == {ObjectRef.of(b) for b in [*plan_bodies, labelled]}
    assert known == set(namespaces)

    # Side by side, within the bound.
    assert 1 < client.peak <= WORKERS
    writes = [i for i, (m, p) in enumerate(log) if m == "PATCH" and "/configmaps/" in p]
    deletes = [i for i, (m, p) in enumerate(log) if m == "DELETE" and "/configmaps/" in p]
    assert len(deletes) == 5
    assert max(writes) < min(deletes)
    for name in namespaces:
        # Looked up once, created once (the first exists), all before any object in it.
        path = f"/api/v1/namespaces/{name}"
        touches = [i for i, (_, p) in enumerate(log) if p == path]
        expected = ["GET"] if name == namespaces[0] else ["GET", "PATCH"]
        if name == namespaces[2]:
            expected.append("PATCH")  # the plan's own Namespace object
        assert [log[i][0] for i in touches] == expected
        assert max(touches) < min(writes)


def test_an_outage_keeps_what_was_applied(client: Recording, namespace: str) -> None:
    bodies = [config_map(namespace, f"cm-{i:02d}", f"specs/{i}.yaml") for i in range(40)]
    doomed = config_map(namespace, "doomed", "gone.yaml")
    client.apply(doomed, field_manager="test")
    client.log.clear()
    client.outage_after = 10
    changes = (*(created(body) for body in bodies), deleted(doomed))

    applied = execute(client, ChangeSet(changes), create_namespaces=True)

    assert isinstance(applied.interrupted, ApiUnavailableError)
    results = applied.changes.changes
    assert [c.key for c in results] == [c.key for c in changes]
    done = [c for c in results if c.error is None]
    # The ten the server took are kept, written; the rest failed, to be retried.
    assert len(done) == 10
    assert {c.key for c in done} == set(applied.written)
    assert all(c.error_remedy is Remedy.RETRY for c in results if c.error is not None)
    assert results[-1].error is not None  # the prune was not attempted
    client.outage_after = None  # the server is back
    live = client.get("v1", "ConfigMap", "doomed", namespace=namespace)
    assert live is not None


def test_a_lost_leadership_starts_no_write_after_it(client: Recording, namespace: str) -> None:
    bodies = [config_map(namespace, f"cm-{i:02d}", f"specs/{i}.yaml") for i in range(20)]
    doomed = config_map(namespace, "doomed", "gone.yaml")
    changed = config_map(namespace, "changed", "changed.yaml")
    client.apply(doomed, field_manager="test")
    client.apply(changed, field_manager="test")
    client.log.clear()
    configure = Change(
        ObjectRef.of(changed),
        Action.CONFIGURED,
        desired={**changed, "data": {"key": "v2"}},
        live=changed,
    )
    changes = (*map(created, bodies[:8]), configure, *map(created, bodies[8:]), deleted(doomed))
    # Yes for the namespace, the eight creates and the change's dry-run; then no: the
    # leadership is lost while the dry-run is in flight.
    answers = iter([True] * 10)

    applied = execute(
        client,
        ChangeSet(changes),
        create_namespaces=True,
        concurrency=1,  # one writer: the order of the questions is the plan's
        may_write=lambda: next(answers, False),
    )

    assert isinstance(applied.interrupted, LeadershipLostError)
    assert set(applied.written) == {ObjectRef.of(body) for body in bodies[:8]}
    # The change was dry-run, then not written; nothing after it was tried.
    paths = [p for m, p in client.log if m in ("PATCH", "DELETE")]
    assert paths.count(f"/api/v1/namespaces/{namespace}/configmaps/changed") == 1
    assert len(paths) == 9
    refused = [c for c in applied.changes.changes if c.error is not None]
    assert len(refused) == len(changes) - 8
    assert all("leader lease" in str(c.error) and c.error_remedy is Remedy.RETRY for c in refused)
    live = client.get("v1", "ConfigMap", "changed", namespace=namespace)
    assert live is not None
    assert live["data"] == changed["data"]
    assert client.get("v1", "ConfigMap", "doomed", namespace=namespace) is not None


def test_token_bucket_spends_its_burst_then_keeps_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))

    bucket = TokenBucket(10.0, 3, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        bucket.acquire()
    # The burst at once; then each waits for its own token: 0.1 s, then 0.2 s.
    assert slept == [0.1, 0.2]
    now[0] = 10.0  # long enough to refill the burst
    bucket.pause(2.0)  # a 429 said: come back in 2 s
    bucket.acquire()
    assert slept[-1] == 2.0
    with pytest.raises(ConfigurationError):
        TokenBucket(10.0, 0)


def test_the_pool_holds_as_many_connections_as_writers(control_plane: ControlPlane) -> None:
    client = KubeClient.from_kubeconfig(control_plane.kubeconfig, concurrency=64)
    try:
        assert client._pool.connection_pool_kw["maxsize"] >= 64
    finally:
        client.close()
    with pytest.raises(ConfigurationError, match="need at least 1"):
        KubeClient(NOWHERE, concurrency=0)


def test_the_help_names_the_client_defaults() -> None:
    # The CLI states them without importing the client: this keeps them in step.
    result = CliRunner().invoke(cli, ["sync", "--help"], terminal_width=300)
    text = " ".join(result.output.split())
    assert f"Objects written at once. Default: {DEFAULT_CONCURRENCY}." in text
    assert f"0: no limit. Default: {DEFAULT_QPS:g}." in text
    assert f"above the QPS. Default: {DEFAULT_BURST}." in text
    assert "GITSYNC_CONCURRENCY" in text


class _Response:
    """Just enough of a urllib3 response for KubeClient.request."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes = b"{}") -> None:
        self.status, self.headers, self._body = status, headers, body

    def read(self) -> bytes:
        return self._body

    def drain_conn(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def test_a_429_pauses_every_request_for_its_retry_after() -> None:
    slept: list[float] = []
    bucket = TokenBucket(0, 1, clock=lambda: 0.0, sleep=slept.append)
    answers = [_Response(429, {"Retry-After": "1.5"}), _Response(200, {})]

    class Throttled(KubeClient):
        def _send(self, *args: Any, **kwargs: Any) -> Any:
            bucket.acquire()  # what the real _send does first
            return answers.pop(0)

    client = Throttled(NOWHERE, timeout=(1.0, 1.0), limiter=bucket)
    assert client.request("GET", "/api/v1") == {}
    # The retry waited out the Retry-After in the shared bucket: any other worker would.
    assert slept == [1.5]
    bucket.acquire()
    assert slept == [1.5, 1.5]  # the clock did not move: still paused for everyone
