"""Simulate KServe's InferenceService controller for dev and tests.

KServe cannot run in the local control plane (its predictors are Knative Services
that need pods), yet gitsync must be developed and tested against InferenceServices
whose status moves the way KServe v0.20 moves it. This module is that stand-in: a
pure function from an InferenceService (and the time) to its next status. Nothing
here runs in production and nothing but ``status`` is ever written.

The mode is KServe's (``status.deploymentMode`` once recorded, else the
``serving.kserve.io/deploymentMode`` annotation, else ``Serverless``, the shipped
default); Standard mode is simulated in :mod:`.standard`, ModelMesh not at all.
What is simulated in Serverless mode, following
``pkg/apis/serving/v1beta1/inference_service_status.go`` and the knative reconciler
of KServe, and Knative Serving's own lifecycle:

* Every change of a component's revision template (its spec without
  ``canaryTrafficPercent``, plus the InferenceService's labels and annotations, which
  KServe copies into the template) stamps a new Knative revision
  ``<name>-<component>-0000N``. It becomes ready after a delay, or fails.
* Traffic is what KServe asks Knative for: 100% to the latest ready revision, or,
  with ``canaryTrafficPercent``, a split with the last revision rolled out at 100%
  (tag ``prev``); ``latestRolledoutRevision`` / ``previousRolledoutRevision`` are
  tracked exactly as ``PropagateStatus`` does, rollback included. The intermediate
  states KServe passes through within a few reconciles are collapsed into one step.
* Conditions follow knative's living condition set (``Ready`` depends on
  ``PredictorReady`` and ``IngressReady``), with KServe's reasons and severities.
* ``observedGeneration`` is the Knative Service's generation, as in KServe
  (kserve/kserve#6081), not the InferenceService's own.

Knobs, as annotations on the InferenceService: ``dev.gitsync.io/ready-delay``
(seconds), ``dev.gitsync.io/fail: "true"`` (revisions not yet ready fail) and
``dev.gitsync.io/fail-message``; the synthetic request metrics' knobs are described
in :mod:`.metrics` (those a revision is created with are part of its template). What
the simulator must remember across its own restarts lives in ``status.annotations``
(the CRD prunes other unknown fields).
"""

from __future__ import annotations

import copy
import enum
import hashlib
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from gitsync.dev.controllers.conditions import FALSE as _FALSE
from gitsync.dev.controllers.conditions import READY as _READY
from gitsync.dev.controllers.conditions import TRUE as _TRUE
from gitsync.dev.controllers.conditions import UNKNOWN as _UNKNOWN
from gitsync.dev.controllers.conditions import Conditions as _Conditions
from gitsync.dev.controllers.conditions import model_status
from gitsync.dev.controllers.metrics import REVISION_KNOBS, remember_profiles
from gitsync.dev.controllers.runner import (
    Outcome,
    format_precise,
    format_time,
    parse_time,
    seconds_annotation,
)
from gitsync.dev.controllers.standard import StandardKnobs, reconcile_standard
from gitsync.rollout import KSERVE_DISALLOWED_ANNOTATIONS

__all__ = [
    "API_VERSION",
    "FAIL_ANNOTATION",
    "FAIL_MESSAGE_ANNOTATION",
    "KIND",
    "MEMORY_PREFIX",
    "READY_DELAY_ANNOTATION",
    "IsvcSettings",
    "reconcile_inference_service",
]

API_VERSION: Final = "serving.kserve.io/v1beta1"
KIND: Final = "InferenceService"

READY_DELAY_ANNOTATION: Final = "dev.gitsync.io/ready-delay"
FAIL_ANNOTATION: Final = "dev.gitsync.io/fail"
FAIL_MESSAGE_ANNOTATION: Final = "dev.gitsync.io/fail-message"
MEMORY_PREFIX: Final = "dev.gitsync.io/"
_KNOB_PREFIX: Final = "dev.gitsync.io/"
_DEFAULT_FAIL_MESSAGE: Final = (
    "Container failed with: simulated failure (dev.gitsync.io/fail annotation)"
)

