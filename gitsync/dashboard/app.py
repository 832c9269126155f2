"""The dashboard as a WSGI application: routes, headers, caching and auth around the
pages of :mod:`gitsync.board`.

WSGI, because it is the narrowest standard interface an HTTP server can mount: the
daemon's listener mounts :class:`Dashboard` at ``/`` beside its own endpoints, and
``gitsync dashboard`` serves the same object with the standard library
(:mod:`gitsync.dashboard.serve`). Nothing here opens a socket.

Everything it shows comes from Git, which anyone who can push writes, so it is served
as hostile: Jinja2 escapes every value (autoescape on for every template), a strict
Content-Security-Policy allows no inline script or style, only GET and HEAD are
answered, static files are looked up by exact name in what the package ships (no
path is ever joined), and request sizes are bounded. An ETag made of both branches'
commit ids lets the page's script poll cheaply: an unchanged branch answers 304.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import parse_qs

import jinja2
import orjson

from gitsync import __version__
from gitsync.audit import (
    Parsed,
    current_statuses,
    find_branch,
    spec_commits,
    spec_labels,
    status_commits,
)
from gitsync.board import (
    BoardData,
    Filters,
    OverviewPage,
    age,
    cycles_page,
    overview_page,
    pipelines_page,
    spec_page,
)
from gitsync.errors import ConfigurationError, GitsyncError
from gitsync.history import SpecCommit, StatusCommit
from gitsync.redact import redact

if TYPE_CHECKING:
    from gitsync.clients.git import Repository

__all__ = [
    "BasicAuth",
    "BoardSource",
    "Dashboard",
    "MirrorSource",
    "RepositorySource",
    "Response",
]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

#: Longest path and query answered; a longer request is refused before any work.
MAX_PATH: Final = 1024
MAX_QUERY: Final = 2048
#: Status and spec commits read for the timelines: bounded, so a branch with years
#: of history costs the same as one with months.
HISTORY_LIMIT: Final = 2000
_AUTH_HEADER_MAX: Final = 1024
#: Parsed status documents kept (a few KiB each); past it the memo starts again.
_PARSED_MAX: Final = 50_000
#: Bodies larger than this are gzipped for a client that accepts it.
_COMPRESS_FROM: Final = 2048

_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", _CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
_REASONS: Final = {
    200: "OK",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    503: "Service Unavailable",
}
_TYPES: Final = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


class BoardSource(Protocol):
    """Where the pages' data comes from: the branches as they are now."""

    def current(self) -> BoardData:
        """The data at the branches' current heads (cheap when they did not move).
        Raises GitsyncError when they cannot be read."""
        ...


class RepositorySource:
    """A repository's spec and status branches (a local clone, or the daemon's
    mirror), read again whenever either head moved. Safe to share between threads."""

    def __init__(
        self,
        repository: Repository,
        *,
        branch: str,
        status_branch: str | Callable[[], str],
        subdir: str = "",
        instance: str | None = None,
    ) -> None:
        """``status_branch`` may be asked anew each time: the daemon's is the one its
        spec repo's gitsync.yaml names, known after its first cycle."""
        self._repository = repository
        self._branch = branch
        self._status_branch = status_branch
        self._subdir = subdir
        self._instance = instance
        self._lock = threading.Lock()
        self._data: BoardData | None = None
        #: Status documents by blob id: a new status commit parses only its own.
        self._parsed: Parsed = {}

    def current(self) -> BoardData:
        with self._lock:  # pygit2 objects are not for concurrent use
            repo = self._repository
            named = self._status_branch
            status_head = find_branch(repo, named() if callable(named) else named)
            spec_head = find_branch(repo, self._branch)
            data = self._data
            if data is not None and (data.status_commit, data.spec_commit) == (
                status_head,
                spec_head,
            ):
                return data
            if len(self._parsed) > _PARSED_MAX:
                self._parsed.clear()
            spec_side = (
                (data.spec_commits, data.labels)
                if data is not None and data.spec_commit == spec_head
                else self._spec_side(spec_head)
            )
            self._data = BoardData(
                status_commit=status_head,
                spec_commit=spec_head,
                documents=(
                    current_statuses(repo, status_head, self._instance, parsed=self._parsed)
                    if status_head
                    else {}
                ),
                status_commits=self._status_commits(status_head),
                spec_commits=spec_side[0],
                labels=spec_side[1],
            )
            return self._data

    def _status_commits(self, head: str | None) -> list[StatusCommit]:
        """The status branch's commits, with only ``instance``'s documents when set."""
        if head is None:
            return []
        repo, instance = self._repository, self._instance
        found = status_commits(repo, head, None, limit=HISTORY_LIMIT, parsed=self._parsed)
        if instance is None:
            return found
        return [
            replace(c, documents={p: d for p, d in c.documents.items() if d.instance == instance})
            for c in found
        ]

    def _spec_side(
        self, head: str | None
    ) -> tuple[Sequence[SpecCommit], Mapping[str, Mapping[str, str]]]:
        """The spec branch's commits and labels: read again only when it moved."""
        if head is None:
            return (), {}
        repo = self._repository
        commits = spec_commits(repo, head, under=self._subdir, limit=HISTORY_LIMIT)
        return commits, spec_labels(repo, head, root=self._subdir)


