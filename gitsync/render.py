"""Render validated entries into the Kubernetes objects gitsync applies.

Pure functions from specs to plain dicts (apply bodies), so every rendering is a
golden file away from a test. A ``ModelDeployment`` becomes a KServe
``InferenceService``; a ``TrainingRun`` becomes a Kubeflow ``TFJob`` or
``PyTorchJob`` named after a hash of its spec (runs are immutable: a changed spec is
a new run; a scheduled run adds its tick to the hash); any other object passes through.

What rendering needs from the world (which run a ``fromTrainingRun`` model serves,
which tick a schedule is at) comes in the :class:`RenderContext` as plain data, found
by the reconciler; :func:`pending` says when that data is missing, so nothing is
applied yet. Every object is stamped with who
manages it, which gitsync instance owns it, where it came from, and a hash of
itself, which is how a no-op cycle recognises an unchanged object without asking
the API server.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from gitsync.loading import Entry
from gitsync.schedule import format_time
from gitsync.specs import ModelDeployment, Resources, TrainingRun
from gitsync.types import ObjectRef

__all__ = [
    "ANNOTATION_APPLIED_HASH",
    "ANNOTATION_SCHEDULED_AT",
    "ANNOTATION_SOURCE_COMMIT",
    "ANNOTATION_SOURCE_PATH",
    "ANNOTATION_SPEC_KIND",
    "CLUSTER_SCOPED_KINDS",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_TRAINING_RUN",
    "MANAGER",
    "PendingError",
    "RenderContext",
    "TrainedModel",
    "applied_hash",
    "comparable",
    "output_uri",
    "pending",
    "render",
    "run_name",
    "without_provenance",
]

MANAGER: Final = "gitsync"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_INSTANCE: Final = "gitsync.io/instance"
LABEL_TRAINING_RUN: Final = "gitsync.io/training-run"
ANNOTATION_SOURCE_PATH: Final = "gitsync.io/source-path"
ANNOTATION_SOURCE_COMMIT: Final = "gitsync.io/source-commit"
ANNOTATION_SPEC_KIND: Final = "gitsync.io/spec-kind"
ANNOTATION_APPLIED_HASH: Final = "gitsync.io/applied-hash"
ANNOTATION_SCHEDULED_AT: Final = "gitsync.io/scheduled-at"

_PROVENANCE: Final = frozenset({ANNOTATION_SOURCE_COMMIT, ANNOTATION_APPLIED_HASH})

#: Kinds without a namespace, so the repo's default namespace is not filled in.
CLUSTER_SCOPED_KINDS: Final = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ClusterServingRuntime",
        "ClusterStorageContainer",
        "ClusterTrainingRuntime",
    }
)

_TF_ROLES: Final = {"chief": "Chief", "worker": "Worker", "ps": "PS", "evaluator": "Evaluator"}
_TORCH_ROLES: Final = {"master": "Master", "worker": "Worker"}
_REPLICA_FIELD: Final = {"TFJob": "tfReplicaSpecs", "PyTorchJob": "pytorchReplicaSpecs"}


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainedModel:
    """The Succeeded run a ``fromTrainingRun`` model serves, and where it came from."""

    run: str
    output_uri: str
    completion_time: str
    #: The commit of the TrainingRun spec that started the run.
    source_commit: str


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What rendering needs besides the entry itself."""

    instance: str
    default_namespace: str
    #: The commit that last changed each source file (not the head commit, so that an
    #: unrelated commit changes no annotation and causes no write).
    source_commits: Mapping[str, str] = field(default_factory=dict)
    cluster_scoped_kinds: frozenset[str] = CLUSTER_SCOPED_KINDS
    #: By (namespace, TrainingRun name): the run a ``fromTrainingRun`` model serves.
    trained: Mapping[ObjectRef, TrainedModel] = field(default_factory=dict)
    #: By (namespace, TrainingRun name): the tick a scheduled run starts for now.
    ticks: Mapping[ObjectRef, datetime] = field(default_factory=dict)


class PendingError(ValueError):
    """Rendering was asked for an entry that waits for something (see :func:`pending`)."""


def _canonical(data: object) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def applied_hash(obj: Mapping[str, Any]) -> str:
    """A hash of what the object says, leaving out the provenance annotations.

    The source commit is left out on purpose: a commit that touches a file without
    changing what it declares (a comment, a reordering) must not cause a write.
    KServe copies an InferenceService's annotations into its revision template, so
    such a write would even roll out a new revision of an identical model.
    """
    return hashlib.sha256(_canonical(without_provenance(obj))).hexdigest()[:16]


