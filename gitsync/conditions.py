"""Kubernetes-style conditions for status documents, as kstatus reads them.

Each part of a cycle owns one condition of a spec (``Valid``: it loads and passes
the policies; ``Applied``: the cluster took it; ``Healthy``: its controller reports
it working), and ``Ready`` is derived from them, as Flux's summarize helper does:
True when every owned condition is True, else False (or Unknown) with the reason
and message of the first that is not. ``Reconciling`` and ``Stalled`` are
abnormal-true conditions: present only while True, so a settled spec carries
neither. Messages name the spec's revision (the commit that last changed its file),
which keeps them stable across unrelated commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from gitsync.status_document import Condition as DatedCondition

__all__ = ["Condition", "ConditionStatus", "summarize"]

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition as a part of the cycle judges it, before it is dated."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def summarize(
    owned: Sequence[Condition],
    *,
    reconciling: Condition | None,
    stalled: Condition | None,
    revision: str,
    previous: Iterable[DatedCondition],
    now: str,
) -> tuple[DatedCondition, ...]:
    """``Ready``, the owned conditions, and ``Reconciling`` / ``Stalled`` when given,
    each with its lastTransitionTime carried over while its status stays the same."""
    ready = _ready(owned)
    chosen = [ready, *owned, *(c for c in (reconciling, stalled) if c is not None)]
    before = {c.type: c for c in previous}
    named = f" (revision {revision[:12]})" if revision else ""
    return tuple(
        _dated(Condition(c.type, c.status, c.reason, c.message + named), before, now)
        for c in chosen
    )


def _ready(owned: Sequence[Condition]) -> Condition:
    for status in ("False", "Unknown"):
        if first := next((c for c in owned if c.status == status), None):
            return Condition("Ready", first.status, first.reason, first.message)
    last = owned[-1] if owned else Condition("Ready", "True", "Succeeded", "")
    return Condition("Ready", "True", last.reason, last.message)


def _dated(condition: Condition, before: dict[str, DatedCondition], now: str) -> DatedCondition:
    old = before.get(condition.type)
    same = old is not None and old.status == condition.status
    return DatedCondition(
        type=condition.type,
        status=condition.status,
        reason=condition.reason,
        message=condition.message,
        last_transition_time=old.last_transition_time if same and old else now,
    )
