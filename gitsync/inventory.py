"""What the status branch holds, as the lookups a cycle needs.

The status branch is gitsync's memory between processes: the runs a TrainingRun
had (its jobs may be gone after their TTL), the schedule ticks it has seen, the
kinds it once applied (so their objects are still pruned when their last file is
gone), and the documents of specs whose file no longer parses. Reading it once into
an :class:`Inventory` keeps those questions in one place instead of scattered
lookups into raw documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gitsync.status_document import Phase, RunRecord, ScheduleInfo, StatusDocument, status_path
from gitsync.types import ObjectRef, parse_resource

__all__ = ["Inventory"]


@dataclass(frozen=True, slots=True)
class Inventory:
    """One instance's status documents of one commit of the status branch, by path."""

    instance: str
    commit: str | None = None
    documents: Mapping[str, StatusDocument] = field(default_factory=dict)
    #: The instance's own files as they are on the branch, by blob id: to publish
    #: only what changed and to remove only what is its own.
    files: Mapping[str, str] = field(default_factory=dict)
    #: Old-layout paths of documents the instance proved its own and took over:
    #: its next status commit removes them.
    adopted: frozenset[str] = frozenset()
    #: Documents of other instances that this one's specs follow, by path.
    others: Mapping[str, StatusDocument] = field(default_factory=dict)

    def document(self, ref: ObjectRef, *, instance: str | None = None) -> StatusDocument | None:
        """The document of ``ref``: this instance's, or one it follows of ``instance``."""
        if instance is None or instance == self.instance:
            return self.documents.get(
                status_path(ref.kind, ref.namespace, ref.name, instance=self.instance)
            )
        return self.others.get(status_path(ref.kind, ref.namespace, ref.name, instance=instance))

    def runs(self, ref: ObjectRef) -> tuple[RunRecord, ...]:
        """The runs a TrainingRun's document remembers, newest first."""
        doc = self.document(ref)
        return doc.runs if doc is not None else ()

    def schedule(self, ref: ObjectRef) -> ScheduleInfo | None:
        doc = self.document(ref)
        return doc.schedule if doc is not None else None

    def finished_runs(self) -> frozenset[str]:
        """Names of runs any document recorded as finished (a finished job that
        expired is not recreated)."""
        done = {Phase.SUCCEEDED.value, Phase.FAILED.value}
        return frozenset(
            r.name for doc in self.documents.values() for r in doc.runs if r.phase in done
        )

    def applied_kinds(self) -> set[tuple[str, str]]:
        """(apiVersion, kind) of every resource a document says a spec applied."""
        kinds = set()
        for doc in self.documents.values():
            for resource in doc.resources:
                if (recorded := parse_resource(resource)) is not None:
                    kinds.add((recorded[0], recorded[1].kind))
        return kinds
