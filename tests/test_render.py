"""Rendering: golden files for every example, and the rules every object follows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
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


# --- the TrainingRun surface: one golden job per group of fields ---------------------

TRAINING_GOLDEN = Path(__file__).parent / "golden" / "training"
TRAINING_CASES = sorted(
    path.name.removesuffix(".spec.yaml") for path in TRAINING_GOLDEN.glob("*.spec.yaml")
)


def _training_job(case: str) -> dict[str, Any]:
    path = TRAINING_GOLDEN / f"{case}.spec.yaml"
    loaded = load_file(path.name, path.read_bytes())
    assert not loaded.diagnostics, [str(d) for d in loaded.diagnostics]
    (entry,) = loaded.entries
    return render(entry, RenderContext(instance="golden", default_namespace="ml-training"))


@pytest.mark.parametrize("case", TRAINING_CASES)
def test_training_surface_matches_golden_jobs(case: str) -> None:
    job = _training_job(case)
    golden = TRAINING_GOLDEN / f"{case}.job.yaml"
    if os.environ.get("GITSYNC_UPDATE_GOLDEN"):
        golden.write_text(yaml.safe_dump(job, sort_keys=False))
    assert job == yaml.safe_load(golden.read_text())


def test_fields_left_out_render_nothing_so_the_operators_defaults_apply() -> None:
    """restartPolicy, cleanPodPolicy, nprocPerNode and the pod fields are defaulted by
    the Training Operator (Never for TFJob, OnFailure for PyTorchJob, None, auto)."""
    (entry,) = load_file("t.yaml", RUN).entries
    job = render(entry, RenderContext(instance="i", default_namespace="d"))
    assert set(job["spec"]) == {"pytorchReplicaSpecs"}
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        assert set(replica) == {"replicas", "template"}
        assert set(replica["template"]) == {"spec"}
        assert set(replica["template"]["spec"]) == {"containers"}
        (container,) = replica["template"]["spec"]["containers"]
        assert set(container) == {"name", "image", "env"}


def test_per_role_overrides_reach_only_their_role() -> None:
    replicas = _training_job("tf-per-role")["spec"]["tfReplicaSpecs"]

    def container(role: str) -> dict[str, Any]:
        (only,) = replicas[role]["template"]["spec"]["containers"]
        return dict(only)

    assert "limits" not in container("PS")["resources"]
    assert container("Worker")["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert [v["name"] for v in replicas["Chief"]["template"]["spec"]["volumes"]] == ["checkpoints"]
    assert all("volumes" not in replicas[r]["template"]["spec"] for r in ("PS", "Worker"))
    ps_env = {v["name"]: v["value"] for v in container("PS")["env"]}
    assert ps_env["EPOCHS"] == "0" and ps_env["PS_ONLY"] == "true" and "OUTPUT_URI" in ps_env
    assert "restartPolicy" not in replicas["Chief"]
    assert replicas["Worker"]["restartPolicy"] == "OnFailure"


#: examples/repo/training/fraud-train.yaml as it was before roles and the pod fields.
FRAUD_TRAIN_BEFORE_ROLES = b"""\
apiVersion: gitsync.io/v1alpha1
kind: TrainingRun
metadata: {name: fraud-train, namespace: ml-training, labels: {team: risk}}
spec:
  framework: tensorflow
  image: ghcr.io/acme/fraud-train:1.4.0
  command: [python, -m, train]
  args: ["--epochs", "10"]
  env: {DATA_URI: s3://data/fraud/2026-11}
  replicas: {chief: 1, worker: 2, ps: 1}
  resources:
    limits: {cpu: "4", memory: 8Gi, nvidia.com/gpu: "1"}
  output: s3://models/fraud-detector/{run}
  runPolicy: {backoffLimit: 2, activeDeadlineSeconds: 86400, ttlSecondsAfterFinished: 3600}
"""


def test_the_new_fields_leave_existing_run_names_alone() -> None:
    """An upgrade must not rename (so restart) a run whose spec did not change: specs
    written before roles and the pod fields existed keep the names they had."""
    assert run_name(_run(FRAUD_TRAIN_BEFORE_ROLES)) == "fraud-train-77c1309a"
    names = {obj["metadata"]["name"] for obj in rendered_examples() if "Job" in obj["kind"]}
    assert "intent-finetune-30696afc" in names  # that example is unchanged


@pytest.mark.parametrize("case", TRAINING_CASES)
def test_every_training_golden_is_accepted_by_the_real_api_server(
    kube: KubeClient, case: str
) -> None:
    job = _training_job(case)
    kube.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml-training"}},
        field_manager="test",
    )
    accepted = kube.apply(job, field_manager="gitsync", force=True, dry_run=True)
    assert holds(accepted, job), f"the server changed {case}"


def test_a_field_left_unset_is_not_hashed_at_any_depth() -> None:
    """So a field added to gitsync later (here: written as null, as a new field's
    default is) never renames a run that does not use it."""
    with_roles = RUN + b"  roles:\n    worker:\n      env: {A: '1'}\n"
    nulls = with_roles + b"      workingDir: null\n  volumes: null\n"
    assert run_name(_run(with_roles)) == run_name(_run(nulls))
    assert run_name(_run(with_roles)) != run_name(_run(RUN))
