"""A cycle that starts from the last sync's ledger takes afresh only the specs whose
inputs moved, and carries the others' outcomes (gitsync.focus).

The pure half checks each rule of :func:`gitsync.focus.narrow` in a table: every
input of a spec's outcome that differs sends that spec, or the whole cycle, back to
a full evaluation. The other half is the proof that carrying changes nothing: on the
real API server, a cycle with the ledger and one without it run on the same inputs,
for several kinds of change, and must report exactly the same changes, statuses,
diagnostics and outcome; and `gitsync sync` processes carry across syncs that wrote.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gitsync import reconciler as reconciler_module
from gitsync.cli import _report_lines
from gitsync.clients.git import GitSource, LastChanges, TreeChanges
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.diff import Action
from gitsync.events import cycle_events
from gitsync.focus import Focus, Listed, narrow
from gitsync.inventory import Inventory
from gitsync.ledger import Ledger
from gitsync.reconciler import CycleReport, Reconciler, SyncOptions
from gitsync.replay import load_ledger, save_ledger
from gitsync.snapshot import Snapshot, read_folder
from gitsync.spec_status import ISVC_API
from gitsync.status import readme
from gitsync.status_document import Phase, StatusDocument, status_path
from gitsync.types import ObjectRef

from .specrepo import SpecRepo
from .test_pipelines import model as pipeline_model
from .test_pipelines import train_job
from .test_sync_replay import Sync, _settle

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SETTLED = (Phase.HEALTHY, Phase.SUCCEEDED, Phase.INVALID)
INSTANCE = "focus"
NAMESPACE = "ml"
SOURCE = "1" * 40  # the commit that last changed every spec file
KINDS = ((ISVC_API, "InferenceService"),)


def plain(name: str, version: int = 1, *, namespace: str = NAMESPACE, **spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"team": "risk"}},
            "spec": {
                "model": {"format": "sklearn", "storageUri": f"s3://models/{name}/v{version}"},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                **spec,
            },
        }
    )


CANARY: dict[str, Any] = {
    "rollout": {
        "strategy": "canary",
        "steps": [{"traffic": 20, "pause": "2s"}],
        "analysis": {
            "interval": "3s",
            "metrics": [{"name": "error-rate", "query": "vector(0)", "max": 0.05}],
            "provider": {"prometheus": {"address": "http://127.0.0.1:9"}},
        },
    }
}


def _snapshot(tmp_path: Path, files: dict[str, str]) -> Snapshot:
    for path, content in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    snapshot = read_folder(tmp_path)
    return dataclasses.replace(snapshot, commit="2" * 40)


def _path(name: str) -> str:
    return status_path("ModelDeployment", NAMESPACE, name, instance=INSTANCE)


def _document(name: str, *, source: str, source_commit: str = SOURCE) -> StatusDocument:
    return StatusDocument(
        kind="ModelDeployment",
        name=name,
        namespace=NAMESPACE,
        instance=INSTANCE,
        source=source,
        source_commit=source_commit,
        phase=Phase.HEALTHY,
        message="ready",
        conditions=(),
    )


def _isvc(name: str) -> ObjectRef:
    return ObjectRef(
        group="serving.kserve.io", kind="InferenceService", namespace=NAMESPACE, name=name
    )


FILES = {
    "models/a.yaml": plain("a"),
    "models/b.yaml": plain("b"),
    "models/c.yaml": plain("c"),
}


def _narrow(
    tmp_path: Path,
    *,
    files: dict[str, str] = FILES,
    changes: TreeChanges | None = None,
    ledger: dict[str, Any] | None = None,
    documents: dict[str, StatusDocument] | None = None,
    blobs: dict[str, str] | None = None,
    live: dict[str, str] | None = None,
    last: dict[str, str] | None = None,
    inventory: dict[str, Any] | None = None,
) -> Focus | None:
    """The focus after the sync that found a, b and c unchanged (each object at
    version "u-<name>/1", each document blob "blob-<name>"), with one thing moved."""
    snapshot = _snapshot(tmp_path, files)
    names = {e.name: e.path for e in snapshot.loaded.entries}
    if documents is None:
        documents = {n: _document(n, source=p) for n, p in names.items() if p in FILES}
    docs = {doc.path: doc for doc in documents.values()}
    versions = {n: f"u-{n}/1" for n in "abc"}
    return narrow(
        Ledger(
            **{
                "head": "0" * 40,
                "status_branch": "gitsync/status",
                "kinds": KINDS,
                "wake_at": None,
                "unchanged": {_isvc(n): v for n, v in versions.items()},
                "documents": {_path(n): f"blob-{n}" for n in "abc"},
                **(ledger or {}),
            }
        ),
        snapshot=snapshot,
        root="",
        last_changes=LastChanges(
            commit=snapshot.commit,
            by_path=last if last is not None else dict.fromkeys(snapshot.blobs, SOURCE),
        ),
        inventory=Inventory(
            instance=INSTANCE,
            **{
                "commit": "5" * 40,
                "documents": docs,
                "files": {path: f"blob-{doc.name}" for path, doc in docs.items()}
                if blobs is None
                else blobs,
                **(inventory or {}),
            },
        ),
        status_branch="gitsync/status",
        listed=Listed(
            objects={
                _isvc(n): {"metadata": {"uid": version.split("/")[0], "resourceVersion": "1"}}
                for n, version in (live if live is not None else versions).items()
            },
            kinds=KINDS,
        ),
        instance=INSTANCE,
        now=NOW,
        diff=lambda old: (
            changes
            if changes is not None
            else TreeChanges(added={}, modified={"models/a.yaml": "x"}, deleted={})
        ),
    )


def _taken(focus: Focus | None) -> list[str] | None:
    """The names taken afresh; None for a full cycle."""
    return None if focus is None else sorted(entry.name for entry in focus.loaded.entries)


def test_the_changed_spec_is_taken_afresh_and_the_others_carried(tmp_path: Path) -> None:
    focus = _narrow(tmp_path)
    assert _taken(focus) == ["a"]
    assert focus is not None
    assert sorted(focus.carried) == [_isvc("b"), _isvc("c")]
    assert focus.carried[_isvc("b")].path == status_path(
        "ModelDeployment", NAMESPACE, "b", instance=INSTANCE
    )


@pytest.mark.parametrize(
    "moved",
    [
        pytest.param({"ledger": {"kinds": ()}}, id="other kinds listed"),
        pytest.param({"ledger": {"status_branch": "other"}}, id="another status branch"),
        pytest.param({"ledger": {"wake_at": NOW}}, id="its wake-up time has come"),
        pytest.param(
            {"changes": TreeChanges(added={}, modified={}, deleted={"models/d.yaml": "x"})},
            id="a spec file deleted",
        ),
        pytest.param(
            {"changes": TreeChanges(added={}, modified={"gitsync.yaml": "x"}, deleted={})},
            id="gitsync.yaml changed",
        ),
        pytest.param(
            {
                "files": {**FILES, "gitsync.yaml": "policies: [rules]\n"},
                "changes": TreeChanges(added={}, modified={"rules/p.yaml": "x"}, deleted={}),
            },
            id="a policy changed",
        ),
        pytest.param(
            {
                "files": {**FILES, "gitsync.yaml": "policies: [rules]\n"},
                "changes": TreeChanges(added={"rules/new.yaml": "x"}, modified={}, deleted={}),
            },
            id="a policy added",
        ),
        pytest.param({"files": {**FILES, "models/d.yaml": "kind: [\n"}}, id="a spec does not load"),
        pytest.param(
            {"inventory": {"adopted": frozenset({"status/ml/ModelDeployment/b.yaml"})}},
            id="old documents to adopt",
        ),
        pytest.param(
            {"changes": TreeChanges(added={}, modified=dict.fromkeys(FILES, "x"), deleted={})},
            id="every spec changed",
        ),
    ],
)
def test_any_other_input_moved_means_a_full_cycle(tmp_path: Path, moved: dict[str, Any]) -> None:
    assert _narrow(tmp_path, **moved) is None


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(TreeChanges(added={}, modified={"README.md": "x"}, deleted={}), id="changed"),
        pytest.param(TreeChanges(added={}, modified={}, deleted={"README.md": "x"}), id="deleted"),
        pytest.param(TreeChanges(added={"docs/a.md": "x"}, modified={}, deleted={}), id="added"),
    ],
)
def test_a_file_that_is_no_spec_is_no_input(tmp_path: Path, changes: TreeChanges) -> None:
    files = {**FILES, "gitsync.yaml": "policies: [rules]\n"}
    assert _taken(_narrow(tmp_path, files=files, changes=changes)) == []


def test_a_file_is_carried_whole_or_taken_afresh_whole(tmp_path: Path) -> None:
    """A document of a.yaml is a canary: a.yaml's plain model is taken afresh too (had
    the canary's policy failed, the whole file would be a failed file)."""
    files = {**FILES, "models/a.yaml": plain("a") + "---\n" + plain("d", **CANARY)}
    unchanged = TreeChanges(added={}, modified={"models/b.yaml": "x"}, deleted={})
    assert _taken(_narrow(tmp_path, files=files, changes=unchanged)) == ["a", "b", "d"]


