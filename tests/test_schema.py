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
    assert len(documents) == 6  # 3 models, 2 runs, gitsync.yaml
    for doc in documents:
        assert list(validator.iter_errors(doc)) == [], doc.get("metadata", doc)


def test_a_typo_is_rejected(validator: jsonschema.Draft202012Validator) -> None:
    doc = next(d for d in _spec_documents() if d.get("kind") == "ModelDeployment")
    spec = doc["spec"]
    assert isinstance(spec, dict)
    model = dict(spec["model"])
    model["storageURI"] = model.pop("storageUri")
    assert not validator.is_valid({**doc, "spec": {**spec, "model": model}})
