"""Sharding: which shard owns a path (pure), and three shards, then two, on the real
API server: every object applied once, each shard's statuses its own, resharding
deletes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.diff import Action, Change, ChangeSet
from gitsync.errors import ConfigurationError
from gitsync.reconciler import CycleReport, Reconciler, SyncOptions
from gitsync.render import ANNOTATION_SOURCE_PATH, ANNOTATION_SPEC_KIND, LABEL_TRAINING_RUN
from gitsync.sharding import Shard, keep_declared_elsewhere, shard_of, spec_identity
from gitsync.types import ObjectRef

from .specrepo import SpecRepo
from .test_reconcile import ISVC, model

PATHS = [f"specs/models/model-{i:02d}.yaml" for i in range(12)]


@pytest.mark.parametrize(
    ("path", "count", "expected"),
    [
        # Pinned (from `printf %s PATH | sha256sum`, first 16 hex digits, mod N): a
        # shard's files must not move when gitsync or Python is upgraded.
        ("specs/models/model-00.yaml", 3, 1),
        ("specs/models/model-00.yaml", 7, 1),
        ("models/fraud-detector.yaml", 3, 1),
        ("models/fraud-detector.yaml", 7, 6),
        ("anything.yaml", 1, 0),
        ("", 1, 0),
    ],
)
def test_the_owner_of_a_path(path: str, count: int, expected: int) -> None:
    assert shard_of(path, count) == expected
    assert Shard(expected, count).owns(path)
    assert not any(Shard(i, count).owns(path) for i in range(count) if i != expected)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 16])
def test_every_path_has_exactly_one_owner_and_they_are_even(count: int) -> None:
    paths = [f"team-{i % 17}/models/m-{i}.yaml" for i in range(2000)]
    owners = Counter()
    for path in paths:
        owning = [i for i in range(count) if Shard(i, count).owns(path)]
        assert len(owning) == 1
        owners[owning[0]] += 1
    mean = len(paths) / count
    # As even as chance: within four standard deviations of a uniform split.
    assert all(abs(n - mean) < 4 * mean**0.5 for n in owners.values()), owners


def test_the_hash_does_not_depend_on_the_process() -> None:
    """Python's hash() of a str is salted per process: two shards would disagree."""
    code = f"from gitsync.sharding import shard_of; print([shard_of(p, 7) for p in {PATHS!r}])"
    answers = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert answers == {f"{[shard_of(p, 7) for p in PATHS]}\n"}


@pytest.mark.parametrize(("index", "count"), [(3, 3), (-1, 2), (0, 0)])
def test_a_shard_outside_its_count_is_refused(index: int, count: int) -> None:
    with pytest.raises(ConfigurationError, match="--shard-index"):
        Shard(index, count)


@pytest.mark.parametrize(
    ("annotations", "owners"),
    [
        ({ANNOTATION_SOURCE_PATH: "specs/a.yaml"}, 1),
        ({}, 0),  # no source: nobody's to prune when sharded
        ({ANNOTATION_SOURCE_PATH: 7}, 0),
    ],
)
def test_a_live_object_belongs_to_the_shard_of_its_file(
    annotations: dict[str, object], owners: int
) -> None:
    obj = {"metadata": {"name": "x", "annotations": annotations}}
    assert sum(Shard(i, 4).owns_object(obj) for i in range(4)) == owners
    assert Shard(0, 1).owns_object(obj)


# --- on the real API server ---------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> SpecRepo:
    spec_repo = SpecRepo(tmp_path / "repo")
    spec_repo.write("specs/gitsync.yaml", f"defaults: {{namespace: {namespace}}}\n")
    for path in PATHS:
        spec_repo.write(path, model(Path(path).stem, namespace))
    spec_repo.write(
        "specs/platform/sa.yaml",
        "apiVersion: v1\nkind: ServiceAccount\n"
        f"metadata: {{name: reader, namespace: {namespace}}}\n",
    )
    spec_repo.commit("twelve models and a service account")
    return spec_repo


