"""Which Kubernetes Events a finished cycle tells, on the objects it manages.

The status branch is gitsync's record; Events are for the people who look at the
cluster (``kubectl events --for inferenceservice/fraud``, ``kubectl describe``): what
gitsync did to an object and why, beside what KServe and the kubelet say about it.
Deriving them is pure (what a cycle reports -> a few :class:`EventIntent`) so every
rule below is a row of a table test; :mod:`gitsync.event_recorder` posts them.

The rules:

- An Event always regards a real object, with its uid, the way client-go's reference
  does (without the resourceVersion, so a repeat is the same series). A spec that
  never deployed has no object: it gets no Event (its status document and the log
  say why it was refused). An invalid or policy-denied spec whose object is live from
  an earlier commit gets a Warning on that object when its ``Valid`` condition turns
  False or says something new (a new commit, another error), not in every cycle it
  stays the same.
- A write is told once: created, configured (only when Git changed the object: a
  rollout step's write is told as the step), drift reverted, pruned, or its failure.
- A rollout is told when it moves (starts, steps from% -> to%, pauses or resumes,
  is promoted or rolled back), and only when that write landed (the transition travels in the state
  annotation of that very write); a revision turning ready or an analysis round is
  left to the status branch.
- Reasons are a closed enum; notes are redacted and bounded to the API's 1 KiB.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gitsync.diff import Action, Change, ChangeSet
from gitsync.redact import redact
from gitsync.render import (
    ANNOTATION_SOURCE_COMMIT,
    ANNOTATION_SOURCE_PATH,
    ANNOTATION_SPEC_KIND,
    LABEL_TRAINING_RUN,
)
from gitsync.rollout import Decision, RolloutPhase, RolloutState
from gitsync.status import SpecStatus
from gitsync.types import ObjectRef, parse_resource

__all__ = [
    "NOTE_LIMIT",
    "EventAction",
    "EventIntent",
    "EventType",
    "Reason",
    "bounded_note",
    "cycle_events",
]

#: The API server refuses an Event whose note is longer (events.k8s.io/v1 validation).
NOTE_LIMIT: Final = 1024
_ELLIPSIS: Final = " [...]"
#: What a policy denial's diagnostic says (gitsync.policy.enforce), as a status quotes it.
_DENIED: Final = ": denied by policy "


class Reason(enum.Enum):
    """Why gitsync tells an Event: the closed set ``reason`` takes."""

    CREATED = "Created"
    CONFIGURED = "Configured"
    DRIFT_REVERTED = "DriftReverted"
    PRUNED = "Pruned"
    APPLY_FAILED = "ApplyFailed"
    ROLLOUT_STEP = "RolloutStep"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    INVALID_SPEC = "InvalidSpec"
    POLICY_DENIED = "PolicyDenied"


class EventAction(enum.Enum):
    """What gitsync did, or failed to do, to the regarded object (``action``)."""

    APPLY = "Apply"
    PRUNE = "Prune"
    ROLLOUT = "Rollout"
    VALIDATE = "Validate"


class EventType(enum.Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


_TYPE: Final = {
    Reason.DRIFT_REVERTED: EventType.WARNING,
    Reason.APPLY_FAILED: EventType.WARNING,
    Reason.ROLLED_BACK: EventType.WARNING,
    Reason.INVALID_SPEC: EventType.WARNING,
    Reason.POLICY_DENIED: EventType.WARNING,
}


@dataclass(frozen=True, slots=True)
class EventIntent:
    """One Event to post: everything but the time and who reports it."""

    #: ``regarding``: apiVersion, kind, namespace (absent when cluster-scoped), name, uid.
    regarding: Mapping[str, str]
    reason: Reason
    action: EventAction
    note: str

    @property
    def type(self) -> EventType:
        return _TYPE.get(self.reason, EventType.NORMAL)


def bounded_note(text: str) -> str:
    """``text`` redacted and cut to :data:`NOTE_LIMIT` bytes of UTF-8, never mid-character."""
    note = redact(text)
    raw = note.encode()
    if len(raw) <= NOTE_LIMIT:
        return note
    room = NOTE_LIMIT - len(_ELLIPSIS.encode())
    return raw[:room].decode(errors="ignore") + _ELLIPSIS


def regarding(obj: Mapping[str, Any] | None) -> dict[str, str] | None:
    """An object's reference for ``regarding``; None without a uid (no real object)."""
    metadata = (obj or {}).get("metadata") or {}
    if obj is None or not metadata.get("uid"):
        return None
    ref = {
        "apiVersion": str(obj.get("apiVersion", "")),
        "kind": str(obj.get("kind", "")),
        "name": str(metadata.get("name", "")),
        "uid": str(metadata["uid"]),
    }
    if metadata.get("namespace"):
        ref["namespace"] = str(metadata["namespace"])
    return ref


def cycle_events(
    *,
    changes: ChangeSet,
    rollouts: Mapping[ObjectRef, Decision],
    statuses: Sequence[SpecStatus],
    objects: Mapping[ObjectRef, Mapping[str, Any]],
    previous: Mapping[str, SpecStatus],
) -> tuple[EventIntent, ...]:
    """The Events of one cycle, in the order it did things. ``objects`` are the
    objects as the cycle last saw them (what its writes returned over what it read);
    ``previous`` are the status documents the cycle started from, by path."""
    stepped = {
        key: decision
        for key, decision in rollouts.items()
        if decision.transition is not None and key in _landed(changes)
    }
    found: list[EventIntent] = []
    for change in changes.changes:
        found += _change_events(change, objects, stepped=stepped.get(change.key))
    before = {c.key: c.live for c in changes.changes}
    for key, decision in sorted(stepped.items()):
        found += _rollout_event(key, decision, objects, before=before.get(key))
    for status in statuses:
        found += _refusal(status, objects, previous=previous.get(status.path))
    return tuple(found)


