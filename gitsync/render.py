"""Render validated entries into the Kubernetes objects gitsync applies.

Pure functions from specs to plain dicts (apply bodies), so every rendering is a
golden file away from a test. A ``ModelDeployment`` becomes a KServe
``InferenceService``; a ``TrainingRun`` becomes a Kubeflow ``TFJob`` or
``PyTorchJob`` named after a hash of its spec (runs are immutable: a changed spec is
a new run); any other object passes through. Every object is stamped with who
manages it, which gitsync instance owns it, where it came from, and a hash of
itself, which is how a no-op cycle recognises an unchanged object without asking
the API server.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from gitsync.loading import Entry
from gitsync.specs import ModelDeployment, Resources, TrainingRun

__all__ = [
    "ANNOTATION_APPLIED_HASH",
    "ANNOTATION_SOURCE_COMMIT",
    "ANNOTATION_SOURCE_PATH",
    "ANNOTATION_SPEC_KIND",
    "CLUSTER_SCOPED_KINDS",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_TRAINING_RUN",
    "MANAGER",
    "RenderContext",
    "ResourceKey",
    "applied_hash",
    "comparable",
    "render",
    "resource_key",
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


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    """Identity of a Kubernetes object; the API version is left out on purpose, since
    one object is served under several versions of its group."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def resource_key(obj: Mapping[str, Any]) -> ResourceKey:
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    metadata = obj.get("metadata") or {}
    return ResourceKey(
        group=group,
        kind=str(obj.get("kind", "")),
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name", "")),
    )


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What rendering needs besides the entry itself."""

    instance: str
    default_namespace: str
    #: The commit that last changed each source file (not the head commit, so that an
    #: unrelated commit changes no annotation and causes no write).
    source_commits: Mapping[str, str] = field(default_factory=dict)
    cluster_scoped_kinds: frozenset[str] = CLUSTER_SCOPED_KINDS


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


def run_name(run: TrainingRun) -> str:
    """``<name>-<8 hex of the spec hash>``: the same spec always names the same run."""
    digest = hashlib.sha256(_canonical(run.spec.model_dump(mode="json"))).hexdigest()
    return f"{run.metadata.name}-{digest[:8]}"


def render(entry: Entry, context: RenderContext) -> dict[str, Any]:
    """The apply body for one entry, stamped with gitsync's labels and annotations."""
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
    model: dict[str, Any] = {
        "modelFormat": {"name": source.format},
        "storageUri": source.storage_uri,
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
    name = run_name(run)
    spec = run.spec
    if spec.framework == "tensorflow":
        kind, replica_field, container_name, roles = (
            "TFJob",
            "tfReplicaSpecs",
            "tensorflow",
            _TF_ROLES,
        )
    else:
        kind, replica_field, container_name, roles = (
            "PyTorchJob",
            "pytorchReplicaSpecs",
            "pytorch",
            _TORCH_ROLES,
        )
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
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"runPolicy": run_policy, replica_field: replica_specs},
    }


def _manifest(entry: Entry, context: RenderContext) -> dict[str, Any]:
    body = copy.deepcopy(dict(entry.manifest or {}))
    metadata = body.setdefault("metadata", {})
    if body.get("kind") not in context.cluster_scoped_kinds and not metadata.get("namespace"):
        metadata["namespace"] = context.default_namespace
    return body