def test_a_model_whose_object_something_taken_afresh_renders_is_taken_afresh(
    tmp_path: Path,
) -> None:
    manifest = yaml.safe_dump(
        {
            "apiVersion": ISVC_API,
            "kind": "InferenceService",
            "metadata": {"name": "b", "namespace": NAMESPACE},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
        }
    )
    files = {**FILES, "platform/b.yaml": manifest}
    added = TreeChanges(added={"platform/b.yaml": "x"}, modified={}, deleted={})
    assert _taken(_narrow(tmp_path, files=files, changes=added)) == ["b", "b"]


def test_an_added_spec_file_is_taken_afresh(tmp_path: Path) -> None:
    files = {**FILES, "models/d.yaml": plain("d")}
    added = TreeChanges(added={"models/d.yaml": "x"}, modified={}, deleted={})
    assert _taken(_narrow(tmp_path, files=files, changes=added)) == ["d"]


@pytest.mark.parametrize(
    ("case", "taken"),
    [
        pytest.param({"live": {"a": "u-a/1", "c": "u-c/1"}}, ["a", "b"], id="b is not live"),
        pytest.param(
            {"live": {"a": "u-a/1", "b": "u-b2/1", "c": "u-c/1"}},
            ["a", "b"],
            id="b was deleted and made again",
        ),
        pytest.param(
            {"ledger": {"unchanged": {_isvc("a"): "u-a/1", _isvc("c"): "u-c/1"}}},
            ["a", "b"],
            id="the last sync wrote b",
        ),
        pytest.param(
            {"blobs": {_path("a"): "blob-a", _path("b"): "blob-b2", _path("c"): "blob-c"}},
            ["a", "b"],
            id="b's document changed since",
        ),
        pytest.param(
            {
                "documents": {
                    "a": _document("a", source="models/a.yaml"),
                    "c": _document("c", source="models/c.yaml"),
                }
            },
            ["a", "b"],
            id="b has no document",
        ),
        pytest.param(
            {
                "documents": {
                    **{n: _document(n, source=f"models/{n}.yaml") for n in "ac"},
                    "b": _document("b", source="models/c.yaml"),
                }
            },
            ["a", "b"],
            id="b's document names another file",
        ),
        pytest.param(
            {
                "last": {
                    "models/a.yaml": "3" * 40,
                    "models/b.yaml": "3" * 40,
                    "models/c.yaml": SOURCE,
                }
            },
            ["a", "b"],
            id="b's file changed and changed back",
        ),
        pytest.param(
            {"files": {**FILES, "models/b.yaml": plain("b", **CANARY)}},
            ["a", "b"],
            id="b is a canary",
        ),
    ],
)
def test_a_spec_whose_own_inputs_differ_is_taken_afresh(
    tmp_path: Path, case: dict[str, Any], taken: list[str]
) -> None:
    assert _taken(_narrow(tmp_path, **case)) == taken


