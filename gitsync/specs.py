"""The user-facing spec kinds (apiVersion ``gitsync.io/v1alpha1``) as pydantic models.

These are what data scientists write; they are deliberately smaller than the
Kubernetes resources they become (see :mod:`gitsync.render`). The models are strict:
an unknown field is an error, and :func:`suggest_field` turns a near miss such as
``storageURI`` into "did you mean storageUri?". Field names are camelCase on the wire,
as in Kubernetes; their JSON Schema is exported by :func:`json_schema`.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import models_json_schema

from gitsync.quantity import Quantity, QuantityError
from gitsync.schedule import ConcurrencyPolicy, check_crontab
from gitsync.types import ObjectRef

__all__ = [
    "API_VERSION",
    "Analysis",
    "CanaryStep",
    "Config",
    "Defaults",
    "Metadata",
    "Metric",
    "ModelDeployment",
    "ModelSource",
    "Replicas",
    "Resources",
    "Rollout",
    "RunPolicy",
    "Spec",
    "SpecKind",
    "StrictModel",
    "TrainingRun",
    "TrainingRunSpec",
    "Transformer",
    "closest_name",
    "json_schema",
    "model_for_location",
    "parse_duration",
    "suggest_field",
]

API_VERSION = "gitsync.io/v1alpha1"

_DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

DnsLabel = Annotated[str, StringConstraints(pattern=_DNS1123_LABEL, max_length=63)]


def _check_quantity(value: str | int | float) -> str | int | float:
    # The value stays as written (the rendered object carries it to Kubernetes); only
    # its grammar is checked, by the parser the API server's own mirrors.
    try:
        Quantity.of(value)
    except QuantityError as exc:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2Gi, 1)") from exc
    return value


QuantityValue = Annotated[str | int | float, AfterValidator(_check_quantity)]

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

_STORAGE_SCHEMES = (
    "s3://",
    "gs://",
    "pvc://",
    "hf://",
    "oci://",
    "https://",
    "http://",
    "azure://",
)


def _check_storage_uri(value: str) -> str:
    if not value.startswith(_STORAGE_SCHEMES):
        schemes = ", ".join(_STORAGE_SCHEMES)
        raise ValueError(f"{value!r} has no supported scheme ({schemes})")
    return value


StorageUri = Annotated[str, AfterValidator(_check_storage_uri)]

#: A TrainingRun by name, in the model's own namespace or as ``namespace/name``.
TrainingRunRef = Annotated[
    str,
    StringConstraints(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
]


class StrictModel(BaseModel):
    """camelCase on the wire, unknown fields rejected, instances immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )


class Metadata(StrictModel):
    name: DnsLabel
    namespace: DnsLabel | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Resources(StrictModel):
    requests: dict[str, QuantityValue] = Field(default_factory=dict)
    limits: dict[str, QuantityValue] = Field(default_factory=dict)


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


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``90``, ``"30s"``, ``"2m"``, ``"1h30m"``."""
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _DURATION.match(value.strip())
    if not value.strip() or match is None:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 2m, 1h30m)")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _check_duration(value: str | int | float) -> str | int | float:
    parse_duration(value)
    return value


Duration = Annotated[str | int | float, AfterValidator(_check_duration)]


class CanaryStep(StrictModel):
    traffic: int = Field(ge=1, le=99, description="Percent of requests for the new revision")
    pause: Duration | Literal["indefinite"] = Field(
        default="0s", description="How long to hold this step; indefinite waits for a promote"
    )


class Metric(StrictModel):
    """One PromQL query and its bounds. With ``baselineQuery`` the check is relative:
    the canary's value may exceed the stable revision's by at most ``maxIncrease``."""

    name: Annotated[str, StringConstraints(pattern=_DNS1123_LABEL)]
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


_REPLICA_ROLES: dict[str, frozenset[str]] = {
    "tensorflow": frozenset({"chief", "worker", "ps", "evaluator"}),
    "pytorch": frozenset({"master", "worker"}),
}


class RunPolicy(StrictModel):
    backoff_limit: int | None = Field(default=None, ge=0)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)


class TrainingRunSpec(StrictModel):
    framework: Literal["tensorflow", "pytorch"]
    image: str
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    replicas: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: {"worker": 1})
    resources: Resources | None = None
    output: str | None = Field(
        default=None, description="Where the run writes its model; {run} is the run's name"
    )
    run_policy: RunPolicy = Field(default_factory=RunPolicy)
    schedule: Annotated[str, AfterValidator(check_crontab)] | None = Field(
        default=None, description="5-field cron (UTC): start a new run at every tick"
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default="Forbid", description="At a tick while a run is active: skip, replace or add one"
    )
    history_limit: int = Field(
        default=10, ge=1, description="Finished runs kept, in the cluster and the status"
    )

    @field_validator("replicas")
    @classmethod
    def _roles_fit_framework(cls, replicas: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        framework = info.data.get("framework")
        if framework is None:  # framework itself was invalid; reported there
            return replicas
        allowed = _REPLICA_ROLES[framework]
        unknown = sorted(set(replicas) - allowed)
        if unknown:
            raise ValueError(
                f"replica role(s) {', '.join(unknown)} unknown for {framework}; "
                f"use {', '.join(sorted(allowed))}"
            )
        if framework == "pytorch" and replicas.get("master", 0) > 1:
            raise ValueError("pytorch runs have at most one master")
        if not any(replicas.values()):
            raise ValueError("a run needs at least one replica")
        return replicas


class TrainingMetadata(Metadata):
    # The run name appends "-" and 8 hex digits to it, within the 63-character limit.
    name: Annotated[str, StringConstraints(pattern=_DNS1123_LABEL, max_length=54)]


class TrainingRun(StrictModel):
    """A training job (TFJob or PyTorchJob); a changed spec starts a new run."""

    api_version: Literal["gitsync.io/v1alpha1"]
    kind: Literal["TrainingRun"]
    metadata: TrainingMetadata
    spec: TrainingRunSpec


class PruneConfig(StrictModel):
    enabled: bool = True
    max_ratio: float = Field(
        default=0.5, gt=0, le=1, description="Refuse a cycle deleting more than this share"
    )


class Defaults(StrictModel):
    namespace: DnsLabel = "default"


class Config(StrictModel):
    """``gitsync.yaml`` at the spec root: defaults and behaviour for one spec repo."""

    api_version: Literal["gitsync.io/v1alpha1"] = "gitsync.io/v1alpha1"
    kind: Literal["Config"] = "Config"
    defaults: Defaults = Field(default_factory=Defaults)
    include: list[str] = Field(default_factory=lambda: ["**/*.yaml", "**/*.yml"])
    exclude: list[str] = Field(default_factory=list)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    self_heal: bool = True
    create_namespaces: bool = True
    status_branch: str = "gitsync/status"
    policies: list[str] = Field(
        default_factory=list,
        description="Folders (from the spec root) of this repo's own policies, "
        "added to the library shipped with gitsync",
    )


Spec = ModelDeployment | TrainingRun
SpecKind = Literal["ModelDeployment", "TrainingRun"]
SPEC_MODELS: dict[str, type[ModelDeployment] | type[TrainingRun]] = {
    "ModelDeployment": ModelDeployment,
    "TrainingRun": TrainingRun,
}


# --- helpers for error messages and schema export -----------------------------------


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation may hold (through Optional, list, dict, ...)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, set, frozenset):
        return [m for arg in get_args(annotation) for m in _unwrap(arg)]
    if origin is dict:
        return _unwrap(get_args(annotation)[1])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def model_for_location(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that holds the field at ``loc`` (wire names), if any."""
    current: type[BaseModel] | None = root
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        by_alias = {(f.alias or n): f for n, f in current.model_fields.items()}
        field = by_alias.get(part)
        if field is None:
            # A dict key (labels, replicas) keeps the model of its values.
            continue
        candidates = _unwrap(field.annotation)
        current = candidates[0] if candidates else None
    return current


def closest_name(wrong: str, choices: Iterable[str]) -> str | None:
    """The choice a misspelling most likely meant: same letters in another case first."""
    options = list(choices)
    lowered = {option.lower(): option for option in options}
    if wrong.lower() in lowered:
        return lowered[wrong.lower()]
    matches = difflib.get_close_matches(wrong, options, n=1, cutoff=0.6)
    return matches[0] if matches else None


def suggest_field(model: type[BaseModel], wrong: str) -> str | None:
    """The wire name of ``model`` closest to a misspelt one, if any is close."""
    return closest_name(wrong, [f.alias or n for n, f in model.model_fields.items()])


def json_schema() -> dict[str, Any]:
    """One JSON Schema for every document a spec repo may hold (gitsync kinds and
    ``gitsync.yaml``), for editors such as yaml-language-server.

    A document that is none of these (any other Kubernetes object) is not covered:
    point the editor's schema at the spec files only.
    """
    models: list[type[BaseModel]] = [*SPEC_MODELS.values(), Config]
    refs, schema = models_json_schema(
        [(model, "validation") for model in models], by_alias=True, title="gitsync specs"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "oneOf": [refs[(model, "validation")] for model in models],
    }
