"""A ``TrainingRun`` rendered as a Kubeflow ``TFJob`` or ``PyTorchJob``.

The job is named after a hash of its spec (runs are immutable: a changed spec is a
new run; a scheduled run adds its tick to the hash).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from gitsync.render.context import ANNOTATION_SCHEDULED_AT, LABEL_TRAINING_RUN, RenderContext
from gitsync.render.pod import canonical, container_spec, object_metadata
from gitsync.schedule import format_time
from gitsync.specs import TrainingRun
from gitsync.types import ObjectRef

__all__ = ["output_uri", "run_name", "training_job"]

_TF_ROLES: Final = {"chief": "Chief", "worker": "Worker", "ps": "PS", "evaluator": "Evaluator"}
_TORCH_ROLES: Final = {"master": "Master", "worker": "Worker"}
_REPLICA_FIELD: Final = {"TFJob": "tfReplicaSpecs", "PyTorchJob": "pytorchReplicaSpecs"}


#: Fields that say when runs start and how many are kept, not what a run does:
#: changing them must not start a new run, so they stay out of the run's hash.
_WHEN_FIELDS: Final = frozenset({"schedule", "concurrency_policy", "history_limit"})


def run_name(run: TrainingRun, *, tick: datetime | None = None) -> str:
    """``<name>-<8 hex of the spec hash>``: the same spec always names the same run.

    A scheduled run hashes its tick in too, so each tick names its own run and a
    restarted daemon names it again the same way.
    """
    # No overrides hash as before the field existed, so existing runs keep their names.
    unhashed = {*_WHEN_FIELDS, *(() if run.spec.overrides else ("overrides",))}
    digest = hashlib.sha256(
        canonical(run.spec.model_dump(mode="json", exclude=unhashed))
    ).hexdigest()
    if tick is not None:
        digest = hashlib.sha256(f"{digest}{format_time(tick)}".encode()).hexdigest()
    return f"{run.metadata.name}-{digest[:8]}"


def training_job(run: TrainingRun, context: RenderContext) -> dict[str, Any]:
    namespace = run.metadata.namespace or context.default_namespace
    tick = (
        context.ticks.get(ObjectRef.spec("TrainingRun", namespace, run.metadata.name))
        if run.spec.schedule
        else None
    )
    name = run_name(run, tick=tick)
    spec = run.spec
    if spec.framework == "tensorflow":
        kind, container_name, roles = "TFJob", "tensorflow", _TF_ROLES
    else:
        kind, container_name, roles = "PyTorchJob", "pytorch", _TORCH_ROLES
    replica_field = _REPLICA_FIELD[kind]
    env = dict(spec.env)
    if spec.output:
        env["OUTPUT_URI"] = spec.output.replace("{run}", name)
    container = container_spec(
        name=container_name,
        image=spec.image,
        command=spec.command,
        args=spec.args,
        env=env,
        resources=spec.resources,
    )
    replica_specs = {
        roles[role]: {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {"spec": {"containers": [copy.deepcopy(container)]}},
        }
        for role, count in sorted(spec.replicas.items())
        if count > 0
    }
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None"}
    policy = spec.run_policy
    if policy.backoff_limit is not None:
        run_policy["backoffLimit"] = policy.backoff_limit
    if policy.active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = policy.active_deadline_seconds
    if policy.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = policy.ttl_seconds_after_finished
    metadata = object_metadata(run, name=name, namespace=namespace)
    metadata["labels"] = {**metadata.get("labels", {}), LABEL_TRAINING_RUN: run.metadata.name}
    if tick is not None:
        metadata["annotations"] = {
            **metadata.get("annotations", {}),
            ANNOTATION_SCHEDULED_AT: format_time(tick),
        }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"runPolicy": run_policy, replica_field: replica_specs},
    }


def output_uri(job: Mapping[str, Any]) -> str | None:
    """The ``OUTPUT_URI`` a rendered (or live) training job was given, if any."""
    for replica in (
        (job.get("spec") or {}).get(_REPLICA_FIELD.get(str(job.get("kind")), "")) or {}
    ).values():
        for container in ((replica.get("template") or {}).get("spec") or {}).get(
            "containers"
        ) or []:
            for variable in container.get("env") or []:
                if variable.get("name") == "OUTPUT_URI":
                    return str(variable.get("value"))
    return None