def test_training_runs_and_the_models_they_feed_are_always_taken_afresh(tmp_path: Path) -> None:
    files = {
        **FILES,
        "train.yaml": train_job(NAMESPACE, accuracy=0.9, lr="0.1"),
        "served.yaml": pipeline_model(NAMESPACE, "served", {"fromTrainingRun": "train"}),
        "promoted.yaml": pipeline_model(
            NAMESPACE, "promoted", {"fromModelDeployment": {"name": "b"}}
        ),
    }
    assert _taken(_narrow(tmp_path, files=files)) == ["a", "promoted", "served", "train"]


# --- carrying changes nothing: the same cycle with and without the record ---------------


def _spec_files(namespace: str, prometheus: str) -> dict[str, str]:
    canary = dict(CANARY)
    canary["rollout"] = {
        **CANARY["rollout"],
        "analysis": {
            **CANARY["rollout"]["analysis"],
            "provider": {"prometheus": {"address": prometheus}},
        },
    }
    return {
        "gitsync.yaml": f"defaults: {{namespace: {namespace}}}\n",
        **{f"models/m{i}.yaml": plain(f"m{i}", namespace=namespace) for i in range(6)},
        "models/canary.yaml": plain("canary", namespace=namespace, **canary),
        "platform/sa.yaml": "apiVersion: v1\nkind: ServiceAccount\n"
        f"metadata: {{name: reader, namespace: {namespace}}}\n",
        "train.yaml": train_job(namespace, accuracy=0.95, lr="0.1"),
        "served.yaml": pipeline_model(namespace, "served", {"fromTrainingRun": "train"}),
        # A plain model beside an InferenceService manifest that the shipped
        # require-team-label policy denies: the file fails at every evaluation.
        "models/pair.yaml": plain("pair", namespace=namespace)
        + "---\n"
        + _unlabelled(namespace, "loner"),
    }


