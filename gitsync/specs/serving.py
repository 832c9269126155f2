"""``ModelDeployment``: a model served by a KServe InferenceService, and its rollout.

The fields mean what the InferenceService fields they render to mean in KServe
(see :mod:`gitsync.render`); a field left out is left to KServe's own default.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, model_validator

from gitsync.specs.common import (
    DNS1123_LABEL,
    Duration,
    Metadata,
    Override,
    PrometheusProvider,
    Provider,
    Resources,
    StrictModel,
    TrainingRunRef,
)
from gitsync.specs.pipeline import MetricGate, RunSelection, Upstream
from gitsync.specs.pod import Container, Env, PodSettings, Port, VolumeMount, kube_keys
from gitsync.types import ObjectRef

__all__ = [
    "DEPLOYMENT_MODE_ANNOTATION",
    "Analysis",
    "Art",
    "AutoScaling",
    "Batcher",
    "CanaryStep",
    "Component",
    "DeploymentMode",
    "Explainer",
    "Logger",
    "Metric",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelFormat",
    "ModelSource",
    "ModelStorageUri",
    "PrometheusProvider",
    "ProtocolVersion",
    "Provider",
    "Replicas",
    "Rollout",
    "Scaling",
    "StorageLocation",
    "StorageSpec",
    "Transformer",
]

#: Model formats KServe's shipped ServingRuntimes understand (v0.20's config/runtimes).
ModelFormat = Literal[
    "sklearn",
    "xgboost",
    "lightgbm",
    "tensorflow",
    "pytorch",
    "onnx",
    "triton",
    "tensorrt",
    "huggingface",
    "pmml",
    "paddle",
    "mlflow",
    "openvino",
    "autogluon",
]

#: The inference protocols KServe v0.20 knows (``constants.InferenceServiceProtocol``).
ProtocolVersion = Literal["v1", "v2", "grpc-v1", "grpc-v2"]

#: How KServe runs the model: on Knative (scale to zero, revisions) or as a plain
#: Deployment with an HPA or KEDA. v0.20 calls them Knative and Standard and still
#: reads the older names Serverless and RawDeployment.
DeploymentMode = Literal["Serverless", "Standard"]
_OTHER_MODE_NAMES: Final = {
    "RawDeployment": "Standard",
    "Knative": "Serverless",
    "ModelMesh": None,
}


def _mode_named_as_gitsync_does(value: object) -> object:
    if isinstance(value, str) and value in _OTHER_MODE_NAMES:
        if (ours := _OTHER_MODE_NAMES[value]) is None:
            raise ValueError("ModelMesh is not supported: its models are not InferenceServices")
        raise ValueError(f"{value!r} is KServe's other name of {ours!r}: write {ours}")
    return value


DEPLOYMENT_MODE_ANNOTATION: Final = "serving.kserve.io/deploymentMode"

ScaleMetric = Literal["cpu", "memory", "concurrency", "rps"]
MetricTargetType = Literal["Utilization", "Value", "AverageValue"]

#: The schemes KServe v0.20's webhook and storage initializer accept for a model
#: (``SupportedStorageURIPrefixList``; Azure Blob is an ``https://`` URL).
_MODEL_SCHEMES: Final = (
    "gs://",
    "s3://",
    "pvc://",
    "file://",
    "https://",
    "http://",
    "hdfs://",
    "webhdfs://",
    "oci://",
    "oci+native://",
    "hf://",
)


def _check_model_uri(value: str) -> str:
    if not value.startswith(_MODEL_SCHEMES):
        schemes = ", ".join(_MODEL_SCHEMES)
        raise ValueError(f"{value!r} has no scheme KServe v0.20 reads ({schemes})")
    return value


ModelStorageUri = Annotated[str, AfterValidator(_check_model_uri)]

#: The CRD's pattern: an absolute path (KServe's default is /mnt/models).
_MOUNT_PATH: Final = r"^/.*"


class StorageLocation(StrictModel):
    """One of several models in one pod (``storageUris``), each at its mount path."""

    uri: ModelStorageUri
    mount_path: Annotated[str, StringConstraints(pattern=_MOUNT_PATH, max_length=255)] | None = None


class StorageSpec(StrictModel):
    """A model in a storage whose credentials KServe keeps in its storage-config
    secret: ``key`` names the entry, ``path`` the model within it."""

    key: str | None = None
    path: str | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    schema_path: str | None = None


class ModelSource(StrictModel):
    format: ModelFormat
    format_version: str | None = Field(
        default=None, description="modelFormat.version: major, major.minor or major.minor.patch"
    )
    storage_uri: ModelStorageUri | None = None
    storage: StorageSpec | None = None
    storage_uris: list[StorageLocation] = Field(default_factory=list)
    from_training_run: TrainingRunRef | None = Field(
        default=None,
        description="Serve the output of a Succeeded run of this TrainingRun "
        "(name, or namespace/name) instead of a fixed storageUri: the latest, or as "
        "`select` says, of the runs that pass every gate",
    )
    select: RunSelection | None = Field(
        default=None, description="With fromTrainingRun: which passing run (default: latest)"
    )
    gates: list[MetricGate] = Field(
        default_factory=list,
        description="With fromTrainingRun: bounds a run's reported metrics must meet",
    )
    from_model_deployment: Upstream | None = Field(
        default=None,
        description="Serve what this ModelDeployment serves, once it has been Ready "
        "(with no failing rollout) for healthyFor: promotion from staging",
    )
    runtime_version: str | None = None
    runtime: str | None = Field(default=None, description="ServingRuntime to use, by name")
    protocol_version: ProtocolVersion | None = Field(
        default=None,
        description="Default: v2 for formats whose shipped runtimes serve no v1 "
        "(onnx, triton, tensorrt, mlflow), else KServe's (v1)",
    )
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: Env = Field(default_factory=dict)
    ports: list[Port] = Field(default_factory=list)
    volume_mounts: list[VolumeMount] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        given = [
            name
            for name, value in (
                ("storageUri", self.storage_uri),
                ("storage", self.storage),
                ("storageUris", self.storage_uris or None),
                ("fromTrainingRun", self.from_training_run),
                ("fromModelDeployment", self.from_model_deployment),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of storageUri, storage, storageUris, fromTrainingRun or "
                "fromModelDeployment" + (f" (not {' and '.join(given)})" if given else "")
            )
        if self.from_training_run is None and (self.select is not None or self.gates):
            raise ValueError("select and gates choose among runs: they need fromTrainingRun")
        return self

    def upstream(self, namespace: str) -> ObjectRef | None:
        """The ModelDeployment this model is promoted from, if it is."""
        if self.from_model_deployment is None:
            return None
        source = self.from_model_deployment
        return ObjectRef.spec("ModelDeployment", source.namespace or namespace, source.name)

    @property
    def follows_another_instance(self) -> bool:
        """Promoted from a model another gitsync instance reconciles: declared in a
        repo (or folder) this one does not see."""
        source = self.from_model_deployment
        return source is not None and source.instance is not None

    def upstream_label(self, namespace: str) -> str | None:
        """The upstream in words, with its instance when it is another's."""
        if (ref := self.upstream(namespace)) is None or self.from_model_deployment is None:
            return None
        instance = self.from_model_deployment.instance
        return f"{ref} of instance {instance}" if instance else str(ref)

    def training_run(self, namespace: str) -> ObjectRef | None:
        """The TrainingRun this model comes from, if it does."""
        if self.from_training_run is None:
            return None
        owner, _, name = self.from_training_run.rpartition("/")
        return ObjectRef.spec("TrainingRun", owner or namespace, name)


