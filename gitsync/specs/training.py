"""``TrainingRun``: a distributed training job (a Kubeflow TFJob or PyTorchJob, or a
Kubeflow Trainer v2 TrainJob when it names a runtime instead of a framework).

A run's pods are written once as shared defaults at ``spec`` level and adjusted per
replica role under ``spec.roles`` (a parameter server without the workers' GPU, a
chief that alone mounts a volume), so the common case stays a few lines. Every field
left out renders nothing and the Training Operator's own default applies (see
``pkg/apis/kubeflow.org/v1/*_defaults.go`` in v1.9).

The pod's core/v1 types (volumes, mounts, env, placement, security contexts) are
:mod:`gitsync.specs.pod`'s, the same a ModelDeployment's pods use, so both kinds spell
and check them alike.

A TrainJob takes what Trainer v2.3's API lets a job say (the trainer's image, command,
env, size; the initializers; suspend and the deadline; pod fields through
runtimePatches); a field it has no place for is refused by name rather than dropped.

A changed spec starts a new run (runs are immutable); :mod:`gitsync.training` decides
schedules and which run a model serves, :mod:`gitsync.render` writes the job.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from gitsync.schedule import ConcurrencyPolicy, check_crontab
from gitsync.specs.common import (
    DnsLabel,
    Metadata,
    Override,
    QuantityValue,
    Resources,
    StrictModel,
    closest_name,
)
from gitsync.specs.pod import (
    Affinity,
    ContainerSecurityContext,
    Env,
    PodSecurityContext,
    Toleration,
    TopologySpreadConstraint,
    Volume,
    VolumeMount,
)

__all__ = [
    "ElasticPolicy",
    "EnvFromSource",
    "Initializer",
    "InitializerStep",
    "RoleOverrides",
    "RunPolicy",
    "RuntimeRef",
    "SchedulingPolicy",
    "TrainingMetadata",
    "TrainingRun",
    "TrainingRunSpec",
    "Workload",
]


RFC1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

_REPLICA_ROLES: dict[str, frozenset[str]] = {
    "tensorflow": frozenset({"chief", "worker", "ps", "evaluator"}),
    "pytorch": frozenset({"master", "worker"}),
}

RestartPolicy = Literal["Always", "OnFailure", "Never", "ExitCode"]


class SourceReference(StrictModel):
    name: str
    optional: bool | None = None


class EnvFromSource(StrictModel):
    """Every key of a Secret or ConfigMap as a variable (core/v1 EnvFromSource)."""

    secret_ref: SourceReference | None = None
    config_map_ref: SourceReference | None = None
    prefix: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("envFrom needs exactly one of secretRef or configMapRef")
        return self


class Workload(StrictModel):
    """What a role's pods may set: the container (image to volumeMounts) and the pod.

    At ``spec`` level these are the defaults of every role; under ``spec.roles.<role>``
    they override them: scalars and lists replace, while env, nodeSelector and the pod
    labels and annotations merge key by key, volumes by name and volumeMounts by
    mountPath (the role's entry wins), and tolerations add up.
    """

    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: Env | None = None
    env_from: list[EnvFromSource] | None = None
    resources: Resources | None = None
    security_context: ContainerSecurityContext | None = None
    working_dir: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    restart_policy: RestartPolicy | None = Field(
        default=None, description="Unset: Never for TFJob, OnFailure for PyTorchJob"
    )
    # Before volumeMounts, so that a mount's check sees the volumes.
    volumes: list[Volume] | None = None
    volume_mounts: list[VolumeMount] | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[Toleration] | None = None
    affinity: Affinity | None = None
    priority_class_name: str | None = None
    topology_spread_constraints: list[TopologySpreadConstraint] | None = None
    scheduler_name: str | None = Field(default=None, description="e.g. volcano, for gangs")
    service_account_name: DnsLabel | None = None
    image_pull_secrets: list[DnsLabel] | None = Field(
        default=None, description="Names of Secrets in the run's namespace"
    )
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    pod_security_context: PodSecurityContext | None = None
    pod_labels: dict[str, str] | None = None
    pod_annotations: dict[str, str] | None = Field(
        default=None, description="e.g. sidecar.istio.io/inject: 'false'"
    )

    @field_validator("volumes")
    @classmethod
    def _unique_volumes(cls, volumes: list[Volume] | None) -> list[Volume] | None:
        names = [volume.name for volume in volumes or []]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"volume {twice[0]} is declared twice")
        return volumes


class RoleOverrides(StrictModel):
    """Per-role changes to the shared defaults; roles not named use them as they are."""

    chief: Workload | None = None
    worker: Workload | None = None
    ps: Workload | None = None
    evaluator: Workload | None = None
    master: Workload | None = None

    def named(self) -> dict[str, Workload]:
        return {
            role: getattr(self, role) for role in type(self).model_fields if getattr(self, role)
        }


class SchedulingPolicy(StrictModel):
    """Gang scheduling (Volcano, scheduler-plugins) and queues."""

    min_available: int | None = Field(default=None, ge=1)
    queue: str | None = None
    min_resources: dict[str, QuantityValue] | None = None
    priority_class: str | None = None
    schedule_timeout_seconds: int | None = Field(default=None, ge=1)


class RunPolicy(StrictModel):
    backoff_limit: int | None = Field(default=None, ge=0)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    clean_pod_policy: Literal["None", "Running", "All"] | None = Field(
        default=None, description="Unset: None (the operator's default)"
    )
    suspend: bool | None = None
    scheduling_policy: SchedulingPolicy | None = None
    managed_by: Literal["kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue"] | None = None


class RendezvousConf(StrictModel):
    key: str
    value: str


class ElasticPolicy(StrictModel):
    """PyTorch elastic training (torchrun's rendezvous). ``nProcPerNode`` is not here:
    the operator deprecated it for ``spec.nprocPerNode``."""

    min_replicas: int | None = Field(default=None, ge=1)
    max_replicas: int | None = Field(default=None, ge=1)
    rdzv_backend: Literal["c10d", "etcd", "etcd-v2"] | None = None
    rdzv_port: int | None = Field(default=None, ge=1, le=65535)
    rdzv_host: str | None = None
    rdzv_id: str | None = None
    rdzv_conf: list[RendezvousConf] | None = None
    standalone: bool | None = None
    max_restarts: int | None = Field(default=None, ge=0)
    metrics: list[dict[str, Any]] | None = Field(
        default=None, description="autoscaling/v2 MetricSpecs for the operator's HPA"
    )

    @model_validator(mode="after")
    def _bounds(self) -> ElasticPolicy:
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and low > high:
            raise ValueError(f"minReplicas ({low}) is above maxReplicas ({high})")
        return self


def _check_nproc(value: str | int) -> str | int:
    if isinstance(value, int) and value < 1:
        raise ValueError("nprocPerNode must be at least 1")
    if isinstance(value, str) and value not in {"auto", "cpu", "gpu"} and not value.isdigit():
        raise ValueError(f"{value!r} is not auto, cpu, gpu or a number of processes")
    return value


class RuntimeRef(StrictModel):
    """The Kubeflow Trainer runtime a TrainJob runs on (e.g. ``torch-distributed``)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = Field(
        default="ClusterTrainingRuntime",
        description="A TrainingRuntime must be in the run's namespace",
    )


#: What the TrainJob CRD accepts as a storageUri (any scheme; the initializer decides).
_ANY_URI: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://.+$")


def _check_uri(value: str) -> str:
    if not _ANY_URI.match(value):
        raise ValueError(f"{value!r} is not a URI (e.g. hf://org/dataset, s3://bucket/path)")
    return value


class InitializerStep(StrictModel):
    storage_uri: Annotated[str, StringConstraints(max_length=2048), AfterValidator(_check_uri)]
    env: Env | None = None
    secret_ref: DnsLabel | None = Field(
        default=None, description="A Secret in the run's namespace with the credentials"
    )


class Initializer(StrictModel):
    """What the runtime's initializer steps download before training (hf://, s3://)."""

    dataset: InitializerStep | None = None
    model: InitializerStep | None = None


#: Fields a TrainJob has no place for: the runtime decides them. Each is refused by
#: name, so a TFJob spec given a runtimeRef says what to drop.
_NOT_FOR_TRAINJOB: Final = (
    ("replicas", "the runtime's replicated jobs run it; give numNodes"),
    ("roles", "a TrainJob has one trainer; its pods are the runtime's"),
    ("restart_policy", "the runtime's Job template sets it"),
    ("working_dir", "the runtime's container sets it"),
    ("image_pull_policy", "the runtime's container sets it"),
    ("priority_class_name", "the runtime sets it (runtimePatches cannot)"),
    ("scheduler_name", "the runtime sets it (runtimePatches cannot)"),
    ("env_from", "a TrainJob's trainer takes env only; give each variable under env"),
    ("topology_spread_constraints", "the runtime sets them (runtimePatches cannot)"),
    ("success_policy", "it is a TFJob field"),
    ("enable_dynamic_worker", "it is a TFJob field"),
    ("elastic_policy", "it is a PyTorchJob field"),
)
_RUN_POLICY_NOT_FOR_TRAINJOB: Final = (
    "backoff_limit",
    "ttl_seconds_after_finished",
    "clean_pod_policy",
    "scheduling_policy",
    "managed_by",
)


def _field_errors(errors: list[tuple[tuple[str | int, ...], str, object]]) -> ValidationError:
    """Errors at the fields they are about (wire names), not at the spec that holds
    them: a check across fields still points at the line to change."""
    return ValidationError.from_exception_data(
        "TrainingRunSpec",
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}),
                loc=loc,
                input=value,
            )
            for loc, message, value in errors
        ],
    )


