"""Decide what a cycle must do: desired objects x live objects -> a ChangeSet.

Pure. An object is unchanged when its live copy carries the same applied-hash
annotation (gitsync wrote exactly this) and still holds every value gitsync sets
(nobody edited them since): that needs no request to the API server, which is what
makes a no-op cycle free. Anything else is a candidate that :mod:`gitsync.apply`
confirms with a server-side dry-run before writing.

Comparing every value of 1,000 objects was a quarter of what a daemon's cycle did
before it applied one changed spec (24 of about 90 ms). With a :data:`HoldsMemo` kept
between calls, only the objects whose desired body or live copy is a new object are
compared again (planning took 9 ms): the daemon's evaluator keeps a body while its
inputs are the same, its informers a live object until it changes.

Pruning is guarded here, where it can be tested exhaustively: only objects carrying
this instance's label are candidates; an object whose source file failed to load is
never deleted (a broken file is not a deleted file); finished training runs are kept
until their TTL; and a cycle that would delete more than the configured share of
the managed objects deletes nothing and says why. Runs a TrainingRun retires itself
(beyond its historyLimit, or replaced at a tick) are deletions Git asked for, so
they are outside that guard.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import yaml

from gitsync.errors import Remedy
from gitsync.health import assess
from gitsync.render import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_SOURCE_PATH,
    LABEL_INSTANCE,
    LABEL_TRAINING_RUN,
    comparable,
)
from gitsync.render.training import JOB_KINDS
from gitsync.types import ObjectRef

__all__ = [
    "Action",
    "Change",
    "ChangeSet",
    "HoldsMemo",
    "PrunePolicy",
    "holds",
    "normalize",
    "object_diff",
    "plan_changes",
]


class Action(enum.Enum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Change:
    """One object's outcome; ``error`` set means the action was wanted but failed."""

    key: ObjectRef
    action: Action
    reason: str = ""
    desired: Mapping[str, Any] | None = None
    live: Mapping[str, Any] | None = None
    drift: bool = False
    error: str | None = None
    error_remedy: Remedy | None = None

    @property
    def writes(self) -> bool:
        return self.action in {Action.CREATED, Action.CONFIGURED, Action.DELETED}

    @property
    def source(self) -> str | None:
        """The spec file the object comes from, as gitsync's annotation on it says."""
        body = self.desired if self.desired is not None else self.live
        return _annotation(body, ANNOTATION_SOURCE_PATH) if body is not None else None


@dataclass(frozen=True, slots=True)
class ChangeSet:
    changes: tuple[Change, ...] = ()
    prune_refused: str | None = None

    def of(self, *actions: Action) -> list[Change]:
        return [c for c in self.changes if c.action in actions]

    @property
    def writes(self) -> list[Change]:
        return [c for c in self.changes if c.writes and c.error is None]

    @property
    def failures(self) -> list[Change]:
        return [c for c in self.changes if c.error is not None]

    def summary(self) -> dict[str, int]:
        counts = {action.value: 0 for action in Action}
        for change in self.changes:
            counts[change.action.value] += 1
        counts["failed"] = len(self.failures)
        return counts


@dataclass(frozen=True, slots=True)
class PrunePolicy:
    enabled: bool = True
    max_ratio: float = 0.5


_VOLATILE_METADATA = (
    "managedFields",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "uid",
    "selfLink",
)


