"""A ``ModelDeployment`` rendered as the KServe ``InferenceService`` it declares."""

from __future__ import annotations

from typing import Any

from gitsync.render.context import RenderContext
from gitsync.render.pod import container_spec, object_metadata, resource_requirements
from gitsync.specs import ModelDeployment

__all__ = ["inference_service"]


def inference_service(spec: ModelDeployment, context: RenderContext) -> dict[str, Any]:
    namespace = spec.metadata.namespace or context.default_namespace
    source = spec.spec.model
    ref = source.training_run(namespace)
    model: dict[str, Any] = {
        "modelFormat": {"name": source.format},
        "storageUri": context.trained[ref].output_uri if ref else source.storage_uri,
    }
    if source.runtime_version:
        model["runtimeVersion"] = source.runtime_version
    if source.runtime:
        model["runtime"] = source.runtime
    if rendered := resource_requirements(spec.spec.resources):
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
                container_spec(
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
        "metadata": object_metadata(spec, name=spec.metadata.name, namespace=namespace),
        "spec": body_spec,
    }
