"""Simulate KServe's InferenceService controller in Standard (raw deployment) mode.

In Standard mode KServe runs each component as a plain Deployment and Service, not a
Knative Service: there are no revisions, no ``latestReadyRevision`` and no
``traffic`` in the status, and a canary is a second predictor Deployment named by
``spec.canary[]``. gitsync's rollouts and health read that status, so the dev
controllers must write it the way KServe v0.20.0 does; this is the pure function that
does (the Serverless one is :mod:`.inferenceservice`, which hands Standard objects
here). What is simulated, and where it was read (KServe v0.20.0, commit 1fb7810):

* Workloads (``components/predictor.go``, ``constants.PredictorServiceName``): one
  Deployment per component, ``{isvc}-predictor`` (``{isvc}-{predictor.name}-predictor``
  when the predictor is named), ``{isvc}-transformer``, ``{isvc}-explainer``, and one
  per canary, ``{isvc}-{canary.predictor.name}-predictor``, its pod spec the canary
  predictor merged over the stable one (``buildCanaryPredictor``). A pod template
  change is a rolling update: the old pods serve until the new ones are available
  (after ``dev.gitsync.io/ready-delay``), or never are (``dev.gitsync.io/fail``).
  Predictor Deployments the spec no longer names are deleted (the orphan cleanup of
  ``reconcileCanaryDeployments``) and forgotten.
* Component conditions (``PropagateRawStatus`` in ``inference_service_status.go``):
  ``PredictorReady`` / ``TransformerReady`` / ``ExplainerReady`` follow the
  Deployment's ``Available`` and ``Progressing`` conditions with the Deployment
  controller's reasons (``MinimumReplicasUnavailable`` until the first pods are
  available, ``NewReplicaSetAvailable`` once the current template is,
  ``MinimumReplicasAvailable`` while a rolling update is under way, and
  ``ProgressDeadlineExceeded`` for pods that never become ready: the Deployment's
  600 s progress deadline is collapsed into the ready delay). The component's ``url``
  is set once it is ready; ``observedGeneration`` is the Deployment's, as KServe
  copies it (the last component's wins).
* Canaries: ``status.canaryStatuses[]`` (``name``, ``ready``: the Deployment has an
  available replica, ``trafficPercent`` as the spec asks; ``modelStatus`` is the Go
  zero value KServe leaves there; a canary sized at zero replicas, a dark launch
  without ``minReplicas``, never becomes ready) and ``CanaryPredictorReady`` (``AllCanariesReady``
  / ``CanariesNotReady``), which ``Ready`` does not depend on; both are dropped with
  the last canary. v0.20 routes a canary's share whether or not it is ready (the
  readiness gate came after v0.20, kserve/kserve#5984).
* Ingress (``reconcilers/ingress/kube_ingress_reconciler.go``): ``IngressReady`` False
  ("Predictor ingress not created", and so on for the transformer and explainer)
  until those components are ready, then True, with ``url``
  ``http://{isvc}-{namespace}.{domain}`` (the default ``domainTemplate``) and an
  ``address`` on the entry point's cluster-local Service.
* ``status.deploymentMode`` is ``Standard``; once recorded it decides the mode, as in
  ``GetDeploymentMode``.

The simulator's memory (each Deployment's template, since when, whether it failed,
whether any of its pods were ever available) lives in ``status.annotations`` like
the Serverless one's.
"""

from __future__ import annotations

import copy
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from gitsync.dev.controllers.conditions import READY, TRUE, Conditions, model_status
from gitsync.dev.controllers.metrics import remember_profiles
from gitsync.dev.controllers.runner import Outcome, format_precise, format_time, parse_time
from gitsync.traffic import predictor_workload

__all__ = ["MEMORY_PREFIX", "StandardKnobs", "reconcile_standard"]

