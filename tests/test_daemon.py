"""The daemon's pacing: each cycle's result decides the wait before the next.

The cycle function here is scripted: it is the daemon's own input (what a reconcile
cycle returns or raises), not a stand-in for an external system. Draws are fixed at
0.5, so the interval's jitter adds half of ``jitter`` and a backoff is 3/4 nominal.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from structlog.testing import capture_logs

from gitsync.daemon import Daemon
from gitsync.errors import ApiUnavailableError, ConfigurationError, GitsyncError, SpecError
from gitsync.result import CycleResult
from gitsync.telemetry import Progress, alive, ready

Step = CycleResult | Exception
OK = CycleResult.succeeded()
TRANSIENT = CycleResult.requeue("apiserver away")
BAD_SPEC = CycleResult.from_error(SpecError("spec invalid"))
SETUP = CycleResult.stalled("forbidden")


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished cycle as plain data: what the daemon reads of a CycleReport."""

    cycle_id: str
    result: CycleResult


def scripted(steps: Sequence[Step]) -> Callable[[], Finished]:
    todo = list(steps)

    def cycle() -> Finished:
        step = todo.pop(0)
        if isinstance(step, Exception):
            raise step
        return Finished(f"c{len(steps) - len(todo)}", step)

    return cycle


def delays(steps: Sequence[Step]) -> list[float]:
    daemon = Daemon(scripted(steps), interval=30.0, jitter=4.0, max_backoff=600.0, rand=lambda: 0.5)
    return [daemon.tick() for _ in steps]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([OK, OK], [32, 32], id="interval-plus-jitter"),
        pytest.param([CycleResult.succeeded(requeue_after=5)], [5], id="sooner-on-request"),
        pytest.param([CycleResult.succeeded(requeue_after=90)], [32], id="never-later"),
        pytest.param(
            [TRANSIENT] * 6, [2.8125, 5.625, 11.25, 22.5, 22.5, 22.5], id="requeue-up-to-interval"
        ),
        pytest.param([CycleResult.requeue("x", after=2)], [2], id="requeue-after"),
        pytest.param(
            [TRANSIENT, TRANSIENT, OK, TRANSIENT], [2.8125, 5.625, 32, 2.8125], id="reset"
        ),
        pytest.param([BAD_SPEC] * 3, [32, 32, 32], id="bad-spec-waits-for-a-commit"),
        pytest.param([TRANSIENT, BAD_SPEC, TRANSIENT], [2.8125, 32, 2.8125], id="spec-ends-outage"),
        pytest.param([SETUP] * 7, [22.5, 45, 90, 180, 360, 450, 450], id="setup-up-to-max"),
        pytest.param([ApiUnavailableError("down")] * 2, [2.8125, 5.625], id="transient-raised"),
        pytest.param([ConfigurationError("bad token")], [22.5], id="setup-raised"),
        pytest.param([SpecError("bad")], [32], id="spec-raised"),
        pytest.param([RuntimeError("bug"), RuntimeError("bug")], [22.5, 45], id="bug-backs-off"),
    ],
)
def test_delay_follows_the_result(steps: Sequence[Step], expected: Sequence[float]) -> None:
    assert delays(steps) == pytest.approx(expected)


@pytest.mark.parametrize("outage", [0.5, 20.0, 61.0, 3600.0])
@pytest.mark.parametrize("interval", [2.0, 30.0])
@pytest.mark.parametrize("draw", [0.0, 0.99])
def test_after_an_outage_the_first_success_is_at_most_an_interval_late(
    outage: float, interval: float, draw: float
) -> None:
    # A simulated clock: every cycle fails until the outage ends, then succeeds; the
    # time from recovery to the first success is what a change pushed meanwhile waits.
    now = 0.0

    def cycle() -> Finished:
        return Finished("c", TRANSIENT if now < outage else OK)

    daemon = Daemon(cycle, interval=interval, jitter=0.0, rand=lambda: draw)
    while True:
        ok = now >= outage
        wait = daemon.tick()
        if ok:
            break
        assert wait <= interval
        now += wait
    assert now - outage <= interval


def test_a_bug_is_logged_with_its_traceback() -> None:
    with capture_logs() as logs:
        delays([RuntimeError("bug")])
    crashed = [entry for entry in logs if entry["event"] == "cycle crashed"]
    assert crashed, logs
    assert crashed[0]["log_level"] == "error"
    assert crashed[0]["exc_info"] is True


def test_a_failed_cycle_says_why_and_when_it_retries() -> None:
    with capture_logs() as logs:
        delays([TRANSIENT])
    (entry,) = [entry for entry in logs if entry["event"] == "cycle did not succeed"]
    assert entry["cycle"] == "c1"
    assert entry["outcome"] == "Requeue"
    assert entry["reason"] == "apiserver away"
    assert entry["retry_in_s"] == 2.8


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_after_the_running_cycle(signum: int) -> None:
    calls: list[str] = []
    running = 0

    def cycle() -> Finished:
        nonlocal running
        running += 1
        assert running == 1, "two cycles at once"
        calls.append("started")
        if calls.count("started") == 3:
            os.kill(os.getpid(), signum)
        calls.append("finished")
        running -= 1
        return Finished("c", OK)

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    Daemon(cycle, interval=0.01, jitter=0.0).run()
    assert calls == ["started", "finished"] * 3
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_signal_cuts_the_wait_short() -> None:
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    started = time.monotonic()
    timer.start()
    try:
        Daemon(scripted([OK]), interval=60.0, jitter=0.0).run()
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5