_DEPLOYMENT_MODE_ANNOTATION: Final = "serving.kserve.io/deploymentMode"
# v0.20's spellings of each mode, the deprecated one first (constants.go).
_SERVERLESS: Final = frozenset({"Serverless", "Knative"})
_STANDARD: Final = frozenset({"RawDeployment", "Standard"})
_TAG_ROUTING_ANNOTATION: Final = "serving.kserve.io/enable-tag-routing"
# KServe's ServiceAnnotationDisallowedList and RevisionTemplateLabelDisallowedList:
# everything else on the InferenceService lands in the revision template.
_ANNOTATIONS_NOT_IN_TEMPLATE: Final = frozenset(
    {
        "autoscaling.knative.dev/min-scale",
        "autoscaling.knative.dev/max-scale",
        "internal.serving.kserve.io/storage-initializer-sourceuri",
        "kubectl.kubernetes.io/last-applied-configuration",
    }
    # As configured on a cluster that runs gitsync (deploy/kserve-config-patch.yaml).
    | KSERVE_DISALLOWED_ANNOTATIONS
)
_LABELS_NOT_IN_TEMPLATE: Final = frozenset({"networking.knative.dev/visibility"})

_ISVC_DEPENDENTS: Final = ("PredictorReady", "IngressReady")
_KSVC_CONFIGURATIONS: Final = "ConfigurationsReady"
_KSVC_ROUTES: Final = "RoutesReady"


@dataclass(frozen=True, slots=True)
class IsvcSettings:
    ready_delay: float = 2.0
    domain: str = "example.com"  # Knative's default domain


@dataclass(frozen=True, slots=True)
class _Component:
    name: str
    ready: str
    route: str
    configuration: str


# In the order KServe reconciles them (the last one sets observedGeneration).
_COMPONENTS: Final = (
    _Component("predictor", "PredictorReady", "PredictorRouteReady", "PredictorConfigurationReady"),
    _Component(
        "transformer", "TransformerReady", "TransformerRouteReady", "TransformerConfigurationReady"
    ),
    # sic: KServe spells this one with a plural
    _Component(
        "explainer", "ExplainerReady", "ExplainerRoutesReady", "ExplainerConfigurationReady"
    ),
)