def _unlabelled(namespace: str, name: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": ISVC_API,
            "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
        }
    )


def _comparable(report: CycleReport) -> dict[str, Any]:
    """What a cycle reported, but for its id, timing and the bodies of unchanged
    objects (a carried one has none: nothing reads it)."""
    return {
        "lines": _report_lines(report),
        "events": cycle_events(
            changes=report.changes,
            rollouts=report.rollouts,
            statuses=report.statuses,
            objects=report.objects,
            previous=report.previous,
        ),
        "readme": readme(report.statuses, instance=report.statuses[0].instance),
        "changes": sorted(
            (str(c.key), c.action.value, c.reason, c.error, c.drift) for c in report.changes.changes
        ),
        "prune_refused": report.changes.prune_refused,
        "statuses": report.statuses,
        "diagnostics": report.diagnostics,
        "result": report.result,
        "error": type(report.error),
        "status_error": report.status_error,
        "rollouts": report.rollouts,
    }


@pytest.fixture
def synced_repo(
    tmp_path: Path, kube: KubeClient, namespace: str, prometheus_url: str
) -> Iterator[tuple[SpecRepo, Callable[..., Reconciler], Ledger]]:
    """A repo synced until it is at rest, the last cycle's ledger, and how to make
    reconcilers for it."""
    repo = SpecRepo(tmp_path / "repo")
    for path, content in _spec_files(namespace, prometheus_url).items():
        repo.write(path, content)
    repo.commit("specs")
    made: list[tuple[Reconciler, GitSource]] = []
    clock = [datetime.now(UTC)]

    def make(ledger: Ledger | None = None, *, may_write: bool = True) -> Reconciler:
        git = GitSource(repo.url, branch="main", cache_dir=tmp_path / f"git-{len(made)}")
        reconciler = Reconciler(
            git=git,
            kube=kube,
            options=SyncOptions(instance=namespace),
            clock=lambda: clock[0],
            cache_dir=tmp_path / "cache",
            may_write=lambda: may_write,
            ledger=ledger,
        )
        made.append((reconciler, git))
        return reconciler

    first = make()
    for _ in range(60):
        # Until the run has succeeded and every model is ready: then the controllers
        # write nothing more, and the live objects stay as the last cycle saw them.
        clock[0] = datetime.now(UTC)
        report = first.cycle()
        done = all(s.phase in SETTLED for s in report.statuses)
        if done and first.settled is not None:
            break
        time.sleep(0.5)
    ledger = first.ledger
    assert first.settled is not None and ledger is not None, "the repo never came to rest"
    yield repo, make, ledger
    for reconciler, git in made:
        reconciler.close()
        git.close()