def without_provenance(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without the annotations that say where it came from."""
    metadata = dict(obj.get("metadata") or {})
    metadata["annotations"] = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k not in _PROVENANCE
    }
    return {**obj, "metadata": metadata}


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as compared with a live copy: without the source commit, which is
    only rewritten when something else changes (see :func:`applied_hash`)."""
    metadata = dict(obj.get("metadata") or {})
    metadata["annotations"] = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if k != ANNOTATION_SOURCE_COMMIT
    }
    return {**obj, "metadata": metadata}


#: Fields that say when runs start and how many are kept, not what a run does:
#: changing them must not start a new run, so they stay out of the run's hash.
_WHEN_FIELDS: Final = frozenset({"schedule", "concurrency_policy", "history_limit"})


def run_name(run: TrainingRun, *, tick: datetime | None = None) -> str:
    """``<name>-<8 hex of the spec hash>``: the same spec always names the same run.

    A scheduled run hashes its tick in too, so each tick names its own run and a
    restarted daemon names it again the same way.
    """
    digest = hashlib.sha256(
        _canonical(run.spec.model_dump(mode="json", exclude=set(_WHEN_FIELDS)))
    ).hexdigest()
    if tick is not None:
        digest = hashlib.sha256(f"{digest}{format_time(tick)}".encode()).hexdigest()
    return f"{run.metadata.name}-{digest[:8]}"


def pending(entry: Entry, context: RenderContext) -> str | None:
    """Why an entry has nothing to apply yet, or None when it renders.

    A ``fromTrainingRun`` model waits for a Succeeded run; a scheduled TrainingRun
    starts a run only at a tick.
    """
    spec = entry.spec
    namespace = entry.namespace(context.default_namespace)
    if isinstance(spec, ModelDeployment):
        ref = spec.spec.model.training_run(namespace)
        if ref is not None and ref not in context.trained:
            return f"waiting for a Succeeded run of TrainingRun {ref.namespace}/{ref.name}"
    elif (
        isinstance(spec, TrainingRun)
        and spec.spec.schedule is not None
        and entry.key(context.default_namespace) not in context.ticks
    ):
        return f"no tick due (schedule {spec.spec.schedule!r})"
    return None


def render(entry: Entry, context: RenderContext) -> dict[str, Any]:
    """The apply body for one entry, stamped with gitsync's labels and annotations.

    Raises :class:`PendingError` for an entry :func:`pending` holds back.
    """
    if (waiting := pending(entry, context)) is not None:
        raise PendingError(f"{entry.kind} {entry.name}: {waiting}")
    if isinstance(entry.spec, ModelDeployment):
        body = _inference_service(entry.spec, context)
    elif isinstance(entry.spec, TrainingRun):
        body = _training_job(entry.spec, context)
    else:
        body = _manifest(entry, context)
    metadata = body["metadata"]
    metadata["labels"] = {
        **metadata.get("labels", {}),
        LABEL_MANAGED_BY: MANAGER,
        LABEL_INSTANCE: context.instance,
    }
    annotations = {
        **metadata.get("annotations", {}),
        ANNOTATION_SOURCE_PATH: entry.path,
        ANNOTATION_SPEC_KIND: entry.kind if entry.spec is not None else "Manifest",
    }
    if commit := context.source_commits.get(entry.path):
        annotations[ANNOTATION_SOURCE_COMMIT] = commit
    metadata["annotations"] = annotations
    metadata["annotations"][ANNOTATION_APPLIED_HASH] = applied_hash(body)
    return body


