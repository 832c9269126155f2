"""Which specs a cycle must take afresh, when it starts from the last sync's ledger.

A ``gitsync sync`` run after one commit to a repo of 1,000 specs rendered, checked
against the policies, planned and reported on all of them, though 999 had the same
inputs as in the sync before. That sync left a ledger (:class:`gitsync.replay.Ledger`):
the objects it found unchanged and the status documents the branch held after it. A
spec whose outcome depends on nothing but its own file, its own object and its own
document, none of which moved since, has that sync's outcome again. Such a spec is
*carried*: its object is unchanged and its status document is the one on the branch.
The cycle evaluates, plans and reports on the rest, the :class:`Focus`, and plans with
every live object, so pruning and its guard see exactly what a full cycle sees.

The cycle as a whole carries nothing unless:

* the ledger is of the same status branch and listed the same kinds, and no wake-up
  time has come (the clock alone changes nothing before it);
* the commits since added or modified only loaded spec files: gitsync.yaml, the
  policies, other files, and any deletion mean a full cycle;
* the whole snapshot loaded without a diagnostic, and the branch holds no old-layout
  documents to adopt.

Then one spec carries when all of these hold, each one an input of its outcome:

* it is a plain ModelDeployment: not a canary (a rollout has timers), not served
  from a TrainingRun or an upstream model (those read other specs' outcomes); a
  TrainingRun, a manifest or a resolved model is always taken afresh, and none of
  them is read by a carried spec;
* its file is not among the changed ones, and the commit that last changed it is the
  one its document names (a file changed and changed back between two syncs is
  otherwise the same blob from another commit);
* the ledger found its InferenceService unchanged, and the listing has it at the
  same uid and resourceVersion;
* its status document is the blob the ledger left.

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
from gitsync.replay import Ledger, version_of
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
    """What the cycle's LIST found: the objects, and of which kinds."""

    objects: Mapping[ObjectRef, Mapping[str, Any]]
    kinds: tuple[tuple[str, str], ...]


def narrow(
    ledger: Ledger,
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
    after the sync that left ``ledger``; None when it must take every spec afresh (see
    the module's rules). ``diff(old)`` gives the files changed from commit ``old`` to
    the snapshot's (it may raise a GitsyncError, which the caller handles as None)."""
    loaded = snapshot.loaded
    if (
        ledger.status_branch != status_branch
        or ledger.kinds != listed.kinds
        or (ledger.wake_at is not None and now >= ledger.wake_at)
        or loaded.diagnostics
        or loaded.rejected
        or inventory.adopted
    ):
        return None
    changes = diff(ledger.head)
    changed = changes.added.keys() | changes.modified.keys()
    if changes.deleted or not changed <= snapshot.blobs.keys():
        return None
    namespace = snapshot.config.defaults.namespace
    carried: dict[ObjectRef, StatusDocument] = {}
    again = []
    for entry in loaded.entries:
        spec = entry.spec
        key = inference_service_key(entry, namespace)
        doc = None
        if (
            entry.path not in changed
            and isinstance(spec, ModelDeployment)
            and not spec.spec.resolved
            and spec.spec.rollout.strategy != "canary"
            and (live := listed.objects.get(key)) is not None
            and ledger.unchanged.get(key) == version_of(live)
        ):
            where = status_path(
                entry.kind, entry.namespace(namespace), entry.name, instance=instance
            )
            if inventory.files.get(where) == ledger.documents.get(where, ""):
                doc = inventory.documents.get(where)
        if (
            doc is not None
            and doc.source == entry.path
            and doc.source_commit == last_changes.by_path.get(entry.path, "")
        ):
            carried[key] = doc
        else:
            again.append(entry)
    if not carried:
        return None
    return Focus(loaded=replace(loaded, entries=tuple(again)), carried=carried)
