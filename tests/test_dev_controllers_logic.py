"""The dev controllers' pure cores: InferenceService and job simulators, no cluster.

Each simulator is a function (object, now) -> Outcome; these tables drive objects
through it the way the runner would (apply the returned status, call again at the
wake-up time) and compare with what KServe and the Training Operator do.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from gitsync.clients.kube import KubeClient, WatchEvent
from gitsync.dev.controllers.inferenceservice import (
    IsvcSettings,
    reconcile_inference_service,
)
from gitsync.dev.controllers.jobs import JobSettings, reconcile_job
from gitsync.dev.controllers.runner import (
    Controller,
    DelayQueue,
    Outcome,
    Reconciler,
    format_precise,
    format_time,
    merge_patch,
    parse_time,
    seconds_annotation,
)
from gitsync.dev.controllers.trainjobs import reconcile_train_job
from gitsync.errors import ApiInvalidError, ApiUnavailableError, WatchExpiredError
from gitsync.types import ObjectRef

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
ISVC = IsvcSettings(ready_delay=2.0)
JOBS = JobSettings(start_delay=1.0, run_duration=3.0)

Obj = dict[str, Any]


def ref(name: str) -> ObjectRef:
    return ObjectRef("serving.kserve.io", "InferenceService", "ns", name)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- helpers --------------------------------------------------------------------------


def isvc(
    *,
    storage: str = "s3://b/m/v1",
    canary: int | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    transformer: Mapping[str, Any] | None = None,
) -> Obj:
    predictor: Obj = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    obj: Obj = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m", "namespace": "ns", "generation": 1},
        "spec": {"predictor": predictor},
    }
    if annotations:
        obj["metadata"]["annotations"] = dict(annotations)
    if labels:
        obj["metadata"]["labels"] = dict(labels)
    if transformer is not None:
        obj["spec"]["transformer"] = dict(transformer)
    return obj


def with_spec(current: Obj, desired: Obj) -> Obj:
    """``desired``'s metadata and spec with ``current``'s status: a user's update."""
    updated = copy.deepcopy(desired)
    if "status" in current:
        updated["status"] = copy.deepcopy(current["status"])
    return updated


Reconcile = Callable[[Obj, datetime], Outcome]


def isvc_reconcile(obj: Obj, now: datetime) -> Outcome:
    return reconcile_inference_service(obj, now, ISVC)


def job_reconcile(obj: Obj, now: datetime) -> Outcome:
    return reconcile_job(obj, now, JOBS)


def step(obj: Obj, now: datetime, reconcile: Reconcile = isvc_reconcile) -> tuple[Obj, Outcome]:
    outcome = reconcile(obj, now)
    if outcome.status is not None:
        obj = {**obj, "status": outcome.status}
    return obj, outcome


def settle(
    obj: Obj, now: datetime, reconcile: Reconcile = isvc_reconcile, *, until: datetime | None = None
) -> Obj:
    """Reconcile at ``now`` and at every wake-up up to ``until`` (default: ``now``)."""
    until = until or now
    for _ in range(50):
        obj, outcome = step(obj, now, reconcile)
        if outcome.wake_at is None or outcome.wake_at > until:
            return obj
        now = max(now, outcome.wake_at)
    raise AssertionError("the simulator did not settle")


def conditions(obj: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in obj["status"]["conditions"]}


def predictor(obj: Obj) -> Obj:
    component: Obj = obj["status"]["components"]["predictor"]
    return component


def traffic(obj: Obj, component: str = "predictor") -> list[tuple[str, int, bool, str | None]]:
    entries = obj["status"]["components"][component].get("traffic") or []
    return [(t["revisionName"], t["percent"], t["latestRevision"], t.get("tag")) for t in entries]


def ready_isvc(**kwargs: Any) -> Obj:
    """An InferenceService whose first revision is ready (at T0 + 2s)."""
    return settle(isvc(**kwargs), at(0), until=at(2))


# --- runner helpers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({}, {}, {}),
        ({"a": 1}, {"a": 1}, {}),
        ({}, {"a": 1}, {"a": 1}),
        ({"a": 1}, {}, {"a": None}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, {"a": {"c": None}}),
        ({"a": {"b": 1}}, {"a": {"b": 2}}, {"a": {"b": 2}}),
        ({"a": [1, 2]}, {"a": [1]}, {"a": [1]}),
        ({"a": {"b": 1}}, {"a": {}}, {"a": {"b": None}}),
        ({}, {"a": {}}, {"a": {}}),
        ({"a": 1}, {"a": {"b": 1}}, {"a": {"b": 1}}),
        ({"a": None}, {"a": None}, {}),
    ],
)
def test_merge_patch(old: Obj, new: Obj, patch: Obj) -> None:
    assert merge_patch(old, new) == patch


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01T12:00:00Z", T0),
        ("2025-03-01T12:00:00.500000Z", T0 + timedelta(milliseconds=500)),
        ("2025-03-01T13:00:00+01:00", T0),
        ("2025-03-01T12:00:00", T0),
        ("yesterday", None),
        ("", None),
        (None, None),
        (17, None),
    ],
)
def test_parse_time(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_time_formats_round_trip() -> None:
    moment = T0 + timedelta(microseconds=123456)
    assert format_time(moment) == "2025-03-01T12:00:00Z"
    assert parse_time(format_precise(moment)) == moment


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"k": "0.5"}, 0.5),
        ({"k": "3"}, 3.0),
        ({"k": "0"}, 0.0),
        ({"k": "-1"}, 9.0),
        ({"k": "soon"}, 9.0),
        ({}, 9.0),
    ],
)
def test_seconds_annotation(annotations: Mapping[str, str], expected: float) -> None:
    assert seconds_annotation(annotations, "k", 9.0) == expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delay_queue_orders_by_time_and_keeps_the_earliest() -> None:
    clock = FakeClock()
    queue = DelayQueue(clock)
    queue.add(ref("late"), 1005.0)
    queue.add(ref("soon"), 1001.0)
    queue.add(ref("late"), 1002.0)  # earlier wins
    queue.add(ref("soon"), 1004.0)  # later is ignored
    queue.add(ref("now"))
    assert queue.get() == ref("now")
    clock.now = 1010.0
    assert [queue.get(), queue.get()] == [ref("soon"), ref("late")]


def test_delay_queue_forget_and_close() -> None:
    clock = FakeClock()
    queue = DelayQueue(clock)
    queue.add(ref("gone"))
    queue.forget(ref("gone"))
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(queue.get()))
    waiter.start()
    queue.close()
    waiter.join(2)
    assert result == [None]


# --- InferenceService: first revision ---------------------------------------------------


