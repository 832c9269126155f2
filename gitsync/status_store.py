"""The status branch as a store: read it into an :class:`Inventory`, publish a
cycle's statuses to it.

Many instances share one status branch (staging and production clusters, one per
team folder), and people commit to it too. So an instance owns only its folder,
``status/<instance>/``, and in it only what it can prove it wrote: its README and the
documents that name it as their instance. It never deletes or rewrites anything
else, except the overview ``status/README.md``, which every status commit computes
afresh from the tree it lands on (:meth:`GitSource.publish` re-runs it on each
attempt), so it is never one writer's stale view of the others.

Documents of the old layout (``status/<namespace>/<Kind>/<name>.yaml``, no instance)
record no owner. The commit that last changed one does: an instance adopts those
whose last commit carries its own ``Gitsync-Instance`` trailer (moves them into its
folder, which keeps its memory of runs and applied kinds) and leaves every other one
alone for an operator to remove.

Given gitsync's cache, it keeps each document's YAML there as JSON by blob id, so a
``gitsync sync`` process parses only the documents that changed since the last.
It remembers what it read and wrote, so a cycle in which no status changed reads no
blob, dumps no YAML it dumped before, and commits nothing; what it writes it knows as
data already, so neither the overview nor the next process parses it back (a first
sync of 1,000 parsed the 1,000 documents it had just dumped). Publishing never forces:
:meth:`GitSource.publish` fetches and re-applies on a non-fast-forward.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from gitsync import trailers
from gitsync.cache import DiskCache
from gitsync.clients.git import Author, GitSource, LastChanges
from gitsync.inventory import Inventory
from gitsync.sharding import WHOLE, Shard
from gitsync.status import (
    OVERVIEW_PATH,
    STATUS_ROOT,
    Phase,
    SpecStatus,
    commit_message,
    dump_document,
    overview,
    readme,
    readme_path,
)
from gitsync.status_document import (
    StatusDocument,
    as_data,
    check_instance,
    document_data,
    document_from_data,
    instance_of_path,
    instance_prefix,
)

__all__ = ["StatusStore"]

#: What the overview needs of a document: its instance and its phase.
_Summary = tuple[str, Phase]


class StatusStore:
    """One status branch of one remote, for one gitsync instance."""

    def __init__(
        self,
        git: GitSource,
        *,
        author: Author,
        instance: str,
        parsed: DiskCache | None = None,
        shard: Shard = WHOLE,
    ) -> None:
        """``parsed`` keeps documents' YAML as data by blob id beyond this process.

        A ``shard`` of an instance owns, in the instance's folder, the documents of
        the spec files it owns (by their ``source``) and a README of its own,
        ``README-shard-I-of-N.md``: the shards of one instance share its folder, so a
        spec whose file moves to another shard (N changed) keeps its document, runs
        and applied kinds, read by the shard that now owns it. Shard 0 removes the
        READMEs of other shard counts."""
        self._git = git
        self._parsed = parsed
        self._author = author
        self._instance = check_instance(instance)
        self._shard = shard
        self._readme = (
            readme_path(instance)
            if shard.whole
            else f"{instance_prefix(instance)}README-{shard.name}.md"
        )
        self._inventory = Inventory(instance=instance)
        #: The commit and paths the inventory's other instances' documents were read at.
        self._followed: tuple[str | None, frozenset[str]] = (None, frozenset())
        #: Each document as last read or dumped, and its blob: dumping a thousand
        #: documents each cycle would cost more than everything else, and documents
        #: are immutable values.
        self._dumped: dict[str, tuple[StatusDocument, str]] = {}
        #: Each document blob the overview last counted: the others' documents are
        #: read once, not at every push.
        self._summaries: dict[str, _Summary | None] = {}
        #: The old-layout documents last read, by blob: those other instances left
        #: stay, and are read again each time the branch moves.
        self._old_blobs: dict[str, StatusDocument | None] = {}
        self._old_layout: LastChanges | None = None

    def read(self, branch: str, *, follow: frozenset[str] = frozenset()) -> Inventory:
        """The branch as it is on the remote now (read again only when it moved).

        ``follow`` names documents of other instances this one's specs depend on (a
        model promoted from another instance's): they are read too, as they are at
        the same commit, never older, since a promotion must not be decided on what
        an upstream was."""
        head = self._git.fetch_branch(branch)
        commit = head.commit if head else None
        if commit != self._inventory.commit:
            self._inventory = self._read_own(commit)
            self._followed = (None, frozenset())  # the new inventory holds none of them
        if (commit, follow) != self._followed:
            others = self._read_others(commit, follow) if commit is not None else {}
            self._inventory = replace(self._inventory, others=others)
            self._followed = (commit, follow)
        return self._inventory

    def _read_others(self, commit: str, follow: frozenset[str]) -> dict[str, StatusDocument]:
        """The documents at ``follow`` that their own instance wrote."""
        found: dict[str, StatusDocument] = {}
        for owner in sorted({instance_of_path(path) or "" for path in follow} - {""}):
            files = self._git.files(commit, under=instance_prefix(owner).rstrip("/"))
            for path in sorted(follow & files.keys()):
                doc = self._parse(files[path])
                # A document whose instance, kind, namespace or name is not its path's
                # (a copy, a hand edit) is nobody's word on the upstream.
                if doc is not None and doc.path == path:
                    found[path] = doc
        return found

    def _read_own(self, commit: str | None) -> Inventory:
        documents: dict[str, StatusDocument] = {}
        files: dict[str, str] = {}
        old: dict[str, StatusDocument] = {}
        seen: dict[str, StatusDocument | None] = {}
        if commit is not None:
            for path, blob in self._git.files(commit, under=STATUS_ROOT).items():
                owner = instance_of_path(path)
                if path == self._readme or self._stale_readme(path):
                    files[path] = blob
                elif owner == self._instance:
                    doc = self._parse(blob)
                    # The overview counts every document of the tree it commits: it
                    # need not read and parse these again.
                    self._summaries[blob] = None if doc is None else (doc.instance, doc.phase)
                    if (
                        doc is not None
                        and doc.instance == self._instance
                        and self._shard.owns(doc.source)
                    ):
                        documents[path] = doc
                        files[path] = blob
                        self._dumped[path] = (doc, blob)
                elif owner == "" and (doc := self._old_document(blob, seen)):
                    old[path] = doc
        self._old_blobs = seen
        old = {path: doc for path, doc in old.items() if self._shard.owns(doc.source)}
        adopted = self._adopt(commit, old) if commit is not None and old else {}
        for doc in adopted.values():
            # A document already in the instance's folder is newer than an old one.
            documents.setdefault(doc.path, doc)
        return Inventory(
            instance=self._instance,
            commit=commit,
            documents=documents,
            files=files,
            adopted=frozenset(adopted),
        )

    def _stale_readme(self, path: str) -> bool:
        """A README of this instance's shards under another shard count: shard 0 of
        the current count removes it (read in as its own file, so publish drops it)."""
        if self._shard.index != 0:
            return False
        prefix = f"{instance_prefix(self._instance)}README-shard-"
        if not path.startswith(prefix) or path.count("/") != 2 or not path.endswith(".md"):
            return False
        return not path.endswith(f"-of-{self._shard.count}.md")

    @property
    def files(self) -> Mapping[str, str]:
        """The instance's own files on the branch as this store last read or wrote
        them, path -> blob id."""
        return self._inventory.files

    def forget(self) -> None:
        """Read the branch anew next time (after a push that may not have landed)."""
        self._inventory = replace(self._inventory, commit=None)

    def publish(
        self,
        statuses: Sequence[SpecStatus],
        *,
        branch: str,
        source_commit: str,
        may_push: Callable[[], bool] = lambda: True,
    ) -> str | None:
        """Commit the statuses that changed, and remove this instance's documents of
        specs that are gone (and the old-layout ones it adopted); the new commit, or
        None when nothing changed. Raises GitError, or LeadershipLostError when
        ``may_push`` says no before a push."""
        strays = sorted(s.path for s in statuses if s.instance != self._instance)
        if strays:  # a bug: this instance would write into another's folder
            raise ValueError(f"statuses of another instance than {self._instance}: {strays}")
        before = self._inventory
        docs = {s.path: s for s in statuses}
        files: dict[str, str] = {}
        changed: dict[str, bytes] = {}
        for path, status in docs.items():
            files[path], dumped = self._dump(path, status, known=before.files.get(path))
            if dumped is not None:
                changed[path] = dumped
        overview_readme = readme(statuses, instance=self._instance)
        files[self._readme] = self._git.blob_id(overview_readme)
        if before.files.get(self._readme) != files[self._readme]:
            changed[self._readme] = overview_readme
        removed = sorted({p for p in before.files if p not in files} | before.adopted)
        if not changed and not removed:
            return None
        for path in changed:
            if (doc := docs.get(path)) is not None:
                self._written(files[path], doc)
        message = commit_message(
            before=before.documents,
            after=[s for s in statuses if s.path in changed],
            removed=removed,
            source_commit=source_commit,
            instance=self._instance,
        )
        updates: dict[str, bytes | None] = {**changed, **dict.fromkeys(removed)}
        commit = self._git.publish(
            updates,
            branch=branch,
            message=message,
            author=self._author,
            derive=self._overview,
            may_push=may_push,
        )
        # Other instances' documents are as of the old head: the next read, at the
        # new one, reads them again (see _followed).
        self._inventory = Inventory(
            instance=self._instance,
            commit=commit,
            documents=docs,
            files=files,
            others=before.others,
        )
        return commit

    def _adopt(self, commit: str, old: Mapping[str, StatusDocument]) -> dict[str, StatusDocument]:
        """The old-layout documents whose last change was this instance's commit, by
        their old path, as documents of this instance."""
        self._old_layout = self._git.last_changes(commit, old, previous=self._old_layout)
        writers: dict[str, str | None] = {}
        adopted = {}
        for path, doc in old.items():
            last = self._old_layout.by_path.get(path)
            if last is None:
                continue
            if last not in writers:
                writers[last] = trailers.parse(self._git.revision(last).message).instance
            if writers[last] == self._instance:
                adopted[path] = replace(doc, instance=self._instance)
        return adopted

    def _old_document(
        self, blob: str, seen: dict[str, StatusDocument | None]
    ) -> StatusDocument | None:
        if blob not in self._old_blobs:
            self._old_blobs[blob] = self._parse(blob)
        doc = seen[blob] = self._old_blobs[blob]
        return doc if doc is not None and not doc.instance else None

    def _overview(self, tree: str) -> dict[str, bytes | None]:
        """``status/README.md`` for ``tree``: every instance's documents by phase."""
        phases: dict[str, list[Phase]] = {}
        old_layout = 0
        summaries: dict[str, _Summary | None] = {}
        for path, blob in self._git.files(tree, under=STATUS_ROOT).items():
            parts = path.split("/")
            if len(parts) == 3 and parts[2] == "README.md":
                phases.setdefault(parts[1], [])
            owner = instance_of_path(path)
            if owner is None:
                continue
            summary = summaries[blob] = self._summary(blob)
            if summary is None or summary[0] != owner:
                continue  # not a document, or not the one of this folder's instance
            if owner:
                phases.setdefault(owner, []).append(summary[1])
            else:
                old_layout += 1
        self._summaries = summaries
        return {OVERVIEW_PATH: overview(phases, old_layout=old_layout)}

    def _written(self, blob: str, doc: StatusDocument) -> None:
        """Know ``doc`` by the blob it is written as, as if it had been read."""
        self._summaries[blob] = (doc.instance, doc.phase)
        if self._parsed is not None:
            self._parsed.put(blob, as_data(doc))

    def _summary(self, blob: str) -> _Summary | None:
        if blob in self._summaries:
            return self._summaries[blob]
        doc = self._parse(blob)
        return None if doc is None else (doc.instance, doc.phase)

    def _parse(self, blob: str) -> StatusDocument | None:
        """The document in blob ``blob``, its YAML parsed (and the blob read) at most
        once per cache; what the cache holds is used only if it validates as one."""
        if self._parsed is not None:
            cached = self._parsed.get(blob)
            if cached is not None and (doc := document_from_data(cached)) is not None:
                return doc
        data = document_data(self._git.read_blob(blob))
        if self._parsed is not None and data is not None:
            self._parsed.put(blob, data)
        return document_from_data(data)

    def _dump(
        self, path: str, doc: StatusDocument, *, known: str | None
    ) -> tuple[str, bytes | None]:
        """The blob ``doc`` is at ``path``, and its bytes unless that is ``known``, the
        blob the branch holds: a document as it was read or last dumped is not
        dumped again."""
        cached = self._dumped.get(path)
        if cached is not None and cached[0] == doc and cached[1] == known:
            return known, None
        content = dump_document(doc)
        blob = self._git.blob_id(content)
        self._dumped[path] = (doc, blob)
        return blob, None if blob == known else content