class Replicas(StrictModel):
    """The older spelling of ``scaling.min`` and ``scaling.max``."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Replicas:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


AutoScalingMetric = Annotated[
    dict[str, Any],
    AfterValidator(
        kube_keys("MetricsSpec", ["resource", "external", "podmetric"], required=["type"])
    ),
]
AutoScalingBehavior = Annotated[
    dict[str, Any],
    AfterValidator(kube_keys("HorizontalPodAutoscalerBehavior", ["scaleUp", "scaleDown"])),
]


DeploymentStrategy = Annotated[
    dict[str, Any],
    AfterValidator(kube_keys("DeploymentStrategy", ["type", "rollingUpdate"])),
]


class AutoScaling(StrictModel):
    """KServe's HPA / KEDA block (Standard mode): metrics and behaviour as v0.20 has them."""

    metrics: list[AutoScalingMetric] = Field(default_factory=list)
    behavior: AutoScalingBehavior | None = None


class Scaling(Replicas):
    """How a component scales; every field left out is KServe's default: at least one
    replica, and no upper bound in Serverless mode. ``min: 0`` scales to zero."""

    #: KServe's names of these fields, for the "did you mean" of someone used to them.
    other_names: ClassVar[dict[str, str]] = {
        "minReplicas": "min",
        "maxReplicas": "max",
        "scaleMetric": "metric",
        "scaleMetricType": "metricType",
        "scaleTarget": "target",
    }

    metric: ScaleMetric | None = None
    metric_type: MetricTargetType | None = None
    target: int | None = Field(default=None, ge=1)
    container_concurrency: int | None = Field(default=None, ge=0)
    timeout: int | None = Field(default=None, ge=1, description="Request timeout, seconds")
    auto_scaling: AutoScaling | None = None