def test_new_isvc_is_unknown_until_its_first_revision_is_ready() -> None:
    obj, outcome = step(isvc(), at(0))

    assert outcome.wake_at == at(2)
    assert predictor(obj) == {"latestCreatedRevision": "m-predictor-00001"}
    cond = conditions(obj)
    assert (cond["Ready"]["status"], cond["Ready"]["reason"]) == ("Unknown", "RevisionMissing")
    assert cond["PredictorReady"]["message"] == (
        'Configuration "m-predictor" is waiting for a Revision to become ready.'
    )
    assert "IngressReady" not in cond  # KServe has nothing to route to yet
    assert cond["PredictorConfigurationReady"]["severity"] == "Info"
    assert "url" not in obj["status"]
    assert obj["status"]["deploymentMode"] == "Serverless"
    assert obj["status"]["observedGeneration"] == 1
    assert obj["status"]["modelStatus"]["transitionStatus"] == "InProgress"


def test_first_revision_becomes_ready_after_the_delay() -> None:
    obj, _ = step(isvc(), at(0))
    obj, outcome = step(obj, at(2))

    assert outcome.wake_at is None
    assert set(outcome.transitions) >= {"revision m-predictor-00001 ready", "Ready=True"}
    assert predictor(obj)["latestReadyRevision"] == "m-predictor-00001"
    assert predictor(obj)["latestRolledoutRevision"] == "m-predictor-00001"
    assert "previousRolledoutRevision" not in predictor(obj)
    assert traffic(obj) == [("m-predictor-00001", 100, True, None)]
    assert predictor(obj)["url"] == "http://m-predictor.ns.example.com"
    assert predictor(obj)["address"] == {"url": "http://m-predictor.ns.svc.cluster.local"}
    assert obj["status"]["url"] == "http://m.ns.example.com"
    assert obj["status"]["address"] == {"url": "http://m.ns.svc.cluster.local"}
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]} == {
        "IngressReady": "True",
        "LatestDeploymentReady": "True",
        "PredictorConfigurationReady": "True",
        "PredictorReady": "True",
        "PredictorRouteReady": "True",
        "Ready": "True",
        "RoutesReady": "True",
    }
    assert obj["status"]["modelStatus"] == {
        "transitionStatus": "UpToDate",
        "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
        "copies": {"failedCopies": 0, "totalCopies": 1},
    }


@pytest.mark.parametrize(
    ("annotations", "ready_at"),
    [
        ({}, 2.0),
        ({"dev.gitsync.io/ready-delay": "0.5"}, 0.5),
        ({"dev.gitsync.io/ready-delay": "0"}, 0),
    ],
)
def test_ready_delay_annotation(annotations: Mapping[str, str], ready_at: float) -> None:
    obj, outcome = step(isvc(annotations=annotations), at(0))
    if ready_at == 0:
        assert outcome.wake_at is None
        assert conditions(obj)["Ready"]["status"] == "True"
    else:
        assert outcome.wake_at == at(ready_at)


def test_conditions_keep_their_transition_time_and_sort_by_type() -> None:
    obj = ready_isvc()
    before = copy.deepcopy(obj["status"]["conditions"])
    obj, outcome = step(obj, at(60))
    assert outcome.status is None
    assert [c["type"] for c in before] == sorted(c["type"] for c in before)
    assert {c["lastTransitionTime"] for c in before} == {"2025-03-01T12:00:02Z"}


@pytest.mark.parametrize("seconds", [0, 1, 2, 3, 30])
def test_a_settled_isvc_is_never_rewritten(seconds: float) -> None:
    obj = settle(isvc(), at(0), until=at(seconds))
    again, outcome = step(obj, at(seconds))
    assert outcome.status is None
    assert again == obj