class TrainingRunSpec(Workload):
    framework: Literal["tensorflow", "pytorch"] | None = Field(
        default=None, description="tensorflow -> TFJob, pytorch -> PyTorchJob"
    )
    runtime_ref: RuntimeRef | None = Field(
        default=None, description="Instead of framework: a Kubeflow Trainer v2 TrainJob"
    )
    # The shared defaults that existed before roles keep their old defaults: a run's
    # name hashes the spec, and an upgrade must not rename (restart) existing runs.
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: Env = Field(default_factory=dict)
    replicas: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: {"worker": 1})
    roles: RoleOverrides | None = Field(
        default=None, description="Per-role overrides of the fields above, by role"
    )
    output: str | None = Field(
        default=None, description="Where the run writes its model; {run} is the run's name"
    )
    run_policy: RunPolicy = Field(default_factory=RunPolicy)
    success_policy: Literal["AllWorkers"] | None = Field(
        default=None, description="TensorFlow; unset: the chief (else worker 0) decides"
    )
    enable_dynamic_worker: bool | None = Field(default=None, description="TensorFlow")
    elastic_policy: ElasticPolicy | None = Field(default=None, description="PyTorch")
    nproc_per_node: Annotated[str | int, AfterValidator(_check_nproc)] | None = Field(
        default=None, description="PyTorch, TrainJob (a number): processes per pod; unset: auto"
    )
    num_nodes: int | None = Field(default=None, ge=1, description="TrainJob: training nodes")
    initializer: Initializer | None = Field(default=None, description="TrainJob")
    schedule: Annotated[str, AfterValidator(check_crontab)] | None = Field(
        default=None, description="5-field cron (UTC): start a new run at every tick"
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default="Forbid", description="At a tick while a run is active: skip, replace or add one"
    )
    history_limit: int = Field(
        default=10, ge=1, description="Finished runs kept, in the cluster and the status"
    )
    overrides: list[Override] = Field(default_factory=list)

    @field_validator("replicas")
    @classmethod
    def _roles_fit_framework(cls, replicas: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        framework = info.data.get("framework")
        if framework is None:  # invalid (reported there), or a TrainJob (see _fits_target)
            return replicas
        allowed = _REPLICA_ROLES[framework]
        unknown = sorted(set(replicas) - allowed)
        if unknown:
            hint = closest_name(unknown[0], allowed)
            raise ValueError(
                f"replica role(s) {', '.join(unknown)} unknown for {framework}; "
                f"use {', '.join(sorted(allowed))}" + (f" (did you mean {hint!r}?)" if hint else "")
            )
        if framework == "pytorch" and replicas.get("master", 0) > 1:
            raise ValueError("pytorch runs have at most one master")
        if not any(replicas.values()):
            raise ValueError("a run needs at least one replica")
        return replicas

    @field_validator("roles")
    @classmethod
    def _overrides_name_running_roles(
        cls, roles: RoleOverrides | None, info: ValidationInfo
    ) -> RoleOverrides | None:
        framework, replicas = info.data.get("framework"), info.data.get("replicas")
        if roles is None or framework is None or replicas is None:
            return roles
        shared_volumes = [volume.name for volume in info.data.get("volumes") or []]
        for role, workload in roles.named().items():
            if role not in _REPLICA_ROLES[framework]:
                raise ValueError(f"role {role} is not a {framework} role")
            if not replicas.get(role):
                raise ValueError(f"role {role} has overrides but no replicas; add it to replicas")
            own = [volume.name for volume in workload.volumes or []]
            _check_mounts(workload.volume_mounts, [*shared_volumes, *own], who=f"role {role}")
        return roles

    @field_validator("volume_mounts")
    @classmethod
    def _mounts_name_volumes(
        cls, mounts: list[VolumeMount] | None, info: ValidationInfo
    ) -> list[VolumeMount] | None:
        # A shared mount needs a shared volume: a role's own volume is not in the others.
        _check_mounts(mounts, [v.name for v in info.data.get("volumes") or []], who="every role")
        return mounts

    @field_validator("success_policy", "enable_dynamic_worker")
    @classmethod
    def _tensorflow_only(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and info.data.get("framework") == "pytorch":
            raise ValueError(f"{to_camel(info.field_name or '')} is a TFJob field, not pytorch's")
        return value

    @field_validator("elastic_policy", "nproc_per_node")
    @classmethod
    def _pytorch_only(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and info.data.get("framework") == "tensorflow":
            raise ValueError(
                f"{to_camel(info.field_name or '')} is a PyTorchJob field, not tensorflow's"
            )
        return value

    @field_validator("elastic_policy")
    @classmethod
    def _elastic_workers(cls, value: ElasticPolicy | None, info: ValidationInfo) -> object:
        # The operator's webhook: elastic training scales the Worker replicas.
        if value is not None and not (info.data.get("replicas") or {}).get("worker"):
            raise ValueError("elasticPolicy needs worker replicas")
        return value

    @model_validator(mode="after")
    def _fits_target(self) -> TrainingRunSpec:
        errors: list[tuple[tuple[str | int, ...], str, object]] = []
        if self.framework is None and self.runtime_ref is None:
            message = "give framework (TFJob, PyTorchJob) or runtimeRef (TrainJob)"
            errors.append((("framework",), message, None))
        elif self.framework is not None and self.runtime_ref is not None:
            message = "give framework (TFJob, PyTorchJob) or runtimeRef (TrainJob), not both"
            errors.append((("runtimeRef",), message, None))
        elif self.runtime_ref is not None:
            errors += self._trainjob_errors()
        else:
            for field in ("num_nodes", "initializer"):
                if getattr(self, field) is not None:
                    message = f"{to_camel(field)} is for a TrainJob (runtimeRef)"
                    errors.append(((to_camel(field),), message, getattr(self, field)))
            # The operator's webhook rejects a container without one.
            overrides = self.roles.named() if self.roles else {}
            for role, workload in self.workloads().items():
                if not workload.image:
                    own = overrides.get(role)
                    where = (
                        ("roles", role, "image") if own and own.image is not None else ("image",)
                    )
                    message = f"role {role} has no image; set spec.image or its own"
                    errors.append((where, message, None))
        if errors:
            raise _field_errors(errors)
        return self

    def _trainjob_errors(self) -> list[tuple[tuple[str | int, ...], str, object]]:
        errors: list[tuple[tuple[str | int, ...], str, object]] = []
        for field, why in _NOT_FOR_TRAINJOB:
            if field in self.model_fields_set and getattr(self, field) is not None:
                message = f"{to_camel(field)} is not for a TrainJob: {why}"
                errors.append(((to_camel(field),), message, getattr(self, field)))
        for field in _RUN_POLICY_NOT_FOR_TRAINJOB:
            if getattr(self.run_policy, field) is not None:
                message = f"runPolicy.{to_camel(field)} is not for a TrainJob"
                errors.append((("runPolicy", to_camel(field)), message, None))
        if isinstance(self.nproc_per_node, str) and not self.nproc_per_node.isdigit():
            message = "a TrainJob's nprocPerNode is a number (unset: the runtime's, auto for torch)"
            errors.append((("nprocPerNode",), message, self.nproc_per_node))
        return errors

    def workloads(self) -> dict[str, Workload]:
        """Each running role (sorted) and what its pods are: the defaults with its
        overrides applied as :class:`Workload` says."""
        overrides = self.roles.named() if self.roles else {}
        return {
            role: _overlay(self, overrides.get(role))
            for role, count in sorted(self.replicas.items())
            if count > 0
        }


def _check_mounts(mounts: list[VolumeMount] | None, volumes: list[str], *, who: str) -> None:
    for mount in mounts or []:
        if mount.name not in volumes:
            hint = closest_name(mount.name, volumes)
            raise ValueError(
                f"{who} mounts volume {mount.name}, which is not among its volumes"
                + (f"; did you mean {hint!r}?" if hint else "")
            )


#: How a role's value combines with the shared one; any other field is replaced.
_MERGED_BY_KEY: Final = frozenset({"env", "node_selector", "pod_labels", "pod_annotations"})
_MERGED_BY_ITEM: Final = {"volumes": "name", "volume_mounts": "mount_path"}
_ADDED: Final = frozenset({"tolerations"})


def _overlay(shared: Workload, role: Workload | None) -> Workload:
    values: dict[str, Any] = {}
    for field in Workload.model_fields:
        base, own = getattr(shared, field), getattr(role, field) if role else None
        if own is None:
            values[field] = base
        elif base is None:
            values[field] = own
        elif field in _MERGED_BY_KEY:
            values[field] = {**base, **own}
        elif field in _MERGED_BY_ITEM:
            key = _MERGED_BY_ITEM[field]
            merged = {getattr(item, key): item for item in [*base, *own]}
            values[field] = list(merged.values())
        elif field in _ADDED:
            values[field] = [*base, *(item for item in own if item not in base)]
        else:
            values[field] = own
    # Every part was validated where it was written; the combination needs no more.
    return Workload.model_construct(**values)


class TrainingMetadata(Metadata):
    # The run name appends "-" and 8 hex digits to it, within the 63-character limit,
    # and starts with a letter: the operators' webhooks and the TrainJob CRD check
    # jobs' names as RFC 1035 labels.
    name: Annotated[str, StringConstraints(pattern=RFC1035_LABEL, max_length=54)]


class TrainingRun(StrictModel):
    """A training job (TFJob, PyTorchJob or TrainJob); a changed spec starts a new run."""

    api_version: Literal["gitsync.io/v1alpha1"]
    kind: Literal["TrainingRun"]
    metadata: TrainingMetadata
    spec: TrainingRunSpec
