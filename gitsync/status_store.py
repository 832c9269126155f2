"""The status branch as a store: read it into an :class:`Inventory`, publish a
cycle's statuses to it.

It remembers what it read and wrote, so a cycle in which no status changed reads no
blob, dumps no YAML it dumped before, and commits nothing. Publishing never forces:
:meth:`GitSource.publish` fetches and re-applies on a non-fast-forward.
"""

from __future__ import annotations

from collections.abc import Sequence

from gitsync.clients.git import Author, GitSource
from gitsync.inventory import Inventory
from gitsync.status import (
    README_PATH,
    STATUS_ROOT,
    SpecStatus,
    commit_message,
    dump_document,
    parse_document,
    readme,
)
from gitsync.status_document import StatusDocument

__all__ = ["StatusStore"]


class StatusStore:
    """One status branch of one remote, for one gitsync instance."""

    def __init__(self, git: GitSource, *, author: Author, instance: str) -> None:
        self._git = git
        self._author = author
        self._instance = instance
        self._inventory = Inventory()
        #: Each document as last dumped: dumping a thousand documents each cycle
        #: would cost more than everything else, and documents are immutable values.
        self._dumped: dict[str, tuple[StatusDocument, bytes]] = {}

    def read(self, branch: str) -> Inventory:
        """The branch as it is on the remote now (read again only when it moved)."""
        head = self._git.fetch_branch(branch)
        commit = head.commit if head else None
        if commit == self._inventory.commit:
            return self._inventory
        documents: dict[str, StatusDocument] = {}
        files: dict[str, bytes] = {}
        if commit is not None:
            for path, blob in self._git.files(commit, under=STATUS_ROOT).items():
                files[path] = content = self._git.read_blob(blob)
                if path.endswith(".yaml") and (doc := parse_document(content)) is not None:
                    documents[path] = doc
                    self._dumped[path] = (doc, content)
        self._inventory = Inventory(commit=commit, documents=documents, files=files)
        return self._inventory

    def forget(self) -> None:
        """Read the branch anew next time (after a push that may not have landed)."""
        self._inventory = Inventory(
            documents=self._inventory.documents, files=self._inventory.files
        )

    def publish(
        self, statuses: Sequence[SpecStatus], *, branch: str, source_commit: str
    ) -> str | None:
        """Commit the statuses that changed, and remove the documents of specs that
        are gone; the new commit, or None when nothing changed. Raises GitError."""
        before = self._inventory
        docs = {s.path: s for s in statuses}
        files: dict[str, bytes] = {path: self._dump(path, doc) for path, doc in docs.items()}
        files[README_PATH] = readme(statuses)
        removed = [p for p in before.files if p not in files]
        changed = {p: c for p, c in files.items() if before.files.get(p) != c}
        if not changed and not removed:
            return None
        message = commit_message(
            before=before.documents,
            after=[s for s in statuses if s.path in changed],
            removed=removed,
            source_commit=source_commit,
            instance=self._instance,
        )
        updates: dict[str, bytes | None] = {**changed, **dict.fromkeys(removed)}
        commit = self._git.publish(updates, branch=branch, message=message, author=self._author)
        self._inventory = Inventory(commit=commit, documents=docs, files=files)
        return commit

    def _dump(self, path: str, doc: StatusDocument) -> bytes:
        cached = self._dumped.get(path)
        if cached is not None and cached[0] == doc:
            return cached[1]
        content = dump_document(doc)
        self._dumped[path] = (doc, content)
        return content
