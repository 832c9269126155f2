"""Post a cycle's Events (``events.k8s.io/v1``) to the API server, best-effort.

An Event is a courtesy to whoever looks at the cluster; the cycle's real record is
the status branch. So posting one must never fail a cycle or hold it up: the cycle
hands its Events over once it knows its statuses, and goes on to publish them while
a few worker threads post the Events, at most 1,000 queued (client-go's ``maxQueuedEvents``;
beyond it an Event is dropped and logged), each request with short timeouts, and a
failure is logged and forgotten, as client-go does with a rejected Event. A
one-shot ``gitsync sync`` waits a few seconds on :meth:`close` for the queue to
drain, so its Events land before the process ends.

Why several workers: a first sync of 1,000 objects tells 1,000 Events, and one
worker posting them a round trip at a time kept the process alive 2.4 s after its
work was done (bench/sync_process.py). Each Event goes to the worker its object
hashes to, so the Events of one object are posted (and stamped) in the order they
were told, and the repeats of one Event by the one worker that holds their series:
routed by the whole aggregation key, a cycle's RolloutStep could be stamped before
the Configured told a cycle earlier.

Repeats are aggregated as client-go's events broadcaster does
(k8s.io/client-go/tools/events): an Event like one posted within the last six
minutes (its ``finishTime``) is not a new object but the next count of that one's
``series``. Two differences, both deliberate. "Like" also takes in the note, as the
older core/v1 correlator (tools/record) does with the message: gitsync's notes carry
what happened (``canary 20% -> 60%``), which a series keeping only its first note
would hide, while a true repeat (the same drift reverted again) still counts. And
where client-go batches later counts into a heartbeat every 30 minutes, gitsync
patches each one at once: its Events come a few per cycle, not thousands a second,
and ``kubectl events`` then shows the count as it is.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog

from gitsync.clients.kube import KubeClient
from gitsync.errors import GitsyncError, NotFoundError
from gitsync.events import EventIntent

__all__ = ["REPORTING_CONTROLLER", "EventRecorder"]

log = structlog.get_logger(__name__)

REPORTING_CONTROLLER: Final = "gitsync.io/gitsync"
_API: Final = "events.k8s.io/v1"
_MERGE_PATCH: Final = "application/merge-patch+json"
_QUEUE_SIZE: Final = 1000
#: Workers posting at once, at most: half the client's writers, so Events posted while
#: the daemon's next cycle applies leave that cycle most of the connections.
_WORKERS: Final = 4
_SERIES_WINDOW: Final = timedelta(minutes=6)
#: An Event is not worth holding a worker up for long: connect, read.
_TIMEOUT: Final = (2.0, 5.0)
#: The API server caps reportingInstance at 128 characters.
_INSTANCE_LIMIT: Final = 128

_Key = tuple[str, str, str, str, tuple[tuple[str, str], ...]]


@dataclass(slots=True)
class _Series:
    namespace: str
    name: str
    count: int
    last: datetime


def _key(intent: EventIntent) -> _Key:
    """What makes two Events alike (see the module docstring)."""
    return (
        intent.type.value,
        intent.action.value,
        intent.reason.value,
        intent.note,
        tuple(sorted(intent.regarding.items())),
    )


def _forget_finished(all_series: dict[_Key, _Series], now: datetime) -> None:
    """Series not seen for six minutes are over: the next repeat is a new Event."""
    for key in [k for k, s in all_series.items() if now - s.last >= _SERIES_WINDOW]:
        del all_series[key]


def _micro_time(moment: datetime) -> str:
    """A MicroTime as the API server writes it: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class _Worker:
    """One posting thread, its queue, and the series of the objects hashed to it."""

    queue: queue.SimpleQueue[EventIntent | None]
    series: dict[_Key, _Series]
    thread: threading.Thread | None = None


