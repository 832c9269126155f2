"""What a reconcile cycle tells its caller about when to run again.

A cycle never raises for an expected failure: it ends in a :class:`CycleResult`, and
the daemon takes its next delay from it (Flux's ``ctrl.Result`` with the error's
requeue policy), so a transient API outage backs off, a broken spec waits for the
next commit at the normal interval, and a setup fault is reported as stalled instead
of being retried in a tight loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gitsync.errors import GitsyncError, Remedy

__all__ = ["CycleResult", "Outcome"]


class Outcome(enum.Enum):
    """How a cycle ended."""

    SUCCEEDED = "Succeeded"
    """Everything that could be done was done; run again at the normal interval."""
    REQUEUE = "Requeue"
    """Something transient failed: run again soon, backing off while it keeps failing."""
    STALLED = "Stalled"
    """Only the operator (credentials, RBAC, configuration) can fix what failed."""


@dataclass(frozen=True, slots=True)
class CycleResult:
    outcome: Outcome
    reason: str = ""
    #: Why it ended so, as the error's type says; None when nothing failed.
    remedy: Remedy | None = None
    #: A delay the cycle asks for (a rollout's next analysis); None lets the daemon's
    #: interval or backoff policy decide.
    requeue_after: float | None = None

    @classmethod
    def succeeded(cls, *, requeue_after: float | None = None) -> CycleResult:
        return cls(Outcome.SUCCEEDED, requeue_after=requeue_after)

    @classmethod
    def requeue(cls, reason: str, *, after: float | None = None) -> CycleResult:
        return cls(Outcome.REQUEUE, reason, Remedy.RETRY, requeue_after=after)

    @classmethod
    def stalled(cls, reason: str, *, remedy: Remedy = Remedy.FAIL) -> CycleResult:
        return cls(Outcome.STALLED, reason, remedy)

    @classmethod
    def from_error(cls, exc: GitsyncError) -> CycleResult:
        """The result of a cycle cut short by ``exc``, decided by its type alone: a
        transient fault is requeued; bad input waits for a new commit and a setup
        fault for the operator, both stalled (as Flux marks them)."""
        if exc.remedy is Remedy.RETRY:
            return cls.requeue(str(exc))
        return cls.stalled(str(exc), remedy=exc.remedy)