@pytest.fixture
def shards(
    repo: SpecRepo, control_plane: ControlPlane, tmp_path: Path
) -> Iterator[dict[tuple[int, int], Reconciler]]:
    """One reconciler per shard, made on first use, sharing one instance name."""
    instance = f"shard-{uuid.uuid4().hex[:6]}"
    made: dict[tuple[int, int], Reconciler] = {}
    closing: list[tuple[GitSource, KubeClient]] = []

    class Shards(dict[tuple[int, int], Reconciler]):
        def __missing__(self, key: tuple[int, int]) -> Reconciler:
            index, count = key
            git = GitSource(repo.url, branch="main", cache_dir=tmp_path / f"cache-{index}-{count}")
            kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
            closing.append((git, kube))
            options = SyncOptions(path="specs", instance=instance, shard=Shard(index, count))
            made[key] = self[key] = Reconciler(git=git, kube=kube, options=options)
            return made[key]

    yield Shards()
    for reconciler in made.values():
        reconciler.close()
    for git, kube in closing:
        kube.close()
        git.close()


def written(report: CycleReport, *actions: Action) -> list[str]:
    return sorted(c.key.name for c in report.changes.changes if c.action in actions)


def uids(kube: KubeClient, namespace: str) -> dict[str, str]:
    items = kube.list(*ISVC, namespace=namespace)["items"]
    return {i["metadata"]["name"]: i["metadata"]["uid"] for i in items}


def test_three_shards_then_two_apply_each_object_once_and_delete_nothing(
    shards: dict[tuple[int, int], Reconciler], repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    models = sorted(Path(p).stem for p in PATHS)
    first = {i: shards[i, 3].cycle() for i in range(3)}

    created = [name for r in first.values() for name in written(r, Action.CREATED)]
    assert sorted(created) == sorted([*models, "reader"])  # each exactly once
    for index, report in first.items():
        assert not report.failed
        assert {s.source for s in report.statuses} <= {
            p for p in [*PATHS, "specs/platform/sa.yaml"] if shard_of(p, 3) == index
        }
        assert report.statuses  # twelve files over three shards: none is empty
    before = uids(kube, namespace)
    assert sorted(before) == models
    files = repo.status_files()
    instance = shards[0, 3]._options.instance
    documents = sorted(p for p in files if p.endswith(".yaml"))
    assert len(documents) == 13
    assert all(p.startswith(f"status/{instance}/") for p in documents)
    assert sorted(p for p in files if "README-shard" in p) == [
        f"status/{instance}/README-shard-{i}-of-3.md" for i in range(3)
    ]

    # Again: nobody prunes, reconfigures or reports another's objects.
    for index in range(3):
        again = shards[index, 3].cycle()
        assert written(again, Action.CREATED, Action.CONFIGURED, Action.DELETED) == []

    # Resharding to two: files that move are adopted by their new shard.
    moved = [p for p in PATHS if shard_of(p, 3) != shard_of(p, 2)]
    assert moved  # the test is only worth something if some do
    second = {i: shards[i, 2].cycle() for i in range(2)}
    stale = shards[2, 3].cycle()  # an old shard still running meanwhile
    for report in [*second.values(), stale]:
        assert written(report, Action.DELETED) == []
        assert not report.failed
    owned = sorted(c.key.name for r in second.values() for c in r.changes.changes)
    assert owned == sorted([*models, "reader"])  # each owned by one of the two
    assert uids(kube, namespace) == before  # nothing deleted or recreated
    files = repo.status_files()
    assert len([p for p in files if p.endswith(".yaml")]) == 13
    readmes = sorted(p for p in files if "README-shard" in p)
    assert f"status/{instance}/README-shard-0-of-3.md" not in readmes
    for path in moved:
        doc = yaml.safe_load(
            files[f"status/{instance}/{namespace}/ModelDeployment/{Path(path).stem}.yaml"]
        )
        assert doc["phase"] != "Invalid"

    # A spec renamed into another shard's file: its old owner keeps it, the new adopts it.
    old = PATHS[1]
    new = next(
        path
        for k in range(100)
        if shard_of(path := f"specs/renamed/model-01-{k}.yaml", 2) != shard_of(old, 2)
    )
    repo.write(new, (repo.work / old).read_text())
    repo.delete(old)
    repo.commit("move model-01 to another file")
    was, now = shard_of(old, 2), shard_of(new, 2)
    kept = shards[was, 2].cycle()  # the old owner first: it must not prune
    assert written(kept, Action.DELETED) == []
    (skip,) = [c for c in kept.changes.changes if c.key.name == "model-01"]
    assert skip.action is Action.SKIPPED
    assert skip.reason.startswith(f"kept: now declared by {new}")
    adopted = shards[now, 2].cycle()
    assert written(adopted, Action.CREATED, Action.CONFIGURED) == ["model-01"]
    live = kube.get(*ISVC, "model-01", namespace=namespace)
    assert live is not None
    assert live["metadata"]["annotations"][ANNOTATION_SOURCE_PATH] == new
    after = shards[was, 2].cycle()
    assert "model-01" not in written(after, Action.DELETED, Action.SKIPPED)
    assert uids(kube, namespace) == before

    # A spec really removed is pruned, by its shard alone.
    gone = PATHS[0]
    repo.delete(gone)
    repo.commit("retire model-00")
    third = {i: shards[i, 2].cycle() for i in range(2)}
    assert written(third[shard_of(gone, 2)], Action.DELETED) == ["model-00"]
    assert written(third[1 - shard_of(gone, 2)], Action.DELETED) == []
    assert sorted(uids(kube, namespace)) == models[1:]


def _live(path: str, *, kind: str = "ModelDeployment", **labels: str) -> dict[str, object]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "fraud",
            "namespace": "ml",
            "labels": labels,
            "annotations": {ANNOTATION_SOURCE_PATH: path, ANNOTATION_SPEC_KIND: kind},
        },
    }


