"""`gitsync plan`: golden Markdown for the changes a reviewer meets, exit codes, drift."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.reconciler import Reconciler, SyncOptions

from .specrepo import SpecRepo

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "repo"
GOLDEN = Path(__file__).parent / "golden" / "plan"


def plan(repo: SpecRepo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitsync", "plan", "--repo", str(repo.work), *args],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", "GITSYNC_KUBECONFIG"}},
    )


@pytest.fixture
def examples_repo(tmp_path: Path) -> SpecRepo:
    repo = SpecRepo(tmp_path / "repo")
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        repo.write(str(path.relative_to(EXAMPLES)), path.read_bytes())
    repo.commit("the examples")
    return repo


def _stable(text: str, repo: SpecRepo) -> str:
    """Commit ids differ on every run: name them by their role instead."""
    from .specrepo import git  # noqa: PLC0415

    for role, rev in (("BASE", "HEAD~1"), ("HEAD", "HEAD")):
        sha = git("rev-parse", rev, cwd=repo.work)
        text = text.replace(sha, role).replace(sha[:7], role)
    return text


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.md"
    if os.environ.get("GITSYNC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"plan output differs from {path}"


SCENARIOS = {
    "model-change": {
        "models/fraud-detector.yaml": lambda t: (
            t.replace("fraud-detector/v7", "fraud-detector/v8")
            .replace("cpu: 500m, memory: 1Gi", 'cpu: "1", memory: 1Gi, nvidia.com/gpu: "1"')
            .replace("max: 4", "max: 6")
        ),
    },
    "new-training-run": {
        "training/fraud-train.yaml": lambda t: t.replace("fraud-train:1.4.0", "fraud-train:1.5.0"),
    },
    "canary-model-change": {
        "models/fraud-detector.yaml": lambda t: t.replace(
            "fraud-detector/v7", "fraud-detector/v8"
        ).replace(
            "rollout: {strategy: direct}",
            "rollout:\n"
            "    strategy: canary\n"
            "    steps: [{traffic: 10, pause: 2m}, {traffic: 50, pause: 5m}]\n"
            "    progressDeadline: 10m\n"
            "    analysis:\n"
            "      interval: 30s\n"
            "      failureLimit: 2\n"
            "      metrics:\n"
            "        - {name: error-rate, query: 'sum(rate(x[1m]))', max: 0.01}\n"
            "      provider: {prometheus: {address: 'http://prometheus:9090'}}",
        ),
    },
    "removal": {"models/churn-predictor.yaml": None},
    "pipeline-retrain": {
        "training/support-llm.yaml": lambda t: t.replace("support-llm:0.2.0", "support-llm:0.3.0"),
    },
    "settings-and-overrides": {
        "models/search-ranker.yaml": lambda t: t.replace(
            "  imagePullSecrets: [ghcr-pull]\n",
            "  imagePullSecrets: [ghcr-pull]\n  nodeSelector: {pool: serving}\n",
        ),
        "models/income-explainer.yaml": lambda t: (
            t
            + "  overrides:\n"
            + "    - merge: {spec: {predictor: {terminationGracePeriodSeconds: 45}}}\n"
        ),
    },
    "invalid-file": {
        "models/support-intent.yaml": lambda t: t.replace("storageUri", "storageURI"),
    },
    "policy-failure": {
        "training/fraud-train.yaml": lambda t: t.replace(
            "fraud-train:1.4.0", "fraud-train:latest"
        ).replace("worker: 2", "worker: 12"),
    },
}
EXIT_CODES = {
    "model-change": 2,
    "canary-model-change": 2,
    "new-training-run": 2,
    "removal": 2,
    "pipeline-retrain": 2,
    "settings-and-overrides": 2,
    "invalid-file": 1,
    "policy-failure": 1,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_plan_golden(examples_repo: SpecRepo, scenario: str) -> None:
    for path, edit in SCENARIOS[scenario].items():
        if edit is None:
            examples_repo.delete(path)
        else:
            target = examples_repo.work / path
            target.write_text(edit(target.read_text()))
    examples_repo.commit(scenario)

    result = plan(examples_repo, "--base", "HEAD~1", "--head", "HEAD")

    assert result.returncode == EXIT_CODES[scenario], result.stderr
    _check_golden(scenario, _stable(result.stdout, examples_repo))


def test_no_change_exits_zero_and_json_is_structured(examples_repo: SpecRepo) -> None:
    examples_repo.write("README.md", "docs only\n")
    examples_repo.commit("docs")

    markdown = plan(examples_repo, "--base", "HEAD~1")
    as_json = plan(examples_repo, "--base", "HEAD~1", "--format", "json")

    assert markdown.returncode == 0
    assert "No change." in markdown.stdout
    report = json.loads(as_json.stdout)
    assert (report["exitCode"], report["changes"], report["errors"]) == (0, [], [])


def test_unknown_revision_is_an_error(examples_repo: SpecRepo) -> None:
    result = plan(examples_repo, "--base", "no-such-branch")
    assert result.returncode == 2
    assert "no commit named 'no-such-branch'" in result.stderr


def test_plan_against_the_cluster_shows_drift(
    examples_repo: SpecRepo, control_plane: ControlPlane, kube: KubeClient, tmp_path: Path
) -> None:
    instance = "plan-drift"
    git = GitSource(examples_repo.url, branch="main", cache_dir=tmp_path / "cache")
    reconciler = Reconciler(git=git, kube=kube, options=SyncOptions(instance=instance))
    assert not reconciler.cycle().failed
    git.close()
    # A merge patch carries no resourceVersion, so the dev controller writing
    # status at the same moment cannot make this edit fail with a 409.
    kube.request(
        "PATCH",
        "/apis/serving.kserve.io/v1beta1/namespaces/ml-serving/inferenceservices/fraud-detector",
        query={"fieldManager": "kubectl-edit"},
        body={"spec": {"predictor": {"maxReplicas": 9}}},
        content_type="application/merge-patch+json",
    )
    examples_repo.write("README.md", "docs only\n")
    examples_repo.commit("docs")

    result = plan(
        examples_repo,
        "--base",
        "HEAD~1",
        "--kubeconfig",
        str(control_plane.kubeconfig),
        "--instance",
        instance,
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "compared with the live cluster (server-side dry-run)" in result.stdout
    assert "ModelDeployment ml-serving/fraud-detector: the live object differs" in result.stdout
    diff = re.search(r"```diff\n(.*?)```", result.stdout, re.S)
    assert diff is not None
    assert "-    maxReplicas: 9\n+    maxReplicas: 4\n" in diff.group(1)


@pytest.mark.parametrize(
    ("limit", "words"),
    [
        # The example's parameter server has no GPU: chief and two workers count.
        pytest.param('"500m"', "1.5 GPU(s) in all", id="milli"),
        pytest.param("1.5", "4.5 GPU(s) in all", id="yaml-float"),
        pytest.param('"0.25"', "0.75 GPU(s) in all", id="decimal-string"),
    ],
)
def test_new_training_run_with_fractional_gpus(
    examples_repo: SpecRepo, limit: str, words: str
) -> None:
    """Quantities are exact: half a GPU on each of three replicas is 1.5 GPUs, not a
    crash on ``int(float('500m'))`` nor 1.5 truncated to one per replica."""
    target = examples_repo.work / "training" / "fraud-train.yaml"
    target.write_text(
        target.read_text()
        .replace("fraud-train:1.4.0", "fraud-train:1.5.0")
        .replace('nvidia.com/gpu: "1"', f"nvidia.com/gpu: {limit}")
    )
    # The shipped GPU cap counts whole GPUs and denies fractions, which would keep the
    # run out of the plan's words; a pool that shares GPUs replaces it.
    examples_repo.write(
        "policies/cap-training-gpus.yaml",
        "apiVersion: gitsync.io/v1alpha1\nkind: Policy\nmetadata: {name: cap-training-gpus}\n"
        "spec:\n  match: {kinds: [TrainingRun]}\n  validations: [{expression: 'true'}]\n",
    )
    examples_repo.commit("fractional GPUs")

    result = plan(examples_repo, "--base", "HEAD~1", "--head", "HEAD")

    assert "Traceback" not in result.stderr, result.stderr
    assert words in result.stdout, result.stdout


PIPELINE = {
    "gitsync.yaml": "defaults: {namespace: ml-staging}\n",
    "train.yaml": """\
