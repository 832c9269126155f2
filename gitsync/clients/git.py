"""The one module that talks to git.

gitsync reads its specs from one branch of a remote repository and writes status
reports to another, so everything git-shaped lives here, on libgit2 (``pygit2``):

* :class:`GitSource` keeps a *bare* mirror of the remote in a cache folder. The daemon
  never needs a work tree: specs are read straight from blobs, which is faster, uses
  no disk for a checkout and cannot be left half-updated by a crash.
* Reading and diffing walk trees ourselves and skip every subtree whose id is the same
  on both sides. libgit2's own tree diff descends into identical subtrees; in a
  repository of ten thousand files where one changed, skipping is the difference
  between milliseconds and microseconds, and it is what makes "which commit last
  changed each of these files" affordable over hundreds of commits.
* :meth:`GitSource.publish` commits status files on top of the remote branch and pushes
  without ever forcing: a push that lost a race is re-applied on the new remote head
  and retried, so no other writer's commit is ever overwritten.

Network operations run with connect and read timeouts (libgit2 has none by default and
would otherwise hang forever on a silent server). Credentials reach libgit2 only
through the credentials callback, never through a URL stored on disk or printed: every
URL this module shows, and every message it wraps, goes through :mod:`gitsync.redact`,
and the secrets it knows of are scrubbed from what libgit2 says besides.

Every failure leaves this module as a :mod:`gitsync.errors` type (``raise ... from``),
so callers decide from types what to do: :class:`~gitsync.errors.GitUnavailableError`
is transient, :class:`~gitsync.errors.GitAuthError` and
:class:`~gitsync.errors.PushRejectedError` need an operator,
:class:`~gitsync.errors.PushConflictError` means the push kept losing races.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Final, Literal, Protocol, Self
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import pygit2
import structlog
from pygit2.enums import CredentialType, FileMode, Option, RepositoryOpenFlag

from gitsync.backoff import Backoff
from gitsync.errors import (
    ConfigurationError,
    GitAuthError,
    GitError,
    GitUnavailableError,
    LeadershipLostError,
    PushConflictError,
    PushRejectedError,
)
from gitsync.redact import REDACTED, redact, url_secrets

__all__ = [
    "Author",
    "CommitChanges",
    "Credentials",
    "Derive",
    "GitSource",
    "LastChanges",
    "Listing",
    "NetworkObserver",
    "PasswordCredentials",
    "Repository",
    "Revision",
    "SshKeyCredentials",
    "TreeChanges",
]

log = structlog.get_logger(__name__)


class NetworkObserver(Protocol):
    """Told of every network operation (for metrics): ``"fetch"`` or ``"push"``, its
    seconds, and whether it failed. Called on the calling thread; must be quick."""

    def __call__(self, operation: str, seconds: float, *, failed: bool) -> None: ...


_TRACKING: Final = "refs/remotes/origin/"
"""Where fetched remote branches are kept in the mirror."""
_OUTGOING: Final = "refs/gitsync/outgoing/"
"""Local refs holding a commit while it is being pushed (a push needs a source ref)."""
_REGULAR_FILES: Final = frozenset({FileMode.BLOB, FileMode.BLOB_EXECUTABLE})
_SCP_LIKE: Final = re.compile(r"^(?:[^@/]+@)?(?:\[[^\]]+\]|[^/:\[\]]{2,}):")
"""``[user@]host:path`` (git's scp-like syntax); a single letter before ':' is a drive."""
_SIDEBAND_LIMIT: Final = 4000
_LOOKUP_COST: Final = 4
"""Looking one name up in a tree costs about as much as reading this many entries."""


# --- public value types -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listing:
    """A tree's entries under a folder: the regular files, and every other entry.

    ``others`` names what stands at a path that is not a file (``symbolic link``,
    ``submodule``, ``folder``), so a caller can tell a path whose file became
    something else from a path that is gone.
    """

    files: Mapping[str, str]
    others: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Author:
    """A commit's author: who wrote a revision, or who gitsync commits status as."""

    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Revision:
    """One commit: what a fetch found at the head of the branch."""

    commit: str
    tree: str
    author: Author
    authored_at: datetime
    """Timezone-aware, in the author's own offset."""
    message: str

    @property
    def summary(self) -> str:
        """The first line of the message."""
        return self.message.split("\n", 1)[0]


@dataclass(frozen=True, slots=True)
class TreeChanges:
    """Files that differ between two trees: path (from the repo root) -> blob id.

    ``deleted`` maps to the blob id the file had in the old tree.
    """

    added: Mapping[str, str]
    modified: Mapping[str, str]
    deleted: Mapping[str, str]

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.deleted)

    @property
    def paths(self) -> frozenset[str]:
        """Every path that was added, modified or deleted."""
        return frozenset(self.added) | frozenset(self.modified) | frozenset(self.deleted)


