"""gitsync.clients.git against real remotes: file://, git daemon and smart HTTP.

Nothing is mocked. Remotes are bare repositories served on 127.0.0.1; "another writer"
is a work clone driven by the git command line, which also serves as the oracle for
what the remote holds and for history questions (``git log``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode, ObjectType, Option

from gitsync.clients.git import (
    Author,
    Credentials,
    GitSource,
    LastChanges,
    PasswordCredentials,
    SshKeyCredentials,
)
from gitsync.errors import (
    ConfigurationError,
    GitAuthError,
    GitError,
    GitUnavailableError,
    PushConflictError,
    PushRejectedError,
)
from tests.gitremotes import (
    Clone,
    GitDaemon,
    GitHttpServer,
    SilentServer,
    SshServer,
    closed_port,
    git,
    init_bare,
    install_racing_hook,
    install_rejecting_hook,
    keygen,
    sshd_missing,
    tls_for_localhost,
)

USER = "gitsync"
PASSWORD = "pw-7d1e0c93b2a4f5"  # distinctive: a leak is easy to spot
WRONG_PASSWORD = "wrong-5b0a9e1c77d3"
TOKEN = "ghp_tokenasuser0123456789"
STATUS = Author("gitsync", "gitsync@example.com")
TRANSPORTS = ["file", "git", "http"]
NETWORK_TRANSPORTS = ["git", "http"]
"""File remotes run no server hooks (libgit2 updates the refs itself). SSH, at a quarter
of a second per connection, has its own tests below."""


# --- remotes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def remotes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remotes")


@pytest.fixture(scope="module")
def git_daemon(remotes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitDaemon]:
    daemon = GitDaemon(remotes_root, tmp_path_factory.mktemp("daemon") / "daemon.log")
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def http_server(remotes_root: Path) -> Iterator[GitHttpServer]:
    server = GitHttpServer(remotes_root, username=USER, password=PASSWORD)
    yield server
    server.stop()


@contextmanager
def libgit2_home(home: Path, known_hosts: str) -> Iterator[None]:
    """libgit2 checks SSH host keys against ``<its home>/.ssh/known_hosts``."""
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "known_hosts").write_text(known_hosts)
    previous = pygit2.option(Option.GET_HOMEDIR)
    pygit2.option(Option.SET_HOMEDIR, str(home))
    try:
        yield
    finally:
        pygit2.option(Option.SET_HOMEDIR, previous or os.environ.get("HOME", "/"))


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """sshd with a host key that libgit2's known_hosts trusts, for this module."""
    if reason := sshd_missing():
        pytest.fail(f"{reason}: hack/setup installs it", pytrace=False)
    folder = tmp_path_factory.mktemp("sshd")
    server = SshServer(folder / "server")
    try:
        with libgit2_home(folder / "home", server.known_hosts_line()):
            yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Remote:
    """One bare repository, and how to reach it over one transport."""

    transport: str
    bare: Path
    url: str
    credentials: Credentials | None


@pytest.fixture
def make_remote(request: pytest.FixtureRequest, remotes_root: Path) -> Callable[[str], Remote]:
    """A new bare repository reached over the given transport."""

    def make(transport: str) -> Remote:
        name = f"{request.node.name}-{time.monotonic_ns()}".translate(str.maketrans("[]/:", "____"))
        bare = init_bare(remotes_root / f"{name}.git")
        if transport == "file":
            return Remote(transport, bare, bare.as_uri(), None)
        if transport == "git":
            daemon: GitDaemon = request.getfixturevalue("git_daemon")
            return Remote(transport, bare, daemon.url(bare), None)
        if transport == "ssh":
            sshd: SshServer = request.getfixturevalue("ssh_server")
            key = SshKeyCredentials(sshd.client_key, sshd.client_public_key)
            return Remote(transport, bare, sshd.url(bare), key)
        server: GitHttpServer = request.getfixturevalue("http_server")
        return Remote(transport, bare, server.url(bare), PasswordCredentials(USER, PASSWORD))

    return make


@pytest.fixture(params=TRANSPORTS)
def remote(request: pytest.FixtureRequest, make_remote: Callable[[str], Remote]) -> Remote:
    return make_remote(request.param)


@pytest.fixture(params=NETWORK_TRANSPORTS)
def network_remote(request: pytest.FixtureRequest, make_remote: Callable[[str], Remote]) -> Remote:
    """A remote whose server runs hooks."""
    return make_remote(request.param)


@pytest.fixture
def writer(remote: Remote, tmp_path: Path) -> Clone:
    """Another writer: a work clone of the remote with one commit on ``main``."""
    return _writer_of(remote, tmp_path)


@pytest.fixture
def network_writer(network_remote: Remote, tmp_path: Path) -> Clone:
    return _writer_of(network_remote, tmp_path)


def _writer_of(remote: Remote, tmp_path: Path) -> Clone:
    clone = Clone(tmp_path / "writer", remote.bare)
    clone.checkout("main", orphan=True)
    clone.commit({"README.md": "specs\n"}, "initial")
    clone.push("main")
    return clone


@pytest.fixture
def open_source(tmp_path: Path) -> Iterator[Callable[..., GitSource]]:
    """Open GitSources on a per-test cache folder; all are closed afterwards."""
    opened: list[GitSource] = []

    def open_(remote: Remote | str, **options: object) -> GitSource:
        if isinstance(remote, Remote):
            options.setdefault("credentials", remote.credentials)
            url = remote.url
        else:
            url = remote
        options.setdefault("branch", "main")
        options.setdefault("cache_dir", tmp_path / "cache")
        options.setdefault("push_backoff", 0.01)
        source = GitSource(url, **options)  # type: ignore[arg-type]
        opened.append(source)
        return source

    yield open_
    for source in opened:
        source.close()