def test_nonsense_pacing_is_a_configuration_error() -> None:
    with pytest.raises(GitsyncError, match="interval"):
        Daemon(scripted([]), interval=0, jitter=1)


def test_wakes_during_a_cycle_coalesce_into_one_more_cycle() -> None:
    """Many pushes while a cycle runs give exactly one more cycle, never two at once."""
    running = threading.Lock()
    entered = threading.Event()
    cycles: list[float] = []
    daemon: Daemon

    def cycle() -> Finished:
        assert running.acquire(blocking=False), "two cycles at once"
        try:
            cycles.append(time.monotonic())
            if len(cycles) == 1:
                entered.set()
                time.sleep(0.3)  # the pushes arrive while the first cycle runs
            return Finished(f"c{len(cycles)}", OK)
        finally:
            running.release()

    daemon = Daemon(cycle, interval=60.0, jitter=0.0)

    def push_storm() -> None:
        entered.wait(5)
        for _ in range(50):
            daemon.wake()
        time.sleep(1.0)  # room for a wrongly queued third cycle to show
        daemon.stop()

    helper = threading.Thread(target=push_storm)
    helper.start()
    daemon.run()
    helper.join()
    assert len(cycles) == 2
    assert cycles[1] - cycles[0] < 0.5  # the second ran at once, not after the interval


def test_a_wake_cuts_the_wait_short() -> None:
    cycles: list[float] = []
    daemon: Daemon

    def cycle() -> Finished:
        cycles.append(time.monotonic())
        if len(cycles) == 2:
            daemon.stop()
        return Finished(f"c{len(cycles)}", OK)

    daemon = Daemon(cycle, interval=60.0, jitter=0.0)
    timer = threading.Timer(0.2, daemon.wake)
    timer.start()
    daemon.run()
    assert cycles[1] - cycles[0] < 1.0


@pytest.mark.parametrize(
    ("now", "expected"),
    [(0.0, True), (10.0, True), (31.0, True), (10.0 + 30 + 20, True), (10.0 + 30 + 20.5, False)],
    ids=["start", "cycle-done", "waiting", "wait-and-timeout", "past-the-promise"],
)
def test_progress_promises_the_next_sign_of_life(now: float, expected: bool) -> None:
    """A cycle that ends at t=10 with a 30 s wait and a 20 s cycle timeout promises
    its next sign of life by t=60."""
    clock = iter([0.0, 9.0, 10.0])
    daemon = Daemon(
        scripted([OK]), interval=30.0, jitter=0.0, cycle_timeout=20.0, clock=lambda: next(clock)
    )
    assert daemon.progress.cycles == 0
    daemon.tick()
    progress = daemon.progress
    assert progress.cycles == 1
    assert progress.busy_since is None
    assert alive(progress, now=now) is expected


def test_a_cycle_running_past_its_timeout_is_not_alive() -> None:
    seen = []
    clock = iter([0.0, 5.0, 100.0])
    daemon: Daemon

    def cycle() -> Finished:
        seen.append(daemon.progress)
        return Finished("c1", OK)

    daemon = Daemon(cycle, interval=30.0, jitter=0.0, cycle_timeout=20.0, clock=lambda: next(clock))
    daemon.tick()
    during = seen[0]
    assert during.busy_since == 5.0
    assert alive(during, now=24.0)
    assert not alive(during, now=26.0)


@pytest.mark.parametrize(
    ("cycles", "standby", "expected"),
    [(0, False, False), (1, False, True), (0, True, True), (3, True, True)],
    ids=["starting", "cycled", "standby", "standby-that-cycled"],
)
def test_ready_after_a_cycle_or_as_a_standby(cycles: int, standby: bool, expected: bool) -> None:
    assert ready(Progress(cycles=cycles, due_by=0.0), standby=standby) is expected


def test_a_standby_runs_no_cycle_and_looks_again_soon() -> None:
    leading = [False]
    ran: list[str] = []

    def cycle() -> Finished:
        ran.append("cycle")
        return Finished("c", OK)

    daemon = Daemon(cycle, interval=30.0, jitter=0.0, rand=lambda: 0.5, leading=lambda: leading[0])
    assert daemon.tick() == 0.25
    assert ran == []
    leading[0] = True
    assert daemon.tick() == 30.0
    assert ran == ["cycle"]


def test_what_the_first_cycle_built_is_frozen_out_of_collections() -> None:
    gc.unfreeze()
    ticks = 0

    def cycle() -> Finished:
        nonlocal ticks
        ticks += 1
        if ticks == 2:
            frozen.append(gc.get_freeze_count())
            os.kill(os.getpid(), signal.SIGTERM)
        return Finished("c", OK)

    frozen: list[int] = []
    try:
        Daemon(cycle, interval=0.01, jitter=0.0).run()
    finally:
        gc.unfreeze()
    assert frozen and frozen[0] > 1000  # at least the modules: not collected again