def normalize(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what the server owns: status, bookkeeping and timestamps."""
    result = {k: v for k, v in obj.items() if k != "status"}
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE_METADATA}
    result["metadata"] = metadata
    return result


def holds(live: object, desired: object) -> bool:
    """True when every value in ``desired`` is present and equal in ``live``.

    Fields the server added (defaults) are ignored; list items are compared position
    by position, and a list of another length differs.
    """
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and holds(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(holds(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


#: By object: the desired body and the live copy last compared (the very objects, held
#: so neither id is reused) and whether the live copy held every value of the desired.
HoldsMemo = dict[ObjectRef, tuple[Mapping[str, Any], Mapping[str, Any], bool]]


def object_diff(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    *,
    labels: tuple[str, str] = ("live", "desired"),
) -> str:
    """A unified diff of two normalized objects as YAML, for people to read."""
    import difflib  # noqa: PLC0415 - only when someone reads a diff

    def lines(obj: Mapping[str, Any] | None) -> list[str]:
        if obj is None:
            return []
        text = yaml.dump(normalize(obj), Dumper=yaml.CSafeDumper, sort_keys=True)
        return text.splitlines(keepends=True)

    return "".join(difflib.unified_diff(lines(before), lines(after), *labels))


def plan_changes(
    desired: Sequence[Mapping[str, Any]],
    live: Mapping[ObjectRef, Mapping[str, Any]],
    *,
    instance: str,
    failed_paths: Iterable[str] = (),
    declared_runs: Iterable[ObjectRef] = (),
    finished_runs: Iterable[str] = (),
    retire: Mapping[ObjectRef, str] = MappingProxyType({}),
    held: Mapping[ObjectRef, str] = MappingProxyType({}),
    prune: PrunePolicy = PrunePolicy(),
    self_heal: bool = True,
    memo: HoldsMemo | None = None,
    unchanged: Collection[ObjectRef] = (),
) -> ChangeSet:
    """Compare desired with live objects.

    With ``memo`` (kept by the caller from one call to the next), a desired body and a
    live copy that are the very objects compared last time are not compared again;
    the memo is left holding this call's comparisons.

    ``declared_runs`` are the TrainingRuns still in Git: their
    earlier runs are kept. ``finished_runs`` names runs that finished before, so a
    run deleted by its TTL is not started again by an unchanged spec. ``retire``
    names runs to delete, and why; ``held`` names objects whose spec renders nothing
    yet (a model waiting for its training run): what is live of them is kept.
    ``unchanged`` are declared objects whose desired body is not at hand because
    the caller knows their outcome, unchanged (the last sync's, on the same inputs:
    see gitsync.focus); each must be live.
    """
    finished = frozenset(finished_runs)
    last: HoldsMemo = memo or {}
    compared: HoldsMemo = {}
    changes = [
        _compare(
            body,
            live.get(ObjectRef.of(body)),
            finished=finished,
            self_heal=self_heal,
            memo=last,
            compared=compared,
        )
        for body in desired
    ]
    if missing := [key for key in unchanged if key not in live]:
        raise ValueError(f"unchanged objects that are not live: {missing}")  # a caller's bug
    changes += [Change(key, Action.UNCHANGED, live=live[key]) for key in unchanged]
    if memo is not None:
        memo.clear()
        memo.update(compared)
    wanted = {change.key for change in changes}
    orphans = {
        key: obj
        for key, obj in live.items()
        if key not in wanted and _label(obj, LABEL_INSTANCE) == instance
    }
    failed, runs_in_git = frozenset(failed_paths), frozenset(declared_runs)
    kept, deletions, retired = [], [], []
    for key, current in sorted(orphans.items()):
        # A run of a TrainingRun whose file failed (or a policy denied) stays: its
        # schedule and historyLimit were read from a spec that is not in force.
        if key in retire and _annotation(current, ANNOTATION_SOURCE_PATH) not in failed:
            retired.append(Change(key, Action.DELETED, retire[key], live=current))
            continue
        reason = held.get(key) or _keep_reason(
            key, current, failed=failed, runs_in_git=runs_in_git, prune=prune
        )
        if reason:
            kept.append(Change(key, Action.SKIPPED, reason, live=current))
        else:
            deletions.append(Change(key, Action.DELETED, "no longer in Git", live=current))

    managed = sum(1 for obj in live.values() if _label(obj, LABEL_INSTANCE) == instance)
    refused = None
    if deletions and len(deletions) > prune.max_ratio * managed:
        refused = (
            f"refused to prune {len(deletions)} of {managed} managed objects: more than "
            f"{prune.max_ratio:.0%}; raise prune.maxRatio or restore the specs"
        )
        deletions = [Change(c.key, Action.SKIPPED, refused, live=c.live) for c in deletions]
    return ChangeSet((*changes, *kept, *deletions, *retired), prune_refused=refused)


def _compare(
    body: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    *,
    finished: frozenset[str],
    self_heal: bool,
    memo: HoldsMemo,
    compared: HoldsMemo,
) -> Change:
    key = ObjectRef.of(body)
    if current is None:
        if key.kind in JOB_KINDS and key.name in finished:
            return Change(key, Action.SKIPPED, "this run finished before; runs never restart")
        return Change(key, Action.CREATED, "new", desired=body)
    same_hash = _annotation(current, ANNOTATION_APPLIED_HASH) == _annotation(
        body, ANNOTATION_APPLIED_HASH
    )
    if not same_hash:
        return Change(key, Action.CONFIGURED, "changed in Git", body, current)
    last = memo.get(key)
    if last is not None and last[0] is body and last[1] is current:
        held = last[2]
    else:
        held = holds(current, comparable(normalize(body)))
    compared[key] = (body, current, held)
    if held:
        return Change(key, Action.UNCHANGED, desired=body, live=current)
    if not self_heal:
        return Change(key, Action.SKIPPED, "drifted; selfHeal is off", body, current, drift=True)
    return Change(key, Action.CONFIGURED, "drifted from Git", body, current, drift=True)


def _keep_reason(
    key: ObjectRef,
    current: Mapping[str, Any],
    *,
    failed: frozenset[str],
    runs_in_git: frozenset[ObjectRef],
    prune: PrunePolicy,
) -> str | None:
    """Why an object no longer declared must not be deleted, if it must not."""
    source = _annotation(current, ANNOTATION_SOURCE_PATH)
    run_of = _label(current, LABEL_TRAINING_RUN)
    if source in failed:
        return f"kept: its source {source} failed to load"
    if run_of and ObjectRef.spec("TrainingRun", key.namespace, run_of) in runs_in_git:
        return f"an earlier run of {run_of}; kept"
    if run_of and assess(current).health.finished:
        return "finished run kept until its TTL"
    if not prune.enabled:
        return "no longer in Git; prune is off"
    return None


def _annotation(obj: Mapping[str, Any], name: str) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(name)
    return str(value) if value is not None else None


def _label(obj: Mapping[str, Any], name: str) -> str | None:
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(name)
    return str(value) if value is not None else None
