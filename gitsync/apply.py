"""Carry out a ChangeSet against the cluster with server-side apply.

The plan (:mod:`gitsync.diff`) says what may need writing; this module confirms each
candidate with a server-side dry-run, so only real changes are written, and then
writes with field manager ``gitsync``, forcing ownership: Git is the source of truth,
and a field someone took over with ``kubectl edit`` is drift to revert.

An error on one object is recorded on its :class:`Change` and the others go on;
only an unreachable API server stops the cycle (nothing else could succeed).

Writes go before deletions, and an object is not deleted while another object of its
source file failed to apply this cycle: that file did not go away, Git's content for
it just could not be stored (a manifest whose apiVersion changed now names another
object, whose apply fails). Only here is that known -- the plan cannot tell which
applies the API server will refuse -- so the guard is here, next to the writes; a
load failure is guarded earlier, by the plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from gitsync.clients.kube import KubeClient
from gitsync.diff import Action, Change, ChangeSet, normalize
from gitsync.errors import ApiInvalidError, ApiUnavailableError, GitsyncError, NotFoundError
from gitsync.loading import Diagnostic, Entry
from gitsync.plan import LiveView
from gitsync.render import LABEL_MANAGED_BY, MANAGER
from gitsync.types import ObjectRef

__all__ = ["dry_run_views", "execute"]


def execute(
    client: KubeClient,
    plan: ChangeSet,
    *,
    create_namespaces: bool,
    known_namespaces: set[str] | None = None,
) -> tuple[ChangeSet, dict[ObjectRef, Mapping[str, Any]]]:
    """Apply the plan; return what happened and the live objects written."""
    namespaces = known_namespaces if known_namespaces is not None else set()
    written: dict[ObjectRef, Mapping[str, Any]] = {}
    outcome = list(plan.changes)
    unapplied: set[str] = set()
    deletions_last = sorted(range(len(outcome)), key=lambda i: outcome[i].action is Action.DELETED)
    for index in deletions_last:
        change = outcome[index]
        if change.action is Action.DELETED and change.source in unapplied:
            outcome[index] = dataclasses.replace(
                change,
                action=Action.SKIPPED,
                reason=f"kept: another object of {change.source} failed to apply",
            )
            continue
        try:
            outcome[index] = _carry_out(client, change, written, namespaces, create_namespaces)
        except ApiUnavailableError:
            raise
        except GitsyncError as exc:
            outcome[index] = dataclasses.replace(change, error=str(exc), error_remedy=exc.remedy)
            if change.desired is not None and change.source is not None:
                unapplied.add(change.source)
    return ChangeSet(tuple(outcome), prune_refused=plan.prune_refused), written


def _carry_out(
    client: KubeClient,
    change: Change,
    written: dict[ObjectRef, Mapping[str, Any]],
    namespaces: set[str],
    create_namespaces: bool,
) -> Change:
    if change.action in {Action.CREATED, Action.CONFIGURED}:
        _ensure_namespace(client, change.key.namespace, namespaces, create=create_namespaces)
        if change.action is Action.CONFIGURED:
            return _configure(client, change, written)
        written[change.key] = _apply(client, change)
    elif change.action is Action.DELETED:
        client.delete(
            _api_version(change),
            change.key.kind,
            change.key.name,
            namespace=change.key.namespace or None,
        )
    return change


def _api_version(change: Change) -> str:
    source = change.desired or change.live or {}
    return str(source["apiVersion"])


def _apply(client: KubeClient, change: Change, *, dry_run: bool = False) -> dict[str, Any]:
    assert change.desired is not None  # noqa: S101 - CREATED/CONFIGURED always carry it
    stored = client.apply(change.desired, field_manager=MANAGER, force=True, dry_run=dry_run)
    # Nothing downstream reads managedFields; for thousands of objects they are the
    # bulk of what a first sync would hold in memory.
    (stored.get("metadata") or {}).pop("managedFields", None)
    return stored


def _configure(
    client: KubeClient, change: Change, written: dict[ObjectRef, Mapping[str, Any]]
) -> Change:
    preview = _apply(client, change, dry_run=True)
    if change.live is not None and normalize(preview) == normalize(change.live):
        # The server would store exactly what it has (values it normalises, such as
        # quantities, made the plan suspect a change): nothing to write.
        return dataclasses.replace(change, action=Action.UNCHANGED, reason="no effective change")
    written[change.key] = _apply(client, change)
    return change


def _ensure_namespace(client: KubeClient, name: str, known: set[str], *, create: bool) -> None:
    if not name or name in known:
        return
    if client.get("v1", "Namespace", name) is None:
        if not create:
            raise NotFoundError(f"namespace {name} does not exist and createNamespaces is off")
        # Labelled as ours but without the instance label: a namespace is never
        # pruned, since deleting it would delete everything in it.
        client.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: MANAGER}},
            },
            field_manager=MANAGER,
        )
    known.add(name)


def dry_run_views(
    client: KubeClient,
    rendered: Sequence[tuple[Entry, Mapping[str, Any] | None]],
    diagnostics: list[Diagnostic],
) -> dict[ObjectRef, LiveView]:
    """For `gitsync plan`: each object's live copy next to a server-side dry-run of
    applying it. An object the server rejects becomes a diagnostic on its spec."""
    views: dict[ObjectRef, LiveView] = {}
    for entry, body in rendered:
        if body is None:
            continue  # nothing to apply yet: nothing to compare
        key = ObjectRef.of(body)
        live = client.get(
            str(body["apiVersion"]), key.kind, key.name, namespace=key.namespace or None
        )
        try:
            preview = client.apply(body, field_manager=MANAGER, force=True, dry_run=True)
        except NotFoundError:
            preview = dict(body)  # its namespace does not exist yet: it will be created
        except ApiInvalidError as exc:
            diagnostics.append(
                Diagnostic(entry.path, entry.line, 1, f"rejected by the API server: {exc}")
            )
            continue
        views[key] = LiveView(live=live, dry_run=preview)
    return views
