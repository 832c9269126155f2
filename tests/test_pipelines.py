"""Train -> evaluate -> promote, end to end on the real API server with the dev
controllers: a run below its gate is not served, the best of three runs is, and a
production model takes what staging serves only once staging has been Ready for its
hold, never while staging's rollout failed; and examples/repo's own pipeline walks
staging -> production on a daemon's reconciler, as hack/pipeline-demo shows it."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.reconciler import Reconciler, SyncOptions

from .examples import EXAMPLES
from .specrepo import SpecRepo

ISVC = ("serving.kserve.io/v1beta1", "InferenceService")
TRAINJOB = ("trainer.kubeflow.org/v1alpha1", "TrainJob")
#: The dev controllers' knobs: start at once, run for a second, ready at once.
FAST = {"dev.gitsync.io/start-delay": "0", "dev.gitsync.io/run-duration": "1"}
READY = {"dev.gitsync.io/ready-delay": "0.2"}


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> SpecRepo:
    spec_repo = SpecRepo(tmp_path / "repo")
    spec_repo.write("gitsync.yaml", f"defaults: {{namespace: {namespace}}}\n")
    return spec_repo


@pytest.fixture
def daemon(repo: SpecRepo, control_plane: ControlPlane, tmp_path: Path) -> Iterator[Reconciler]:
    """One reconciler on the real clock: promotion holds are judged by it against the
    times the dev controllers write."""
    git = GitSource(repo.url, branch="main", cache_dir=tmp_path / "cache")
    kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    reconciler = Reconciler(
        git=git, kube=kube, options=SyncOptions(instance=f"pipe-{uuid.uuid4().hex[:6]}")
    )
    yield reconciler
    reconciler.close()
    kube.close()
    git.close()


def until(daemon: Reconciler, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        report = daemon.cycle()
        if check():
            return
        assert time.monotonic() < deadline, [s.message for s in report.statuses]
        time.sleep(0.3)


def served(kube: KubeClient, namespace: str, name: str) -> str | None:
    live = kube.get(*ISVC, name, namespace=namespace)
    return None if live is None else str(live["spec"]["predictor"]["model"].get("storageUri"))


def status(repo: SpecRepo, namespace: str, kind: str, name: str) -> dict[str, Any]:
    doc = yaml.safe_load(repo.status_document(namespace, kind, name))
    assert isinstance(doc, dict)
    return doc


def train_job(namespace: str, *, accuracy: float, lr: str) -> str:
    """A TrainJob whose trainer reports ``accuracy``; ``lr`` makes each one a new run."""
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {
                "name": "train",
                "namespace": namespace,
                "labels": {"team": "risk"},
                "annotations": {**FAST, "dev.gitsync.io/metrics": f"accuracy={accuracy}"},
            },
            "spec": {
                "runtimeRef": {"name": "torch-distributed"},
                "image": "ghcr.io/acme/finetune:1.0.0",
                "args": [f"--lr={lr}"],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                "output": "s3://models/train/{run}",
            },
        }
    )


def model(namespace: str, name: str, source: dict[str, Any], **annotations: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"team": "risk"},
                "annotations": {**READY, **annotations},
            },
            "spec": {
                "model": {"format": "pytorch", **source},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            },
        }
    )


def runs(kube: KubeClient, namespace: str) -> dict[str, str]:
    """Each TrainJob's name by the learning rate it ran with."""
    return {
        job["spec"]["trainer"]["args"][0]: job["metadata"]["name"]
        for job in kube.list(*TRAINJOB, namespace=namespace)["items"]
    }