def _metadata(spec: ModelDeployment | TrainingRun, *, name: str, namespace: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if spec.metadata.labels:
        metadata["labels"] = dict(spec.metadata.labels)
    if spec.metadata.annotations:
        metadata["annotations"] = dict(spec.metadata.annotations)
    return metadata


def _resources(resources: Resources | None) -> dict[str, dict[str, str]]:
    if resources is None:
        return {}
    rendered = {}
    if resources.requests:
        rendered["requests"] = {k: str(v) for k, v in resources.requests.items()}
    if resources.limits:
        rendered["limits"] = {k: str(v) for k, v in resources.limits.items()}
    return rendered


def _env(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in env.items()]


def _container(
    *,
    name: str,
    image: str,
    command: list[str],
    args: list[str],
    env: Mapping[str, str],
    resources: Resources | None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image}
    if command:
        container["command"] = list(command)
    if args:
        container["args"] = list(args)
    if env:
        container["env"] = _env(env)
    if rendered := _resources(resources):
        container["resources"] = rendered
    return container


def _inference_service(spec: ModelDeployment, context: RenderContext) -> dict[str, Any]:
    namespace = spec.metadata.namespace or context.default_namespace
    source = spec.spec.model
    ref = source.training_run(namespace)
    model: dict[str, Any] = {
        "modelFormat": {"name": source.format},
        "storageUri": context.trained[ref].output_uri if ref else source.storage_uri,
    }
    if source.runtime_version:
        model["runtimeVersion"] = source.runtime_version
    if source.runtime:
        model["runtime"] = source.runtime
    if rendered := _resources(spec.spec.resources):
        model["resources"] = rendered
    predictor: dict[str, Any] = {
        "minReplicas": spec.spec.replicas.min,
        "maxReplicas": spec.spec.replicas.max,
        "model": model,
    }
    if spec.spec.service_account_name:
        predictor["serviceAccountName"] = spec.spec.service_account_name
    body_spec: dict[str, Any] = {"predictor": predictor}
    if transformer := spec.spec.transformer:
        body_spec["transformer"] = {
            "containers": [
                _container(
                    name="kserve-container",
                    image=transformer.image,
                    command=transformer.command,
                    args=transformer.args,
                    env=transformer.env,
                    resources=transformer.resources,
                )
            ]
        }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(spec, name=spec.metadata.name, namespace=namespace),
        "spec": body_spec,
    }


def _training_job(run: TrainingRun, context: RenderContext) -> dict[str, Any]:
    namespace = run.metadata.namespace or context.default_namespace
    tick = (
        context.ticks.get(ObjectRef.spec("TrainingRun", namespace, run.metadata.name))
        if run.spec.schedule
        else None
    )
    name = run_name(run, tick=tick)
    spec = run.spec
    if spec.framework == "tensorflow":
        kind, container_name, roles = "TFJob", "tensorflow", _TF_ROLES
    else:
        kind, container_name, roles = "PyTorchJob", "pytorch", _TORCH_ROLES
    replica_field = _REPLICA_FIELD[kind]
    env = dict(spec.env)
    if spec.output:
        env["OUTPUT_URI"] = spec.output.replace("{run}", name)
    container = _container(
        name=container_name,
        image=spec.image,
        command=spec.command,
        args=spec.args,
        env=env,
        resources=spec.resources,
    )
    replica_specs = {
        roles[role]: {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {"spec": {"containers": [copy.deepcopy(container)]}},
        }
        for role, count in sorted(spec.replicas.items())
        if count > 0
    }
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None"}
    policy = spec.run_policy
    if policy.backoff_limit is not None:
        run_policy["backoffLimit"] = policy.backoff_limit
    if policy.active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = policy.active_deadline_seconds
    if policy.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = policy.ttl_seconds_after_finished
    metadata = _metadata(run, name=name, namespace=namespace)
    metadata["labels"] = {**metadata.get("labels", {}), LABEL_TRAINING_RUN: run.metadata.name}
    if tick is not None:
        metadata["annotations"] = {
            **metadata.get("annotations", {}),
            ANNOTATION_SCHEDULED_AT: format_time(tick),
        }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"runPolicy": run_policy, replica_field: replica_specs},
    }


def output_uri(job: Mapping[str, Any]) -> str | None:
    """The ``OUTPUT_URI`` a rendered (or live) training job was given, if any."""
    for replica in (
        (job.get("spec") or {}).get(_REPLICA_FIELD.get(str(job.get("kind")), "")) or {}
    ).values():
        for container in ((replica.get("template") or {}).get("spec") or {}).get(
            "containers"
        ) or []:
            for variable in container.get("env") or []:
                if variable.get("name") == "OUTPUT_URI":
                    return str(variable.get("value"))
    return None


def _manifest(entry: Entry, context: RenderContext) -> dict[str, Any]:
    body = copy.deepcopy(dict(entry.manifest or {}))
    metadata = body.setdefault("metadata", {})
    if body.get("kind") not in context.cluster_scoped_kinds and not metadata.get("namespace"):
        metadata["namespace"] = context.default_namespace
    return body