class _RevisionState(enum.Enum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


# --- simulator memory -------------------------------------------------------------------


@dataclass(slots=True)
class _Memory:
    """Per component: the latest revision, its template and progress, the ksvc generation."""

    revision: int = 0
    template: str = ""
    since: datetime | None = None
    failed: bool = False
    generation: int = 0
    ksvc_spec: str = ""

    @staticmethod
    def keys(component: str) -> tuple[str, ...]:
        return tuple(
            f"{MEMORY_PREFIX}{component}-{field}"
            for field in ("revision", "template", "since", "failed", "ksvc-generation", "ksvc-spec")
        )

    @classmethod
    def load(cls, annotations: Mapping[str, Any], component: str) -> _Memory:
        revision, template, since, failed, generation, ksvc_spec = (
            annotations.get(key) for key in cls.keys(component)
        )
        return cls(
            revision=_int(revision),
            template=str(template or ""),
            since=parse_time(since),
            failed=failed == "true",
            generation=_int(generation),
            ksvc_spec=str(ksvc_spec or ""),
        )

    def dump(self, component: str) -> dict[str, str]:
        values = (
            str(self.revision),
            self.template,
            format_precise(self.since) if self.since else "",
            "true" if self.failed else "",
            str(self.generation),
            self.ksvc_spec,
        )
        return {
            key: value for key, value in zip(self.keys(component), values, strict=True) if value
        }


def _int(value: object) -> int:
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def _revision_number(name: object) -> int:
    """N from ``<name>-<component>-0000N``, or 0."""
    return _int(str(name).rsplit("-", 1)[-1]) if isinstance(name, str) and "-" in name else 0


# --- one reconcile ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    name: str
    namespace: str
    annotations: Mapping[str, str]
    labels: Mapping[str, str]
    now: datetime
    delay: float
    fail: bool
    fail_message: str
    tag_routing: bool
    domain: str

    def host(self, service: str) -> str:
        return f"{service}.{self.namespace}.{self.domain}"

    def local_url(self, service: str) -> str:
        return f"http://{service}.{self.namespace}.svc.cluster.local"


@dataclass(frozen=True, slots=True)
class _Ksvc:
    """The part of a Knative Service's status KServe reads."""

    conditions: _Conditions
    latest_created: str
    latest_ready: str
    traffic: list[dict[str, Any]]
    url: str
    address: str
    generation: int


def reconcile_inference_service(
    obj: Mapping[str, Any], now: datetime, settings: IsvcSettings
) -> Outcome:
    """The InferenceService's next status at ``now`` (None when it does not change)."""
    metadata = obj.get("metadata") or {}
    annotations = {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}
    if metadata.get("deletionTimestamp"):
        return Outcome()
    # KServe's GetDeploymentMode: the mode it recorded, else the annotation.
    mode = (obj.get("status") or {}).get("deploymentMode") or annotations.get(
        _DEPLOYMENT_MODE_ANNOTATION, "Serverless"
    )
    if mode not in _SERVERLESS | _STANDARD:
        return Outcome(note=f"deploymentMode {mode} is not simulated; left alone")
    spec = obj.get("spec") or {}
    if not isinstance(spec.get("predictor"), dict):
        return Outcome(note="no spec.predictor; left alone")

    ctx = _Context(
        name=str(metadata.get("name")),
        namespace=str(metadata.get("namespace")),
        annotations=annotations,
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        now=now,
        delay=seconds_annotation(annotations, READY_DELAY_ANNOTATION, settings.ready_delay),
        fail=annotations.get(FAIL_ANNOTATION, "").lower() == "true",
        fail_message=annotations.get(FAIL_MESSAGE_ANNOTATION) or _DEFAULT_FAIL_MESSAGE,
        tag_routing=annotations.get(_TAG_ROUTING_ANNOTATION) == "true",
        domain=settings.domain,
    )
    if mode in _STANDARD:
        knobs = StandardKnobs(
            delay=ctx.delay, fail=ctx.fail, fail_message=ctx.fail_message, domain=ctx.domain
        )
        return reconcile_standard(
            obj, now, knobs=knobs, template_of=lambda spec: _template_hash(spec, ctx)
        )
    old: dict[str, Any] = dict(obj.get("status") or {})
    status = copy.deepcopy(old)
    conditions = _Conditions(
        old.get("conditions") or [], dependents=_ISVC_DEPENDENTS, now=format_time(now)
    )
    memory_annotations = {
        key: value
        for key, value in (old.get("annotations") or {}).items()
        if not str(key).startswith(MEMORY_PREFIX)
    }
    old_components = old.get("components") or {}
    components: dict[str, Any] = {}
    present = [c for c in _COMPONENTS if isinstance(spec.get(c.name), dict)]
    wakes: list[datetime] = []
    predictor_state = _RevisionState.PENDING
    for component in present:
        memory = _Memory.load(old.get("annotations") or {}, component.name)
        previous = old_components.get(component.name)
        revision, component_status, ksvc, wake = _reconcile_component(
            ctx,
            component,
            spec[component.name],
            dict(previous) if isinstance(previous, dict) else {},
            memory,
        )
        if component.name == "predictor":
            predictor_state = revision.state
        components[component.name] = component_status
        memory_annotations.update(memory.dump(component.name))
        conditions.propagate(component.ready, ksvc.conditions.get(_READY))
        conditions.propagate(component.route, ksvc.conditions.get(_KSVC_ROUTES))
        conditions.propagate(component.configuration, ksvc.conditions.get(_KSVC_CONFIGURATIONS))
        status["observedGeneration"] = ksvc.generation
        if wake is not None:
            wakes.append(wake)

    status["components"] = components
    predictor = components["predictor"]
    memory_annotations.update(
        remember_profiles(
            old.get("annotations") or {},
            annotations,
            latest=str(predictor.get("latestCreatedRevision") or ""),
            serving=[str(t["revisionName"]) for t in predictor.get("traffic") or []],
        )
    )
    _propagate_cross_component(conditions, present, "RoutesReady", lambda c: c.route)
    _propagate_cross_component(
        conditions, present, "LatestDeploymentReady", lambda c: c.configuration
    )
    _reconcile_ingress(ctx, conditions, status, present)
    status["modelStatus"] = _model_status(
        old.get("modelStatus") or {},
        predictor_state,
        components["predictor"],
        isvc_ready=conditions.status(_READY) == _TRUE,
        fail_message=ctx.fail_message,
    )
    status["conditions"] = conditions.as_list()
    status["deploymentMode"] = "Serverless"
    status["annotations"] = memory_annotations
    wake_at = min(wakes) if wakes else None
    if status == old:
        return Outcome(wake_at=wake_at)
    return Outcome(status=status, wake_at=wake_at, transitions=_describe(old, status))


@dataclass(frozen=True, slots=True)
class _Revision:
    """A component's latest revision, as this reconcile found it."""

    service: str  # the Knative Service (and Route, and Configuration) name
    name: str
    state: _RevisionState
    previous_ready: str  # the latest ready revision before this reconcile
    template: str
    canary: int | None


def _reconcile_component(
    ctx: _Context,
    component: _Component,
    component_spec: Mapping[str, Any],
    component_status: dict[str, Any],
    memory: _Memory,
) -> tuple[_Revision, dict[str, Any], _Ksvc, datetime | None]:
    """Advance one component's revisions, then reconcile KServe and Knative to a fixed point."""
    template = _template_hash(component_spec, ctx)
    if memory.revision == 0 and component_status.get("latestCreatedRevision"):
        # Memory lost (status edited by hand?): adopt the revision that exists.
        memory.revision = _revision_number(component_status["latestCreatedRevision"]) or 1
        memory.template = template
        memory.since = memory.since or ctx.now
    if memory.revision == 0 or memory.template != template:
        memory.revision += 1
        memory.template = template
        memory.since = ctx.now
        memory.failed = False
    name = f"{ctx.name}-{component.name}-{memory.revision:05d}"
    previous_ready = str(component_status.get("latestReadyRevision") or "")
    state, wake = _revision_state(ctx, memory, name, previous_ready)
    revision = _Revision(
        service=f"{ctx.name}-{component.name}",
        name=name,
        state=state,
        previous_ready=previous_ready,
        template=template,
        canary=_canary_percent(component_spec.get("canaryTrafficPercent")),
    )
    # KServe's desired traffic depends on the status it wrote last; a few rounds settle it.
    ksvc = _knative_round(ctx, revision, component_status, memory)
    for _ in range(4):
        updated = _propagate_status(component_status, ksvc)
        if updated == component_status:
            break
        component_status = updated
        ksvc = _knative_round(ctx, revision, component_status, memory)
    return revision, component_status, ksvc, wake


def _knative_round(
    ctx: _Context, revision: _Revision, component_status: Mapping[str, Any], memory: _Memory
) -> _Ksvc:
    """KServe writes the ksvc spec from the status; Knative answers with the ksvc status."""
    targets = _traffic_targets(ctx, revision.canary, component_status)
    ksvc_spec = _hash({"template": revision.template, "traffic": targets})
    if ksvc_spec != memory.ksvc_spec:
        memory.generation += 1  # every spec change of the ksvc bumps its generation
        memory.ksvc_spec = ksvc_spec
    return _knative_service(ctx, revision, targets, memory.generation)


def _revision_state(
    ctx: _Context, memory: _Memory, revision: str, previous_ready: str
) -> tuple[_RevisionState, datetime | None]:
    if previous_ready == revision:
        return _RevisionState.READY, None
    if memory.failed and not ctx.fail:
        # The knob was removed: the revision gets another go, from now.
        memory.failed = False
        memory.since = ctx.now
    if memory.failed:
        return _RevisionState.FAILED, None
    due = (memory.since or ctx.now) + timedelta(seconds=ctx.delay)
    if ctx.now < due:
        return _RevisionState.PENDING, due
    if ctx.fail:
        memory.failed = True
        return _RevisionState.FAILED, None
    return _RevisionState.READY, None


def _template_hash(component_spec: Mapping[str, Any], ctx: _Context) -> str:
    return _hash(
        {
            "spec": {k: v for k, v in component_spec.items() if k != "canaryTrafficPercent"},
            "annotations": {
                k: v
                for k, v in ctx.annotations.items()
                if k not in _ANNOTATIONS_NOT_IN_TEMPLATE
                and (not k.startswith(_KNOB_PREFIX) or k in REVISION_KNOBS)
            },
            "labels": {k: v for k, v in ctx.labels.items() if k not in _LABELS_NOT_IN_TEMPLATE},
        }
    )


def _hash(value: object) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _canary_percent(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return min(100, max(0, value))


def _traffic_targets(
    ctx: _Context, canary: int | None, component_status: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The ksvc route spec KServe's ``createKnativeService`` builds."""
    rolled_out = str(component_status.get("latestRolledoutRevision") or "")
    split = canary is not None and bool(rolled_out)
    latest: dict[str, Any] = {"latestRevision": True, "percent": canary if split else 100}
    if ctx.tag_routing:
        latest["tag"] = "latest"
    targets = [latest]
    if split and canary is not None and canary < 100:
        targets.append(
            {
                "tag": "prev",
                "revisionName": rolled_out,
                "latestRevision": False,
                "percent": 100 - canary,
            }
        )
    return targets


def _knative_service(
    ctx: _Context, revision: _Revision, targets: list[dict[str, Any]], generation: int
) -> _Ksvc:
    """What Knative Serving reports for the ksvc: configuration, route, and their Ready."""
    service = revision.service
    state = revision.state
    latest_ready = revision.name if state is _RevisionState.READY else revision.previous_ready
    conditions = _Conditions([], dependents=(_KSVC_CONFIGURATIONS, _KSVC_ROUTES), now="")
    if state is _RevisionState.READY:
        conditions.mark_true(_KSVC_CONFIGURATIONS)
    elif state is _RevisionState.FAILED:
        conditions.mark_false(
            _KSVC_CONFIGURATIONS,
            "RevisionFailed",
            f'Revision "{revision.name}" failed with message: {ctx.fail_message}.',
        )
    else:
        conditions.mark_unknown(_KSVC_CONFIGURATIONS, "", "")
    traffic: list[dict[str, Any]] = []
    if latest_ready:
        for target in targets:
            entry: dict[str, Any] = {
                "revisionName": latest_ready
                if target["latestRevision"]
                else target["revisionName"],
                "latestRevision": target["latestRevision"],
                "percent": target["percent"],
            }
            if tag := target.get("tag"):
                entry["tag"] = tag
                entry["url"] = f"http://{tag}-{ctx.host(service)}"
            traffic.append(entry)
        conditions.mark_true(_KSVC_ROUTES)
    elif state is _RevisionState.FAILED:
        conditions.mark_false(
            _KSVC_ROUTES,
            "RevisionMissing",
            f'Configuration "{service}" does not have any ready Revision.',
        )
    else:
        conditions.mark_unknown(
            _KSVC_ROUTES,
            "RevisionMissing",
            f'Configuration "{service}" is waiting for a Revision to become ready.',
        )
    return _Ksvc(
        conditions=conditions,
        latest_created=revision.name,
        latest_ready=latest_ready,
        traffic=traffic,
        url=f"http://{ctx.host(service)}",
        address=ctx.local_url(service),
        generation=generation,
    )


def _propagate_status(component_status: Mapping[str, Any], ksvc: _Ksvc) -> dict[str, Any]:
    """KServe's ``PropagateStatus`` for one component, rolled-out revision tracking included."""
    result = dict(component_status)
    result["latestCreatedRevision"] = ksvc.latest_created
    per_revision: dict[str, int] = defaultdict(int)
    for target in ksvc.traffic:
        per_revision[target["revisionName"]] += target["percent"]
    for target in ksvc.traffic:
        if target["revisionName"] != ksvc.latest_ready or not target["latestRevision"]:
            continue
        if result.get("latestRolledoutRevision") != ksvc.latest_ready:
            if target["percent"] == 100:
                result["previousRolledoutRevision"] = result.get("latestRolledoutRevision", "")
                result["latestRolledoutRevision"] = ksvc.latest_ready
        elif (
            ksvc.latest_ready == ksvc.latest_created
            and target["percent"] < 100
            and per_revision[target["revisionName"]] == 100
            and result.get("previousRolledoutRevision")
        ):
            # Rolled out at 100% and now split over itself: KServe rolls back.
            result["latestRolledoutRevision"] = result["previousRolledoutRevision"]
    result["latestReadyRevision"] = ksvc.latest_ready
    ready = ksvc.conditions.get(_READY)
    if ready is not None and ready.get("status") == _TRUE:
        result["address"] = {"url": ksvc.address}
        result["url"] = ksvc.url
    result["traffic"] = [dict(target) for target in ksvc.traffic]
    # Go's omitempty: empty strings and lists are not serialised.
    return {key: value for key, value in result.items() if value not in ("", [], None)}


def _propagate_cross_component(
    conditions: _Conditions,
    present: list[_Component],
    kind: str,
    pick: Callable[[_Component], str],
) -> None:
    status, reason = _TRUE, ""
    for component in present:
        component_condition = pick(component)
        current = conditions.status(component_condition)
        if current != _TRUE:
            status = _UNKNOWN if current in (None, _UNKNOWN) else _FALSE
            reason = f"{component_condition} not ready"
    conditions.propagate(kind, {"status": status, "reason": reason})


def _reconcile_ingress(
    ctx: _Context, conditions: _Conditions, status: dict[str, Any], present: list[_Component]
) -> None:
    """KServe's serverless ingress reconciler, with the Istio virtual host (the default)."""
    names = {component.name for component in present}
    top = "transformer" if "transformer" in names else "predictor"
    url = (status["components"].get(top) or {}).get("url")
    if not url:
        return  # nothing to route to yet: KServe leaves IngressReady alone
    for component in present:
        current = conditions.status(component.ready)
        if current != _TRUE:
            conditions.propagate(
                "IngressReady",
                {
                    "status": _UNKNOWN if current in (None, _UNKNOWN) else _FALSE,
                    "reason": f"{component.name.capitalize()} ingress not created",
                },
            )
            return
    status["url"] = str(url).replace(f"-{top}", "", 1)
    status["address"] = {"url": ctx.local_url(ctx.name)}
    conditions.propagate("IngressReady", {"status": _TRUE})


def _model_status(
    previous: Mapping[str, Any],
    state: _RevisionState,
    predictor: Mapping[str, Any],
    *,
    isvc_ready: bool,
    fail_message: str,
) -> dict[str, Any]:
    """KServe's ``PropagateModelStatus``, with the latest revision's pods imagined."""
    latest_ready = predictor.get("latestReadyRevision")
    return model_status(
        previous,
        loaded=bool(isvc_ready and latest_ready)
        and latest_ready == predictor.get("latestCreatedRevision"),
        failed=state is _RevisionState.FAILED,
        fail_message=fail_message,
    )


def _describe(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    """One log line per visible transition."""
    lines: list[str] = []
    old_components = old.get("components") or {}
    for name, component in (new.get("components") or {}).items():
        before = old_components.get(name) or {}
        for field, verb in (
            ("latestCreatedRevision", "created"),
            ("latestReadyRevision", "ready"),
            ("latestRolledoutRevision", "rolled out"),
        ):
            if component.get(field) and component.get(field) != before.get(field):
                lines.append(f"revision {component[field]} {verb}")
        if component.get("traffic") != before.get("traffic"):
            split = ", ".join(
                f"{t['revisionName']}={t['percent']}%" for t in component.get("traffic") or []
            )
            lines.append(f"{name} traffic: {split or 'none'}")
    old_conditions = {c.get("type"): c for c in old.get("conditions") or []}
    for condition in new.get("conditions") or []:
        if condition["type"] not in (_READY, *(c.ready for c in _COMPONENTS)):
            continue
        before = old_conditions.get(condition["type"]) or {}
        if (before.get("status"), before.get("reason")) != (
            condition["status"],
            condition.get("reason"),
        ):
            reason = f" ({condition['reason']})" if condition.get("reason") else ""
            lines.append(f"{condition['type']}={condition['status']}{reason}")
    return tuple(lines)
