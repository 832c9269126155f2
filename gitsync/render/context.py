"""What rendering is given and what it stamps: the labels and annotations every
rendered object carries, and the :class:`RenderContext` of facts found by the
reconciler (which run a model serves, which tick a schedule is at), as plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from gitsync.status_document import Score
from gitsync.types import LABEL_INSTANCE, ObjectRef

__all__ = [
    "ANNOTATION_APPLIED_HASH",
    "ANNOTATION_SCHEDULED_AT",
    "ANNOTATION_SOURCE_COMMIT",
    "ANNOTATION_SOURCE_PATH",
    "ANNOTATION_SPEC_KIND",
    "CLUSTER_SCOPED_KINDS",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_TRAINING_RUN",
    "MANAGER",
    "RenderContext",
    "TrainedModel",
]

MANAGER: Final = "gitsync"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_TRAINING_RUN: Final = "gitsync.io/training-run"
ANNOTATION_SOURCE_PATH: Final = "gitsync.io/source-path"
ANNOTATION_SOURCE_COMMIT: Final = "gitsync.io/source-commit"
ANNOTATION_SPEC_KIND: Final = "gitsync.io/spec-kind"
ANNOTATION_APPLIED_HASH: Final = "gitsync.io/applied-hash"
ANNOTATION_SCHEDULED_AT: Final = "gitsync.io/scheduled-at"

#: Kinds without a namespace, so the repo's default namespace is not filled in.
CLUSTER_SCOPED_KINDS: Final = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ClusterServingRuntime",
        "ClusterStorageContainer",
        "ClusterTrainingRuntime",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainedModel:
    """What a ``fromTrainingRun`` or ``fromModelDeployment`` model serves: the
    Succeeded run's output, and where it came from."""

    run: str
    output_uri: str
    completion_time: str
    #: The commit of the TrainingRun spec that started the run.
    source_commit: str
    #: How the run met the model's gates (``accuracy 0.95 >= 0.92``).
    evidence: tuple[str, ...] = ()
    #: The ModelDeployment it was promoted from, for a ``fromModelDeployment`` model
    #: (``ModelDeployment ml-staging/fraud``, ``... of instance staging``).
    promoted_from: str | None = None


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What rendering needs besides the entry itself."""

    instance: str
    default_namespace: str
    #: The commit that last changed each source file (not the head commit, so that an
    #: unrelated commit changes no annotation and causes no write).
    source_commits: Mapping[str, str] = field(default_factory=dict)
    cluster_scoped_kinds: frozenset[str] = CLUSTER_SCOPED_KINDS
    #: By ModelDeployment: what a ``fromTrainingRun`` or ``fromModelDeployment`` model
    #: serves (found by the reconciler, :mod:`gitsync.training`).
    trained: Mapping[ObjectRef, TrainedModel] = field(default_factory=dict)
    #: By ModelDeployment: why such a model serves nothing yet (no run passes its gates,
    #: its upstream has not proven itself), for its status.
    waiting: Mapping[ObjectRef, str] = field(default_factory=dict)
    #: By model: the scores its queried gates were answered, for its status.
    scores: Mapping[ObjectRef, tuple[Score, ...]] = field(default_factory=dict)
    #: By (namespace, TrainingRun name): the tick a scheduled run starts for now.
    ticks: Mapping[ObjectRef, datetime] = field(default_factory=dict)
