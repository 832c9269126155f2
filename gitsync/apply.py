"""Carry out a ChangeSet against the cluster with server-side apply.

The plan (:mod:`gitsync.diff`) says what may need writing; this module confirms each
candidate with a server-side dry-run, so only real changes are written, and then
writes with field manager ``gitsync``, forcing ownership: Git is the source of truth,
and a field someone took over with ``kubectl edit`` is drift to revert.

An error on one object is recorded on its :class:`Change` and the others go on;
only an unreachable API server stops the writes (nothing else could succeed). What was
done before it went away is returned all the same: those objects are live, and their
statuses must say so.

Objects are written by a pool of workers: the API server handles requests on all its
cores, and one writer waiting on each round trip leaves them idle. The client bounds
the rate (:class:`gitsync.clients.kube.TokenBucket`); the order that matters is kept
by running in steps, each after the one before has finished, and the results are
returned in the plan's order whatever order the workers finished in, so reports and
statuses do not depend on timing.

Writes go before deletions, and an object is not deleted while another object of its
source file failed to apply this cycle: that file did not go away, Git's content for
it just could not be stored (a manifest whose apiVersion changed now names another
object, whose apply fails). Only here is that known -- the plan cannot tell which
applies the API server will refuse -- so the guard is here, next to the writes; a
load failure is guarded earlier, by the plan.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from gitsync.clients.kube import KubeClient
from gitsync.diff import Action, Change, ChangeSet, normalize
from gitsync.errors import (
    ApiInvalidError,
    ApiUnavailableError,
    GitsyncError,
    LeadershipLostError,
    NotFoundError,
    TransientError,
)
from gitsync.loading import Diagnostic, Entry
from gitsync.plan import LiveView
from gitsync.render import LABEL_MANAGED_BY, MANAGER
from gitsync.types import ObjectRef

__all__ = ["Applied", "dry_run_views", "execute"]

#: Kinds other objects of the plan may need to exist first: they are written, all of
#: them, before anything else.
_DEFINITIONS: Final = frozenset({"CustomResourceDefinition", "Namespace"})
_WRITES: Final = frozenset({Action.CREATED, Action.CONFIGURED})

_Done = tuple[Change, Mapping[str, Any] | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    """What :func:`execute` did, change by change in the plan's order."""

    changes: ChangeSet
    #: The objects as the server stored them, by the writes that succeeded.
    written: Mapping[ObjectRef, Mapping[str, Any]]
    #: Why the API server stopped answering, or the leadership was lost, if either
    #: happened: the changes it cut short fail with this error, those done before are kept.
    interrupted: TransientError | None = None


class _Interruption:
    """The first ApiUnavailableError any worker met, or the leadership lost; after it
    nothing new starts."""

    def __init__(self, may_write: Callable[[], bool]) -> None:
        self._lock = threading.Lock()
        self._may_write = may_write
        self.error: TransientError | None = None

    def record(self, exc: TransientError) -> None:
        with self._lock:
            self.error = self.error or exc

    def cause(self) -> TransientError | None:
        """Why no write may start now, if one may not (asked before every write)."""
        if self.error is None and not self._may_write():
            self.record(LeadershipLostError("this replica no longer holds the leader lease"))
        return self.error


