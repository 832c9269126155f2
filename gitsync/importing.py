"""``gitsync import``: existing Kubernetes manifests turned into the specs that render
back to them, so a team moves its models over without retyping them.

The contract is exact: rendering the imported spec gives the original object again,
apart from gitsync's own labels and annotations. Every import is checked against
it here, by rendering the spec through the same path a sync takes, so an import
that would change a live object is never printed.

How: a kind's *lift* maps what it can onto typed spec fields (only values the spec
accepts as they are; anything else is left alone rather than bent), then the
imported spec is rendered and compared with the original, and what differs becomes
one RFC 6902 JSON patch in the spec's ``overrides``. The typed part is what a person
reads and edits; the patch is the honest rest, named path by path in the comment
above the spec, so nothing is silently dropped. Objects of kinds gitsync has no spec
for are kept as they are (gitsync applies any Kubernetes object), cleaned of what the
server wrote.

InferenceServices become ModelDeployments; TFJobs, PyTorchJobs and Trainer v2
TrainJobs become TrainingRuns, compared apart from the hash suffix a run's name adds.

Refused, with the reason: what GitOps cannot own. An object named by
``generateName`` only gets a new name at every create, so gitsync could never find
it again to compare or prune it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jsonpatch
import yaml

from gitsync.loading import Diagnostic, Entry, load_file
from gitsync.render import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_SOURCE_COMMIT,
    ANNOTATION_SOURCE_PATH,
    ANNOTATION_SPEC_KIND,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_TRAINING_RUN,
    RenderContext,
    render,
)
from gitsync.specs import API_VERSION
from gitsync.specs.serving import ModelFormat

__all__ = ["Imported", "Refused", "import_object", "import_text", "without_stamps"]

Object = dict[str, Any]

#: Metadata the API server or a controller writes: never part of what a repo declares.
_SERVER_METADATA: Final = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
_SERVER_ANNOTATIONS: Final = ("kubectl.kubernetes.io/last-applied-configuration",)
_STAMP_LABELS: Final = (LABEL_MANAGED_BY, LABEL_INSTANCE)
_STAMP_ANNOTATIONS: Final = (
    ANNOTATION_SOURCE_PATH,
    ANNOTATION_SPEC_KIND,
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_SOURCE_COMMIT,
)
_MODEL_FORMATS: Final = frozenset(ModelFormat.__args__)  # type: ignore[attr-defined]
#: The instance the round trip renders for; its stamps are removed before comparing.
_INSTANCE: Final = "import"


@dataclass(frozen=True, slots=True, kw_only=True)
class Imported:
    """One document of the output: a gitsync spec, or an object kept as it is."""

    source: str
    document: Object
    #: What went where, for the comment above the document.
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    source: str
    reason: str


def without_stamps(obj: Mapping[str, Any]) -> Object:
    """``obj`` without gitsync's labels and annotations (and their maps when emptied)."""
    body = copy.deepcopy(dict(obj))
    metadata = body.get("metadata") or {}
    for key, stamps in (("labels", _STAMP_LABELS), ("annotations", _STAMP_ANNOTATIONS)):
        values = {k: v for k, v in (metadata.get(key) or {}).items() if k not in stamps}
        if values:
            metadata[key] = values
        else:
            metadata.pop(key, None)
    return body


def _cleaned(obj: Mapping[str, Any]) -> Object:
    """What the repo would declare of a live or exported object."""
    body = without_stamps(obj)
    body.pop("status", None)
    metadata = body.setdefault("metadata", {})
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k not in _SERVER_ANNOTATIONS
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return body


#: PodSpec fields a component spells as KServe does.
_POD_FIELDS: Final = (
    "serviceAccountName",
    "nodeSelector",
    "tolerations",
    "affinity",
    "priorityClassName",
    "runtimeClassName",
    "volumes",
    "securityContext",
    "topologySpreadConstraints",
    "logger",
    "batcher",
    "deploymentStrategy",
    "storageUris",
)
#: A component's scaling fields, by the name ``scaling`` gives them.
_SCALING: Final = {
    "minReplicas": "min",
    "maxReplicas": "max",
    "scaleMetric": "metric",
    "scaleMetricType": "metricType",
    "scaleTarget": "target",
    "containerConcurrency": "containerConcurrency",
    "timeout": "timeout",
    "autoScaling": "autoScaling",
}
#: Container fields typed under the same name.
_CONTAINER_FIELDS: Final = (
    "name",
    "image",
    "command",
    "args",
    "ports",
    "resources",
    "volumeMounts",
    "workingDir",
    "imagePullPolicy",
    "securityContext",
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
)
_MODE_ANNOTATION: Final = "serving.kserve.io/deploymentMode"


