"""gitsync's one HTTP listener: ``/metrics``, ``/healthz``, ``/readyz`` and push hooks.

``gitsync run --listen ADDR`` serves, beside the daemon's loop:

* ``GET /metrics``: :mod:`gitsync.metrics` in the Prometheus text format;
* ``GET /healthz``: 200 while the loop keeps the promise it made of its next sign of
  life (:func:`gitsync.telemetry.alive`), else 503: the liveness probe restarts a
  process whose loop hung;
* ``GET /readyz``: 200 once a cycle finished, or on a standby replica (see
  :meth:`Listener.set_leader`), else 503;
* ``GET /`` and every other path: the read-only dashboard (:mod:`gitsync.dashboard`);
* ``POST /hooks/github``, ``/hooks/gitlab``, ``/hooks/generic``: a push to the
  watched branch wakes the daemon (:mod:`gitsync.webhooks` judges the delivery); on a
  standby, which runs no cycle, it is handed on to the leader
  (:mod:`gitsync.clients.peer`) and the answer says ``forwarded``.

Why the standard library's :class:`~http.server.ThreadingHTTPServer`: four routes,
no TLS (a Service and a NetworkPolicy front it in a cluster, as for Flux's and Argo
CD's metrics ports), a scrape every few seconds and a hook per push. A framework
(and an ASGI server) would bring more code than it saves; what the stdlib lacks for
hostile input is added here: a cap on connections served at once (a flood is
refused, not given a thread each), a socket timeout and a deadline per request (a
client that sends half a body, or trickles it, is dropped), a strict Content-Length
(no chunked bodies, no length over :data:`~gitsync.webhooks.MAX_BODY_BYTES`), and a
request log that never holds a header, so neither the secret nor a signature is
ever logged. A flood can still fill the slots and fail the probes for as long as it
lasts: the port belongs behind a NetworkPolicy, the hooks behind an Ingress.

Status codes of the hooks: 202 for an authentic delivery (the body says whether it
woke the daemon: a push to another branch, a ping, another event do not), 401 for a
missing or wrong signature, 400 for an authentic body that is not the forge's JSON,
411/413 for a body without a length or over the limit, and 403 on every hook while
no secret is configured: the route exists, but no credential could succeed, so not
401 (which invites retrying with another) nor 5xx (a choice of the operator, not a
fault of the server); the body says how to turn hooks on.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from gitsync.clients.peer import FORWARDED_HEADER
from gitsync.dashboard import Dashboard
from gitsync.errors import ConfigurationError
from gitsync.metrics import CONTENT_TYPE, Metrics
from gitsync.telemetry import Progress, alive, ready
from gitsync.webhooks import MAX_BODY_BYTES, Forge, HookVerdict, judge

__all__ = ["REQUEST_DEADLINE", "SECRET_ENV", "Listener", "parse_address", "webhook_secret"]

log = structlog.get_logger(__name__)

SECRET_ENV: Final = "GITSYNC_WEBHOOK_SECRET"  # noqa: S105 - its name, not its value
#: Connections served at once: a few scrapes and probes, and hooks in bursts.
_MAX_CONNECTIONS: Final = 32
#: Seconds a connection may sit idle in a read (slow or half-sent bodies).
_SOCKET_TIMEOUT: Final = 10.0
#: Seconds a whole request may take, however it trickles in: a client sending a byte
#: every few seconds would otherwise hold one of the connection slots for good.
REQUEST_DEADLINE: Final = 15.0
_CONTENT_LENGTH: Final = re.compile(r"[0-9]{1,16}")
_ADDRESS: Final = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>[0-9]{1,5})$"
)
_HOOKS: Final = {f"/hooks/{forge.value}": forge for forge in Forge}
_HOOK_PATHS: Final = {forge: path for path, forge in _HOOKS.items()}
_OWN_PATHS: Final = frozenset({"/metrics", "/healthz", "/readyz", *_HOOKS})
_VERDICT_STATUS: Final = {
    HookVerdict.WAKE: HTTPStatus.ACCEPTED,
    HookVerdict.IGNORED: HTTPStatus.ACCEPTED,
    HookVerdict.UNAUTHORIZED: HTTPStatus.UNAUTHORIZED,
    HookVerdict.MALFORMED: HTTPStatus.BAD_REQUEST,
}


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (every interface) or ``[IPv6]:PORT``."""
    match = _ADDRESS.match(text.strip())
    if match is None or int(match["port"]) > 65535:
        raise ConfigurationError(
            f"--listen {text!r}: expected HOST:PORT, :PORT or [IPv6]:PORT, such as 127.0.0.1:8080"
        )
    return match["v6"] or match["host"] or "", int(match["port"])