def _landed(changes: ChangeSet) -> set[ObjectRef]:
    """Objects configured by a write that landed: a first deployment's decision is
    told by its Created event."""
    return {c.key for c in changes.writes if c.action is Action.CONFIGURED}


def _intent(
    obj: Mapping[str, Any] | None, reason: Reason, action: EventAction, note: str
) -> list[EventIntent]:
    ref = regarding(obj)
    return [] if ref is None else [EventIntent(ref, reason, action, bounded_note(note))]


def _commit_of(body: Mapping[str, Any] | None) -> str:
    annotations = ((body or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ANNOTATION_SOURCE_COMMIT) or "")


def _change_events(
    change: Change, objects: Mapping[ObjectRef, Mapping[str, Any]], *, stepped: Decision | None
) -> list[EventIntent]:
    source = change.source or "?"
    commit = _commit_of(change.desired)[:12]
    pruning = change.action is Action.DELETED
    # A deleted object is gone: it is regarded as it was before the delete.
    obj = change.live if pruning else objects.get(change.key) or change.live
    action = EventAction.PRUNE if pruning else EventAction.APPLY
    told: tuple[Reason, str] | None = None
    if change.error is not None:
        told = Reason.APPLY_FAILED, change.error
    elif change.action is Action.CREATED:
        told = Reason.CREATED, f"created from {source}@{commit}"
    elif pruning:
        why = f": {change.reason}" if change.reason else ""
        told = Reason.PRUNED, f"pruned{why} ({source})"
    elif change.action is Action.CONFIGURED and change.drift:
        told = (
            Reason.DRIFT_REVERTED,
            f"reverted a change made outside Git to what {source}@{commit} declares",
        )
    elif change.action is Action.CONFIGURED and not (
        # Only the rollout moved, not Git: the step tells it.
        stepped is not None and _commit_of(change.live)[:12] == commit
    ):
        told = Reason.CONFIGURED, f"configured from {source}@{commit}"
    return [] if told is None else _intent(obj, told[0], action, told[1])


def _moved(before: Mapping[str, Any] | None, state: RolloutState) -> bool:
    """Whether a decision moved the rollout (started, stepped, paused or resumed, or
    ended), by the state the live object carried before, whatever the KServe mode
    that carries its traffic."""
    was = RolloutState.from_live(before)
    return (
        was is None
        or was.target != state.target
        or was.step != state.step
        or was.phase is not state.phase
    )


def _rollout_event(
    key: ObjectRef,
    decision: Decision,
    objects: Mapping[ObjectRef, Mapping[str, Any]],
    *,
    before: Mapping[str, Any] | None,
) -> list[EventIntent]:
    """A step moves the rollout (``from% -> to%``); the other transitions (a revision
    turning ready, an analysis round) are the status branch's to tell, or a rollout
    would post an Event every analysis interval."""
    state, text = decision.state, str(decision.transition)
    if not _moved(before, state):
        return []
    if state.phase in {RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED}:
        evidence = "; ".join(m.text() for m in state.evidence)
        note = f"{text}; evidence: {evidence}" if evidence and evidence not in text else text
        return _intent(objects.get(key), Reason.ROLLED_BACK, EventAction.ROLLOUT, note)
    # Promoted with a reason: every step passed, or a promote command; without one,
    # the spec went back to its stable model and the canary was dropped.
    promoted = state.phase is RolloutPhase.PROMOTED and bool(state.reason)
    reason = Reason.PROMOTED if promoted else Reason.ROLLOUT_STEP
    return _intent(objects.get(key), reason, EventAction.ROLLOUT, text)


def _refusal(
    status: SpecStatus,
    objects: Mapping[ObjectRef, Mapping[str, Any]],
    *,
    previous: SpecStatus | None,
) -> list[EventIntent]:
    valid = status.condition("Valid")
    if valid is None or valid.status != "False":
        return []
    before = previous.condition("Valid") if previous is not None else None
    if before is not None and (before.status, before.message) == (valid.status, valid.message):
        return []  # refused as it was: told when it was first refused
    denied = any(_DENIED in error for error in status.errors)
    reason = Reason.POLICY_DENIED if denied else Reason.INVALID_SPEC
    note = (
        f"{status.kind} {status.name} at {status.source}@{status.source_commit[:12]} refused, "
        f"the last deployed object kept: {status.message}"
    )
    found: list[EventIntent] = []
    for obj in _deployed(status, objects):
        found += _intent(obj, reason, EventAction.VALIDATE, note)
    return found


def _deployed(
    status: SpecStatus, objects: Mapping[ObjectRef, Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The live objects a refused spec deployed before: those its document records,
    else those gitsync stamped with its file and name (a rejected spec's document
    records none)."""
    recorded = [parse_resource(resource) for resource in status.resources]
    found = [objects[r[1]] for r in recorded if r is not None and r[1] in objects]
    if found:
        return found
    for obj in objects.values():
        metadata = obj.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        labels = metadata.get("labels") or {}
        if (
            annotations.get(ANNOTATION_SOURCE_PATH) == status.source
            and annotations.get(ANNOTATION_SPEC_KIND) == status.kind
            and metadata.get("namespace", "") == status.namespace
            and status.name in {metadata.get("name"), labels.get(LABEL_TRAINING_RUN)}
        ):
            found.append(obj)
    return found
