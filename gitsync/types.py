"""The shared vocabulary: how gitsync names an object, in one type.

A spec in Git, the object it renders to, a live object, a training run that a model
names and a resource a status document records are all identified by an
:class:`ObjectRef`: API group, kind, namespace, name. The version is left out on
purpose, since the API server serves one object under every version of its group.
Status documents write ``"<apiVersion> <Kind> <namespace>/<name>"``; this module
writes and reads that form, nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_STATUS_BRANCH",
    "DNS1123_LABEL",
    "LABEL_INSTANCE",
    "SPEC_GROUP",
    "ObjectRef",
    "format_resource",
    "parse_resource",
]

#: The API group of gitsync's own kinds (``gitsync.io/v1alpha1``).
SPEC_GROUP: Final = "gitsync.io"
#: A Kubernetes name that must be a DNS-1123 label: a namespace, a Service's name.
DNS1123_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: The label on every object an instance writes, valued with the instance's name.
LABEL_INSTANCE: Final = "gitsync.io/instance"
#: Where status documents go unless gitsync.yaml (or --status-branch) says otherwise.
DEFAULT_STATUS_BRANCH: Final = "gitsync/status"


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        """The identity of an object or manifest as the API server would see it."""
        metadata = obj.get("metadata") or {}
        return cls(
            group=str(obj.get("apiVersion", "")).rpartition("/")[0],
            kind=str(obj.get("kind", "")),
            namespace=str(metadata.get("namespace") or ""),
            name=str(metadata.get("name", "")),
        )

    @classmethod
    def spec(cls, kind: str, namespace: str, name: str) -> ObjectRef:
        """A gitsync spec (ModelDeployment, TrainingRun, ...)."""
        return cls(SPEC_GROUP, kind, namespace, name)


def format_resource(api_version: str, ref: ObjectRef) -> str:
    """A resource as a status document records it."""
    return f"{api_version} {ref}"


def parse_resource(text: str) -> tuple[str, ObjectRef] | None:
    """The API version and identity of a recorded resource; None when malformed."""
    parts = text.split(" ")
    if len(parts) != 3 or not all(parts):
        return None
    api_version, kind, where = parts
    namespace, _, name = where.rpartition("/")
    group = api_version.rpartition("/")[0]
    return api_version, ObjectRef(group, kind, namespace, name)
