"""``gitsync run``: reconcile on a schedule until told to stop.

APScheduler 3 runs the cycle on an interval with jitter (so many instances do not
poll one remote in lockstep), never two at once (``max_instances=1``) and without
catching up missed runs (``coalesce``). A failing cycle never kills the daemon: a
transient failure backs off exponentially, anything else is logged and retried at
the next tick. SIGTERM and SIGINT stop it cleanly, after the running cycle ends.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

import structlog
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from gitsync.errors import GitsyncError, Remedy
from gitsync.reconciler import CycleReport

__all__ = ["Daemon"]

log = structlog.get_logger(__name__)


class Daemon:
    """Calls ``cycle`` every ``interval`` seconds, backing off while it fails."""

    def __init__(
        self,
        cycle: Callable[[], CycleReport],
        *,
        interval: float,
        jitter: float,
        max_backoff: float = 600.0,
    ) -> None:
        self._cycle = cycle
        self._interval = interval
        self._jitter = jitter
        self._max_backoff = max(max_backoff, interval)
        self._failures = 0
        self._not_before = 0.0
        self._running = threading.Lock()
        self._scheduler = BlockingScheduler(timezone=UTC)

    def run(self) -> None:
        """Block until SIGTERM or SIGINT; the cycle in progress finishes first."""
        self._scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=self._interval, jitter=self._jitter, timezone=UTC),
            id="reconcile",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        log.info("daemon started", interval_s=self._interval, jitter_s=self._jitter)
        try:
            self._scheduler.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        with self._running:  # wait for a cycle still in progress
            pass
        log.info("daemon stopped")

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        self._scheduler.shutdown(wait=False)

    def tick(self) -> None:
        """One scheduled run: a cycle, unless backing off after failures."""
        if time.monotonic() < self._not_before:
            return
        with self._running:
            try:
                report = self._cycle()
            except GitsyncError as exc:
                self._back_off(exc.remedy, str(exc))
                return
            except Exception as exc:  # the daemon outlives any bug in a cycle
                log.exception("cycle crashed")
                self._back_off(Remedy.RETRY, repr(exc))
                return
        self._failures = 0
        self._not_before = 0.0
        if report.failed:
            log.warning("cycle finished with failures", cycle=report.cycle_id)

    def _back_off(self, remedy: Remedy, error: str) -> None:
        self._failures += 1
        delay = min(self._interval * 2 ** (self._failures - 1), self._max_backoff)
        self._not_before = time.monotonic() + delay
        log.warning(
            "cycle could not run", error=error, remedy=remedy.value, retry_in_s=round(delay, 1)
        )
