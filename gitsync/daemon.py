"""``gitsync run``: reconcile on an interval until told to stop, pacing by each result.

Each cycle ends in a :class:`~gitsync.result.CycleResult`, and the wait before the
next one follows from it alone:

* succeeded: the interval plus up to ``jitter`` seconds (so many instances do not
  poll one remote in lockstep), or the cycle's ``requeue_after`` when sooner;
* requeue (something transient failed: the API server or the git remote away): a
  backoff from an eighth of the interval, doubling, but never past the interval
  itself, or the cycle's ``requeue_after``;
* stalled waiting for a commit (a broken spec): the interval, since the next commit
  may fix it and retrying sooner cannot;
* stalled for the operator (credentials, RBAC, configuration): backoff from the
  interval up to ``max_backoff``, still retrying so a fixed setup is picked up
  without a restart;
* an exception escaping the cycle: a gitsync error is judged by its remedy like a
  result; anything else is a bug, logged with its traceback and backed off like a
  stall (retrying a bug every interval would only repeat its traceback).

Why a transient fault backs off no further than the interval: the point of backing
off is to spare a sick dependency, but a healthy daemon already calls on both once
per interval, so retrying as often costs them nothing new, while every second past
the interval is a second a change pushed during the outage waits after it ends (a
20 s API-server outage with waits doubling to 64 s put a change live 40 s after the
server was back). Capped, a change goes live at most one interval after recovery;
the jitter (waits cut by up to half) still keeps many instances apart. Waking early
when the dependency is back was the alternative; it would need every client to
report "healthy again" up to the daemon, and the cap alone gives the same bound.

Why a plain loop and not APScheduler: with cron arithmetic done by cronsim, all the
scheduler still did was an interval with jitter, ``max_instances=1`` and
``coalesce``, while the delay now depends on the last result, which an interval
trigger cannot express without rescheduling the job from inside itself. One thread
calling the cycle then waiting on a :class:`threading.Event` gives the same
guarantees by construction (never two cycles at once, nothing to catch up) and one
dependency fewer. SIGTERM and SIGINT set the event: the running cycle finishes,
then the daemon stops (and says so only then: a signal handler must not log).

With leader election (``leading``), a replica that does not hold the Lease runs no
cycle at all: it looks at the (local, free) answer every quarter of a second, so it
starts its first cycle within that once it becomes the leader.

:meth:`Daemon.wake` (a push webhook) cuts the wait short through a second event.
Wakes coalesce by construction: any number of them during a cycle leave the event
set once, so one more cycle runs, and the loop is still the only caller of the
cycle. The loop also keeps a :class:`~gitsync.telemetry.Progress` for the probes:
it promises its next sign of life within the delay it chose plus ``cycle_timeout``
(a standby's too, so its liveness probe passes while it waits).
"""

from __future__ import annotations

import gc
import random
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Protocol

import structlog

from gitsync.backoff import Backoff
from gitsync.errors import ConfigurationError, GitsyncError, Remedy
from gitsync.result import CycleResult, Outcome
from gitsync.telemetry import Progress

__all__ = ["Cycled", "Daemon"]

log = structlog.get_logger(__name__)

#: Retries run at most this much shorter than nominal, so instances that failed
#: together (a remote outage) spread out when they retry.
_BACKOFF_JITTER = 0.5
#: How often a standby looks whether it has become the leader.
_STANDBY_POLL = 0.25


class Cycled(Protocol):
    """What the daemon needs of a finished cycle (the reconciler's ``CycleReport``)."""

    @property
    def cycle_id(self) -> str: ...

    @property
    def result(self) -> CycleResult: ...


