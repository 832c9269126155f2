"""The status document: one per spec on the status branch, a public contract.

People read these files, CI jobs and dashboards parse them, and gitsync itself reads
them back as its memory between processes (the runs of a TrainingRun, its schedule
ticks, the kinds it applied). So they are typed, with one way to parse and one way
to dump, and a JSON Schema (``gitsync schema --status``) like the specs have.

The parts are frozen dataclasses that pydantic parses, dumps and describes (through
one ``TypeAdapter``): a cycle builds a thousand of them, and a plain dataclass costs
a fraction of a validated model to make, while what comes from Git is still
validated. Reading is lenient where that keeps data: fields a newer gitsync added are
ignored; a document that does not fit at all counts as absent (the next cycle writes
a good one). Writing is deterministic: fields in a fixed order, defaults left out, no
clock, so a cycle where nothing changed produces the same bytes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, Literal, TypeVar, dataclass_transform

import pydantic
import yaml
from pydantic import ConfigDict, TypeAdapter
from pydantic.alias_generators import to_camel

from gitsync import block_yaml
from gitsync.errors import ConfigurationError
from gitsync.specs.common import INSTANCE_NAME

__all__ = [
    "OVERVIEW_PATH",
    "STATUS_ROOT",
    "ChildJobs",
    "Condition",
    "Lineage",
    "ModelInfo",
    "Phase",
    "RolloutInfo",
    "RunRecord",
    "ScheduleInfo",
    "Score",
    "StatusDocument",
    "Traffic",
    "TrainerProgress",
    "check_instance",
    "document_from_data",
    "dump_document",
    "instance_of_path",
    "instance_prefix",
    "parse_document",
    "readme_path",
    "status_json_schema",
    "status_path",
]


class Phase(enum.Enum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    INVALID = "Invalid"
    ROLLED_BACK = "RolledBack"
    UNKNOWN = "Unknown"


_CONFIG: Final = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


_C = TypeVar("_C")


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def _part(cls: type[_C]) -> type[_C]:
    """A frozen, slotted, keyword-only dataclass that pydantic reads in camelCase."""
    cls.__pydantic_config__ = _CONFIG  # type: ignore[attr-defined]
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


@_part
class Condition:
    """A Kubernetes-style condition (see :mod:`gitsync.conditions`)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: str


@_part
class Traffic:
    revision: str
    percent: int
    latest: bool


@_part
class Score:
    """A gate query's answer for one run, kept in the model's document: once Prometheus
    has scored a run, the run is judged by that score, so what a model serves does
    not change because a series aged out of Prometheus, and each run is asked once."""

    run: str
    metric: str
    value: float
    #: The PromQL as asked (its holes filled), and the Prometheus asked (redacted).
    query: str
    address: str


@_part
class Lineage:
    """The training run a ``fromTrainingRun`` model serves (for a promoted model: the
    run its upstream serves, and the upstream it was promoted from)."""

    name: str
    run: str | None = None
    source_commit: str | None = None
    completion_time: str | None = None
    #: How the run met the model's gates: ``accuracy 0.95 >= 0.92``.
    evidence: tuple[str, ...] = ()
    #: ``ModelDeployment <namespace>/<name>`` for a promoted model.
    promoted_from: str | None = None
    #: Why a promoted model does not take what its upstream serves now, while it
    #: keeps what it serves: in the document, so the hold is on record from the
    #: cycle it starts, and a commit tells when it changes or ends.
    held: str | None = None
    #: What queried gates were answered for the runs the model chooses among.
    scores: tuple[Score, ...] = ()


@_part
class ModelInfo:
    format: str | None = None
    storage_uri: str | None = None
    #: When this storageUri was first rendered for the model: a model following
    #: this one holds its promotion from then (see :mod:`gitsync.pipeline`).
    served_since: str | None = None
    from_training_run: Lineage | None = None
    url: str | None = None
    traffic: tuple[Traffic, ...] = ()


@_part
class ChildJobs:
    """A TrainJob's child Jobs of one replicated job (``jobsStatus``), by state."""

    name: str
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    suspended: int = 0


@_part
class TrainerProgress:
    """What a TrainJob's trainer reported (``trainerStatus``): progress and metrics."""

    progress_percentage: int | None = None
    estimated_remaining_seconds: int | None = None
    #: Metric name -> value, as the trainer reported them (strings, as in the CRD).
    metrics: dict[str, str] | None = None
    last_updated_time: str | None = None


@_part
class RunRecord:
    """One run (one TFJob, PyTorchJob or TrainJob) of a TrainingRun."""

    name: str
    phase: str
    start_time: str | None = None
    completion_time: str | None = None
    replica_statuses: dict[str, Any] | None = None
    reason: str | None = None
    output_uri: str | None = None
    source_commit: str | None = None
    scheduled_at: str | None = None
    jobs_status: tuple[ChildJobs, ...] = ()
    trainer_status: TrainerProgress | None = None


