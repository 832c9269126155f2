"""When a scheduled TrainingRun starts its runs: cron ticks and concurrency, like a CronJob.

Tick arithmetic is cronsim's (the library healthchecks.io is built on; it follows
Debian's Vixie cron, so a day-of-month and a day-of-week that are both restricted
match when either does, as cron(8) and a Kubernetes CronJob have it). What is ours is
the dialect a CronJob accepts: five fields, the ``@hourly``-style macros, ``?`` for
``*`` in the day fields, and none of the ``L``/``W``/``#`` extensions cronsim also
knows, so a schedule means the same here as in a CronJob.

Pure: "now" is always an argument, so every decision is a table test away. Times are
UTC (a daylight-saving jump never skips or doubles a tick).

A schedule seen for the first time starts nothing: it waits for its next tick (a
daemon restarted at 03:00:30 must not mistake a new schedule for a missed one).
Ticks missed while gitsync was away coalesce into one run, for the latest of them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from cronsim import CronSim, CronSimError

__all__ = [
    "ConcurrencyPolicy",
    "RunFacts",
    "ScheduleDecision",
    "check_crontab",
    "decide_schedule",
    "due_tick",
    "format_time",
    "next_tick",
    "parse_time",
]

ConcurrencyPolicy = Literal["Forbid", "Replace", "Allow"]

#: The macros of a CronJob's ``schedule`` (robfig/cron's descriptors, less ``@every``,
#: which is an interval rather than a calendar).
_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIVE_FIELDS: Final = "is not a 5-field cron expression (e.g. '0 3 * * 0')"


@functools.cache
def _crontab(expression: str) -> str:
    """``expression`` as the five fields cronsim reads; ValueError when it is not one."""
    if expression.startswith("@"):
        if expression not in _MACROS:
            raise ValueError(f"{expression!r} is not a valid cron expression: unknown macro")
        return _MACROS[expression]
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"{expression!r} {_FIVE_FIELDS}")
    minute, hour, dom, month, dow = fields
    # A CronJob reads "?" in a day field as "*"; cronsim does not know it.
    line = " ".join([minute, hour, "*" if dom == "?" else dom, month, "*" if dow == "?" else dow])
    if reason := _extension(dom=dom, dow=dow) or _rejection(line):
        raise ValueError(f"{expression!r} is not a valid cron expression: {reason}")
    return line


def _extension(*, dom: str, dow: str) -> str | None:
    """Which day field uses one of cronsim's extensions (``L``, ``LW``, ``#``), if any:
    no day name has an L or a #, and the day of the month takes no names at all."""
    if any(mark in dom.upper() for mark in "LW"):
        return "bad day-of-month"
    if any(mark in dow.upper() for mark in "L#"):
        return "bad day-of-week"
    return None


def _rejection(line: str) -> str | None:
    """cronsim's reason (e.g. "Bad minute") for refusing ``line``, lower-cased."""
    try:
        CronSim(line, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        reason = str(exc)
        return reason[:1].lower() + reason[1:]
    return None


def check_crontab(expression: str) -> str:
    """``expression`` when a CronJob would accept it as its schedule; else a ValueError
    saying why."""
    _crontab(expression)
    return expression


def next_tick(*, schedule: str, after: datetime) -> datetime | None:
    """The first tick strictly after ``after`` (None for a schedule that never fires)."""
    # cronsim steps one second past its start (dropping microseconds) before matching,
    # and every tick is on a whole minute: the tick it finds is strictly after "after".
    ticks = CronSim(_crontab(schedule), after.astimezone(UTC))
    return next(ticks, None)


def due_tick(
    *, schedule: str, last_tick: datetime | None, since: datetime, now: datetime
) -> datetime | None:
    """The latest tick in ``(last_tick or since, now]``, or None when none is due.

    Several missed ticks give one: the latest (a CronJob that missed its deadline for
    the older ones).
    """
    # Backwards, cronsim steps one second back first: starting a second after "now"
    # lets a tick at exactly "now" count.
    ticks = CronSim(_crontab(schedule), now.astimezone(UTC) + timedelta(seconds=1), reverse=True)
    latest = next(ticks, None)
    start = last_tick or since
    return latest if latest is not None and latest > start else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFacts:
    """One existing run of a TrainingRun, as the cluster or the status history has it."""

    name: str
    active: bool
    scheduled_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleDecision:
    """What a scheduled TrainingRun does this cycle, and what its status records."""

    since: datetime
    last_tick: datetime | None
    next_tick: datetime | None
    #: The tick to start a run for now, if any.
    start: datetime | None = None
    #: Active runs to delete first (concurrencyPolicy Replace).
    replace: tuple[str, ...] = ()
    #: A due tick that started nothing, and why (concurrencyPolicy Forbid).
    skipped: str | None = None


def decide_schedule(
    *,
    schedule: str,
    policy: ConcurrencyPolicy,
    runs: Sequence[RunFacts],
    since: datetime | None,
    recorded_tick: datetime | None,
    now: datetime,
) -> ScheduleDecision:
    """Whether a tick is due and what concurrency allows, from the runs that exist.

    The last tick is the latest of the runs' own ``scheduled_at`` and the one the
    status recorded (a skipped tick started no run but is spent all the same), so a
    restarted daemon neither repeats nor forgets a tick.
    """
    first_seen = since or now
    ticks = [r.scheduled_at for r in runs if r.scheduled_at is not None]
    if recorded_tick is not None:
        ticks.append(recorded_tick)
    last = max(ticks, default=None)
    due = due_tick(schedule=schedule, last_tick=last, since=first_seen, now=now)
    upcoming = next_tick(schedule=schedule, after=max(now, due or now))
    if due is None:
        return ScheduleDecision(since=first_seen, last_tick=last, next_tick=upcoming)
    active = tuple(sorted(r.name for r in runs if r.active))
    if active and policy == "Forbid":
        why = (
            f"tick {format_time(due)} skipped: {', '.join(active)} still active "
            "(concurrencyPolicy Forbid)"
        )
        return ScheduleDecision(since=first_seen, last_tick=due, next_tick=upcoming, skipped=why)
    return ScheduleDecision(
        since=first_seen,
        last_tick=due,
        next_tick=upcoming,
        start=due,
        replace=active if policy == "Replace" else (),
    )


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC to the second, as Kubernetes writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime | None:
    """A UTC datetime from an RFC 3339 string; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