class Daemon:
    """Calls ``cycle`` every ``interval`` seconds, backing off while it fails."""

    def __init__(
        self,
        cycle: Callable[[], Cycled],
        *,
        interval: float,
        jitter: float,
        max_backoff: float = 600.0,
        cycle_timeout: float = 300.0,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        leading: Callable[[], bool] | None = None,
    ) -> None:
        """``cycle_timeout`` is how long a cycle may run before :attr:`progress` says
        the loop is stuck (gitsync does not cut a cycle short: the liveness probe's
        restart does)."""
        if interval <= 0 or jitter < 0 or cycle_timeout <= 0:
            raise ConfigurationError(
                "the interval and cycle timeout must be positive and the jitter not negative"
            )
        self._cycle = cycle
        self._interval = interval
        self._jitter = jitter
        self._transient = Backoff(
            base=interval / 8, factor=2.0, max=interval, jitter=_BACKOFF_JITTER
        )
        self._stalled = Backoff(
            base=interval, factor=2.0, max=max(max_backoff, interval), jitter=_BACKOFF_JITTER
        )
        self._rand = rand
        self._leading = leading
        self._failures = 0
        self._stop = threading.Event()
        #: Set by stop() too, so one wait serves both.
        self._wake = threading.Event()
        self._signal: signal.Signals | None = None
        self._cycle_timeout = cycle_timeout
        self._clock = clock
        self._progress = Progress(cycles=0, due_by=clock() + cycle_timeout)

    def run(self) -> None:
        """Block until SIGTERM or SIGINT; the cycle in progress finishes first."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        log.info("daemon started", interval_s=self._interval, jitter_s=self._jitter)
        warmed = False
        try:
            while not self._stop.is_set():
                # Cleared before the cycle: a wake during it runs one more cycle.
                self._wake.clear()
                delay = self.tick()
                if not warmed and self._progress.cycles:
                    # What the first cycle built (modules, informer caches, specs) lives
                    # as long as the daemon; left to the collector, each full collection
                    # walked it again: 101-140 ms pauses at 1,000 specs, landing in the
                    # cycle that applies a change. Frozen once, the longest was 26 ms.
                    gc.collect()
                    gc.freeze()
                    warmed = True
                self._wake.wait(delay)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._signal is not None:
            log.info("stopping", signal=self._signal.name)
        log.info("daemon stopped")

    def stop(self) -> None:
        """Stop after the cycle in progress, if any."""
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Run a cycle now, or right after the one in progress; thread-safe."""
        self._wake.set()

    @property
    def progress(self) -> Progress:
        """Where the loop stands, for the probes; safe to read from any thread."""
        return self._progress

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # No logging here: the handler runs on the main thread between two bytecodes,
        # possibly while that thread holds structlog's (non-reentrant) write lock.
        self._signal = signal.Signals(signum)
        self.stop()

    def tick(self) -> float:
        """Run one cycle; the seconds to wait before the next."""
        cycles = self._progress.cycles
        if self._leading is not None and not self._leading():
            delay = min(_STANDBY_POLL, self._interval)
            self._progress = Progress(
                cycles=cycles, due_by=self._clock() + delay + self._cycle_timeout
            )
            return delay
        cycle_id: str | None = None
        started = self._clock()
        self._progress = Progress(
            cycles=cycles, due_by=started + self._cycle_timeout, busy_since=started
        )
        try:
            report = self._cycle()
        except GitsyncError as exc:
            result = CycleResult.from_error(exc)
        except Exception as exc:  # the daemon outlives any bug in a cycle
            log.exception("cycle crashed")
            result = CycleResult.stalled(repr(exc))
        else:
            result, cycle_id = report.result, report.cycle_id
        delay = self._delay(result)
        self._progress = Progress(
            cycles=cycles + 1, due_by=self._clock() + delay + self._cycle_timeout
        )
        if result.outcome is not Outcome.SUCCEEDED:
            log.warning(
                "cycle did not succeed",
                cycle=cycle_id,
                outcome=result.outcome.value,
                reason=result.reason,
                remedy=result.remedy.value if result.remedy else None,
                failures=self._failures,
                retry_in_s=round(delay, 1),
            )
        return delay

    def _delay(self, result: CycleResult) -> float:
        """The wait after a cycle that ended in ``result``; counts failures in a row."""
        if result.outcome is Outcome.REQUEUE or (
            result.outcome is Outcome.STALLED and result.remedy is not Remedy.WAIT_FOR_COMMIT
        ):
            self._failures += 1
            if result.requeue_after is not None:
                return max(0.0, result.requeue_after)
            backoff = self._transient if result.remedy is Remedy.RETRY else self._stalled
            return backoff.delay(self._failures, self._rand())
        # A success ends an outage; so does a cycle that ran far enough to find a bad spec.
        self._failures = 0
        interval = self._interval + self._jitter * self._rand()
        if result.requeue_after is not None:
            return max(0.0, min(interval, result.requeue_after))
        return interval
