"""The I/O shell shared by the dev controllers: list + watch, a timer queue, status writes.

The simulators themselves are pure functions (see :class:`Outcome`); this module is
the part that talks to the API server. It is deliberately small and boring, in the
shape of a client-go controller: one thread lists and watches a kind into a cache and
enqueues keys, one worker thread takes due keys from a delaying queue, reconciles the
cached object and merge-patches its ``status`` subresource when the status changes.

These are simulators for development and tests only; nothing here runs in production.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from gitsync.clients.kube import KubeClient, WatchEvent
from gitsync.errors import (
    ApiInvalidError,
    GitsyncError,
    NotFoundError,
    TransientError,
    WatchExpiredError,
)

__all__ = [
    "FIELD_MANAGER",
    "Controller",
    "DelayQueue",
    "Outcome",
    "Reconciler",
    "format_precise",
    "format_time",
    "merge_patch",
    "parse_time",
    "seconds_annotation",
]

FIELD_MANAGER: Final = "gitsync-dev-controllers"

_WATCH_TIMEOUT_S: Final = 240
_BACKOFF_BASE_S: Final = 0.5
_BACKOFF_MAX_S: Final = 30.0

Key = tuple[str, str]  # (namespace, name)
Object = dict[str, Any]

log = logging.getLogger("gitsync.dev.controllers")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one reconcile of one object decided.

    ``status`` is the complete new status, or None when nothing changes; ``wake_at``
    is when a delayed transition falls due; ``transitions`` are log lines, written
    once the status write succeeded; ``note`` explains why an object is left alone.
    """

    status: dict[str, Any] | None = None
    wake_at: datetime | None = None
    transitions: tuple[str, ...] = ()
    note: str | None = None


Reconciler = Callable[[Mapping[str, Any], datetime], Outcome]


# --- time and annotations -----------------------------------------------------------


def format_time(moment: datetime) -> str:
    """RFC 3339 to the second, as ``metav1.Time`` serialises (what real controllers write)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_precise(moment: datetime) -> str:
    """RFC 3339 with microseconds, for the simulators' own sub-second bookkeeping."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: object) -> datetime | None:
    """A timezone-aware datetime from an RFC 3339 string, or None when absent or invalid."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_annotation(annotations: Mapping[str, Any], key: str, default: float) -> float:
    """A non-negative number of seconds from an annotation, else ``default``."""
    try:
        value = float(annotations[key])
    except (KeyError, TypeError, ValueError):
        return default
    return value if value >= 0 else default


# --- merge patches ------------------------------------------------------------------


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch turning ``old`` into ``new`` (empty when they are equal).

    Keys missing from ``new`` become nulls (a merge patch merges maps, so a plain
    subset would leave them in place); lists are replaced whole, as merge patch does.
    """
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = value
    return patch