def remote_head(remote: Remote, branch: str) -> str | None:
    out = git("ls-remote", "--heads", remote.bare, branch)
    return out.split()[0] if out else None


def remote_files(remote: Remote, branch: str) -> dict[str, str]:
    """The files on a remote branch and their content, read with the git CLI."""
    names = git("ls-tree", "-r", "--name-only", branch, cwd=remote.bare).split("\n")
    return {name: git("show", f"{branch}:{name}", cwd=remote.bare) for name in names if name}


def first_parents(remote: Remote, branch: str) -> list[str]:
    return git("rev-list", "--first-parent", branch, cwd=remote.bare).split()


# --- fetching ---------------------------------------------------------------------------


def test_fetch_mirrors_new_commits(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource], tmp_path: Path
) -> None:
    source = open_source(remote)
    assert source.cached() is None

    first = source.fetch()
    assert first.commit == git("rev-parse", "HEAD", cwd=writer.path)
    assert first.tree == git("rev-parse", "HEAD^{tree}", cwd=writer.path)
    assert first.summary == "initial"

    second_sha = writer.commit({"specs/a.yaml": "a: 1\n"}, "add a\n\nwith a body")
    writer.push("main")
    second = source.fetch()
    assert second.commit == second_sha != first.commit
    assert second.message == "add a\n\nwith a body\n"
    assert second.author == Author("Other Writer", "other@example.com")
    assert int(second.authored_at.timestamp()) == int(
        git("log", "-1", "--format=%at", cwd=writer.path)
    )
    assert second.authored_at.tzinfo is not None
    assert source.cached() == second
    assert source.fetch() == second  # nothing new: same answer

    # A bare mirror, where the brief says, and no work tree anywhere.
    key = hashlib.sha256(remote.url.encode()).hexdigest()[:16]
    assert source.path == tmp_path / "cache" / key
    mirror = pygit2.Repository(str(source.path))
    assert mirror.is_bare
    assert mirror.workdir is None
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [key]


