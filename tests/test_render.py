"""Rendering: golden files for every example, and the rules every object follows."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from gitsync.clients.kube import KubeClient
from gitsync.diff import holds
from gitsync.loading import Entry, load_file
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


def test_hash_ignores_the_source_commit() -> None:
    """A commit that does not change what a file declares must cause no write."""
    (entry,) = load_file("t.yaml", RUN).entries
    (changed,) = load_file("t.yaml", RUN.replace(b"train:1", b"train:2")).entries

    def hashed(spec_entry: Entry, commit: str) -> str:
        context = RenderContext(
            instance="i", default_namespace="d", source_commits={"t.yaml": commit}
        )
        body = render(spec_entry, context)
        return str(body["metadata"]["annotations"][ANNOTATION_APPLIED_HASH])

    assert hashed(entry, "a" * 40) == hashed(entry, "b" * 40)
    assert hashed(entry, "a" * 40) != hashed(changed, "a" * 40)


def test_every_example_is_accepted_by_the_real_api_server(kube: KubeClient) -> None:
    """Server-side dry-run against the real KServe and Training Operator CRD schemas."""
    rendered = rendered_examples()
    for namespace in sorted({obj["metadata"]["namespace"] for obj in rendered}):
        kube.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            field_manager="test",
        )
    for obj in rendered:
        # Forced, as gitsync applies: other tests may have left fields of these shared
        # example objects owned by another manager.
        accepted = kube.apply(obj, field_manager="gitsync", force=True, dry_run=True)
        assert accepted["kind"] == obj["kind"]
        assert holds(accepted, obj), f"the server changed {obj['kind']} {obj['metadata']['name']}"