# --- InferenceService: revisions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "new_revision"),
    [
        ({"storage": "s3://b/m/v2"}, True),
        ({"canary": 10}, False),
        ({"annotations": {"team": "search"}}, True),  # KServe copies them into the template
        ({"labels": {"app": "m"}}, True),
        ({"annotations": {"dev.gitsync.io/ready-delay": "9"}}, False),  # simulator knobs
        ({"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}, False),
        ({"annotations": {"autoscaling.knative.dev/min-scale": "2"}}, False),
        ({"labels": {"networking.knative.dev/visibility": "cluster-local"}}, False),
    ],
)
def test_what_makes_a_new_revision(change: Mapping[str, Any], new_revision: bool) -> None:
    obj = ready_isvc()
    obj = settle(with_spec(obj, isvc(**change)), at(10))
    expected = "m-predictor-00002" if new_revision else "m-predictor-00001"
    assert predictor(obj)["latestCreatedRevision"] == expected


def test_revision_numbers_keep_counting_when_a_spec_returns() -> None:
    obj = ready_isvc()
    for seconds, storage in ((10, "s3://b/m/v2"), (20, "s3://b/m/v1")):
        obj = settle(with_spec(obj, isvc(storage=storage)), at(seconds), until=at(seconds + 2))
    assert predictor(obj)["latestCreatedRevision"] == "m-predictor-00003"
    assert predictor(obj)["latestReadyRevision"] == "m-predictor-00003"


def test_a_revision_replaced_before_it_was_ready_never_becomes_ready() -> None:
    obj = ready_isvc()
    obj = settle(with_spec(obj, isvc(storage="s3://b/m/v2")), at(10))
    obj = settle(with_spec(obj, isvc(storage="s3://b/m/v3")), at(11), until=at(12.5))
    assert predictor(obj)["latestCreatedRevision"] == "m-predictor-00003"
    assert predictor(obj)["latestReadyRevision"] == "m-predictor-00001"
    obj = settle(obj, at(13))
    assert predictor(obj)["latestReadyRevision"] == "m-predictor-00003"


def test_memory_lives_in_status_annotations_and_survives_a_restart() -> None:
    obj = ready_isvc()
    memory = obj["status"]["annotations"]
    assert memory["dev.gitsync.io/predictor-revision"] == "1"
    # A restarted simulator has only the object: the next change is still revision 2.
    obj = settle(with_spec(obj, isvc(storage="s3://b/m/v2")), at(10))
    assert predictor(obj)["latestCreatedRevision"] == "m-predictor-00002"


def test_lost_memory_adopts_the_existing_revision() -> None:
    obj = ready_isvc()
    obj["status"]["annotations"] = {"someone-else": "kept"}
    obj, _ = step(obj, at(30))
    assert predictor(obj)["latestCreatedRevision"] == "m-predictor-00001"
    assert obj["status"]["annotations"]["someone-else"] == "kept"
    assert obj["status"]["annotations"]["dev.gitsync.io/predictor-revision"] == "1"


# --- InferenceService: traffic --------------------------------------------------------------

V2 = "s3://b/m/v2"


@pytest.mark.parametrize(
    ("updates", "expected_traffic", "rolled_out", "previous"),
    [
        pytest.param([], [("m-predictor-00001", 100, True, None)], "00001", None, id="created"),
        pytest.param(
            [{"canary": 10}],
            [("m-predictor-00001", 10, True, None), ("m-predictor-00001", 90, False, "prev")],
            "00001",
            None,
            id="canary-without-new-revision-splits-over-itself",
        ),
        pytest.param(
            [{"storage": V2}],
            [("m-predictor-00002", 100, True, None)],
            "00002",
            "00001",
            id="new-revision-without-canary-rolls-out",
        ),
        pytest.param(
            [{"storage": V2, "canary": 10}],
            [("m-predictor-00002", 10, True, None), ("m-predictor-00001", 90, False, "prev")],
            "00001",
            None,
            id="canary-10",
        ),
        pytest.param(
            [{"storage": V2, "canary": 10}, {"storage": V2}],
            [("m-predictor-00002", 100, True, None)],
            "00002",
            "00001",
            id="promote-by-removing-canary",
        ),
        pytest.param(
            [{"storage": V2, "canary": 10}, {"storage": V2, "canary": 100}],
            [("m-predictor-00002", 100, True, None)],
            "00002",
            "00001",
            id="promote-with-100",
        ),
        pytest.param(
            [{"storage": V2, "canary": 0}],
            [("m-predictor-00002", 0, True, None), ("m-predictor-00001", 100, False, "prev")],
            "00001",
            None,
            id="canary-0-keeps-the-previous",
        ),
        pytest.param(
            [{"storage": V2, "canary": 10}, {"storage": V2}, {"storage": V2, "canary": 0}],
            [("m-predictor-00002", 0, True, None), ("m-predictor-00001", 100, False, "prev")],
            "00001",
            "00001",
            id="rollback-after-promotion",
        ),
        pytest.param(
            [{"storage": V2}, {"storage": V2, "canary": 20}],
            [("m-predictor-00002", 20, True, None), ("m-predictor-00001", 80, False, "prev")],
            "00001",
            "00001",
            id="canary-on-a-rolled-out-revision-rolls-back-to-a-split",
        ),
        pytest.param(
            [
                {
                    "storage": V2,
                    "canary": 10,
                    "annotations": {"serving.kserve.io/enable-tag-routing": "true"},
                }
            ],
            [("m-predictor-00002", 10, True, "latest"), ("m-predictor-00001", 90, False, "prev")],
            "00001",
            None,
            id="tag-routing-tags-the-latest",
        ),
    ],
)
def test_traffic(
    updates: list[dict[str, Any]],
    expected_traffic: list[tuple[str, int, bool, str | None]],
    rolled_out: str,
    previous: str | None,
) -> None:
    obj = ready_isvc()
    for index, update in enumerate(updates):
        start = 10 * (index + 1)
        obj = settle(with_spec(obj, isvc(**update)), at(start), until=at(start + 5))
    assert traffic(obj) == expected_traffic
    assert predictor(obj)["latestRolledoutRevision"] == f"m-predictor-{rolled_out}"
    assert predictor(obj).get("previousRolledoutRevision") == (
        previous and f"m-predictor-{previous}"
    )
    assert conditions(obj)["Ready"]["status"] == "True"


def test_canary_before_the_new_revision_is_ready_routes_everything_to_the_old_one() -> None:
    obj = ready_isvc()
    obj, outcome = step(with_spec(obj, isvc(storage=V2, canary=10)), at(10))

    assert outcome.wake_at == at(12)
    assert traffic(obj) == [
        ("m-predictor-00001", 10, True, None),
        ("m-predictor-00001", 90, False, "prev"),
    ]
    assert predictor(obj)["latestCreatedRevision"] == "m-predictor-00002"
    cond = conditions(obj)
    # While a new revision rolls out KServe reports the whole service as not ready.
    assert cond["PredictorReady"]["status"] == "Unknown"
    assert (cond["IngressReady"]["status"], cond["IngressReady"]["reason"]) == (
        "Unknown",
        "Predictor ingress not created",
    )
    assert cond["Ready"]["status"] == "Unknown"
    assert obj["status"]["url"] == "http://m.ns.example.com"  # kept from before
    assert obj["status"]["modelStatus"]["states"] == {
        "activeModelState": "Loaded",
        "targetModelState": "Pending",
    }


def test_prev_tag_has_its_own_url() -> None:
    obj = ready_isvc()
    obj = settle(with_spec(obj, isvc(storage=V2, canary=10)), at(10), until=at(12))
    prev = obj["status"]["components"]["predictor"]["traffic"][1]
    assert prev["url"] == "http://prev-m-predictor.ns.example.com"


@pytest.mark.parametrize(
    ("updates", "generation"),
    [
        ([], 1),
        ([{"canary": 10}], 2),  # route spec changed
        ([{"storage": V2, "canary": 10}], 2),  # template and route in one update
        ([{"storage": V2, "canary": 10}, {"storage": V2}], 3),
        # rollback: KServe rewrites the route twice before it settles
        ([{"storage": V2, "canary": 10}, {"storage": V2}, {"storage": V2, "canary": 0}], 5),
        ([{"annotations": {"dev.gitsync.io/fail": "false"}}], 1),
    ],
)
def test_observed_generation_is_the_knative_service_generation(
    updates: list[dict[str, Any]], generation: int
) -> None:
    obj = ready_isvc()
    for index, update in enumerate(updates):
        start = 10 * (index + 1)
        obj = settle(with_spec(obj, isvc(**update)), at(start), until=at(start + 5))
    assert obj["status"]["observedGeneration"] == generation


# --- InferenceService: failures -----------------------------------------------------------

FAIL = {"dev.gitsync.io/fail": "true"}


def test_failing_first_revision() -> None:
    obj = settle(isvc(annotations=FAIL), at(0), until=at(10))

    cond = conditions(obj)
    assert (cond["Ready"]["status"], cond["Ready"]["reason"]) == ("False", "RevisionMissing")
    assert cond["PredictorReady"]["message"] == (
        'Configuration "m-predictor" does not have any ready Revision.'
    )
    assert cond["PredictorConfigurationReady"]["reason"] == "RevisionFailed"
    assert cond["PredictorConfigurationReady"]["message"].startswith(
        'Revision "m-predictor-00001" failed with message: '
    )
    assert predictor(obj) == {"latestCreatedRevision": "m-predictor-00001"}
    assert obj["status"]["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert obj["status"]["modelStatus"]["lastFailureInfo"]["reason"] == "ModelLoadFailed"


def test_failing_new_revision_leaves_traffic_on_the_old_one() -> None:
    obj = ready_isvc()
    failing = isvc(storage=V2, annotations={**FAIL, "dev.gitsync.io/fail-message": "OOM"})
    obj = settle(with_spec(obj, failing), at(10), until=at(20))

    cond = conditions(obj)
    assert cond["PredictorReady"]["status"] == "False"
    assert cond["PredictorReady"]["reason"] == "RevisionFailed"
    assert cond["PredictorReady"]["message"] == (
        'Revision "m-predictor-00002" failed with message: OOM.'
    )
    assert cond["Ready"]["status"] == "False"
    assert cond["PredictorRouteReady"]["status"] == "True"  # still serving 00001
    assert traffic(obj) == [("m-predictor-00001", 100, True, None)]
    assert predictor(obj)["latestCreatedRevision"] == "m-predictor-00002"
    assert predictor(obj)["latestReadyRevision"] == "m-predictor-00001"
    assert predictor(obj)["latestRolledoutRevision"] == "m-predictor-00001"
    assert obj["status"]["modelStatus"]["lastFailureInfo"]["message"] == "OOM"


def test_removing_the_fail_knob_makes_the_revision_ready_after_the_delay() -> None:
    obj = settle(isvc(annotations=FAIL), at(0), until=at(10))
    obj, outcome = step(with_spec(obj, isvc()), at(30))
    assert outcome.wake_at == at(32)
    assert conditions(obj)["Ready"]["status"] == "Unknown"
    obj = settle(obj, at(32))
    assert conditions(obj)["Ready"]["status"] == "True"
    assert traffic(obj) == [("m-predictor-00001", 100, True, None)]


def test_fail_knob_does_not_touch_a_revision_that_is_already_ready() -> None:
    obj = ready_isvc()
    obj = settle(with_spec(obj, isvc(annotations=FAIL)), at(10), until=at(20))
    assert conditions(obj)["Ready"]["status"] == "True"


# --- InferenceService: other components and modes -------------------------------------------


def test_transformer_is_its_own_component_and_fronts_the_url() -> None:
    transformer = {"containers": [{"name": "kserve-container", "image": "t:1"}]}
    obj = settle(isvc(transformer=transformer), at(0), until=at(2))

    status = obj["status"]
    assert status["components"]["transformer"]["latestReadyRevision"] == "m-transformer-00001"
    assert status["url"] == "http://m.ns.example.com"
    cond = conditions(obj)
    assert cond["TransformerReady"]["status"] == "True"
    assert "severity" in cond["TransformerReady"]  # not one of Ready's dependents
    assert cond["Ready"]["status"] == "True"

    changed = {"containers": [{"name": "kserve-container", "image": "t:2"}]}
    obj, _ = step(with_spec(obj, isvc(transformer=changed)), at(10))
    assert obj["status"]["components"]["transformer"]["latestCreatedRevision"] == (
        "m-transformer-00002"
    )
    assert obj["status"]["components"]["predictor"]["latestCreatedRevision"] == (
        "m-predictor-00001"
    )
    assert conditions(obj)["IngressReady"]["reason"] == "Transformer ingress not created"


@pytest.mark.parametrize("mode", ["ModelMesh", "Bogus"])
def test_other_deployment_modes_are_left_alone(mode: str) -> None:
    outcome = isvc_reconcile(isvc(annotations={"serving.kserve.io/deploymentMode": mode}), at(0))
    assert outcome.status is None
    assert outcome.note is not None
    assert mode in outcome.note


def test_deleted_isvc_is_left_alone() -> None:
    obj = isvc()
    obj["metadata"]["deletionTimestamp"] = "2025-03-01T12:00:00Z"
    assert isvc_reconcile(obj, at(0)) == Outcome()


def test_unrelated_status_fields_are_kept() -> None:
    obj = isvc()
    obj["status"] = {"clusterServingRuntimeName": "kserve-sklearnserver"}
    obj, _ = step(obj, at(0))
    assert obj["status"]["clusterServingRuntimeName"] == "kserve-sklearnserver"


# --- jobs ------------------------------------------------------------------------------------


def tfjob(
    replicas: Mapping[str, int | None] | None = None,
    *,
    annotations: Mapping[str, str] | None = None,
    run_policy: Mapping[str, Any] | None = None,
) -> Obj:
    return job(
        "TFJob", "tfReplicaSpecs", replicas or {"Chief": 1, "Worker": 2}, annotations, run_policy
    )


def pytorchjob(
    replicas: Mapping[str, int | None] | None = None,
    *,
    annotations: Mapping[str, str] | None = None,
    run_policy: Mapping[str, Any] | None = None,
) -> Obj:
    return job(
        "PyTorchJob",
        "pytorchReplicaSpecs",
        replicas or {"Master": 1, "Worker": 2},
        annotations,
        run_policy,
    )


def job(
    kind: str,
    key: str,
    replicas: Mapping[str, int | None],
    annotations: Mapping[str, str] | None,
    run_policy: Mapping[str, Any] | None,
) -> Obj:
    specs: Obj = {}
    for rtype, count in replicas.items():
        specs[rtype] = {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
        if count is not None:
            specs[rtype]["replicas"] = count
    obj: Obj = {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": {"name": "j", "namespace": "ns", "annotations": dict(annotations or {})},
        "spec": {key: specs},
    }
    if run_policy:
        obj["spec"]["runPolicy"] = dict(run_policy)
    return obj


def job_conditions(obj: Obj) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in obj["status"]["conditions"]]


def settle_job(obj: Obj, now: datetime, until: datetime) -> Obj:
    return settle(obj, now, job_reconcile, until=until)


@pytest.mark.parametrize(
    ("seconds", "expected_conditions", "replica_statuses", "times"),
    [
        (
            0,
            [("Created", "True", "TFJobCreated")],
            {"Chief": {}, "Worker": {}},
            {"startTime": "2025-03-01T12:00:00Z"},
        ),
        (
            1,
            [("Created", "True", "TFJobCreated"), ("Running", "True", "TFJobRunning")],
            {"Chief": {"active": 1}, "Worker": {"active": 2}},
            {"startTime": "2025-03-01T12:00:00Z"},
        ),
        (
            4,
            [
                ("Created", "True", "TFJobCreated"),
                ("Running", "False", "TFJobRunning"),
                ("Succeeded", "True", "TFJobSucceeded"),
            ],
            {"Chief": {"succeeded": 1}, "Worker": {"succeeded": 2}},
            {"startTime": "2025-03-01T12:00:00Z", "completionTime": "2025-03-01T12:00:04Z"},
        ),
    ],
)
def test_tfjob_lifecycle(
    seconds: float,
    expected_conditions: list[tuple[str, str, str]],
    replica_statuses: Obj,
    times: Mapping[str, str],
) -> None:
    obj = settle_job(tfjob(), at(0), until=at(seconds))
    assert job_conditions(obj) == expected_conditions
    assert obj["status"]["replicaStatuses"] == replica_statuses
    assert {k: v for k, v in obj["status"].items() if k.endswith("Time")} == times


def test_job_messages_follow_the_operator() -> None:
    obj = settle_job(tfjob(), at(0), until=at(10))
    messages = {c["type"]: c["message"] for c in obj["status"]["conditions"]}
    assert messages == {
        "Created": "TFJob j is created.",
        "Running": "TFJob ns/j is running.",
        "Succeeded": "TFJob ns/j successfully completed.",
    }
    running = next(c for c in obj["status"]["conditions"] if c["type"] == "Running")
    # filterOutCondition flips Running to False without touching its times.
    assert running["lastTransitionTime"] == "2025-03-01T12:00:01Z"


def test_every_transition_is_its_own_write() -> None:
    obj = tfjob(annotations={"dev.gitsync.io/start-delay": "0", "dev.gitsync.io/run-duration": "0"})
    lines: list[str] = []
    for _ in range(6):
        obj, outcome = step(obj, at(0), job_reconcile)
        lines.extend(outcome.transitions)
    assert lines == ["Created", "Running", "Succeeded"]


@pytest.mark.parametrize(
    ("make", "replicas", "culprit", "expected"),
    [
        (
            tfjob,
            {"Chief": 1, "Worker": 2},
            "Chief",
            {"Chief": {"failed": 1}, "Worker": {"active": 2}},
        ),
        (
            tfjob,
            {"PS": 1, "Worker": 2},
            "Worker",
            {"PS": {"active": 1}, "Worker": {"active": 1, "failed": 1}},
        ),
        (tfjob, {"Worker": 1}, "Worker", {"Worker": {"failed": 1}}),
        (pytorchjob, {"Master": 1, "Worker": 2}, "Master", None),
        (pytorchjob, {"Worker": 3}, "Worker", None),
    ],
)
def test_fail_knob_fails_the_master_role(
    make: Callable[..., Obj], replicas: Mapping[str, int], culprit: str, expected: Obj | None
) -> None:
    obj = settle_job(make(replicas, annotations=FAIL), at(0), until=at(10))
    kind = obj["kind"]
    failed = next(c for c in obj["status"]["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True"
    assert failed["reason"] == f"{kind}Failed"
    assert failed["message"] == f"{kind} ns/j has failed because 1 {culprit} replica(s) failed."
    assert obj["status"]["completionTime"] == "2025-03-01T12:00:04Z"
    assert obj["status"]["replicaStatuses"][culprit]["failed"] == 1
    if expected is not None:
        assert obj["status"]["replicaStatuses"] == expected


@pytest.mark.parametrize(
    ("annotations", "reason", "message"),
    [
        ({"dev.gitsync.io/fail-reason": "OOMKilled"}, "OOMKilled", None),
        ({"dev.gitsync.io/fail-message": "boom"}, "PyTorchJobFailed", "boom"),
    ],
)
def test_fail_reason_and_message_knobs(
    annotations: Mapping[str, str], reason: str, message: str | None
) -> None:
    obj = settle_job(pytorchjob(annotations={**FAIL, **annotations}), at(0), until=at(10))
    failed = next(c for c in obj["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == reason
    if message:
        assert failed["message"] == message


def test_pytorchjob_publishes_selectors_for_its_scale_subresource() -> None:
    obj = settle_job(pytorchjob(), at(0), until=at(1))
    assert obj["status"]["replicaStatuses"]["Worker"] == {
        "active": 2,
        "selector": "training.kubeflow.org/job-name=j,"
        "training.kubeflow.org/operator-name=pytorchjob-controller,"
        "training.kubeflow.org/replica-type=worker",
    }


@pytest.mark.parametrize("annotations", [{}, FAIL])
def test_a_finished_job_is_never_touched_again(annotations: Mapping[str, str]) -> None:
    obj = settle_job(tfjob(annotations=annotations), at(0), until=at(10))
    obj["metadata"]["annotations"] = {}  # even if its knobs change afterwards
    assert job_reconcile(obj, at(100)) == Outcome()


@pytest.mark.parametrize(
    ("annotations", "running_at", "finished_at"),
    [
        ({}, 1, 4),
        ({"dev.gitsync.io/start-delay": "5"}, 5, 8),
        ({"dev.gitsync.io/run-duration": "10"}, 1, 11),
        ({"dev.gitsync.io/start-delay": "0", "dev.gitsync.io/run-duration": "0"}, 0, 0),
    ],
)
def test_job_delay_annotations(
    annotations: Mapping[str, str], running_at: float, finished_at: float
) -> None:
    obj = settle_job(tfjob(annotations=annotations), at(0), until=at(finished_at))
    by_type = {c["type"]: c for c in obj["status"]["conditions"]}
    assert by_type["Running"]["lastTransitionTime"] == format_time(at(running_at))
    assert by_type["Succeeded"]["lastTransitionTime"] == format_time(at(finished_at))


def test_replicas_default_to_one() -> None:
    obj = settle_job(tfjob({"Worker": None}), at(0), until=at(1))
    assert obj["status"]["replicaStatuses"] == {"Worker": {"active": 1}}


def test_suspended_job_is_created_but_not_started_until_resumed() -> None:
    obj = settle_job(tfjob(run_policy={"suspend": True}), at(0), until=at(30))
    assert job_conditions(obj) == [
        ("Created", "True", "TFJobCreated"),
        ("Suspended", "True", "TFJobSuspended"),
    ]
    assert "startTime" not in obj["status"]

    obj["spec"]["runPolicy"]["suspend"] = False
    obj = settle_job(obj, at(40), until=at(41))
    assert job_conditions(obj) == [
        ("Created", "True", "TFJobCreated"),
        ("Suspended", "False", "TFJobResumed"),
        ("Running", "True", "TFJobRunning"),
    ]
    assert obj["status"]["startTime"] == "2025-03-01T12:00:40Z"


def test_suspending_a_running_job_stops_its_pods() -> None:
    obj = settle_job(tfjob(), at(0), until=at(2))
    obj["spec"]["runPolicy"] = {"suspend": True}
    obj = settle_job(obj, at(2), until=at(30))
    assert job_conditions(obj) == [
        ("Created", "True", "TFJobCreated"),
        ("Running", "False", "TFJobSuspended"),
        ("Suspended", "True", "TFJobSuspended"),
    ]
    assert obj["status"]["replicaStatuses"] == {"Chief": {}, "Worker": {}}


def test_active_deadline_fails_the_job() -> None:
    obj = settle_job(
        tfjob(
            annotations={"dev.gitsync.io/run-duration": "60"},
            run_policy={"activeDeadlineSeconds": 5},
        ),
        at(0),
        until=at(30),
    )
    assert job_conditions(obj)[-1] == ("Failed", "True", "TFJobFailed")
    assert obj["status"]["completionTime"] == "2025-03-01T12:00:05Z"


@pytest.mark.parametrize(
    ("managed_by", "simulated"),
    [(None, True), ("kubeflow.org/training-operator", True), ("kueue.x-k8s.io/multikueue", False)],
)
def test_jobs_managed_by_another_controller_are_left_alone(
    managed_by: str | None, simulated: bool
) -> None:
    obj = tfjob(run_policy={"managedBy": managed_by} if managed_by else None)
    outcome = job_reconcile(obj, at(0))
    assert (outcome.status is not None) is simulated


@pytest.mark.parametrize("seconds", [0, 0.5, 1, 2, 4, 100])
def test_a_settled_job_is_never_rewritten(seconds: float) -> None:
    obj = settle_job(pytorchjob(), at(0), until=at(seconds))
    assert job_reconcile(obj, at(seconds)).status is None


def test_unknown_job_kind_is_left_alone() -> None:
    obj = tfjob()
    obj["kind"] = "MPIJob"
    outcome = job_reconcile(obj, at(0))
    assert outcome.status is None
    assert outcome.note


# --- the runner's shell, against a fake API server ------------------------------------------


def apply_merge_patch(target: Obj, patch: Mapping[str, Any]) -> Obj:
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = apply_merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class FakeKube:
    """Just enough of KubeClient: list, an endless watch fed by a queue, status patches."""

    def __init__(self, *names: str) -> None:
        self.version = 10
        self.objects: dict[str, Obj] = {}
        self.patches: list[tuple[str, Obj]] = []
        self.patch_errors: list[Exception] = []
        self.watch_errors: list[Exception] = []
        self.lists = 0
        self.drop_on_write: set[str] = set()
        self.events: queue.Queue[WatchEvent] = queue.Queue()
        self.lock = threading.Lock()
        for name in names:
            self.put(name, {"value": name})

    def put(self, name: str, spec: Obj, event: str | None = None) -> None:
        with self.lock:
            self.version += 1
            current = self.objects.get(name, {})
            obj = {
                "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(self.version)},
                "spec": spec,
                "status": current.get("status", {}),
            }
            self.objects[name] = obj
        if event:
            self.events.put(WatchEvent(event, copy.deepcopy(obj)))

    def list(self, api_version: str, kind: str, **_: Any) -> Obj:
        with self.lock:
            self.lists += 1
            return {
                "items": copy.deepcopy(list(self.objects.values())),
                "metadata": {"resourceVersion": str(self.version)},
            }

    def watch(self, api_version: str, kind: str, **_: Any) -> Iterator[WatchEvent]:
        if self.watch_errors:
            raise self.watch_errors.pop(0)
        for _attempt in range(20):  # then end, as a server's watch timeout does
            try:
                yield self.events.get(timeout=0.05)
            except queue.Empty:
                if self.watch_errors:
                    raise self.watch_errors.pop(0) from None

    def patch_status(self, api_version: str, kind: str, name: str, **kwargs: Any) -> Obj:
        if self.patch_errors:
            raise self.patch_errors.pop(0)
        with self.lock:
            obj = self.objects[name]
            status = apply_merge_patch(obj["status"], kwargs["status"])
            for field in self.drop_on_write:
                status.pop(field, None)  # as schema pruning would
            self.version += 1
            obj = {
                **obj,
                "status": status,
                "metadata": {**obj["metadata"], "resourceVersion": str(self.version)},
            }
            self.objects[name] = obj
            self.patches.append((name, kwargs["status"]))
        self.events.put(WatchEvent("MODIFIED", copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def forget_discovery(self) -> None:
        pass

    def writes(self, name: str) -> int:
        return sum(1 for patched, _ in self.patches if patched == name)


def echo(obj: Mapping[str, Any], now: datetime) -> Outcome:
    """Status mirrors the spec; an object called "boom" breaks the simulator."""
    spec = obj["spec"]
    if spec["value"] == "boom":
        raise ValueError("a malformed object")
    status = {**obj.get("status", {}), "seen": spec["value"], "extra": "x"}
    return Outcome(status=status, transitions=("seen",))


def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


@pytest.fixture
def fake() -> Iterator[tuple[FakeKube, Callable[..., Controller]]]:
    kube = FakeKube("a", "boom", "b")
    controllers: list[Controller] = []

    def start(reconcile: Reconciler = echo) -> Controller:
        controller = Controller(
            cast(KubeClient, kube), api_version="v1", kind="Fake", reconcile=reconcile
        )
        controller.start()
        controllers.append(controller)
        return controller

    yield kube, start
    for controller in controllers:
        controller.stop()
        controller.join(2)


def test_runner_writes_once_and_survives_a_bad_object(
    fake: tuple[FakeKube, Callable[..., Controller]],
) -> None:
    kube, start = fake
    start()
    until(lambda: kube.writes("a") == 1 and kube.writes("b") == 1)
    kube.put("a", {"value": "a2"}, event="MODIFIED")
    until(lambda: kube.objects["a"]["status"].get("seen") == "a2")
    time.sleep(0.3)  # our own MODIFIED events have been processed by now
    assert (kube.writes("a"), kube.writes("b"), kube.writes("boom")) == (2, 1, 0)


def test_runner_retries_transient_errors(
    fake: tuple[FakeKube, Callable[..., Controller]],
) -> None:
    kube, start = fake
    kube.patch_errors = [ApiUnavailableError("down"), ApiUnavailableError("still down")]
    start()
    until(lambda: {"a", "b"} <= {name for name, _ in kube.patches}, timeout=10)


def test_runner_does_not_retry_a_rejected_status_until_the_object_changes(
    fake: tuple[FakeKube, Callable[..., Controller]],
) -> None:
    kube, start = fake
    kube.patch_errors = [ApiInvalidError("status.seen: Invalid value")]
    start()
    until(lambda: len(kube.patches) == 1)  # the other object
    time.sleep(0.3)
    assert len(kube.patches) == 1
    rejected = "a" if kube.writes("b") else "b"
    kube.put(rejected, {"value": "changed"}, event="MODIFIED")
    until(lambda: kube.writes(rejected) == 1)


def test_runner_does_not_fight_a_server_that_stores_something_else(
    fake: tuple[FakeKube, Callable[..., Controller]],
) -> None:
    kube, start = fake
    kube.drop_on_write = {"extra"}
    start()
    until(lambda: kube.writes("a") == 1)
    time.sleep(0.3)
    assert kube.writes("a") == 1


def test_runner_lists_again_when_the_watch_expires(
    fake: tuple[FakeKube, Callable[..., Controller]],
) -> None:
    kube, start = fake
    start()
    until(lambda: kube.lists == 1 and len(kube.patches) == 2)
    kube.watch_errors = [WatchExpiredError("410: too old")]
    until(lambda: kube.lists == 2)


def test_runner_wakes_up_when_a_transition_is_due(
    fake: tuple[FakeKube, Callable[..., Controller]],
) -> None:
    kube, start = fake
    calls: dict[str, int] = {}

    def delayed(obj: Mapping[str, Any], now: datetime) -> Outcome:
        name = obj["metadata"]["name"]
        calls[name] = calls.get(name, 0) + 1
        if name != "a":
            return Outcome()
        if calls[name] == 1:
            return Outcome(wake_at=now + timedelta(seconds=0.3))
        return Outcome(status={"due": "yes"})

    start(delayed)
    until(lambda: kube.objects["a"]["status"] == {"due": "yes"})


# --- InferenceService: Standard (raw deployment) mode ---------------------------------

STANDARD = {"serving.kserve.io/deploymentMode": "Standard"}


def standard(**kwargs: Any) -> Obj:
    return isvc(annotations={**STANDARD, **kwargs.pop("annotations", {})}, **kwargs)


def with_canary(obj: Obj, *, storage: str, percent: int, name: str = "v2") -> Obj:
    updated = copy.deepcopy(obj)
    canary = {"model": {"name": "kserve-container", "storageUri": storage}, "name": name}
    updated["spec"]["canary"] = [{"predictor": canary, "trafficPercent": percent}]
    return updated


@pytest.mark.parametrize("mode", ["Standard", "RawDeployment"])
def test_standard_mode_has_deployments_not_revisions(mode: str) -> None:
    obj, outcome = step(isvc(annotations={"serving.kserve.io/deploymentMode": mode}), at(0))

    assert outcome.wake_at == at(2)
    assert obj["status"]["deploymentMode"] == "Standard"
    assert predictor(obj) == {}  # no revisions, no traffic, no url yet
    cond = conditions(obj)
    assert (cond["PredictorReady"]["status"], cond["PredictorReady"]["reason"]) == (
        "False",
        "MinimumReplicasUnavailable",
    )
    assert cond["IngressReady"]["reason"] == "Predictor ingress not created"
    assert cond["Ready"]["status"] == "False"
    assert "url" not in obj["status"]

    obj = settle(obj, at(2))
    cond = conditions(obj)
    assert (cond["PredictorReady"]["status"], cond["PredictorReady"]["reason"]) == (
        "True",
        "NewReplicaSetAvailable",
    )
    assert cond["Ready"]["status"] == "True"
    assert predictor(obj) == {"url": "http://m-predictor-ns.example.com"}
    assert obj["status"]["url"] == "http://m-ns.example.com"
    assert obj["status"]["address"] == {"url": "http://m-predictor.ns.svc.cluster.local"}
    assert obj["status"]["modelStatus"]["transitionStatus"] == "UpToDate"
    assert "canaryStatuses" not in obj["status"]
    assert "CanaryPredictorReady" not in cond


def test_the_recorded_mode_wins_over_the_annotation() -> None:
    obj = settle(standard(), at(0), until=at(2))
    obj["metadata"]["annotations"] = {}  # KServe's webhook would refuse this change
    obj, _ = step(obj, at(3))
    assert obj["status"]["deploymentMode"] == "Standard"
    assert "latestCreatedRevision" not in predictor(obj)


def test_a_canary_deployment_becomes_ready_and_reports_in_canary_statuses() -> None:
    obj = settle(standard(), at(0), until=at(2))
    obj, outcome = step(with_canary(obj, storage="s3://b/m/v2", percent=20), at(10))

    assert outcome.wake_at == at(12)
    assert obj["status"]["canaryStatuses"] == [
        {
            "name": "v2",
            "ready": False,
            "trafficPercent": 20,
            "modelStatus": {"transitionStatus": ""},
        }
    ]
    cond = conditions(obj)
    assert (cond["CanaryPredictorReady"]["status"], cond["CanaryPredictorReady"]["reason"]) == (
        "False",
        "CanariesNotReady",
    )
    assert cond["CanaryPredictorReady"]["severity"] == "Info"  # Ready does not wait for it
    assert cond["Ready"]["status"] == "True"

    obj = settle(obj, at(12))
    assert obj["status"]["canaryStatuses"][0]["ready"] is True
    assert conditions(obj)["CanaryPredictorReady"]["reason"] == "AllCanariesReady"

    # Promotion, KServe's way: the predictor takes the canary's name; the canary goes.
    promoted = copy.deepcopy(obj)
    promoted["spec"]["predictor"] = {
        **obj["spec"]["canary"][0]["predictor"],
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/m/v2"},
    }
    del promoted["spec"]["canary"]
    obj, _ = step(promoted, at(13))
    assert "canaryStatuses" not in obj["status"]
    assert "CanaryPredictorReady" not in conditions(obj)
    # m-v2-predictor existed as the canary: its pods were available all along.
    assert conditions(obj)["PredictorReady"]["status"] == "True"
    assert obj["status"]["address"] == {"url": "http://m-v2-predictor.ns.svc.cluster.local"}
    assert not any("m-predictor-" in key for key in obj["status"]["annotations"])


def test_a_failing_canary_never_becomes_ready_and_the_stable_keeps_serving() -> None:
    obj = settle(standard(), at(0), until=at(2))
    obj["metadata"]["annotations"]["dev.gitsync.io/fail"] = "true"
    obj = settle(with_canary(obj, storage="s3://b/m/v2", percent=20), at(10), until=at(30))
    assert obj["status"]["canaryStatuses"][0]["ready"] is False
    cond = conditions(obj)
    assert cond["CanaryPredictorReady"]["status"] == "False"
    # The knob is no part of a pod template: the stable Deployment is untouched.
    assert (cond["PredictorReady"]["status"], cond["PredictorReady"]["reason"]) == (
        "True",
        "NewReplicaSetAvailable",
    )
    assert cond["Ready"]["status"] == "True"


def test_a_first_deployment_that_fails_is_not_ready() -> None:
    obj = settle(standard(annotations={"dev.gitsync.io/fail": "true"}), at(0), until=at(5))
    cond = conditions(obj)
    assert (cond["PredictorReady"]["status"], cond["PredictorReady"]["reason"]) == (
        "False",
        "ProgressDeadlineExceeded",
    )
    assert obj["status"]["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"


def test_a_canary_at_zero_percent_without_min_replicas_has_no_pods() -> None:
    obj = settle(standard(), at(0), until=at(2))
    obj = settle(with_canary(obj, storage="s3://b/m/v2", percent=0), at(10), until=at(30))
    assert obj["status"]["canaryStatuses"][0]["ready"] is False


def test_standard_mode_explainer_becomes_ready() -> None:
    obj = standard()
    obj["spec"]["explainer"] = {"containers": [{"name": "kserve-container", "image": "e:1"}]}
    obj, _ = step(obj, at(0))
    cond = conditions(obj)
    assert cond["ExplainerReady"]["status"] == "False"
    assert cond["IngressReady"]["status"] == "False"
    obj = settle(obj, at(2))
    cond = conditions(obj)
    assert cond["ExplainerReady"]["status"] == "True"
    assert obj["status"]["components"]["explainer"] == {"url": "http://m-explainer-ns.example.com"}
    assert cond["IngressReady"]["status"] == "True"


def test_serverless_explainer_becomes_ready() -> None:
    obj = isvc()
    obj["spec"]["explainer"] = {"containers": [{"name": "kserve-container", "image": "e:1"}]}
    obj = settle(obj, at(0), until=at(2))
    assert conditions(obj)["ExplainerReady"]["status"] == "True"
    explainer = obj["status"]["components"]["explainer"]
    assert explainer["latestReadyRevision"] == "m-explainer-00001"
    assert conditions(obj)["Ready"]["status"] == "True"


def test_a_rolling_update_keeps_the_old_pods_serving() -> None:
    obj = settle(standard(), at(0), until=at(2))
    obj["metadata"]["annotations"]["dev.gitsync.io/latency-seconds"] = "0.2"  # in the template
    obj, _ = step(obj, at(10))
    cond = conditions(obj)
    assert (cond["PredictorReady"]["status"], cond["PredictorReady"]["reason"]) == (
        "True",
        "MinimumReplicasAvailable",
    )
    assert obj["status"]["observedGeneration"] == 2  # the Deployment's generation
    obj = settle(obj, at(12))
    assert conditions(obj)["PredictorReady"]["reason"] == "NewReplicaSetAvailable"


def test_a_settled_standard_isvc_is_never_rewritten() -> None:
    obj = settle(
        with_canary(settle(standard(), at(0), until=at(2)), storage="s", percent=20),
        at(3),
        until=at(6),
    )
    assert isvc_reconcile(obj, at(60)).status is None


# --- TrainJob (Kubeflow Trainer v2) -----------------------------------------------------

TORCH_RUNTIME: Obj = {
    "apiVersion": "trainer.kubeflow.org/v1alpha1",
    "kind": "ClusterTrainingRuntime",
    "metadata": {"name": "torch-distributed"},
    "spec": {"template": {"spec": {"replicatedJobs": [{"name": "node"}]}}},
}
DEEPSPEED_RUNTIME: Obj = {
    **TORCH_RUNTIME,
    "metadata": {"name": "deepspeed-distributed"},
    "spec": {"template": {"spec": {"replicatedJobs": [{"name": "node"}, {"name": "launcher"}]}}},
}


def find_runtime(kind: str, namespace: str, name: str) -> Obj | None:
    runtimes = {
        ("ClusterTrainingRuntime", "", r["metadata"]["name"]): r
        for r in (TORCH_RUNTIME, DEEPSPEED_RUNTIME)
    }
    return runtimes.get((kind, namespace, name))


def train_job_reconcile(obj: Obj, now: datetime) -> Outcome:
    return reconcile_train_job(obj, now, JOBS, find_runtime)


def train_job(
    runtime: str = "torch-distributed",
    *,
    annotations: Mapping[str, str] | None = None,
    **spec: Any,
) -> Obj:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {
            "name": "tj",
            "namespace": "ns",
            "creationTimestamp": format_time(T0),
            "annotations": dict(annotations or {}),
        },
        "spec": {"runtimeRef": {"name": runtime}, **spec},
    }


def settle_train_job(obj: Obj, until: float) -> Obj:
    return settle(obj, at(0), train_job_reconcile, until=at(until))


def counts(obj: Obj) -> dict[str, tuple[int, ...]]:
    keys = ("active", "ready", "succeeded", "failed", "suspended")
    return {j["name"]: tuple(j[k] for k in keys) for j in obj["status"]["jobsStatus"]}


@pytest.mark.parametrize(
    ("seconds", "expected_conditions", "jobs"),
    [
        (0, [], {"node": (0, 0, 0, 0, 0)}),
        (1, [], {"node": (1, 1, 0, 0, 0)}),
        (4, [("Complete", "True", "AllJobsCompleted")], {"node": (0, 0, 1, 0, 0)}),
    ],
)
def test_trainjob_lifecycle(
    seconds: float, expected_conditions: list[tuple[str, str, str]], jobs: Obj
) -> None:
    """No Created or Running condition in v2: the child jobs tell that it runs."""
    obj = settle_train_job(train_job(), seconds)
    assert [(c["type"], c["status"], c["reason"]) for c in obj["status"].get("conditions", [])] == (
        expected_conditions
    )
    assert counts(obj) == jobs
    assert "trainerStatus" not in obj["status"]  # a trainer that reports nothing


def test_trainjob_lists_every_replicated_job_of_its_runtime() -> None:
    obj = settle_train_job(train_job("deepspeed-distributed"), 1)
    assert counts(obj) == {"node": (1, 1, 0, 0, 0), "launcher": (1, 1, 0, 0, 0)}


def test_trainjob_progress_and_metrics_knobs() -> None:
    knobs = {"dev.gitsync.io/progress": "40", "dev.gitsync.io/metrics": "accuracy=0.93, loss=0.2"}
    running = settle_train_job(train_job(annotations=knobs), 2)
    assert running["status"]["trainerStatus"] == {
        "lastUpdatedTime": "2025-03-01T12:00:01Z",
        "progressPercentage": 40,
        "metrics": [{"name": "accuracy", "value": "0.93"}, {"name": "loss", "value": "0.2"}],
    }
    done = settle_train_job(train_job(annotations=knobs), 10)
    trainer = done["status"]["trainerStatus"]
    assert (trainer["progressPercentage"], trainer["estimatedRemainingSeconds"]) == (100, 0)
    assert trainer["metrics"][0] == {"name": "accuracy", "value": "0.93"}


def test_trainjob_fail_knob() -> None:
    knobs = {"dev.gitsync.io/fail": "true"}
    obj = settle_train_job(train_job(annotations=knobs), 10)
    (failed,) = obj["status"]["conditions"]
    assert (failed["type"], failed["reason"], failed["message"]) == (
        "Failed",
        "FailedJobs",
        "jobset failed due to one or more job failures",
    )
    assert counts(obj) == {"node": (0, 0, 0, 1, 0)}
    # Finished means finished.
    assert train_job_reconcile(obj, at(100)) == Outcome()


def test_suspended_trainjob_waits_and_resumes() -> None:
    suspended = settle_train_job(train_job(suspend=True), 30)
    assert [(c["type"], c["status"], c["reason"]) for c in suspended["status"]["conditions"]] == [
        ("Suspended", "True", "Suspended")
    ]
    assert counts(suspended) == {"node": (0, 0, 0, 0, 1)}
    suspended["spec"]["suspend"] = False
    resumed = settle(suspended, at(30), train_job_reconcile, until=at(31))
    by_type = {c["type"]: c for c in resumed["status"]["conditions"]}
    assert (by_type["Suspended"]["status"], by_type["Suspended"]["reason"]) == ("False", "Resumed")
    # The clock starts again at the resume: running one second later, not done at once.
    assert counts(resumed) == {"node": (1, 1, 0, 0, 0)}


def test_trainjob_active_deadline() -> None:
    obj = settle_train_job(
        train_job(activeDeadlineSeconds=2, annotations={"dev.gitsync.io/run-duration": "60"}), 5
    )
    (failed,) = obj["status"]["conditions"]
    assert (failed["type"], failed["reason"], failed["lastTransitionTime"]) == (
        "Failed",
        "DeadlineExceeded",
        "2025-03-01T12:00:02Z",
    )


def test_trainjob_without_its_runtime_waits_for_it() -> None:
    outcome = train_job_reconcile(train_job("no-such-runtime"), at(0))
    assert outcome.status is None
    assert outcome.note is not None and "no-such-runtime not found" in outcome.note
    assert outcome.wake_at is not None and outcome.wake_at > at(0)


def test_trainjob_managed_by_kueue_is_left_alone() -> None:
    outcome = train_job_reconcile(train_job(managedBy="kueue.x-k8s.io/multikueue"), at(0))
    assert (
        outcome.status is None
        and outcome.note == "managed by kueue.x-k8s.io/multikueue; left alone"
    )