@dataclass(frozen=True, slots=True)
class CommitChanges:
    """One commit of a history walk and the files it changed."""

    revision: Revision
    changes: TreeChanges
    #: The other parents when this is a merge: the branch that brought the change.
    merged: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LastChanges:
    """For each file present at ``commit``: the first-parent commit that last changed it.

    Pass it back as ``previous`` to :meth:`GitSource.last_changes` to update it for a
    newer head by walking only the commits made since.
    """

    commit: str
    by_path: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PasswordCredentials:
    """A user name and a password or access token, for HTTPS (basic auth).

    Token hosts want a fixed user name with the token as password, e.g.
    ``x-access-token`` on GitHub, ``oauth2`` on GitLab.
    """

    username: str
    password: str

    def __repr__(self) -> str:
        return f"PasswordCredentials(username={self.username!r}, password={REDACTED!r})"


@dataclass(frozen=True, slots=True)
class SshKeyCredentials:
    """An SSH key pair; with no key files, the keys of the running ssh-agent.

    The remote's host key is checked against ``~/.ssh/known_hosts`` (libgit2's home
    folder) unless :class:`GitSource` is told ``verify_host=False``.
    """

    private_key: Path | None = None
    public_key: Path | None = None
    passphrase: str | None = None
    username: str = "git"

    def __post_init__(self) -> None:
        if self.public_key is not None and self.private_key is None:
            raise ConfigurationError("an SSH public key needs its private key")

    def __repr__(self) -> str:
        passphrase = None if self.passphrase is None else REDACTED
        return (
            f"SshKeyCredentials(private_key={self.private_key!r}, "
            f"public_key={self.public_key!r}, passphrase={passphrase!r}, "
            f"username={self.username!r})"
        )


Credentials = PasswordCredentials | SshKeyCredentials

#: Files computed from a tree about to be committed (its id) -> more changes to it.
Derive = Callable[[str], Mapping[str, bytes | None]]


# --- the mirror -----------------------------------------------------------------------

_MIRROR_LOCKS: dict[Path, threading.RLock] = {}
_MIRROR_LOCKS_GUARD = threading.Lock()


def _mirror_lock(path: Path) -> threading.RLock:
    """One lock per mirror folder in this process: sources sharing a mirror take turns."""
    with _MIRROR_LOCKS_GUARD:
        return _MIRROR_LOCKS.setdefault(path, threading.RLock())


