"""Objects the dev-controller and metrics tests create."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ISVC_API = "serving.kserve.io/v1beta1"
#: Revisions become Ready after half a second instead of the default two.
FAST = {"dev.gitsync.io/ready-delay": "0.5"}

Obj = dict[str, Any]


def isvc(
    namespace: str,
    *,
    name: str = "m",
    storage: str = "s3://b/m/v1",
    canary: int | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    predictor: Obj = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {**FAST, **(annotations or {})},
        },
        "spec": {"predictor": predictor},
    }
