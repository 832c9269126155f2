"""Render validated entries into the Kubernetes objects gitsync applies.

Pure functions from specs to plain dicts (apply bodies), so every rendering is a
golden file away from a test. A ``ModelDeployment`` becomes a KServe
``InferenceService``; a ``TrainingRun`` becomes a Kubeflow ``TFJob`` or
``PyTorchJob`` named after a hash of its spec (runs are immutable: a changed spec is
a new run; a scheduled run adds its tick to the hash); any other object passes through.

What rendering needs from the world (which run a ``fromTrainingRun`` model serves,
which tick a schedule is at) comes in the :class:`RenderContext` as plain data, found
by the reconciler; :func:`pending` says when that data is missing, so nothing is
applied yet. Every object is stamped with who
manages it, which gitsync instance owns it, where it came from, and a hash of
itself, which is how a no-op cycle recognises an unchanged object without asking
the API server.

One module a target (:mod:`~gitsync.render.serving`, :mod:`~gitsync.render.training`),
their building blocks in :mod:`~gitsync.render.pod`, the stamps and the context in
:mod:`~gitsync.render.context`; this module dispatches and stamps.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any, Final

from gitsync.loading import Entry
from gitsync.render.context import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_SCHEDULED_AT,
    ANNOTATION_SOURCE_COMMIT,
    ANNOTATION_SOURCE_PATH,
    ANNOTATION_SPEC_KIND,
    CLUSTER_SCOPED_KINDS,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_TRAINING_RUN,
    MANAGER,
    RenderContext,
    TrainedModel,
)
from gitsync.render.pod import canonical
from gitsync.render.serving import inference_service
from gitsync.render.training import output_uri, run_name, training_job
from gitsync.specs import ModelDeployment, TrainingRun

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
    "PendingError",
    "RenderContext",
    "TrainedModel",
    "applied_hash",
    "comparable",
    "output_uri",
    "pending",
    "render",
    "run_name",
    "without_provenance",
]


_PROVENANCE: Final = frozenset({ANNOTATION_SOURCE_COMMIT, ANNOTATION_APPLIED_HASH})


class PendingError(ValueError):
    """Rendering was asked for an entry that waits for something (see :func:`pending`)."""


def applied_hash(obj: Mapping[str, Any]) -> str:
    """A hash of what the object says, leaving out the provenance annotations.

    The source commit is left out on purpose: a commit that touches a file without
    changing what it declares (a comment, a reordering) must not cause a write.
    KServe copies an InferenceService's annotations into its revision template, so
    such a write would even roll out a new revision of an identical model.
    """
    return hashlib.sha256(canonical(without_provenance(obj))).hexdigest()[:16]


def without_provenance(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without the annotations that say where it came from."""
    metadata = dict(obj.get("metadata") or {})
    metadata["annotations"] = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k not in _PROVENANCE
    }
    return {**obj, "metadata": metadata}


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as compared with a live copy: without the source commit, which is
    only rewritten when something else changes (see :func:`applied_hash`)."""
    metadata = dict(obj.get("metadata") or {})
    metadata["annotations"] = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if k != ANNOTATION_SOURCE_COMMIT
    }
    return {**obj, "metadata": metadata}


def pending(entry: Entry, context: RenderContext) -> str | None:
    """Why an entry has nothing to apply yet, or None when it renders.

    A ``fromTrainingRun`` model waits for a Succeeded run; a scheduled TrainingRun
    starts a run only at a tick.
    """
    spec = entry.spec
    namespace = entry.namespace(context.default_namespace)
    if isinstance(spec, ModelDeployment):
        ref = spec.spec.model.training_run(namespace)
        if ref is not None and ref not in context.trained:
            return f"waiting for a Succeeded run of TrainingRun {ref.namespace}/{ref.name}"
    elif (
        isinstance(spec, TrainingRun)
        and spec.spec.schedule is not None
        and entry.key(context.default_namespace) not in context.ticks
    ):
        return f"no tick due (schedule {spec.spec.schedule!r})"
    return None


def render(entry: Entry, context: RenderContext) -> dict[str, Any]:
    """The apply body for one entry, stamped with gitsync's labels and annotations.

    Raises :class:`PendingError` for an entry :func:`pending` holds back.
    """
    if (waiting := pending(entry, context)) is not None:
        raise PendingError(f"{entry.kind} {entry.name}: {waiting}")
    if isinstance(entry.spec, ModelDeployment):
        body = inference_service(entry.spec, context)
    elif isinstance(entry.spec, TrainingRun):
        body = training_job(entry.spec, context)
    else:
        body = _manifest(entry, context)
    metadata = body["metadata"]
    metadata["labels"] = {
        **metadata.get("labels", {}),
        LABEL_MANAGED_BY: MANAGER,
        LABEL_INSTANCE: context.instance,
    }
    annotations = {
        **metadata.get("annotations", {}),
        ANNOTATION_SOURCE_PATH: entry.path,
        ANNOTATION_SPEC_KIND: entry.kind if entry.spec is not None else "Manifest",
    }
    if commit := context.source_commits.get(entry.path):
        annotations[ANNOTATION_SOURCE_COMMIT] = commit
    metadata["annotations"] = annotations
    metadata["annotations"][ANNOTATION_APPLIED_HASH] = applied_hash(body)
    return body


def _manifest(entry: Entry, context: RenderContext) -> dict[str, Any]:
    body = copy.deepcopy(dict(entry.manifest or {}))
    metadata = body.setdefault("metadata", {})
    if body.get("kind") not in context.cluster_scoped_kinds and not metadata.get("namespace"):
        metadata["namespace"] = context.default_namespace
    return body
