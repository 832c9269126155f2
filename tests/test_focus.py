"""A cycle that starts from a settled sync takes afresh only the specs whose inputs
moved, and carries the others' outcomes (gitsync.focus).

The pure half checks each rule of :func:`gitsync.focus.narrow` in a table: every
input of a spec's outcome that differs sends that spec, or the whole cycle, back to
a full evaluation. The other half is the proof that carrying changes nothing: on the
real API server, a cycle with the settled record and one without it run on the same
inputs, for several kinds of change, and must report exactly the same changes,
statuses, diagnostics and outcome.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsync import reconciler as reconciler_module
from gitsync.clients.git import GitSource, LastChanges, TreeChanges
from gitsync.clients.kube import KubeClient
from gitsync.diff import Action
from gitsync.focus import Focus, Listed, narrow
from gitsync.inventory import Inventory
from gitsync.reconciler import CycleReport, Reconciler, SyncOptions
from gitsync.replay import Observed, Settled
from gitsync.snapshot import Snapshot, read_folder
from gitsync.spec_status import ISVC_API
from gitsync.status_document import Phase, StatusDocument, status_path
from gitsync.types import ObjectRef

from .specrepo import SpecRepo
from .test_pipelines import model as pipeline_model
from .test_pipelines import train_job

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
INSTANCE = "focus"
NAMESPACE = "ml"
SOURCE = "1" * 40  # the commit that last changed every spec file
KINDS = ((ISVC_API, "InferenceService"),)


def plain(name: str, version: int = 1, **spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"team": "risk"}},
            "spec": {
                "model": {"format": "sklearn", "storageUri": f"s3://models/{name}/v{version}"},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                **spec,
            },
        }
    )


CANARY = {
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
    settled: dict[str, Any] | None = None,
    documents: dict[str, StatusDocument] | None = None,
    live: set[str] | None = None,
    last: dict[str, str] | None = None,
    fingerprint: str = "f" * 64,
    inventory: dict[str, Any] | None = None,
) -> Focus | None:
    snapshot = _snapshot(tmp_path, files)
    names = {e.name: e.path for e in snapshot.loaded.entries}
    if documents is None:
        documents = {n: _document(n, source=p) for n, p in names.items() if p in FILES}
    docs = {doc.path: doc for doc in documents.values()}
    return narrow(
        Settled(
            **{
                "observed": Observed(head="0" * 40, status_head="5" * 40, live="f" * 64),
                "status_branch": "gitsync/status",
                "kinds": KINDS,
                "wake_at": None,
                "quiet": True,
                **(settled or {}),
            }
        ),
        snapshot=snapshot,
        last_changes=LastChanges(
            commit=snapshot.commit,
            by_path=last if last is not None else dict.fromkeys(snapshot.blobs, SOURCE),
        ),
        inventory=Inventory(
            instance=INSTANCE, **{"commit": "5" * 40, "documents": docs, **(inventory or {})}
        ),
        status_branch="gitsync/status",
        listed=Listed(
            objects={_isvc(n): {} for n in (live if live is not None else names)},
            fingerprint=fingerprint,
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
        pytest.param(
            {"settled": {"quiet": False}}, id="the settled cycle skipped or kept something"
        ),
        pytest.param(
            {"settled": {"observed": Observed(head="2" * 40, status_head="5" * 40, live="f" * 64)}},
            id="the same commit",
        ),
        pytest.param({"inventory": {"commit": "6" * 40}}, id="the status branch moved"),
        pytest.param({"fingerprint": "e" * 64}, id="a live object was written"),
        pytest.param({"settled": {"kinds": ()}}, id="other kinds listed"),
        pytest.param({"settled": {"status_branch": "other"}}, id="another status branch"),
        pytest.param({"settled": {"wake_at": NOW}}, id="its wake-up time has come"),
        pytest.param(
            {"changes": TreeChanges(added={}, modified={}, deleted={"models/d.yaml": "x"})},
            id="a spec file deleted",
        ),
        pytest.param(
            {"changes": TreeChanges(added={}, modified={"gitsync.yaml": "x"}, deleted={})},
            id="gitsync.yaml changed",
        ),
        pytest.param(
            {"changes": TreeChanges(added={}, modified={"policies/p.yaml": "x"}, deleted={})},
            id="a policy changed",
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


def test_an_added_spec_file_is_taken_afresh(tmp_path: Path) -> None:
    files = {**FILES, "models/d.yaml": plain("d")}
    added = TreeChanges(added={"models/d.yaml": "x"}, modified={}, deleted={})
    assert _taken(_narrow(tmp_path, files=files, changes=added)) == ["d"]


@pytest.mark.parametrize(
    ("case", "taken"),
    [
        pytest.param({"live": {"a", "c"}}, ["a", "b"], id="b's object is not live"),
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


def _spec_files(namespace: str, prometheus: str, *, version: int = 1) -> dict[str, str]:
    def isvc(name: str, uri_version: int = 1, **spec: Any) -> str:
        text = plain(name, uri_version, **spec)
        return text.replace(f"namespace: {NAMESPACE}", f"namespace: {namespace}")

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
        **{f"models/m{i}.yaml": isvc(f"m{i}") for i in range(6)},
        "models/canary.yaml": isvc("canary", **canary),
        "platform/sa.yaml": "apiVersion: v1\nkind: ServiceAccount\n"
        f"metadata: {{name: reader, namespace: {namespace}}}\n",
        "train.yaml": train_job(namespace, accuracy=0.95, lr="0.1"),
        "served.yaml": pipeline_model(namespace, "served", {"fromTrainingRun": "train"}),
    }


def _comparable(report: CycleReport) -> dict[str, Any]:
    """What a cycle reported, but for its id, timing and the bodies of unchanged
    objects (a carried one has none: nothing reads it)."""
    return {
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
def settled_repo(
    tmp_path: Path, kube: KubeClient, namespace: str, prometheus_url: str
) -> Iterator[tuple[SpecRepo, Callable[..., Reconciler], Settled]]:
    """A repo synced until a cycle settled, and how to make reconcilers for it."""
    repo = SpecRepo(tmp_path / "repo")
    for path, content in _spec_files(namespace, prometheus_url).items():
        repo.write(path, content)
    repo.commit("specs")
    made: list[tuple[Reconciler, GitSource]] = []
    clock = [datetime.now(UTC)]

    def make(settled: Settled | None = None, *, may_write: bool = True) -> Reconciler:
        git = GitSource(repo.url, branch="main", cache_dir=tmp_path / f"git-{len(made)}")
        reconciler = Reconciler(
            git=git,
            kube=kube,
            options=SyncOptions(instance=namespace),
            clock=lambda: clock[0],
            cache_dir=tmp_path / "cache",
            may_write=lambda: may_write,
            settled=settled,
        )
        made.append((reconciler, git))
        return reconciler

    first = make()
    settled = None
    for _ in range(60):
        # Until the run has succeeded and every model is ready: then the controllers
        # write nothing more, and the live objects stay as the settled cycle saw them.
        clock[0] = datetime.now(UTC)
        report = first.cycle()
        done = all(s.phase in (Phase.HEALTHY, Phase.SUCCEEDED) for s in report.statuses)
        if done and (settled := first.settled) is not None and settled.quiet:
            break
        time.sleep(0.5)
    assert settled is not None and settled.quiet, "the repo never settled"
    yield repo, make, settled
    for reconciler, git in made:
        reconciler.close()
        git.close()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"models/m2.yaml": ("m2", 2)}, id="one plain model"),
        pytest.param({"models/m2.yaml": ("m2", 2), "models/m4.yaml": ("m4", 3)}, id="two models"),
        pytest.param({"models/new.yaml": ("new", 1)}, id="a new model"),
        pytest.param({"models/canary.yaml": ("canary", 2)}, id="the canary"),
        pytest.param({"train.yaml": None}, id="the training run"),
    ],
)
def test_a_cycle_that_carries_reports_what_a_full_cycle_reports(
    settled_repo: tuple[SpecRepo, Callable[..., Reconciler], Settled],
    namespace: str,
    prometheus_url: str,
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, tuple[str, int] | None],
) -> None:
    repo, make, settled = settled_repo
    files = _spec_files(namespace, prometheus_url)
    for path, what in change.items():
        if what is None:
            repo.write(path, train_job(namespace, accuracy=0.95, lr="0.2"))
            continue
        name, version = what
        text = files.get(path, files["models/m0.yaml"].replace("m0", name))
        repo.write(path, text.replace(f"/{name}/v1", f"/{name}/v{version}"))
    repo.commit("a change")
    foci: list[Focus | None] = []

    def spy(*args: Any, **kwargs: Any) -> Focus | None:
        foci.append(narrow(*args, **kwargs))
        return foci[-1]

    monkeypatch.setattr(reconciler_module, "narrow", spy)
    # Neither may write: each sees the inputs the other saw, the cluster and the status
    # branch as the settled cycle left them, and decides what it would do.
    full = make(may_write=False).cycle()
    assert foci == []  # without a record there is nothing to start from
    carried = make(settled, may_write=False).cycle()
    [focus] = foci
    assert focus is not None and focus.carried, "the cycle took every spec afresh"
    assert len(focus.loaded.entries) < len(carried.statuses)
    assert _comparable(carried) == _comparable(full)
    assert any(c.action is not Action.UNCHANGED for c in carried.changes.changes)


def test_a_cycle_that_carries_applies_and_publishes_like_a_full_one(
    settled_repo: tuple[SpecRepo, Callable[..., Reconciler], Settled],
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
) -> None:
    repo, make, settled = settled_repo
    files = _spec_files(namespace, prometheus_url)
    repo.write("models/m3.yaml", files["models/m3.yaml"].replace("/m3/v1", "/m3/v2"))
    repo.commit("m3 v2")
    before = repo.status_files()
    report = make(settled).cycle()
    assert not report.failed, report
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


def test_a_wake_up_time_in_the_future_still_carries(tmp_path: Path) -> None:
    later = {"wake_at": NOW + timedelta(minutes=1)}
    assert _taken(_narrow(tmp_path, settled=later)) == ["a"]