def finished(repo: SpecRepo, namespace: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            doc = status(repo, namespace, "TrainingRun", "train")
        except (AssertionError, KeyError):
            return False
        return sum(r["phase"] == "Succeeded" for r in doc.get("runs", [])) >= count

    return check


def test_a_run_below_its_gate_is_not_served_and_the_best_of_three_is(
    daemon: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    gate = {"gates": [{"metric": "accuracy", "min": 0.92}]}
    source = {"fromTrainingRun": "train", "select": {"by": "best", "metric": "accuracy"}, **gate}
    repo.write("train.yaml", train_job(namespace, accuracy=0.90, lr="0.1"))
    repo.write("scorer.yaml", model(namespace, "scorer", source))
    repo.commit("train, gated at 0.92")
    until(daemon, finished(repo, namespace, 1))
    daemon.cycle()

    # Below the gate: nothing is served, and the status says why, with the evidence.
    assert served(kube, namespace, "scorer") is None
    doc = status(repo, namespace, "ModelDeployment", "scorer")
    assert doc["phase"] == "Pending"
    assert "accuracy 0.9 < min 0.92" in doc["message"], doc["message"]

    repo.write("train.yaml", train_job(namespace, accuracy=0.97, lr="0.01"))
    repo.commit("a better learning rate")
    until(daemon, finished(repo, namespace, 2))
    repo.write("train.yaml", train_job(namespace, accuracy=0.93, lr="0.001"))
    repo.commit("a third run, good but not the best")
    until(daemon, finished(repo, namespace, 3))
    daemon.cycle()

    best = runs(kube, namespace)["--lr=0.01"]
    assert served(kube, namespace, "scorer") == f"s3://models/train/{best}"
    lineage = status(repo, namespace, "ModelDeployment", "scorer")["model"]["fromTrainingRun"]
    assert lineage["run"] == best
    assert lineage["evidence"] == ["accuracy 0.97 >= 0.92"]


def test_production_follows_staging_after_its_hold_and_never_a_failed_rollout(
    daemon: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    hold = {"fromModelDeployment": {"name": "staging", "healthyFor": "3s"}}
    repo.write("staging.yaml", model(namespace, "staging", {"storageUri": "s3://m/v1"}))
    # In the repo's default namespace, which is staging's too.
    follower = yaml.safe_load(model(namespace, "production", hold))
    del follower["metadata"]["namespace"]
    repo.write("production.yaml", yaml.safe_dump(follower))
    repo.commit("staging serves v1; production follows it")

    until(daemon, lambda: served(kube, namespace, "staging") == "s3://m/v1")
    assert served(kube, namespace, "production") is None
    production = status(repo, namespace, "ModelDeployment", "production")
    assert production["phase"] == "Pending"
    assert "waiting to promote" in production["message"], production["message"]

    until(daemon, lambda: served(kube, namespace, "production") == "s3://m/v1")
    ready = next(
        c
        for c in status(repo, namespace, "ModelDeployment", "staging")["conditions"]
        if c["type"] == "Ready"
    )
    assert ready["status"] == "True"
    promoted = status(repo, namespace, "ModelDeployment", "production")
    assert promoted["model"]["fromTrainingRun"]["promotedFrom"] == (
        f"ModelDeployment {namespace}/staging"
    )

    # Staging's canary of v2 fails (its revision never becomes ready): it is rolled
    # back, and production keeps v1, however long it waits.
    canary = {
        "strategy": "canary",
        "steps": [{"traffic": 50, "pause": "indefinite"}],
        "progressDeadline": "3s",
    }
    failing = yaml.safe_load(
        model(namespace, "staging", {"storageUri": "s3://m/v2"}, **{"dev.gitsync.io/fail": "true"})
    )
    failing["spec"]["rollout"] = canary
    repo.write("staging.yaml", yaml.safe_dump(failing))
    repo.commit("staging tries v2")
    until(
        daemon,
        lambda: status(repo, namespace, "ModelDeployment", "staging")["phase"] == "RolledBack",
    )
    deadline = time.monotonic() + 5  # longer than the hold
    while time.monotonic() < deadline:
        daemon.cycle()
        assert served(kube, namespace, "production") == "s3://m/v1"
        time.sleep(0.3)
    held = status(repo, namespace, "ModelDeployment", "production")
    assert held["phase"] == "Healthy"


#: examples/repo's pipeline: its TrainingRun, the staging and production models, and
#: what judges them (the repo's settings and policies).
EXAMPLE_PIPELINE = (
    "gitsync.yaml",
    "policies/namespace-tenancy.yaml",
    "training/support-llm.yaml",
    "models/support-llm-staging.yaml",
    "models/support-llm-production.yaml",
)


@pytest.fixture
def example_pipeline(kube: KubeClient, tmp_path: Path) -> Iterator[tuple[SpecRepo, str]]:
    """The example pipeline in namespaces of its own (``<prefix>-ml-staging``, ...),
    with production's hold cut from the example's minute to 3 seconds."""
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    repo = SpecRepo(tmp_path / "example")
    for path in EXAMPLE_PIPELINE:
        text = (EXAMPLES / path).read_text()
        text = re.sub(r"\bml-(serving|training|nlp|staging)\b", rf"{prefix}-ml-\1", text)
        held = re.sub(r"\bhealthyFor: 1m\b", "healthyFor: 3s", text)
        assert (held != text) == (path == "models/support-llm-production.yaml"), path
        repo.write(path, held)
    repo.commit("the support-llm pipeline")
    yield repo, prefix
    for suffix in ("serving", "training", "nlp", "staging"):
        kube.delete("v1", "Namespace", f"{prefix}-ml-{suffix}")


def test_the_example_pipeline_walks_staging_to_production(
    example_pipeline: tuple[SpecRepo, str],
    control_plane: ControlPlane,
    kube: KubeClient,
    tmp_path: Path,
) -> None:
    """As hack/pipeline-demo walks it, on a daemon's reconciler (informers, and a
    cycle with nothing new ends at once): the TrainJob Succeeds, staging serves the
    run that passed its gates, production takes it after its hold; a second run
    better by accuracy but above the loss gate is served nowhere."""
    repo, prefix = example_pipeline
    staging, production, training = (f"{prefix}-ml-{s}" for s in ("staging", "nlp", "training"))
    git = GitSource(repo.url, branch="main", cache_dir=tmp_path / "cache")
    daemon = Reconciler(
        git=git,
        kube=KubeClient.from_kubeconfig(control_plane.kubeconfig),
        options=SyncOptions(instance=f"ex-{uuid.uuid4().hex[:6]}"),
        watch=True,
    )
    try:
        daemon.cycle()
        # No run has Succeeded yet: both models wait, and say for what.
        first = status(repo, staging, "ModelDeployment", "support-llm")
        assert (first["phase"], first["message"]) == (
            "Pending",
            f"waiting for a Succeeded run of TrainingRun {training}/support-llm",
        )
        held = status(repo, production, "ModelDeployment", "support-llm")
        assert held["phase"] == "Pending"
        assert held["message"].startswith("waiting to promote: "), held["message"]

        (run,) = runs_of(kube, training)
        uri = f"s3://models/support-llm/{run}"
        until(daemon, lambda: served(kube, staging, "support-llm") == uri)
        # Staging serves it as soon as it passed its gates; production holds.
        assert served(kube, production, "support-llm") is None
        lineage = status(repo, staging, "ModelDeployment", "support-llm")["model"]
        assert lineage["fromTrainingRun"]["run"] == run
        assert lineage["fromTrainingRun"]["evidence"] == [
            "accuracy 0.94 >= 0.9",
            "loss 0.21 <= 0.3",
        ]

        until(daemon, lambda: served(kube, production, "support-llm") == uri)
        until(
            daemon,
            lambda: (
                status(repo, production, "ModelDeployment", "support-llm")["phase"] == "Healthy"
            ),
        )
        promoted = status(repo, production, "ModelDeployment", "support-llm")["model"]
        assert promoted["fromTrainingRun"]["run"] == run
        assert promoted["fromTrainingRun"]["promotedFrom"] == (
            f"ModelDeployment {staging}/support-llm"
        )
        assert promoted["fromTrainingRun"]["evidence"] == lineage["fromTrainingRun"]["evidence"]

        # A second run: more accurate, but its loss is above the gate.
        path = "training/support-llm.yaml"
        text = (repo.work / path).read_text()
        worse = text.replace('"--epochs", "2"', '"--epochs", "4"').replace(
            "accuracy=0.94,loss=0.21", "accuracy=0.96,loss=0.35"
        )
        assert worse.count("--epochs") == 1 and "loss=0.35" in worse
        repo.write(path, worse)
        repo.commit("support-llm: 4 epochs")
        until(daemon, lambda: len(finished_runs(repo, training)) == 2)
        daemon.cycle()
        (second,) = set(runs_of(kube, training)) - {run}
        assert finished_runs(repo, training)[second]["trainerStatus"]["metrics"] == {
            "accuracy": "0.96",
            "loss": "0.35",
        }
        assert served(kube, staging, "support-llm") == uri
        assert served(kube, production, "support-llm") == uri
        # And then the daemon is quiet: a cycle with nothing new ends at once.
        deadline = time.monotonic() + 30
        while not daemon.cycle().skipped:
            assert time.monotonic() < deadline, "the daemon never settled"
            time.sleep(0.3)
    finally:
        daemon.close()
        git.close()


def runs_of(kube: KubeClient, namespace: str) -> list[str]:
    return [job["metadata"]["name"] for job in kube.list(*TRAINJOB, namespace=namespace)["items"]]


def finished_runs(repo: SpecRepo, namespace: str) -> dict[str, dict[str, Any]]:
    """The Succeeded runs the TrainingRun's status lists, by name."""
    try:
        doc = status(repo, namespace, "TrainingRun", "support-llm")
    except (AssertionError, KeyError):
        return {}
    return {r["name"]: r for r in doc.get("runs", []) if r["phase"] == "Succeeded"}
