"""Revert proposals: a canary that rolled back, whose spec says ``onFailure: revert``,
gets a branch ``gitsync/revert/<name>`` putting its spec file back as it was before
the commit that changed it, for someone to review and merge.

Git stays the source of truth: gitsync proposes, it never rewrites the watched
branch. Which rollbacks call for a proposal is decided here from data; the reconciler
only reads the old file and pushes the branch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gitsync.loading import Entry
from gitsync.rollout import Decision, RolloutPhase
from gitsync.specs import ModelDeployment
from gitsync.trailers import Trailers
from gitsync.types import ObjectRef

__all__ = ["RevertProposal", "revert_proposals"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RevertProposal:
    name: str
    path: str
    #: The commit whose change of ``path`` is to be undone.
    offending: str
    reason: str

    @property
    def branch(self) -> str:
        return f"gitsync/revert/{self.name}"

    def message(self, *, source_commit: str) -> str:
        trailers = Trailers(source_commit=source_commit, reverts=self.offending)
        return (
            f"Revert {self.name} to its spec before {self.offending[:7]}\n\n"
            f"gitsync rolled the canary back: {self.reason}\n\n{trailers.format()}"
        )


def revert_proposals(
    entries: Sequence[Entry],
    rollouts: Mapping[ObjectRef, Decision],
    *,
    written: Mapping[ObjectRef, object],
    last_commits: Mapping[str, str],
    default_namespace: str,
) -> list[RevertProposal]:
    """A proposal for each canary rolled back in this cycle (its rollback written)."""
    models = {
        (e.namespace(default_namespace), e.name): e
        for e in entries
        if isinstance(e.spec, ModelDeployment)
    }
    proposals = []
    for key, decision in sorted(rollouts.items()):
        if decision.state.phase is not RolloutPhase.ROLLED_BACK or not decision.transition:
            continue
        entry = models.get((key.namespace, key.name))
        if entry is None or key not in written:
            continue
        assert isinstance(entry.spec, ModelDeployment)  # noqa: S101 - filtered above
        offending = last_commits.get(entry.path)
        if entry.spec.spec.rollout.on_failure != "revert" or not offending:
            continue
        proposals.append(
            RevertProposal(
                name=entry.name, path=entry.path, offending=offending, reason=decision.state.reason
            )
        )
    return proposals
