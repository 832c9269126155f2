"""A ``TrainingRun`` rendered as a Kubeflow ``TFJob`` or ``PyTorchJob`` (its
``framework``), or a Kubeflow Trainer v2 ``TrainJob`` (its ``runtimeRef``).

The job is named after a hash of its spec (runs are immutable: a changed spec is a
new run; a scheduled run adds its tick to the hash). Only what the spec sets is
written, so the operator's defaults apply to the rest; a TrainJob's pod fields go into
one ``runtimePatches`` entry, the place Trainer v2.3 gives a job to adjust its
runtime's pods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel

from gitsync.render.context import ANNOTATION_SCHEDULED_AT, LABEL_TRAINING_RUN, RenderContext
from gitsync.render.pod import (
    canonical,
    container_spec,
    env_list,
    object_metadata,
    resource_requirements,
    secret_refs,
    wire,
)
from gitsync.schedule import format_time
from gitsync.specs import TrainingRun
from gitsync.specs.training import InitializerStep, TrainingRunSpec, Workload
from gitsync.types import ObjectRef

__all__ = ["JOB_KINDS", "TRAINJOB_API", "output_uri", "run_name", "training_job"]

TRAINJOB_API: Final = "trainer.kubeflow.org/v1alpha1"
#: The kinds a TrainingRun renders to: its runs.
JOB_KINDS: Final = frozenset({"TFJob", "PyTorchJob", "TrainJob"})
#: The trainer step's replicated job and container in Kubeflow's runtimes.
TRAINER_NODE: Final = "node"
#: Who owns gitsync's entry in a TrainJob's runtimePatches (they are keyed by manager).
RUNTIME_PATCH_MANAGER: Final = "gitsync.io/gitsync"

_TF_ROLES: Final = {"chief": "Chief", "worker": "Worker", "ps": "PS", "evaluator": "Evaluator"}
_TORCH_ROLES: Final = {"master": "Master", "worker": "Worker"}
_REPLICA_FIELD: Final = {"TFJob": "tfReplicaSpecs", "PyTorchJob": "pytorchReplicaSpecs"}


#: Fields that say when runs start and how many are kept, not what a run does:
#: changing them must not start a new run, so they stay out of the run's hash.
_WHEN_FIELDS: Final = frozenset({"schedule", "concurrency_policy", "history_limit"})


#: The spec's fields when run names were first hashed, which hashed an unset field as
#: null. They still are, so an upgrade names (and so keeps) every existing run as
#: before; every other field, at any depth, is hashed only when set, so a field added
#: to the spec (or to a role, a volume, ...) never renames a run that does not use it.
_FIRST_HASHED: Final = ("resources", "output")
_FIRST_HASHED_RUN_POLICY: Final = (
    "backoffLimit",
    "activeDeadlineSeconds",
    "ttlSecondsAfterFinished",
)


def _hashed_view(run: TrainingRun) -> dict[str, Any]:
    view = run.spec.model_dump(mode="json", exclude=set(_WHEN_FIELDS), exclude_none=True)
    # No overrides hash as before the field existed, so existing runs keep their names.
    if not view.get("overrides"):
        view.pop("overrides", None)
    for field in _FIRST_HASHED:
        view.setdefault(field, None)
    run_policy = view.setdefault("runPolicy", {})
    for field in _FIRST_HASHED_RUN_POLICY:
        run_policy.setdefault(field, None)
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
    return None if value is None else wire(value)


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
            envFrom=[_dumped(source) for source in workload.env_from or []],
            workingDir=workload.working_dir,
            imagePullPolicy=workload.image_pull_policy,
            volumeMounts=[_dumped(mount) for mount in workload.volume_mounts or []],
            securityContext=_dumped(workload.security_context),
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
            topologySpreadConstraints=[
                _dumped(constraint) for constraint in workload.topology_spread_constraints or []
            ],
            schedulerName=workload.scheduler_name,
            serviceAccountName=workload.service_account_name,
            imagePullSecrets=secret_refs(workload.image_pull_secrets),
            terminationGracePeriodSeconds=workload.termination_grace_period_seconds,
            securityContext=_dumped(workload.pod_security_context),
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
    metadata = object_metadata(run, name=name, namespace=namespace)
    metadata["labels"] = {**metadata.get("labels", {}), LABEL_TRAINING_RUN: run.metadata.name}
    if tick is not None:
        metadata["annotations"] = {
            **metadata.get("annotations", {}),
            ANNOTATION_SCHEDULED_AT: format_time(tick),
        }
    output = spec.output.replace("{run}", name) if spec.output else None
    if spec.runtime_ref is not None:
        return {
            "apiVersion": TRAINJOB_API,
            "kind": "TrainJob",
            "metadata": metadata,
            "spec": _train_job_spec(spec, output=output),
        }
    if spec.framework == "tensorflow":
        kind, container_name, roles = "TFJob", "tensorflow", _TF_ROLES
    else:
        kind, container_name, roles = "PyTorchJob", "pytorch", _TORCH_ROLES
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
    return {"apiVersion": "kubeflow.org/v1", "kind": kind, "metadata": metadata, "spec": job_spec}


def _train_job_spec(spec: TrainingRunSpec, *, output: str | None) -> dict[str, Any]:
    """A Kubeflow Trainer v2 TrainJob: the trainer's container and size, the
    initializers' sources, and the pod fields the runtime lets a job patch."""
    assert spec.runtime_ref is not None  # noqa: S101 - the caller checked
    env = dict(spec.env)
    if output:
        env["OUTPUT_URI"] = output
    trainer = _present(
        image=spec.image,
        command=spec.command,
        args=spec.args,
        env=env_list(env),
        numNodes=spec.num_nodes,
        resourcesPerNode=resource_requirements(spec.resources),
        numProcPerNode=None if spec.nproc_per_node is None else int(spec.nproc_per_node),
    )
    initializer = _present(
        **{
            step: _initializer_step(source)
            for step, source in (
                ("dataset", spec.initializer.dataset if spec.initializer else None),
                ("model", spec.initializer.model if spec.initializer else None),
            )
        }
    )
    policy = spec.run_policy
    return {
        # apiGroup and kind as written: left out, the TrainJob CRD defaults them
        # (trainer.kubeflow.org, ClusterTrainingRuntime), as for a hand-written TrainJob.
        "runtimeRef": {
            "name": spec.runtime_ref.name,
            **(
                {"kind": spec.runtime_ref.kind}
                if "kind" in spec.runtime_ref.model_fields_set
                else {}
            ),
        },
        **_present(
            trainer=trainer,
            initializer=initializer,
            runtimePatches=_runtime_patches(spec),
            suspend=policy.suspend,
            activeDeadlineSeconds=policy.active_deadline_seconds,
        ),
    }


