"""What one sync found unchanged, for the next to carry (see gitsync.focus).

Every ``gitsync sync`` that ran its cycle to the end leaves one, settled or not:
the spec commit it read, the objects it found unchanged, each as the uid and
resourceVersion it saw, and the instance's files on the status branch after it, each
by blob id. These are the very values a later cycle compares (any write to an object
changes its resourceVersion, a deletion and re-creation its uid; a document's blob
id is its content), so a ledger stays sound however old it is: what moved since no
longer matches it. :mod:`gitsync.replay` keeps it on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gitsync.types import ObjectRef

__all__ = ["Kind", "Ledger", "version_of"]

Kind = tuple[str, str]  # apiVersion, kind


@dataclass(frozen=True, slots=True, kw_only=True)
class Ledger:
    """What the last sync of one options key found unchanged."""

    #: The spec commit it read.
    head: str
    status_branch: str
    #: The kinds it listed.
    kinds: tuple[Kind, ...]
    #: When the clock alone may change what a cycle decides (a schedule's tick, a
    #: hold's end): from then on nothing carries.
    wake_at: datetime | None
    #: Each object it found unchanged -> :func:`version_of` it as listed.
    unchanged: Mapping[ObjectRef, str]
    #: Each of the instance's files on the status branch after it -> its blob id.
    documents: Mapping[str, str]


def version_of(obj: Mapping[str, Any]) -> str:
    """An object's uid and resourceVersion: any write changes the one, a deletion and
    re-creation the other."""
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('uid', '')}/{metadata.get('resourceVersion', '')}"
