"""``gitsync import``: existing Kubernetes manifests turned into the specs that render
back to them, so a team moves its models over without retyping them.

The contract is exact: rendering the imported spec gives the original object again,
apart from gitsync's own labels and annotations. Every import is checked against
it here, by rendering the spec through the same path a sync takes, so an import
that would change a live object is never printed.

How: a kind's *lift* maps what it can onto typed spec fields (only values the spec
accepts as they are; anything else is left alone rather than bent), then the
imported spec is rendered and compared with the original, and what differs becomes
one RFC 6902 JSON patch in the spec's ``overrides``. The typed part is what a person
reads and edits; the patch is the honest rest, named path by path in the comment
above the spec, so nothing is silently dropped. Objects of kinds gitsync has no spec
for are kept as they are (gitsync applies any Kubernetes object), cleaned of what the
server wrote.

Refused, with the reason: what GitOps cannot own. An object named by
``generateName`` only gets a new name at every create, so gitsync could never find
it again to compare or prune it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jsonpatch
import yaml

from gitsync.loading import Entry, load_file
from gitsync.render import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_SOURCE_COMMIT,
    ANNOTATION_SOURCE_PATH,
    ANNOTATION_SPEC_KIND,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    RenderContext,
    render,
)
from gitsync.specs import API_VERSION
from gitsync.specs.serving import ModelFormat

__all__ = ["Imported", "Refused", "import_object", "import_text", "without_stamps"]

Object = dict[str, Any]

#: Metadata the API server or a controller writes: never part of what a repo declares.
_SERVER_METADATA: Final = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
_SERVER_ANNOTATIONS: Final = ("kubectl.kubernetes.io/last-applied-configuration",)
_STAMP_LABELS: Final = (LABEL_MANAGED_BY, LABEL_INSTANCE)
_STAMP_ANNOTATIONS: Final = (
    ANNOTATION_SOURCE_PATH,
    ANNOTATION_SPEC_KIND,
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_SOURCE_COMMIT,
)
_MODEL_FORMATS: Final = frozenset(ModelFormat.__args__)  # type: ignore[attr-defined]
#: The instance the round trip renders for; its stamps are removed before comparing.
_INSTANCE: Final = "import"


@dataclass(frozen=True, slots=True, kw_only=True)
class Imported:
    """One document of the output: a gitsync spec, or an object kept as it is."""

    source: str
    document: Object
    #: What went where, for the comment above the document.
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    source: str
    reason: str


def without_stamps(obj: Mapping[str, Any]) -> Object:
    """``obj`` without gitsync's labels and annotations (and their maps when emptied)."""
    body = copy.deepcopy(dict(obj))
    metadata = body.get("metadata") or {}
    for key, stamps in (("labels", _STAMP_LABELS), ("annotations", _STAMP_ANNOTATIONS)):
        values = {k: v for k, v in (metadata.get(key) or {}).items() if k not in stamps}
        if values:
            metadata[key] = values
        else:
            metadata.pop(key, None)
    return body


def _cleaned(obj: Mapping[str, Any]) -> Object:
    """What the repo would declare of a live or exported object."""
    body = without_stamps(obj)
    body.pop("status", None)
    metadata = body.setdefault("metadata", {})
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k not in _SERVER_ANNOTATIONS
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return body


def _lift_inference_service(obj: Object) -> tuple[Object, list[str]] | str:
    """The typed ModelDeployment fields of an InferenceService, or why it has none."""
    metadata = obj["metadata"]
    spec = obj.get("spec") or {}
    predictor = spec.get("predictor") or {}
    model = predictor.get("model")
    if not isinstance(model, dict):
        return "its predictor has no model (custom containers are not typed yet)"
    model_format = (model.get("modelFormat") or {}).get("name")
    storage_uri = model.get("storageUri")
    if model_format not in _MODEL_FORMATS or not isinstance(storage_uri, str):
        return "its model has no known modelFormat and storageUri"
    typed_model: Object = {"format": model_format, "storageUri": storage_uri}
    notes = ["predictor.model.modelFormat.name -> spec.model.format"]
    notes.append("predictor.model.storageUri -> spec.model.storageUri")
    for field in ("runtime", "runtimeVersion"):
        if isinstance(model.get(field), str):
            typed_model[field] = model[field]
            notes.append(f"predictor.model.{field} -> spec.model.{field}")
    body: Object = {"model": typed_model}
    if isinstance(model.get("resources"), dict):
        body["resources"] = model["resources"]
        notes.append("predictor.model.resources -> spec.resources")
    replicas = {
        wire: predictor[field]
        for field, wire in (("minReplicas", "min"), ("maxReplicas", "max"))
        if isinstance(predictor.get(field), int)
    }
    if replicas:
        body["replicas"] = replicas
        notes.append("predictor.min/maxReplicas -> spec.replicas")
    if isinstance(predictor.get("serviceAccountName"), str):
        body["serviceAccountName"] = predictor["serviceAccountName"]
        notes.append("predictor.serviceAccountName -> spec.serviceAccountName")
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "labels", "annotations")
            if metadata.get(key)
        },
        "spec": body,
    }, notes


