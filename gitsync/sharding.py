"""Which shard of a gitsync instance owns a spec file, and the objects it deployed.

One instance can run as N processes (``--shards N --shard-index I``), each
reconciling the spec files whose path hashes to it, so a repo of many thousand
specs is split by path with no coordination: every shard computes the same answer
from the path alone. The hash is SHA-256 of the repo-relative path, mod N: stable
across processes, machines and Python releases, which Python's ``hash`` is not (it
is salted per process, PYTHONHASHSEED), and spread evenly.

A file's objects belong to the shard of the file that deployed them, as their
``gitsync.io/source-path`` annotation says; so ownership of a live object needs no
label of its own, and changing N to M relabels nothing (KServe would roll out a
new revision for a label change). Under any one N every object has exactly one
owner. An object with no source-path annotation has none when N > 1: no shard
prunes it.

So a shard prunes only what its own files no longer declare, whatever N the other
shards run with. One case needs the other shards' files: a spec renamed into a file
of another shard leaves its object with the old path, whose owner no longer sees
it declared. :func:`keep_declared_elsewhere` turns such a deletion into a skip
(the new owner adopts the object on its next apply), as an unsharded instance would
have seen the same spec declared and deleted nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from gitsync.diff import Action, ChangeSet
from gitsync.errors import ConfigurationError
from gitsync.render import ANNOTATION_SOURCE_PATH, ANNOTATION_SPEC_KIND, LABEL_TRAINING_RUN
from gitsync.types import ObjectRef

__all__ = ["WHOLE", "Shard", "keep_declared_elsewhere", "shard_of", "spec_identity"]


def shard_of(path: str, count: int) -> int:
    """The index of the shard of ``count`` that owns the spec file at ``path``."""
    digest = hashlib.sha256(path.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigurationError(
                f"shard {self.index} of {self.count}: need --shards >= 1 and "
                "0 <= --shard-index < --shards"
            )

    @property
    def whole(self) -> bool:
        """One shard: it owns everything."""
        return self.count == 1

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def owns(self, path: str) -> bool:
        """Whether this shard reconciles the spec file at ``path``."""
        return self.whole or shard_of(path, self.count) == self.index

    def owns_object(self, obj: Mapping[str, Any]) -> bool:
        """Whether this shard owns a live object: the file that deployed it is its own."""
        if self.whole:
            return True
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        source = annotations.get(ANNOTATION_SOURCE_PATH)
        return isinstance(source, str) and self.owns(source)


WHOLE: Final = Shard()


def spec_identity(obj: Mapping[str, Any]) -> ObjectRef | None:
    """The identity of the spec (or plain manifest) that deployed a live object, as
    gitsync's annotations and labels on it say; None for an object without them."""
    metadata = obj.get("metadata") or {}
    kind = (metadata.get("annotations") or {}).get(ANNOTATION_SPEC_KIND)
    if not isinstance(kind, str):
        return None
    if kind == "Manifest":
        return ObjectRef.of(obj)
    # A training run's job is named after its spec and a hash; its label names the spec.
    name = (metadata.get("labels") or {}).get(LABEL_TRAINING_RUN) or metadata.get("name", "")
    return ObjectRef.spec(kind, str(metadata.get("namespace") or ""), str(name))


def keep_declared_elsewhere(
    changes: ChangeSet, *, declared: Mapping[ObjectRef, str], shard: Shard
) -> ChangeSet:
    """``changes`` without the deletions of objects whose spec a file of another
    shard declares (``declared``: spec identity -> path, over the whole repo)."""
    kept = []
    for change in changes.changes:
        identity = spec_identity(change.live) if change.live is not None else None
        path = declared.get(identity) if identity is not None else None
        if change.action is Action.DELETED and path is not None and not shard.owns(path):
            reason = f"kept: now declared by {path}, of another shard, which adopts it"
            kept.append(replace(change, action=Action.SKIPPED, reason=reason))
        else:
            kept.append(change)
    return replace(changes, changes=tuple(kept))
