"""Where a rollout's traffic split goes in each KServe deployment mode: pure tables."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gitsync.rollout import predictor_hash
from gitsync.traffic import (
    CanaryView,
    DeploymentMode,
    canary_name,
    deployment_mode,
    observe,
    write_traffic,
)

Obj = dict[str, Any]
MODE = "serving.kserve.io/deploymentMode"
TARGET = "0123456789abcdef"
NAME = canary_name(TARGET, stable=None)


def model(version: int, **extra: Any) -> Obj:
    return {
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"s3://m/v{version}"},
        **extra,
    }


def isvc(predictor: Obj, *, mode: str | None = "Standard", **spec: Any) -> Obj:
    metadata: Obj = {"name": "fraud", "namespace": "ns"}
    if mode is not None:
        metadata["annotations"] = {MODE: mode}
    return {"metadata": metadata, "spec": {"predictor": predictor, **spec}}


def named(predictor: Obj, name: str) -> Obj:
    return {**predictor, "name": name}


def canary_entry(predictor: Obj, percent: int, name: str = NAME) -> Obj:
    container = {**predictor["model"], "name": "kserve-container"}
    return {"predictor": {**predictor, "model": container, "name": name}, "trafficPercent": percent}


@pytest.mark.parametrize(
    ("obj", "mode"),
    [
        ({}, DeploymentMode.SERVERLESS),
        ({"metadata": {"annotations": {MODE: "Serverless"}}}, DeploymentMode.SERVERLESS),
        ({"metadata": {"annotations": {MODE: "Knative"}}}, DeploymentMode.SERVERLESS),
        ({"metadata": {"annotations": {MODE: "Standard"}}}, DeploymentMode.STANDARD),
        ({"metadata": {"annotations": {MODE: "RawDeployment"}}}, DeploymentMode.STANDARD),
        # What the controller recorded wins, as in KServe's GetDeploymentMode.
        (
            {
                "metadata": {"annotations": {MODE: "Standard"}},
                "status": {"deploymentMode": "Serverless"},
            },
            DeploymentMode.SERVERLESS,
        ),
        ({"status": {"deploymentMode": "Standard"}}, DeploymentMode.STANDARD),
    ],
)
def test_deployment_mode(obj: Obj, mode: DeploymentMode) -> None:
    assert deployment_mode(obj) is mode


def test_canary_name_is_fixed_by_the_model_and_never_the_stables() -> None:
    assert NAME == "v01234567"
    assert canary_name(TARGET, stable="v01234567") == "v89abcdef"
    assert canary_name(TARGET, stable="v89abcdef") == NAME


@pytest.mark.parametrize(
    ("traffic", "predictor"),
    [
        (None, model(2)),
        (0, {**model(2), "canaryTrafficPercent": 0}),
        (20, {**model(2), "canaryTrafficPercent": 20}),
    ],
)
def test_serverless_writes_canary_traffic_percent(traffic: int | None, predictor: Obj) -> None:
    body = isvc({**model(2), "canaryTrafficPercent": 60}, mode=None)
    live = isvc(model(1), mode=None)
    assert write_traffic(body, traffic=traffic, target=TARGET, live=live)["spec"] == {
        "predictor": predictor
    }


LIVE_STABLE = isvc(model(1, minReplicas=2))
LIVE_SPLIT = isvc(model(1, minReplicas=2), canary=[canary_entry(model(2), 60)])


@pytest.mark.parametrize(
    ("case", "body", "traffic", "live", "spec"),
    [
        ("first deployment: as rendered", model(2), None, None, {"predictor": model(2)}),
        (
            "a step: stable stays, the new model is the named canary",
            model(2, minReplicas=2),
            20,
            LIVE_STABLE,
            {
                "predictor": model(1, minReplicas=2),
                "canary": [canary_entry(model(2, minReplicas=2), 20)],
            },
        ),
        (
            "autoscaling fields KServe rejects on a canary are left out",
            model(2, maxReplicas=5, scaleTarget=10, scaleMetric="cpu", autoScaling={"x": 1}),
            20,
            LIVE_STABLE,
            {"predictor": model(1, minReplicas=2), "canary": [canary_entry(model(2), 20)]},
        ),
        (
            "a canary minReplicas above the stable's is left to KServe",
            model(2, minReplicas=3),
            20,
            LIVE_STABLE,
            {"predictor": model(1, minReplicas=2), "canary": [canary_entry(model(2), 20)]},
        ),
        (
            "rolled back: the canary is dropped",
            model(2),
            0,
            LIVE_SPLIT,
            {"predictor": model(1, minReplicas=2)},
        ),
        (
            "promoted: the canary's name moves to spec.predictor",
            model(2),
            None,
            LIVE_SPLIT,
            {"predictor": named(model(2), NAME)},
        ),
        (
            "promoted on the same storageUri: the stable's name, a rolling update",
            model(1, env=[{"name": "X", "value": "1"}]),
            None,
            isvc(named(model(1), "v99999999"), canary=[canary_entry(model(1), 60)]),
            {"predictor": named(model(1, env=[{"name": "X", "value": "1"}]), "v99999999")},
        ),
        (
            "after promotion the served name is kept",
            model(2),
            None,
            isvc(named(model(2), NAME)),
            {"predictor": named(model(2), NAME)},
        ),
        (
            "spec reverted to the stable model: canary of another model dropped",
            model(1),
            None,
            isvc(model(1), canary=[canary_entry(model(2), 20, name="vaaaaaaaa")]),
            {"predictor": model(1)},
        ),
    ],
)
def test_standard_writes_spec_canary(
    case: str, body: Obj, traffic: int | None, live: Obj | None, spec: Obj
) -> None:
    rendered = isvc(body)
    before = copy.deepcopy(rendered)
    written = write_traffic(rendered, traffic=traffic, target=TARGET, live=live)
    assert written["spec"] == spec, case
    assert rendered == before  # pure: the rendered body is not touched
    assert written["metadata"] == rendered["metadata"]


def test_the_models_hash_ignores_the_name_standard_mode_gives_it() -> None:
    assert predictor_hash(isvc(named(model(2), NAME))) == predictor_hash(isvc(model(2)))
    assert predictor_hash(isvc(model(2))) != predictor_hash(isvc(model(1)))


def standard_live(canaries: list[Obj], condition: str | None) -> Obj:
    live = isvc(model(1))
    status: Obj = {"deploymentMode": "Standard", "canaryStatuses": canaries, "conditions": []}
    if condition is not None:
        status["conditions"].append({"type": "CanaryPredictorReady", "status": condition})
    live["status"] = status
    return live


STABLE = "fraud-predictor"
CANARY = f"fraud-{NAME}-predictor"


@pytest.mark.parametrize(
    ("live", "view"),
    [
        (standard_live([], None), CanaryView(STABLE, None, False, "deployment")),
        (
            standard_live([{"name": NAME, "ready": False, "trafficPercent": 20}], "False"),
            CanaryView(STABLE, CANARY, False, "deployment"),
        ),
        (  # canaryStatuses alone is not enough: CanaryPredictorReady must agree
            standard_live([{"name": NAME, "ready": True, "trafficPercent": 20}], None),
            CanaryView(STABLE, CANARY, False, "deployment"),
        ),
        (
            standard_live([{"name": NAME, "ready": True, "trafficPercent": 20}], "True"),
            CanaryView(STABLE, CANARY, True, "deployment"),
        ),
        (  # another model's canary is not this one
            standard_live([{"name": "vffffffff", "ready": True, "trafficPercent": 20}], "True"),
            CanaryView(STABLE, None, False, "deployment"),
        ),
    ],
)
def test_observe_standard(live: Obj, view: CanaryView) -> None:
    assert observe(live, target=TARGET) == view


@pytest.mark.parametrize(
    ("components", "ready"),
    [
        ({"latestCreatedRevision": "m-2", "latestReadyRevision": "m-1"}, False),
        ({"latestCreatedRevision": "m-2", "latestReadyRevision": "m-2"}, True),
        # Still the revision that served before the rollout: not the canary.
        ({"latestCreatedRevision": "m-1", "latestReadyRevision": "m-1"}, False),
    ],
)
def test_observe_serverless(components: Obj, ready: bool) -> None:
    live = isvc(model(2), mode=None)
    live["status"] = {"components": {"predictor": {**components, "latestRolledoutRevision": "m-1"}}}
    view = observe(live, target=TARGET, stable_revision="m-1")
    assert view == CanaryView("m-1", components["latestCreatedRevision"], ready, "revision")
