"""docs/training-fields.md stays true: its tables against the TFJob, PyTorchJob and
TrainJob CRDs (every ``spec`` field has a row, every row is a field), against the
TrainingRun models (every field the page names exists, under its wire name, and every
Kubeflow-specific field is named), and against the renderer (a run that sets every
typed field writes every field a typed or rendered row claims, and nothing a row calls
an override).

Pure: the CRDs are read from ``$GITSYNC_CRDS_DIR`` and nothing talks to a server, so a
new CRD release or a changed spec model fails here in a second, with the rows to fix.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from gitsync.loading import load_file
from gitsync.render import RenderContext, render
from gitsync.specs import TrainingRun
from gitsync.specs.training import (
    ElasticPolicy,
    Initializer,
    InitializerStep,
    RunPolicy,
    RuntimeRef,
    SchedulingPolicy,
    TrainingRunSpec,
)

from .conftest import REPO_ROOT, crds_root

DOC = REPO_ROOT / "docs" / "training-fields.md"
CRDS = {
    "TFJob": "training-operator-v1/kubeflow.org_tfjobs.yaml",
    "PyTorchJob": "training-operator-v1/kubeflow.org_pytorchjobs.yaml",
    "TrainJob": "trainer-v2/trainer.kubeflow.org_trainjobs.yaml",
}
HOWS = frozenset({"typed", "rendered", "overrides", "refused"})
#: A map key in a path (``<type>`` in the doc, ``<role>`` in a TrainingRun path).
PLACEHOLDER = re.compile(r"<[^>]*>")
#: A TrainingRun field, as the page writes one (backticked, from spec. or metadata.).
CLAIM = re.compile(r"`((?:spec|metadata)\.[^`\s]*)`")


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    path: str
    how: str
    text: str

    @property
    def key(self) -> str:
        return PLACEHOLDER.sub("<>", self.path.removesuffix(".*"))

    @property
    def subtree(self) -> bool:
        return self.path.endswith(".*")

    def covers(self, path: str) -> bool:
        return path == self.key or (
            self.subtree and path.startswith((f"{self.key}.", f"{self.key}[]"))
        )

    def claims(self) -> list[str]:
        return CLAIM.findall(self.text)


@cache
def tables() -> dict[str, tuple[Row, ...]]:
    """Each ``## heading``'s table rows, in order."""
    found: dict[str, list[Row]] = {}
    heading = ""
    for number, line in enumerate(DOC.read_text().splitlines(), start=1):
        if line.startswith("## "):
            heading = line.removeprefix("## ").strip()
        elif line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            assert len(cells) == 3, f"{DOC.name}:{number}: a row has 3 cells, not {len(cells)}"
            found.setdefault(heading, []).append(
                Row(number, cells[0].strip("`"), cells[1], cells[2])
            )
    return {name: tuple(rows) for name, rows in found.items()}


def all_rows() -> list[Row]:
    return [row for rows in tables().values() for row in rows]


# -- the CRDs' fields ---------------------------------------------------------------


class _Every:
    """Stands for an object that sets every field (so a walk lists the whole schema)."""


EVERY = _Every()


def _child(data: object, key: str) -> object:
    if isinstance(data, _Every):
        return data
    return data.get(key) if isinstance(data, dict) else None


def _elements(data: object) -> list[object]:
    if isinstance(data, _Every):
        return [data]
    return list(data) if isinstance(data, list) else []


def _map_values(data: object) -> list[object]:
    if isinstance(data, _Every):
        return [data]
    return list(data.values()) if isinstance(data, dict) else []


def _level(node: dict[str, Any], path: str, data: object) -> Iterator[str]:
    """The fields below ``path`` that ``data`` sets, one level down."""
    for key in node.get("properties") or {}:
        if _child(data, key) is not None:
            yield f"{path}.{key}"


def field_paths(node: dict[str, Any], path: str, data: object = EVERY) -> Iterator[str]:
    """The paths below ``node`` (a CRD schema) that ``data`` sets: ``[]`` for a list's
    items and ``<>`` for a map's keys. A pod template stops at its PodSpec and
    Container fields: below them are core/v1's types, which the rows describe whole."""
    if node.get("type") == "array" and "items" in node:
        for element in _elements(data):
            yield from field_paths(node["items"], f"{path}[]", element)
        return
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        for value in _map_values(data):
            yield from field_paths(extra, f"{path}.<>", value)
        return
    properties = node.get("properties") or {}
    pod = (properties.get("spec") or {}).get("properties") or {}
    if "containers" in pod:
        yield from _level(node, path, data)
        yield from _level(
            properties.get("metadata") or {}, f"{path}.metadata", _child(data, "metadata")
        )
        spec = _child(data, "spec")
        yield from _level(properties["spec"], f"{path}.spec", spec)
        for container in _elements(_child(spec, "containers")):
            yield from _level(pod["containers"]["items"], f"{path}.spec.containers[]", container)
        return
    for key, schema in properties.items():
        if (value := _child(data, key)) is not None:
            yield f"{path}.{key}"
            yield from field_paths(schema, f"{path}.{key}", value)


