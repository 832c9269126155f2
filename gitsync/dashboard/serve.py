"""Serving the dashboard without the daemon: ``gitsync dashboard`` on a laptop.

The standard library's WSGI server, one thread a request, is enough for a handful
of reviewers reading one clone; the daemon serves the same application through its
own listener instead. Kept to one function so it can be swapped for that listener.
"""

from __future__ import annotations

import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from gitsync.dashboard.app import Dashboard
from gitsync.errors import ConfigurationError

__all__ = ["make", "parse_listen"]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a poll left open never holds up the exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Request lines would print every poll of every open page."""


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv4; ``:PORT`` or ``0.0.0.0:PORT`` for every address)."""
    host, colon, port = listen.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigurationError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def make(app: Dashboard, *, listen: str) -> WSGIServer:
    """A server bound to ``listen``, not yet serving (``serve_forever``); its
    ``server_address`` has the port when ``listen`` asked for port 0."""
    host, port = parse_listen(listen)
    try:
        return make_server(
            host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
    except OSError as exc:
        raise ConfigurationError(f"--listen {listen}: {exc}") from exc