def test_fetch_of_a_missing_branch_is_a_git_error(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    source = open_source(remote, branch="no-such-branch")
    with pytest.raises(GitError, match="no-such-branch") as caught:
        source.fetch()
    assert not isinstance(caught.value, GitUnavailableError)


def test_branch_deleted_on_the_remote_is_forgotten(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    writer.push("doomed")
    source = open_source(remote, branch="doomed")
    assert source.fetch().commit == remote_head(remote, "doomed")
    git("update-ref", "-d", "refs/heads/doomed", cwd=remote.bare)
    with pytest.raises(GitError, match="doomed"):
        source.fetch()
    assert source.cached() is None


def test_local_path_urls_work(
    tmp_path: Path, make_remote: Callable[[str], Remote], open_source: Callable[..., GitSource]
) -> None:
    remote = make_remote("file")
    writer = _writer_of(remote, tmp_path)
    source = open_source(str(remote.bare))
    assert source.fetch().commit == git("rev-parse", "HEAD", cwd=writer.path)
    assert source.url == remote.bare.as_uri()


# --- reading ----------------------------------------------------------------------------


def test_files_under_a_sub_folder(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    writer.write(
        {
            "specs/model.yaml": "kind: Model\n",
            "specs/team/run.yaml": "kind: Run\n",
            "specs/run.sh": "#!/bin/sh\n",
            "specsextra/not-under.yaml": "x\n",
            "other/x.yaml": "x\n",
        }
    )
    (writer.path / "specs" / "run.sh").chmod(0o755)
    (writer.path / "specs" / "link.yaml").symlink_to("model.yaml")
    git("add", "-A", cwd=writer.path)
    sha = writer.commit({}, "specs")
    writer.push("main")
    source = open_source(remote)
    revision = source.fetch()

    files = source.files(revision.commit, under="specs")
    expected = {
        path: git("rev-parse", f"{sha}:{path}", cwd=writer.path)
        for path in ["specs/model.yaml", "specs/team/run.yaml", "specs/run.sh"]
    }
    assert files == expected  # no symlink, nothing outside specs/, root-relative paths
    assert source.files(revision.tree, under="/specs/") == expected
    assert source.files(revision.commit, under="specs/team") == {
        "specs/team/run.yaml": expected["specs/team/run.yaml"]
    }
    assert source.read_blob(files["specs/model.yaml"]) == b"kind: Model\n"
    assert source.files(revision.commit, under="nowhere") == {}
    assert source.files(revision.commit, under="README.md") == {}
    assert set(source.files(revision.commit)) >= {"README.md", "other/x.yaml", *expected}


def test_reading_unknown_objects_is_a_git_error(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    source = open_source(remote)
    revision = source.fetch()
    with pytest.raises(GitError):
        source.read_blob("0" * 40)
    with pytest.raises(GitError):
        source.read_blob(revision.tree)  # a tree, not a blob
    with pytest.raises(GitError):
        source.files("not-a-sha")
    with pytest.raises(ConfigurationError):
        source.files(revision.commit, under="../etc")


# --- changed files ------------------------------------------------------------------------


def test_changes_between_commits(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    old_sha = writer.commit(
        {
            "specs/keep.yaml": "keep\n",
            "specs/edit.yaml": "v1\n",
            "specs/gone.yaml": "bye\n",
            "specs/dir-becomes-file/x.yaml": "x\n",
            "specs/file-becomes-dir": "f\n",
            "outside.yaml": "v1\n",
        }
    )
    new_sha = writer.commit(
        {
            "specs/edit.yaml": "v2\n",
            "specs/gone.yaml": None,
            "specs/new/deep/added.yaml": "new\n",
            "specs/dir-becomes-file": None,
            "specs/file-becomes-dir": None,
            "outside.yaml": "v2\n",
        }
    )
    writer.commit({"specs/dir-becomes-file": "now a file\n", "specs/file-becomes-dir/y": "y\n"})
    newest_sha = git("rev-parse", "HEAD", cwd=writer.path)
    writer.push("main")
    source = open_source(remote)
    source.fetch()

    def blob(commit: str, path: str) -> str:
        return git("rev-parse", f"{commit}:{path}", cwd=writer.path)

    changes = source.changes(old_sha, newest_sha, under="specs")
    assert dict(changes.added) == {
        "specs/new/deep/added.yaml": blob(new_sha, "specs/new/deep/added.yaml"),
        "specs/dir-becomes-file": blob(newest_sha, "specs/dir-becomes-file"),
        "specs/file-becomes-dir/y": blob(newest_sha, "specs/file-becomes-dir/y"),
    }
    assert dict(changes.modified) == {"specs/edit.yaml": blob(new_sha, "specs/edit.yaml")}
    assert dict(changes.deleted) == {
        "specs/gone.yaml": blob(old_sha, "specs/gone.yaml"),
        "specs/dir-becomes-file/x.yaml": blob(old_sha, "specs/dir-becomes-file/x.yaml"),
        "specs/file-becomes-dir": blob(old_sha, "specs/file-becomes-dir"),
    }
    # The git CLI agrees on which paths changed.
    cli = git(
        "diff", "--name-only", "--no-renames", old_sha, newest_sha, "--", "specs", cwd=writer.path
    )
    assert changes.paths == set(cli.split())

    everything = source.changes(old_sha, newest_sha)
    assert "outside.yaml" in everything.modified
    assert not source.changes(newest_sha, newest_sha)
    from_nothing = source.changes(None, newest_sha, under="specs")
    assert dict(from_nothing.added) == source.files(newest_sha, under="specs")
    assert not from_nothing.modified
    assert not from_nothing.deleted


def _raw_tree(entries: Mapping[str, tuple[int, pygit2.Oid]]) -> bytes:
    """A tree object's bytes, in git's entry order (folders sort as 'name/')."""

    def key(name: str) -> bytes:
        mode, _ = entries[name]
        return (name + "/" if mode == FileMode.TREE else name).encode()

    return b"".join(
        f"{entries[name][0]:o} {name}".encode() + b"\0" + entries[name][1].raw
        for name in sorted(entries, key=key)
    )


def test_changes_never_read_identical_subtrees(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    """Both trees share a subtree whose object is missing from the repository.

    Descending into it would fail, so the walk can only succeed by skipping it; the
    same trees make libgit2's own diff, and a full listing, fail.
    """
    source = open_source(remote)
    source.fetch()
    repo = pygit2.Repository(str(source.path))
    missing = pygit2.Oid(hex=hashlib.sha1(b"never written").hexdigest())  # noqa: S324
    assert missing not in repo

    def tree(entries: Mapping[str, tuple[int, pygit2.Oid]]) -> pygit2.Oid:
        return repo.odb.write(ObjectType.TREE, _raw_tree(entries))

    a1, a2, b = (repo.create_blob(text) for text in (b"a: 1\n", b"a: 2\n", b"b\n"))
    old = tree(
        {
            "specs": (FileMode.TREE, tree({"a.yaml": (FileMode.BLOB, a1)})),
            "vendor": (FileMode.TREE, missing),
        }
    )
    new_specs = tree({"a.yaml": (FileMode.BLOB, a2), "b.yaml": (FileMode.BLOB, b)})
    new = tree({"specs": (FileMode.TREE, new_specs), "vendor": (FileMode.TREE, missing)})

    changes = source.changes(str(old), str(new))
    assert dict(changes.modified) == {"specs/a.yaml": str(a2)}
    assert dict(changes.added) == {"specs/b.yaml": str(b)}
    assert not changes.deleted

    # The missing subtree is real: anything that descends into it fails.
    with pytest.raises(GitError):
        source.files(str(new))
    old_tree = repo[old]
    new_tree = repo[new]
    assert isinstance(old_tree, pygit2.Tree)
    assert isinstance(new_tree, pygit2.Tree)
    with pytest.raises(pygit2.GitError):
        old_tree.diff_to_tree(new_tree)


# --- last changes -------------------------------------------------------------------------


def _oracle(repo_dir: Path, head: str, path: str) -> str:
    """The commit that last changed ``path``, along first parents, says git log."""
    return git("log", "-1", "--first-parent", "--format=%H", head, "--", path, cwd=repo_dir)


def test_last_changes_names_the_commit_that_changed_each_file(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    c1 = writer.commit(
        {
            "specs/a.yaml": "a1\n",
            "specs/b.yaml": "b1\n",
            "specs/team/c.yaml": "c1\n",
            "other/x": "x1\n",
        },
        "c1",
    )
    c2 = writer.commit({"specs/a.yaml": "a2\n"}, "c2")
    c3 = writer.commit({"other/x": "x2\n"}, "c3")
    writer.checkout("side", new=True)
    side = writer.commit({"specs/b.yaml": "b2\n"}, "side")
    writer.checkout("main")
    c4 = writer.commit({"specs/team/c.yaml": "c2\n"}, "c4")
    git("merge", "--quiet", "--no-ff", "-m", "merge side", "side", cwd=writer.path)
    c5 = git("rev-parse", "HEAD", cwd=writer.path)
    c6 = writer.commit({"other/x": "x3\n", "specs/gone.yaml": "here\n"}, "c6")
    c7 = writer.commit({"specs/gone.yaml": None}, "c7")
    writer.push("main")
    source = open_source(remote)
    head = source.fetch().commit
    assert head == c7

    paths = ["specs/a.yaml", "specs/b.yaml", "specs/team/c.yaml", "other/x", "README.md"]
    result = source.last_changes(head, [*paths, "specs/gone.yaml", "no/such/file", "specs"])
    assert result.commit == head
    assert dict(result.by_path) == {
        "specs/a.yaml": c2,
        "specs/b.yaml": c5,  # changed on a side branch: the merge brought it in
        "specs/team/c.yaml": c4,
        "other/x": c6,
        "README.md": git("rev-parse", "main~7", cwd=writer.path),
    }
    assert side not in result.by_path.values()
    assert c1 not in result.by_path.values()
    for path in paths:
        assert result.by_path[path] == _oracle(writer.path, head, path), path

    # Incremental: from an earlier result, the same answer as a full walk.
    earlier = source.last_changes(c3, paths)
    assert dict(earlier.by_path) == {path: _oracle(writer.path, c3, path) for path in paths}
    assert source.last_changes(head, paths, previous=earlier) == result
    # Asking about more paths than the earlier result knew walks on for those.
    assert source.last_changes(head, paths, previous=source.last_changes(c3, paths[:1])) == (result)
    # An unrelated "previous" (a rewritten branch) falls back to a full walk.
    unrelated = LastChanges(commit="f" * 40, by_path={"specs/a.yaml": "e" * 40})
    assert source.last_changes(head, paths, previous=unrelated) == result


def _commit_files(
    repo: pygit2.Repository,
    index: pygit2.Index,
    parents: list[pygit2.Oid],
    files: Mapping[str, bytes | None],
    message: str,
) -> pygit2.Oid:
    """A commit built straight in ``repo`` (loose objects) from an in-memory index."""
    for path, content in files.items():
        if content is None:
            index.remove(path)
        else:
            index.add(pygit2.IndexEntry(path, repo.create_blob(content), FileMode.BLOB))
    tree = index.write_tree(repo)
    signature = pygit2.Signature("Builder", "builder@example.com", 1_700_000_000, 0)
    return repo.create_commit(None, signature, signature, message, tree, parents)


def test_last_changes_incremental_walks_only_new_commits(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource], tmp_path: Path
) -> None:
    """Commits older than the previous head are deleted: only a full walk needs them."""
    source = open_source(remote)
    source.fetch()
    repo = pygit2.Repository(str(source.path))
    index = pygit2.Index()
    m1 = _commit_files(repo, index, [], {"a": b"1", "b": b"1", "c/d": b"1"}, "m1")
    m2 = _commit_files(repo, index, [m1], {"b": b"2"}, "m2")
    m3 = _commit_files(repo, index, [m2], {"c/d": b"3"}, "m3")
    m4 = _commit_files(repo, index, [m3], {"b": b"4"}, "m4")
    m5 = _commit_files(repo, index, [m4], {"e": b"5"}, "m5")
    paths = ["a", "b", "c/d", "e"]
    previous = source.last_changes(str(m3), ["a", "b", "c/d"])
    assert dict(previous.by_path) == {"a": str(m1), "b": str(m2), "c/d": str(m3)}
    expected = {"a": str(m1), "b": str(m4), "c/d": str(m3), "e": str(m5)}
    assert dict(source.last_changes(str(m5), paths).by_path) == expected

    for old in (m1, m2):
        loose = source.path / "objects" / str(old)[:2] / str(old)[2:]
        loose.unlink()
    fresh = open_source(remote)  # no object cache from the walks above
    assert fresh.path == source.path
    assert dict(fresh.last_changes(str(m5), paths, previous=previous).by_path) == expected
    with pytest.raises(GitError):
        fresh.last_changes(str(m5), paths)  # the full walk needs m2 and m1


def test_last_changes_over_a_large_history(
    tmp_path: Path, make_remote: Callable[[str], Remote], open_source: Callable[..., GitSource]
) -> None:
    """3000 files in 60 folders, 300 commits with merges: every answer matches git log."""
    remote = make_remote("file")
    _writer_of(remote, tmp_path)
    source = open_source(remote)
    source.fetch()
    repo = pygit2.Repository(str(source.path))
    folders = [f"specs/team-{t:02}/env-{e}" for t in range(20) for e in range(3)]
    paths = [f"{folder}/model-{m:02}.yaml" for folder in folders for m in range(50)]
    index = pygit2.Index()
    head = _commit_files(repo, index, [], {p: p.encode() for p in paths}, "all")
    side_index = pygit2.Index()
    side_index.read_tree(repo[head].peel(pygit2.Tree))
    side = head
    commits = [head]
    for n in range(1, 300):
        touched = {paths[(n * 7919 + k * 104729) % len(paths)]: b"%d-%d" % (n, k) for k in range(3)}
        if n % 25 == 0:
            # A merge of a side branch that changed one more file.
            extra = paths[(n * 31) % len(paths)]
            side = _commit_files(repo, side_index, [side], {extra: f"side {n}".encode()}, "side")
            touched[extra] = f"side {n}".encode()
            head = _commit_files(repo, index, [head, side], touched, f"merge {n}")
        else:
            head = _commit_files(repo, index, [head], touched, f"c{n}")
        commits.append(head)

    started = time.perf_counter()
    full = source.last_changes(str(head), paths)
    elapsed = time.perf_counter() - started
    log = git(
        "log", "--first-parent", "--format=commit %H", "--name-only", str(head), cwd=source.path
    )
    expected: dict[str, str] = {}
    current = ""
    for line in log.splitlines():
        if line.startswith("commit "):
            current = line.split()[1]
        elif line:
            expected.setdefault(line, current)
    assert dict(full.by_path) == expected
    assert len(full.by_path) == len(paths)

    middle = source.last_changes(str(commits[150]), paths)
    started = time.perf_counter()
    incremental = source.last_changes(str(head), paths, previous=middle)
    incremental_elapsed = time.perf_counter() - started
    assert incremental == full
    print(f"last_changes: full {elapsed:.3f} s, incremental {incremental_elapsed:.3f} s")


# --- publishing -------------------------------------------------------------------------


def test_publish_creates_an_orphan_branch(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    main_before = remote_head(remote, "main")
    source = open_source(remote)
    assert source.fetch_branch("status") is None
    sha = source.publish(
        {"status/a.json": b'{"ok": true}\n', "status/deep/b.json": b"1\n"},
        branch="status",
        message="status: 2 objects",
        author=STATUS,
    )
    assert sha is not None
    assert remote_head(remote, "status") == sha
    assert git("rev-list", "--parents", "status", cwd=remote.bare) == sha  # one, no parent
    assert remote_files(remote, "status") == {
        "status/a.json": '{"ok": true}',
        "status/deep/b.json": "1",
    }
    assert git("log", "-1", "--format=%an <%ae>|%s", "status", cwd=remote.bare) == (
        "gitsync <gitsync@example.com>|status: 2 objects"
    )
    assert remote_head(remote, "main") == main_before
    status = source.fetch_branch("status")
    assert status is not None
    assert status.commit == sha
    assert status.author == STATUS
    assert set(source.files(sha)) == {"status/a.json", "status/deep/b.json"}


def test_publish_to_an_empty_remote(remote: Remote, open_source: Callable[..., GitSource]) -> None:
    source = open_source(remote)
    with pytest.raises(GitError, match="no branch"):
        source.fetch()
    sha = source.publish({"a": b"1"}, branch="status", message="first", author=STATUS)
    assert sha is not None
    assert first_parents(remote, "status") == [sha]
    assert remote_head(remote, "main") is None


def test_publish_without_changes_makes_no_commit(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    source = open_source(remote)

    def publish(files: Mapping[str, bytes | None]) -> str | None:
        return source.publish(files, branch="status", message="status", author=STATUS)

    assert publish({"gone": None}) is None  # nothing to write: no branch either
    assert remote_head(remote, "status") is None
    first = publish({"s/a": b"1", "s/deep/b": b"2"})
    assert first is not None
    assert publish({"s/a": b"1", "s/deep/b": b"2"}) is None
    assert publish({"s/a": b"1", "not/there": None}) is None
    assert publish({"s/a/under-a-file": None}) is None  # "s/a" is a file: left alone
    assert remote_head(remote, "status") == first

    second = publish({"s/deep/b": None, "s/c": b"3"})
    assert second is not None
    assert git("rev-parse", f"{second}^", cwd=remote.bare) == first
    assert remote_files(remote, "status") == {"s/a": "1", "s/c": "3"}  # empty folder gone

    # A fresh mirror (another daemon, a restart) builds on the remote branch as well.
    other = open_source(remote, cache_dir=source.path.parent / "other-cache")
    assert other.publish({"s/a": b"1"}, branch="status", message="m", author=STATUS) is None
    third = other.publish({"s/d": b"4"}, branch="status", message="m", author=STATUS)
    assert first_parents(remote, "status") == [third, second, first]


def test_publish_keeps_what_others_wrote_on_the_branch(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    source = open_source(remote)
    ours = source.publish({"status/ours": b"1"}, branch="status", message="m", author=STATUS)
    theirs = writer.race("status")
    again = source.publish({"status/ours": b"2"}, branch="status", message="m", author=STATUS)
    assert first_parents(remote, "status") == [again, theirs, ours]
    assert remote_files(remote, "status") == {"status/ours": "2", "other/1.txt": "1"}


def test_publish_retries_when_another_writer_lands_first(
    network_remote: Remote,
    network_writer: Clone,
    open_source: Callable[..., GitSource],
    tmp_path: Path,
) -> None:
    """The server finds the branch moved while our push waited: we re-apply and retry."""
    remote = network_remote
    source = open_source(remote)
    first = source.publish({"status/ours": b"1"}, branch="status", message="m", author=STATUS)
    racer = Clone(tmp_path / "racer", remote.bare)
    install_racing_hook(remote.bare, racer, "status", once=True)

    ours = source.publish({"status/ours": b"2"}, branch="status", message="m", author=STATUS)

    history = first_parents(remote, "status")
    assert len(history) == 3
    assert history[0] == ours
    assert history[2] == first
    theirs = history[1]
    assert git("log", "-1", "--format=%s", theirs, cwd=remote.bare) == "another writer"
    assert remote_files(remote, "status") == {"status/ours": "2", "other/1.txt": "1"}


def test_publish_derives_files_from_the_tree_each_attempt_lands_on(
    network_remote: Remote,
    network_writer: Clone,
    open_source: Callable[..., GitSource],
    tmp_path: Path,
) -> None:
    """What ``derive`` computes is of the tree pushed: after a lost race it runs again,
    on the other writer's head."""
    remote = network_remote
    source = open_source(remote)

    def index(tree: str) -> dict[str, bytes | None]:
        seen.append(tree)
        listing = "".join(f"{path}\n" for path in sorted(source.files(tree)) if path != "INDEX")
        return {"INDEX": listing.encode()}

    seen: list[str] = []
    first = source.publish(
        {"status/ours": b"1"}, branch="status", message="m", author=STATUS, derive=index
    )
    assert remote_files(remote, "status")["INDEX"] == "status/ours"
    racer = Clone(tmp_path / "racer", remote.bare)
    install_racing_hook(remote.bare, racer, "status", once=True)
    seen.clear()

    ours = source.publish(
        {"status/ours": b"2"}, branch="status", message="m", author=STATUS, derive=index
    )

    assert len(seen) == 2  # once per attempt, each on its own head
    history = first_parents(remote, "status")
    assert (history[0], history[2]) == (ours, first)
    files = remote_files(remote, "status")
    assert files["INDEX"] == "other/1.txt\nstatus/ours"  # the racer's file is in it
    assert files["status/ours"] == "2"


def test_publish_retries_after_libgit2_refuses_a_non_fast_forward(
    make_remote: Callable[[str], Remote],
    http_server: GitHttpServer,
    open_source: Callable[..., GitSource],
    tmp_path: Path,
) -> None:
    """Another writer lands after our fetch, before the push starts: libgit2 sees the
    branch moved and refuses to push at all (a client-side non-fast-forward)."""
    remote = make_remote("http")
    _writer_of(remote, tmp_path)
    source = open_source(remote)
    first = source.publish({"status/ours": b"1"}, branch="status", message="m", author=STATUS)
    racer = Clone(tmp_path / "racer", remote.bare)
    theirs: list[str] = []
    http_server.before("receive-pack-advertisement", lambda: theirs.append(racer.race("status")))
    pushes_before = _receive_pack_posts(http_server)

    ours = source.publish({"status/ours": b"2"}, branch="status", message="m", author=STATUS)

    assert first_parents(remote, "status") == [ours, theirs[0], first]
    assert remote_files(remote, "status") == {"status/ours": "2", "other/1.txt": "1"}
    # The first attempt never sent a pack: libgit2 stopped it before the POST.
    assert _receive_pack_posts(http_server) == pushes_before + 1


def _receive_pack_posts(server: GitHttpServer) -> int:
    return sum(
        1
        for method, path, status in server.requests
        if method == "POST" and path.endswith("git-receive-pack") and status == 200
    )


def test_publish_gives_up_when_the_branch_keeps_moving(
    network_remote: Remote,
    network_writer: Clone,
    open_source: Callable[..., GitSource],
    tmp_path: Path,
) -> None:
    remote = network_remote
    source = open_source(remote, push_attempts=3, push_backoff=0.01)
    source.publish({"status/ours": b"1"}, branch="status", message="m", author=STATUS)
    install_racing_hook(remote.bare, Clone(tmp_path / "racer", remote.bare), "status", once=False)

    with pytest.raises(PushConflictError, match="3 attempts"):
        source.publish({"status/ours": b"2"}, branch="status", message="m", author=STATUS)

    # Three attempts, each beaten by another writer; nothing of theirs was lost.
    assert remote_files(remote, "status") == {
        "status/ours": "1",
        "other/1.txt": "1",
        "other/2.txt": "2",
        "other/3.txt": "3",
    }
    assert len(first_parents(remote, "status")) == 4


def test_publish_refused_by_a_hook(
    network_remote: Remote, network_writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    remote = network_remote
    source = open_source(remote)
    first = source.publish({"status/a": b"1"}, branch="status", message="m", author=STATUS)
    install_rejecting_hook(remote.bare, "status branch is frozen for maintenance")

    with pytest.raises(PushRejectedError, match="frozen for maintenance"):
        source.publish({"status/a": b"2"}, branch="status", message="m", author=STATUS)
    assert remote_head(remote, "status") == first
    with pytest.raises(PushRejectedError):  # creating a branch is refused the same way
        source.publish({"status/a": b"2"}, branch="other", message="m", author=STATUS)
    assert remote_head(remote, "other") is None


def test_publish_to_an_unreachable_remote(open_source: Callable[..., GitSource]) -> None:
    source = open_source(f"git://127.0.0.1:{closed_port()}/repo.git")
    with pytest.raises(GitUnavailableError):
        source.publish({"a": b"1"}, branch="status", message="m", author=STATUS)


def test_publish_refuses_bad_input(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    source = open_source(remote)
    for files in ({"../escape": b"x"}, {"": b"x"}, {"a": b"1", "a/b": b"2"}):
        with pytest.raises(ValueError, match="a"):
            source.publish(files, branch="status", message="m", author=STATUS)
    with pytest.raises(ConfigurationError):
        source.publish({"a": b"1"}, branch="bad..name", message="m", author=STATUS)
    assert remote_head(remote, "status") is None


# --- credentials ------------------------------------------------------------------------


def _all_text(exc: BaseException) -> str:
    """Everything a log line or traceback could show of an exception, causes included."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.__cause__)


def _files_containing(folder: Path, secret: str) -> list[Path]:
    return [
        path
        for path in folder.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]


def test_wrong_password_over_http_is_an_auth_error(
    make_remote: Callable[[str], Remote],
    open_source: Callable[..., GitSource],
    tmp_path: Path,
) -> None:
    remote = make_remote("http")
    _writer_of(remote, tmp_path)
    source = open_source(remote.url, credentials=PasswordCredentials(USER, WRONG_PASSWORD))
    with pytest.raises(GitAuthError) as caught:
        source.fetch()
    assert WRONG_PASSWORD not in _all_text(caught.value)
    assert WRONG_PASSWORD not in repr(source)

    with pytest.raises(GitAuthError):
        source.publish({"a": b"1"}, branch="status", message="m", author=STATUS)

    no_credentials = open_source(remote.url, credentials=None)
    with pytest.raises(GitAuthError, match="none are configured"):
        no_credentials.fetch()


def test_credentials_in_the_url_are_used_and_never_shown(
    make_remote: Callable[[str], Remote],
    open_source: Callable[..., GitSource],
    tmp_path: Path,
) -> None:
    remote = make_remote("http")
    writer = _writer_of(remote, tmp_path)
    host_and_path = remote.url.removeprefix("http://")

    good = open_source(f"http://{USER}:{PASSWORD}@{host_and_path}", credentials=None)
    assert good.fetch().commit == git("rev-parse", "HEAD", cwd=writer.path)
    assert good.publish({"a": b"1"}, branch="status", message="m", author=STATUS)
    assert PASSWORD not in repr(good)
    assert PASSWORD not in good.url
    assert good.url == f"http://***@{host_and_path}"
    # Same remote as without the password: same mirror, and the secret is not on disk.
    plain = f"http://{USER}@{host_and_path}"
    assert good.path.name == hashlib.sha256(plain.encode()).hexdigest()[:16]
    assert _files_containing(tmp_path / "cache", PASSWORD) == []

    bad = open_source(f"http://{USER}:{WRONG_PASSWORD}@{host_and_path}", credentials=None)
    with pytest.raises(GitAuthError) as caught:
        bad.fetch()
    assert WRONG_PASSWORD not in _all_text(caught.value)
    assert WRONG_PASSWORD not in repr(bad)
    assert _files_containing(tmp_path / "cache", WRONG_PASSWORD) == []

    with pytest.raises(ConfigurationError) as twice:
        open_source(
            f"http://{USER}:{PASSWORD}@{host_and_path}",
            credentials=PasswordCredentials(USER, PASSWORD),
        )
    assert PASSWORD not in _all_text(twice.value)


def test_ssh_host_keys_are_checked(
    ssh_server: SshServer,
    make_remote: Callable[[str], Remote],
    open_source: Callable[..., GitSource],
    tmp_path: Path,
) -> None:
    remote = make_remote("ssh")
    writer = _writer_of(remote, tmp_path)
    head = git("rev-parse", "HEAD", cwd=writer.path)
    assert open_source(remote).fetch().commit == head  # the module trusts the host key

    with libgit2_home(tmp_path / "stranger", known_hosts=""):
        with pytest.raises(GitAuthError, match="not trusted"):
            open_source(remote).fetch()
        with pytest.raises(GitAuthError, match="not trusted"):
            open_source(remote).publish({"a": b"1"}, branch="s", message="m", author=STATUS)
        insecure = open_source(remote, verify_host=False, cache_dir=tmp_path / "insecure")
        assert insecure.fetch().commit == head

    # known_hosts names another key for this host and port: a changed host key.
    imposter = keygen(tmp_path / "imposter_key")
    kind, key = Path(f"{imposter}.pub").read_text().split()[:2]
    changed = f"[127.0.0.1]:{ssh_server.port} {kind} {key}\n"
    with (
        libgit2_home(tmp_path / "changed", changed),
        pytest.raises(GitAuthError, match="not trusted"),
    ):
        open_source(remote).fetch()

    wrong_client = open_source(remote, credentials=SshKeyCredentials(imposter))
    with pytest.raises(GitAuthError):
        wrong_client.fetch()
    no_key = open_source(remote, credentials=SshKeyCredentials(tmp_path / "no-such-key"))
    with pytest.raises(GitAuthError, match="does not exist"):
        no_key.fetch()


def test_https_certificates_are_verified(
    remotes_root: Path,
    make_remote: Callable[[str], Remote],
    open_source: Callable[..., GitSource],
    tmp_path: Path,
) -> None:
    remote = make_remote("file")
    writer = _writer_of(remote, tmp_path)
    head = git("rev-parse", "HEAD", cwd=writer.path)
    tls, certificate = tls_for_localhost(tmp_path / "tls")
    server = GitHttpServer(remotes_root, username=USER, password=PASSWORD, tls=tls)
    try:
        url = server.url(remote.bare)
        assert url.startswith("https://")
        credentials = PasswordCredentials(USER, PASSWORD)
        with pytest.raises(GitAuthError, match="not trusted"):
            open_source(url, credentials=credentials).fetch()
        insecure = open_source(url, credentials=credentials, verify_host=False)
        assert insecure.fetch().commit == head

        # Trusted through the CA store: verification passes on its own. (This adds the
        # throwaway certificate to libgit2's store for the rest of this process.)
        settings = pygit2.settings
        previous = (settings.ssl_cert_file, settings.ssl_cert_dir)
        settings.set_ssl_cert_locations(str(certificate), None)
        try:
            trusted = open_source(url, credentials=credentials, cache_dir=tmp_path / "trusted")
            assert trusted.fetch().commit == head
        finally:
            if previous[0] is not None:
                settings.set_ssl_cert_locations(previous[0], previous[1])
    finally:
        server.stop()


def test_fetch_and_publish_over_ssh(
    make_remote: Callable[[str], Remote], open_source: Callable[..., GitSource], tmp_path: Path
) -> None:
    """The SSH transport end to end: fetch, read, publish, a lost race, a refusal."""
    remote = make_remote("ssh")
    writer = _writer_of(remote, tmp_path)
    head = writer.commit({"specs/a.yaml": "a: 1\n"})
    writer.push("main")
    source = open_source(remote)
    revision = source.fetch()
    assert revision.commit == head
    assert source.read_blob(source.files(head, under="specs")["specs/a.yaml"]) == b"a: 1\n"

    first = source.publish({"status/a": b"1"}, branch="status", message="m", author=STATUS)
    install_racing_hook(remote.bare, Clone(tmp_path / "racer", remote.bare), "status", once=True)
    ours = source.publish({"status/a": b"2"}, branch="status", message="m", author=STATUS)
    history = first_parents(remote, "status")
    assert history[0] == ours
    assert history[2] == first
    assert remote_files(remote, "status") == {"status/a": "2", "other/1.txt": "1"}

    install_rejecting_hook(remote.bare, "no status over ssh today")
    with pytest.raises(PushRejectedError, match="no status over ssh today"):
        source.publish({"status/a": b"3"}, branch="status", message="m", author=STATUS)
    assert remote_head(remote, "status") == ours


def test_credentials_are_redacted_when_printed() -> None:
    credentials = PasswordCredentials("x-access-token", "ghp_secret")
    assert "ghp_secret" not in repr(credentials)
    assert "ghp_secret" not in str(credentials)
    assert "x-access-token" in repr(credentials)
    key = SshKeyCredentials(Path("/keys/id"), Path("/keys/id.pub"), passphrase="sesame")
    assert "sesame" not in repr(key)
    assert "/keys/id" in repr(key)


def test_a_token_as_the_user_name_is_never_shown(
    make_remote: Callable[[str], Remote],
    open_source: Callable[..., GitSource],
    tmp_path: Path,
) -> None:
    remote = make_remote("http")
    _writer_of(remote, tmp_path)
    host_and_path = remote.url.removeprefix("http://")
    source = open_source(f"http://{TOKEN}@{host_and_path}", credentials=None)
    assert source.url == f"http://***@{host_and_path}"
    assert TOKEN not in repr(source)
    # The remote refuses the token (it wants a password): the error says where, not what.
    with pytest.raises(GitAuthError, match="wants credentials and none are configured") as caught:
        source.fetch()
    assert f"http://***@{host_and_path}" in str(caught.value)
    assert TOKEN not in _all_text(caught.value)


@pytest.mark.parametrize(
    "form",
    [
        "https://{token}@127.0.0.1:{port}/x.git",
        "http://bot:{token}@127.0.0.1:{port}/x.git",
        "https://127.0.0.1:{port}/x.git?access_token={token}",
    ],
    ids=["token-as-user", "user-password", "query-token"],
)
def test_errors_of_an_unreachable_remote_show_no_credentials(
    open_source: Callable[..., GitSource], form: str
) -> None:
    source = open_source(form.format(token=TOKEN, port=closed_port()), credentials=None)
    assert TOKEN not in source.url
    with pytest.raises(GitUnavailableError, match=r"127\.0\.0\.1") as caught:
        source.fetch()
    assert TOKEN not in _all_text(caught.value)


def test_configuration_errors(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ConfigurationError):
        GitSource("file:///x", branch="a b", cache_dir=cache)
    with pytest.raises(ConfigurationError):
        GitSource("file:///x", branch="main", cache_dir=cache, io_timeout=0)
    with pytest.raises(ConfigurationError):
        GitSource("", branch="main", cache_dir=cache)
    with pytest.raises(ConfigurationError):
        SshKeyCredentials(public_key=Path("/k.pub"))


# --- unreachable and silent remotes ------------------------------------------------------


@pytest.fixture(scope="module")
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()


@pytest.mark.parametrize("scheme", [*NETWORK_TRANSPORTS, "ssh"])
def test_a_silent_remote_times_out(
    scheme: str, silent_server: SilentServer, open_source: Callable[..., GitSource]
) -> None:
    source = open_source(
        f"{scheme}://127.0.0.1:{silent_server.port}/repo.git",
        connect_timeout=0.5,
        io_timeout=0.5,
    )
    started = time.monotonic()
    with pytest.raises(GitUnavailableError):
        source.fetch()
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3.0


@pytest.mark.parametrize("scheme", [*NETWORK_TRANSPORTS, "ssh"])
def test_an_unreachable_port_is_unavailable(
    scheme: str, open_source: Callable[..., GitSource]
) -> None:
    source = open_source(f"{scheme}://127.0.0.1:{closed_port()}/repo.git")
    started = time.monotonic()
    with pytest.raises(GitUnavailableError):
        source.fetch()
    assert time.monotonic() - started < 3.0


def test_a_missing_local_repository_is_unavailable(
    tmp_path: Path, open_source: Callable[..., GitSource]
) -> None:
    with pytest.raises(GitUnavailableError):
        open_source(str(tmp_path / "nothing-here.git")).fetch()


# --- the mirror itself ------------------------------------------------------------------


def test_a_broken_mirror_is_rebuilt(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    source = open_source(remote)
    head = source.fetch()
    source.close()
    (source.path / "HEAD").unlink()
    (source.path / "objects").rename(source.path / "junk")
    rebuilt = open_source(remote)
    assert rebuilt.cached() is None
    assert rebuilt.fetch() == head


def test_sources_sharing_a_mirror_in_threads(
    remote: Remote, writer: Clone, open_source: Callable[..., GitSource]
) -> None:
    specs = open_source(remote)
    status = open_source(remote)
    assert specs.path == status.path
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        fetches = [pool.submit(specs.fetch) for _ in range(4)]
        publishes = [
            pool.submit(
                status.publish, {f"s/{n}": b"x"}, branch="status", message="m", author=STATUS
            )
            for n in range(4)
        ]
        heads = {future.result().commit for future in fetches}
        published = [future.result() for future in publishes]
    assert heads == {remote_head(remote, "main")}
    assert None not in published
    assert set(first_parents(remote, "status")) == set(published)  # one line, none lost
    assert remote_files(remote, "status") == {f"s/{n}": "x" for n in range(4)}
