"""Judging entries: policy sets evaluated over specs, and what their verdicts mean.

Validation, plan and the daemon share this path, so that an entry denied by a policy
is treated alike everywhere: dropped like an invalid spec, its file protected from
pruning, its error reported at its line. :class:`VerdictMemo` lets the daemon
re-judge only the entries that changed since its last cycle; a :class:`VerdictStore`
lets a process remember what an earlier one judged (``gitsync sync`` is one process
per cycle), by a digest of everything a verdict depends on, so a remembered verdict
is never stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

from gitsync import __version__
from gitsync.canonical import exact_json
from gitsync.loading import Diagnostic, Entry, LoadResult, Rejected, Severity
from gitsync.policy import cel
from gitsync.policy.compile import Policy
from gitsync.policy.models import PolicyResult
from gitsync.types import ObjectRef

__all__ = ["PolicySet", "VerdictMemo", "VerdictStore", "Verdicts", "enforce", "entry_object"]

#: Bumped when what a verdict key covers changes, so older stored verdicts go unused.
_KEY_FORMAT: Final = 2


class VerdictStore(Protocol):
    """Policy results remembered by key (see :meth:`PolicySet.verdict_key`).

    A key is a digest of all a verdict depends on, so a store never needs to be
    invalidated; one that cannot vouch for what it holds returns None.
    """

    def get(self, key: str) -> tuple[PolicyResult, ...] | None: ...

    def put(self, key: str, results: Sequence[PolicyResult]) -> None: ...


def entry_object(entry: Entry) -> dict[str, Any]:
    """What ``object`` holds for a loaded entry: a manifest as-is, a spec as written
    (the fields the user set, camelCase; defaults are not filled in)."""
    if entry.spec is not None:
        dumped: dict[str, Any] = entry.spec.model_dump(
            mode="json", by_alias=True, exclude_unset=True
        )
        return dumped
    plain: dict[str, Any] = cel.plain(entry.manifest or {})
    return plain


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Loaded policies, evaluated together against one object at a time."""

    policies: tuple[Policy, ...] = ()
    #: What the policies' verdicts depend on: every document (params included) and
    #: the gitsync that evaluates them.
    digest: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        documents = [p.document.model_dump(mode="json", by_alias=True) for p in self.policies]
        payload = orjson.dumps(
            [_KEY_FORMAT, __version__, cel.ENGINE_VERSION, documents], option=orjson.OPT_SORT_KEYS
        )
        object.__setattr__(self, "digest", hashlib.sha256(payload).hexdigest())

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(policy.name for policy in self.policies)

    def get(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)

    def evaluate(
        self,
        *,
        kind: str,
        object: Mapping[str, Any],
        rendered: Mapping[str, Any] | None,
        old_object: Mapping[str, Any] | None,
        namespace: str,
        labels: Mapping[str, str] | None = None,
    ) -> list[PolicyResult]:
        """One result per policy that selects the object, in policy order.

        ``namespace`` is where the object lands (the repo default filled in; empty
        for cluster-scoped kinds); ``labels`` default to ``object.metadata.labels``.
        """
        inputs = _inputs(kind, object, rendered, old_object, namespace)
        return self._run(inputs, kind=kind, namespace=namespace, labels=labels)

    def _run(
        self,
        inputs: Mapping[str, Any],
        *,
        kind: str,
        namespace: str,
        labels: Mapping[str, str] | None,
    ) -> list[PolicyResult]:
        if labels is None:
            metadata = inputs["object"].get("metadata")
            found = metadata.get("labels") if isinstance(metadata, dict) else None
            labels = found if isinstance(found, dict) else {}
        rendered = inputs["rendered"]
        rendered_kind = rendered.get("kind") if isinstance(rendered, dict) else None
        results = []
        for policy in self.policies:
            if not policy.matches(
                kind=kind,
                namespace=namespace,
                labels=labels,
                rendered_kind=rendered_kind if isinstance(rendered_kind, str) else None,
            ):
                continue
            if (result := policy.evaluate(inputs)) is not None:
                results.append(result)
        return results

    def verdict_key(self, inputs: Mapping[str, Any]) -> str | None:
        """A digest of the policies and of the exact inputs they judge (kind and
        namespace are in ``request``); None for inputs that are not plain JSON.

        Each input is encoded on its own (JSON holds no NUL, so the joined parts
        cannot be read two ways): an absent ``oldObject`` is a null, and one null in
        the whole would make :func:`exact_json` look at every value for a NaN."""
        digest = hashlib.sha256(self.digest.encode())
        for name in sorted(inputs):
            if (encoded := exact_json(inputs[name])) is None:
                return None
            digest.update(b"\0" + name.encode() + b"\0" + encoded)
        return digest.hexdigest()

    def evaluate_entry(
        self,
        entry: Entry,
        *,
        rendered: Mapping[str, Any] | None,
        default_namespace: str,
        old_object: Mapping[str, Any] | None = None,
        store: VerdictStore | None = None,
        written: Callable[[Entry], Mapping[str, Any]] = entry_object,
    ) -> list[PolicyResult]:
        """:meth:`evaluate` for a loaded entry and its rendering; with ``store``, the
        results it remembers for these very inputs, else evaluated and remembered.
        ``written`` gives the entry as written (a caller that keeps it passes its own)."""
        kind, namespace = entry.kind, entry.namespace(default_namespace)
        current = written(entry)
        # Keyed by the inputs as they are, not as converted for CEL: the conversion is
        # a function of them, and a remembered verdict then needs no conversion at all.
        key = (
            None
            if store is None
            else self.verdict_key(
                {
                    "object": current,
                    "oldObject": old_object,
                    "rendered": rendered,
                    "request": _request(kind, namespace, old_object),
                }
            )
        )
        if store is not None and key is not None and (known := store.get(key)) is not None:
            return list(known)
        inputs = _inputs(kind, current, rendered, old_object, namespace)
        results = self._run(inputs, kind=kind, namespace=namespace, labels=None)
        if store is not None and key is not None:
            store.put(key, results)
        return results


