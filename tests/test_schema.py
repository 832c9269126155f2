"""`gitsync schema` describes exactly what the loader accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "repo"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    result = subprocess.run(
        [sys.executable, "-m", "gitsync", "schema"], capture_output=True, text=True, check=True
    )
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _spec_documents() -> list[dict[str, object]]:
    docs = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc.get("apiVersion") == "gitsync.io/v1alpha1" and doc.get("kind") != "Policy":
                docs.append(doc)
    return docs


def test_every_example_validates(validator: jsonschema.Draft202012Validator) -> None:
    documents = _spec_documents()
    assert len(documents) == 13  # 9 models, 3 runs, gitsync.yaml
    for doc in documents:
        assert list(validator.iter_errors(doc)) == [], doc.get("metadata", doc)


def test_a_typo_is_rejected(validator: jsonschema.Draft202012Validator) -> None:
    doc = next(d for d in _spec_documents() if d.get("kind") == "ModelDeployment")
    spec = doc["spec"]
    assert isinstance(spec, dict)
    model = dict(spec["model"])
    model["storageURI"] = model.pop("storageUri")
    assert not validator.is_valid({**doc, "spec": {**spec, "model": model}})


def _status_schema() -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "gitsync", "schema", "--status"],
        capture_output=True,
        text=True,
        check=True,
    )
    schema: dict[str, object] = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_status_documents_have_a_schema_that_fits_what_gitsync_writes() -> None:
    from gitsync.health import Health, HealthReport, TrafficTarget  # noqa: PLC0415
    from gitsync.status import build_status, dump_document  # noqa: PLC0415
    from gitsync.status_document import ModelInfo, RolloutInfo, RunRecord  # noqa: PLC0415
    from gitsync.status_document import Traffic as TrafficDoc  # noqa: PLC0415

    validator = jsonschema.Draft202012Validator(_status_schema())
    written = build_status(
        kind="ModelDeployment",
        name="fraud",
        namespace="ml",
        instance="prod",
        source="models/fraud.yaml",
        source_commit="c" * 40,
        now="2026-12-01T00:00:00Z",
        health=HealthReport(Health.HEALTHY, "ok", traffic=(TrafficTarget("r1", 100, latest=True),)),
        model=ModelInfo(
            storage_uri="s3://m", traffic=(TrafficDoc(revision="r1", percent=100, latest=True),)
        ),
        run=RunRecord(name="r", phase="Succeeded", replica_statuses={"Worker": {"succeeded": 2}}),
        rollout=RolloutInfo(phase="Promoted", traffic=100, step=2, evidence=("error-rate 0",)),
    )
    data = yaml.safe_load(dump_document(written))
    assert list(validator.iter_errors(data)) == []
    # The schema can fail: a document without its phase does not fit it.
    del data["phase"]
    assert list(validator.iter_errors(data))