def _env(items: object) -> dict[str, Any] | None:
    """A container's env list as a spec's map (name: value, or name: its valueFrom)."""
    if not isinstance(items, list):
        return None
    env: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        if set(item) == {"name", "value"} and isinstance(item["value"], str):
            env[item["name"]] = item["value"]
        elif set(item) == {"name", "valueFrom"} and isinstance(item["valueFrom"], dict):
            env[item["name"]] = item["valueFrom"]
        else:
            return None
    return env


def _typed(part: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The ``fields`` of a container-like ``part`` that a spec types as they are, and
    its env in the spec's form when it has one."""
    typed = {k: part[k] for k in fields if k in part}
    if (env := _env(part.get("env"))) is not None:
        typed["env"] = env
    return typed


def _secret_names(items: object) -> list[Any] | None:
    """``imagePullSecrets`` as a spec writes them: the names alone."""
    if not isinstance(items, list):
        return None
    return [s.get("name") for s in items if isinstance(s, dict)]


def _component(part: Mapping[str, Any], notes: list[str], where: str) -> dict[str, Any]:
    """The typed fields of a predictor, transformer or explainer."""
    typed: dict[str, Any] = {k: part[k] for k in _POD_FIELDS if k in part}
    if (names := _secret_names(part.get("imagePullSecrets"))) is not None:
        typed["imagePullSecrets"] = names
    for field, wire in (("labels", "podLabels"), ("annotations", "podAnnotations")):
        if field in part:
            typed[wire] = part[field]
    scaling = {wire: part[field] for field, wire in _SCALING.items() if field in part}
    if scaling:
        typed["scaling"] = scaling
    if isinstance(part.get("containers"), list):
        typed["containers"] = [
            _typed(c, _CONTAINER_FIELDS) for c in part["containers"] if isinstance(c, dict)
        ]
    if typed:
        notes.append(f"{where}: {', '.join(sorted(typed))}")
    return typed


def _lift_inference_service(obj: Object) -> tuple[Object, list[str]] | str:
    """The typed ModelDeployment fields of an InferenceService, or why it has none."""
    metadata = obj["metadata"]
    spec = obj.get("spec") or {}
    predictor = spec.get("predictor") or {}
    notes: list[str] = []
    body = _component(predictor, notes, "predictor")
    model = predictor.get("model")
    if isinstance(model, dict):
        model_format = model.get("modelFormat") or {}
        typed_model: Object = {"format": model_format.get("name")}
        if "version" in model_format:
            typed_model["formatVersion"] = model_format["version"]
        typed_model |= _typed(
            model,
            (
                "storageUri",
                "storage",
                "runtime",
                "runtimeVersion",
                "protocolVersion",
                "command",
                "args",
                "ports",
                "volumeMounts",
            ),
        )
        # The predictor's storageUris are its model's in a ModelDeployment.
        if "storageUris" in body:
            typed_model["storageUris"] = body.pop("storageUris")
        body["model"] = typed_model
        if "resources" in model:
            body["resources"] = model["resources"]
        notes.append(f"predictor.model: {', '.join(typed_model)}")
    elif "containers" not in predictor:
        return "its predictor has neither a model nor containers"
    for name in ("transformer", "explainer"):
        if isinstance(spec.get(name), dict):
            part = spec[name]
            body[name] = _component(part, notes, name)
            if name == "explainer" and isinstance(part.get("art"), dict):
                body[name]["art"] = _typed(
                    part["art"],
                    (
                        "type",
                        "config",
                        "storageUri",
                        "runtimeVersion",
                        "image",
                        "args",
                        "resources",
                    ),
                )
    annotations = dict(metadata.get("annotations") or {})
    if annotations.get(_MODE_ANNOTATION) in ("Serverless", "Standard"):
        body["deploymentMode"] = annotations.pop(_MODE_ANNOTATION)
        notes.append(f"metadata.annotations[{_MODE_ANNOTATION}] -> spec.deploymentMode")
    typed_metadata = {k: metadata[k] for k in ("name", "namespace", "labels") if metadata.get(k)}
    if annotations:
        typed_metadata["annotations"] = annotations
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": typed_metadata,
        "spec": body,
    }, notes