@cache
def spec_schema(kind: str) -> dict[str, Any]:
    with (crds_root() / CRDS[kind]).open("rb") as stream:
        crd = yaml.load(stream, Loader=yaml.CSafeLoader)
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def crd_fields(kind: str) -> set[str]:
    return set(field_paths(spec_schema(kind), "spec"))


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_crd_field_has_a_row(kind: str) -> None:
    rows = tables()[kind]
    missing = sorted(path for path in crd_fields(kind) if not any(r.covers(path) for r in rows))
    named = ", ".join(path.replace("<>", "<type>") for path in missing)
    assert not missing, f"{DOC.name} ## {kind} has no row for: {named}"


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_row_is_a_crd_field(kind: str) -> None:
    fields = crd_fields(kind)
    stale = [
        f"{DOC.name}:{row.line}: {row.path}"
        for row in tables()[kind]
        if not any(row.covers(path) for path in fields)
    ]
    assert not stale, "rows for fields the CRD does not have:\n" + "\n".join(stale)


def test_each_row_says_how_and_each_field_has_one_row() -> None:
    rows = all_rows()
    assert len(rows) > 250  # the parse found the tables
    unknown = [f"{DOC.name}:{r.line}: {r.how!r}" for r in rows if r.how not in HOWS]
    assert not unknown, f"How is one of {sorted(HOWS)}:\n" + "\n".join(unknown)
    for rows_of_kind in tables().values():
        keys = [row.key for row in rows_of_kind]
        assert len(keys) == len(set(keys)), f"a field has two rows: {keys}"


# -- the TrainingRun fields the rows name -------------------------------------------


