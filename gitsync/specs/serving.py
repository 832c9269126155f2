"""``ModelDeployment``: a model served by a KServe InferenceService, and its rollout.

The fields mean what the InferenceService fields they render to mean in KServe
(see :mod:`gitsync.render`); a field left out is left to KServe's own default.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints, model_validator

from gitsync.specs.common import (
    DNS1123_LABEL,
    DnsLabel,
    Duration,
    Metadata,
    Resources,
    StorageUri,
    StrictModel,
    TrainingRunRef,
)
from gitsync.types import ObjectRef

__all__ = [
    "Analysis",
    "CanaryStep",
    "Metric",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelFormat",
    "ModelSource",
    "PrometheusProvider",
    "Provider",
    "Replicas",
    "Rollout",
    "Transformer",
]

#: Model formats KServe's shipped ServingRuntimes understand.
ModelFormat = Literal[
    "sklearn",
    "xgboost",
    "lightgbm",
    "tensorflow",
    "pytorch",
    "onnx",
    "triton",
    "huggingface",
    "pmml",
    "paddle",
    "mlflow",
]


class ModelSource(StrictModel):
    format: ModelFormat
    storage_uri: StorageUri | None = None
    from_training_run: TrainingRunRef | None = Field(
        default=None,
        description="Serve the output of the latest Succeeded run of this TrainingRun "
        "(name, or namespace/name) instead of a fixed storageUri",
    )
    runtime_version: str | None = None
    runtime: str | None = Field(default=None, description="ServingRuntime to use, by name")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if (self.storage_uri is None) == (self.from_training_run is None):
            raise ValueError("give exactly one of storageUri or fromTrainingRun")
        return self

    def training_run(self, namespace: str) -> ObjectRef | None:
        """The TrainingRun this model comes from, if it does."""
        if self.from_training_run is None:
            return None
        owner, _, name = self.from_training_run.rpartition("/")
        return ObjectRef.spec("TrainingRun", owner or namespace, name)


class Replicas(StrictModel):
    min: int = Field(default=1, ge=0)
    max: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class Transformer(StrictModel):
    image: str
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources | None = None


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


_PROMETHEUS_ADDRESS: Final = r"^https?://[^/?#\s]+(/[^?#\s]*)?$"


class PrometheusProvider(StrictModel):
    address: Annotated[
        str,
        StringConstraints(pattern=_PROMETHEUS_ADDRESS),
        Field(description="http(s)://host[:port][/path] of the Prometheus HTTP API"),
    ]


class Provider(StrictModel):
    prometheus: PrometheusProvider


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


class ModelDeploymentSpec(StrictModel):
    model: ModelSource
    resources: Resources | None = None
    replicas: Replicas = Field(default_factory=Replicas)
    service_account_name: DnsLabel | None = None
    transformer: Transformer | None = None
    rollout: Rollout = Field(default_factory=Rollout)


class ModelDeployment(StrictModel):
    """A model served by a KServe InferenceService of the same name."""

    api_version: Literal["gitsync.io/v1alpha1"]
    kind: Literal["ModelDeployment"]
    metadata: Metadata
    spec: ModelDeploymentSpec