#: Replica types of the Training Operator's jobs, as TrainingRun roles.
_ROLES: Final = {
    "TFJob": (
        "tensorflow",
        "tfReplicaSpecs",
        {"Chief": "chief", "Worker": "worker", "PS": "ps", "Evaluator": "evaluator"},
    ),
    "PyTorchJob": ("pytorch", "pytorchReplicaSpecs", {"Master": "master", "Worker": "worker"}),
}
#: Pod fields a TrainingRun spells as the PodSpec does.
_RUN_POD_FIELDS: Final = (
    "volumes",
    "nodeSelector",
    "tolerations",
    "affinity",
    "priorityClassName",
    "topologySpreadConstraints",
    "schedulerName",
    "serviceAccountName",
    "terminationGracePeriodSeconds",
)
_RUN_CONTAINER_FIELDS: Final = (
    "image",
    "command",
    "args",
    "envFrom",
    "resources",
    "securityContext",
    "workingDir",
    "imagePullPolicy",
    "volumeMounts",
)


def _workload(replica: Mapping[str, Any]) -> dict[str, Any]:
    """One replica type of a TFJob or PyTorchJob as a TrainingRun's workload fields."""
    template = replica.get("template") or {}
    pod = template.get("spec") or {}
    containers = pod.get("containers") or [{}]
    container = containers[0] if isinstance(containers[0], dict) else {}
    typed = _typed(container, _RUN_CONTAINER_FIELDS)
    typed |= {k: pod[k] for k in _RUN_POD_FIELDS if k in pod}
    if "securityContext" in pod:
        typed["podSecurityContext"] = pod["securityContext"]
    if (names := _secret_names(pod.get("imagePullSecrets"))) is not None:
        typed["imagePullSecrets"] = names
    metadata = template.get("metadata") or {}
    for field, wire in (("labels", "podLabels"), ("annotations", "podAnnotations")):
        if metadata.get(field):
            typed[wire] = metadata[field]
    if "restartPolicy" in replica:
        typed["restartPolicy"] = replica["restartPolicy"]
    return typed


def _run_metadata(metadata: Mapping[str, Any]) -> Object:
    return {
        k: metadata[k] for k in ("name", "namespace", "labels", "annotations") if metadata.get(k)
    }


def _lift_training_job(obj: Object) -> tuple[Object, list[str]] | str:
    """The TrainingRun of a TFJob or PyTorchJob: what every replica type shares as the
    spec's fields, and what one type does apart as its role's."""
    framework, field, roles = _ROLES[str(obj["kind"])]
    spec = obj.get("spec") or {}
    replicas = spec.get(field)
    if not isinstance(replicas, dict) or not replicas:
        return f"it has no {field}"
    unknown = sorted(set(replicas) - set(roles))
    if unknown:
        return f"replica type(s) {', '.join(unknown)} have no TrainingRun role"
    ordered = [kind for kind in roles if kind in replicas]
    workloads = {roles[kind]: _workload(replicas[kind]) for kind in ordered}
    # Shared: what every role has alike; each role then says only what it does apart.
    first = workloads[roles[ordered[0]]]
    shared = {k: v for k, v in first.items() if all(w.get(k) == v for w in workloads.values())}
    body: Object = {"framework": framework, **shared}
    body["replicas"] = {roles[kind]: replicas[kind].get("replicas", 1) for kind in ordered}
    own = {
        role: {k: v for k, v in workload.items() if shared.get(k) != v}
        for role, workload in workloads.items()
    }
    if overrides := {role: fields for role, fields in own.items() if fields}:
        body["roles"] = overrides
    for key in (
        "runPolicy",
        "successPolicy",
        "enableDynamicWorker",
        "elasticPolicy",
        "nprocPerNode",
    ):
        if key in spec:
            body[key] = spec[key]
    notes = [
        f"{field}: {', '.join(ordered)} -> spec.replicas; what they share -> spec"
        + (f"; what {', '.join(sorted(overrides))} do apart -> spec.roles" if overrides else "")
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingRun",
        "metadata": _run_metadata(obj["metadata"]),
        "spec": body,
    }, notes


