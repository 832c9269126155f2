"""Audit: one timeline per spec, joining who changed it with what the cluster did.

Pure. The spec branch says who changed a spec file, when, why, and through which
merge; the status branch says when gitsync applied it, how its rollout went and
where it failed. ``gitsync history`` joins both, so "who changed what, when did it
reach the cluster, and how did it go" has one answer per spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gitsync.status_document import StatusDocument

__all__ = ["Event", "SpecCommit", "SpecInfo", "StatusCommit", "Timeline", "timelines"]


@dataclass(frozen=True, slots=True)
class SpecInfo:
    """Which spec a timeline is about: from its status document, or from the spec
    branch before gitsync has written one."""

    kind: str
    name: str
    namespace: str
    source: str
    #: The gitsync instance reporting on it ("" in documents of the old layout).
    instance: str

    @classmethod
    def of(cls, doc: StatusDocument) -> SpecInfo:
        return cls(
            kind=doc.kind,
            name=doc.name,
            namespace=doc.namespace,
            source=doc.source,
            instance=doc.instance,
        )


@dataclass(frozen=True, slots=True)
class SpecCommit:
    """A commit on the spec branch and the spec files it changed."""

    commit: str
    author: str
    at: datetime
    summary: str
    paths: frozenset[str]
    merge_of: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusCommit:
    """A commit on the status branch: the status documents it wrote, by path."""

    commit: str
    at: datetime
    summary: str
    source_commit: str
    documents: Mapping[str, StatusDocument]
    removed: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    kind: str  # "spec" | "status"
    commit: str
    text: str

    def as_dict(self) -> dict[str, str]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "commit": self.commit,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Timeline:
    kind: str
    namespace: str
    name: str
    instance: str
    sources: tuple[str, ...]
    events: tuple[Event, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "instance": self.instance,
            "sources": list(self.sources),
            "events": [e.as_dict() for e in self.events],
        }


def timelines(
    *,
    specs: Mapping[str, SpecInfo],
    spec_commits: Sequence[SpecCommit],
    status_commits: Sequence[StatusCommit],
    name: str | None = None,
    since: datetime | None = None,
) -> list[Timeline]:
    """A timeline for each spec known to the status branch (``specs``: path -> latest
    status document, or any document that ever existed), newest event first."""
    result = []
    for path, doc in sorted(specs.items()):
        if name is not None and doc.name != name:
            continue
        sources = {doc.source}
        sources |= {
            d.source
            for commit in status_commits
            for p, d in commit.documents.items()
            if p == path and d.source
        }
        events: list[Event] = []
        for change in spec_commits:
            touched = change.paths & sources
            if not touched:
                continue
            merged = ", ".join(c[:7] for c in change.merge_of)
            via = f" (merged from {merged})" if merged else ""
            events.append(
                Event(
                    change.at,
                    "spec",
                    change.commit,
                    f"{change.author}: {change.summary}{via} [{', '.join(sorted(touched))}]",
                )
            )
        for commit in status_commits:
            if path in commit.removed:
                events.append(Event(commit.at, "status", commit.commit, "removed from the cluster"))
                continue
            status = commit.documents.get(path)
            if status is None:
                continue
            rollout = status.rollout
            extra = f" (rollout {rollout.phase}, {rollout.traffic}%)" if rollout else ""
            events.append(
                Event(
                    commit.at,
                    "status",
                    commit.commit,
                    f"{status.phase.value}: {status.message}{extra} "
                    f"[source {commit.source_commit[:7]}]",
                )
            )
        if since is not None:
            events = [e for e in events if e.at >= since]
        events.sort(key=lambda e: (e.at, e.kind == "status"), reverse=True)
        result.append(
            Timeline(
                kind=doc.kind,
                namespace=doc.namespace,
                name=doc.name,
                instance=doc.instance,
                sources=tuple(sorted(s for s in sources if s)),
                events=tuple(events),
            )
        )
    return result