def _inputs(
    kind: str,
    current: Mapping[str, Any],
    rendered: Mapping[str, Any] | None,
    old_object: Mapping[str, Any] | None,
    namespace: str,
) -> dict[str, Any]:
    """What every policy sees, as plain data (one copy for all of them)."""
    return {
        "object": cel.plain(current),
        "oldObject": cel.plain(old_object),
        "rendered": cel.plain(rendered),
        "request": cel.plain(_request(kind, namespace, old_object)),
    }


def _request(kind: str, namespace: str, old_object: Mapping[str, Any] | None) -> dict[str, str]:
    return {
        "kind": kind,
        "namespace": namespace,
        "operation": "CREATE" if old_object is None else "UPDATE",
    }


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Every policy result of one set of entries, and what that means for them."""

    results: tuple[tuple[Entry, PolicyResult], ...]
    #: Entries that stay: none of their deny policies failed.
    entries: tuple[Entry, ...]
    #: One error per failed deny policy, one warning per failed warn policy.
    diagnostics: tuple[Diagnostic, ...]

    def applied_to(self, loaded: LoadResult) -> LoadResult:
        """``loaded`` with denied entries treated as invalid: dropped, their files
        protected from pruning, their errors reported, their statuses Invalid."""
        kept = {(entry.path, entry.document) for entry in self.entries}
        denied = [e for e in loaded.entries if (e.path, e.document) not in kept]
        errors = [d for d in self.diagnostics if d.severity is Severity.ERROR]
        return LoadResult(
            entries=tuple(e for e in loaded.entries if (e.path, e.document) in kept),
            diagnostics=tuple(
                sorted([*loaded.diagnostics, *errors], key=lambda d: (d.path, d.line, d.column))
            ),
            failed_paths=loaded.failed_paths | {entry.path for entry in denied},
            rejected=(
                *loaded.rejected,
                *(
                    Rejected(entry.path, entry.kind, entry.name, entry.namespace(""))
                    for entry in denied
                ),
            ),
        )


#: What :func:`enforce` remembers per entry (by file and document index): the exact
#: inputs (compared by identity, since the caller's caches hand back the same objects
#: while nothing changed) and the results they gave.
VerdictMemo = dict[tuple[str, int], tuple[tuple[object, ...], list[PolicyResult]]]


def enforce(
    policies: PolicySet,
    entries: Sequence[tuple[Entry, Mapping[str, Any] | None]],
    *,
    default_namespace: str,
    old_objects: Mapping[ObjectRef, Mapping[str, Any]] | None = None,
    memo: VerdictMemo | None = None,
    store: VerdictStore | None = None,
    written: Callable[[Entry], Mapping[str, Any]] = entry_object,
) -> Verdicts:
    """Run the policies over each entry and its rendering.

    With ``memo`` (kept by the caller from one call to the next), an entry whose spec,
    rendering, old object and policies are the very same objects as last time is not
    evaluated again: a daemon cycle re-judges only what changed. With ``store``, an
    entry judged before on the very same inputs (by any process) is not either.

    ``old_objects`` (by identity: the spec as it was at the base revision)
    feeds ``oldObject`` for transition rules. An entry failing a deny policy is
    dropped from :attr:`Verdicts.entries` and gets an error diagnostic at its line, so
    callers treat it like an invalid spec: not applied, nothing of its file pruned.
    ``written`` gives each entry as written, as :func:`entry_object` does: a caller
    that keeps those (for the next call's ``old_objects``) passes its own, so none is
    dumped twice.
    """
    old = old_objects or {}
    results: list[tuple[Entry, PolicyResult]] = []
    kept: list[Entry] = []
    diagnostics: list[Diagnostic] = []
    seen: VerdictMemo = {}
    for entry, rendered in entries:
        old_object = old.get(entry.key(default_namespace))
        inputs = (policies, entry, rendered, old_object)
        where = (entry.path, entry.document)
        cached = (memo or {}).get(where)
        if cached is not None and all(a is b for a, b in zip(cached[0], inputs, strict=True)):
            outcome = cached[1]
        else:
            outcome = policies.evaluate_entry(
                entry,
                rendered=rendered,
                default_namespace=default_namespace,
                old_object=old_object,
                store=store,
                written=written,
            )
        seen[where] = (inputs, outcome)
        denied = False
        for result in outcome:
            results.append((entry, result))
            if result.passed:
                continue
            denied = denied or result.denied
            severity = Severity.ERROR if result.denied else Severity.WARNING
            verb = "denied" if result.denied else "warning"
            diagnostics.append(
                Diagnostic(
                    entry.path,
                    entry.line,
                    1,
                    f"{verb} by policy {result.policy}: {result.message}",
                    severity=severity,
                )
            )
        if not denied:
            kept.append(entry)
    if memo is not None:
        memo.clear()
        memo.update(seen)
    return Verdicts(tuple(results), tuple(kept), tuple(diagnostics))
