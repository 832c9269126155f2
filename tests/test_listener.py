"""The HTTP listener over real sockets on 127.0.0.1: routes, probes, hook refusals.

The daemon is not run here: the listener gets its two hooks into it (``progress``
and ``wake``) as plain functions, so each answer can be checked against a known
loop state. tests/test_service.py runs the whole ``gitsync run`` process.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitsync.errors import ConfigurationError
from gitsync.listener import Listener, parse_address, webhook_secret
from gitsync.metrics import Metrics
from gitsync.telemetry import Progress
from gitsync.webhooks import MAX_BODY_BYTES

SECRET = b"s3cret-for-tests"
PUSH = orjson.dumps({"ref": "refs/heads/main"})


class Loop:
    """What the listener asks of the daemon, as settable data."""

    def __init__(self) -> None:
        self.progress = Progress(cycles=0, due_by=100.0, busy_since=0.0)
        self.now = 0.0
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


@pytest.fixture
def loop() -> Loop:
    return Loop()


def listening(loop: Loop, secret: bytes | None) -> Listener:
    return Listener(
        ("127.0.0.1", 0),
        metrics=Metrics(),
        progress=lambda: loop.progress,
        wake=loop.wake,
        branch="main",
        secret=secret,
        clock=lambda: loop.now,
    ).start()


@pytest.fixture
def listener(loop: Loop) -> Iterator[Listener]:
    served = listening(loop, SECRET)
    yield served
    served.close()


def request(
    listener: Listener,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*listener.address, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def raw(listener: Listener, data: bytes) -> bytes:
    """Send bytes as they are and read the answer (for what http.client won't send);
    b"" when the server closed the connection unanswered."""
    with socket.create_connection(listener.address, timeout=15) as sock:
        answer = b""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(data)
            with contextlib.suppress(OSError):  # the server may have closed already
                sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def github_headers(body: bytes, *, secret: bytes = SECRET, event: str = "push") -> dict[str, str]:
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
    }


def test_probes_follow_the_loop(listener: Listener, loop: Loop) -> None:
    assert request(listener, "GET", "/healthz")[0] == 200
    assert request(listener, "GET", "/readyz")[0] == 503  # no cycle finished yet
    loop.progress = Progress(cycles=1, due_by=140.0)
    assert request(listener, "GET", "/readyz")[0] == 200
    loop.now = 141.0  # the loop broke its promise
    status, body = request(listener, "GET", "/healthz")
    assert status == 503
    assert orjson.loads(body)["ok"] is False


def test_a_standby_is_ready_without_cycles_and_says_it_does_not_lead(
    listener: Listener,
) -> None:
    listener.set_leader(False)
    assert request(listener, "GET", "/readyz")[0] == 200
    status, body = request(listener, "GET", "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert status == 200
    assert families["gitsync_leader"].samples[0].value == 0


def test_a_good_push_wakes_the_loop_and_others_do_not(listener: Listener, loop: Loop) -> None:
    status, body = request(listener, "POST", "/hooks/github", PUSH, github_headers(PUSH))
    assert (status, orjson.loads(body)["wake"]) == (202, True)
    assert loop.wakes == 1
    other = orjson.dumps({"ref": "refs/heads/feature"})
    status, body = request(listener, "POST", "/hooks/github", other, github_headers(other))
    assert (status, orjson.loads(body)["wake"]) == (202, False)
    status, _ = request(
        listener, "POST", "/hooks/github", b"{}", github_headers(b"{}", event="ping")
    )
    assert status == 202
    assert loop.wakes == 1
    gitlab = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET.decode()}
    assert request(listener, "POST", "/hooks/gitlab", PUSH, gitlab)[0] == 202
    assert loop.wakes == 2


TOO_BIG = MAX_BODY_BYTES + 1


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            b"X-Hub-Signature-256: sha256=00\r\nContent-Length: %d\r\n\r\n%s" % (len(PUSH), PUSH),
            401,
            id="bad-signature",
        ),
        pytest.param(
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(PUSH), PUSH),
            401,
            id="missing-signature",
        ),
        pytest.param(
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % TOO_BIG,
            413,
            id="too-large-refused-before-reading",
        ),
        pytest.param(
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n",
            411,
            id="chunked",
        ),
        pytest.param(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n\r\n", 411, id="no-length"),
        pytest.param(
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            400,
            id="negative-length",
        ),
        pytest.param(
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Content-Length: 2\r\n\r\n{}",
            400,
            id="two-lengths",
        ),
        pytest.param(
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: \xd9\xa3\r\n\r\n",
            400,
            id="non-ascii-digit-length",
        ),
        pytest.param(
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}",
            400,
            id="truncated-body",
        ),
        pytest.param(b"GET /hooks/github HTTP/1.1\r\nHost: x\r\n\r\n", 405, id="get-a-hook"),
        pytest.param(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405, id="post-metrics"),
        pytest.param(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, id="unknown-path"),
        pytest.param(b"\x00\xff garbage\r\n\r\n", 400, id="garbage-request-line"),
    ],
)
def test_refusals(listener: Listener, loop: Loop, data: bytes, status: int) -> None:
    answer = raw(listener, data)
    if answer.startswith(b"HTTP/"):
        assert answer.split(b" ", 2)[1] == str(status).encode(), answer[:200]
    else:  # no version to answer in: the stdlib answers as HTTP/0.9, a bare page
        assert f"Error code: {status}".encode() in answer, answer[:200]
    assert loop.wakes == 0


def test_malformed_json_with_a_good_signature_is_400(listener: Listener, loop: Loop) -> None:
    body = b"{ref: main"
    assert request(listener, "POST", "/hooks/github", body, github_headers(body))[0] == 400
    assert loop.wakes == 0


def test_hooks_refuse_while_no_secret_is_configured(loop: Loop) -> None:
    served = listening(loop, None)
    try:
        # Even a delivery signed with the empty key: that is one anyone can make.
        headers = github_headers(PUSH, secret=b"")
        status, body = request(served, "POST", "/hooks/github", PUSH, headers)
        assert status == 403
        assert b"GITSYNC_WEBHOOK_SECRET" in body
        assert request(served, "GET", "/healthz")[0] == 200  # the rest still serves
    finally:
        served.close()
    assert loop.wakes == 0


def test_hook_deliveries_are_counted_by_code(listener: Listener) -> None:
    request(listener, "POST", "/hooks/github", PUSH, github_headers(PUSH))
    request(listener, "POST", "/hooks/github", PUSH, github_headers(PUSH, secret=b"wrong"))
    _, body = request(listener, "GET", "/metrics")
    samples = {
        (s.labels["forge"], s.labels["code"]): s.value
        for f in text_string_to_metric_families(body.decode())
        if f.name == "gitsync_webhook_requests"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert samples == {("github", "202"): 1, ("github", "401"): 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":8080", ("", 8080)),
        ("[::1]:9000", ("::1", 9000)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["8080", "host:", "host:99999", "::1:80", "a:b:80", ""])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ConfigurationError, match="--listen"):
        parse_address(text)


def test_the_secret_from_a_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"from-file\n")
    assert webhook_secret(path, {}) == b"from-file"
    assert webhook_secret(None, {"GITSYNC_WEBHOOK_SECRET": "from-env"}) == b"from-env"
    assert webhook_secret(None, {}) is None
    with pytest.raises(ConfigurationError, match="both"):
        webhook_secret(path, {"GITSYNC_WEBHOOK_SECRET": "x"})
    path.write_bytes(b"\n")
    with pytest.raises(ConfigurationError, match="empty"):
        webhook_secret(path, {})
    with pytest.raises(ConfigurationError, match="empty"):
        webhook_secret(None, {"GITSYNC_WEBHOOK_SECRET": ""})
    with pytest.raises(ConfigurationError, match="missing"):
        webhook_secret(tmp_path / "missing", {})


def test_a_trickling_client_is_cut_off_at_the_deadline(
    listener: Listener, loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitsync import listener as module  # noqa: PLC0415 - the handler class is private

    monkeypatch.setattr(module._Handler, "deadline", 0.5)
    started = time.monotonic()
    closed = False
    with socket.create_connection(listener.address, timeout=10) as sock:
        sock.sendall(b"POST /hooks/github HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{")
        while not closed and time.monotonic() - started < 5:
            time.sleep(0.1)  # a byte at a time, each well within the socket timeout
            try:
                sock.sendall(b" ")
                closed = sock.recv(1, socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                continue
            except OSError:
                closed = True
    assert closed
    assert time.monotonic() - started < 2.0
    assert loop.wakes == 0


def test_connections_over_the_cap_are_closed_unanswered(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitsync import listener as module  # noqa: PLC0415 - the cap is private

    monkeypatch.setattr(module, "_MAX_CONNECTIONS", 2)
    served = listening(loop, SECRET)
    try:
        idle = [socket.create_connection(served.address, timeout=5) for _ in range(2)]
        time.sleep(0.2)  # both accepted and held by their handler threads
        assert raw(served, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == b""
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        assert request(served, "GET", "/healthz")[0] == 200  # slots come back
    finally:
        served.close()


def test_a_standby_hands_a_good_push_to_the_leader_and_wakes_nothing(loop: Loop) -> None:
    handed: list[tuple[str, str, bytes]] = []

    def forward(path: str, headers: Mapping[str, str], body: bytes) -> bool:
        handed.append((path, headers["x-hub-signature-256"], body))
        return True

    served = Listener(
        ("127.0.0.1", 0),
        metrics=Metrics(),
        progress=lambda: loop.progress,
        wake=loop.wake,
        branch="main",
        secret=SECRET,
        clock=lambda: loop.now,
        forward=forward,
    ).start()
    try:
        served.set_leader(False)
        headers = github_headers(PUSH)
        status, body = request(served, "POST", "/hooks/github", PUSH, headers)
        assert (status, orjson.loads(body)["forwarded"]) == (202, True)
        assert handed == [("/hooks/github", headers["X-Hub-Signature-256"], PUSH)]
        # Once handed on, never again: two replicas that each think the other leads.
        again = {**headers, "X-Gitsync-Forwarded": "1"}
        status, body = request(served, "POST", "/hooks/github", PUSH, again)
        assert (status, orjson.loads(body)["forwarded"]) == (202, False)
        # A forged delivery is refused before anything is handed on.
        forged = github_headers(PUSH, secret=b"wrong")
        assert request(served, "POST", "/hooks/github", PUSH, forged)[0] == 401
        assert len(handed) == 1
        assert loop.wakes == 0
        served.set_leader(True)
        assert request(served, "POST", "/hooks/github", PUSH, headers)[0] == 202
        assert (len(handed), loop.wakes) == (1, 1)
    finally:
        served.close()