class MirrorSource:
    """The daemon's bare mirror, as :class:`RepositorySource` reads it, opened (with a
    handle of its own) once the daemon's first fetch has made it; until then the
    pages say there is no status yet."""

    def __init__(self, path: Path, **settings: Any) -> None:
        self._path = path
        self._settings = settings
        self._lock = threading.Lock()
        self._source: RepositorySource | None = None

    def current(self) -> BoardData:
        with self._lock:
            if self._source is None:
                if not (self._path / "HEAD").exists():
                    return BoardData(status_commit=None, spec_commit=None, documents={})
                # Imported here, as for RepositorySource's callers: pygit2 is not free.
                from gitsync.clients.git import Repository  # noqa: PLC0415

                self._source = RepositorySource(Repository.open(self._path), **self._settings)
            source = self._source
        return source.current()


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP basic auth against fixed users: SHA-256 of each ``user:password``."""

    digests: tuple[bytes, ...]

    @classmethod
    def from_file(cls, path: Path) -> BasicAuth:
        """One ``user:password`` a line (``#`` comments and blank lines skipped)."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"dashboard auth file {path}: {exc}") from exc
        digests = []
        for number, line in enumerate(lines, 1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            user, colon, password = entry.partition(":")
            if not colon or not user or not password:
                raise ConfigurationError(
                    f"{path}:{number}: expected 'user:password' (the line is not shown)"
                )
            digests.append(hashlib.sha256(entry.encode()).digest())
        if not digests:
            raise ConfigurationError(f"dashboard auth file {path}: no 'user:password' line")
        return cls(tuple(digests))

    def allows(self, header: str | None) -> bool:
        """Whether an Authorization header names one of the users. Every entry is
        compared, in constant time, whatever matches."""
        if not header or len(header) > _AUTH_HEADER_MAX:
            return False
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        digest = hashlib.sha256(given).digest()
        found = False
        for expected in self.digests:
            found |= hmac.compare_digest(digest, expected)
        return found


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def reason(self) -> str:
        return _REASONS[self.status]


def _static_files() -> dict[str, tuple[bytes, str]]:
    """What the package ships under static/, by file name: the only files served."""
    folder = resources.files("gitsync.dashboard").joinpath("static")
    found = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            found[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return found


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gitsync.dashboard", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["iso"] = lambda at: at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else ""
    env.filters["stamp"] = lambda at: (
        at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"
    )
    env.filters["redact"] = redact
    return env


class Dashboard:
    """The read-only dashboard, a WSGI application to mount at ``/``.

    ``hosts``: the names a request's Host header may carry (port aside), for a
    dashboard on a loopback address; None accepts any, for one behind a proxy or an
    ingress that routes by name.
    """

    def __init__(
        self,
        source: BoardSource,
        *,
        auth: BasicAuth | None = None,
        hosts: frozenset[str] | None = None,
        poll_seconds: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._source = source
        self._auth = auth
        self._hosts = hosts
        self._poll = poll_seconds
        self._clock = clock
        self._env = _environment()
        self._static = _static_files()

    def __call__(
        self, environ: Mapping[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        response = self.handle(
            method=method,
            path=str(environ.get("PATH_INFO", "/")),
            query=str(environ.get("QUERY_STRING", "")),
            headers={
                name: environ.get("HTTP_" + name.upper().replace("-", "_"))
                for name in ("accept-encoding", "authorization", "host", "if-none-match")
            },
        )
        start_response(f"{response.status} {response.reason}", list(response.headers))
        return [b""] if method == "HEAD" else [response.body]

    def handle(
        self, *, method: str, path: str, query: str, headers: Mapping[str, str | None]
    ) -> Response:
        """One request, as the listener or any server sees it (``headers`` by
        lower-case name: it reads ``accept-encoding``, ``authorization``, ``host``
        and ``if-none-match``); the response is complete, security headers,
        encoding and length included (a HEAD's caller sends no body)."""
        response = self._answer(method=method, path=path, query=query, headers=headers)
        body = response.body
        extra = [*_SECURITY_HEADERS, ("Vary", "Accept-Encoding")]
        if len(body) > _COMPRESS_FROM and "gzip" in (headers.get("accept-encoding") or "").lower():
            # A thousand specs make a megabyte of repetitive HTML, 3% of it gzipped.
            body = gzip.compress(body, compresslevel=5, mtime=0)
            extra.append(("Content-Encoding", "gzip"))
        extra.append(("Content-Length", str(len(body))))
        return Response(response.status, (*response.headers, *extra), body)

    def _answer(
        self, *, method: str, path: str, query: str, headers: Mapping[str, str | None]
    ) -> Response:
        refused = self._refusal(method=method, path=path, query=query, headers=headers)
        if refused is not None:
            return refused
        if path.startswith("/static/"):
            return self._file(path.removeprefix("/static/"))
        try:
            params = parse_qs(query, max_num_fields=16)
        except ValueError:
            return Response(400, _TEXT, b"too many query parameters\n")
        try:
            data = self._source.current()
        except GitsyncError as exc:
            message = f"the status branch cannot be read: {redact(str(exc))}"
            return self._page(503, "error.html", etag=None, message=message)
        etag = f'W/"{(data.status_commit or "none")[:16]}.{(data.spec_commit or "none")[:16]}"'
        if headers.get("if-none-match") == etag:
            return Response(304, (("ETag", etag), ("Cache-Control", "no-cache")), b"")
        return self._route(path, params, data, etag)

    def _refusal(
        self, *, method: str, path: str, query: str, headers: Mapping[str, str | None]
    ) -> Response | None:
        """Why a request gets no page, before any work is done for it."""
        if method not in {"GET", "HEAD"}:
            return Response(405, (("Allow", "GET, HEAD"), *_TEXT), b"read-only: GET or HEAD\n")
        if len(path) > MAX_PATH or len(query) > MAX_QUERY:
            return Response(414, _TEXT, b"request too long\n")
        if self._hosts is not None and _hostname(headers.get("host")) not in self._hosts:
            # A page of another site whose name was pointed at 127.0.0.1 (DNS
            # rebinding) would send its own name here: it reads nothing.
            return Response(400, _TEXT, b"unexpected Host header\n")
        if self._auth is not None and not self._auth.allows(headers.get("authorization")):
            challenge = ("WWW-Authenticate", 'Basic realm="gitsync", charset="UTF-8"')
            return Response(401, (challenge, *_TEXT), b"authentication required\n")
        return None

    def _route(
        self, path: str, params: Mapping[str, list[str]], data: BoardData, etag: str
    ) -> Response:
        if path in {"/", ""}:
            page = overview_page(data, Filters.of(params))
            return self._page(200, "overview.html", etag=etag, page=page)
        if path == "/api/overview.json":
            return self._json(overview_page(data, Filters.of(params)), etag)
        if path == "/cycles":
            return self._page(200, "cycles.html", etag=etag, page=cycles_page(data))
        if path == "/pipelines":
            return self._page(200, "pipelines.html", etag=etag, page=pipelines_page(data))
        if path.startswith("/spec/"):
            found = spec_page(data, path.removeprefix("/spec/"))
            if found is not None:
                return self._page(200, "spec.html", etag=etag, page=found)
        return self._page(404, "error.html", etag=None, message="no such page or spec")

    def _file(self, name: str) -> Response:
        found = self._static.get(name)
        if found is None:
            return Response(404, _TEXT, b"not found\n")
        body, content_type = found
        return Response(
            200, (("Content-Type", content_type), ("Cache-Control", "max-age=300")), body
        )

    def _page(self, status: int, template: str, *, etag: str | None, **values: Any) -> Response:
        now = self._clock()
        html = self._env.get_template(template).render(
            now=now,
            age=lambda at: age(at, now),
            poll=self._poll,
            etag=etag or "",
            version=__version__,
            **values,
        )
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache")]
        if etag is not None:
            headers.append(("ETag", etag))
        return Response(status, tuple(headers), html.encode())

    def _json(self, page: OverviewPage, etag: str) -> Response:
        body = orjson.dumps(
            {
                "statusCommit": page.status_commit,
                "total": page.total,
                "phases": dict(page.phases),
                "specs": [
                    {
                        "key": row.key,
                        "kind": row.kind,
                        "namespace": row.namespace,
                        "name": row.name,
                        "instance": row.instance,
                        "phase": row.phase,
                        "message": row.message,
                        "version": row.version,
                        "team": row.team,
                        "traffic": [
                            {"revision": s.revision, "percent": s.percent, "latest": s.latest}
                            for s in row.traffic
                        ],
                        "rollout": row.rollout,
                        "lastChange": row.change.commit,
                    }
                    for row in page.rows
                ],
            }
        )
        headers = (
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-cache"),
            ("ETag", etag),
        )
        return Response(200, headers, body)


_TEXT: Final = (("Content-Type", "text/plain; charset=utf-8"),)


def _hostname(host: str | None) -> str:
    """The name in a Host header, without its port, lower-case."""
    name = (host or "").strip().lower()
    return name.rpartition(":")[0] if name.rpartition(":")[2].isdigit() else name
