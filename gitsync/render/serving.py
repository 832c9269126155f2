"""A ``ModelDeployment`` rendered as the KServe ``InferenceService`` it declares.

Only what the spec says is rendered: a field left out is left out of the
InferenceService too, so KServe applies its own default (one replica at least, no
upper bound in Serverless mode, the cluster's deployment mode) exactly as it would
for a hand-written object. The one default gitsync adds is the protocol of formats
no shipped v1 runtime serves (see :data:`V2_ONLY_FORMATS`).
"""

from __future__ import annotations

import copy
from typing import Any, Final

from gitsync.render.context import RenderContext
from gitsync.render.pod import env_list, object_metadata, resource_requirements, secret_refs, wire
from gitsync.specs import ModelDeployment
from gitsync.specs.pod import Container, PodSettings
from gitsync.specs.serving import (
    DEPLOYMENT_MODE_ANNOTATION,
    Art,
    Component,
    ModelSource,
    Replicas,
    Transformer,
)
from gitsync.types import ObjectRef

__all__ = ["DEPLOYMENT_MODE_ANNOTATION", "V2_ONLY_FORMATS", "inference_service"]


#: Formats whose ServingRuntimes in a default KServe v0.20 install serve the v2
#: protocol only (Triton and MLServer). KServe's own default protocol is v1, for
#: which such a model finds no runtime (NoSupportingRuntime), so a spec that does not
#: say gets v2, the only protocol that can work; ``protocolVersion`` still wins.
V2_ONLY_FORMATS: Final = frozenset({"onnx", "triton", "tensorrt", "mlflow"})


def _container(container: Container) -> dict[str, Any]:
    rendered = {"name": container.name, **wire(container)}
    if container.env:
        rendered["env"] = env_list(container.env)
    if container.resources is not None:
        rendered["resources"] = resource_requirements(container.resources)
    return rendered


def _pod(settings: PodSettings) -> dict[str, Any]:
    rendered = wire(settings, include=set(PodSettings.model_fields))
    if settings.image_pull_secrets:
        rendered["imagePullSecrets"] = secret_refs(settings.image_pull_secrets)
    # KServe's component labels and annotations are the pods'.
    for spelt, field in (("podLabels", "labels"), ("podAnnotations", "annotations")):
        if spelt in rendered:
            rendered[field] = rendered.pop(spelt)
    return rendered


_SCALING_FIELDS: Final = {
    "min": "minReplicas",
    "max": "maxReplicas",
    "metric": "scaleMetric",
    "metricType": "scaleMetricType",
    "target": "scaleTarget",
    "containerConcurrency": "containerConcurrency",
    "timeout": "timeout",
    "autoScaling": "autoScaling",
}


def _scaling(scaling: Replicas | None) -> dict[str, Any]:
    if scaling is None:
        return {}
    written = wire(scaling)
    return {_SCALING_FIELDS[name]: value for name, value in written.items()}


def _component(component: Component, *, scaling: Replicas | None) -> dict[str, Any]:
    """The fields every component has: its pods, scaling, logger and batcher."""
    rendered = {**_scaling(scaling), **_pod(component)}
    if component.logger is not None:
        rendered["logger"] = wire(component.logger)
    if component.batcher is not None:
        rendered["batcher"] = wire(component.batcher)
    if component.deployment_strategy is not None:
        rendered["deploymentStrategy"] = copy.deepcopy(component.deployment_strategy)
    return rendered


def _model(source: ModelSource, spec: ModelDeployment, context: RenderContext) -> dict[str, Any]:
    model_format: dict[str, str] = {"name": source.format}
    if source.format_version:
        model_format["version"] = source.format_version
    model: dict[str, Any] = {"modelFormat": model_format}
    namespace = spec.metadata.namespace or context.default_namespace
    if spec.spec.resolved:
        key = ObjectRef.spec("ModelDeployment", namespace, spec.metadata.name)
        model["storageUri"] = context.trained[key].output_uri
    elif source.storage_uri is not None:
        model["storageUri"] = source.storage_uri
    elif source.storage is not None:
        model["storage"] = wire(source.storage)
    protocol = source.protocol_version
    if protocol is None and source.format in V2_ONLY_FORMATS:
        protocol = "v2"
    for field, value in (
        ("runtime", source.runtime),
        ("runtimeVersion", source.runtime_version),
        ("protocolVersion", protocol),
    ):
        if value is not None:
            model[field] = value
    model.update(_model_container(source))
    if rendered := resource_requirements(spec.spec.resources):
        model["resources"] = rendered
    return model


def _model_container(source: ModelSource) -> dict[str, Any]:
    """What the model says of the runtime's container (KServe merges it in)."""
    rendered: dict[str, Any] = wire(source, include={"command", "args", "ports", "volume_mounts"})
    if source.env:
        rendered["env"] = env_list(source.env)
    return rendered


def _predictor(spec: ModelDeployment, context: RenderContext) -> dict[str, Any]:
    body = spec.spec
    predictor = _component(body, scaling=body.predictor_scaling)
    if body.model is not None:
        predictor["model"] = _model(body.model, spec, context)
        if body.model.storage_uris:
            predictor["storageUris"] = [wire(location) for location in body.model.storage_uris]
    else:
        predictor["containers"] = [_container(container) for container in body.containers]
    return predictor


def _transformer(transformer: Transformer) -> dict[str, Any]:
    rendered = _component(transformer, scaling=transformer.scaling)
    if transformer.image is not None:
        single = Container(
            image=transformer.image,
            command=transformer.command,
            args=transformer.args,
            env=transformer.env,
            resources=transformer.resources,
        )
        rendered["containers"] = [_container(single)]
    else:
        rendered["containers"] = [_container(container) for container in transformer.containers]
    if transformer.storage_uris:
        rendered["storageUris"] = [wire(location) for location in transformer.storage_uris]
    return rendered


def _art(art: Art) -> dict[str, Any]:
    rendered = wire(art)
    if art.env:
        rendered["env"] = env_list(art.env)
    if art.resources is not None:
        rendered["resources"] = resource_requirements(art.resources)
    return rendered


def inference_service(spec: ModelDeployment, context: RenderContext) -> dict[str, Any]:
    namespace = spec.metadata.namespace or context.default_namespace
    body_spec: dict[str, Any] = {"predictor": _predictor(spec, context)}
    if (transformer := spec.spec.transformer) is not None:
        body_spec["transformer"] = _transformer(transformer)
    if (explainer := spec.spec.explainer) is not None:
        rendered = _component(explainer, scaling=explainer.scaling)
        if explainer.art is not None:
            rendered["art"] = _art(explainer.art)
        else:
            rendered["containers"] = [_container(c) for c in explainer.containers]
        if explainer.storage_uris:
            rendered["storageUris"] = [wire(location) for location in explainer.storage_uris]
        body_spec["explainer"] = rendered
    metadata = object_metadata(spec, name=spec.metadata.name, namespace=namespace)
    if spec.spec.deployment_mode is not None:
        metadata["annotations"] = {
            **metadata.get("annotations", {}),
            DEPLOYMENT_MODE_ANNOTATION: spec.spec.deployment_mode,
        }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": body_spec,
    }
