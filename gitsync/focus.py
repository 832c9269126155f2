"""Which specs a cycle must evaluate again, when it starts from a settled one.

A ``gitsync sync`` run after one commit to a repo of 1,000 specs rendered, checked
against the policies, planned and reported on all of them. Yet 999 had the same
inputs as in the last sync that settled. That sync left a record of what it read
(:mod:`gitsync.replay`). When the commit moved but nothing else it read did, a
spec's outcome is the settled cycle's again, as long as that outcome depends on
nothing but the spec's own file and what the record already vouches for. Such a
spec is *carried*: its object is unchanged and its status document is the one on
the status branch. The cycle evaluates, plans and reports on the rest, the
:class:`Focus`, and plans with every live object, so pruning and its guard see
exactly what a full cycle sees.

A spec carries only when all of these hold, each one an input of its outcome:

* the cycle read the same status branch commit, the same live objects (the
  listing's fingerprint) and the same kinds, and no wake-up time has come: the
  clock alone changes nothing before it;
* the settled cycle found every object unchanged: nothing skipped, held or kept,
  whose reasons a narrowed plan would not repeat;
* the commits between added or modified only loaded spec files: gitsync.yaml,
  the policies, other files, and any deletion mean a full cycle;
* the whole snapshot loaded without a diagnostic, and the branch holds no
  old-layout documents to adopt;
* the spec's file is not among the changed ones, and the commit that last changed
  it is the one its document names (a file changed and changed back between two
  syncs is otherwise the same blob from another commit);
* it is a plain ModelDeployment: not a canary (a rollout has timers), not served
  from a TrainingRun or an upstream model (those read other specs' outcomes),
  and its InferenceService is live. A TrainingRun, a manifest or a resolved model
  is always evaluated again; none of them is read by a carried spec.

Pure: the caller passes what it read, and a function for the one diff it may need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gitsync.clients.git import LastChanges, TreeChanges
from gitsync.inventory import Inventory
from gitsync.loading import LoadResult
from gitsync.replay import Settled
from gitsync.snapshot import Snapshot
from gitsync.spec_status import inference_service_key
from gitsync.specs import ModelDeployment
from gitsync.status_document import StatusDocument, status_path
from gitsync.types import ObjectRef

__all__ = ["Focus", "Listed", "narrow"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Focus:
    """The specs a cycle takes afresh, and the settled outcomes it carries."""

    #: The snapshot's entries that are evaluated, planned and reported on again.
    loaded: LoadResult
    #: Each carried spec's InferenceService -> the spec's status document.
    carried: Mapping[ObjectRef, StatusDocument]


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """What the cycle's LIST found: the objects, and how to compare the listing."""

    objects: Mapping[ObjectRef, Mapping[str, Any]]
    fingerprint: str | None
    kinds: tuple[tuple[str, str], ...]


def narrow(
    settled: Settled,
    *,
    snapshot: Snapshot,
    last_changes: LastChanges,
    inventory: Inventory,
    status_branch: str,
    listed: Listed,
    instance: str,
    now: datetime,
    diff: Callable[[str], TreeChanges],
) -> Focus | None:
    """The focus of a cycle that read ``snapshot``, ``inventory`` and ``listed``
    after ``settled``; None when it must take every spec afresh (see the module's
    rules). ``diff(old)`` gives the files changed from commit ``old`` to the
    snapshot's (it may raise a GitsyncError, which the caller handles as None)."""
    observed = settled.observed
    loaded = snapshot.loaded
    if (
        not settled.quiet
        or observed.head == snapshot.commit
        or observed.status_head != inventory.commit
        or settled.status_branch != status_branch
        or observed.live != listed.fingerprint
        or settled.kinds != listed.kinds
        or (settled.wake_at is not None and now >= settled.wake_at)
        or loaded.diagnostics
        or loaded.rejected
        or inventory.adopted
    ):
        return None
    changes = diff(observed.head)
    changed = changes.added.keys() | changes.modified.keys()
    if changes.deleted or not changed <= snapshot.blobs.keys():
        return None
    namespace = snapshot.config.defaults.namespace
    carried: dict[ObjectRef, StatusDocument] = {}
    again = []
    for entry in loaded.entries:
        spec = entry.spec
        doc = None
        if (
            entry.path not in changed
            and isinstance(spec, ModelDeployment)
            and not spec.spec.resolved
            and spec.spec.rollout.strategy != "canary"
        ):
            where = status_path(
                entry.kind, entry.namespace(namespace), entry.name, instance=instance
            )
            doc = inventory.documents.get(where)
        key = inference_service_key(entry, namespace)
        if (
            doc is not None
            and doc.source == entry.path
            and doc.source_commit == last_changes.by_path.get(entry.path, "")
            and key in listed.objects
        ):
            carried[key] = doc
        else:
            again.append(entry)
    if not carried:
        return None
    return Focus(loaded=replace(loaded, entries=tuple(again)), carried=carried)
