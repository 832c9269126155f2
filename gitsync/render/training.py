"""A ``TrainingRun`` rendered as a Kubeflow ``TFJob`` or ``PyTorchJob``.

The job is named after a hash of its spec (runs are immutable: a changed spec is a
new run; a scheduled run adds its tick to the hash).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel

from gitsync.render.context import ANNOTATION_SCHEDULED_AT, LABEL_TRAINING_RUN, RenderContext
from gitsync.render.pod import canonical, container_spec, object_metadata
from gitsync.schedule import format_time
from gitsync.specs import TrainingRun
from gitsync.specs.training import Workload
from gitsync.types import ObjectRef

__all__ = ["output_uri", "run_name", "training_job"]

_TF_ROLES: Final = {"chief": "Chief", "worker": "Worker", "ps": "PS", "evaluator": "Evaluator"}
_TORCH_ROLES: Final = {"master": "Master", "worker": "Worker"}
_REPLICA_FIELD: Final = {"TFJob": "tfReplicaSpecs", "PyTorchJob": "pytorchReplicaSpecs"}


#: Fields that say when runs start and how many are kept, not what a run does:
#: changing them must not start a new run, so they stay out of the run's hash.
_WHEN_FIELDS: Final = frozenset({"schedule", "concurrency_policy", "history_limit"})


#: Fields added after run names were first hashed: hashed only when set, so that a
#: gitsync upgrade names (and so keeps) every existing run as before.
_ADDED_FIELDS: Final = (
    ("roles",),
    ("workingDir",),
    ("imagePullPolicy",),
    ("volumeMounts",),
    ("restartPolicy",),
    ("volumes",),
    ("nodeSelector",),
    ("tolerations",),
    ("affinity",),
    ("priorityClassName",),
    ("serviceAccountName",),
    ("podLabels",),
    ("podAnnotations",),
    ("successPolicy",),
    ("enableDynamicWorker",),
    ("elasticPolicy",),
    ("nprocPerNode",),
    ("runPolicy", "cleanPodPolicy"),
    ("runPolicy", "suspend"),
    ("runPolicy", "schedulingPolicy"),
    ("runPolicy", "managedBy"),
)


def _hashed_view(run: TrainingRun) -> dict[str, Any]:
    view = run.spec.model_dump(mode="json", exclude=set(_WHEN_FIELDS))
    for *parents, field in _ADDED_FIELDS:
        holder = view
        for parent in parents:
            holder = holder[parent]
        if holder.get(field) is None:
            holder.pop(field, None)
    return view


def run_name(run: TrainingRun, *, tick: datetime | None = None) -> str:
    """``<name>-<8 hex of the spec hash>``: the same spec always names the same run.

    A scheduled run hashes its tick in too, so each tick names its own run and a
    restarted daemon names it again the same way.
    """
    digest = hashlib.sha256(canonical(_hashed_view(run))).hexdigest()
    if tick is not None:
        digest = hashlib.sha256(f"{digest}{format_time(tick)}".encode()).hexdigest()
    return f"{run.metadata.name}-{digest[:8]}"


def _dumped(value: BaseModel | None) -> Any:
    return None if value is None else value.model_dump(mode="json", exclude_none=True)


def _pod_template(workload: Workload, *, container_name: str, output: str | None) -> dict[str, Any]:
    env = dict(workload.env or {})
    if output:
        env["OUTPUT_URI"] = output
    container = container_spec(
        name=container_name,
        image=workload.image or "",
        command=workload.command or [],
        args=workload.args or [],
        env=env,
        resources=workload.resources,
    )
    container.update(
        _present(
            workingDir=workload.working_dir,
            imagePullPolicy=workload.image_pull_policy,
            volumeMounts=[_dumped(mount) for mount in workload.volume_mounts or []],
        )
    )
    pod_spec = {
        "containers": [container],
        **_present(
            volumes=[_dumped(volume) for volume in workload.volumes or []],
            nodeSelector=workload.node_selector,
            tolerations=[_dumped(toleration) for toleration in workload.tolerations or []],
            affinity=_dumped(workload.affinity),
            priorityClassName=workload.priority_class_name,
            serviceAccountName=workload.service_account_name,
        ),
    }
    metadata = _present(labels=workload.pod_labels, annotations=workload.pod_annotations)
    return {**({"metadata": metadata} if metadata else {}), "spec": pod_spec}


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that are set: left out, the API's (or the operator's) default applies."""
    return {key: value for key, value in fields.items() if value not in (None, [], {})}


def training_job(run: TrainingRun, context: RenderContext) -> dict[str, Any]:
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
    output = spec.output.replace("{run}", name) if spec.output else None
    replica_specs = {
        roles[role]: {
            "replicas": spec.replicas[role],
            **_present(restartPolicy=workload.restart_policy),
            "template": _pod_template(workload, container_name=container_name, output=output),
        }
        for role, workload in spec.workloads().items()
    }
    job_spec: dict[str, Any] = {
        **_present(runPolicy=_dumped(spec.run_policy)),
        _REPLICA_FIELD[kind]: replica_specs,
        **_present(
            successPolicy=spec.success_policy,
            enableDynamicWorker=spec.enable_dynamic_worker,
            elasticPolicy=_dumped(spec.elastic_policy),
            # The CRD's type is a string ("auto", "gpu", "4").
            nprocPerNode=None if spec.nproc_per_node is None else str(spec.nproc_per_node),
        ),
    }
    metadata = object_metadata(run, name=name, namespace=namespace)
    metadata["labels"] = {**metadata.get("labels", {}), LABEL_TRAINING_RUN: run.metadata.name}
    if tick is not None:
        metadata["annotations"] = {
            **metadata.get("annotations", {}),
            ANNOTATION_SCHEDULED_AT: format_time(tick),
        }
    return {"apiVersion": "kubeflow.org/v1", "kind": kind, "metadata": metadata, "spec": job_spec}


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
