"""The one module that talks to a Kubernetes API server.

Objects travel as plain dicts (the apply bodies gitsync renders, and what the server
returns), as raw JSON over one urllib3 connection pool, so no 2 MB CRD or list of a
thousand objects is ever turned into generated model classes. Where the server is
and what authenticates each request come from :mod:`gitsync.clients.kubeconfig`;
request building, server-side apply, discovery and watch are done here.

Every failure leaves this module as a :mod:`gitsync.errors` type, chosen from the
HTTP status, so callers decide from types what to do.

The client is shared by concurrent writers (:func:`gitsync.apply.execute`), so it is
thread-safe, its connection pool holds as many connections as it allows writers, and
every request first takes a token from one client-wide bucket (``--kube-api-qps``,
``--kube-api-burst``, as client-go's): however many workers, the server sees one
client's rate. A 429 (priority and fairness, or a starting server) pauses the whole
bucket for the Retry-After it names, not only the request that got it.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

import orjson
import structlog
import urllib3

from gitsync import __version__
from gitsync.backoff import Backoff
from gitsync.clients import kubeconfig as kubeconfig_module
from gitsync.clients.kubeconfig import Endpoint
from gitsync.errors import (
    ApiConflictError,
    ApiForbiddenError,
    ApiInvalidError,
    ApiThrottledError,
    ApiUnavailableError,
    ConfigurationError,
    GitsyncError,
    NotFoundError,
    WatchExpiredError,
)
from gitsync.types import ObjectRef

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_QPS",
    "RETRY_BACKOFF",
    "SERVICEACCOUNT_DIR",
    "Informer",
    "KubeClient",
    "RequestObserver",
    "Resource",
    "TokenBucket",
    "WatchEvent",
    "resource_version",
]

log = structlog.get_logger(__name__)

Object = dict[str, Any]
#: Told of every request sent: its HTTP method, and the status code it got (None: no
#: response). Called on the sending thread, so it must be quick and thread-safe.
RequestObserver = Callable[[str, int | None], None]

#: Connections the pool keeps beyond the writers' (see KubeClient.__init__).
_POOL_SPARE: Final = 16
#: What the API server's audit log and priority-and-fairness rules see of gitsync.
_USER_AGENT: Final = f"gitsync/{__version__}"
_APPLY_PATCH: Final = "application/apply-patch+yaml"
_MERGE_PATCH: Final = "application/merge-patch+json"
_DEFAULT_TIMEOUT: Final = (5.0, 30.0)  # connect, read
_THROTTLE_RETRIES: Final = 5
#: Writers a client serves at once by default. Flux reconciles 4 at a time; on a 2-core
#: API server 8 writers applied 1,000 objects in 2.7-4.6 s where 4 took 3.3-7.4 s and
#: one 6.6-7.7 s (bench/peer.py): the server works on all its cores, and a writer
#: waiting on each round trip leaves them idle.
DEFAULT_CONCURRENCY: Final = 8
#: client-go's defaults (5 QPS, burst 10) are for controllers sharing a busy cluster; a
#: first sync of a thousand objects would take minutes. These let the API server set
#: the pace, and leave priority and fairness to protect it: it answers 429, which
#: pauses the bucket. A first sync of 1,000 objects sends about 2,000 requests (an
#: apply and an Event each); the burst takes them all, where 300 QPS and a burst of
#: 600 held that sync back to 1.2x the time it takes unlimited (bench/sync_process.py
#: paired on 2 cores), 8 writers reaching ~370 requests a second.
DEFAULT_QPS: Final = 1000.0
DEFAULT_BURST: Final = 2000
#: Where a pod finds its ServiceAccount's token, CA and namespace.
SERVICEACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _retry_after(header: str | None) -> float:
    try:
        seconds = float(header) if header else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.1), 2.0)


class TokenBucket:
    """At most ``qps`` requests a second on average, ``burst`` at once; qps 0: no limit.

    Each caller reserves its token under the lock and sleeps outside it, so waiting
    callers are served in turn and none holds the others up while it sleeps.
    """

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps < 0 or burst < 1:
            raise ConfigurationError(
                f"kube API qps {qps} / burst {burst}: need qps >= 0, burst >= 1"
            )
        self._qps = qps
        self._burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = clock()
        self._paused_until = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            wait = max(self._paused_until - now, 0.0)
            if self._qps > 0:
                self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
                self._last = now
                self._tokens -= 1
                wait = max(wait, -self._tokens / self._qps)
        if wait > 0:
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Let no request start for ``seconds`` (the server said when to come back)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a kind lives in the API: its group/version, plural and scope."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, *, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        return base


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: Object


_ERROR_BY_STATUS: Final[dict[int, type[GitsyncError]]] = {
    400: ApiInvalidError,
    401: ApiForbiddenError,
    403: ApiForbiddenError,
    404: NotFoundError,
    409: ApiConflictError,
    410: WatchExpiredError,
    # The object is too big for the API server (3 MB by default): only a smaller spec
    # helps, and the other objects of the cycle are not affected.
    413: ApiInvalidError,
    422: ApiInvalidError,
    429: ApiThrottledError,
}


def _error_from_status(status: int, *, what: str, body: bytes, apply: bool = False) -> GitsyncError:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    is_status = isinstance(parsed, dict) and parsed.get("kind") == "Status"
    if is_status:
        message = str(parsed.get("message") or "")
    else:
        message = body[:500].decode("utf-8", errors="replace")
    text = f"{what}: HTTP {status}: {message}"
    if status in _ERROR_BY_STATUS:
        return _ERROR_BY_STATUS[status](text)
    if apply and status == 500 and is_status and not parsed.get("reason"):
        # Server-side apply reports a patch that does not fit the schema (a string
        # where an integer belongs) as a bare 500 without a reason, unlike genuine
        # internal errors (reason InternalError, Timeout ...): kubernetes/kubernetes
        # #118476 and #139253. Retrying would never help, so it is an invalid object.
        return ApiInvalidError(text)
    return ApiUnavailableError(text)


class KubeClient:
    """A thin, dict-in dict-out client for one API server."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: tuple[float, float] = _DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
        limiter: TokenBucket | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency {concurrency}: need at least 1")
        # A pool smaller than the threads sending at once opens and throws away a
        # connection (and its TLS handshake) per request over its size, which slowed a
        # first sync of 1,000 by a fifth. Besides the writers, the Event workers and
        # the informers' watches (one per kind, each held open for minutes) share it;
        # connections are opened only when needed, so room to spare costs nothing.
        pool: dict[str, Any] = {"maxsize": concurrency + _POOL_SPARE}
        if endpoint.ssl_context is not None:
            pool["ssl_context"] = endpoint.ssl_context
            if endpoint.insecure:
                pool.update(cert_reqs="CERT_NONE", assert_hostname=False)
            if endpoint.server_hostname is not None:
                pool["server_hostname"] = endpoint.server_hostname
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(endpoint.proxy, proxy_headers=dict(endpoint.proxy_headers), **pool)
            if endpoint.proxy
            else urllib3.PoolManager(**pool)
        )
        self._endpoint = endpoint
        self._timeout = timeout
        self._resources: dict[tuple[str, str], Resource] = {}
        self._discovery_lock = threading.Lock()
        #: The group versions discovered (served or not) since discovery was last dropped.
        self._discovered: set[str] = set()
        self._limiter = limiter or TokenBucket(DEFAULT_QPS, DEFAULT_BURST)
        self._observer = observer
        self._count_lock = threading.Lock()
        #: How many requests callers may have in flight at once.
        self.concurrency = concurrency
        #: Requests sent, by HTTP method (watches count as GET): for benchmarks and
        #: for proving that a no-op cycle writes nothing.
        self.requests: Counter[str] = Counter()

    @classmethod
    def from_kubeconfig(
        cls,
        path: Path | None = None,
        *,
        context: str | None = None,
        timeout: tuple[float, float] = _DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        observer: RequestObserver | None = None,
    ) -> KubeClient:
        """Connect with a kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."""
        return cls(
            kubeconfig_module.from_kubeconfig(path, context=context),
            timeout=timeout,
            concurrency=concurrency,
            limiter=TokenBucket(qps, burst),
            observer=observer,
        )

    @classmethod
    def connect(
        cls,
        kubeconfig: Path | None = None,
        *,
        context: str | None = None,
        serviceaccount_dir: Path = SERVICEACCOUNT_DIR,
        timeout: tuple[float, float] = _DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        observer: RequestObserver | None = None,
    ) -> KubeClient:
        """A kubeconfig when there is one (given, $KUBECONFIG, ~/.kube/config), else the
        pod's ServiceAccount when running in a cluster, as client-go decides."""
        in_cluster = (
            kubeconfig is None
            and not os.environ.get("KUBECONFIG")
            and not Path("~/.kube/config").expanduser().exists()
            and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        )
        return cls(
            kubeconfig_module.in_cluster(serviceaccount_dir)
            if in_cluster
            else kubeconfig_module.from_kubeconfig(kubeconfig, context=context),
            timeout=timeout,
            concurrency=concurrency,
            limiter=TokenBucket(qps, burst),
            observer=observer,
        )

    @property
    def server(self) -> str:
        return self._endpoint.server

    def close(self) -> None:
        self._pool.clear()

    # --- raw requests ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: object = None,
        content_type: str = "application/json",
        what: str | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> Object:
        for attempt in range(_THROTTLE_RETRIES + 1):
            response = self._send(
                method, path, query=query, body=body, content_type=content_type, timeout=timeout
            )
            if response.status != 429 or attempt == _THROTTLE_RETRIES:
                break
            # 429: the server did not process the request (priority and fairness, or a
            # watch cache still initialising); it says when to come back, to everyone
            # sending through this client.
            response.drain_conn()
            response.release_conn()
            self._limiter.pause(_retry_after(response.headers.get("Retry-After")))
        apply = content_type == _APPLY_PATCH
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnavailableError(f"{method} {path}: {exc}") from exc
        finally:
            response.release_conn()
        if not 200 <= response.status < 300:
            raise _error_from_status(
                response.status, what=what or f"{method} {path}", body=data, apply=apply
            )
        if not data:
            return {}
        result = orjson.loads(data)
        return result if isinstance(result, dict) else {"items": result}

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None,
        body: object,
        content_type: str,
        timeout: tuple[float, float] | None,
    ) -> urllib3.BaseHTTPResponse:
        headers = {
            "Accept": "application/json",
            "Content-Type": content_type,
            "User-Agent": _USER_AGENT,
        }
        query_params = [
            (key, str(value).lower() if isinstance(value, bool) else str(value))
            for key, value in (query or {}).items()
        ]
        payload = None if body is None else orjson.dumps(body)
        connect, read = timeout or self._timeout
        self._limiter.acquire()
        with self._count_lock:  # += on a Counter is a read and a write: racing, it loses counts
            self.requests[method] += 1
        url = self._endpoint.server + path
        if query_params:
            url += "?" + urlencode(query_params)
        credentials = self._endpoint.credentials
        try:
            sent = credentials.headers()
            headers.update(sent)
            response: urllib3.BaseHTTPResponse = self._pool.request(
                method,
                url,
                body=payload,
                headers=headers,
                timeout=urllib3.Timeout(connect=connect, read=read),
                preload_content=False,
                retries=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self._observer is not None:
                self._observer(method, None)
            raise ApiUnavailableError(f"{method} {path}: {exc}") from exc
        if self._observer is not None:
            self._observer(method, response.status)
        if response.status == 401:
            credentials.rejected(sent)  # the next request reads or runs its source again
        return response

    # --- discovery ------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource:
        """Find a kind's plural and scope by discovery (cached per group/version)."""
        key = (api_version, kind)
        # One lookup, not a test then a read: forget_discovery may clear in between.
        if (found := self._resources.get(key)) is not None:
            return found
        with self._discovery_lock:
            # A group version discovered once is not asked again for a kind it lacks
            # (a sync looks for TFJob and PyTorchJob where kubeflow.org is not served).
            if (found := self._resources.get(key)) is None and api_version not in self._discovered:
                self._discover(api_version)
                self._discovered.add(api_version)
                found = self._resources.get(key)
        if found is None:
            raise NotFoundError(f"the API server does not serve {kind} in {api_version}")
        return found

    def forget_discovery(self) -> None:
        """Drop cached discovery (new CRDs may have been installed)."""
        with self._discovery_lock:
            self._resources.clear()
            self._discovered.clear()

    def _discover(self, api_version: str) -> None:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            listing = self.request("GET", path)
        except NotFoundError:
            return
        for entry in listing.get("resources", []):
            if "/" in entry.get("name", ""):  # a subresource such as pods/status
                continue
            self._resources[(api_version, entry["kind"])] = Resource(
                api_version=api_version,
                kind=entry["kind"],
                plural=entry["name"],
                namespaced=bool(entry.get("namespaced")),
            )

    def _resource_of(self, obj: Mapping[str, Any]) -> Resource:
        return self.resource(str(obj.get("apiVersion")), str(obj.get("kind")))

    # --- object verbs ---------------------------------------------------------------

    def get(
        self, api_version: str, kind: str, name: str, *, namespace: str | None = None
    ) -> Object | None:
        """The live object, or None when it does not exist."""
        resource = self.resource(api_version, kind)
        try:
            return self.request("GET", resource.path(namespace=namespace, name=name))
        except NotFoundError:
            return None

    def list(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> Object:
        """The raw list (``items`` and ``metadata.resourceVersion`` for a later watch)."""
        resource = self.resource(api_version, kind)
        query: dict[str, str | int | bool] = {}
        if label_selector:
            query["labelSelector"] = label_selector
        return self.request("GET", resource.path(namespace=namespace), query=query)

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        field_manager: str,
        force: bool = False,
        dry_run: bool = False,
    ) -> Object:
        """Server-side apply ``obj``; returns the object as the server stored (or would)."""
        resource = self._resource_of(obj)
        metadata = obj.get("metadata") or {}
        query: dict[str, str | int | bool] = {"fieldManager": field_manager, "force": force}
        if dry_run:
            query["dryRun"] = "All"
        return self.request(
            "PATCH",
            resource.path(namespace=metadata.get("namespace"), name=metadata.get("name")),
            query=query,
            body=obj,
            content_type=_APPLY_PATCH,
            what=f"apply {obj.get('kind')} {metadata.get('namespace', '')}/{metadata.get('name')}",
        )

    def create(self, obj: Mapping[str, Any], *, field_manager: str | None = None) -> Object:
        resource = self._resource_of(obj)
        metadata = obj.get("metadata") or {}
        query: dict[str, str | int | bool] = {}
        if field_manager:
            query["fieldManager"] = field_manager
        return self.request(
            "POST",
            resource.path(namespace=metadata.get("namespace")),
            query=query,
            body=obj,
            what=f"create {obj.get('kind')} {metadata.get('namespace', '')}/{metadata.get('name')}",
        )

    def update(self, obj: Mapping[str, Any]) -> Object:
        """Replace ``obj`` (PUT). With ``metadata.resourceVersion`` set the write is
        conditional: :class:`ApiConflictError` (409) says someone changed it first."""
        resource = self._resource_of(obj)
        metadata = obj.get("metadata") or {}
        return self.request(
            "PUT",
            resource.path(namespace=metadata.get("namespace"), name=metadata.get("name")),
            body=obj,
            what=f"update {obj.get('kind')} {metadata.get('namespace', '')}/{metadata.get('name')}",
        )

    def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        *,
        namespace: str | None,
        status: Mapping[str, Any],
        field_manager: str,
    ) -> Object:
        """Merge-patch the ``status`` subresource, as controllers do."""
        resource = self.resource(api_version, kind)
        return self.request(
            "PATCH",
            resource.path(namespace=namespace, name=name) + "/status",
            query={"fieldManager": field_manager},
            body={"status": status},
            content_type=_MERGE_PATCH,
            what=f"status of {kind} {namespace or ''}/{name}",
        )

    def annotate(
        self,
        api_version: str,
        kind: str,
        name: str,
        *,
        namespace: str | None,
        annotations: Mapping[str, str | None],
        field_manager: str,
    ) -> Object:
        """Merge-patch annotations (None removes one) without touching anything else."""
        resource = self.resource(api_version, kind)
        return self.request(
            "PATCH",
            resource.path(namespace=namespace, name=name),
            query={"fieldManager": field_manager},
            body={"metadata": {"annotations": dict(annotations)}},
            content_type=_MERGE_PATCH,
            what=f"annotate {kind} {namespace or ''}/{name}",
        )

    def delete(
        self, api_version: str, kind: str, name: str, *, namespace: str | None = None
    ) -> bool:
        """Delete; False when it was already gone.

        Background propagation: foreground deletion waits on the garbage collector,
        which lives in kube-controller-manager and may not run (the local control
        plane has none), leaving the object stuck with a deletionTimestamp.
        """
        resource = self.resource(api_version, kind)
        try:
            self.request(
                "DELETE",
                resource.path(namespace=namespace, name=name),
                body={"propagationPolicy": "Background"},
            )
        except NotFoundError:
            return False
        return True

    def watch(
        self,
        api_version: str,
        kind: str,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[WatchEvent]:
        """Stream changes after ``resource_version``, bookmarks included.

        Ends when the server closes the watch (after ``timeout_seconds``); raises
        :class:`WatchExpiredError` when the version is too old: re-list then.
        """
        resource = self.resource(api_version, kind)
        query: dict[str, str | int | bool] = {
            "watch": True,
            "allowWatchBookmarks": True,
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
        }
        if label_selector:
            query["labelSelector"] = label_selector
        path = resource.path(namespace=namespace)
        # The read timeout outlasts the server-side timeout, so a dead server cannot
        # hang the watch forever while a quiet one is not mistaken for dead.
        response = self._send(
            "GET",
            path,
            query=query,
            body=None,
            content_type="application/json",
            timeout=(self._timeout[0], timeout_seconds + 30.0),
        )
        if not 200 <= response.status < 300:
            raise _error_from_status(response.status, what=f"watch {path}", body=response.read())
        try:
            buffer = b""
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield self._watch_event(line, path)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnavailableError(f"watch {path}: {exc}") from exc
        finally:
            response.release_conn()

    @staticmethod
    def _watch_event(line: bytes, path: str) -> WatchEvent:
        event = orjson.loads(line)
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":
            code = int(obj.get("code") or 500)
            raise _error_from_status(code, what=f"watch {path}", body=orjson.dumps(obj))
        return WatchEvent(type=str(event.get("type")), object=obj)


# --- informer ---------------------------------------------------------------------------

_WATCH_TIMEOUT_S: Final = 240
#: After a failed list, watch or write: 0.5 s doubling to 30 s, jittered so that the
#: informers of one process (and of many) do not reconnect in lockstep.
RETRY_BACKOFF: Final = Backoff(base=0.5, max=30.0, jitter=0.5)


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _newer_or_same(candidate: str, current: str) -> bool:
    """Whether ``candidate`` is not older than ``current``.

    Resource versions are opaque to clients in general, but etcd-backed API servers
    hand out increasing integers; comparing them keeps a watch event that was already
    in flight from overwriting a fresher object a write of ours returned. When they
    are not integers, the latest arrival wins.
    """
    try:
        return int(candidate) >= int(current)
    except ValueError:
        return True


class Informer:
    """A local copy of every object of one kind, kept current by list + watch.

    What client-go calls an informer: one list, then a watch from its resource
    version with bookmarks; a 410 (version too old) lists again, and an unreachable
    server is retried with backoff (cut short by :meth:`kick`), by listing again. A
    429 (throttled, or a starting server's "storage is initializing") is waited out
    without setting :attr:`error`: it is no failure. ``on_change(id, obj)`` is called
    for every object that appeared or changed and with ``None`` for one that went
    away; ``version``
    counts those changes, so a caller can tell at no cost whether anything moved
    since it last looked. Cached objects come without ``metadata.managedFields``.
    """

    def __init__(
        self,
        kube: KubeClient,
        *,
        api_version: str,
        kind: str,
        label_selector: str | None = None,
        on_change: Callable[[ObjectRef, Object | None], None] | None = None,
    ) -> None:
        self.api_version = api_version
        self.kind = kind
        self._kube = kube
        self._selector = label_selector
        self._on_change = on_change
        self._objects: dict[ObjectRef, Object] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self.version = 0
        #: Why the cache may be stale (None once a list succeeded since).
        self.error: GitsyncError | None = None
        #: Failed (or throttled) attempts in a row.
        self.failures = 0

    def _ref(self, obj: Mapping[str, Any]) -> ObjectRef:
        # Listed items come without apiVersion and kind: the informer knows both.
        metadata = obj.get("metadata") or {}
        return ObjectRef(
            self.api_version.rpartition("/")[0],
            self.kind,
            str(metadata.get("namespace") or ""),
            str(metadata.get("name") or ""),
        )

    def start(self) -> None:
        # A daemon thread: a watch blocks in a socket read that nothing interrupts, and
        # shutting down must not wait for the server to end it.
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wait_synced(self, timeout: float) -> bool:
        """True once the first list has been loaded."""
        return self._synced.wait(timeout)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def snapshot(self) -> dict[ObjectRef, Object]:
        with self._lock:
            return dict(self._objects)

    def get(self, key: ObjectRef) -> Object | None:
        with self._lock:
            return self._objects.get(key)

    def remember(self, obj: Object) -> None:
        """Record an object a write of ours returned, unless a newer one is known."""
        self._store(obj, notify=False)

    def kick(self) -> None:
        """Retry now if waiting after a failure: a cycle needs the objects now, and
        the server may be back long before the backoff runs out."""
        self._wake.set()

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._relist()
                    self.failures = 0
                for event in self._kube.watch(
                    self.api_version,
                    self.kind,
                    resource_version=version,
                    label_selector=self._selector,
                    timeout_seconds=_WATCH_TIMEOUT_S,
                ):
                    if self._stop.is_set():
                        return
                    version = self._observe(event) or version
                self.failures = 0
            except WatchExpiredError:
                version = None
            except ApiThrottledError as exc:
                # A starting server answers 429 until its watch cache is filled: wait,
                # quietly, without calling that a failure; the cache is as current as
                # it was, and a watch from the same version misses nothing.
                self.failures += 1
                log.debug("watch throttled", kind=self.kind, error=str(exc))
                self._pause()
            except GitsyncError as exc:
                self.failures += 1
                # A kind that stays unserved (no CRD) is said once, not at every retry.
                unserved = isinstance(exc, NotFoundError) and isinstance(self.error, NotFoundError)
                self.error = exc
                (log.debug if unserved else log.warning)(
                    "watch interrupted", kind=self.kind, error=str(exc)
                )
                if isinstance(exc, NotFoundError):
                    # The kind is not served (yet): its CRD may be installed later.
                    self._kube.forget_discovery()
                # Events may have been missed, and a re-established watch would say
                # nothing until the next one: list again, which clears the error.
                version = None
                self._pause()

    def _pause(self) -> None:
        """Wait out the backoff after ``failures`` failures, or until kicked or stopped."""
        self._wake.wait(RETRY_BACKOFF.delay(self.failures, random.random()))  # noqa: S311
        self._wake.clear()

    def _relist(self) -> str:
        listing = self._kube.list(self.api_version, self.kind, label_selector=self._selector)
        items = [item for item in listing.get("items") or [] if isinstance(item, dict)]
        for item in items:
            item.setdefault("apiVersion", self.api_version)
            item.setdefault("kind", self.kind)
        seen = {self._ref(item) for item in items}
        with self._lock:
            gone = set(self._objects) - seen
            for key in gone:
                del self._objects[key]
            if gone:
                self.version += 1
        for key in gone:
            self._notify(key, None)
        for item in items:
            self._store(item, notify=True)
        self._synced.set()
        self.error = None
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    def _observe(self, event: WatchEvent) -> str | None:
        obj = event.object
        version = resource_version(obj) or None
        if event.type == "BOOKMARK":
            return version
        obj.setdefault("apiVersion", self.api_version)
        obj.setdefault("kind", self.kind)
        if event.type == "DELETED":
            key = self._ref(obj)
            with self._lock:
                removed = self._objects.pop(key, None) is not None
                if removed:
                    self.version += 1
            if removed:
                self._notify(key, None)
            return version
        self._store(obj, notify=True)
        return version

    def _store(self, obj: Object, *, notify: bool) -> None:
        # managedFields mirrors every field of the object and is rarely read: dropping
        # it, as controller-runtime's caches do, halves what thousands of objects cost.
        (obj.get("metadata") or {}).pop("managedFields", None)
        key = self._ref(obj)
        with self._lock:
            cached = self._objects.get(key)
            if cached is not None and not _newer_or_same(
                resource_version(obj), resource_version(cached)
            ):
                return
            changed = cached is None or resource_version(cached) != resource_version(obj)
            self._objects[key] = obj
            if changed:
                self.version += 1
        if notify and changed:
            self._notify(key, obj)

    def _notify(self, key: ObjectRef, obj: Object | None) -> None:
        if self._on_change is not None:
            self._on_change(key, obj)
