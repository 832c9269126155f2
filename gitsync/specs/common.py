"""What every spec kind shares: the strict base model, metadata, resources, and the
value types (quantities, durations, storage URIs, DNS labels) checked as Kubernetes
and KServe check them, so a mistake is reported at its line and not by the API server.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

from gitsync.quantity import Quantity, QuantityError
from gitsync.types import DNS1123_LABEL

__all__ = [
    "API_VERSION",
    "DNS1123_LABEL",
    "INSTANCE_NAME",
    "PROTECTED_POINTERS",
    "DnsLabel",
    "Duration",
    "Metadata",
    "Override",
    "PatchOperation",
    "PrometheusProvider",
    "Provider",
    "QuantityValue",
    "Resources",
    "StrictModel",
    "TrainingRunRef",
    "closest_name",
    "parse_duration",
]

API_VERSION = "gitsync.io/v1alpha1"

#: A gitsync instance's name: a folder of the status branch and a label value.
INSTANCE_NAME: Final = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"

DnsLabel = Annotated[str, StringConstraints(pattern=DNS1123_LABEL, max_length=63)]


def _check_quantity(value: str | int | float) -> str | int | float:
    # The value stays as written (the rendered object carries it to Kubernetes); only
    # its grammar is checked, by the parser the API server's own mirrors.
    try:
        Quantity.of(value)
    except QuantityError as exc:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2Gi, 1)") from exc
    return value


QuantityValue = Annotated[str | int | float, AfterValidator(_check_quantity)]

#: A TrainingRun by name, in the model's own namespace or as ``namespace/name``.
TrainingRunRef = Annotated[
    str,
    StringConstraints(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
]


class StrictModel(BaseModel):
    """camelCase on the wire, unknown fields rejected, instances immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )


class Metadata(StrictModel):
    name: DnsLabel
    namespace: DnsLabel | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Resources(StrictModel):
    requests: dict[str, QuantityValue] = Field(default_factory=dict)
    limits: dict[str, QuantityValue] = Field(default_factory=dict)


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``90``, ``"30s"``, ``"2m"``, ``"1h30m"``."""
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _DURATION.match(value.strip())
    if not value.strip() or match is None:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 2m, 1h30m)")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _check_duration(value: str | int | float) -> str | int | float:
    parse_duration(value)
    return value


Duration = Annotated[str | int | float, AfterValidator(_check_duration)]


def closest_name(wrong: str, choices: Iterable[str]) -> str | None:
    """The choice a misspelling most likely meant: same letters in another case first."""
    options = list(choices)
    lowered = {option.lower(): option for option in options}
    if wrong.lower() in lowered:
        return lowered[wrong.lower()]
    # Compared without case: storageURL is nearer storageUri than storage.
    matches = difflib.get_close_matches(wrong.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[matches[0]] if matches else None


# --- overrides ----------------------------------------------------------------------

#: JSON pointers (RFC 6901) an override may not touch: the object's identity, which
#: gitsync's inventory, pruning and status key on, and gitsync's own stamps, which say
#: whose object it is and whether it changed (a changed stamp would make another
#: instance prune it, or every cycle write it again).
PROTECTED_POINTERS: Final = (
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/namespace",
    "/metadata/labels/app.kubernetes.io~1managed-by",
    "/metadata/labels/gitsync.io~1",
    "/metadata/annotations/gitsync.io~1",
    # An InferenceService's traffic split, which a rollout sets step by step (a patch
    # would be overwritten at the next step, or fight it).
    "/spec/predictor/canaryTrafficPercent",
    "/spec/canary",
)


def _protected(pointer: str) -> str | None:
    """The protected pointer that ``pointer`` is, lies within or contains, if any."""
    for protected in PROTECTED_POINTERS:
        prefix_of_stamps = protected.endswith("~1")
        if (
            pointer.startswith(protected)
            if prefix_of_stamps
            else (pointer == protected or pointer.startswith(protected + "/"))
        ):
            return protected
        if protected.startswith(pointer.rstrip("/") + "/"):
            return protected
    return None


def _merge_pointers(patch: Any, prefix: str = "") -> list[str]:
    """The pointer of every value a merge patch sets or removes."""
    if not isinstance(patch, dict):
        return [prefix]
    pointers = []
    for key, value in patch.items():
        pointer = f"{prefix}/{str(key).replace('~', '~0').replace('/', '~1')}"
        pointers.extend(_merge_pointers(value, pointer) if isinstance(value, dict) else [pointer])
    return pointers


def _refuse_protected(pointers: Iterable[str]) -> None:
    for pointer in pointers:
        if (protected := _protected(pointer)) is None:
            continue
        if protected in PROTECTED_POINTERS[:4]:
            why = (
                "the object's apiVersion, kind, name and namespace are the spec's: gitsync "
                "keys its inventory, pruning and status on them"
            )
        elif protected.startswith("/spec/"):
            why = "gitsync's rollout sets the traffic split (spec.rollout)"
        else:
            why = (
                "gitsync's own labels and annotations say whose object it is and whether "
                "it changed, so another instance could prune it"
            )
        raise ValueError(f"an override may not change {pointer!r}: {why}")


JsonPointer = Annotated[str, StringConstraints(pattern=r"^(/([^~/]|~[01])*)+$")]


class PatchOperation(StrictModel):
    """One RFC 6902 operation."""

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: JsonPointer
    value: Any = None
    from_: JsonPointer | None = Field(default=None, alias="from")

    @model_validator(mode="after")
    def _operands(self) -> PatchOperation:
        if self.op in ("move", "copy") and self.from_ is None:
            raise ValueError(f"{self.op} needs from")
        if self.op in ("add", "replace", "test") and "value" not in self.model_fields_set:
            raise ValueError(f"{self.op} needs value")
        return self


class Override(StrictModel):
    """A patch applied to the rendered object: an RFC 7386 JSON merge patch
    (``merge``) or an RFC 6902 JSON patch (``jsonPatch``), for any field gitsync
    does not type."""

    merge: dict[str, Any] | None = None
    json_patch: list[PatchOperation] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_kind_not_protected(self) -> Override:
        if (self.merge is None) == (self.json_patch is None):
            raise ValueError("an override is one of merge or jsonPatch")
        if self.merge is not None:
            _refuse_protected(_merge_pointers(self.merge))
        for operation in self.json_patch or []:
            _refuse_protected([operation.path, *([operation.from_] if operation.from_ else [])])
        return self


_PROMETHEUS_ADDRESS: Final = r"^https?://[^/?#\s]+(/[^?#\s]*)?$"


class PrometheusProvider(StrictModel):
    address: Annotated[
        str,
        StringConstraints(pattern=_PROMETHEUS_ADDRESS),
        Field(description="http(s)://host[:port][/path] of the Prometheus HTTP API"),
    ]


class Provider(StrictModel):
    """Where measured numbers come from: a canary's analysis, a model's gates."""

    prometheus: PrometheusProvider
