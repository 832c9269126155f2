"""Rendering: golden files for every example, and the rules every object follows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from gitsync.loading import load_file
from gitsync.render import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_SOURCE_COMMIT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    RenderContext,
    applied_hash,
    render,
    run_name,
)
from gitsync.specs import TrainingRun

from .examples import rendered_examples

GOLDEN = Path(__file__).parent / "golden" / "render"


def _golden_name(obj: dict[str, object]) -> str:
    metadata = obj["metadata"]
    assert isinstance(metadata, dict)
    return f"{obj['kind']}-{metadata.get('namespace', '_')}-{metadata['name']}.yaml"


def test_examples_match_golden_files() -> None:
    rendered = {_golden_name(obj): obj for obj in rendered_examples()}
    if os.environ.get("GITSYNC_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.glob("*.yaml"):
            old.unlink()
        for name, obj in rendered.items():
            (GOLDEN / name).write_text(yaml.safe_dump(obj, sort_keys=False))
    expected = {path.name: yaml.safe_load(path.read_text()) for path in GOLDEN.glob("*.yaml")}
    assert sorted(rendered) == sorted(expected)
    for name, obj in rendered.items():
        assert obj == expected[name], f"{name} differs from its golden file"


def test_every_object_is_stamped() -> None:
    for obj in rendered_examples(instance="blue"):
        labels = obj["metadata"]["labels"]
        annotations = obj["metadata"]["annotations"]
        assert labels[LABEL_MANAGED_BY] == "gitsync"
        assert labels[LABEL_INSTANCE] == "blue"
        assert annotations[ANNOTATION_SOURCE_COMMIT] == "0" * 40
        assert annotations[ANNOTATION_APPLIED_HASH] == applied_hash(obj)


RUN = b"""\
apiVersion: gitsync.io/v1alpha1
kind: TrainingRun
metadata: {name: train, namespace: ml}
spec:
  framework: pytorch
  image: ghcr.io/acme/train:1
  replicas: {master: 1, worker: 2}
  output: s3://models/{run}
"""


def _run(content: bytes) -> TrainingRun:
    (entry,) = load_file("t.yaml", content).entries
    assert isinstance(entry.spec, TrainingRun)
    return entry.spec


def test_run_name_follows_the_spec_not_the_file() -> None:
    base = _run(RUN)
    reformatted = _run(RUN.replace(b"{master: 1, worker: 2}", b"\n    master: 1\n    worker: 2"))
    changed = _run(RUN.replace(b"train:1", b"train:2"))

    assert run_name(base) == run_name(reformatted)
    assert run_name(base) != run_name(changed)
    assert run_name(base).startswith("train-") and len(run_name(base)) == len("train-") + 8


def test_training_output_uri_names_the_run() -> None:
    (entry,) = load_file("t.yaml", RUN).entries
    job = render(entry, RenderContext(instance="i", default_namespace="d"))
    name = job["metadata"]["name"]
    for role in ("Master", "Worker"):
        (container,) = job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"
        assert {"name": "OUTPUT_URI", "value": f"s3://models/{name}"} in container["env"]


@pytest.mark.parametrize(
    ("commit_a", "commit_b", "same"),
    [("a" * 40, "a" * 40, True), ("a" * 40, "b" * 40, False)],
)
def test_hash_follows_the_source_commit(commit_a: str, commit_b: str, same: bool) -> None:
    (entry,) = load_file("t.yaml", RUN).entries

    def hashed(commit: str) -> str:
        context = RenderContext(
            instance="i", default_namespace="d", source_commits={"t.yaml": commit}
        )
        return str(render(entry, context)["metadata"]["annotations"][ANNOTATION_APPLIED_HASH])

    assert (hashed(commit_a) == hashed(commit_b)) is same