def _change(
    repo: SpecRepo, kube: KubeClient, namespace: str, prometheus: str, change: dict[str, Any]
) -> None:
    files = _spec_files(namespace, prometheus)
    for path, what in change.items():
        if path == "touch":  # someone else annotates a live object: no commit
            kube.annotate(
                ISVC_API,
                "InferenceService",
                what,
                namespace=namespace,
                annotations={"example.com/touched": "yes"},
                field_manager="someone-else",
            )
        elif what is None:
            repo.write(path, train_job(namespace, accuracy=0.95, lr="0.2"))
        else:
            name, version = what
            text = files.get(path) or plain(name, namespace=namespace)
            repo.write(path, text.replace(f"/{name}/v1", f"/{name}/v{version}"))
    if any(path != "touch" for path in change):
        repo.commit("a change")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"models/m2.yaml": ("m2", 2)}, id="one plain model"),
        pytest.param({"models/m2.yaml": ("m2", 2), "models/m4.yaml": ("m4", 3)}, id="two models"),
        pytest.param({"models/new.yaml": ("new", 1)}, id="a new model"),
        pytest.param({"models/canary.yaml": ("canary", 2)}, id="the canary"),
        pytest.param({"train.yaml": None}, id="the training run"),
        pytest.param({"touch": "m1"}, id="no commit, an object annotated"),
    ],
)
def test_a_cycle_that_carries_reports_what_a_full_cycle_reports(
    synced_repo: tuple[SpecRepo, Callable[..., Reconciler], Ledger],
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, Any],
) -> None:
    repo, make, ledger = synced_repo
    _change(repo, kube, namespace, prometheus_url, change)
    foci: list[Focus | None] = []

    def spy(*args: Any, **kwargs: Any) -> Focus | None:
        foci.append(narrow(*args, **kwargs))
        return foci[-1]

    monkeypatch.setattr(reconciler_module, "narrow", spy)
    # Neither may write: each sees the inputs the other saw, the cluster and the status
    # branch as the last cycle left them, and decides what it would do.
    full = make(may_write=False).cycle()
    assert foci == []  # without a ledger there is nothing to start from
    carried = make(ledger, may_write=False).cycle()
    [focus] = foci
    assert focus is not None and focus.carried, "the cycle took every spec afresh"
    assert len(focus.loaded.entries) < len(carried.statuses)
    assert _comparable(carried) == _comparable(full)
    if "touch" not in change:
        assert any(c.action is not Action.UNCHANGED for c in carried.changes.changes)


def test_a_cycle_that_carries_applies_and_publishes_like_a_full_one(
    synced_repo: tuple[SpecRepo, Callable[..., Reconciler], Ledger],
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
) -> None:
    repo, make, ledger = synced_repo
    _change(repo, kube, namespace, prometheus_url, {"models/m3.yaml": ("m3", 2)})
    before = repo.status_files()
    carrying = make(ledger)
    report = carrying.cycle()
    assert report.error is None and not report.changes.failures, report
    changed = {str(c.key): c.action for c in report.changes.changes if c.writes}
    assert changed == {f"InferenceService {namespace}/m3": Action.CONFIGURED}
    live = kube.get(ISVC_API, "InferenceService", "m3", namespace=namespace)
    assert live is not None
    assert live["spec"]["predictor"]["model"]["storageUri"] == "s3://models/m3/v2"
    after = repo.status_files()
    moved = {path for path in after if after[path] != before.get(path)}
    m3 = status_path("ModelDeployment", namespace, "m3", instance=namespace)
    assert m3 in moved and all(p == m3 or p.endswith("README.md") for p in moved), moved
    # A full cycle then finds nothing the carrying one left undone or wrong.
    again = make().cycle()
    assert not again.changes.writes
    assert {s.path: s for s in again.statuses if s.path != m3} == {
        s.path: s for s in report.statuses if s.path != m3
    }
    # The cycle that wrote m3 leaves a ledger without it: the next takes m3 afresh.
    after_write = carrying.ledger
    assert after_write is not None
    m3_isvc = ObjectRef(
        group="serving.kserve.io", kind="InferenceService", namespace=namespace, name="m3"
    )
    assert m3_isvc not in after_write.unchanged and len(after_write.unchanged) > 5


