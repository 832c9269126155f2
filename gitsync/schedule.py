"""When a scheduled TrainingRun starts its runs: cron ticks and concurrency, like a CronJob.

Pure: APScheduler's :class:`CronTrigger` is only calendar arithmetic here, and "now"
is always an argument, so every decision is a table test away. Times are UTC (a
daylight-saving jump never skips or doubles a tick).

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

from apscheduler.triggers.cron import CronTrigger

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

#: Windows tried, narrowest first, when looking back for the latest missed tick: an
#: every-minute schedule unseen for a month is then 60 steps, not 43 200.
_LOOKBACK: Final = (
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=8),
    timedelta(days=32),
    timedelta(days=367),
)


#: Day names in crontab order: cron counts weekdays from Sunday (0, and 7 again).
_CRON_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@functools.cache
def _trigger(expression: str) -> CronTrigger:
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"{expression!r} is not a 5-field cron expression (e.g. '0 3 * * 0')")
    # APScheduler 3 counts weekdays from Monday (its issue 286): hand it day names.
    fields[4] = _weekdays(fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=UTC)


def _weekdays(field: str) -> str:
    """A crontab day-of-week field (numbers 0-7 or names; lists, ranges, steps) as
    the comma-separated day names it selects."""
    if field in {"*", "?"}:
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, slash, step_text = part.partition("/")
        step = _number(step_text, "step") if slash else 1
        if step < 1:
            raise ValueError(f"step {step_text!r} must be positive")
        if span == "*":
            first, last = 0, 6
        else:
            low, dash, high = span.partition("-")
            first = _day(low)
            last = _day(high) if dash else (7 if slash else first)
        if first > last:
            raise ValueError(f"day-of-week range {span!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_CRON_DAYS[day] for day in sorted(days))


def _day(text: str) -> int:
    if text.lower() in _CRON_DAYS:
        return _CRON_DAYS.index(text.lower())
    day = _number(text, "day of week")
    if not 0 <= day <= 7:
        raise ValueError(f"day of week {text!r} is not in 0-7")
    return day


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a number")
    return int(text)


def check_crontab(expression: str) -> str:
    """``expression`` when it is a 5-field crontab line; else a ValueError saying why."""
    if len(expression.split()) != 5:
        raise ValueError(f"{expression!r} is not a 5-field cron expression (e.g. '0 3 * * 0')")
    try:
        _trigger(expression)
    except ValueError as exc:
        raise ValueError(f"{expression!r} is not a valid cron expression: {exc}") from None
    return expression


def next_tick(*, schedule: str, after: datetime) -> datetime | None:
    """The first tick strictly after ``after`` (None for a schedule that never fires)."""
    # The trigger returns ticks at or after a moment rounded up to the second; ticks
    # are whole seconds, so one microsecond on makes "after" strict.
    tick = _trigger(schedule).get_next_fire_time(None, after + timedelta(microseconds=1))
    return tick.astimezone(UTC) if tick is not None else None


def _latest(schedule: str, lower: datetime, upper: datetime) -> datetime | None:
    latest = None
    tick = next_tick(schedule=schedule, after=lower)
    while tick is not None and tick <= upper:
        latest = tick
        tick = next_tick(schedule=schedule, after=tick)
    return latest


def due_tick(
    *, schedule: str, last_tick: datetime | None, since: datetime, now: datetime
) -> datetime | None:
    """The latest tick in ``(last_tick or since, now]``, or None when none is due.

    Several missed ticks give one: the latest (a CronJob that missed its deadline for
    the older ones).
    """
    start = last_tick or since
    for window in _LOOKBACK:
        lower = now - window
        if lower <= start:
            break
        if (tick := _latest(schedule, lower, now)) is not None:
            return tick
    return _latest(schedule, start, now)


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
