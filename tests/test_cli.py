"""The command line is a contract: exit codes, output formats, environment variables."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gitsync.cli import cli
from gitsync.dev.controlplane import ControlPlane

from .gitremotes import GitHttpServer, SilentServer, closed_port
from .specrepo import SpecRepo

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "repo"


def gitsync(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitsync", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def model(name: str, namespace: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"team": "risk"}},
            "spec": {
                "model": {"format": "onnx", "storageUri": f"s3://models/{name}"},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            },
        }
    )


def test_validate_accepts_the_examples() -> None:
    result = gitsync("validate", str(EXAMPLES))
    assert result.returncode == 0, result.stdout + result.stderr
    # The repo's own tenancy policy replaces the shipped one: a warning, not an error.
    assert result.stdout.splitlines() == [
        "policies/namespace-tenancy.yaml:1:1: warning: metadata.name: policy "
        f"'namespace-tenancy' replaces the shipped one from {EXAMPLES.parents[1]}"
        "/policies/namespace-tenancy.yaml"
    ]
    assert "7 policies: valid" in result.stderr


def test_validate_reports_errors_as_path_line_column(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(model("a", "ml").replace("storageUri", "storageURL"))
    (tmp_path / "b.yaml").write_text("kind: [\n")

    text = gitsync("validate", str(tmp_path))
    as_json = gitsync("validate", str(tmp_path), "--format", "json")

    assert text.returncode == 1
    assert text.stdout.splitlines() == [
        "a.yaml:11:5: spec.model.storageURL: unknown field 'storageURL'; "
        "did you mean 'storageUri'?",
        "b.yaml:2:1: invalid YAML: did not find expected node content",
    ]
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["valid"] is False
    assert [(e["path"], e["line"], e["field"]) for e in report["errors"]] == [
        ("a.yaml", 11, "spec.model.storageURL"),
        ("b.yaml", 2, ""),
    ]


def test_render_prints_what_sync_applies_as_multi_document_yaml() -> None:
    """The same objects the examples render to in a cycle (no source commit outside
    Git), namespaces first, then sorted by kind, namespace and name. The pipeline's
    models serve what a cycle finds (a run, a promotion): noted, not printed."""
    # The examples load the repo.
    from .examples import load_examples, rendered_examples, walked_pipeline  # noqa: PLC0415

    result = gitsync("render", str(EXAMPLES), "--instance", "examples")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("---\n")
    printed = list(yaml.safe_load_all(result.stdout))
    config, loaded = load_examples()
    pipeline = sorted(walked_pipeline(loaded, default_namespace=config.defaults.namespace))
    assert len(pipeline) == 2
    for ref in pipeline:
        assert f"# {ref.kind} {ref.namespace}/{ref.name}: renders in a sync cycle only" in (
            result.stderr.splitlines()
        )
    fed = {("InferenceService", ref.namespace, ref.name) for ref in pipeline}
    expected = [
        obj
        for obj in rendered_examples()
        if (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]) not in fed
    ]
    for obj in expected:
        del obj["metadata"]["annotations"]["gitsync.io/source-commit"]
    keys = [(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in printed]
    assert keys == sorted(keys)
    assert sorted(printed, key=str) == sorted(expected, key=str)
    assert {o["metadata"]["labels"]["gitsync.io/instance"] for o in printed} == {"examples"}


def test_render_takes_the_default_namespace(tmp_path: Path) -> None:
    spec = yaml.safe_load(model("a", "ml"))
    del spec["metadata"]["namespace"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")

    from_repo = gitsync("render", str(tmp_path))
    given = gitsync("render", str(tmp_path), "--namespace", "team-a")
    wrong = gitsync("render", str(tmp_path), "--namespace", "Team_A")

    assert [o["metadata"]["namespace"] for o in yaml.safe_load_all(from_repo.stdout)] == [
        "default",
        "default",
    ]
    assert [o["metadata"]["namespace"] for o in yaml.safe_load_all(given.stdout)] == [
        "team-a",
        "team-a",
    ]
    assert wrong.returncode == 2
    assert "'Team_A' is not a namespace name" in wrong.stderr


def test_render_notes_a_model_that_waits_for_its_training_run(tmp_path: Path) -> None:
    """Outside a cycle nothing is known of runs: the model is named on stderr, the run's
    job is printed, and that is no error."""
    spec = yaml.safe_load(model("a", "ml"))
    spec["spec"]["model"] = {"format": "onnx", "fromTrainingRun": "train"}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "t.yaml").write_text(
        "apiVersion: gitsync.io/v1alpha1\nkind: TrainingRun\n"
        "metadata: {name: train, namespace: ml, labels: {team: risk}}\n"
        "spec: {framework: pytorch, image: ghcr.io/acme/t:1, replicas: {master: 1},"
        " resources: {requests: {cpu: '1', memory: 1Gi}}, output: 's3://m/{run}'}\n"
    )

    result = gitsync("render", str(tmp_path))

    assert result.returncode == 0, result.stderr
    assert [o["kind"] for o in yaml.safe_load_all(result.stdout)] == ["PyTorchJob"]
    assert "# ModelDeployment ml/a: renders in a sync cycle only" in result.stderr


def test_render_refuses_bad_input_with_path_line_column(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(model("a", "ml").replace("storageUri", "storageURL"))
    (tmp_path / "b.yaml").write_text(model("b", "ml"))
    (tmp_path / "c.yaml").write_text(
        model("c", "ml").replace(
            "spec:\n", "spec:\n  overrides: [{jsonPatch: [{op: remove, path: /spec/nothing}]}]\n"
        )
    )

    result = gitsync("render", str(tmp_path))

    assert result.returncode == 1
    assert result.stdout == ""
    errors = result.stderr.splitlines()
    assert errors[0] == (
        "a.yaml:11:5: spec.model.storageURL: unknown field 'storageURL'; did you mean 'storageUri'?"
    )
    assert errors[1].startswith(
        "c.yaml:9:15: spec.overrides[0]: jsonPatch[0] (remove /spec/nothing) does not apply "
        "to the rendered object: "
    )


def test_a_plain_inference_service_meets_the_shipped_policies(tmp_path: Path) -> None:
    """Committed as YAML instead of a ModelDeployment, a `:latest` image is denied all
    the same."""
    (tmp_path / "isvc.yaml").write_text(
        """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: plain, namespace: ml, labels: {team: risk}}
