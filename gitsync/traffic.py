"""Write a rollout's traffic split into an InferenceService, and read back how the
canary is doing, in each of KServe's deployment modes.

:mod:`gitsync.rollout` decides "N% of requests to the new model" without knowing how
KServe splits traffic; the two modes do it in different places, and this module is
the only one that knows where (read from KServe v0.20.0, commit 1fb7810, and its CRD):

* The mode (``pkg/controller/v1beta1/inferenceservice/utils/utils.go``
  ``GetDeploymentMode``): ``status.deploymentMode`` once the controller recorded it,
  else the ``serving.kserve.io/deploymentMode`` annotation (``Standard``, or its
  deprecated spelling ``RawDeployment``; ``Knative``, or the deprecated
  ``Serverless``), else the cluster's default, ``Serverless`` in the shipped
  ``inferenceservice-config``. The mode cannot change once recorded (the webhook's
  ``validateDeploymentMode``), and ``validateCanarySpecs`` accepts ``spec.canary``
  only with the annotation spelled exactly ``Standard``.
* Serverless: ``spec.predictor`` is always the newest model and
  ``canaryTrafficPercent`` the share of its Knative revision; the rest goes to the
  revision last rolled out at 100% (``status.components.predictor``:
  ``latestCreatedRevision``, ``latestReadyRevision``, ``latestRolledoutRevision``).
* Standard (``pkg/apis/serving/v1beta1/inference_service.go`` ``CanarySpec``,
  ``components/predictor.go`` ``reconcileCanaryDeployments``): ``spec.predictor``
  stays the stable model; each ``spec.canary[]`` item is a ``predictor`` with a
  required ``name`` and a ``trafficPercent`` (0-100, summed at most 100). KServe
  merges the canary predictor over the stable one, runs it as the Deployment and
  Service ``{isvc}-{name}-predictor`` (the stable one is ``{isvc}-predictor``, or
  ``{isvc}-{predictor.name}-predictor``), sizes it at
  ceil(stable minReplicas x trafficPercent / 100) unless it sets ``minReplicas`` (at
  most the stable's), and rejects ``maxReplicas``, ``scaleTarget``, ``scaleMetric``
  and ``autoScaling`` on it. The CRD requires a ``name`` on a canary's model container
  (``kserve-container``, as KServe names it anyway). It reports ``status.canaryStatuses[]``
  (``name``, ``ready``: the Deployment has an available replica, ``trafficPercent``)
  and the condition ``CanaryPredictorReady`` (True ``AllCanariesReady`` / False
  ``CanariesNotReady``, outside the set ``Ready`` depends on). A Deployment whose
  name is no longer named by the spec is deleted. Promotion without a restart is
  documented as: give ``spec.predictor`` the canary's name and drop the canary; the
  webhook (``validatePredictorNameChange``) refuses a new predictor name unless the
  storage URI changes too, so a new model on the same URI is promoted under the
  stable's name instead (a rolling update of the stable Deployment).

``ModelMesh`` has no canary in KServe and is not handled here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEPLOYMENT_MODE_ANNOTATION",
    "CanaryView",
    "DeploymentMode",
    "canary_name",
    "deployment_mode",
    "observe",
    "predictor_workload",
    "write_traffic",
]

DEPLOYMENT_MODE_ANNOTATION: Final = "serving.kserve.io/deploymentMode"
CANARY_READY_CONDITION: Final = "CanaryPredictorReady"

#: The predictor fields that embed the model's container. The v0.20 CRD requires a
#: ``name`` on it inside ``spec.canary[].predictor`` (not inside ``spec.predictor``);
#: KServe names that container ``kserve-container`` in either case.
_CONTAINER_FIELDS: Final = frozenset(
    {
        "model",
        "sklearn",
        "xgboost",
        "tensorflow",
        "pytorch",
        "triton",
        "onnx",
        "huggingface",
        "pmml",
        "lightgbm",
        "paddle",
    }
)
_MODEL_CONTAINER: Final = "kserve-container"
#: What ``validateCanarySpecs`` rejects on a canary predictor: it runs at fixed replicas.
_CANARY_FORBIDDEN: Final = frozenset({"maxReplicas", "scaleTarget", "scaleMetric", "autoScaling"})
_STANDARD_SPELLINGS: Final = frozenset({"Standard", "RawDeployment"})


class DeploymentMode(enum.Enum):
    SERVERLESS = "Serverless"
    STANDARD = "Standard"


def deployment_mode(obj: Mapping[str, Any]) -> DeploymentMode:
    """The mode KServe runs ``obj`` in: its recorded status first, then the annotation."""
    recorded = (obj.get("status") or {}).get("deploymentMode")
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    mode = recorded or annotations.get(DEPLOYMENT_MODE_ANNOTATION)
    return DeploymentMode.STANDARD if mode in _STANDARD_SPELLINGS else DeploymentMode.SERVERLESS


def _spec(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("spec") or {}


def _predictor(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _spec(obj).get("predictor") or {}


def predictor_workload(isvc: str, predictor_name: str | None) -> str:
    """KServe's ``PredictorServiceName``: the Deployment and Service of a predictor."""
    return f"{isvc}-{predictor_name}-predictor" if predictor_name else f"{isvc}-predictor"


