"""Reading the audit trail out of a repository: the status branch's documents and
commits, and the spec branch's commits and labels.

``gitsync status``, ``gitsync history`` and the dashboard show the same facts, so
they read them one way: these functions, over a :class:`~gitsync.clients.git.Repository`
(a local clone, or the daemon's mirror, whose remote-tracking refs
:func:`find_branch` finds too). What the facts mean is pure and lives elsewhere
(:mod:`gitsync.history`, :mod:`gitsync.board`).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from datetime import datetime
from typing import TYPE_CHECKING

from gitsync import trailers
from gitsync.errors import GitError
from gitsync.history import SpecCommit, StatusCommit
from gitsync.snapshot import read_snapshot
from gitsync.status_document import STATUS_ROOT, StatusDocument, parse_document, status_path

if TYPE_CHECKING:
    from gitsync.clients.git import Repository

__all__ = [
    "Parsed",
    "current_statuses",
    "find_branch",
    "spec_commits",
    "spec_labels",
    "status_commits",
    "status_documents",
]


def find_branch(repository: Repository, branch: str) -> str | None:
    """A branch of a local clone, or its remote-tracking copy (a CI checkout has only that)."""
    for name in (branch, f"origin/{branch}", f"refs/remotes/origin/{branch}"):
        try:
            return repository.resolve(name)
        except GitError:
            continue
    return None


#: Documents already parsed, by blob id (None: not a readable document).
Parsed = MutableMapping[str, StatusDocument | None]


def status_commits(
    repository: Repository,
    head: str,
    since: datetime | None,
    *,
    limit: int = 10_000,
    parsed: Parsed | None = None,
) -> list[StatusCommit]:
    """The commits of the status branch up to ``head``, newest first, with the
    documents each wrote."""
    found = []
    for change in repository.history(head, under=STATUS_ROOT, since=since, limit=limit):
        documents = status_documents(
            repository, {**change.changes.added, **change.changes.modified}, parsed=parsed
        )
        found.append(
            StatusCommit(
                commit=change.revision.commit,
                at=change.revision.authored_at,
                summary=change.revision.summary,
                source_commit=trailers.parse(change.revision.message).source_commit or "",
                documents=documents,
                removed=frozenset(change.changes.deleted),
            )
        )
    return found


def status_documents(
    repository: Repository, blobs: Mapping[str, str], *, parsed: Parsed | None = None
) -> dict[str, StatusDocument]:
    """The readable status documents among ``blobs`` (path -> blob id); a blob in
    ``parsed`` is not read again, and one read is added to it."""
    memo: Parsed = {} if parsed is None else parsed
    found = {}
    for path, blob in blobs.items():
        if not path.endswith(".yaml"):
            continue
        if blob not in memo:
            memo[blob] = parse_document(repository.read_blob(blob))
        if (doc := memo[blob]) is not None:
            found[path] = doc
    return found


def current_statuses(
    repository: Repository, head: str, instance: str | None, *, parsed: Parsed | None = None
) -> dict[str, StatusDocument]:
    """Every instance's documents at ``head``, or those of ``instance`` alone."""
    files = repository.files(head, under=STATUS_ROOT)
    documents = status_documents(repository, files, parsed=parsed)
    return {p: d for p, d in documents.items() if instance is None or d.instance == instance}


def spec_commits(
    repository: Repository,
    head: str,
    *,
    under: str,
    since: datetime | None = None,
    limit: int = 10_000,
) -> list[SpecCommit]:
    """The commits of the spec branch up to ``head`` that changed files ``under`` a
    folder, newest first."""
    return [
        SpecCommit(
            commit=change.revision.commit,
            author=change.revision.author.name,
            at=change.revision.authored_at,
            summary=change.revision.summary,
            paths=change.changes.paths,
            merge_of=change.merged,
        )
        for change in repository.history(head, under=under, since=since, limit=limit)
    ]


def spec_labels(repository: Repository, head: str, *, root: str) -> dict[str, Mapping[str, str]]:
    """The labels of each gitsync spec at ``head``, by the path its status document
    has (without instance: ``status/<namespace>/<Kind>/<name>.yaml``). Status
    documents do not record labels; the spec as Git has it now does."""
    snap = read_snapshot(repository, head, root=root)
    default = snap.config.defaults.namespace
    return {
        status_path(e.kind, e.namespace(default), e.name, instance=""): dict(
            e.spec.metadata.labels or {}
        )
        for e in snap.loaded.entries
        if e.spec is not None
    }