def _alternatives(annotation: Any) -> list[Any]:
    """The types an annotation allows: Optional and unions split, Annotated unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _alternatives(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [kind for arg in get_args(annotation) for kind in _alternatives(arg)]
    return [annotation]


def _resolves(annotation: Any, parts: list[str]) -> bool:
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    for kind in _alternatives(annotation):
        origin = get_origin(kind)
        if head == "[]":
            if origin is list and _resolves(get_args(kind)[0], rest):
                return True
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            fields = list(kind.model_fields.values())
            if PLACEHOLDER.fullmatch(head):
                if all(_resolves(field.annotation, rest) for field in fields):
                    return True
            elif any(f.alias == head and _resolves(f.annotation, rest) for f in fields):
                return True
        elif origin is dict and PLACEHOLDER.fullmatch(head) and _resolves(get_args(kind)[1], rest):
            return True
    return False


def spec_field_exists(path: str) -> bool:
    """Whether ``spec.roles.<role>.volumes`` (wire names, ``[]`` for a list's items,
    ``<...>`` for any key) is a field of a TrainingRun."""
    parts = [part for part in re.split(r"\.|(\[\])", path) if part]
    return _resolves(TrainingRun, parts)


def test_typed_claims_are_spec_fields() -> None:
    wrong = [
        f"{DOC.name}:{row.line}: {claim}"
        for row in all_rows()
        for claim in row.claims()
        if not spec_field_exists(claim)
    ]
    assert not wrong, "no such TrainingRun field:\n" + "\n".join(wrong)
    untyped = [f"{DOC.name}:{r.line}" for r in all_rows() if r.how == "typed" and not r.claims()]
    assert not untyped, f"typed rows name no TrainingRun field: {untyped}"


def test_the_claim_check_refuses_what_is_not_a_field() -> None:
    assert spec_field_exists("spec.roles.<role>.volumeMounts")
    assert spec_field_exists("spec.elasticPolicy.rdzvConf[].key")
    assert spec_field_exists("spec.podSecurityContext.seLinuxOptions")
    assert not spec_field_exists("spec.roles.<role>.framework")  # a run's, not a role's
    assert not spec_field_exists("spec.runtimeClassName")
    assert not spec_field_exists("spec.working_dir")  # a Python name, not the wire's


#: The Kubeflow-specific parts of a run, whose every field the doc must name; the
#: core/v1 shapes (volumes, env sources, ...) are named as a whole.
KUBEFLOW_PARTS = (
    RunPolicy,
    SchedulingPolicy,
    ElasticPolicy,
    Initializer,
    InitializerStep,
    RuntimeRef,
)


def spec_fields(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for field in model.model_fields.values():
        path = f"{prefix}.{field.alias}"
        yield path
        for kind in _alternatives(field.annotation):
            if kind in KUBEFLOW_PARTS:
                yield from spec_fields(kind, path)


def test_every_spec_field_is_in_the_doc() -> None:
    # A row's first column is the job's field, which is often spelt as the run's.
    prose = [line for line in DOC.read_text().splitlines() if not line.startswith("|")]
    named = [claim for row in all_rows() for claim in row.claims()]
    named += [claim for line in prose for claim in CLAIM.findall(line)]
    unnamed = [
        path
        for path in spec_fields(TrainingRunSpec, "spec")
        if not any(name == path or name.startswith((f"{path}.", f"{path}[")) for name in named)
    ]
    assert not unnamed, f"{DOC.name} does not say what these do: {', '.join(unnamed)}"


# -- what a run that sets every typed field renders ---------------------------------

#: Every kind of variable: text, and each source the spec's env map takes.
ENV = {
    "TEXT": "v",
    "FROM_SECRET": {"secretKeyRef": {"name": "hf", "key": "token"}},
    "FROM_CONFIG": {"configMapKeyRef": {"name": "settings", "key": "level"}},
    "FROM_FIELD": {"fieldRef": {"fieldPath": "metadata.name"}},
    "FROM_RESOURCE": {"resourceFieldRef": {"resource": "limits.cpu"}},
}
#: The pod fields a TrainJob takes too.
POD = {
    "image": "registry.example/train:1",
    "command": ["python", "train.py"],
    "args": ["--epochs=1"],
    "env": ENV,
    "resources": {"requests": {"cpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
    "securityContext": {"runAsNonRoot": True},
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    "nodeSelector": {"pool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}]}
                ]
            }
        }
    },
    "serviceAccountName": "trainer",
    "imagePullSecrets": ["registry"],
    "terminationGracePeriodSeconds": 30,
    "podSecurityContext": {"fsGroup": 1000},
    "podLabels": {"team": "ml"},
    "podAnnotations": {"sidecar.istio.io/inject": "false"},
    "output": "s3://models/{run}",
}
#: And those only a TFJob's or PyTorchJob's pods take.
REPLICA_POD = {
    **POD,
    "envFrom": [{"configMapRef": {"name": "settings"}}],
    "workingDir": "/work",
    "imagePullPolicy": "IfNotPresent",
    "restartPolicy": "OnFailure",
    "priorityClassName": "batch",
    "schedulerName": "volcano",
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
    ],
}
RUN_POLICY = {
    "backoffLimit": 3,
    "activeDeadlineSeconds": 3600,
    "ttlSecondsAfterFinished": 600,
    "cleanPodPolicy": "Running",
    "suspend": False,
    "managedBy": "kubeflow.org/training-operator",
    "schedulingPolicy": {
        "minAvailable": 2,
        "queue": "research",
        "minResources": {"cpu": "4"},
        "priorityClass": "batch",
        "scheduleTimeoutSeconds": 60,
    },
}
STEP = {"env": ENV, "secretRef": "hf"}
EVERY_TYPED_FIELD = {
    "TFJob": {
        "framework": "tensorflow",
        **REPLICA_POD,
        "replicas": {"chief": 1, "worker": 2, "ps": 1, "evaluator": 1},
        "roles": {"ps": {"resources": {"limits": {"cpu": "2"}}}},
        "runPolicy": RUN_POLICY,
        "successPolicy": "AllWorkers",
        "enableDynamicWorker": True,
    },
    "PyTorchJob": {
        "framework": "pytorch",
        **REPLICA_POD,
        "replicas": {"master": 1, "worker": 2},
        "runPolicy": RUN_POLICY,
        "nprocPerNode": "gpu",
        "elasticPolicy": {
            "minReplicas": 1,
            "maxReplicas": 4,
            "rdzvBackend": "c10d",
            "rdzvPort": 29400,
            "rdzvHost": "rendezvous",
            "rdzvId": "run",
            "rdzvConf": [{"key": "timeout", "value": "900"}],
            "standalone": False,
            "maxRestarts": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    },
    "TrainJob": {
        "runtimeRef": {"name": "torch-distributed", "kind": "ClusterTrainingRuntime"},
        **POD,
        "numNodes": 2,
        "nprocPerNode": 4,
        "runPolicy": {"suspend": False, "activeDeadlineSeconds": 3600},
        "initializer": {
            "dataset": {"storageUri": "hf://org/dataset", **STEP},
            "model": {"storageUri": "hf://org/model", **STEP},
        },
    },
}


def rendered_fields(kind: str) -> set[str]:
    document = {
        "apiVersion": "gitsync.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "every-field", "namespace": "ml"},
        "spec": EVERY_TYPED_FIELD[kind],
    }
    loaded = load_file("training/every-field.yaml", yaml.safe_dump(document).encode())
    assert not loaded.diagnostics, loaded.diagnostics
    body = render(loaded.entries[0], RenderContext(instance="doc", default_namespace="ml"))
    assert body["kind"] == kind
    return set(field_paths(spec_schema(kind), "spec", body["spec"]))


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_typed_rows_are_rendered(kind: str) -> None:
    rendered = rendered_fields(kind)
    rows = tables()[kind]
    unwritten = [
        f"{DOC.name}:{row.line}: {row.path} ({row.how})"
        for row in rows
        if row.how in {"typed", "rendered"} and not any(row.covers(path) for path in rendered)
    ]
    assert not unwritten, "a run setting every typed field does not write:\n" + (
        "\n".join(unwritten)
    )
    # What gitsync writes is typed or its own, never an override someone must write.
    for path in rendered:
        (row,) = [row for row in rows if row.covers(path)] or [None]
        assert row is not None, f"{path} is rendered and has no row"
        assert row.how in {"typed", "rendered"}, f"{DOC.name}:{row.line}: {path} is rendered"
