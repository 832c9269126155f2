"""Cron ticks as cron and a Kubernetes CronJob compute them, and the errors for bad lines.

Known ticks, worked out by hand against a calendar (2026-03-01 is a Sunday): each row
is a schedule, a moment and the next tick strictly after it. The day-of-month /
day-of-week rows pin Vixie cron's rule: both restricted means either one matches.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from gitsync.schedule import check_crontab, due_tick, next_tick


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        # Both day fields restricted: the 1st OR a Monday (cron(8), Kubernetes CronJob).
        pytest.param("0 0 1 * 1", "2026-03-02 00:00", "2026-03-09 00:00", id="dom-or-dow"),
        pytest.param("0 0 1 * 1", "2026-03-30 00:00", "2026-04-01 00:00", id="dom-or-dow-1st"),
        pytest.param("0 0 13 * 5", "2026-03-01 00:00", "2026-03-06 00:00", id="13th-or-friday"),
        # A day field starting with * leaves the other one alone in charge (AND with *).
        pytest.param("0 0 1 * *", "2026-03-02 00:00", "2026-04-01 00:00", id="dom-only"),
        pytest.param("0 0 * * 1", "2026-03-02 00:00", "2026-03-09 00:00", id="dow-only"),
        pytest.param("0 0 13 * */2", "2026-03-01 00:00", "2026-06-13 00:00", id="star-step-ands"),
        # Strictly after: a moment on a tick gives the next one.
        pytest.param("0 * * * *", "2026-03-01 03:00", "2026-03-01 04:00", id="strictly-after"),
        pytest.param("0 * * * *", "2026-03-01 02:59:59.5", "2026-03-01 03:00", id="sub-second"),
        # Steps and ranges.
        pytest.param("*/15 * * * *", "2026-03-01 10:07", "2026-03-01 10:15", id="step"),
        pytest.param("10-20/5 * * * *", "2026-03-01 10:16", "2026-03-01 10:20", id="range-step"),
        pytest.param("5/20 * * * *", "2026-03-01 10:26", "2026-03-01 10:45", id="start-step"),
        pytest.param("0 9-17 * * *", "2026-03-01 17:30", "2026-03-02 09:00", id="hour-range"),
        pytest.param("0 0,12 * * *", "2026-03-01 01:00", "2026-03-01 12:00", id="list"),
        pytest.param("0 3 * * 1-5", "2026-03-06 04:00", "2026-03-09 03:00", id="weekdays"),
        # Names, any case, alone, in ranges and in lists.
        pytest.param("0 0 * * MON-FRI", "2026-03-06 01:00", "2026-03-09 00:00", id="day-names"),
        pytest.param("0 0 * * sat,sun", "2026-03-02 00:00", "2026-03-07 00:00", id="day-list"),
        pytest.param("0 0 1 jun *", "2026-03-01 00:00", "2026-06-01 00:00", id="month-name"),
        pytest.param("0 0 1 JAN-MAR *", "2026-03-02 00:00", "2027-01-01 00:00", id="month-range"),
        # Sunday is 0 and 7.
        pytest.param("0 3 * * 0", "2026-03-02 00:00", "2026-03-08 03:00", id="sunday-0"),
        pytest.param("0 3 * * 7", "2026-03-02 00:00", "2026-03-08 03:00", id="sunday-7"),
        pytest.param("0 3 * * 5-7", "2026-03-07 04:00", "2026-03-08 03:00", id="range-to-7"),
        pytest.param("0 3 * * ?", "2026-03-01 04:00", "2026-03-02 03:00", id="question-mark"),
        # The macros a CronJob accepts.
        pytest.param("@hourly", "2026-03-01 10:07", "2026-03-01 11:00", id="hourly"),
        pytest.param("@daily", "2026-03-01 10:07", "2026-03-02 00:00", id="daily"),
        pytest.param("@midnight", "2026-03-01 10:07", "2026-03-02 00:00", id="midnight"),
        pytest.param("@weekly", "2026-03-02 10:07", "2026-03-08 00:00", id="weekly"),
        pytest.param("@monthly", "2026-03-02 10:07", "2026-04-01 00:00", id="monthly"),
        pytest.param("@yearly", "2026-03-02 10:07", "2027-01-01 00:00", id="yearly"),
        pytest.param("@annually", "2026-03-02 10:07", "2027-01-01 00:00", id="annually"),
        # Calendar edges.
        pytest.param("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00", id="leap-day"),
        pytest.param("0 0 31 * *", "2026-04-01 00:00", "2026-05-31 00:00", id="skips-30-day"),
    ],
)
def test_next_tick(schedule: str, after: str, expected: str) -> None:
    assert check_crontab(schedule) == schedule
    assert next_tick(schedule=schedule, after=at(after)) == at(expected)


def test_due_tick_ors_the_day_fields() -> None:
    """The latest tick of ``0 0 1 * 1`` before Tuesday 2026-03-10 is Monday the 9th."""
    due = due_tick(
        schedule="0 0 1 * 1", last_tick=None, since=at("2026-03-02 12:00"), now=at("2026-03-10")
    )
    assert due == at("2026-03-09 00:00")


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("0 3 * *", "'0 3 * *' is not a 5-field cron expression"),
        ("0 0 3 * * 0", "'0 0 3 * * 0' is not a 5-field cron expression"),
        ("", "'' is not a 5-field cron expression"),
        ("CRON_TZ=UTC 0 3 * * *", "is not a 5-field cron expression"),
        ("60 * * * *", "'60 * * * *' is not a valid cron expression: bad minute"),
        ("0 24 * * *", "is not a valid cron expression: bad hour"),
        ("0 0 0 * *", "is not a valid cron expression: bad day-of-month"),
        ("0 0 * 13 *", "is not a valid cron expression: bad month"),
        ("0 3 * * 8", "'0 3 * * 8' is not a valid cron expression: bad day-of-week"),
        ("0 3 * * fri-mon", "is not a valid cron expression: bad day-of-week"),
        ("*/0 * * * *", "is not a valid cron expression: bad minute"),
        ("a * * * *", "is not a valid cron expression: bad minute"),
        ("0 0 30 2 *", "is not a valid cron expression: bad day-of-month"),
        # Extensions neither Vixie cron nor a CronJob has.
        ("0 0 L * *", "is not a valid cron expression: bad day-of-month"),
        ("0 0 * * 5L", "is not a valid cron expression: bad day-of-week"),
        ("0 0 * * MON#2", "is not a valid cron expression: bad day-of-week"),
        ("@every 1h", "'@every 1h' is not a valid cron expression: unknown macro"),
        ("@reboot", "is not a valid cron expression: unknown macro"),
    ],
)
def test_invalid_expressions_say_why(schedule: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_crontab(schedule)