def _other(path: str, shard: Shard) -> str:
    """A path of the same folder that another shard than ``shard`` owns."""
    return next(p for k in range(100) if not shard.owns(p := f"{path}.{k}.yaml"))


SHARD = Shard(0, 2)
OWN = next(p for k in range(100) if SHARD.owns(p := f"own-{k}.yaml"))
FRAUD = ObjectRef.spec("ModelDeployment", "ml", "fraud")


@pytest.mark.parametrize(
    ("live", "declared", "kept"),
    [
        (_live(OWN), {}, False),  # gone from Git: pruned
        (_live(OWN), {FRAUD: _other("moved", SHARD)}, True),  # renamed into another shard
        (_live(OWN), {FRAUD: OWN}, False),  # its own file (a retired run, say): as planned
        (
            _live(OWN, kind="TrainingRun", **{LABEL_TRAINING_RUN: "fraud"}),
            {ObjectRef.spec("TrainingRun", "ml", "fraud"): _other("runs", SHARD)},
            True,
        ),
        (_live(OWN, kind="Manifest"), {FRAUD: _other("moved", SHARD)}, False),
        ({"metadata": {"name": "fraud"}}, {FRAUD: _other("moved", SHARD)}, False),
    ],
)
def test_a_deletion_declared_by_another_shard_is_kept(
    live: dict[str, object], declared: dict[ObjectRef, str], kept: bool
) -> None:
    deletion = Change(ObjectRef.of(live), Action.DELETED, live=live)
    (result,) = keep_declared_elsewhere(
        ChangeSet((deletion,)), declared=declared, shard=SHARD
    ).changes
    assert result.action is (Action.SKIPPED if kept else Action.DELETED)
    assert result.reason.startswith("kept: now declared by") is kept


def test_the_identity_of_a_manifest_is_its_own() -> None:
    manifest = _live(OWN, kind="Manifest")
    assert spec_identity(manifest) == ObjectRef.of(manifest)
    assert spec_identity({"metadata": {}}) is None


def test_the_command_line_refuses_a_shard_beyond_its_count() -> None:
    shown = subprocess.run(
        [
            *(sys.executable, "-m", "gitsync", "plan", "--repo", str(Path(__file__).parents[1])),
            *("--base", "HEAD", "--shards", "2", "--shard-index", "2"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert shown.returncode == 2
    assert "shard 2 of 2: need --shards >= 1 and 0 <= --shard-index < --shards" in shown.stderr
