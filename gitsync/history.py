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

__all__ = ["Event", "SpecCommit", "StatusCommit", "Timeline", "timelines"]


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
    documents: Mapping[str, Mapping[str, Any]]
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
    sources: tuple[str, ...]
    events: tuple[Event, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "sources": list(self.sources),
            "events": [e.as_dict() for e in self.events],
        }


def timelines(
    *,
    specs: Mapping[str, Mapping[str, Any]],
    spec_commits: Sequence[SpecCommit],
    status_commits: Sequence[StatusCommit],
    name: str | None = None,
    since: datetime | None = None,
) -> list[Timeline]:
    """A timeline for each spec known to the status branch (``specs``: path -> latest
    status document, or any document that ever existed), newest event first."""
    result = []
    for path, doc in sorted(specs.items()):
        if name is not None and doc.get("name") != name:
            continue
        sources = {str(doc.get("source"))}
        sources |= {
            str(d.get("source"))
            for commit in status_commits
            for p, d in commit.documents.items()
            if p == path and d.get("source")
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
            rollout = status.get("rollout") or {}
            extra = (
                f" (rollout {rollout.get('phase')}, {rollout.get('traffic')}%)" if rollout else ""
            )
            events.append(
                Event(
                    commit.at,
                    "status",
                    commit.commit,
                    f"{status.get('phase')}: {status.get('message')}{extra} "
                    f"[source {commit.source_commit[:7]}]",
                )
            )
        if since is not None:
            events = [e for e in events if e.at >= since]
        events.sort(key=lambda e: (e.at, e.kind == "status"), reverse=True)
        result.append(
            Timeline(
                kind=str(doc.get("kind")),
                namespace=str(doc.get("namespace") or ""),
                name=str(doc.get("name")),
                sources=tuple(sorted(s for s in sources if s and s != "None")),
                events=tuple(events),
            )
        )
    return result
