"""What every spec kind shares: the strict base model, metadata, resources, and the
value types (quantities, durations, storage URIs, DNS labels) checked as Kubernetes
and KServe check them, so a mistake is reported at its line and not by the API server.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from gitsync.quantity import Quantity, QuantityError

__all__ = [
    "API_VERSION",
    "DNS1123_LABEL",
    "DnsLabel",
    "Duration",
    "Metadata",
    "QuantityValue",
    "Resources",
    "StorageUri",
    "StrictModel",
    "TrainingRunRef",
    "closest_name",
    "parse_duration",
]

API_VERSION = "gitsync.io/v1alpha1"

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

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

_STORAGE_SCHEMES = (
    "s3://",
    "gs://",
    "pvc://",
    "hf://",
    "oci://",
    "https://",
    "http://",
    "azure://",
)


def _check_storage_uri(value: str) -> str:
    if not value.startswith(_STORAGE_SCHEMES):
        schemes = ", ".join(_STORAGE_SCHEMES)
        raise ValueError(f"{value!r} has no supported scheme ({schemes})")
    return value


StorageUri = Annotated[str, AfterValidator(_check_storage_uri)]

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
    matches = difflib.get_close_matches(wrong, options, n=1, cutoff=0.6)
    return matches[0] if matches else None
