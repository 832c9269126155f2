"""One status branch shared by several gitsync instances and a person.

Instances racing to push must never delete or rewrite each other's documents, the
overview must describe the tree it lands on, and what a person commits survives.
The remote is a network one (``git daemon``): only a server compares and swaps the
branch, which is what makes the race real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsync import trailers
from gitsync.clients.git import Author, GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.errors import Remedy
from gitsync.reconciler import CycleReport, Reconciler, SyncOptions
from gitsync.status_store import StatusStore

from .gitremotes import GitDaemon
from .specrepo import SpecRepo, git
from .test_reconcile import model as spec

BRANCH = "gitsync/status"
TEAMS = {"team-a": ("a-one", "a-two"), "team-b": ("b-one",), "team-c": ("c-one",)}


def model(name: str, namespace: str, version: int) -> str:
    return spec(name, namespace, f"s3://models/{name}/v{version}")


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> SpecRepo:
    spec_repo = SpecRepo(tmp_path / "repo")
    for team, models in TEAMS.items():
        spec_repo.write(f"{team}/gitsync.yaml", f"defaults: {{namespace: {namespace}}}\n")
        for name in models:
            spec_repo.write(f"{team}/{name}.yaml", model(name, namespace, 1))
    spec_repo.commit("three teams")
    # Every update of the remote's branches is logged: a forced one would show.
    git("config", "core.logAllRefUpdates", "always", cwd=spec_repo.remote)
    return spec_repo


@pytest.fixture
def daemon(repo: SpecRepo, tmp_path: Path) -> Iterator[GitDaemon]:
    served = GitDaemon(repo.remote.parent, tmp_path / "git-daemon.log")
    yield served
    served.stop()


def changed_paths(bare: Path, commit: str) -> dict[str, str]:
    """Path -> A, M or D, of one commit against its first parent (or the empty tree)."""
    out = git(
        "diff-tree",
        "--no-commit-id",
        "--root",
        "-r",
        "--no-renames",
        "--name-status",
        commit,
        cwd=bare,
    )
    return {line.split("\t")[1]: line.split("\t")[0] for line in out.splitlines()}


def person(work: Path, done: threading.Event, pushed: list[str]) -> None:
    """Someone committing four notes to the status branch, beside the instances and
    inside one instance's folder, rebasing when the branch moved."""
    for i in range(4):
        git("fetch", "-q", "origin", BRANCH, cwd=work)
        git("checkout", "-q", "-B", "notes", f"origin/{BRANCH}", cwd=work)
        (work / "notes").mkdir(exist_ok=True)
        (work / "notes" / f"{i}.md").write_text(f"note {i}\n")
        (work / "status" / "team-b").mkdir(parents=True, exist_ok=True)
        (work / "status" / "team-b" / f"person-{i}.md").write_text(f"inside b {i}\n")
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"a person's note {i}", cwd=work)
        for _ in range(20):
            try:
                git("push", "-q", "origin", f"notes:{BRANCH}", cwd=work)
                break
            except AssertionError:  # rejected: the branch moved; rebase and go again
                git("pull", "-q", "--rebase", "origin", BRANCH, cwd=work)
        else:
            raise AssertionError("the person never got a push in")
        pushed.append(git("rev-parse", "HEAD", cwd=work))
        time.sleep(0.2)
    done.set()