class LoggerStorage(StrictModel):
    key: str
    path: str
    parameters: dict[str, str] = Field(min_length=1)
    service_account_name: str | None = None


class Logger(StrictModel):
    """Send each request and/or response as a CloudEvent to ``url`` (or to storage)."""

    mode: Literal["all", "request", "response"] | None = None
    url: Annotated[str, StringConstraints(pattern=r"^https?://")] | None = None
    storage: LoggerStorage | None = None
    metadata_headers: list[str] = Field(default_factory=list)
    metadata_annotations: list[str] = Field(default_factory=list)
    batch_size: int | None = Field(default=None, ge=1)
    batch_interval: str | None = None
    marshaller_url: str | None = None


class Batcher(StrictModel):
    max_batch_size: int | None = Field(default=None, ge=1)
    max_latency: int | None = Field(default=None, ge=1, description="Milliseconds")
    timeout: int | None = Field(default=None, ge=1, description="Seconds")


class Component(PodSettings):
    """What every component (predictor, transformer, explainer) may say besides what
    it runs: its pods, how it scales, request logging and batching."""

    scaling: Scaling | None = None
    logger: Logger | None = None
    batcher: Batcher | None = None
    deployment_strategy: DeploymentStrategy | None = Field(
        default=None, description="Standard mode: the Deployment's rollout strategy"
    )


class Transformer(Component):
    """A custom pre/post-processing container (``image``), or several (``containers``)."""

    image: str | None = None
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: Env = Field(default_factory=dict)
    resources: Resources | None = None
    containers: list[Container] = Field(default_factory=list)
    storage_uris: list[StorageLocation] = Field(
        default_factory=list, description="Artifacts downloaded for the transformer"
    )

    @model_validator(mode="after")
    def _image_or_containers(self) -> Transformer:
        if (self.image is None) == (not self.containers):
            raise ValueError("give one of image (one container) or containers")
        if self.containers and (self.command or self.args or self.env or self.resources):
            raise ValueError("command, args, env and resources go inside each container")
        return self


class Art(StrictModel):
    """An Adversarial Robustness Toolbox explainer (KServe's ``explainer.art``)."""

    type: Literal["SquareAttack"]
    config: dict[str, str] = Field(default_factory=dict)
    storage_uri: ModelStorageUri | None = None
    runtime_version: str | None = None
    image: str | None = None
    args: list[str] = Field(default_factory=list)
    env: Env = Field(default_factory=dict)
    resources: Resources | None = None


class Explainer(Component):
    art: Art | None = None
    containers: list[Container] = Field(default_factory=list)
    storage_uris: list[StorageLocation] = Field(
        default_factory=list, description="Artifacts downloaded for the explainer"
    )

    @model_validator(mode="after")
    def _art_or_containers(self) -> Explainer:
        if (self.art is None) == (not self.containers):
            raise ValueError("give one of art or containers")
        return self


class CanaryStep(StrictModel):
    traffic: int = Field(ge=1, le=99, description="Percent of requests for the new revision")
    pause: Duration | Literal["indefinite"] = Field(
        default="0s", description="How long to hold this step; indefinite waits for a promote"
    )


class Metric(StrictModel):
    """One PromQL query and its bounds. With ``baselineQuery`` the check is relative:
    the canary's value may exceed the stable revision's by at most ``maxIncrease``."""

    name: Annotated[str, StringConstraints(pattern=DNS1123_LABEL)]
    query: str
    max: float | None = None
    min: float | None = None
    baseline_query: str | None = None
    max_increase: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _has_a_bound(self) -> Metric:
        if self.baseline_query is not None and self.max_increase is None:
            raise ValueError("baselineQuery needs maxIncrease")
        if self.max is None and self.min is None and self.max_increase is None:
            raise ValueError("a metric needs max, min or baselineQuery with maxIncrease")
        return self


class Analysis(StrictModel):
    interval: Duration = "30s"
    failure_limit: int = Field(default=2, ge=1)
    metrics: list[Metric] = Field(min_length=1)
    provider: Provider


class Rollout(StrictModel):
    strategy: Literal["direct", "canary"] = "direct"
    steps: list[CanaryStep] = Field(default_factory=list)
    progress_deadline: Duration = "10m"
    analysis: Analysis | None = None
    paused: bool = False
    on_failure: Literal["none", "revert"] = "none"

    @model_validator(mode="after")
    def _canary_has_steps(self) -> Rollout:
        if self.strategy == "canary" and not self.steps:
            raise ValueError("a canary rollout needs at least one step")
        if self.strategy == "direct" and (self.steps or self.analysis):
            raise ValueError("steps and analysis apply to strategy: canary only")
        return self