def _lift_train_job(obj: Object) -> tuple[Object, list[str]] | str:
    """The TrainingRun of a Kubeflow Trainer v2 TrainJob."""
    spec = obj.get("spec") or {}
    runtime = spec.get("runtimeRef")
    if not isinstance(runtime, dict) or not isinstance(runtime.get("name"), str):
        return "it names no runtimeRef"
    body: Object = {"runtimeRef": {k: runtime[k] for k in ("name", "kind") if k in runtime}}
    trainer = spec.get("trainer") or {}
    body |= _typed(trainer, ("image", "command", "args", "numNodes"))
    if "resourcesPerNode" in trainer:
        body["resources"] = trainer["resourcesPerNode"]
    if "numProcPerNode" in trainer:
        body["nprocPerNode"] = trainer["numProcPerNode"]
    steps = spec.get("initializer") or {}
    initializer = {}
    for step in ("dataset", "model"):
        if isinstance(given := steps.get(step), dict):
            initializer[step] = {k: v for k, v in given.items() if k != "env"}
            if (env := _env(given.get("env"))) is not None:
                initializer[step]["env"] = env
    if initializer:
        body["initializer"] = initializer
    policy = {k: spec[k] for k in ("suspend", "activeDeadlineSeconds") if k in spec}
    if policy:
        body["runPolicy"] = policy
    notes = ["trainer -> spec (image, command, args, env, numNodes, resourcesPerNode)"]
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingRun",
        "metadata": _run_metadata(obj["metadata"]),
        "spec": body,
    }, notes


def _same_name(original: Object) -> Callable[[Object], Object]:
    """For a training job: its rendering under the original's name and without the
    TrainingRun label, since a run's name adds the spec's hash (the contract is equal
    apart from gitsync's stamps and that suffix)."""

    def normalized(rendered: Object) -> Object:
        metadata = rendered["metadata"]
        metadata["name"] = original["metadata"]["name"]
        labels = {
            k: v for k, v in (metadata.get("labels") or {}).items() if k != LABEL_TRAINING_RUN
        }
        if labels:
            metadata["labels"] = labels
        else:
            metadata.pop("labels", None)
        return rendered

    return normalized


Lift = Callable[[Object], tuple[Object, list[str]] | str]

#: Lifts by (apiVersion group, kind), and whether its rendering is named as the
#: original (a model) or adds a run's hash (a training job).
_LIFTS: Final[Mapping[tuple[str, str], tuple[Lift, bool]]] = {
    ("serving.kserve.io", "InferenceService"): (_lift_inference_service, False),
    ("kubeflow.org", "TFJob"): (_lift_training_job, True),
    ("kubeflow.org", "PyTorchJob"): (_lift_training_job, True),
    ("trainer.kubeflow.org", "TrainJob"): (_lift_train_job, True),
}


def _refusal(obj: Mapping[str, Any]) -> str | None:
    if not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
        return "not a Kubernetes object (no apiVersion and kind)"
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return "it has no metadata"
    if not metadata.get("name"):
        if metadata.get("generateName"):
            return (
                "it is named by generateName: every create gives it a new name, so gitsync "
                "could never find it again to compare or prune it; give it a name"
            )
        return "it has no metadata.name"
    return None


def import_object(
    obj: Mapping[str, Any], *, source: str, default_namespace: str = "default"
) -> Imported | Refused:
    """The spec (or the kept object) that renders to ``obj``: an object without a
    namespace is one applied to ``default_namespace``, as gitsync would apply it."""
    if (reason := _refusal(obj)) is not None:
        return Refused(source=source, reason=reason)
    original = _cleaned(obj)
    group = str(original["apiVersion"]).rpartition("/")[0]
    found = _LIFTS.get((group, str(original["kind"])))
    if found is None:
        return Imported(source=source, document=original, notes=("kept as it is",))
    lift, renamed = found
    normalized = _same_name(original) if renamed else (lambda rendered: rendered)
    # The lift shares nothing with the original: dropping a refused field from the spec
    # must not drop it from what the import is compared against.
    lifted = lift(copy.deepcopy(original))
    if isinstance(lifted, str):
        return Imported(source=source, document=original, notes=(f"kept as it is: {lifted}",))
    spec, notes = lifted
    context = RenderContext(instance=_INSTANCE, default_namespace=default_namespace)
    original["metadata"].setdefault("namespace", default_namespace)
    rendered = _typed_rendering(spec, notes, source=source, context=context, normalized=normalized)
    if isinstance(rendered, str):
        return Imported(source=source, document=original, notes=(f"kept as it is: {rendered}",))
    patch = jsonpatch.make_patch(rendered, original).patch
    if patch:
        spec["spec"]["overrides"] = [{"jsonPatch": patch}]
        notes.append(
            "overrides (not typed by gitsync): " + ", ".join(sorted({p["path"] for p in patch}))
        )
        again = _render(spec, source=source, context=context, normalized=normalized)
        if again != original:
            # The patch was computed against this very rendering: a mismatch is a bug in
            # the lift or the renderer, and the safe output is the object as it is.
            reason = again if isinstance(again, str) else "it did not render back exactly"
            return Imported(source=source, document=original, notes=(f"kept as it is: {reason}",))
    return Imported(source=source, document=spec, notes=tuple(notes))


