"""Leader election on a ``coordination.k8s.io/v1`` Lease, as decisions on data.

Two or more ``gitsync run --leader-elect`` replicas share one Lease; only the holder
applies and pushes. The rules are client-go's ``tools/leaderelection``, kept here as
pure functions so each case is a table row (tests/test_leader.py) and the I/O around
them (:mod:`gitsync.election`) stays a loop of get, decide, write.

* **Expiry by the candidate's own clock.** A standby never compares the Lease's
  ``renewTime`` with its clock: that value was written by another machine's clock.
  It remembers when *it* last saw the record change, and takes over only after the
  record's ``leaseDurationSeconds`` passed on its own clock without a change. Clock
  skew between machines therefore does not matter; only a difference in clock *rate*
  does, and the margin below absorbs that.
* **Optimistic concurrency.** Every write carries the ``resourceVersion`` read
  before it, so of two candidates that both judge the Lease expired exactly one
  write succeeds; the other gets a 409 and stays a standby.
* **The leader stops first.** A leader may write only until ``renew_deadline``
  after it *sent* its last successful renewal. A standby can take over no earlier
  than ``lease_duration`` after it *saw* that renewal, which is later than it was
  sent. So a leader that cannot renew (the API server paused, a network partition)
  stops writing at least ``lease_duration - renew_deadline`` (5 s by default) before
  anyone else can start. That margin is what covers a standby whose clock runs
  faster (up to 1.5x with the defaults) and a write that began just before the
  deadline. It is no fencing token: a request already sent cannot be recalled, which
  client-go's documentation says of its election too.
* **Release.** A clean shutdown writes the Lease with no holder and a one-second
  duration, which a standby reads as "free" at its next try.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from gitsync.errors import ConfigurationError

__all__ = [
    "ANNOTATION_LEADER_URL",
    "LEASE_API",
    "Action",
    "LeaseRecord",
    "Timings",
    "Verdict",
    "decide",
    "lease_object",
    "micro_time",
    "released",
]

LEASE_API: Final = "coordination.k8s.io/v1"
#: Where the holder's listener answers, so a standby can hand it a push hook.
ANNOTATION_LEADER_URL: Final = "gitsync.io/leader-url"
#: client-go's JitterFactor: a candidate waits retry_period * (1 + up to 1.2) between
#: tries, so candidates started together do not race in lockstep.
JITTER: Final = 1.2
#: A Lease field longer than this is not one gitsync wrote: it is treated as garbage.
_MAX_FIELD = 256


@dataclass(frozen=True, slots=True)
class Timings:
    """client-go's three durations, in seconds (defaults: 15, 10, 2)."""

    lease_duration: int = 15
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        # The same checks as client-go's NewLeaderElector, for the same reasons: the
        # leader must give up before a standby may take over, and must get more than
        # one try at renewing before it gives up.
        if self.retry_period <= 0 or self.renew_deadline <= 0 or self.lease_duration < 1:
            raise ConfigurationError(
                "--lease-duration must be a whole number of seconds >= 1, and"
                " --renew-deadline and --retry-period positive"
            )
        if self.lease_duration <= self.renew_deadline:
            raise ConfigurationError(
                f"--lease-duration {self.lease_duration} must be greater than"
                f" --renew-deadline {self.renew_deadline}"
            )
        if self.renew_deadline <= JITTER * self.retry_period:
            raise ConfigurationError(
                f"--renew-deadline {self.renew_deadline} must be greater than"
                f" {JITTER} x --retry-period {self.retry_period}"
            )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The part of a Lease's spec that the election reads and writes."""

    holder: str
    lease_duration: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int

    @classmethod
    def of(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        """Read a Lease as the API server returned it; a field of the wrong type or
        size (someone else's object, or garbage) counts as absent."""
        spec = lease.get("spec")
        spec = spec if isinstance(spec, Mapping) else {}

        def text(key: str) -> str | None:
            value = spec.get(key)
            return value if isinstance(value, str) and len(value) <= _MAX_FIELD else None

        def number(key: str) -> int:
            value = spec.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        return cls(
            holder=text("holderIdentity") or "",
            lease_duration=max(number("leaseDurationSeconds"), 0),
            acquire_time=text("acquireTime"),
            renew_time=text("renewTime"),
            transitions=max(number("leaseTransitions"), 0),
        )

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


class Action(enum.Enum):
    CREATE = "create"
    """There is no Lease: create it, holding it."""
    ACQUIRE = "acquire"
    """The Lease is free or expired: take it over (one more transition)."""
    RENEW = "renew"
    """We hold it: write a new renewTime."""
    WAIT = "wait"
    """Someone else holds it and it has not expired by our clock."""
    LOST = "lost"
    """We thought we led, but the Lease names someone else: stop writing, then wait."""

    @property
    def writes(self) -> bool:
        return self in (Action.CREATE, Action.ACQUIRE, Action.RENEW)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    #: The record to write, for the actions that write.
    record: LeaseRecord | None = None
    #: Who holds the Lease as read (empty when free or absent).
    holder: str = ""


def micro_time(now: datetime) -> str:
    """A ``metav1.MicroTime``: RFC 3339 in UTC with microseconds."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decide(
    observed: LeaseRecord | None,
    *,
    identity: str,
    lease_duration: int,
    now: datetime,
    seen_for: float,
    leading: bool,
) -> Verdict:
    """What a candidate does with the Lease it just read.

    ``seen_for`` is how long, by this candidate's own clock, the record has been as
    it is now (0 when it just changed): the record expires when that reaches the
    record's own ``leaseDurationSeconds``, whatever its ``renewTime`` says.
    ``leading`` is whether this candidate believed it held the Lease.
    """
    stamp = micro_time(now)
    if observed is None:
        fresh = LeaseRecord(identity, lease_duration, stamp, stamp, 0)
        return Verdict(Action.CREATE, fresh)
    if observed.holder == identity:
        renewed = LeaseRecord(
            identity, lease_duration, observed.acquire_time or stamp, stamp, observed.transitions
        )
        return Verdict(Action.RENEW, renewed, holder=identity)
    if observed.holder and seen_for < observed.lease_duration:
        return Verdict(Action.LOST if leading else Action.WAIT, holder=observed.holder)
    taken = LeaseRecord(identity, lease_duration, stamp, stamp, observed.transitions + 1)
    return Verdict(Action.ACQUIRE, taken, holder=observed.holder)


def released(record: LeaseRecord, *, now: datetime) -> LeaseRecord:
    """The record a leader writes when it steps down: no holder, one second left,
    the transition count kept (client-go's ``release``)."""
    stamp = micro_time(now)
    return LeaseRecord("", 1, stamp, stamp, record.transitions)


def lease_object(
    record: LeaseRecord,
    *,
    name: str,
    namespace: str,
    current: Mapping[str, Any] | None = None,
    leader_url: str | None = None,
) -> dict[str, Any]:
    """The Lease to create (``current`` None) or to replace ``current`` with: its
    metadata kept, ``resourceVersion`` included, so the replace is conditional; and
    the writer's ``leader_url`` on it (or none: a URL left by the previous holder
    would send hooks to a replica that no longer leads)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if current is not None:
        kept = current.get("metadata")
        if isinstance(kept, Mapping):
            metadata = {k: v for k, v in kept.items() if k != "managedFields"}
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k != ANNOTATION_LEADER_URL
    }
    if leader_url:
        annotations[ANNOTATION_LEADER_URL] = leader_url
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return {
        "apiVersion": LEASE_API,
        "kind": "Lease",
        "metadata": metadata,
        "spec": record.spec(),
    }
