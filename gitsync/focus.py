"""Which specs a cycle must take afresh, when it starts from the last sync's ledger.

A ``gitsync sync`` run after one commit to a repo of 1,000 specs rendered, checked
against the policies, planned and reported on all of them, though 999 had the same
inputs as in the sync before. That sync left a ledger (:mod:`gitsync.ledger`): the
objects it found unchanged and the status documents the branch held after it. A spec
whose outcome depends on nothing but its own file, its own object and its own
document, none of which moved since, has that sync's outcome again. Such a spec is
*carried*: its object is unchanged and its status document is the one on the branch.
The cycle evaluates, plans and reports on the rest, the :class:`Focus`, and plans with
every live object, so pruning and its guard see exactly what a full cycle sees.

The cycle as a whole carries nothing unless:

* the ledger is of the same status branch and listed the same kinds, and no wake-up
  time has come (the clock alone changes nothing before it);
* gitsync.yaml and the policies' folders are as the ledger's commit had them, and
  no spec file was deleted since (a file outside them that is no spec, a README, may
  change: it is no input);
* the whole snapshot loaded without a diagnostic, and the branch holds no old-layout
  documents to adopt.

Then one spec carries when all of these hold, each one an input of its outcome:

* it is a plain ModelDeployment: not a canary (a rollout has timers), not served
  from a TrainingRun or an upstream model (those read other specs' outcomes); a
  TrainingRun, a manifest or a resolved model is always taken afresh, and none of
  them is read by a carried spec;
* its file did not change, and the commit that last changed it is the one its
  document names (a file changed and changed back between two syncs is otherwise the
  same blob from another commit);
* the ledger found its InferenceService unchanged, and the listing has it at the
  same uid and resourceVersion;
* its status document is the blob the ledger left;
* every other spec of its file carries too: a file is taken afresh or carried whole,
  since a file one of whose documents fails (a policy denies it) is a failed file
  for all of them;
* nothing taken afresh renders its InferenceService as well (a manifest of the same
  name): whose write lands there is for the full plan to say.

Pure: the caller passes what it read, and a function for the one diff it may need.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gitsync.clients.git import LastChanges, TreeChanges
from gitsync.inventory import Inventory
from gitsync.ledger import Kind, Ledger, version_of
from gitsync.loading import CONFIG_FILE, Entry, LoadResult, select_paths
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
    kinds: tuple[Kind, ...]


def narrow(
    ledger: Ledger,
    *,
    snapshot: Snapshot,
    root: str,
    last_changes: LastChanges,
    inventory: Inventory,
    status_branch: str,
    listed: Listed,
    instance: str,
    now: datetime,
    diff: Callable[[str], TreeChanges],
) -> Focus | None:
    """The focus of a cycle that read ``snapshot`` (of spec folder ``root``),
    ``inventory`` and ``listed`` after the sync that left ``ledger``; None when it must
    take every spec afresh (see the module's rules). ``diff(old)`` gives the files
    changed under ``root`` from commit ``old`` to the snapshot's (it may raise a
    GitError, which the caller takes as None)."""
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
    if _moved_an_input(changes, snapshot=snapshot, root=root):
        return None
    namespace = snapshot.config.defaults.namespace
    changed = changes.added.keys() | changes.modified.keys()
    candidates: dict[ObjectRef, StatusDocument] = {}
    again: set[str] = set()  # the files taken afresh
    for entry in loaded.entries:
        doc = _carried(
            entry,
            ledger=ledger,
            changed=changed,
            last_changes=last_changes,
            inventory=inventory,
            listed=listed,
            namespace=namespace,
            instance=instance,
        )
        if doc is None:
            again.add(entry.path)
        else:
            candidates[inference_service_key(entry, namespace)] = doc
    while True:  # until no file taken afresh renders a carried object
        rendered = {_key(e, namespace) for e in loaded.entries if e.path in again}
        clashing = {candidates[key].source for key in rendered & candidates.keys()}
        if not clashing - again:
            break
        again |= clashing
    carried = {key: doc for key, doc in candidates.items() if doc.source not in again}
    if not carried:
        return None
    fresh = tuple(entry for entry in loaded.entries if entry.path in again)
    return Focus(loaded=replace(loaded, entries=fresh), carried=carried)


def _moved_an_input(changes: TreeChanges, *, snapshot: Snapshot, root: str) -> bool:
    """Whether the files changed since are more than some spec files changed or added:
    gitsync.yaml, a policy, or a spec file deleted."""
    prefix = f"{root}/" if root else ""
    config = f"{prefix}{CONFIG_FILE}"
    policies = tuple(f"{prefix}{folder.strip('/')}/" for folder in snapshot.config.policies)
    if any(
        path == config or path.startswith(policies)
        for path in changes.added.keys() | changes.modified.keys() | changes.deleted.keys()
    ):
        return True
    return bool(select_paths(changes.deleted, root=root, config=snapshot.config))


def _carried(
    entry: Entry,
    *,
    ledger: Ledger,
    changed: Collection[str],
    last_changes: LastChanges,
    inventory: Inventory,
    listed: Listed,
    namespace: str,
    instance: str,
) -> StatusDocument | None:
    """The status document of ``entry`` when it is a plain model whose file did not
    change and whose object and document are the ledger's; None when it must be
    taken afresh (whatever the other documents of its file)."""
    spec = entry.spec
    if (
        entry.path in changed
        or not isinstance(spec, ModelDeployment)
        or spec.spec.resolved
        or spec.spec.rollout.strategy == "canary"
    ):
        return None
    key = inference_service_key(entry, namespace)
    live = listed.objects.get(key)
    if live is None or ledger.unchanged.get(key) != version_of(live):
        return None
    where = status_path(entry.kind, entry.namespace(namespace), entry.name, instance=instance)
    if inventory.files.get(where) != ledger.documents.get(where, ""):
        return None
    doc = inventory.documents.get(where)
    if (
        doc is None
        or doc.source != entry.path
        or doc.source_commit != last_changes.by_path.get(entry.path, "")
    ):
        return None
    return doc


def _key(entry: Entry, namespace: str) -> ObjectRef:
    """The object an entry taken afresh may render that a carried model's could be."""
    if entry.manifest is not None:
        ref = ObjectRef.of(entry.manifest)
        return ref if ref.namespace else replace(ref, namespace=namespace)
    return inference_service_key(entry, namespace)
