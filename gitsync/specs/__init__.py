"""The user-facing spec kinds (apiVersion ``gitsync.io/v1alpha1``) as pydantic models.

These are what data scientists write; they are deliberately smaller than the
Kubernetes resources they become (see :mod:`gitsync.render`). The models are strict:
an unknown field is an error, and :func:`suggest_field` turns a near miss such as
``storageURI`` into "did you mean storageUri?". Field names are camelCase on the wire,
as in Kubernetes; their JSON Schema is exported by :func:`json_schema`.

One module a kind (:mod:`~gitsync.specs.serving`, :mod:`~gitsync.specs.training`),
what they share in :mod:`~gitsync.specs.common`; this module holds ``gitsync.yaml``'s
:class:`Config`, the kind registry and the helpers for messages and schema export.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from gitsync.specs.common import (
    API_VERSION,
    DnsLabel,
    Metadata,
    Resources,
    StrictModel,
    closest_name,
    parse_duration,
)
from gitsync.specs.serving import (
    Analysis,
    CanaryStep,
    Metric,
    ModelDeployment,
    ModelSource,
    Replicas,
    Rollout,
    Transformer,
)
from gitsync.specs.training import RunPolicy, TrainingRun, TrainingRunSpec
from gitsync.types import DEFAULT_STATUS_BRANCH

__all__ = [
    "API_VERSION",
    "DEFAULT_STATUS_BRANCH",
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
    status_branch: str = DEFAULT_STATUS_BRANCH
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


def suggest_field(model: type[BaseModel], wrong: str) -> str | None:
    """The wire name of ``model`` closest to a misspelt one, if any is close; a name
    the model documents as another's spelling elsewhere (``other_names``: KServe's
    ``maxReplicas`` for ``max``) suggests that one."""
    other_names: dict[str, str] = getattr(model, "other_names", {})
    if wrong in other_names:
        return other_names[wrong]
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