class Repository:
    """Read-only access to the objects of one repository: files and blobs of a
    commit, changes between trees, and which commit last changed each file.

    :class:`GitSource` is one of these over its bare mirror; :meth:`open` gives one
    over a local clone (what `gitsync plan` and `gitsync history` read).
    """

    _repo: pygit2.Repository
    _path: Path

    @classmethod
    def open(cls, path: Path) -> Repository:
        """The repository at ``path`` (a work tree or a bare repository)."""
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise ConfigurationError(f"{path} is not inside a git repository")
        repository = cls.__new__(cls)
        repository._repo = pygit2.Repository(found)
        repository._path = Path(found)
        return repository

    def resolve(self, rev: str) -> str:
        """The commit a revision expression (branch, tag, ``HEAD~1``, sha) names."""
        try:
            return str(self._repo.revparse_single(rev).peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise GitError(f"{self._path}: no commit named {rev!r}") from exc

    def close(self) -> None:
        """Release the mirror's open files."""
        self._repo.free()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def revision(self, commit: str) -> Revision:
        """The metadata of ``commit`` (a full hex id present in the mirror)."""
        return _revision(self._commit(commit))

    # --- reading ---------------------------------------------------------------------------

    def files(self, treeish: str, *, under: str = "") -> dict[str, str]:
        """Every regular file in ``treeish`` (a commit or tree id) under a sub-folder.

        Paths are relative to the repository root and map to blob ids. Symbolic links
        and submodules are not files here. A missing ``under`` gives an empty dict.
        """
        return dict(self.listing(treeish, under=under).files)

    def listing(self, treeish: str, *, under: str = "") -> Listing:
        """The regular files of :meth:`files`, and what every other entry is."""
        prefix, parts = _folder(under)
        tree = _descend(self._tree(treeish), parts)
        files: dict[str, str] = {}
        others: dict[str, str] = {}
        with self._reading(f"list files of {treeish}"):
            if tree is not None:
                _list(tree, prefix, files, others)
        return Listing(files, others)

    @staticmethod
    def blob_id(content: bytes) -> str:
        """The id git gives a blob of ``content`` (SHA-1, as the mirror's objects)."""
        return str(pygit2.hash(content))

    def read_blob(self, blob_id: str) -> bytes:
        """The content of a blob."""
        obj = self._object(blob_id)
        if not isinstance(obj, pygit2.Blob):
            raise GitError(f"object {blob_id} is a {obj.type_str}, not a blob")
        with self._reading(f"read blob {blob_id}"):
            return obj.data

    def changes(self, old: str | None, new: str, *, under: str = "") -> TreeChanges:
        """Files added, modified and deleted from ``old`` to ``new`` under a sub-folder.

        Both are commit or tree ids; ``old=None`` is the empty tree. Subtrees with the
        same id on both sides are skipped without being read.
        """
        prefix, parts = _folder(under)
        old_tree = None if old is None else _descend(self._tree(old), parts)
        new_tree = _descend(self._tree(new), parts)
        out = _Changes()
        with self._reading(f"diff {old} {new}"):
            _walk(new_tree, old_tree, prefix, None, out)
        return out.freeze()

    def last_changes(
        self,
        commit: str,
        paths: Iterable[str],
        *,
        previous: LastChanges | None = None,
    ) -> LastChanges:
        """For each of ``paths`` that is a file at ``commit``: the commit that last changed it.

        History is followed through first parents only, so a change merged from a side
        branch is attributed to the merge commit on this branch. Each step diffs only
        the folders that hold still-unresolved paths, skipping identical subtrees, and
        the walk stops as soon as every path is resolved.

        With ``previous`` (an earlier result, for an older head), only the commits made
        since ``previous.commit`` are walked for the paths it knows; when that commit is
        not a first-parent ancestor (the branch was rewritten), this is a full walk.
        """
        head = self._commit(commit)
        wanted = _Trie.of(_clean_path(path) for path in paths)
        present = _Changes()
        with self._reading(f"look up files in {commit}"):
            _walk(head.tree, None, "", wanted.root, present)
        pending = _Trie.of(present.added)
        known: Mapping[str, str] = previous.by_path if previous else {}
        stop = previous.commit if previous else None
        found: dict[str, str] = {}
        current = head
        with self._reading(f"walk the history of {commit}"):
            while pending:
                if stop is not None and str(current.id) == stop:
                    # Nothing pending changed since the previous head: its answers hold.
                    for path in [path for path in pending.paths() if path in known]:
                        found[path] = known[path]
                        pending.remove(path)
                    stop = None
                    continue
                parent = self._first_parent(current)
                if parent is None:
                    # The first commit: every path still pending is as it was made here.
                    found.update(dict.fromkeys(pending.paths(), str(current.id)))
                    break
                step = _Changes()
                _walk(current.tree, parent.tree, "", pending.root, step)
                for path in step.added.keys() | step.modified.keys():
                    found[path] = str(current.id)
                    pending.remove(path)
                current = parent
        return LastChanges(commit=str(head.id), by_path=MappingProxyType(found))

    # --- internals: objects ----------------------------------------------------------------

    def first_parent(self, commit: str) -> str | None:
        """The first parent of ``commit`` (None for a root commit)."""
        parent = self._first_parent(self._commit(commit))
        return None if parent is None else str(parent.id)

    def history(
        self,
        commit: str,
        *,
        under: str = "",
        since: datetime | None = None,
        limit: int = 10_000,
    ) -> list[CommitChanges]:
        """Commits on the first-parent line of ``commit``, newest first, each with the
        files it changed under a sub-folder (merges: against their first parent, so a
        merged branch's changes show on the merge). Commits changing nothing there are
        left out. Stops at ``since`` (by commit time) or after ``limit`` commits.
        """
        prefix, parts = _folder(under)
        found: list[CommitChanges] = []
        current: pygit2.Commit | None = self._commit(commit)
        with self._reading(f"walk the history of {commit}"):
            for _ in range(limit):
                if current is None:
                    break
                if since is not None and current.commit_time < since.timestamp():
                    break
                parent = self._first_parent(current)
                step = _Changes()
                _walk(
                    _descend(current.tree, parts),
                    _descend(parent.tree, parts) if parent else None,
                    prefix,
                    None,
                    step,
                )
                changed = step.freeze()
                if changed:
                    found.append(
                        CommitChanges(
                            revision=_revision(current),
                            changes=changed,
                            merged=tuple(str(p) for p in current.parent_ids[1:]),
                        )
                    )
                current = parent
        return found

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        try:
            yield
        except (pygit2.GitError, KeyError, OSError) as exc:
            raise GitError(f"git repository {self._path}: {what}: {exc}") from exc

    def _object(self, hex_id: str) -> pygit2.Object:
        try:
            return self._repo[hex_id]
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise GitError(f"git repository {self._path} has no object {hex_id!r}") from exc

    def _commit(self, hex_id: str) -> pygit2.Commit:
        obj = self._object(hex_id)
        if not isinstance(obj, pygit2.Commit):
            raise GitError(f"object {hex_id} is a {obj.type_str}, not a commit")
        return obj

    def _tree(self, treeish: str) -> pygit2.Tree:
        obj = self._object(treeish)
        try:
            return obj.peel(pygit2.Tree)
        except (pygit2.GitError, ValueError) as exc:
            raise GitError(f"object {treeish} is a {obj.type_str}, not a tree") from exc

    def _first_parent(self, commit: pygit2.Commit) -> pygit2.Commit | None:
        if not commit.parent_ids:
            return None
        return self._commit(str(commit.parent_ids[0]))


class GitSource(Repository):
    """A bare mirror of one remote repository, kept in ``cache_dir``.

    ``url`` may be a local path, ``file://``, ``git://``, ``http(s)://``, ``ssh://`` or
    scp-like (``git@host:org/repo.git``). A password or token in an HTTP(S) URL is
    taken out of it and used as :class:`PasswordCredentials`; it is never written to
    disk, logged or shown.

    ``fetch()`` mirrors ``branch``; :meth:`publish` writes to any branch of the same
    remote. Reads (``files``, ``read_blob``, ``changes``, ``last_changes``) work on what
    has been fetched and never touch the network.

    Timeouts: libgit2 keeps them process-wide, so each network call sets this
    source's values just before it starts; sources sharing a process should agree on
    them. ``io_timeout`` bounds each socket read or write, not a whole transfer. Local
    (``file://``) remotes have no sockets and no timeouts.

    A source may be shared by threads: network calls and publishing are serialised per
    mirror folder. One process at a time should use a given ``cache_dir``.
    """

    def __init__(
        self,
        url: str,
        *,
        branch: str,
        cache_dir: Path,
        credentials: Credentials | None = None,
        verify_host: bool = True,
        connect_timeout: float = 10.0,
        io_timeout: float = 30.0,
        proxy: str | bool = False,
        push_attempts: int = 5,
        push_backoff: float = 0.5,
        observer: NetworkObserver | None = None,
    ) -> None:
        """Open (or create) the mirror of ``url``; does not touch the network.

        ``verify_host=False`` accepts unknown SSH host keys and invalid TLS
        certificates: only for tests and trusted networks. ``proxy`` is ``False`` for
        none, ``True`` to use git's configuration and the environment, or a proxy URL.
        A push that keeps losing races is tried ``push_attempts`` times in all, waiting
        ``push_backoff`` seconds in between, doubled after each attempt, each wait cut
        by up to half at random (:class:`~gitsync.backoff.Backoff`).
        """
        plain_url, url_credentials = _normalize_url(url)
        if url_credentials is not None and credentials is not None:
            raise ConfigurationError(
                f"git remote {redact(url)}: credentials given both in the URL and apart"
            )
        _check_branch(branch)
        if connect_timeout <= 0 or io_timeout <= 0:
            raise ConfigurationError("git timeouts must be positive")
        if push_attempts < 1 or push_backoff < 0:
            raise ConfigurationError("push_attempts must be >= 1 and push_backoff >= 0")
        self._url = plain_url
        self._branch = branch
        self._credentials: Credentials | None = credentials or url_credentials
        self._verify_host = verify_host
        self._connect_timeout_ms = max(1, round(connect_timeout * 1000))
        self._io_timeout_ms = max(1, round(io_timeout * 1000))
        self._proxy: str | Literal[True] | None = None if proxy is False else proxy
        self._push_attempts = push_attempts
        self._observer = observer
        # No cap below the longest nominal wait: push_attempts already bounds the total.
        self._push_backoff = Backoff(
            base=push_backoff,
            max=push_backoff * 2 ** max(0, push_attempts - 2),
            jitter=0.5,
        )
        # A token as the URL's user name stays in the URL libgit2 gets (it is how the
        # remote expects it); scrubbed from whatever libgit2 says, like a password.
        self._secrets = _secrets_of(self._credentials) + url_secrets(plain_url)
        self._path = Path(cache_dir) / hashlib.sha256(plain_url.encode()).hexdigest()[:16]
        self._lock = _mirror_lock(self._path.absolute())
        with self._lock:
            self._repo = _open_mirror(self._path)

    # --- plumbing visible to callers -----------------------------------------------------

    @property
    def url(self) -> str:
        """The remote's URL, without any credentials."""
        return redact(self._url)

    @property
    def branch(self) -> str:
        return self._branch

    @property
    def path(self) -> Path:
        """The bare mirror's folder."""
        return self._path

    def __repr__(self) -> str:
        return f"GitSource(url={self.url!r}, branch={self._branch!r}, path={str(self._path)!r})"

    # --- fetching --------------------------------------------------------------------------

    def fetch(self) -> Revision:
        """Bring the mirror up to date with the source branch; return its head.

        Raises :class:`GitError` when the branch does not exist on the remote.
        """
        revision = self.fetch_branch(self._branch)
        if revision is None:
            raise GitError(f"git remote {self.url} has no branch {self._branch!r}")
        return revision

    def fetch_branch(self, branch: str) -> Revision | None:
        """Fetch any branch of the remote (the status branch, say); None if it has none."""
        _check_branch(branch)
        with self._lock:
            head = self._fetch_branch(branch)
        return None if head is None else self.revision(str(head))

    def cached(self) -> Revision | None:
        """The head of the branch as last fetched, without the network (None: never)."""
        ref = self._repo.references.get(_TRACKING + self._branch)
        if ref is None:
            return None
        return self.revision(str(ref.target))

    # --- publishing ------------------------------------------------------------------------

    def publish(
        self,
        files: Mapping[str, bytes | None],
        *,
        branch: str,
        message: str,
        author: Author,
        start_from: str | None = None,
        derive: Derive | None = None,
        may_push: Callable[[], bool] = lambda: True,
    ) -> str | None:
        """Commit ``files`` (path -> content; ``None`` deletes) on the remote ``branch``.

        One commit on top of the remote head, or, when the remote has no such branch,
        on ``start_from`` (a commit already fetched) or as the first commit of a new
        orphan branch. Returns its id, or ``None`` when the branch
        already has this content. The push never forces: when another writer got there
        first, the same file changes are applied on the new head and pushed again.

        ``derive`` computes files that depend on the whole tree (an index of what every
        writer of the branch wrote): it is given the id of the tree about to be
        committed (the head with ``files`` applied) and returns more changes for the
        same commit. It runs again for each attempt, on that attempt's head, so what it
        computes is of the tree the push lands on.

        Raises :class:`PushRejectedError` when the remote refuses the update itself (a
        hook, a protected branch), :class:`PushConflictError` when every attempt lost
        a race, :class:`LeadershipLostError` when ``may_push``, asked before each
        push, says this replica may no longer write.

        Over the network the server applies an update only if the branch is still where
        it was when the push began, so a racing writer is never overwritten. A local
        (``file://``) remote has no server: libgit2 checks the branch when the push
        starts but then sets it without comparing, leaving a window of one push's
        duration in which a concurrent local writer could be overwritten.
        """
        _check_branch(branch)
        edits = _Edits.of(files)
        start = None if start_from is None else self._commit(start_from).id
        with self._lock:
            base = self._fetch_branch(branch) or start
            for attempt in range(1, self._push_attempts + 1):
                commit = self._commit_on(base, edits, derive, message=message, author=author)
                if commit is None:
                    return None
                if not may_push():
                    raise LeadershipLostError(f"push to {branch}: no longer the leader")
                failure = self._push(commit, branch)
                if failure is None:
                    self._set_ref(_TRACKING + branch, commit, "gitsync: published")
                    return str(commit)
                # The push failed: find out whether the branch moved under us (a lost race,
                # however the remote or libgit2 reported it) or the remote refused us.
                remote = self._fetch_branch(branch) or start
                if remote == commit:  # our update landed, only its report was lost
                    return str(commit)
                if remote == base:
                    raise failure
                log.info(
                    "git push lost a race, retrying on the new head",
                    url=self.url,
                    branch=branch,
                    attempt=attempt,
                )
                base = remote
                if attempt < self._push_attempts:
                    self._sleep_before(attempt)
        raise PushConflictError(
            f"git push to {self.url} branch {branch!r}: the branch kept moving, "
            f"gave up after {self._push_attempts} attempts"
        )

    # --- internals: network ----------------------------------------------------------------

    def _fetch_branch(self, branch: str) -> pygit2.Oid | None:
        """Fetch ``branch`` into its tracking ref; its remote head, or None if missing."""
        tracking = _TRACKING + branch
        remote = self._remote()
        callbacks = self._callbacks()
        with self._network("fetch", f"fetch {branch!r} from"):
            remote.fetch(
                [f"+refs/heads/{branch}:{tracking}"],
                callbacks=callbacks,
                proxy=self._proxy,
            )
            heads = remote.list_heads(connect=False)
        head = next((h.oid for h in heads if h.name == f"refs/heads/{branch}"), None)
        with self._reading(f"update {tracking}"):
            known = self._repo.references.get(tracking)
            if head is None:
                if known is not None:
                    known.delete()  # the branch is gone from the remote
            elif known is None or known.target != head:
                # A fetch that needed no objects may leave the ref alone: set it ourselves.
                self._repo.create_reference(tracking, head, force=True, message="gitsync: fetch")
        return head

    def _push(self, commit: pygit2.Oid, branch: str) -> GitError | None:
        """Push ``commit`` to ``branch``; the error if the remote did not take it."""
        source = _OUTGOING + branch
        self._set_ref(source, commit, "gitsync: publishing")
        refspec = f"{source}:refs/heads/{branch}"  # no leading "+": never a forced update
        remote = self._remote()
        callbacks = self._callbacks()
        try:
            with self._network("push", f"push {branch!r} to"):
                remote.push([refspec], callbacks=callbacks, proxy=self._proxy)
        except GitAuthError:
            raise
        except GitError as exc:
            # libgit2 refuses a non-fast-forward itself before sending anything; the
            # caller tells that apart from a network failure by fetching.
            return exc
        if callbacks.rejected:
            reasons = "; ".join(f"{ref}: {why}" for ref, why in callbacks.rejected.items())
            said = callbacks.remote_output()
            return PushRejectedError(
                self._scrub(
                    f"git push to {self.url} refused: {reasons}"
                    + (f" (remote said: {said})" if said else "")
                )
            )
        return None

    def _callbacks(self) -> _Callbacks:
        return _Callbacks(self._credentials, verify_host=self._verify_host, where=self.url)

    def _remote(self) -> pygit2.Remote:
        try:
            return self._repo.remotes.create_anonymous(self._url)
        except pygit2.GitError as exc:
            raise ConfigurationError(f"git remote {self.url}: {self._scrub(str(exc))}") from exc

    @contextmanager
    def _network(self, operation: Literal["fetch", "push"], what: str) -> Iterator[None]:
        pygit2.option(Option.SET_SERVER_CONNECT_TIMEOUT, self._connect_timeout_ms)
        pygit2.option(Option.SET_SERVER_TIMEOUT, self._io_timeout_ms)
        started = time.monotonic()
        failed = True
        try:
            yield
            failed = False
        except GitError:
            raise  # ours, raised by a callback
        except (pygit2.AuthError, pygit2.CertificateError) as exc:
            raise GitAuthError(f"git {what} {self.url}: {self._scrub(str(exc))}") from exc
        except (pygit2.GitError, OSError) as exc:
            raise GitUnavailableError(f"git {what} {self.url}: {self._scrub(str(exc))}") from exc
        finally:
            if self._observer is not None:
                self._observer(operation, time.monotonic() - started, failed=failed)

    def _sleep_before(self, attempt: int) -> None:
        time.sleep(self._push_backoff.delay(attempt, random.random()))  # noqa: S311 - jitter

    def _scrub(self, text: str) -> str:
        text = redact(text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _set_ref(self, name: str, target: pygit2.Oid, message: str) -> None:
        try:
            self._repo.create_reference(name, target, force=True, message=message)
        except pygit2.GitError as exc:
            raise GitError(f"git mirror {self._path}: update {name}: {exc}") from exc

    def _commit_on(
        self,
        base: pygit2.Oid | None,
        edits: _Edits,
        derive: Derive | None,
        *,
        message: str,
        author: Author,
    ) -> pygit2.Oid | None:
        """A new commit of ``edits`` (and what ``derive`` adds) on ``base`` (None: an
        orphan); None if no change."""
        try:
            base_commit = None if base is None else self._commit(str(base))
            base_tree = None if base_commit is None else base_commit.tree
            tree = _apply(self._repo, base_tree, edits.root)
            if tree is not None and derive is not None:
                derived = _Edits.of(derive(str(tree)))
                tree = _apply(self._repo, self._tree(str(tree)), derived.root)
            if tree is None or (base_tree is not None and tree == base_tree.id):
                return None
            signature = pygit2.Signature(author.name, author.email, int(time.time()), 0)
            parents = [] if base is None else [base]
            return self._repo.create_commit(None, signature, signature, message, tree, parents)
        except (pygit2.GitError, KeyError) as exc:
            raise GitError(f"git mirror {self._path}: commit: {exc}") from exc


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials, host verification and push reports for one network operation."""

    def __init__(self, credentials: Credentials | None, *, verify_host: bool, where: str) -> None:
        super().__init__()
        self._given = credentials
        self._verify_host = verify_host
        self._where = where  # the remote's URL, redacted
        self._offered = False
        self.rejected: dict[str, str] = {}
        self._output: list[str] = []

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        given, where = self._given, self._where
        if allowed_types == CredentialType.USERNAME:
            # SSH asks for the user name alone first when the URL has none.
            user = given.username if isinstance(given, SshKeyCredentials) else None
            return pygit2.Username(username_from_url or user or "git")
        if given is None:
            raise GitAuthError(f"git remote {where} wants credentials and none are configured")
        if self._offered:
            # libgit2 asks again only when the remote refused what we gave it.
            raise GitAuthError(f"git remote {where} refused the credentials of {given.username!r}")
        self._offered = True
        if isinstance(given, PasswordCredentials):
            if allowed_types & CredentialType.USERPASS_PLAINTEXT:
                return pygit2.UserPass(given.username, given.password)
        elif allowed_types & CredentialType.SSH_KEY:
            for key_file in (given.private_key, given.public_key):
                if key_file is not None and not key_file.is_file():
                    raise GitAuthError(f"SSH key file {key_file} does not exist")
            return pygit2.Keypair(
                username_from_url or given.username,
                given.public_key,
                given.private_key,
                given.passphrase or "",
            )
        raise GitAuthError(
            f"git remote {where} accepts no credentials of the kind configured "
            f"({type(given).__name__}); it allows {allowed_types!r}"
        )

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        # ``valid``: TLS verification, or for SSH libgit2's check of the host key
        # against known_hosts. pygit2 would let any SSH host key through by default.
        if valid or not self._verify_host:
            return True
        name = host.decode(errors="replace")
        raise GitAuthError(
            f"git remote {self._where}: host {name} is not trusted (unknown or changed "
            "SSH host key, or invalid TLS certificate)"
        )

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message is not None:
            self.rejected[refname] = message

    def sideband_progress(self, string: str) -> None:
        if sum(map(len, self._output)) < _SIDEBAND_LIMIT:
            self._output.append(string)

    def remote_output(self) -> str:
        """What the remote printed (hooks' messages), on one line, bounded."""
        text = " ".join("".join(self._output).split())
        return text[:_SIDEBAND_LIMIT]


# --- internals: URLs, names -----------------------------------------------------------


def _normalize_url(url: str) -> tuple[str, PasswordCredentials | None]:
    """The URL as given to libgit2 (no password in it), and the credentials it held."""
    url = url.strip()
    if not url:
        raise ConfigurationError("git remote URL is empty")
    if "://" in url:
        parts = urlsplit(url)
        if parts.password is None:
            return url, None
        username = unquote(parts.username or "")
        credentials = PasswordCredentials(username, unquote(parts.password))
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        plain = urlunsplit(SplitResult(parts.scheme, netloc, parts.path, parts.query, ""))
        return plain, credentials
    if _SCP_LIKE.match(url):
        return url, None
    # A local path: libgit2 takes it only when it exists; as a URL it says why not.
    return Path(url).expanduser().absolute().as_uri(), None


def _secrets_of(credentials: Credentials | None) -> tuple[str, ...]:
    if isinstance(credentials, PasswordCredentials):
        return (credentials.password,) if credentials.password else ()
    if isinstance(credentials, SshKeyCredentials) and credentials.passphrase:
        return (credentials.passphrase,)
    return ()


def _check_branch(branch: str) -> None:
    if not branch or not pygit2.reference_is_valid_name(f"refs/heads/{branch}"):
        raise ConfigurationError(f"not a valid git branch name: {branch!r}")


def _clean_path(path: str) -> str:
    """A file path inside a repository, without leading or doubled slashes."""
    parts = [part for part in path.split("/") if part]
    if not parts or any(part in {".", ".."} for part in parts):
        raise ValueError(f"not a file path inside a repository: {path!r}")
    return "/".join(parts)


def _folder(under: str) -> tuple[str, list[str]]:
    """The path prefix and the components of a sub-folder ('' = the root)."""
    parts = [part for part in under.split("/") if part]
    if any(part in {".", ".."} for part in parts):
        raise ConfigurationError(f"not a folder inside a repository: {under!r}")
    return "".join(f"{part}/" for part in parts), parts


# --- internals: repository ------------------------------------------------------------


def _open_mirror(path: Path) -> pygit2.Repository:
    """The bare repository at ``path``, created (or rebuilt, if broken) as needed."""
    try:
        if path.exists():
            try:
                return pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)
            except pygit2.GitError:
                # Only a cache: one that libgit2 cannot open is rebuilt from the remote.
                log.warning("git mirror unreadable, rebuilding it", path=str(path))
                shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return pygit2.init_repository(str(path), bare=True)
    except (pygit2.GitError, OSError) as exc:
        raise ConfigurationError(f"git mirror {path}: {exc}") from exc


def _revision(commit: pygit2.Commit) -> Revision:
    author = commit.author
    zone = timezone(timedelta(minutes=author.offset)) if author.offset else UTC
    return Revision(
        commit=str(commit.id),
        tree=str(commit.tree_id),
        author=Author(
            name=author.raw_name.decode("utf-8", errors="replace"),
            email=author.raw_email.decode("utf-8", errors="replace"),
        ),
        authored_at=datetime.fromtimestamp(author.time, zone),
        message=commit.raw_message.decode("utf-8", errors="replace"),
    )


# --- internals: tree walking ----------------------------------------------------------

_Node = dict[str, "_Node | None"]
"""A folder of a path set: name -> sub-folder, or None for a file."""


class _Trie:
    """A set of file paths as nested folders, for walks restricted to those paths."""

    def __init__(self) -> None:
        self.root: _Node = {}

    @classmethod
    def of(cls, paths: Iterable[str]) -> _Trie:
        trie = cls()
        for path in paths:
            node = trie.root
            *folders, name = path.split("/")
            for folder in folders:
                child = node.get(folder)
                if child is None:
                    child = node[folder] = {}
                node = child
            node.setdefault(name, None)
        return trie

    def __bool__(self) -> bool:
        return bool(self.root)

    def paths(self) -> Iterator[str]:
        stack: list[tuple[str, _Node]] = [("", self.root)]
        while stack:
            prefix, node = stack.pop()
            for name, child in node.items():
                if child is None:
                    yield prefix + name
                else:
                    stack.append((f"{prefix}{name}/", child))

    def remove(self, path: str) -> None:
        """Forget ``path``, and every folder left empty by that."""
        trail: list[tuple[_Node, str]] = []
        node: _Node | None = self.root
        for name in path.split("/"):
            if node is None or name not in node:
                return
            trail.append((node, name))
            node = node[name]
        for parent, name in reversed(trail):
            child = parent[name]
            if child:  # a folder that still holds other paths
                return
            del parent[name]


class _Changes:
    def __init__(self) -> None:
        self.added: dict[str, str] = {}
        self.modified: dict[str, str] = {}
        self.deleted: dict[str, str] = {}

    def freeze(self) -> TreeChanges:
        return TreeChanges(
            added=MappingProxyType(self.added),
            modified=MappingProxyType(self.modified),
            deleted=MappingProxyType(self.deleted),
        )


def _entry(tree: pygit2.Tree | None, name: str) -> pygit2.Object | None:
    """The entry ``name`` of ``tree``; not loaded, only its id and mode are read."""
    if tree is None:
        return None
    try:
        return tree[name]
    except KeyError:
        return None


def _descend(tree: pygit2.Tree | None, parts: list[str]) -> pygit2.Tree | None:
    for part in parts:
        entry = _entry(tree, part)
        tree = entry if isinstance(entry, pygit2.Tree) else None
    return tree


def _walk(
    new: pygit2.Tree | None,
    old: pygit2.Tree | None,
    prefix: str,
    only: _Node | None,
    out: _Changes,
) -> None:
    """Record in ``out`` the regular files that differ from ``old`` to ``new``.

    Entries with the same id and mode on both sides are skipped: an identical subtree
    is never read. ``only`` restricts the walk to a set of paths (None: everything).
    """
    for name, new_entry, old_entry, sub in _pairs(new, old, only):
        if (
            new_entry is not None
            and old_entry is not None
            and new_entry.id == old_entry.id
            and new_entry.filemode == old_entry.filemode
        ):
            continue
        path = prefix + name
        if only is None or sub is not None:  # a folder is wanted here
            new_tree = new_entry if isinstance(new_entry, pygit2.Tree) else None
            old_tree = old_entry if isinstance(old_entry, pygit2.Tree) else None
            if new_tree is not None or old_tree is not None:
                _walk(new_tree, old_tree, f"{path}/", sub, out)
        if only is None or sub is None:  # a file is wanted here
            new_id = _file_id(new_entry)
            old_id = _file_id(old_entry)
            if new_id is not None and old_id is not None:
                if new_id != old_id:
                    out.modified[path] = new_id
            elif new_id is not None:
                out.added[path] = new_id
            elif old_id is not None:
                out.deleted[path] = old_id


_Pair = tuple[str, pygit2.Object | None, pygit2.Object | None, _Node | None]

_OTHER_ENTRIES: Final = {
    FileMode.TREE: "folder",
    FileMode.LINK: "symbolic link",
    FileMode.COMMIT: "submodule",
}


def _list(tree: pygit2.Tree, prefix: str, files: dict[str, str], others: dict[str, str]) -> None:
    for entry in tree:
        path = prefix + (entry.name or "")
        if entry.filemode in _REGULAR_FILES:
            files[path] = str(entry.id)
            continue
        others[path] = _OTHER_ENTRIES.get(entry.filemode, "special entry")
        if isinstance(entry, pygit2.Tree):
            _list(entry, f"{path}/", files, others)


def _pairs(new: pygit2.Tree | None, old: pygit2.Tree | None, only: _Node | None) -> Iterator[_Pair]:
    """(name, entry in new, entry in old, wanted below) for each name to compare."""
    size = (len(new) if new is not None else 0) + (len(old) if old is not None else 0)
    if only is not None and len(only) * _LOOKUP_COST < size:
        # A few names in big folders: look each up (a binary search) on both sides.
        for name, sub in only.items():
            yield name, _entry(new, name), _entry(old, name), sub
        return
    # Reading every entry once is cheaper than that many lookups.
    new_entries = {entry.name or "": entry for entry in new} if new is not None else {}
    old_entries = {entry.name or "": entry for entry in old} if old is not None else {}
    wanted = only.items() if only is not None else dict.fromkeys(new_entries | old_entries).items()
    for name, sub in wanted:
        yield name, new_entries.get(name), old_entries.get(name), sub


def _file_id(entry: pygit2.Object | None) -> str | None:
    if entry is None or entry.filemode not in _REGULAR_FILES:
        return None
    return str(entry.id)


# --- internals: writing trees ---------------------------------------------------------

_EditNode = dict[str, "_EditNode | bytes | None"]


class _Edits:
    """File writes and deletions as nested folders, to rebuild only touched trees."""

    def __init__(self, root: _EditNode) -> None:
        self.root = root

    @classmethod
    def of(cls, files: Mapping[str, bytes | None]) -> _Edits:
        root: _EditNode = {}
        for raw_path, content in files.items():
            path = _clean_path(raw_path)
            if content is not None and not isinstance(content, bytes):
                raise TypeError(f"content of {path!r} must be bytes or None")
            node = root
            *folders, name = path.split("/")
            for folder in folders:
                child = node.setdefault(folder, {})
                folder_is_file = not isinstance(child, dict)
                if folder_is_file:
                    raise ValueError(f"{path!r} is inside {folder!r}, which is also a file")
                assert isinstance(child, dict)  # noqa: S101 - for the type checker
                node = child
            name_is_folder = isinstance(node.get(name), dict)
            if name_is_folder:
                raise ValueError(f"{path!r} is both a file and a folder")
            node[name] = content
        return cls(root)


def _apply(
    repo: pygit2.Repository, tree: pygit2.Tree | None, edits: _EditNode
) -> pygit2.Oid | None:
    """Write ``tree`` with ``edits`` applied; None when the result is empty."""
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    for name, edit in edits.items():
        existing = _entry(tree, name)
        if isinstance(edit, dict):
            # Writing "name/..." makes "name" a folder (replacing a file of that name);
            # deletions under it leave a file of that name alone.
            subtree = existing if isinstance(existing, pygit2.Tree) else None
            written = _apply(repo, subtree, edit)
            if written is not None:
                builder.insert(name, written, FileMode.TREE)
            elif subtree is not None:
                builder.remove(name)  # its last file is gone
        elif edit is not None:
            mode = FileMode.BLOB
            if existing is not None and existing.filemode == FileMode.BLOB_EXECUTABLE:
                mode = FileMode.BLOB_EXECUTABLE
            builder.insert(name, repo.create_blob(edit), mode)
        elif existing is not None:
            builder.remove(name)
    if len(builder) == 0:
        return None
    return builder.write()