def _initializer_step(source: InitializerStep | None) -> dict[str, Any] | None:
    if source is None:
        return None
    return {
        "storageUri": source.storage_uri,
        **_present(
            env=env_list(source.env or {}),
            secretRef={"name": source.secret_ref} if source.secret_ref else None,
        ),
    }


def _runtime_patches(spec: TrainingRunSpec) -> list[dict[str, Any]]:
    """The pod fields, as one patch of the runtime's trainer job (``node``, the name
    every runtime Kubeflow ships gives its trainer step and container)."""
    pod_spec = _present(
        serviceAccountName=spec.service_account_name,
        volumes=[_dumped(volume) for volume in spec.volumes or []],
        containers=[
            {
                "name": TRAINER_NODE,
                **_present(
                    volumeMounts=[_dumped(mount) for mount in spec.volume_mounts or []],
                    securityContext=_dumped(spec.security_context),
                ),
            }
        ]
        if spec.volume_mounts or spec.security_context
        else None,
        imagePullSecrets=secret_refs(spec.image_pull_secrets),
        nodeSelector=spec.node_selector,
        affinity=_dumped(spec.affinity),
        tolerations=[_dumped(toleration) for toleration in spec.tolerations or []],
        terminationGracePeriodSeconds=spec.termination_grace_period_seconds,
        securityContext=_dumped(spec.pod_security_context),
    )
    pod = _present(
        metadata=_present(labels=spec.pod_labels, annotations=spec.pod_annotations),
        spec=pod_spec,
    )
    if not pod:
        return []
    job = {"name": TRAINER_NODE, "template": {"spec": {"template": pod}}}
    return [
        {
            "manager": RUNTIME_PATCH_MANAGER,
            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [job]}}},
        }
    ]


def output_uri(job: Mapping[str, Any]) -> str | None:
    """The ``OUTPUT_URI`` a rendered (or live) training job was given, if any."""
    spec = job.get("spec") or {}
    if job.get("kind") == "TrainJob":
        containers = [spec.get("trainer") or {}]
    else:
        containers = [
            container
            for replica in (spec.get(_REPLICA_FIELD.get(str(job.get("kind")), "")) or {}).values()
            for container in ((replica.get("template") or {}).get("spec") or {}).get("containers")
            or []
        ]
    for container in containers:
        for variable in container.get("env") or []:
            if variable.get("name") == "OUTPUT_URI":
                return str(variable.get("value"))
    return None