def webhook_secret(path: Path | None, environ: Mapping[str, str] = os.environ) -> bytes | None:
    """The secret from ``--webhook-secret-file`` or ``$GITSYNC_WEBHOOK_SECRET``; None
    when neither is set. A file's trailing newline (as ``echo`` and editors leave
    it) is not part of the secret."""
    from_env = environ.get(SECRET_ENV)
    if path is not None and from_env is not None:
        raise ConfigurationError(f"webhook secret: both {SECRET_ENV} and --webhook-secret-file")
    if path is not None:
        try:
            secret = path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigurationError(f"--webhook-secret-file {path}: {exc.strerror}") from exc
        where = str(path)
    elif from_env is not None:
        secret, where = from_env.encode(), SECRET_ENV
    else:
        return None
    if not secret.strip():
        # An HMAC with an empty key is one anyone can compute.
        raise ConfigurationError(f"webhook secret from {where} is empty")
    return secret


class Listener:
    """The HTTP server, on a thread of its own, until :meth:`close`."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        metrics: Metrics,
        progress: Callable[[], Progress],
        wake: Callable[[], None],
        branch: str,
        secret: bytes | None,
        clock: Callable[[], float],
        forward: Callable[[str, Mapping[str, str], bytes], bool] | None = None,
        dashboard: Dashboard | None = None,
    ) -> None:
        """``progress`` and ``wake`` are the daemon's; ``branch`` the watched one;
        ``forward(path, headers, body)`` hands a standby's hook to the leader
        (:func:`gitsync.clients.peer.forward_hook`)."""
        self.metrics = metrics
        self._forward = forward
        #: The web pages, served at every path that is not the listener's own.
        self.dashboard = dashboard
        self._progress = progress
        self._wake = wake
        self._branch = branch
        self._secret = secret
        self._clock = clock
        self._standby = False
        host, port = address
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), _Handler)
        except OSError as exc:
            raise ConfigurationError(f"--listen {host}:{port}: {exc.strerror}") from exc
        self._server.listener = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},  # how soon close() returns
            name="gitsync-listener",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the port chosen, when asked for port 0)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> Listener:
        self._thread.start()
        log.info(
            "listening",
            address=f"{self.address[0]}:{self.address[1]}",
            webhooks=self._secret is not None,
        )
        return self

    def close(self) -> None:
        """Stop serving; requests in flight are cut off (their threads are daemons)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def set_leader(self, leading: bool) -> None:
        """For leader election: a standby (not leading) is ready without cycles, and
        ``gitsync_leader`` says which replica leads."""
        self._standby = not leading
        self.metrics.set_leader(leading)

    # --- what the handler asks -------------------------------------------------------

    def health(self) -> tuple[HTTPStatus, dict[str, Any]]:
        progress = self._progress()
        ok = alive(progress, now=self._clock())
        body = {"ok": ok, "cycles": progress.cycles, "busy": progress.busy_since is not None}
        return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), body

    def readiness(self) -> tuple[HTTPStatus, dict[str, Any]]:
        progress = self._progress()
        ok = ready(progress, standby=self._standby)
        body = {"ok": ok, "cycles": progress.cycles, "standby": self._standby}
        return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), body

    def hook(
        self, forge: Forge, *, headers: Mapping[str, str], body: bytes
    ) -> tuple[HTTPStatus, dict[str, Any]]:
        assert self._secret is not None  # noqa: S101 - the handler checks hooks_enabled
        judgement = judge(
            forge, headers=headers, body=body, secret=self._secret, branch=self._branch
        )
        status = _VERDICT_STATUS[judgement.verdict]
        woke = judgement.verdict is HookVerdict.WAKE
        forwarded = False
        if woke and self._standby:
            # A standby runs no cycle: the leader must hear of the push, not this replica.
            woke = False
            if self._forward is not None and FORWARDED_HEADER not in headers:
                forwarded = self._forward(_HOOK_PATHS[forge], headers, body)
        elif woke:
            self._wake()
        log.info(
            "webhook",
            forge=forge.value,
            verdict=judgement.verdict.value,
            reason=judgement.reason,
            forwarded=forwarded,
        )
        return status, {"wake": woke, "forwarded": forwarded, "reason": judgement.reason}

    @property
    def hooks_enabled(self) -> bool:
        return self._secret is not None