def test_syncs_carry_across_a_sync_that_wrote(
    tmp_path: Path, control_plane: ControlPlane, namespace: str
) -> None:
    """`gitsync sync` after `gitsync sync`, each applying one change: from the second
    on, each carries the specs the one before found unchanged."""
    repo = SpecRepo(tmp_path / "repo")
    for index in range(5):
        repo.write(f"models/m{index}.yaml", plain(f"m{index}", namespace=namespace))
    repo.commit("five models")
    sync = Sync(repo, control_plane, namespace, tmp_path / "cache")
    first = sync()
    assert first.returncode == 0, first.stderr
    assert "carried=0" in first.stderr  # no ledger yet
    _settle(sync)  # until the controllers have made every model ready
    for version in (2, 3):
        repo.write("models/m1.yaml", plain("m1", version, namespace=namespace))
        repo.commit(f"m1 v{version}")
        result = sync()
        assert result.returncode == 0, result.stderr
        assert f"InferenceService {namespace}/m1: configured" in result.stdout
        # The second of these follows one that wrote m1 (whose controller is at it
        # still): m1 is taken afresh, the other four carry all the same.
        assert "carried=4 " in result.stderr, result.stderr
    # And a full cycle then finds the cluster and the branch as they should be.
    shutil.rmtree(tmp_path / "cache" / "sync")
    full = sync()
    assert "configured" not in full.stdout and "created" not in full.stdout


def test_a_wake_up_time_in_the_future_still_carries(tmp_path: Path) -> None:
    later = {"wake_at": NOW + timedelta(minutes=1)}
    assert _taken(_narrow(tmp_path, ledger=later)) == ["a"]


def test_on_the_same_commit_the_specs_whose_objects_moved_are_taken_afresh(
    tmp_path: Path,
) -> None:
    same = TreeChanges(added={}, modified={}, deleted={})
    moved = {"a": "u-a/1", "b": "u-b/1", "c": "u-c/1"}
    ledger = {"unchanged": {_isvc("a"): "u-a/1", _isvc("b"): "u-b/0", _isvc("c"): "u-c/1"}}
    assert _taken(_narrow(tmp_path, changes=same, live=moved, ledger=ledger)) == ["b"]


# --- the ledger on disk ------------------------------------------------------------------


def _ledger_saved(tmp_path: Path) -> tuple[Ledger, Path]:
    ledger = Ledger(
        head="0" * 40,
        status_branch="gitsync/status",
        kinds=KINDS,
        wake_at=NOW,
        unchanged={_isvc("a"): "u-a/1", _isvc("b"): "u-b/7"},
        documents={_path("a"): "blob-a", _path("b"): "blob-b"},
    )
    save_ledger(tmp_path, ledger, key="k" * 64)
    return ledger, tmp_path / "ledger" / f"{'k' * 64}.json"


def test_a_ledger_is_read_back_as_it_was_saved(tmp_path: Path) -> None:
    ledger, _ = _ledger_saved(tmp_path)
    assert load_ledger(tmp_path, key="k" * 64) == ledger
    assert load_ledger(tmp_path, key="0" * 64) is None  # another configuration's
    save_ledger(tmp_path, None, key="k" * 64)  # a cycle cut short leaves none
    assert load_ledger(tmp_path, key="k" * 64) is None


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda d: {**d, "key": "0" * 64}, id="another key inside"),
        pytest.param(lambda d: {**d, "format": d["format"] + 1}, id="another format"),
        pytest.param(lambda d: {**d, "unchanged": [["g", "K", "ns"]]}, id="a reference cut short"),
        pytest.param(lambda d: {**d, "unchanged": [["g", "K", "ns", "n", 7]]}, id="a number"),
        pytest.param(lambda d: {**d, "documents": [["p", "b"]]}, id="documents not a mapping"),
        pytest.param(lambda d: {**d, "documents": {"p": None}}, id="a document without blob"),
        pytest.param(lambda d: {**d, "wakeAt": "2026-12-01T12:00:00"}, id="a time without zone"),
        pytest.param(lambda d: {k: v for k, v in d.items() if k != "head"}, id="no head"),
    ],
)
def test_a_spoiled_ledger_is_never_used(tmp_path: Path, spoil: Callable[[Any], Any]) -> None:
    _, path = _ledger_saved(tmp_path)
    path.write_bytes(orjson.dumps(spoil(orjson.loads(path.read_bytes()))))
    assert load_ledger(tmp_path, key="k" * 64) is None
    path.write_bytes(b'{"format": 1, "key"')  # cut short
    assert load_ledger(tmp_path, key="k" * 64) is None