def execute(
    client: KubeClient,
    plan: ChangeSet,
    *,
    create_namespaces: bool,
    known_namespaces: set[str] | None = None,
    concurrency: int | None = None,
    may_write: Callable[[], bool] = lambda: True,
) -> Applied:
    """Apply the plan with ``concurrency`` writers (default: the client's).

    ``may_write`` is asked before each write starts; once it says no (this replica
    lost the leader lease), nothing new is written, as when the API server went away.

    In turn, each step waiting for the one before: the namespaces written objects go
    to, each once; CRDs and Namespaces of the plan; the other writes; the deletions.
    """
    known = known_namespaces if known_namespaces is not None else set()
    changes = plan.changes
    results = list(changes)
    written: dict[ObjectRef, Mapping[str, Any]] = {}
    interruption = _Interruption(may_write)
    writes = [i for i, change in enumerate(changes) if change.action in _WRITES]
    definitions = [i for i in writes if changes[i].key.kind in _DEFINITIONS]
    others = [i for i in writes if changes[i].key.kind not in _DEFINITIONS]
    deletions = [i for i, change in enumerate(changes) if change.action is Action.DELETED]
    with ThreadPoolExecutor(
        max_workers=concurrency or client.concurrency, thread_name_prefix="apply"
    ) as pool:

        def run(indices: Sequence[int], work: Callable[[Change], _Done]) -> None:
            # map() yields in submission order: results stay in the plan's order.
            done = pool.map(lambda i: _attempt(work, changes[i], interruption), indices)
            for index, (change, stored) in zip(indices, done, strict=True):
                results[index] = change
                if stored is not None:
                    written[change.key] = stored

        names = sorted({changes[i].key.namespace for i in writes} - known - {""})
        refusals = dict(
            zip(
                names,
                pool.map(
                    lambda name: _namespace_refusal(client, name, create_namespaces, interruption),
                    names,
                ),
                strict=True,
            )
        )
        known.update(name for name, refusal in refusals.items() if refusal is None)

        def write(change: Change) -> _Done:
            if (refusal := refusals.get(change.key.namespace)) is not None:
                return _failed(change, refusal), None
            return _write(client, change, interruption)

        run(definitions, write)
        if any(results[i].key.kind == "CustomResourceDefinition" for i in definitions):
            client.forget_discovery()  # the kinds those CRDs define are new
        run(others, write)
        unapplied = {
            results[i].source for i in writes if results[i].error and results[i].source is not None
        }
        run(deletions, lambda change: _delete(client, change, unapplied))
    return Applied(
        ChangeSet(tuple(results), prune_refused=plan.prune_refused),
        written,
        interrupted=interruption.error,
    )


def _attempt(work: Callable[[Change], _Done], change: Change, interruption: _Interruption) -> _Done:
    """Carry out one change; a failure is recorded on it, not raised."""
    if (cause := interruption.cause()) is not None:
        return _failed(change, cause, prefix="not attempted: "), None
    try:
        return work(change)
    except ApiUnavailableError as exc:
        interruption.record(exc)
        return _failed(change, exc), None
    except GitsyncError as exc:
        return _failed(change, exc), None


def _failed(change: Change, exc: GitsyncError, *, prefix: str = "") -> Change:
    return dataclasses.replace(change, error=prefix + str(exc), error_remedy=exc.remedy)


def _write(client: KubeClient, change: Change, interruption: _Interruption) -> _Done:
    if change.action is Action.CONFIGURED:
        return _configure(client, change, interruption)
    return change, _apply(client, change)


def _delete(client: KubeClient, change: Change, unapplied: Iterable[str | None]) -> _Done:
    if change.source in unapplied:
        kept = f"kept: another object of {change.source} failed to apply"
        return dataclasses.replace(change, action=Action.SKIPPED, reason=kept), None
    client.delete(
        _api_version(change),
        change.key.kind,
        change.key.name,
        namespace=change.key.namespace or None,
    )
    return change, None


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


def _configure(client: KubeClient, change: Change, interruption: _Interruption) -> _Done:
    preview = _apply(client, change, dry_run=True)
    if change.live is not None and normalize(preview) == normalize(change.live):
        # The server would store exactly what it has (values it normalises, such as
        # quantities, made the plan suspect a change): nothing to write.
        unchanged = dataclasses.replace(
            change, action=Action.UNCHANGED, reason="no effective change"
        )
        return unchanged, None
    # The dry-run may have waited long on a stalled server: ask again before writing.
    if (cause := interruption.cause()) is not None:
        return _failed(change, cause, prefix="not attempted: "), None
    return change, _apply(client, change)


def _namespace_refusal(
    client: KubeClient, name: str, create: bool, interruption: _Interruption
) -> GitsyncError | None:
    """Make sure namespace ``name`` exists; why not, if it cannot."""
    if (cause := interruption.cause()) is not None:
        return cause
    try:
        if client.get("v1", "Namespace", name) is not None:
            return None
        if not create:
            return NotFoundError(f"namespace {name} does not exist and createNamespaces is off")
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
    except ApiUnavailableError as exc:
        interruption.record(exc)
        return exc
    except GitsyncError as exc:
        return exc
    return None


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