def canary_name(target: str, *, stable: str | None) -> str:
    """The ``predictor.name`` of the canary for the model with hash ``target``: fixed by
    the model, so every cycle (and a restarted daemon) names the same Deployment, and
    never the stable's name, which KServe would take for the stable itself."""
    name = f"v{target[:8]}"
    return f"v{target[8:16]}" if name == stable else name


def _storage_uri(predictor: Mapping[str, Any]) -> object:
    """KServe's ``getPredictorStorageURI``: the model's, else the framework's."""
    model = predictor.get("model")
    if isinstance(model, Mapping) and "storageUri" in model:
        return model["storageUri"]
    for value in predictor.values():
        if isinstance(value, Mapping) and "storageUri" in value:
            return value["storageUri"]
    return None


@dataclass(frozen=True, slots=True)
class CanaryView:
    """What the controller reports of a canary: ``stable`` and ``canary`` are the
    names metrics know the two models by (Knative revisions, or Deployments)."""

    stable: str | None
    canary: str | None
    ready: bool
    #: What ``canary`` names, for people: "revision" or "deployment".
    noun: str


def observe(
    live: Mapping[str, Any], *, target: str, stable_revision: str | None = None
) -> CanaryView:
    """Where the new model (hash ``target``) stands on the live object.

    ``stable_revision`` is the revision that served before the rollout began: in
    Serverless mode a latest revision that is still that one is not the canary.
    """
    status = live.get("status") or {}
    if deployment_mode(live) is DeploymentMode.SERVERLESS:
        predictor = (status.get("components") or {}).get("predictor") or {}
        created = predictor.get("latestCreatedRevision")
        ready = bool(created) and created == predictor.get("latestReadyRevision")
        return CanaryView(
            stable=predictor.get("latestRolledoutRevision"),
            canary=created,
            ready=ready and created != stable_revision,
            noun="revision",
        )
    isvc = str((live.get("metadata") or {}).get("name"))
    stable_name = _predictor(live).get("name")
    name = canary_name(target, stable=stable_name)
    reported = next((c for c in status.get("canaryStatuses") or [] if c.get("name") == name), None)
    condition = next(
        (c for c in status.get("conditions") or [] if c.get("type") == CANARY_READY_CONDITION),
        None,
    )
    ready = (
        reported is not None
        and reported.get("ready") is True
        and condition is not None
        and condition.get("status") == "True"
    )
    return CanaryView(
        stable=predictor_workload(isvc, stable_name),
        canary=predictor_workload(isvc, name) if reported is not None else None,
        ready=ready,
        noun="deployment",
    )


def write_traffic(
    body: Mapping[str, Any],
    *,
    traffic: int | None,
    target: str,
    live: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``body`` (as rendered: ``spec.predictor`` is the new model) sending ``traffic``
    percent of requests to the new model: None for all of it, 0 for none."""
    if deployment_mode(body) is DeploymentMode.SERVERLESS:
        spec = _serverless(body["spec"], traffic=traffic)
    else:
        spec = _standard(body["spec"], traffic=traffic, target=target, live=live)
    return {**body, "spec": spec}


def _serverless(spec: Mapping[str, Any], *, traffic: int | None) -> dict[str, Any]:
    predictor = {k: v for k, v in spec["predictor"].items() if k != "canaryTrafficPercent"}
    if traffic is not None:
        predictor["canaryTrafficPercent"] = traffic
    return {**spec, "predictor": predictor}


def _standard(
    spec: Mapping[str, Any], *, traffic: int | None, target: str, live: Mapping[str, Any] | None
) -> dict[str, Any]:
    new = {k: v for k, v in spec["predictor"].items() if k != "name"}
    rest = {k: v for k, v in spec.items() if k not in {"predictor", "canary"}}
    if live is None:
        return {**rest, "predictor": new}  # first deployment: nothing to split with
    stable = dict(_predictor(live))
    stable_name = stable.get("name")
    name = canary_name(target, stable=stable_name)
    if traffic is None:
        deployed = any(
            (c.get("predictor") or {}).get("name") == name for c in _spec(live).get("canary") or []
        )
        if deployed and _storage_uri(new) != _storage_uri(stable):
            new["name"] = name  # the canary's Deployment becomes the stable one
        elif stable_name:
            new["name"] = stable_name
        return {**rest, "predictor": new}
    if traffic == 0:
        return {**rest, "predictor": stable}
    canary = {k: v for k, v in new.items() if k not in _CANARY_FORBIDDEN}
    stable_min = stable.get("minReplicas", 1)
    if isinstance(canary.get("minReplicas"), int) and canary["minReplicas"] > stable_min:
        del canary["minReplicas"]  # KServe sizes it by its share of traffic instead
    for field in _CONTAINER_FIELDS & canary.keys():
        if isinstance(canary[field], Mapping) and "name" not in canary[field]:
            canary[field] = {**canary[field], "name": _MODEL_CONTAINER}
    canary["name"] = name
    split = [{"predictor": canary, "trafficPercent": traffic}]
    return {**rest, "predictor": stable, "canary": split}