class ModelDeploymentSpec(Component):
    """The predictor's settings (a model, or custom ``containers``), and the optional
    transformer and explainer in front of it."""

    model: ModelSource | None = None
    containers: list[Container] = Field(
        default_factory=list, description="Custom predictor containers instead of a model"
    )
    resources: Resources | None = None
    replicas: Replicas | None = None
    deployment_mode: Annotated[
        DeploymentMode | None, BeforeValidator(_mode_named_as_gitsync_does)
    ] = Field(default=None, description="Default: the cluster's (KServe's defaultDeploymentMode)")
    transformer: Transformer | None = None
    explainer: Explainer | None = None
    rollout: Rollout = Field(default_factory=Rollout)
    overrides: list[Override] = Field(default_factory=list)

    @model_validator(mode="after")
    def _model_or_containers(self) -> ModelDeploymentSpec:
        if (self.model is None) == (not self.containers):
            raise ValueError("give one of model or containers (a custom predictor)")
        if self.containers and self.resources:
            raise ValueError("resources go inside each container of a custom predictor")
        if self.replicas is not None and self.scaling is not None:
            raise ValueError("replicas is the older spelling of scaling.min/max: give one")
        return self

    @property
    def predictor_scaling(self) -> Replicas | None:
        """The predictor's scaling, however it was spelt."""
        return self.scaling if self.scaling is not None else self.replicas

    @property
    def from_training_run(self) -> str | None:
        return self.model.from_training_run if self.model is not None else None

    def training_run(self, namespace: str) -> ObjectRef | None:
        """The TrainingRun the model comes from, if it does."""
        return self.model.training_run(namespace) if self.model is not None else None

    def upstream(self, namespace: str) -> ObjectRef | None:
        """The ModelDeployment the model is promoted from, if it is."""
        return self.model.upstream(namespace) if self.model is not None else None

    @property
    def resolved(self) -> bool:
        """Whether what the model serves is found in a cycle (a run's output, or what
        an upstream model serves) rather than written in the spec."""
        return self.model is not None and (
            self.model.from_training_run is not None or self.model.from_model_deployment is not None
        )

    def serves(self) -> str:
        """What the predictor serves, in words: the model's source or its images."""
        if self.model is None:
            return "containers " + ", ".join(f"`{c.image}`" for c in self.containers)
        if self.model.from_training_run is not None:
            select = self.model.select
            best = select is not None and select.by == "best"
            which = f"the best (by {select.metric})" if best and select else "the latest"
            gated = f" that passes {_gates(self.model.gates)}" if self.model.gates else ""
            return (
                f"from {which} Succeeded run of TrainingRun `{self.model.from_training_run}`{gated}"
            )
        if (upstream := self.model.from_model_deployment) is not None:
            name = f"{upstream.namespace}/{upstream.name}" if upstream.namespace else upstream.name
            return f"what ModelDeployment `{name}` serves, once Healthy for {upstream.healthy_for}"
        if self.model.storage_uri is not None:
            return f"`{self.model.storage_uri}`"
        if self.model.storage is not None:
            where = self.model.storage
            return f"`{where.path or ''}` in storage `{where.key or '(default)'}`"
        return ", ".join(f"`{location.uri}`" for location in self.model.storage_uris)

    def replica_range(self) -> str:
        """``min..max`` as written, KServe's defaults where not (1, unbounded)."""
        scaling = self.predictor_scaling or Replicas()
        low = scaling.min if scaling.min is not None else 1
        return f"{low}..{scaling.max if scaling.max is not None else 'unbounded'}"


class ModelDeployment(StrictModel):
    """A model served by a KServe InferenceService of the same name."""

    api_version: Literal["gitsync.io/v1alpha1"]
    kind: Literal["ModelDeployment"]
    metadata: Metadata
    spec: ModelDeploymentSpec

    @model_validator(mode="after")
    def _mode_said_once(self) -> ModelDeployment:
        if self.spec.deployment_mode and DEPLOYMENT_MODE_ANNOTATION in self.metadata.annotations:
            raise ValueError(
                f"spec.deploymentMode and the annotation {DEPLOYMENT_MODE_ANNOTATION} "
                "say the same thing: give spec.deploymentMode only"
            )
        return self


def _gates(gates: list[MetricGate]) -> str:
    """``accuracy >= 0.92, loss <= 0.3``: a model's gates as a reviewer reads them."""
    bounds = []
    for gate in gates:
        if gate.min is not None:
            bounds.append(f"{gate.metric} >= {gate.min:g}")
        if gate.max is not None:
            bounds.append(f"{gate.metric} <= {gate.max:g}")
    return ", ".join(bounds)
