"""The leader election loop: read the Lease, let :mod:`gitsync.leader` decide, write.

``gitsync run --leader-elect`` runs one :class:`LeaderElector` on a thread of its
own. The daemon asks it :attr:`LeaderElector.is_leader` before each cycle and the
cycle asks :meth:`LeaderElector.may_write` before each write, so a cycle that
outlives its leadership starts no new apply or push. Both answers come from the
clock (``renew_deadline`` after the last successful renewal was sent), not from the
loop's progress: a renewal hanging on a paused API server cannot extend them.

Listeners (the HTTP listener's ``gitsync_leader`` gauge and its "healthy standby"
readiness) register with :meth:`LeaderElector.on_change`.

A replica that loses the Lease it held does not try to win it back: ``gitsync run``
exits (as client-go's controllers do on ``OnStoppedLeading``), and its pod restarts as
a standby with fresh state. Staying on could race the standby that is taking over,
both judging the same record after an outage, with caches from before it.

The Lease goes through a client of its own (one connection, short timeouts, its own
rate limiter): renewals must not queue behind a thousand applies in the shared
client's token bucket, nor wait out its 30 s read timeout.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from gitsync.clients.kube import KubeClient
from gitsync.errors import ApiConflictError, GitsyncError
from gitsync.leader import (
    ANNOTATION_LEADER_URL,
    JITTER,
    LEASE_API,
    Action,
    LeaseRecord,
    Timings,
    decide,
    lease_object,
    released,
)

__all__ = ["LeaderElector", "default_identity"]

log = structlog.get_logger(__name__)


def default_identity() -> str:
    """The pod's name (its hostname in a cluster) and a random suffix, as client-go's
    callers do: a restarted pod must not inherit its predecessor's leadership."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    """Holds, or waits for, one Lease; see the module docstring."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        timings: Timings,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        leader_url: str | None = None,
    ) -> None:
        """``leader_url`` is where this replica's listener answers: written on the
        Lease while it leads, so standbys can hand it the push hooks they receive."""
        self.namespace = namespace
        self._leader_url = leader_url
        self.name = name
        self.identity = identity
        self.timings = timings
        #: The Lease's own client (the caller closes it once the elector has stopped).
        self.kube = kube
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[bool], None]] = []
        #: The Lease as last read or written, and when (our clock) its record last changed.
        self._lease: dict[str, Any] | None = None
        self._record: LeaseRecord | None = None
        self._changed_at = clock()
        #: When writing stops being allowed: renew_deadline after the last renewal's send.
        self._deadline = float("-inf")
        self._leading = False
        #: Set once this replica led and then stopped leading other than by :meth:`stop`.
        self.lost = False

    # --- what the daemon, the cycle and the listener read ------------------------------

    @property
    def is_leader(self) -> bool:
        return self.may_write()

    def may_write(self) -> bool:
        """Whether a write may start now: the Lease is ours and was renewed recently."""
        with self._lock:
            return self._leading and self._clock() < self._deadline

    @property
    def holder(self) -> str:
        """Who holds the Lease as last read ("" when nobody or unknown)."""
        with self._lock:
            return self._record.holder if self._record is not None else ""

    @property
    def leader_url(self) -> str | None:
        """Where the holder (another replica) said its listener answers, if it did."""
        with self._lock:
            if self._record is None or self._record.holder in ("", self.identity):
                return None
            metadata = (self._lease or {}).get("metadata") or {}
            url = (metadata.get("annotations") or {}).get(ANNOTATION_LEADER_URL)
            return url if isinstance(url, str) else None

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(is_leader)`` on the election thread whenever that changes."""
        self._listeners.append(listener)

    # --- the loop ----------------------------------------------------------------------

    def start(self) -> None:
        # A daemon thread: a request hanging on a paused server must not hold up exit.
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool) -> None:
        """Stop trying; with ``release``, give the Lease up if we hold it, so a standby
        takes over at its next try instead of a lease duration later. Call only once
        nothing guarded by the Lease runs any more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timings.renew_deadline)
        was_leading = self._set_leading(leading=False)
        if release and was_leading:
            self._release()

    def _run(self) -> None:
        log.info(
            "leader election started",
            lease=f"{self.namespace}/{self.name}",
            identity=self.identity,
        )
        # After a loss the process exits (see above): it must not win the Lease back
        # while the cycle it was running winds down.
        while not self._stop.is_set() and not self.lost:
            # Said on time even when the try before hung until its timeout.
            self._expire()
            self.try_once()
            self._stop.wait(self._pause())

    def _pause(self) -> float:
        period = self.timings.retry_period
        with self._lock:
            if self._leading:
                # No jitter for the holder (client-go's renew loop), and wake in time to
                # say it lost the Lease when the deadline passes unrenewed.
                return max(0.0, min(period, self._deadline - self._clock()))
        return period * (1 + JITTER * random.random())  # noqa: S311 - spreading, not secrecy

    def try_once(self) -> Action | None:
        """One round: read the Lease, decide, write; the action taken (None when the
        Lease could not be read or written)."""
        try:
            current = self.kube.get(LEASE_API, "Lease", self.name, namespace=self.namespace)
        except GitsyncError as exc:
            log.warning("lease not read", lease=self.name, error=str(exc))
            self._expire()
            return None
        # A read that came back after the deadline must not renew: past it, this replica
        # has stopped leading (and exits), as when the read had failed.
        self._expire()
        if self.lost:
            return Action.LOST
        observed = None if current is None else LeaseRecord.of(current)
        with self._lock:
            if observed != self._record:
                self._changed_at = self._clock()
            self._lease, self._record = current, observed
            seen_for = self._clock() - self._changed_at
            leading = self._leading
        verdict = decide(
            observed,
            identity=self.identity,
            lease_duration=self.timings.lease_duration,
            now=self._wall(),
            seen_for=seen_for,
            leading=leading,
        )
        if not verdict.action.writes or verdict.record is None:
            if verdict.action is Action.LOST:
                log.warning("leadership lost", lease=self.name, holder=verdict.holder)
            self._set_leading(leading=False)
            return verdict.action
        sent = self._clock()
        body = lease_object(
            verdict.record,
            name=self.name,
            namespace=self.namespace,
            current=current,
            leader_url=self._leader_url,
        )
        try:
            stored = self.kube.create(body) if current is None else self.kube.update(body)
        except ApiConflictError:
            # Someone else wrote the Lease since we read it: they won this round.
            self._expire()
            return Action.WAIT
        except GitsyncError as exc:
            log.warning("lease not written", lease=self.name, error=str(exc))
            self._expire()
            return None
        with self._lock:
            self._lease, self._record = stored, LeaseRecord.of(stored)
            self._changed_at = self._clock()
            self._deadline = sent + self.timings.renew_deadline
        if self._set_leading(leading=True) is False:
            log.info(
                "leading", lease=self.name, identity=self.identity, action=verdict.action.value
            )
        return verdict.action

    def _expire(self) -> None:
        """Lose the lead once the renew deadline has passed unrenewed."""
        with self._lock:
            over = self._leading and self._clock() >= self._deadline
        if over:
            log.warning("lease not renewed by the deadline: standing by", lease=self.name)
            self._set_leading(leading=False)

    def _set_leading(self, *, leading: bool) -> bool:
        """Set whether we lead; what it was. Listeners hear of a change."""
        with self._lock:
            before, self._leading = self._leading, leading
            if before and not leading and not self._stop.is_set():
                self.lost = True
        if before != leading:
            for listener in self._listeners:
                listener(leading)
        return before

    def _release(self) -> None:
        with self._lock:
            current, record = self._lease, self._record
        if current is None or record is None or record.holder != self.identity:
            return
        body = lease_object(
            released(record, now=self._wall()),
            name=self.name,
            namespace=self.namespace,
            current=current,
        )
        try:
            self.kube.update(body)
        except GitsyncError as exc:
            # A standby then takes over when the lease expires, as after a crash.
            log.warning("lease not released", lease=self.name, error=str(exc))
            return
        log.info("lease released", lease=self.name)
