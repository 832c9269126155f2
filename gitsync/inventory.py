"""What the status branch holds, as the lookups a cycle needs.

The status branch is gitsync's memory between processes: the runs a TrainingRun
had (its jobs may be gone after their TTL), the schedule ticks it has seen, the
kinds it once applied (so their objects are still pruned when their last file is
gone), and the documents of specs whose file no longer parses. Reading it once into
an :class:`Inventory` keeps those questions in one place instead of scattered
lookups into raw documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gitsync.status import Phase, status_path

__all__ = ["Inventory"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Inventory:
    """The status documents of one commit of the status branch, by path."""

    commit: str | None = None
    documents: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The files as they are on the branch, to publish only what changed.
    files: Mapping[str, bytes] = field(default_factory=dict)

    def document(self, kind: str, namespace: str, name: str) -> Mapping[str, Any]:
        """The document of one spec; empty when it has none."""
        return self.documents.get(status_path(kind, namespace, name)) or _EMPTY

    def runs(self, namespace: str, name: str) -> list[Mapping[str, Any]]:
        """The runs a TrainingRun's document remembers, newest first."""
        runs = self.document("TrainingRun", namespace, name).get("runs") or []
        return [r for r in runs if isinstance(r, Mapping)]

    def schedule(self, namespace: str, name: str) -> Mapping[str, Any]:
        recorded = self.document("TrainingRun", namespace, name).get("schedule")
        return recorded if isinstance(recorded, Mapping) else _EMPTY

    def finished_runs(self) -> frozenset[str]:
        """Names of runs any document recorded as finished (a finished job that
        expired is not recreated)."""
        done = {Phase.SUCCEEDED.value, Phase.FAILED.value}
        return frozenset(
            str(r.get("name"))
            for doc in self.documents.values()
            for r in doc.get("runs") or []
            if isinstance(r, Mapping) and r.get("phase") in done
        )

    def applied_kinds(self) -> set[tuple[str, str]]:
        """(apiVersion, kind) of every resource a document says a spec applied."""
        kinds = set()
        for doc in self.documents.values():
            for resource in doc.get("resources") or []:
                api_version, kind, *_ = str(resource).split(" ")
                kinds.add((api_version, kind))
        return kinds

    def from_sources(self, paths: Iterable[str]) -> dict[str, Mapping[str, Any]]:
        """The documents of specs declared in ``paths``, by document path."""
        wanted = set(paths)
        return {p: d for p, d in self.documents.items() if d.get("source") in wanted}
