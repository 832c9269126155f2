"""Building blocks shared by every rendering: object metadata, containers, resources
and environment variables, written the way the Kubernetes API spells them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel

from gitsync.specs import ModelDeployment, Resources, TrainingRun
from gitsync.specs.pod import EnvSource

__all__ = [
    "canonical",
    "container_spec",
    "env_list",
    "object_metadata",
    "resource_requirements",
    "secret_refs",
    "wire",
]


def canonical(data: object) -> bytes:
    """Bytes of ``data`` that are the same for equal data (keys sorted), for hashing."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def wire(model: BaseModel, *, include: set[str] | None = None) -> dict[str, Any]:
    """A spec model as the Kubernetes field of the same shape: wire names, and only
    what was written (defaults and empty values are left to the API server)."""
    return model.model_dump(mode="json", by_alias=True, exclude_defaults=True, include=include)


def secret_refs(names: list[str] | None) -> list[dict[str, str]]:
    """A spec's list of Secret names as a PodSpec's imagePullSecrets."""
    return [{"name": name} for name in names or []]


def object_metadata(
    spec: ModelDeployment | TrainingRun, *, name: str, namespace: str
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if spec.metadata.labels:
        metadata["labels"] = dict(spec.metadata.labels)
    if spec.metadata.annotations:
        metadata["annotations"] = dict(spec.metadata.annotations)
    return metadata


def resource_requirements(resources: Resources | None) -> dict[str, dict[str, str]]:
    if resources is None:
        return {}
    rendered = {}
    if resources.requests:
        rendered["requests"] = {k: str(v) for k, v in resources.requests.items()}
    if resources.limits:
        rendered["limits"] = {k: str(v) for k, v in resources.limits.items()}
    return rendered


def env_list(env: Mapping[str, str | EnvSource]) -> list[dict[str, Any]]:
    """A spec's ``name: value`` map as core/v1 EnvVars: text as ``value``, a source
    (the spec's short form) under ``valueFrom``, where Kubernetes spells it."""
    return [
        {"name": name, "value": value}
        if isinstance(value, str)
        else {"name": name, "valueFrom": wire(value)}
        for name, value in env.items()
    ]


def container_spec(
    *,
    name: str,
    image: str,
    command: list[str],
    args: list[str],
    env: Mapping[str, str | EnvSource],
    resources: Resources | None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image}
    if command:
        container["command"] = list(command)
    if args:
        container["args"] = list(args)
    if env:
        container["env"] = env_list(env)
    if rendered := resource_requirements(resources):
        container["resources"] = rendered
    return container
