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
from collections.abc import Mapping, Sequence
from typing import Any, Final

import jsonpatch
import jsonpointer

from gitsync.errors import OverrideError
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
from gitsync.specs.common import Override

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
    "apply_overrides",
    "comparable",
    "merge_patch",
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

    A ``fromTrainingRun`` model waits for a Succeeded run that passes its gates, a
    ``fromModelDeployment`` one for its upstream to prove itself; a scheduled
    TrainingRun starts a run only at a tick.
    """
    spec = entry.spec
    namespace = entry.namespace(context.default_namespace)
    if isinstance(spec, ModelDeployment):
        key = entry.key(context.default_namespace)
        if spec.spec.resolved and key not in context.trained:
            if reason := context.waiting.get(key):
                return reason
            if (ref := spec.spec.training_run(namespace)) is not None:
                return f"waiting for a Succeeded run of TrainingRun {ref.namespace}/{ref.name}"
            return f"waiting for {spec.spec.upstream(namespace)} to serve a model"
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
        body = apply_overrides(inference_service(entry.spec, context), entry.spec.spec.overrides)
    elif isinstance(entry.spec, TrainingRun):
        body = apply_overrides(training_job(entry.spec, context), entry.spec.spec.overrides)
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


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with an RFC 7386 JSON merge patch applied (the RFC's own algorithm,
    section 2: a null removes a key, a mapping merges, anything else replaces).

    Written here rather than taken from a library: it is ten lines the RFC gives in
    full, and the PyPI packages for it are thin wrappers of the same ten lines.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _identity(body: Mapping[str, Any]) -> tuple[object, ...]:
    metadata = body.get("metadata") or {}
    return body.get("apiVersion"), body.get("kind"), metadata.get("name"), metadata.get("namespace")


def apply_overrides(body: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    """The rendered ``body`` with a spec's overrides applied in order.

    Raises :class:`~gitsync.errors.OverrideError` naming the override that does not
    apply. The spec's validation already refused overrides of the identity and the
    stamps (which are added after this); the identity is checked again here, since a
    JSON patch can reach it in ways no pointer names (a ``move`` of a whole parent).
    """
    identity = _identity(body)
    for index, override in enumerate(overrides):
        if override.merge is not None:
            body = merge_patch(body, override.merge)
        for number, operation in enumerate(override.json_patch or ()):
            # One operation at a time, so the message says which one failed; the
            # patch as a whole is still all or nothing (the spec fails).
            raw = operation.model_dump(mode="json", by_alias=True, exclude_unset=True)
            try:
                body = jsonpatch.apply_patch(body, [raw])
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                where = f"{operation.op} {operation.path}" + (
                    f" from {operation.from_}" if operation.from_ else ""
                )
                message = (
                    f"jsonPatch[{number}] ({where}) does not apply to the rendered object: {exc}"
                )
                raise OverrideError(message, index=index) from exc
        if not isinstance(body, dict) or _identity(body) != identity:
            raise OverrideError(
                "changes the object's apiVersion, kind, name or namespace, which gitsync "
                "keys its inventory and pruning on",
                index=index,
            )
    return body


def _manifest(entry: Entry, context: RenderContext) -> dict[str, Any]:
    body = copy.deepcopy(dict(entry.manifest or {}))
    metadata = body.setdefault("metadata", {})
    if body.get("kind") not in context.cluster_scoped_kinds and not metadata.get("namespace"):
        metadata["namespace"] = context.default_namespace
    return body