apiVersion: gitsync.io/v1alpha1
kind: TrainingRun
metadata: {name: ranker-train, namespace: ml-training, labels: {team: search}}
spec:
  runtimeRef: {name: torch-distributed}
  image: ghcr.io/acme/ranker-train:2.0.0
  resources: {limits: {cpu: "4", memory: 16Gi}}
  output: s3://models/ranker/{run}
""",
    "staging.yaml": """\
apiVersion: gitsync.io/v1alpha1
kind: ModelDeployment
metadata: {name: ranker, labels: {team: search}}
spec:
  model:
    format: pytorch
    fromTrainingRun: ml-training/ranker-train
    select: {by: best, metric: ndcg}
    gates:
      - {metric: ndcg, min: 0.7}
      - metric: online-ctr
        min: 0.02
        query: 'avg(eval_ctr{job_name="{{run}}"})'
        provider: {prometheus: {address: "http://prometheus:9090"}}
  resources: {requests: {cpu: "1", memory: 2Gi}}
""",
    "production.yaml": """\
apiVersion: gitsync.io/v1alpha1
kind: ModelDeployment
metadata: {name: ranker, namespace: ml-serving, labels: {team: search}}
spec:
  model:
    format: pytorch
    fromModelDeployment: {name: ranker, namespace: ml-staging, healthyFor: 2h}
  resources: {requests: {cpu: "1", memory: 2Gi}}