MEMORY_PREFIX: Final = "dev.gitsync.io/deploy-"
CANARY_READY: Final = "CanaryPredictorReady"
_DEPENDENTS: Final = ("PredictorReady", "IngressReady")
#: In the order KServe reconciles them, with their ready condition.
_COMPONENTS: Final = (
    ("predictor", "PredictorReady"),
    ("transformer", "TransformerReady"),
    ("explainer", "ExplainerReady"),
)
_MEMORY_FIELDS: Final = ("template", "since", "failed", "ready", "generation")


@dataclass(frozen=True, slots=True)
class StandardKnobs:
    """What the caller read from the object's annotations and the settings."""

    delay: float
    fail: bool
    fail_message: str
    domain: str


class _PodState(enum.Enum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


@dataclass(slots=True)
class _Deployment:
    """One Deployment as the simulator remembers it: its current template, when it was
    applied, whether it failed, the last template whose pods became available, and
    its generation."""

    name: str
    template: str = ""
    since: datetime | None = None
    failed: bool = False
    ready: str = ""
    generation: int = 0

    def _keys(self) -> tuple[str, ...]:
        return tuple(f"{MEMORY_PREFIX}{self.name}-{field}" for field in _MEMORY_FIELDS)

    @classmethod
    def load(cls, memory: Mapping[str, Any], name: str) -> _Deployment:
        blank = cls(name)
        template, since, failed, ready, generation = (memory.get(k) for k in blank._keys())
        try:
            number = max(0, int(str(generation)))
        except ValueError:
            number = 0
        return cls(
            name=name,
            template=str(template or ""),
            since=parse_time(since),
            failed=failed == "true",
            ready=str(ready or ""),
            generation=number,
        )

    def dump(self) -> dict[str, str]:
        values = (
            self.template,
            format_precise(self.since) if self.since else "",
            "true" if self.failed else "",
            self.ready,
            str(self.generation) if self.generation else "",
        )
        return {k: v for k, v in zip(self._keys(), values, strict=True) if v}

    @property
    def available(self) -> bool:
        """Some pods of it serve: the current template's, or the previous one's."""
        return bool(self.ready)

    def advance(
        self, template: str, now: datetime, knobs: StandardKnobs
    ) -> tuple[_PodState, datetime | None]:
        """Roll to ``template`` and move its pods on to ``now``."""
        if template != self.template:
            self.template, self.since, self.failed = template, now, False
            self.generation += 1
        if self.ready == template:
            return _PodState.READY, None
        if self.failed and not knobs.fail:
            self.failed, self.since = False, now  # the knob was removed: another go
        if self.failed:
            return _PodState.FAILED, None
        due = (self.since or now) + timedelta(seconds=knobs.delay)
        if now < due:
            return _PodState.PENDING, due
        if knobs.fail:
            self.failed = True
            return _PodState.FAILED, None
        self.ready = template
        return _PodState.READY, None


def _merged(stable: Mapping[str, Any], canary: Mapping[str, Any]) -> dict[str, Any]:
    """``buildCanaryPredictor``: the canary predictor's fields over the stable one's."""
    merged = copy.deepcopy(dict(stable))
    for key, value in canary.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        elif value not in (None, "", [], {}):
            merged[key] = copy.deepcopy(value)
    return merged


def _canary_replicas(stable: Mapping[str, Any], canary: Mapping[str, Any], percent: int) -> int:
    """``canaryReplicaCount``: its own minReplicas, else its share of the stable's."""
    if isinstance(canary.get("minReplicas"), int):
        return int(canary["minReplicas"])
    base = stable.get("minReplicas")
    return math.ceil((base if isinstance(base, int) else 1) * percent / 100)


@dataclass(slots=True)
class _Round:
    """What one reconcile gathers as it goes through the workloads."""

    name: str
    namespace: str
    now: datetime
    knobs: StandardKnobs
    template_of: Callable[[Mapping[str, Any]], str]
    old_memory: Mapping[str, Any]
    memory: dict[str, Any]
    conditions: Conditions
    deployments: list[str]
    wakes: list[datetime]

    def roll(
        self, workload: str, template_spec: Mapping[str, Any]
    ) -> tuple[_Deployment, _PodState]:
        deployment = _Deployment.load(self.old_memory, workload)
        state, wake = deployment.advance(self.template_of(template_spec), self.now, self.knobs)
        self.memory.update(deployment.dump())
        self.deployments.append(workload)
        if wake is not None:
            self.wakes.append(wake)
        return deployment, state


def reconcile_standard(
    obj: Mapping[str, Any],
    now: datetime,
    *,
    knobs: StandardKnobs,
    template_of: Callable[[Mapping[str, Any]], str],
) -> Outcome:
    """The InferenceService's next status in Standard mode (None when unchanged).

    ``template_of`` hashes a component's pod template as KServe builds it (its spec
    plus the InferenceService's labels and annotations it copies onto the pods).
    """
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    old: dict[str, Any] = dict(obj.get("status") or {})
    old_memory = old.get("annotations") or {}
    round_ = _Round(
        name=str(metadata.get("name")),
        namespace=str(metadata.get("namespace")),
        now=now,
        knobs=knobs,
        template_of=template_of,
        old_memory=old_memory,
        memory={k: v for k, v in old_memory.items() if not str(k).startswith("dev.gitsync.io/")},
        conditions=Conditions(
            old.get("conditions") or [], dependents=_DEPENDENTS, now=format_time(now)
        ),
        deployments=[],
        wakes=[],
    )
    status = copy.deepcopy(old)
    present = [(c, cond) for c, cond in _COMPONENTS if isinstance(spec.get(c), dict)]
    status["components"], predictor_state = _components(round_, spec, present, status)
    _canaries(round_, spec, status)
    for workload in round_.deployments:
        round_.memory.update(
            remember_profiles(
                old_memory,
                metadata.get("annotations") or {},
                latest=workload,
                serving=round_.deployments,
            )
        )
    conditions = round_.conditions
    _reconcile_ingress(conditions, status, present, round_, stable=spec["predictor"].get("name"))
    status["modelStatus"] = _model_status(
        old.get("modelStatus") or {},
        predictor_state,
        ready=conditions.status(READY) == TRUE,
        fail_message=knobs.fail_message,
    )
    status["conditions"] = conditions.as_list()
    status["deploymentMode"] = "Standard"
    status["annotations"] = round_.memory
    wake_at = min(round_.wakes) if round_.wakes else None
    if status == old:
        return Outcome(wake_at=wake_at)
    return Outcome(status=status, wake_at=wake_at, transitions=_describe(old, status))


def _components(
    round_: _Round,
    spec: Mapping[str, Any],
    present: list[tuple[str, str]],
    status: dict[str, Any],
) -> tuple[dict[str, Any], _PodState]:
    """Each component's Deployment rolled on, its condition and its status entry."""
    components: dict[str, Any] = {}
    predictor_state = _PodState.PENDING
    for component, condition in present:
        workload = (
            predictor_workload(round_.name, spec["predictor"].get("name"))
            if component == "predictor"
            else f"{round_.name}-{component}"
        )
        deployment, state = round_.roll(workload, spec[component])
        if component == "predictor":
            predictor_state = state
        _propagate_raw(round_.conditions, condition, deployment, state)
        entry: dict[str, Any] = {}
        if round_.conditions.status(condition) == TRUE:
            entry["url"] = f"http://{workload}-{round_.namespace}.{round_.knobs.domain}"
        components[component] = entry
        status["observedGeneration"] = deployment.generation
    return components, predictor_state


def _canaries(round_: _Round, spec: Mapping[str, Any], status: dict[str, Any]) -> None:
    """``reconcileCanaryDeployments``: a Deployment per canary, and their status."""
    stable = spec["predictor"]
    canaries: list[dict[str, Any]] = []
    for item in spec.get("canary") or []:
        predictor = (item or {}).get("predictor") or {}
        if not predictor.get("name"):
            continue  # KServe's webhook refuses a canary without a name
        workload = predictor_workload(round_.name, predictor["name"])
        percent = int(item.get("trafficPercent") or 0)
        if _canary_replicas(stable, predictor, percent) > 0:
            deployment, _ = round_.roll(workload, _merged(stable, predictor))
        else:
            deployment = _Deployment.load(round_.old_memory, workload)
            round_.memory.update(deployment.dump())
            round_.deployments.append(workload)
        canaries.append(
            {
                "name": predictor["name"],
                "ready": deployment.available,
                "trafficPercent": percent,
                "modelStatus": {"transitionStatus": ""},
            }
        )
    conditions = round_.conditions
    if not canaries:
        status.pop("canaryStatuses", None)
        conditions.clear(CANARY_READY)
        return
    status["canaryStatuses"] = canaries
    if all(c["ready"] for c in canaries):
        conditions.mark_true(CANARY_READY, "AllCanariesReady")
    else:
        conditions.mark_false(CANARY_READY, "CanariesNotReady", "")


def _propagate_raw(
    conditions: Conditions, kind: str, deployment: _Deployment, state: _PodState
) -> None:
    """``PropagateRawStatus``: a component's condition from its Deployment's."""
    replica_set = f'ReplicaSet "{deployment.name}-{deployment.template[:10]}"'
    if state is _PodState.READY:
        conditions.mark_true(
            kind, "NewReplicaSetAvailable", f"{replica_set} has successfully progressed."
        )
    elif deployment.available:
        conditions.mark_true(
            kind, "MinimumReplicasAvailable", "Deployment has minimum availability."
        )
    elif state is _PodState.FAILED:
        conditions.mark_false(
            kind, "ProgressDeadlineExceeded", f"{replica_set} has timed out progressing."
        )
    else:
        conditions.mark_false(
            kind, "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
        )


def _reconcile_ingress(
    conditions: Conditions,
    status: dict[str, Any],
    present: list[tuple[str, str]],
    round_: _Round,
    *,
    stable: str | None,
) -> None:
    """KServe's raw ingress reconciler: routes once every component is ready."""
    name, namespace = round_.name, round_.namespace
    for component, condition in present:
        if conditions.status(condition) != TRUE:
            reason = f"{component.capitalize()} ingress not created"
            conditions.mark_false("IngressReady", reason, "")
            return
    names = {component for component, _ in present}
    entry = f"{name}-transformer" if "transformer" in names else predictor_workload(name, stable)
    status["url"] = f"http://{name}-{namespace}.{round_.knobs.domain}"
    status["address"] = {"url": f"http://{entry}.{namespace}.svc.cluster.local"}
    conditions.mark_true("IngressReady")


def _model_status(
    previous: Mapping[str, Any], state: _PodState, *, ready: bool, fail_message: str
) -> dict[str, Any]:
    """``PropagateModelStatus`` over the stable predictor's imagined pods."""
    return model_status(
        previous,
        loaded=ready and state is _PodState.READY,
        failed=state is _PodState.FAILED,
        fail_message=fail_message,
    )


def _describe(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    """One log line per visible transition."""
    lines: list[str] = []
    before = {c.get("name"): c for c in old.get("canaryStatuses") or []}
    for canary in new.get("canaryStatuses") or []:
        if before.get(canary["name"]) != canary:
            state = "ready" if canary["ready"] else "not ready"
            lines.append(f"canary {canary['name']} {state} at {canary['trafficPercent']}%")
    old_conditions = {c.get("type"): c for c in old.get("conditions") or []}
    for condition in new.get("conditions") or []:
        previous = old_conditions.get(condition["type"]) or {}
        if (previous.get("status"), previous.get("reason")) != (
            condition["status"],
            condition.get("reason"),
        ):
            reason = f" ({condition['reason']})" if condition.get("reason") else ""
            lines.append(f"{condition['type']}={condition['status']}{reason}")
    return tuple(lines)
