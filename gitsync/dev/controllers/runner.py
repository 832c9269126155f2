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
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import structlog

from gitsync.clients.kube import RETRY_BACKOFF, Informer, KubeClient, resource_version
from gitsync.errors import ApiInvalidError, GitsyncError, NotFoundError, TransientError
from gitsync.types import ObjectRef

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

Object = dict[str, Any]

log = structlog.get_logger("gitsync.dev.controllers")


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


def earliest(first: datetime, second: datetime | None) -> datetime:
    return first if second is None else min(first, second)


def find_condition(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The condition of type ``kind`` in a status's list, if any (one per type, as both
    the operators and apimachinery keep them)."""
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == kind), None)


def condition_true(conditions: list[dict[str, Any]], kind: str) -> bool:
    condition = find_condition(conditions, kind)
    return condition is not None and condition.get("status") == "True"


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


def _name(key: ObjectRef) -> str:
    """``namespace/name`` as kubectl writes it (just ``name`` when cluster-scoped)."""
    return f"{key.namespace}/{key.name}" if key.namespace else key.name


# --- the delaying work queue ----------------------------------------------------------


class DelayQueue:
    """Keys that are due now or at a later time; each key is held once, at its earliest time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._due: dict[ObjectRef, float] = {}
        self._heap: list[tuple[float, ObjectRef]] = []
        self._closed = False

    def add(self, key: ObjectRef, at: float | None = None) -> None:
        when = self._clock() if at is None else at
        with self._cond:
            if key in self._due and self._due[key] <= when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._cond.notify()

    def forget(self, key: ObjectRef) -> None:
        with self._cond:
            self._due.pop(key, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self) -> ObjectRef | None:
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
        self._queue = DelayQueue()
        self._informer = Informer(
            kube, api_version=api_version, kind=kind, on_change=self._on_change
        )
        self._failures: dict[ObjectRef, int] = {}
        # (resourceVersion, patch digest) per key whose write must not be repeated
        # until the object changes: the server rejected it, or stored something else.
        self._held: dict[ObjectRef, tuple[str, str]] = {}
        self._notes: dict[ObjectRef, str] = {}
        self._threads: list[threading.Thread] = []

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._informer.start()
        worker = threading.Thread(target=self._work_loop, name=f"{self.kind}-worker", daemon=True)
        worker.start()
        self._threads.append(worker)

    def stop(self) -> None:
        self._informer.stop()
        self._queue.close()

    def objects(self) -> list[Object]:
        """The cached objects, for read-only views such as the synthetic metrics."""
        return list(self._informer.snapshot().values())

    def join(self, timeout: float) -> None:
        """Wait (up to ``timeout`` in all) for the worker to finish its current object."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.name.endswith("-worker"):
                thread.join(max(0.0, deadline - time.monotonic()))

    # --- watching ---------------------------------------------------------------------

    def _on_change(self, key: ObjectRef, obj: Object | None) -> None:
        if obj is None:
            self._forget(key)
        else:
            self._queue.add(key)

    def _forget(self, key: ObjectRef) -> None:
        self._failures.pop(key, None)
        self._held.pop(key, None)
        self._notes.pop(key, None)
        self._queue.forget(key)

    # --- reconciling ------------------------------------------------------------------

    def _work_loop(self) -> None:
        while (key := self._queue.get()) is not None:
            self._process(key)

    def _process(self, key: ObjectRef) -> None:
        obj = self._informer.get(key)
        if obj is None:
            return
        try:
            outcome = self._reconcile(obj, self._clock())
        except Exception:
            # One malformed object must not stop the others; it is retried when it changes.
            log.exception("reconcile failed", kind=self.kind, object=_name(key))
            return
        if outcome.note and self._notes.get(key) != outcome.note:
            self._notes[key] = outcome.note
            log.info(outcome.note, kind=self.kind, object=_name(key))
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
        self, key: ObjectRef, obj: Object, status: dict[str, Any], outcome: Outcome
    ) -> bool | None:
        """Patch the status: True when written, False when there was nothing to write,
        None when the object is not to be looked at again until it changes."""
        patch = merge_patch(obj.get("status") or {}, status)
        if not patch:
            return False
        hold = (resource_version(obj), _digest(patch))
        if self._held.get(key) == hold:
            return False
        try:
            written = self._kube.patch_status(
                self._api_version,
                self.kind,
                key.name,
                namespace=key.namespace or None,
                status=patch,
                field_manager=self._field_manager,
            )
        except NotFoundError:
            self._forget(key)
            return None
        except ApiInvalidError as exc:
            self._held[key] = hold
            # A bug in the simulator, not in the object: say so, do not retry it blindly.
            log.error(  # noqa: TRY400 - the API server's message is the whole story
                "status rejected", kind=self.kind, object=_name(key), error=str(exc)
            )
            return None
        except GitsyncError as exc:
            self._retry_later(key, exc)
            return None
        self._failures.pop(key, None)
        self._informer.remember(written)
        stored = written.get("status") or {}
        if difference := merge_patch(stored, status):
            # The next reconcile would ask for exactly this difference again.
            self._held[key] = (resource_version(written), _digest(difference))
            log.warning(
                "the server stored a different status; not rewriting it",
                kind=self.kind,
                object=_name(key),
                fields=sorted(difference),
            )
        if outcome.transitions:
            log.info("; ".join(outcome.transitions), kind=self.kind, object=_name(key))
        return True

    def _retry_later(self, key: ObjectRef, exc: GitsyncError) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = RETRY_BACKOFF.delay(failures, random.random())  # noqa: S311 - jitter
        report = log.warning if isinstance(exc, TransientError) else log.error
        report(
            "status write failed",
            kind=self.kind,
            object=_name(key),
            error=str(exc),
            retry_in_s=round(delay, 1),
        )
        self._queue.add(key, time.time() + delay)