""",
    "unrelated.yaml": """\
apiVersion: gitsync.io/v1alpha1
kind: ModelDeployment
metadata: {name: churn, labels: {team: risk}}
spec:
  model: {format: sklearn, storageUri: "s3://models/churn/v3"}
  resources: {requests: {cpu: 500m, memory: 1Gi}}
""",
}


def test_plan_shows_the_pipeline_a_change_touches(tmp_path: Path) -> None:
    repo = SpecRepo(tmp_path / "repo")
    for path, text in PIPELINE.items():
        repo.write(path, text)
    repo.commit("the ranker's pipeline")
    # Tightening production's hold touches the whole chain, from the TrainingRun down.
    repo.write("production.yaml", PIPELINE["production.yaml"].replace("2h", "4h"))
    repo.write("unrelated.yaml", PIPELINE["unrelated.yaml"].replace("v3", "v4"))
    repo.commit("hold production for four hours")

    result = plan(repo, "--base", "HEAD~1", "--head", "HEAD")
    as_json = plan(repo, "--base", "HEAD~1", "--format", "json")

    assert result.returncode == 2, result.stderr
    _check_golden("pipeline", _stable(result.stdout, repo))
    (tree,) = json.loads(as_json.stdout)["pipelines"]
    assert (tree["spec"], tree["action"]) == ("TrainingRun ml-training/ranker-train", None)
    (staging,) = tree["then"]
    (production,) = staging["then"]
    assert (production["spec"], production["action"]) == (
        "ModelDeployment ml-serving/ranker",
        "changed",
    )

    # A change outside every pipeline shows none.
    repo.write("unrelated.yaml", PIPELINE["unrelated.yaml"].replace("v3", "v5"))
    repo.commit("churn v5")
    assert json.loads(plan(repo, "--base", "HEAD~1", "--format", "json").stdout)["pipelines"] == []


def test_a_gate_s_prometheus_credentials_stay_out_of_the_pull_request() -> None:
    from gitsync.loading import load_file, load_tree  # noqa: PLC0415
    from gitsync.plan import PlanAction, pipelines  # noqa: PLC0415

    staging = PIPELINE["staging.yaml"].replace(
        "http://prometheus:9090", "https://bob:s3cret@prometheus.example"
    )
    files = [load_file(name, PIPELINE[name].encode()) for name in ("train.yaml",)]
    files.append(load_file("staging.yaml", staging.encode()))
    loaded = load_tree(files, default_namespace="ml-staging")
    assert loaded.diagnostics == ()
    changed = {entry.key("ml-staging"): PlanAction.CHANGED for entry in loaded.entries}
    (tree,) = pipelines(loaded.entries, default_namespace="ml-staging", actions=changed)
    text = "\n".join(tree.to_markdown())
    assert "https://***@prometheus.example" in text
    assert "s3cret" not in text
