"""The one evaluation path: a snapshot's entries rendered, judged by the policies,
and the denied ones dropped as invalid.

``gitsync sync``, ``run``, ``plan`` and ``validate`` all call :meth:`Evaluator.evaluate`,
so a spec means the same to each of them. An :class:`Evaluator` kept from one call
to the next (the daemon's) renders and judges again only what changed: renderings
are remembered by blob id and document index (and what the rendering depends on
beyond the file), policy results by the identity of their inputs. Given a
:class:`~gitsync.policy.VerdictStore`, it also remembers verdicts across processes
(``gitsync sync`` starts afresh each cycle; judging is most of what it would redo).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitsync.errors import OverrideError
from gitsync.loading import Diagnostic, Entry, LoadResult, Rejected
from gitsync.policy import (
    PolicySet,
    VerdictMemo,
    Verdicts,
    VerdictStore,
    enforce,
    entry_object,
)
from gitsync.render import RenderContext, pending, render
from gitsync.specs import API_VERSION
from gitsync.training import resolution
from gitsync.types import ObjectRef

__all__ = ["Evaluation", "Evaluator", "spec_objects"]
#: What a policy judges of an entry that renders to nothing yet (see training.preview).
Preview = Callable[[Entry], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Evaluation:
    #: The snapshot's load result with denied entries turned invalid.
    loaded: LoadResult
    #: What each entry of ``loaded`` renders to; None while it waits on the cluster
    #: (a model trained by a run not finished yet, a scheduled run between ticks).
    desired: tuple[dict[str, Any] | None, ...]
    verdicts: Verdicts
    #: Each accepted spec as written, for ``oldObject`` the next time.
    accepted: Mapping[ObjectRef, Mapping[str, Any]] = field(default_factory=dict)

    def pairs(self) -> list[tuple[Entry, dict[str, Any] | None]]:
        return list(zip(self.loaded.entries, self.desired, strict=True))


def spec_objects(entries: Iterable[Entry], *, default_namespace: str) -> dict[ObjectRef, Any]:
    """Each entry as written, by identity: the ``oldObject`` of a base revision."""
    return {e.key(default_namespace): entry_object(e) for e in entries}


class Evaluator:
    """Evaluates snapshots; remembers what it can between calls."""

    def __init__(self, *, store: VerdictStore | None = None) -> None:
        """``store`` remembers verdicts beyond this evaluator (a disk cache)."""
        self._store = store
        self._rendered: dict[tuple[object, ...], dict[str, Any]] = {}
        self._objects: dict[tuple[str, int], tuple[Entry, dict[str, Any]]] = {}
        self._verdicts: VerdictMemo = {}
        #: The specs as last accepted: a denied change must not become the base its
        #: own next attempt is judged against.
        self._accepted: dict[ObjectRef, Mapping[str, Any]] = {}

    def evaluate(
        self,
        loaded: LoadResult,
        *,
        policies: PolicySet,
        context: RenderContext,
        blobs: Mapping[str, str],
        old_objects: Mapping[ObjectRef, Mapping[str, Any]] | None = None,
        preview: Preview | None = None,
    ) -> Evaluation:
        """``old_objects`` default to the specs this evaluator accepted last time."""
        namespace = context.default_namespace
        rendered: dict[tuple[object, ...], dict[str, Any]] = {}
        failures: dict[tuple[str, int], Diagnostic] = {}
        bodies = [
            self._render(entry, context, blobs, rendered, failures) for entry in loaded.entries
        ]
        self._rendered = rendered
        if failures:
            loaded, bodies = _without_unrenderable(loaded, bodies, failures)
        verdicts = enforce(
            policies,
            [
                (entry, body if body is not None or preview is None else preview(entry))
                for entry, body in zip(loaded.entries, bodies, strict=True)
            ],
            default_namespace=namespace,
            old_objects=self._accepted if old_objects is None else old_objects,
            memo=self._verdicts,
            store=self._store,
            written=self._object,
        )
        kept = {_entry_key(e) for e in verdicts.entries}
        desired = tuple(
            body for e, body in zip(loaded.entries, bodies, strict=True) if _entry_key(e) in kept
        )
        accepted = {e.key(namespace): self._object(e) for e in verdicts.entries}
        denied = {e.key(namespace) for e in loaded.entries if _entry_key(e) not in kept}
        self._objects = {_entry_key(e): self._objects[_entry_key(e)] for e in verdicts.entries}
        self._accepted = {
            **{k: v for k, v in self._accepted.items() if k in denied},
            **accepted,
        }
        return Evaluation(
            loaded=verdicts.applied_to(loaded),
            desired=desired,
            verdicts=verdicts,
            accepted=accepted,
        )

    def _object(self, entry: Entry) -> dict[str, Any]:
        """The spec as written, the same object while the entry is (so the policy memo
        recognises an unchanged oldObject by identity)."""
        cached = self._objects.get(_entry_key(entry))
        if cached is None or cached[0] is not entry:
            cached = (entry, entry_object(entry))
            self._objects[_entry_key(entry)] = cached
        return cached[1]

    def _render(
        self,
        entry: Entry,
        context: RenderContext,
        blobs: Mapping[str, str],
        rendered: dict[tuple[object, ...], dict[str, Any]],
        failures: dict[tuple[str, int], Diagnostic],
    ) -> dict[str, Any] | None:
        """The entry's body, the one rendered last time while its inputs are the same;
        ``rendered`` collects this call's bodies (what is kept for the next), and
        ``failures`` the error of each entry whose overrides do not apply."""
        if pending(entry, context) is not None:
            return None
        key = (
            blobs.get(entry.path, ""),
            entry.path,
            entry.document,
            context.instance,
            context.source_commits.get(entry.path, ""),
            context.default_namespace,
            resolution(entry, context),
        )
        body = self._rendered.get(key)
        if body is None:
            try:
                body = render(entry, context)
            except OverrideError as exc:
                line, column = entry.override_position(exc.index)
                failures[_entry_key(entry)] = Diagnostic(
                    entry.path, line, column, str(exc), field=f"spec.overrides[{exc.index}]"
                )
                return None
        rendered[key] = body
        return body


def _without_unrenderable(
    loaded: LoadResult,
    bodies: list[dict[str, Any] | None],
    failures: Mapping[tuple[str, int], Diagnostic],
) -> tuple[LoadResult, list[dict[str, Any] | None]]:
    """``loaded`` without the entries that failed to render, which are invalid as if
    they had failed to load: their objects kept, never pruned, their status Invalid."""
    pairs = list(zip(loaded.entries, bodies, strict=True))
    kept = [(entry, body) for entry, body in pairs if _entry_key(entry) not in failures]
    dropped = [entry for entry, _ in pairs if _entry_key(entry) in failures]
    result = LoadResult(
        entries=tuple(entry for entry, _ in kept),
        diagnostics=tuple(
            sorted(
                [*loaded.diagnostics, *failures.values()],
                key=lambda d: (d.path, d.line, d.column),
            )
        ),
        failed_paths=loaded.failed_paths | {entry.path for entry in dropped},
        rejected=(
            *loaded.rejected,
            *(Rejected(e.path, e.kind, e.name, e.namespace(""), API_VERSION) for e in dropped),
        ),
    )
    return result, [body for _, body in kept]


def _entry_key(entry: Entry) -> tuple[str, int]:
    return entry.path, entry.document