#: How many typed fields an import may give up before keeping the object as it is.
_MAX_DROPS: Final = 32


def _typed_rendering(
    spec: Object,
    notes: list[str],
    *,
    source: str,
    context: RenderContext,
    normalized: Callable[[Object], Object],
) -> Object | str:
    """What ``spec`` renders to, after leaving out (to the overrides) each typed field
    the spec does not accept as it was written; or why it does not load at all."""
    for _ in range(_MAX_DROPS):
        loaded = _load(spec, source=source)
        if isinstance(loaded, Entry):
            return normalized(without_stamps(render(loaded, context)))
        fields = [d.field for d in loaded if d.field]
        if not fields or len(fields) < len(loaded):
            return "; ".join(d.message for d in loaded) or "it does not load"
        for field in fields:
            if not _drop(spec, field):
                return f"{field}: {_message(loaded, field)}"
            notes.append(f"left to overrides: {field} ({_message(loaded, field)})")
    return "too many fields gitsync does not accept as written"


def _message(diagnostics: Sequence[Diagnostic], field: str) -> str:
    return next(d.message for d in diagnostics if d.field == field)


_PART: Final = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _drop(document: Object, field: str) -> bool:
    """Remove the value at ``field`` (``spec.containers[0].ports``) from ``document``:
    the deepest map key on the way, so a list loses its element's field, not itself."""
    parts: list[str | int] = [name if name else int(index) for name, index in _PART.findall(field)]
    node: Any = document
    last_map: tuple[dict[str, Any], str] | None = None
    for part in parts:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            last_map = (node, part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
    if last_map is None:
        return False
    owner, key = last_map
    del owner[key]
    return True


def _load(spec: Object, *, source: str) -> Entry | Sequence[Diagnostic]:
    text = yaml.dump(spec, Dumper=yaml.CSafeDumper, sort_keys=False).encode()
    loaded = load_file(source, text)
    if loaded.diagnostics or not loaded.entries:
        return loaded.diagnostics
    return loaded.entries[0]


def _render(
    spec: Object, *, source: str, context: RenderContext, normalized: Callable[[Object], Object]
) -> Object | str:
    """The object ``spec`` renders to, without stamps; or why it does not load."""
    loaded = _load(spec, source=source)
    if not isinstance(loaded, Entry):
        return "; ".join(d.message for d in loaded) or "it does not load"
    return normalized(without_stamps(render(loaded, context)))


def import_text(
    source: str, content: bytes, *, default_namespace: str = "default"
) -> list[Imported | Refused]:
    """Every document of a manifest file, imported; a file that is not YAML is refused."""
    try:
        documents = list(yaml.load_all(content, Loader=yaml.CSafeLoader))
    except yaml.YAMLError as exc:
        return [Refused(source=source, reason=f"not YAML: {exc}")]
    results: list[Imported | Refused] = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        where = f"{source}#{index}" if len(documents) > 1 else source
        if isinstance(document, dict) and document.get("kind") == "List":
            results += [
                import_object(i, source=where, default_namespace=default_namespace)
                for i in _items(document)
            ]
        elif isinstance(document, dict):
            results.append(
                import_object(document, source=where, default_namespace=default_namespace)
            )
        else:
            results.append(Refused(source=where, reason="not a Kubernetes object (not a map)"))
    return results


def _items(document: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    """The objects of a ``kind: List`` (what ``kubectl get -o yaml`` prints)."""
    return [i for i in document.get("items") or [] if isinstance(i, dict)]