@_part
class ScheduleInfo:
    since: str
    last_tick: str | None = None
    next_tick: str | None = None
    skipped: str | None = None


@_part
class RolloutInfo:
    """Where a canary rollout stands (the live object holds its full state)."""

    phase: str
    traffic: int
    step: int
    canary_revision: str | None = None
    stable_revision: str | None = None
    started_at: str | None = None
    reason: str | None = None
    story: str | None = None
    #: The number of the last transition the status branch told (see the journal
    #: of :class:`gitsync.rollout.RolloutState`).
    told: int | None = None
    evidence: tuple[str, ...] = ()


@_part
class StatusDocument:
    kind: str
    name: str
    namespace: str
    #: The gitsync instance that wrote it; empty in documents from before instances
    #: shared a branch (they lie at the old path, see :func:`status_path`).
    instance: str = ""
    source: str
    source_commit: str
    phase: Phase
    message: str
    conditions: tuple[Condition, ...]
    resources: tuple[str, ...] = ()
    model: ModelInfo | None = None
    run: RunRecord | None = None
    runs: tuple[RunRecord, ...] = ()
    schedule: ScheduleInfo | None = None
    rollout: RolloutInfo | None = None
    errors: tuple[str, ...] = ()
    #: What happened to a rollout since the branch last told it, in words: told by
    #: the status commit, not kept in the document.
    transitions: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return status_path(self.kind, self.namespace, self.name, instance=self.instance)

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)


STATUS_ROOT: Final = "status"
#: The one file every instance rewrites: a table of the instances sharing the branch.
OVERVIEW_PATH: Final = f"{STATUS_ROOT}/README.md"
# An instance's name is a folder of the branch and a label value on its objects.
_INSTANCE: Final = re.compile(INSTANCE_NAME)


def check_instance(instance: str) -> str:
    """``instance``, if it can name a folder of its own; raises ConfigurationError."""
    if not _INSTANCE.match(instance) or instance == "README.md":
        raise ConfigurationError(
            f"instance name {instance!r}: use 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return instance


def instance_prefix(instance: str) -> str:
    """The folder an instance owns on the status branch, with a trailing slash."""
    return f"{STATUS_ROOT}/{instance}/"


def readme_path(instance: str) -> str:
    return f"{instance_prefix(instance)}README.md"


def status_path(kind: str, namespace: str, name: str, *, instance: str) -> str:
    """Where a spec's document lies: ``status/<instance>/<namespace>/<Kind>/<name>.yaml``.

    ``instance=""`` is the layout from before instances shared a branch,
    ``status/<namespace>/<Kind>/<name>.yaml``, where old documents still lie.
    """
    owner = f"{instance}/" if instance else ""
    return f"{STATUS_ROOT}/{owner}{namespace or '_cluster'}/{kind}/{name}.yaml"


def instance_of_path(path: str) -> str | None:
    """The instance whose folder a document path lies in; "" for the old layout, None
    for a path no document of either layout has."""
    parts = path.split("/")
    if parts[0] != STATUS_ROOT or not path.endswith(".yaml"):
        return None
    return {5: parts[1], 4: ""}.get(len(parts))


@cache
def _adapter() -> TypeAdapter[StatusDocument]:
    return TypeAdapter(StatusDocument)


def as_data(doc: StatusDocument) -> dict[str, Any]:
    """The document as plain data, in field order, defaults left out."""
    data: dict[str, Any] = _adapter().dump_python(
        doc, mode="json", by_alias=True, exclude_defaults=True, exclude={"transitions"}
    )
    return data


def dump_document(doc: StatusDocument) -> bytes:
    data = as_data(doc)
    text = block_yaml.dump(data)  # PyYAML's bytes, written faster (see gitsync.block_yaml)
    if text is None:
        text = yaml.dump(
            data, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True, width=1000
        )
    return text.encode("utf-8")


def parse_document(content: bytes) -> StatusDocument | None:
    """A document as the status branch holds it; None when it is unreadable."""
    return document_from_data(document_data(content))


def document_data(content: bytes) -> object | None:
    """A document's YAML as data (what :func:`document_from_data` validates)."""
    try:
        data: object = yaml.load(content, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError):
        # libyaml raises the latter for a scalar its tag cannot hold (2001-02-30).
        return None
    return data


def document_from_data(data: object) -> StatusDocument | None:
    if not isinstance(data, Mapping):
        return None
    try:
        return _adapter().validate_python(data)
    except pydantic.ValidationError:
        return None


def status_json_schema() -> dict[str, Any]:
    """The JSON Schema of a status document, as the branch holds it."""
    schema: dict[str, Any] = _adapter().json_schema(by_alias=True, mode="serialization")
    schema["title"] = "gitsync status document"
    schema["properties"].pop("transitions", None)
    return schema