def _digest(patch: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(patch, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _newer_or_same(candidate: str, current: str) -> bool:
    """Whether ``candidate`` is not older than ``current``.

    Resource versions are opaque to clients in general, but etcd-backed API servers
    hand out increasing integers; comparing them keeps a watch event that was already
    in flight from overwriting the fresher object our own status write returned. When
    they are not integers, the latest arrival wins.
    """
    try:
        return int(candidate) >= int(current)
    except ValueError:
        return True


def _key(obj: Mapping[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


# --- the delaying work queue ----------------------------------------------------------


class DelayQueue:
    """Keys that are due now or at a later time; each key is held once, at its earliest time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._closed = False

    def add(self, key: Key, at: float | None = None) -> None:
        when = self._clock() if at is None else at
        with self._cond:
            if key in self._due and self._due[key] <= when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._cond.notify()

    def forget(self, key: Key) -> None:
        with self._cond:
            self._due.pop(key, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self) -> Key | None:
        """The next due key, waiting as needed; None once the queue is closed."""
        with self._cond:
            while not self._closed:
                # Heap entries superseded by an earlier add or a forget are skipped here.
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                when, key = self._heap[0]
                delay = when - self._clock()
                if delay <= 0:
                    heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                self._cond.wait(delay)
            return None


# --- the controller -------------------------------------------------------------------


class Controller:
    """List + watch one kind, reconcile each object with a pure function, write status."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        api_version: str,
        kind: str,
        reconcile: Reconciler,
        field_manager: str = FIELD_MANAGER,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kind = kind
        self._kube = kube
        self._api_version = api_version
        self._reconcile = reconcile
        self._field_manager = field_manager
        self._clock = clock
        self._stop = threading.Event()
        self._queue = DelayQueue()
        self._lock = threading.Lock()
        self._cache: dict[Key, Object] = {}
        self._failures: dict[Key, int] = {}
        # (resourceVersion, patch digest) per key whose write must not be repeated
        # until the object changes: the server rejected it, or stored something else.
        self._held: dict[Key, tuple[str, str]] = {}
        self._notes: dict[Key, str] = {}
        self._threads: list[threading.Thread] = []

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        # Daemon threads: a watch blocks in a socket read that nothing can interrupt,
        # and shutdown must not wait for the server to end it.
        for target, role in ((self._watch_loop, "watch"), (self._work_loop, "worker")):
            thread = threading.Thread(target=target, name=f"{self.kind}-{role}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._queue.close()

    def join(self, timeout: float) -> None:
        """Wait (up to ``timeout`` in all) for the worker to finish its current object."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.name.endswith("-worker"):
                thread.join(max(0.0, deadline - time.monotonic()))

    # --- watching ---------------------------------------------------------------------

    def _watch_loop(self) -> None:
        resource_version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                    failures = 0
                for event in self._kube.watch(
                    self._api_version,
                    self.kind,
                    resource_version=resource_version,
                    timeout_seconds=_WATCH_TIMEOUT_S,
                ):
                    if self._stop.is_set():
                        return
                    resource_version = self._observe(event) or resource_version
                    failures = 0
            except WatchExpiredError:
                log.info("%s watch expired; listing again", self.kind)
                resource_version = None
            except NotFoundError as exc:
                # The CRD may not be installed (yet): look the kind up again later, and
                # say so once rather than at every retry.
                failures += 1
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG, "%s: %s", self.kind, exc
                )
                self._kube.forget_discovery()
                resource_version = None
                self._stop.wait(_backoff(failures))
            except TransientError as exc:
                # A freshly installed CRD answers 429 for a moment: only a second failure
                # in a row is worth a warning.
                failures += 1
                level = logging.INFO if failures == 1 else logging.WARNING
                log.log(level, "%s watch interrupted (%s); retrying", self.kind, exc)
                self._stop.wait(_backoff(failures))
            except GitsyncError as exc:
                failures += 1
                log.error("%s watch failed (%s); retrying", self.kind, exc)  # noqa: TRY400
                self._stop.wait(_backoff(failures))
            except Exception:
                # A simulator must outlive its own bugs: log, wait, list again.
                failures += 1
                log.exception("%s watch crashed; listing again", self.kind)
                resource_version = None
                self._stop.wait(_backoff(failures))

    def _relist(self) -> str:
        listing = self._kube.list(self._api_version, self.kind)
        items = [item for item in listing.get("items") or [] if isinstance(item, dict)]
        seen = {_key(item) for item in items}
        with self._lock:
            for key in set(self._cache) - seen:
                self._drop(key)
            for item in items:
                self._remember(item)
        for key in seen:
            self._queue.add(key)
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    def _observe(self, event: WatchEvent) -> str | None:
        obj = event.object
        version = _resource_version(obj) or None
        if event.type == "BOOKMARK":
            return version
        key = _key(obj)
        with self._lock:
            if event.type == "DELETED":
                self._drop(key)
                return version
            self._remember(obj)
        self._queue.add(key)
        return version

    def _remember(self, obj: Object) -> None:
        key = _key(obj)
        cached = self._cache.get(key)
        if cached is None or _newer_or_same(_resource_version(obj), _resource_version(cached)):
            self._cache[key] = obj

    def _drop(self, key: Key) -> None:
        self._cache.pop(key, None)
        self._failures.pop(key, None)
        self._held.pop(key, None)
        self._notes.pop(key, None)
        self._queue.forget(key)

    # --- reconciling ------------------------------------------------------------------

    def _work_loop(self) -> None:
        while (key := self._queue.get()) is not None:
            self._process(key)

    def _process(self, key: Key) -> None:
        with self._lock:
            obj = self._cache.get(key)
        if obj is None:
            return
        try:
            outcome = self._reconcile(obj, self._clock())
        except Exception:
            # One malformed object must not stop the others; it is retried when it changes.
            log.exception("%s %s/%s: reconcile failed", self.kind, *key)
            return
        if outcome.note and self._notes.get(key) != outcome.note:
            self._notes[key] = outcome.note
            log.info("%s %s/%s: %s", self.kind, key[0], key[1], outcome.note)
        wrote = False
        if outcome.status is not None:
            result = self._write(key, obj, outcome.status, outcome)
            if result is None:
                return
            wrote = result
        if outcome.wake_at is not None:
            when = outcome.wake_at.timestamp()
            if not wrote and when <= time.time():
                # Due now yet nothing changed: a simulator bug; do not spin on it.
                when = time.time() + 1.0
            self._queue.add(key, when)

    def _write(
        self, key: Key, obj: Object, status: dict[str, Any], outcome: Outcome
    ) -> bool | None:
        """Patch the status: True when written, False when there was nothing to write,
        None when the object is not to be looked at again until it changes."""
        patch = merge_patch(obj.get("status") or {}, status)
        if not patch:
            return False
        hold = (_resource_version(obj), _digest(patch))
        if self._held.get(key) == hold:
            return False
        try:
            written = self._kube.patch_status(
                self._api_version,
                self.kind,
                key[1],
                namespace=key[0] or None,
                status=patch,
                field_manager=self._field_manager,
            )
        except NotFoundError:
            with self._lock:
                self._drop(key)
            return None
        except ApiInvalidError as exc:
            self._held[key] = hold
            # A bug in the simulator, not in the object: say so, do not retry it blindly.
            log.error("%s %s/%s: status rejected: %s", self.kind, *key, exc)  # noqa: TRY400
            return None
        except GitsyncError as exc:
            self._retry_later(key, exc)
            return None
        self._failures.pop(key, None)
        with self._lock:
            self._remember(written)
        stored = written.get("status") or {}
        if difference := merge_patch(stored, status):
            # The next reconcile would ask for exactly this difference again.
            self._held[key] = (_resource_version(written), _digest(difference))
            log.warning(
                "%s %s/%s: the server stored a different status (fields %s); not rewriting it",
                self.kind,
                key[0],
                key[1],
                sorted(difference),
            )
        if outcome.transitions:
            log.info("%s %s/%s: %s", self.kind, key[0], key[1], "; ".join(outcome.transitions))
        return True

    def _retry_later(self, key: Key, exc: GitsyncError) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = _backoff(failures)
        level = logging.WARNING if isinstance(exc, TransientError) else logging.ERROR
        log.log(
            level, "%s %s/%s: status write failed (%s); retry in %.1fs", self.kind, *key, exc, delay
        )
        self._queue.add(key, time.time() + delay)


def _backoff(failures: int) -> float:
    return float(min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** max(0, failures - 1)))
