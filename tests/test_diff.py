"""Planning: unchanged objects cost nothing, drift is caught, pruning is guarded."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gitsync.diff import (
    Action,
    HoldsMemo,
    PrunePolicy,
    holds,
    normalize,
    object_diff,
    plan_changes,
)
from gitsync.render import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_SOURCE_PATH,
    LABEL_INSTANCE,
    LABEL_TRAINING_RUN,
    applied_hash,
)
from gitsync.types import ObjectRef


def desired(name: str, *, uri: str = "s3://m/v1", path: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {LABEL_INSTANCE: "i"},
            "annotations": {ANNOTATION_SOURCE_PATH: path or f"{name}.yaml"},
        },
        "spec": {"predictor": {"model": {"storageUri": uri}}},
    }
    obj["metadata"]["annotations"][ANNOTATION_APPLIED_HASH] = applied_hash(obj)
    return obj


def live_copy(obj: dict[str, Any]) -> dict[str, Any]:
    """What the server returns: our object plus its own bookkeeping and defaults."""
    live = copy.deepcopy(obj)
    live["metadata"].update(resourceVersion="42", uid="u", generation=1, managedFields=[])
    live["spec"]["predictor"]["minReplicas"] = 1  # a server default
    live["status"] = {"url": "http://x"}
    return live


def job(name: str, *, run_of: str, finished: bool) -> dict[str, Any]:
    conditions = [{"type": "Succeeded", "status": "True"}] if finished else []
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {LABEL_INSTANCE: "i", LABEL_TRAINING_RUN: run_of},
            "annotations": {ANNOTATION_SOURCE_PATH: f"{run_of}.yaml"},
        },
        "status": {"conditions": conditions},
    }


def by_key(*objs: dict[str, Any]) -> dict[ObjectRef, dict[str, Any]]:
    return {ObjectRef.of(o): o for o in objs}


def actions(plan: Any) -> dict[str, str]:
    return {c.key.name: c.action.value for c in plan.changes}


def test_unchanged_object_is_recognised_without_the_server() -> None:
    want = desired("a")
    plan = plan_changes([want], by_key(live_copy(want)), instance="i")
    assert actions(plan) == {"a": "unchanged"}
    assert plan.writes == []


def test_new_changed_and_drifted() -> None:
    a, b, c = desired("a"), desired("b"), desired("c")
    b_live = live_copy(desired("b", uri="s3://m/v0"))
    c_live = live_copy(c)
    c_live["spec"]["predictor"]["model"]["storageUri"] = "s3://hand/edited"

    plan = plan_changes([a, b, c], by_key(b_live, c_live), instance="i")

    assert actions(plan) == {"a": "created", "b": "configured", "c": "configured"}
    drift = {ch.key.name: ch.drift for ch in plan.changes}
    assert drift == {"a": False, "b": False, "c": True}


def test_drift_is_only_reported_when_self_heal_is_off() -> None:
    c = desired("c")
    c_live = live_copy(c)
    c_live["spec"]["predictor"]["model"]["storageUri"] = "s3://hand/edited"
    plan = plan_changes([c], by_key(c_live), instance="i", self_heal=False)
    (change,) = plan.changes
    assert (change.action, change.drift) == (Action.SKIPPED, True)


def test_a_memo_compares_again_only_what_is_a_new_object() -> None:
    a, b = desired("a"), desired("b")
    a_live, b_live = live_copy(a), live_copy(b)
    memo: HoldsMemo = {}
    first = plan_changes([a, b], by_key(a_live, b_live), instance="i", memo=memo)
    assert actions(first) == {"a": "unchanged", "b": "unchanged"}
    assert {key.name: held for key, (_, _, held) in memo.items()} == {"a": True, "b": True}

    # The memo goes by identity, not equality: the very same objects are taken as
    # last compared even when edited in place (an informer never edits an object it
    # handed out; this shows the memo is what answered).
    a_live["spec"]["predictor"]["model"]["storageUri"] = "s3://hand/edited"
    again = plan_changes([a, b], by_key(a_live, b_live), instance="i", memo=memo)
    assert actions(again) == {"a": "unchanged", "b": "unchanged"}

    # The watch delivers the edit as a new object: compared again, drift caught.
    edited = copy.deepcopy(a_live)
    third = plan_changes([a, b], by_key(edited, b_live), instance="i", memo=memo)
    assert actions(third) == {"a": "configured", "b": "unchanged"}
    assert [c.drift for c in third.changes] == [True, False]
    assert memo[ObjectRef.of(a)][1] is edited

    # An equal desired body that is another object is compared again too.
    b_new = copy.deepcopy(b)
    b_new["spec"]["predictor"]["model"]["storageUri"] = "s3://m/v2"
    b_new["metadata"]["annotations"][ANNOTATION_APPLIED_HASH] = b["metadata"]["annotations"][
        ANNOTATION_APPLIED_HASH
    ]
    fourth = plan_changes([b_new], by_key(b_live), instance="i", memo=memo)
    assert actions(fourth) == {"b": "configured"}
    # Only this call's comparisons are kept: a's are gone with a.
    assert set(memo) == {ObjectRef.of(b)}


@pytest.mark.parametrize(
    ("failed", "prune", "expected"),
    [
        pytest.param((), PrunePolicy(), "deleted", id="removed-from-git"),
        pytest.param(("gone.yaml",), PrunePolicy(), "skipped", id="source-failed-to-load"),
        pytest.param((), PrunePolicy(enabled=False), "skipped", id="prune-off"),
    ],
)
def test_prune_rules(failed: tuple[str, ...], prune: PrunePolicy, expected: str) -> None:
    keep = [desired(n) for n in "abc"]
    gone = live_copy(desired("gone"))
    plan = plan_changes(
        keep,
        by_key(gone, *(live_copy(o) for o in keep)),
        instance="i",
        failed_paths=failed,
        prune=prune,
    )
    assert actions(plan)["gone"] == expected


def test_only_our_instance_is_pruned() -> None:
    foreign = live_copy(desired("foreign"))
    foreign["metadata"]["labels"][LABEL_INSTANCE] = "other"
    unlabelled = live_copy(desired("unlabelled"))
    del unlabelled["metadata"]["labels"][LABEL_INSTANCE]
    plan = plan_changes([], by_key(foreign, unlabelled), instance="i")
    assert plan.changes == ()


def test_mass_deletion_is_refused() -> None:
    live = by_key(*(live_copy(desired(n)) for n in "abcd"))
    plan = plan_changes([desired("a")], live, instance="i", prune=PrunePolicy(max_ratio=0.5))
    assert plan.prune_refused is not None
    assert "3 of 4" in plan.prune_refused
    assert plan.of(Action.DELETED) == []
    assert len(plan.of(Action.SKIPPED)) == 3


def test_training_runs_are_kept_and_never_restarted() -> None:
    old_run = job("train-aaaa", run_of="train", finished=False)  # still running
    running_orphan = job("gone-bbbb", run_of="gone", finished=False)
    finished_orphan = job("done-cccc", run_of="done", finished=True)
    new_run = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "train-dddd", "namespace": "ml", "labels": {LABEL_INSTANCE: "i"}},
    }
    plan = plan_changes(
        [new_run],
        by_key(old_run, running_orphan, finished_orphan),
        instance="i",
        declared_runs=[ObjectRef.spec("TrainingRun", "ml", "train")],
        finished_runs=["train-dddd"],
        prune=PrunePolicy(max_ratio=1.0),
    )
    assert actions(plan) == {
        "train-dddd": "skipped",  # finished before, its TTL removed it: not restarted
        "train-aaaa": "skipped",  # an earlier run of a TrainingRun still in Git
        "done-cccc": "skipped",  # finished: kept until its TTL
        "gone-bbbb": "deleted",  # spec removed while running: stop it
    }


@pytest.mark.parametrize(("failed", "expected"), [((), "deleted"), (("train.yaml",), "skipped")])
def test_a_run_is_retired_only_while_its_spec_is_in_force(
    failed: tuple[str, ...], expected: str
) -> None:
    """Replaced at a tick or beyond historyLimit: unless the TrainingRun's file failed
    (or a policy denied it), whose schedule and limit are then not in force."""
    old = job("train-aaaa", run_of="train", finished=True)
    plan = plan_changes(
        [],
        by_key(old),
        instance="i",
        failed_paths=failed,
        declared_runs=[ObjectRef.spec("TrainingRun", "ml", "train")],
        retire={ObjectRef.of(old): "beyond historyLimit 1"},
        prune=PrunePolicy(max_ratio=1.0),
    )
    assert actions(plan) == {"train-aaaa": expected}


@pytest.mark.parametrize(
    ("live", "want", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"l": [{"x": 1, "y": 2}]}, {"l": [{"x": 1}]}, True),
        ({"l": [1, 2]}, {"l": [1]}, False),
        ({"a": {"b": "1"}}, {"a": {"b": 1}}, False),
    ],
)
def test_holds(live: dict[str, Any], want: dict[str, Any], expected: bool) -> None:
    assert holds(live, want) is expected


def test_normalize_and_object_diff() -> None:
    want = desired("a")
    live = live_copy(want)
    assert "resourceVersion" not in normalize(live)["metadata"]
    assert "status" not in normalize(live)
    text = object_diff(live, desired("a", uri="s3://m/v2"))
    assert "-      storageUri: s3://m/v1" in text
    assert "+      storageUri: s3://m/v2" in text