def test_instances_and_a_person_share_the_status_branch(
    repo: SpecRepo,
    daemon: GitDaemon,
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    url = daemon.url(repo.remote)
    reconcilers: dict[str, Reconciler] = {}
    closers: list[Any] = []
    for team in TEAMS:
        source = GitSource(
            url,
            branch="main",
            cache_dir=tmp_path / f"cache-{team}",
            push_attempts=20,
            push_backoff=0.02,
        )
        kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
        closers += [source, kube]
        options = SyncOptions(path=team, instance=team)
        reconcilers[team] = Reconciler(git=source, kube=kube, options=options)
    reports: dict[str, list[CycleReport]] = {team: [] for team in TEAMS}
    failures: list[BaseException] = []

    changed, person_done = threading.Event(), threading.Event()

    def run(team: str, cycles: int) -> None:
        """At least ``cycles`` cycles, and on until the specs and the person are done,
        so every instance races with every other writer whatever the machine's speed."""
        deadline = time.monotonic() + 40
        try:
            while len(reports[team]) < cycles or not (changed.is_set() and person_done.is_set()):
                assert time.monotonic() < deadline, "the writers never finished"
                reports[team].append(reconcilers[team].cycle())
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            failures.append(exc)

    def spec_changes() -> None:
        # New versions keep every instance committing while the others do.
        for version in range(2, 5):
            time.sleep(0.4)
            for team, models in TEAMS.items():
                repo.write(f"{team}/{models[0]}.yaml", model(models[0], namespace, version))
            if version == 3:
                repo.delete("team-a/a-two.yaml")  # its document goes, from a's folder only
            repo.commit(f"version {version}")
        changed.set()

    threads = [threading.Thread(target=run, args=(team, 6)) for team in TEAMS]
    for thread in threads:
        thread.start()
    spec_changes()
    work = tmp_path / "person"
    git("clone", "-q", str(repo.remote), str(work), cwd=tmp_path)
    deadline = time.monotonic() + 20
    while "refs/heads/" + BRANCH not in git("for-each-ref", cwd=repo.remote):
        assert time.monotonic() < deadline, "no instance published a status"
        time.sleep(0.05)
    pushed: list[str] = []
    writer = threading.Thread(target=person, args=(work, person_done, pushed))
    writer.start()
    writer.join(timeout=40)
    for thread in threads:
        thread.join(timeout=45)
    # Once more each, after every spec change: the end state is the last commit's.
    for team in TEAMS:
        reports[team].append(reconcilers[team].cycle())
    for closer in closers:
        closer.close()
    for reconciler in reconcilers.values():
        reconciler.close()

    assert not failures, failures
    # A push that lost every race of one cycle is a transient fault the next cycle
    # retries; the last cycle of each instance published.
    lost = [r for rs in reports.values() for r in rs if r.status_error]
    assert all(r.result.remedy is Remedy.RETRY for r in lost), [r.status_error for r in lost]
    assert not [team for team in TEAMS if reports[team][-1].status_error]
    head = git("rev-parse", BRANCH, cwd=repo.remote)
    files = set(git("ls-tree", "-r", "--name-only", head, cwd=repo.remote).splitlines())
    for team, models in TEAMS.items():
        alive = [m for m in models if m != "a-two"]
        assert {f"status/{team}/{namespace}/ModelDeployment/{m}.yaml" for m in alive} <= files
        assert f"status/{team}/README.md" in files
    assert f"status/team-a/{namespace}/ModelDeployment/a-two.yaml" not in files

    # No status commit touched another's files; each deleted only in its own folder.
    commits = git("rev-list", head, cwd=repo.remote).split()
    status_commits = 0
    for commit in commits:
        message = git("log", "-1", "--format=%B", commit, cwd=repo.remote)
        instance = trailers.parse(message).instance
        if instance is None:
            continue
        status_commits += 1
        for path, change in changed_paths(repo.remote, commit).items():
            ours = path.startswith(f"status/{instance}/")
            assert ours or (path == "status/README.md" and change != "D"), (commit, path)
    assert status_commits >= len(TEAMS) * 3

    # The person's commits are all on the branch, their files too.
    assert len(pushed) == 4
    for sha in pushed:
        git("merge-base", "--is-ancestor", sha, head, cwd=repo.remote)
    assert {f"notes/{i}.md" for i in range(len(pushed))} <= files
    assert {f"status/team-b/person-{i}.md" for i in range(len(pushed))} <= files

    # No update of the branch was forced: each one's new head descends from the old.
    reflog = (repo.remote / "logs" / "refs" / "heads" / BRANCH).read_text().splitlines()
    assert len(reflog) >= status_commits
    for line in reflog:
        old, new = line.split()[:2]
        if set(old) != {"0"}:
            git("merge-base", "--is-ancestor", old, new, cwd=repo.remote)

    # The overview describes the tree it is in: every instance, each document counted.
    overview = git("show", f"{head}:status/README.md", cwd=repo.remote)
    for team, models in TEAMS.items():
        count = len([m for m in models if m != "a-two"])
        assert f"| [{team}]({team}/README.md) | {count} |" in overview
    assert time.monotonic() - started < 60


# --- the old layout -----------------------------------------------------------------------


def test_old_layout_documents_are_taken_over_only_by_the_instance_that_wrote_them(
    tmp_path: Path,
) -> None:
    repo = SpecRepo(tmp_path / "repo")
    repo.commit("specs")
    work = repo.work
    git("checkout", "-q", "--orphan", BRANCH, cwd=work)
    git("rm", "-q", "-rf", "--ignore-unmatch", ".", cwd=work)

    def old_document(name: str) -> str:
        return yaml.safe_dump(
            {
                "kind": "TrainingRun",
                "name": name,
                "namespace": "ml",
                "source": f"{name}.yaml",
                "sourceCommit": "c" * 40,
                "phase": "Succeeded",
                "message": "done",
                "conditions": [],
                "runs": [{"name": f"{name}-1", "phase": "Succeeded"}],
            }
        )

    for name, trailer in (("ours", "prod"), ("theirs", "staging"), ("by-hand", None)):
        repo.write(f"status/ml/TrainingRun/{name}.yaml", old_document(name))
        git("add", "-A", cwd=work)
        block = (
            trailers.Trailers(source_commit="c" * 40, instance=trailer).format() if trailer else ""
        )
        git("commit", "-q", "-m", f"old status of {name}\n\n{block}", cwd=work)
    git("push", "-q", "origin", BRANCH, cwd=work)

    source = GitSource(repo.url, branch="main", cache_dir=tmp_path / "cache")
    store = StatusStore(source, author=Author("gitsync", "g@x"), instance="prod")
    inventory = store.read(BRANCH)

    # Its own old document is its memory now, at its new path; the others are not.
    new_path = "status/prod/ml/TrainingRun/ours.yaml"
    assert set(inventory.documents) == {new_path}
    assert inventory.documents[new_path].instance == "prod"
    assert inventory.finished_runs() == {"ours-1"}
    assert inventory.adopted == {"status/ml/TrainingRun/ours.yaml"}

    commit = store.publish(
        list(inventory.documents.values()), branch=BRANCH, source_commit="d" * 40
    )

    assert commit is not None
    files = repo.status_files()
    assert new_path in files
    assert "status/ml/TrainingRun/ours.yaml" not in files
    assert {"status/ml/TrainingRun/theirs.yaml", "status/ml/TrainingRun/by-hand.yaml"} <= set(files)
    assert "| [prod](prod/README.md) | 1 | 1 Succeeded |" in files["status/README.md"]
    assert "2 document(s) lie in the old layout" in files["status/README.md"]
    # Once moved, nothing more is adopted or removed.
    assert store.read(BRANCH).adopted == frozenset()
    assert (
        store.publish(
            list(store.read(BRANCH).documents.values()), branch=BRANCH, source_commit="d" * 40
        )
        is None
    )
    source.close()
