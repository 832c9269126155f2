"""``TrainingRun``: a distributed training job (a Kubeflow TFJob or PyTorchJob).

A changed spec starts a new run (runs are immutable); :mod:`gitsync.training` decides
schedules and which run a model serves, :mod:`gitsync.render` writes the job.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, ValidationInfo, field_validator

from gitsync.schedule import ConcurrencyPolicy, check_crontab
from gitsync.specs.common import DNS1123_LABEL, Metadata, Override, Resources, StrictModel

__all__ = ["RunPolicy", "TrainingMetadata", "TrainingRun", "TrainingRunSpec"]


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
    overrides: list[Override] = Field(default_factory=list)

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
    name: Annotated[str, StringConstraints(pattern=DNS1123_LABEL, max_length=54)]


class TrainingRun(StrictModel):
    """A training job (TFJob or PyTorchJob); a changed spec starts a new run."""

    api_version: Literal["gitsync.io/v1alpha1"]
    kind: Literal["TrainingRun"]
    metadata: TrainingMetadata
    spec: TrainingRunSpec