class EventRecorder:
    """Posts Events on the objects one gitsync instance manages."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        reporting_instance: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        queue_size: int = _QUEUE_SIZE,
    ) -> None:
        self._kube = kube
        self._instance = reporting_instance[:_INSTANCE_LIMIT]
        self._clock = clock
        self._queue_size = queue_size
        self._workers = [
            _Worker(queue.SimpleQueue(), {})
            for _ in range(max(1, min(_WORKERS, kube.concurrency // 2)))
        ]
        self._lock = threading.Lock()
        #: Queued and not yet posted (or given up on), over all workers; flush waits
        #: for it to reach zero.
        self._pending = 0
        self._drained = threading.Condition(self._lock)
        #: Events posted (created or counted) and dropped or refused: for tests and logs.
        self.posted = 0
        self.failed = 0

    def record(self, intents: Iterable[EventIntent]) -> None:
        """Queue ``intents`` for posting; returns at once."""
        dropped = 0
        for intent in intents:
            with self._lock:
                if self._pending >= self._queue_size:
                    self.failed += 1
                    dropped += 1
                    continue
                self._pending += 1
            regarding = _key(intent)[-1]
            worker = self._workers[hash(regarding) % len(self._workers)]
            self._start(worker)
            worker.queue.put(intent)
        if dropped:
            # Once for them all: a first sync of 10,000 would log 9,000 lines.
            log.warning("events dropped: too many queued", dropped=dropped, queued=self._queue_size)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued Event to be posted (or given
        up on); False if some are still waiting."""
        with self._drained:
            return self._drained.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Post what is queued, for ``timeout`` seconds at most, and stop the workers."""
        started = [worker for worker in self._workers if worker.thread is not None]
        if not started:
            return
        if not self.flush(timeout):
            log.warning("events not posted before exit", queued=self._pending)
            return  # the workers are daemon threads: they die with the process
        for worker in started:
            worker.queue.put(None)
        for worker in started:
            assert worker.thread is not None  # noqa: S101 - only started ones are here
            worker.thread.join(timeout)
            worker.thread = None

    def _start(self, worker: _Worker) -> None:
        with self._lock:
            if worker.thread is None:
                worker.thread = threading.Thread(
                    target=self._run, args=(worker,), daemon=True, name="gitsync-events"
                )
                worker.thread.start()

    def _run(self, worker: _Worker) -> None:
        while (intent := worker.queue.get()) is not None:
            posted = False
            try:
                self._post(intent, worker.series)
                posted = True
            except GitsyncError as exc:
                log.warning(
                    "event not posted",
                    reason=intent.reason.value,
                    object=f"{intent.regarding.get('kind')} {intent.regarding.get('name')}",
                    error=str(exc),
                )
            finally:
                with self._drained:
                    self.posted += posted
                    self.failed += not posted
                    self._pending -= 1
                    if self._pending == 0:
                        self._drained.notify_all()

    def _post(self, intent: EventIntent, all_series: dict[_Key, _Series]) -> None:
        now = self._clock()
        key = _key(intent)
        series = all_series.get(key)
        if series is not None and now - series.last < _SERIES_WINDOW:
            series.count += 1
            series.last = now
            patch = {"series": {"count": series.count, "lastObservedTime": _micro_time(now)}}
            try:
                self._send("PATCH", series.namespace, series.name, patch)
            except NotFoundError:
                pass  # expired or deleted meanwhile: start a new Event, as client-go does
            else:
                return
        event = self._event(intent, now)
        created = self._send("POST", event["metadata"]["namespace"], None, event)
        metadata = created.get("metadata") or event["metadata"]
        all_series[key] = _Series(
            namespace=str(metadata["namespace"]), name=str(metadata["name"]), count=1, last=now
        )
        _forget_finished(all_series, now)

    def _event(self, intent: EventIntent, now: datetime) -> dict[str, Any]:
        regarding = intent.regarding
        # Like client-go: named after the object and the time, in the object's
        # namespace ("default" for a cluster-scoped one).
        name = f"{regarding['name']}.{int(now.timestamp() * 1e9):x}"
        return {
            "apiVersion": _API,
            "kind": "Event",
            "metadata": {"name": name, "namespace": regarding.get("namespace") or "default"},
            "eventTime": _micro_time(now),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self._instance,
            "action": intent.action.value,
            "reason": intent.reason.value,
            "type": intent.type.value,
            "regarding": dict(regarding),
            "note": intent.note,
        }

    def _send(self, method: str, namespace: str, name: str | None, body: object) -> dict[str, Any]:
        resource = self._kube.resource(_API, "Event")
        return self._kube.request(
            method,
            resource.path(namespace=namespace, name=name),
            body=body,
            content_type=_MERGE_PATCH if method == "PATCH" else "application/json",
            timeout=_TIMEOUT,
        )