#: Lifts by (apiVersion group, kind).
_LIFTS: Final[Mapping[tuple[str, str], Callable[[Object], tuple[Object, list[str]] | str]]] = {
    ("serving.kserve.io", "InferenceService"): _lift_inference_service,
}


def _refusal(obj: Mapping[str, Any]) -> str | None:
    if not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
        return "not a Kubernetes object (no apiVersion and kind)"
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return "it has no metadata"
    if not metadata.get("name"):
        if metadata.get("generateName"):
            return (
                "it is named by generateName: every create gives it a new name, so gitsync "
                "could never find it again to compare or prune it; give it a name"
            )
        return "it has no metadata.name"
    return None


def import_object(
    obj: Mapping[str, Any], *, source: str, default_namespace: str = "default"
) -> Imported | Refused:
    """The spec (or the kept object) that renders to ``obj``: an object without a
    namespace is one applied to ``default_namespace``, as gitsync would apply it."""
    if (reason := _refusal(obj)) is not None:
        return Refused(source=source, reason=reason)
    original = _cleaned(obj)
    group = str(original["apiVersion"]).rpartition("/")[0]
    lift = _LIFTS.get((group, str(original["kind"])))
    if lift is None:
        return Imported(source=source, document=original, notes=("kept as it is",))
    lifted = lift(original)
    if isinstance(lifted, str):
        return Imported(source=source, document=original, notes=(f"kept as it is: {lifted}",))
    spec, notes = lifted
    context = RenderContext(instance=_INSTANCE, default_namespace=default_namespace)
    original["metadata"].setdefault("namespace", default_namespace)
    rendered = _render(spec, source=source, context=context)
    if isinstance(rendered, str):
        return Imported(source=source, document=original, notes=(f"kept as it is: {rendered}",))
    patch = jsonpatch.make_patch(rendered, original).patch
    if patch:
        spec["spec"]["overrides"] = [{"jsonPatch": patch}]
        notes.append(
            "overrides (not typed by gitsync): " + ", ".join(sorted({p["path"] for p in patch}))
        )
        again = _render(spec, source=source, context=context)
        if again != original:
            # The patch was computed against this very rendering: a mismatch is a bug in
            # the lift or the renderer, and the safe output is the object as it is.
            return Imported(
                source=source,
                document=original,
                notes=("kept as it is: its spec did not render back to it exactly",),
            )
    return Imported(source=source, document=spec, notes=tuple(notes))


def _render(spec: Object, *, source: str, context: RenderContext) -> Object | str:
    """The object ``spec`` renders to, without stamps; or why it does not load."""
    text = yaml.dump(spec, Dumper=yaml.CSafeDumper, sort_keys=False).encode()
    loaded = load_file(source, text)
    if loaded.diagnostics or not loaded.entries:
        return "; ".join(d.message for d in loaded.diagnostics) or "it does not load"
    entry: Entry = loaded.entries[0]
    return without_stamps(render(entry, context))


def import_text(
    source: str, content: bytes, *, default_namespace: str = "default"
) -> list[Imported | Refused]:
    """Every document of a manifest file, imported; a file that is not YAML is refused."""
    try:
        documents = list(yaml.load_all(content, Loader=yaml.CSafeLoader))
    except yaml.YAMLError as exc:
        return [Refused(source=source, reason=f"not YAML: {exc}")]
    results: list[Imported | Refused] = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        where = f"{source}#{index}" if len(documents) > 1 else source
        if isinstance(document, dict) and document.get("kind") == "List":
            results += [
                import_object(i, source=where, default_namespace=default_namespace)
                for i in _items(document)
            ]
        elif isinstance(document, dict):
            results.append(
                import_object(document, source=where, default_namespace=default_namespace)
            )
        else:
            results.append(Refused(source=where, reason="not a Kubernetes object (not a map)"))
    return results


def _items(document: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    """The objects of a ``kind: List`` (what ``kubectl get -o yaml`` prints)."""
    return [i for i in document.get("items") or [] if isinstance(i, dict)]