spec:
  predictor:
    containers:
      - name: kserve-container
        image: ghcr.io/acme/custom-model:latest
        resources: {requests: {cpu: "1", memory: 1Gi}}
"""
    )
    for command in ("validate", "render"):
        result = gitsync(command, str(tmp_path))
        assert result.returncode == 1, command
        assert (
            "spec.predictor.containers[kserve-container].image "
            "ghcr.io/acme/custom-model:latest: the latest tag moves"
        ) in result.stdout + result.stderr


@pytest.fixture
def spec_repo(tmp_path: Path, namespace: str) -> SpecRepo:
    repo = SpecRepo(tmp_path / "repo")
    repo.write("models/a.yaml", model("a", namespace))
    repo.commit("model a")
    return repo


def test_sync_exit_codes(
    spec_repo: SpecRepo, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    env = {"GITSYNC_KUBECONFIG": str(control_plane.kubeconfig), "GITSYNC_INSTANCE": namespace}
    cache = ["--cache-dir", str(tmp_path / "cache")]

    ok = gitsync("sync", "--repo", spec_repo.url, *cache, env=env)
    assert ok.returncode == 0, ok.stderr
    assert f"InferenceService {namespace}/a: created (new)" in ok.stdout

    spec_repo.write("models/b.yaml", model("b", namespace).replace("onnx", "onyx"))
    spec_repo.commit("a typo")
    some_failed = gitsync("sync", "--repo", spec_repo.url, *cache, env=env)
    assert some_failed.returncode == 1
    assert "models/b.yaml:10:13: spec.model.format: 'onyx' is not one of" in some_failed.stderr
    assert f"ModelDeployment {namespace}/b: Invalid" in some_failed.stdout

    # The repository also comes from the environment.
    from_env = gitsync("sync", *cache, env={**env, "GITSYNC_REPO": spec_repo.url})
    assert from_env.returncode == 1


def unreachable_cluster(tmp_path: Path) -> Path:
    """A kubeconfig of an API server on a closed port (with a bearer token)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"https://127.0.0.1:{closed_port()}"}}
                ],
                "users": [{"name": "u", "user": {"token": BEARER}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return kubeconfig


def test_sync_cannot_run_without_a_cluster(spec_repo: SpecRepo, tmp_path: Path) -> None:
    result = gitsync(
        "sync",
        "--repo",
        spec_repo.url,
        "--kubeconfig",
        str(unreachable_cluster(tmp_path)),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("gitsync: GET /apis/")
    assert "Connection refused" in result.stderr
    assert BEARER not in result.stderr


TOKEN = "ghp_e2eTokenDoNotLog0123456789"
BEARER = "kube-bearer-do-not-log-4f1c9a"


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize(
    "form",
    [
        "https://{token}@127.0.0.1:{port}/x.git",
        "http://bot:{token}@127.0.0.1:{port}/x.git",
        "https://127.0.0.1:{port}/x.git?access_token={token}",
    ],
    ids=["token-as-user", "user-password", "query-token"],
)
def test_a_failed_sync_says_where_without_credentials(
    tmp_path: Path, form: str, log_format: str
) -> None:
    result = gitsync(
        "sync",
        "--repo",
        form.format(token=TOKEN, port=closed_port()),
        "--kubeconfig",
        str(unreachable_cluster(tmp_path)),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--log-format",
        log_format,
        "--log-level",
        "debug",
    )
    assert result.returncode == 2, result.stderr
    output = result.stdout + result.stderr
    assert TOKEN not in output
    assert BEARER not in output
    lines = result.stderr.splitlines()
    if log_format == "json":
        # JSON only, libraries' records and the final message included.
        events = [json.loads(line) for line in lines]
        last = events[-1]
        assert (last["level"], last["event"]) == ("error", "gitsync failed")
        message = last["error"]
    else:
        message = lines[-1].removeprefix("gitsync: ")
        assert message != lines[-1]
    # Still says what failed, and where.
    assert message.startswith("git fetch 'main' from http")
    assert "127.0.0.1" in message


def test_sync_times_out_on_a_remote_that_never_answers(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    silent = SilentServer()
    try:
        started = time.monotonic()
        result = gitsync(
            "sync",
            "--repo",
            f"git://127.0.0.1:{silent.port}/specs.git",
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--git-timeout",
            "1",
        )
        elapsed = time.monotonic() - started
    finally:
        silent.stop()
    assert result.returncode == 2
    assert "gitsync: git fetch 'main' from git://127.0.0.1" in result.stderr
    assert elapsed < 20


def test_run_is_a_daemon_that_logs_json_without_credentials(
    spec_repo: SpecRepo, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    password = "s3cr3t-token-do-not-log"
    server = GitHttpServer(spec_repo.remote.parent, username="bot", password=password)
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gitsync",
                "run",
                "--repo",
                server.url(spec_repo.remote),
                "--git-username",
                "bot",
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "--instance",
                namespace,
                "--cache-dir",
                str(tmp_path / "cache"),
                "--interval",
                "1",
                "--jitter",
                "0",
                "--log-format",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "GITSYNC_GIT_PASSWORD": password},
        )
        deadline = time.monotonic() + 60
        lines: list[dict[str, object]] = []
        assert process.stderr is not None
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(json.loads(line))
            if sum(1 for entry in lines if entry["event"] == "cycle finished") >= 2:
                break
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        server.stop()
    lines += [json.loads(line) for line in err.splitlines() if line.strip()]

    assert process.returncode == 0
    finished = [entry for entry in lines if entry["event"] == "cycle finished"]
    assert len(finished) >= 2
    assert finished[0]["created"] == 1
    assert finished[1]["created"] == 0
    assert {"cycle", "commit", "repo", "timestamp", "level"} <= finished[0].keys()
    assert lines[-1]["event"] == "daemon stopped"
    assert password not in out + err + json.dumps(lines)


def test_the_example_ci_workflow_calls_real_commands_and_options() -> None:
    """A contract check: every gitsync command line in the shipped CI example parses."""
    workflow = yaml.safe_load((EXAMPLES.parent / "ci" / "github-actions.yaml").read_text())
    scripts = [step.get("run", "") for step in workflow["jobs"]["plan"]["steps"]]
    calls = [
        shlex.split(re.sub(r"\$\{\{[^}]*\}\}", "main", line.split(" > ")[0]))
        for script in scripts
        for line in script.splitlines()
        if line.strip().startswith("gitsync ")
    ]
    assert [call[1] for call in calls] == ["validate", "plan"]
    for _, name, *args in calls:
        command = cli.commands[name]
        context = command.make_context(name, args)  # raises on an unknown option
        assert context.params


def test_a_crash_shows_its_traceback_without_the_token() -> None:
    """The last resort of main(): an exception no code expected (a bug) still prints
    its traceback, redacted, and exits 1."""
    program = (
        "import click, gitsync.cli as cli\n"
        "@click.command()\n"
        "def boom():\n"
        "    raise RuntimeError('cannot reach https://ghp_s3cr3t@git.example.com/x.git')\n"
        "cli.cli = boom\n"
        "cli.main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "RuntimeError: cannot reach https://***@git.example.com/x.git" in result.stderr
    assert "ghp_s3cr3t" not in result.stderr + result.stdout


@pytest.mark.parametrize(("gpus", "valid"), [("1", True), ("16", False)])
def test_validate_judges_a_scheduled_run_as_its_next_tick_would_start_it(
    tmp_path: Path, gpus: str, valid: bool
) -> None:
    # Between ticks a scheduled run renders to nothing; a policy reading the rendered
    # job (the shipped GPU cap) must still judge the job, as a sync does, not nothing.
    (tmp_path / "nightly.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "gitsync.io/v1alpha1",
                "kind": "TrainingRun",
                "metadata": {"name": "nightly", "namespace": "ml", "labels": {"team": "risk"}},
                "spec": {
                    "schedule": "0 3 * * *",
                    "runtimeRef": {"name": "torch-distributed"},
                    "image": "ghcr.io/acme/finetune:1.0.0",
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": gpus}},
                    "output": "s3://models/nightly/{run}",
                },
            }
        )
    )
    result = gitsync("validate", str(tmp_path))
    assert (result.returncode == 0) is valid, result.stdout + result.stderr
    denial = "denied by policy cap-training-gpus: the run asks for 16 nvidia.com/gpu in total"
    assert (denial in result.stdout + result.stderr) is not valid
    assert "could not evaluate" not in result.stdout + result.stderr