class _Server(ThreadingHTTPServer):
    listener: Listener

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the cap: closed unanswered
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread was started to release it
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The stdlib prints a traceback to stderr: for a client that hung up or was
        # cut off, one debug line is enough.
        log.debug("http connection failed", client=str(client_address[0]))

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _SOCKET_TIMEOUT
    deadline = REQUEST_DEADLINE
    server_version = "gitsync"
    sys_version = ""

    def handle(self) -> None:
        # One timer per connection, so at most _MAX_CONNECTIONS of them.
        timer = threading.Timer(self.deadline, self._cut)
        timer.daemon = True
        timer.start()
        try:
            super().handle()
        finally:
            timer.cancel()

    def _cut(self) -> None:
        """Past the deadline: end the connection, which ends the read it hangs in."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        listener = self.server.listener
        path = self.path.partition("?")[0]
        if path == "/metrics":
            self._send(HTTPStatus.OK, listener.metrics.exposition(), content_type=CONTENT_TYPE)
        elif path == "/healthz":
            self._json(*listener.health())
        elif path == "/readyz":
            self._json(*listener.readiness())
        elif path in _HOOKS:
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "POST only"}, allow="POST")
        elif listener.dashboard is not None:
            self._page(listener.dashboard, "GET")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_HEAD(self) -> None:
        dashboard = self.server.listener.dashboard
        if dashboard is None or self.path.partition("?")[0] in _OWN_PATHS:
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "GET only"}, allow="GET")
            return
        self._page(dashboard, "HEAD")

    def _page(self, dashboard: Dashboard, method: str) -> None:
        """A dashboard page, its response complete as the dashboard made it."""
        path, _, query = self.path.partition("?")
        headers = {name.lower(): value for name, value in self.headers.items()}
        response = dashboard.handle(method=method, path=path, query=query, headers=headers)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)

    def do_POST(self) -> None:
        listener = self.server.listener
        path = self.path.partition("?")[0]
        forge = _HOOKS.get(path)
        if forge is None:
            # The probes and the metrics, and the dashboard's pages, are read-only.
            allowed = path in _OWN_PATHS or listener.dashboard is not None
            self._json(
                HTTPStatus.METHOD_NOT_ALLOWED if allowed else HTTPStatus.NOT_FOUND,
                {"error": "GET only" if allowed else "not found"},
                allow="GET" if allowed else None,
            )
            return
        status, answer = self._hook(listener, forge)
        listener.metrics.record_hook(forge.value, int(status))
        self._json(status, answer)

    def _hook(self, listener: Listener, forge: Forge) -> tuple[HTTPStatus, dict[str, Any]]:
        if not listener.hooks_enabled:
            return HTTPStatus.FORBIDDEN, {
                "error": "webhooks are off: set GITSYNC_WEBHOOK_SECRET or --webhook-secret-file"
            }
        body = self._body()
        if isinstance(body, tuple):
            return body
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)  # a repeated header: the first counts
        return listener.hook(forge, headers=headers, body=body)

    def _body(self) -> bytes | tuple[HTTPStatus, dict[str, Any]]:
        """The request body, or the refusal: read only with one exact, bounded length."""
        # Whatever happens next, the connection is not reused: an unread body would
        # be taken for the next request.
        self.close_connection = True
        if self.headers.get("Transfer-Encoding") is not None:
            return HTTPStatus.LENGTH_REQUIRED, {"error": "chunked bodies are not accepted"}
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"}
        if len(lengths) > 1 or not _CONTENT_LENGTH.fullmatch(lengths[0].strip()):
            return HTTPStatus.BAD_REQUEST, {"error": "bad Content-Length"}
        length = int(lengths[0])
        if length > MAX_BODY_BYTES:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {
                "error": f"body over {MAX_BODY_BYTES} bytes"
            }
        body = self.rfile.read(length)
        if len(body) != length:
            return HTTPStatus.BAD_REQUEST, {"error": "body shorter than its Content-Length"}
        return body

    def _json(
        self, status: HTTPStatus, body: Mapping[str, Any], *, allow: str | None = None
    ) -> None:
        self._send(status, orjson.dumps(body) + b"\n", content_type="application/json", allow=allow)

    def _send(
        self, status: HTTPStatus, body: bytes, *, content_type: str, allow: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if allow is not None:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib logs the request line with its arguments to stderr; structlog gets
        # the template only (never a header or the request line's query string).
        log.debug("http error", what=format, client=self.client_address[0])

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = (getattr(self, "path", "") or "").partition("?")[0][:200]
        log.debug("http", request=self.command, path=path, code=str(code))
