"""Canary rollouts end to end: real API server, dev KServe, a real Prometheus, Git."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.metrics import Metrics
from gitsync.reconciler import CycleReport, Reconciler, SyncOptions

from .conftest import daemon_argv
from .specrepo import SpecRepo, git

ISVC = ("serving.kserve.io/v1beta1", "InferenceService")
ERROR_RATE = (
    'sum(rate(revision_requests_total{namespace="{{namespace}}",'
    'revision="{{canary_revision}}",code="500"}[5s]))'
    ' / sum(rate(revision_requests_total{namespace="{{namespace}}",'
    'revision="{{canary_revision}}"}[5s]))'
)
STEPS = [{"traffic": 20, "pause": "2s"}, {"traffic": 60, "pause": "2s"}]


def canary_model(
    namespace: str,
    prometheus: str,
    *,
    version: int,
    annotations: dict[str, str] | None = None,
    query: str = ERROR_RATE,
    steps: list[dict[str, Any]] = STEPS,
    paused: bool = False,
    deadline: str = "30s",
) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": "fraud",
                "namespace": namespace,
                "labels": {"team": "risk"},
                # Fast simulated revisions; knobs for the synthetic metrics.
                "annotations": {"dev.gitsync.io/ready-delay": "0.5", **(annotations or {})},
            },
            "spec": {
                "model": {"format": "sklearn", "storageUri": f"s3://models/fraud/v{version}"},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "rollout": {
                    "strategy": "canary",
                    "steps": steps,
                    "paused": paused,
                    "progressDeadline": deadline,
                    "analysis": {
                        "interval": "3s",
                        "failureLimit": 2,
                        "metrics": [{"name": "error-rate", "query": query, "max": 0.05}],
                        "provider": {"prometheus": {"address": prometheus}},
                    },
                },
            },
        }
    )


@pytest.fixture
def repo(tmp_path: Path) -> SpecRepo:
    return SpecRepo(tmp_path / "repo")


@pytest.fixture
def reconciler(
    repo: SpecRepo, control_plane: ControlPlane, tmp_path: Path
) -> Iterator[Callable[[], Reconciler]]:
    """A factory: each call is a fresh reconciler, as a restarted daemon would be."""
    made: list[tuple[Reconciler, GitSource, KubeClient]] = []
    instance = f"canary-{uuid.uuid4().hex[:6]}"

    def make() -> Reconciler:
        git = GitSource(repo.url, branch="main", cache_dir=tmp_path / "cache")
        kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
        made.append(
            (r := Reconciler(git=git, kube=kube, options=SyncOptions(instance=instance)), git, kube)
        )
        return r

    yield make
    for r, source, kube in made:
        r.close()
        kube.close()
        source.close()


def drive(
    reconciler: Reconciler, until: Callable[[CycleReport], bool], *, timeout: float
) -> list[CycleReport]:
    reports = []
    deadline = time.monotonic() + timeout
    while True:
        report = reconciler.cycle()
        reports.append(report)
        if until(report):
            return reports
        assert time.monotonic() < deadline, [s.message for r in reports[-3:] for s in r.statuses]
        time.sleep(0.5)


def rollout_phase(report: CycleReport) -> str | None:
    (status,) = report.statuses
    return status.rollout.phase if status.rollout else None


def tells(report: CycleReport, text: str) -> bool:
    """Whether the cycle's status commit tells a transition containing ``text``."""
    (status,) = report.statuses
    return any(text in told for told in status.transitions)


def healthy(report: CycleReport) -> bool:
    (status,) = report.statuses
    return status.phase.value == "Healthy"


def traffic(kube: KubeClient, namespace: str) -> list[tuple[str, int]]:
    live = kube.get(*ISVC, "fraud", namespace=namespace)
    assert live is not None
    entries = live["status"]["components"]["predictor"]["traffic"]
    return sorted((t["revisionName"], t["percent"]) for t in entries if t["percent"])


def settles_to(kube: KubeClient, namespace: str, expected: list[tuple[str, int]]) -> bool:
    """True once the controller's traffic matches (it reacts to our last write)."""
    deadline = time.monotonic() + 15
    while traffic(kube, namespace) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def stories(repo: SpecRepo) -> list[str]:
    """The status branch's commit subjects, oldest first."""
    return [line.split(" ", 1)[1] for line in reversed(repo.log("gitsync/status"))]


def told(repo: SpecRepo, name: str = "fraud") -> list[str]:
    """Every rollout transition the status branch tells, oldest first: a commit's
    subject when it tells one, its detail lines when it tells several."""
    raw = git("log", "--reverse", "--format=%B%x00", "gitsync/status", cwd=repo.remote)
    found = []
    for message in filter(None, (m.strip() for m in raw.split("\x00"))):
        subject, *body = message.splitlines()
        if subject.startswith(f"{name}: "):
            found.append(subject.split(" [source")[0])
        found += [line[2:] for line in body if line.startswith(f"- {name}: ")]
    return found


def deploy_v1(repo: SpecRepo, reconciler: Reconciler, namespace: str, prometheus: str) -> None:
    repo.write("models/fraud.yaml", canary_model(namespace, prometheus, version=1))
    repo.commit("fraud v1")
    drive(reconciler, healthy, timeout=30)


def test_a_good_canary_is_promoted_through_every_step(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
) -> None:
    r = reconciler()
    deploy_v1(repo, r, namespace, prometheus_url)
    repo.write("models/fraud.yaml", canary_model(namespace, prometheus_url, version=2))
    source = repo.commit("fraud v2")[:7]

    drive(r, lambda report: rollout_phase(report) == "Promoted", timeout=90)

    assert settles_to(kube, namespace, [("fraud-predictor-00002", 100)])
    told = [s for s in stories(repo) if "canary" in s]
    assert told[0] == f"fraud: canary started: 0% -> 20% [source {source}]"
    assert (
        told[1]
        == f"fraud: canary revision fraud-predictor-00002 ready: 20% of traffic [source {source}]"
    )
    assert told[2].startswith("fraud: canary 20% -> 60% (error-rate 0.00")
    assert told[2].endswith(f" <= 0.05) [source {source}]")
    assert told[3].startswith("fraud: canary 60% -> 100%: promoted (error-rate 0.00")
    doc = yaml.safe_load(repo.status_document(namespace, "ModelDeployment", "fraud"))
    assert doc["rollout"]["phase"] == "Promoted"
    assert doc["phase"] in {"Healthy", "Progressing"}


def test_a_bad_canary_is_rolled_back_with_evidence_and_stays_rolled_back(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
) -> None:
    r = reconciler()
    deploy_v1(repo, r, namespace, prometheus_url)
    bad = canary_model(
        namespace, prometheus_url, version=2, annotations={"dev.gitsync.io/error-rate": "0.3"}
    )
    repo.write("models/fraud.yaml", bad)
    repo.commit("fraud v2: a bad model")

    reports = drive(r, lambda report: rollout_phase(report) == "RolledBack", timeout=60)

    ready_at = next(
        i
        for i, rep in enumerate(reports)
        if any("ready: 20%" in t for t in rep.statuses[0].transitions)
    )
    # failureLimit (2) x interval (3s) after the canary took traffic, plus cycle slack.
    elapsed = sum(rep.duration for rep in reports[ready_at:]) + 0.5 * (len(reports) - ready_at)
    assert elapsed < 2 * 3 + 4
    assert settles_to(kube, namespace, [("fraud-predictor-00001", 100)])
    doc = yaml.safe_load(repo.status_document(namespace, "ModelDeployment", "fraud"))
    assert doc["phase"] == "RolledBack"
    assert doc["rollout"]["evidence"][0].startswith("error-rate 0.3")
    assert doc["rollout"]["evidence"][0].endswith("> 0.05")
    assert any("canary rolled back at 20% (error-rate 0.3" in s for s in stories(repo))

    # Git still names the rejected model: no retry, no "healthy".
    later = drive(r, lambda _: True, timeout=5)[-1]
    assert later.changes.writes == []
    assert later.statuses[0].phase.value == "RolledBack"


def test_a_revision_that_never_becomes_ready_is_rolled_back_at_the_deadline(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
) -> None:
    r = reconciler()
    deploy_v1(repo, r, namespace, prometheus_url)
    broken = canary_model(
        namespace,
        prometheus_url,
        version=2,
        annotations={"dev.gitsync.io/fail": "true"},
        deadline="5s",
    )
    repo.write("models/fraud.yaml", broken)
    repo.commit("fraud v2: crashes at start")

    reports = drive(r, lambda report: rollout_phase(report) == "RolledBack", timeout=30)

    (status,) = reports[-1].statuses
    assert status.message == "revision fraud-predictor-00002 not Ready within 5s"
    assert settles_to(kube, namespace, [("fraud-predictor-00001", 100)])


def push_v2(repo: SpecRepo, namespace: str, prometheus: str, *, query: str, why: str) -> None:
    """Commit v2 of the model, analysed by ``query``."""
    repo.write("models/fraud.yaml", canary_model(namespace, prometheus, version=2, query=query))
    repo.commit(f"fraud v2 with {why}")


def test_no_data_is_never_a_pass(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    namespace: str,
    prometheus_url: str,
) -> None:
    r = reconciler()
    deploy_v1(repo, r, namespace, prometheus_url)
    silent = 'sum(rate(no_such_metric{revision="{{canary_revision}}"}[5s]))'
    push_v2(repo, namespace, prometheus_url, query=silent, why="a query that finds nothing")

    reports = drive(r, lambda report: rollout_phase(report) == "RolledBack", timeout=60)

    traffic_seen = {r.traffic for rep in reports if (r := rep.statuses[0].rollout)}
    assert 60 not in traffic_seen and 100 not in traffic_seen
    assert reports[-1].statuses[0].message.startswith("no data from analysis")


def test_a_query_prometheus_rejects_is_a_spec_error_not_a_rollback(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    namespace: str,
    prometheus_url: str,
) -> None:
    r = reconciler()
    deploy_v1(repo, r, namespace, prometheus_url)
    broken = 'sum(rate(revision_requests_total{revision="{{canary_revision}}"}[5s])'
    push_v2(repo, namespace, prometheus_url, query=broken, why="an unbalanced parenthesis")

    reports = drive(r, lambda report: report.statuses[0].phase.value == "Invalid", timeout=60)
    # Several more analysis intervals: it holds at its step, it does not roll back.
    for _ in range(8):
        reports.append(r.cycle())
        time.sleep(0.5)

    (status,) = reports[-1].statuses
    assert status.phase.value == "Invalid"
    assert "analysis metric 'error-rate'" in status.message
    assert status.rollout is not None
    assert status.rollout.phase == "Progressing"
    assert status.rollout.traffic == 20
    assert all(rollout_phase(rep) != "RolledBack" for rep in reports)
    assert any("parse error" in e or "unclosed" in e or "expected" in e for e in status.errors)


def test_pause_holds_and_promote_moves_on(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    control_plane: ControlPlane,
    namespace: str,
    prometheus_url: str,
) -> None:
    r = reconciler()
    deploy_v1(repo, r, namespace, prometheus_url)
    held = canary_model(
        namespace,
        prometheus_url,
        version=2,
        steps=[{"traffic": 30, "pause": "indefinite"}],
    )
    repo.write("models/fraud.yaml", held)
    repo.commit("fraud v2, held at 30% until someone promotes it")
    drive(
        r, lambda report: any("ready: 30%" in t for t in report.statuses[0].transitions), timeout=30
    )
    for _ in range(4):
        time.sleep(1)
        rollout = r.cycle().statuses[0].rollout
        assert rollout is not None
        assert rollout.traffic == 30

    promote = subprocess.run(
        [
            sys.executable,
            "-m",
            "gitsync",
            "rollout",
            "promote",
            "fraud",
            "-n",
            namespace,
            "--kubeconfig",
            str(control_plane.kubeconfig),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert promote.returncode == 0, promote.stderr

    drive(r, lambda report: rollout_phase(report) == "Promoted", timeout=20)
    assert any("canary 30% -> 100%: promoted (promoted by command)" in s for s in stories(repo))


def test_a_daemon_killed_at_random_points_resumes_without_skipping(
    repo: SpecRepo,
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
    tmp_path: Path,
) -> None:
    instance = f"kill-{uuid.uuid4().hex[:6]}"
    repo.write("models/fraud.yaml", canary_model(namespace, prometheus_url, version=1))
    repo.commit("fraud v1")
    argv = daemon_argv(
        repo_url=repo.url,
        instance=instance,
        kubeconfig=control_plane.kubeconfig,
        cache=tmp_path / "cache",
        interval=0.5,
        level="warning",
    )

    def run_for(seconds: float) -> None:
        daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(seconds)
        daemon.send_signal(signal.SIGKILL)  # no clean shutdown: the worst case
        daemon.wait(timeout=10)

    run_for(6)  # v1 deployed directly
    repo.write("models/fraud.yaml", canary_model(namespace, prometheus_url, version=2))
    repo.commit("fraud v2")
    rng = random.Random(int(os.environ.get("GITSYNC_KILL_SEED", "7")))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run_for(rng.uniform(1.0, 3.5))
        if traffic(kube, namespace) == [("fraud-predictor-00002", 100)]:
            break
    else:
        pytest.fail("the rollout never finished")

    steps = [s for s in told(repo) if "canary" in s and "->" in s]
    assert steps[0] == "fraud: canary started: 0% -> 20%"
    assert steps[1].startswith("fraud: canary 20% -> 60% (error-rate")
    assert steps[2].startswith("fraud: canary 60% -> 100%: promoted (error-rate")
    assert len(steps) == 3, steps  # no step repeated, none skipped, no jump to 100%


def test_a_step_applied_just_before_a_crash_is_still_told(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    namespace: str,
    prometheus_url: str,
) -> None:
    first = reconciler()
    deploy_v1(repo, first, namespace, prometheus_url)
    before = git("rev-parse", "gitsync/status", cwd=repo.remote)
    repo.write("models/fraud.yaml", canary_model(namespace, prometheus_url, version=2))
    repo.commit("fraud v2")
    started = first.cycle()
    assert tells(started, "canary started: 0% -> 20%")
    # The daemon dies after the step is applied and before its status is pushed: on
    # the remote, the status branch is as it was; the live object has moved on.
    git("update-ref", "refs/heads/gitsync/status", before, cwd=repo.remote)

    restarted = reconciler().cycle()

    assert restarted.status_commit is not None
    assert any("canary started: 0% -> 20%" in t for t in told(repo))
    assert tells(restarted, "canary started: 0% -> 20%")
    # Told once it is in Git: the next cycle does not tell it again.
    again = reconciler().cycle()
    assert not tells(again, "canary started")


def test_on_failure_revert_proposes_a_revert_branch(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    namespace: str,
    prometheus_url: str,
) -> None:
    r = reconciler()
    v1 = canary_model(namespace, prometheus_url, version=1)
    repo.write("models/fraud.yaml", v1)
    repo.commit("fraud v1")
    drive(r, healthy, timeout=30)
    bad = canary_model(
        namespace, prometheus_url, version=2, annotations={"dev.gitsync.io/error-rate": "0.3"}
    ).replace("strategy: canary", "strategy: canary\n    onFailure: revert")
    repo.write("models/fraud.yaml", bad)
    offending = repo.commit("fraud v2: a bad model")

    drive(r, lambda report: rollout_phase(report) == "RolledBack", timeout=60)

    branch = "gitsync/revert/fraud"
    assert git("show", f"{branch}:models/fraud.yaml", cwd=repo.remote) + "\n" == v1
    subject, parent = git("log", "-1", "--format=%s %P", branch, cwd=repo.remote).rsplit(" ", 1)
    assert subject == f"Revert fraud to its spec before {offending[:7]}"
    assert parent == offending  # a branch off main, ready for a pull request
    assert git("rev-parse", "main", cwd=repo.remote) == offending  # main untouched


def test_a_rollout_shows_in_the_metrics(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    namespace: str,
    prometheus_url: str,
) -> None:
    """gitsync's own /metrics follow a rollout: its steps, the canary's traffic, and
    every analysis measurement, recorded from the cycles' reports."""
    r = reconciler()
    deploy_v1(repo, r, namespace, prometheus_url)
    repo.write("models/fraud.yaml", canary_model(namespace, prometheus_url, version=2))
    repo.commit("fraud v2")
    metrics = Metrics()
    seen: list[tuple[float, float]] = []
    model = (("name", "fraud"), ("namespace", namespace))

    def recorded(report: CycleReport) -> bool:
        metrics.record_cycle(report)
        samples = scrape(metrics)
        step = samples.get("gitsync_rollout_step", {}).get(model)
        percent = samples.get("gitsync_rollout_canary_traffic_percent", {}).get(model)
        if step is not None and percent is not None and (step, percent) not in seen:
            seen.append((step, percent))
        return rollout_phase(report) == "Promoted"

    drive(r, recorded, timeout=90)

    assert [percent for _, percent in seen][:2] == [20, 60]
    assert [step for step, _ in seen][:2] == [1, 2]  # steps count from 1, as the status says
    measured = scrape(metrics)["gitsync_analysis_measurements_total"]
    passes = tuple(sorted((("metric", "error-rate"), *model, ("verdict", "pass"))))
    assert measured[passes] >= 2  # one judged each step
    assert all(dict(labels)["verdict"] == "pass" for labels in measured)


def scrape(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


# --- Standard (raw deployment) mode: the same rollout through spec.canary[] -----------

STANDARD = {"serving.kserve.io/deploymentMode": "Standard"}


def standard_model(
    namespace: str,
    prometheus: str,
    *,
    version: int,
    annotations: dict[str, str] | None = None,
    deadline: str = "30s",
) -> str:
    return canary_model(
        namespace,
        prometheus,
        version=version,
        annotations={**STANDARD, **(annotations or {})},
        deadline=deadline,
    )


def watching(
    kube: KubeClient,
    namespace: str,
    seen: list[dict[str, Any]],
    until: Callable[[CycleReport], bool],
) -> Callable[[CycleReport], bool]:
    """``until``, recording the live spec after every cycle."""

    def check(report: CycleReport) -> bool:
        live = kube.get(*ISVC, "fraud", namespace=namespace)
        assert live is not None
        seen.append(live["spec"])
        return until(report)

    return check


def standard_split(kube: KubeClient, namespace: str) -> list[tuple[str, int, bool]]:
    """What the controller reports: the stable predictor, and each canary's share."""
    live = kube.get(*ISVC, "fraud", namespace=namespace)
    assert live is not None
    assert live["status"]["deploymentMode"] == "Standard"
    assert "traffic" not in live["status"]["components"]["predictor"]  # no Knative
    return [
        (c["name"], c["trafficPercent"], c["ready"])
        for c in live["status"].get("canaryStatuses") or []
    ]


def test_standard_mode_canary_steps_through_spec_canary_and_is_promoted(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
) -> None:
    r = reconciler()
    repo.write("models/fraud.yaml", standard_model(namespace, prometheus_url, version=1))
    repo.commit("fraud v1, Standard mode")
    drive(r, healthy, timeout=30)
    assert standard_split(kube, namespace) == []
    repo.write("models/fraud.yaml", standard_model(namespace, prometheus_url, version=2))
    source = repo.commit("fraud v2")[:7]

    seen: list[dict[str, Any]] = []
    drive(
        r, watching(kube, namespace, seen, lambda rep: rollout_phase(rep) == "Promoted"), timeout=90
    )

    splits = [s for s in seen if s.get("canary")]
    (name,) = {s["canary"][0]["predictor"]["name"] for s in splits}
    assert next(s["canary"][0]["trafficPercent"] for s in splits) == 20
    assert {s["canary"][0]["trafficPercent"] for s in splits} == {20, 60}
    # The stable model stays in spec.predictor; the new one is the canary.
    assert {s["predictor"]["model"]["storageUri"] for s in splits} == {"s3://models/fraud/v1"}
    assert {s["canary"][0]["predictor"]["model"]["storageUri"] for s in splits} == {
        "s3://models/fraud/v2"
    }
    # Promotion: the canary's predictor (and its Deployment's name) becomes the stable.
    live = kube.get(*ISVC, "fraud", namespace=namespace)
    assert live is not None
    assert "canary" not in live["spec"]
    assert live["spec"]["predictor"]["name"] == name
    assert live["spec"]["predictor"]["model"]["storageUri"] == "s3://models/fraud/v2"
    deadline = time.monotonic() + 15
    while standard_split(kube, namespace) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert standard_split(kube, namespace) == []
    assert "CanaryPredictorReady" not in {
        c["type"] for c in kube.get(*ISVC, "fraud", namespace=namespace)["status"]["conditions"]
    }
    told = [s for s in stories(repo) if "canary" in s]
    assert told[0] == f"fraud: canary started: 0% -> 20% [source {source}]"
    assert told[1] == (
        f"fraud: canary deployment fraud-{name}-predictor ready: 20% of traffic [source {source}]"
    )
    assert told[2].startswith("fraud: canary 20% -> 60% (error-rate 0.00")
    assert told[3].startswith("fraud: canary 60% -> 100%: promoted (error-rate 0.00")
    doc = yaml.safe_load(repo.status_document(namespace, "ModelDeployment", "fraud"))
    assert doc["rollout"]["canaryRevision"] == f"fraud-{name}-predictor"
    assert doc["rollout"]["stableRevision"] == "fraud-predictor"

    # The next cycles keep the promoted Deployment's name: no restart, no drift.
    later = drive(r, healthy, timeout=15)[-1]
    assert later.changes.writes == []
    (status,) = later.statuses
    assert status.message == f"serving fraud-{name}-predictor"


def test_standard_mode_bad_canary_is_rolled_back_by_dropping_spec_canary(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
) -> None:
    r = reconciler()
    repo.write("models/fraud.yaml", standard_model(namespace, prometheus_url, version=1))
    repo.commit("fraud v1, Standard mode")
    drive(r, healthy, timeout=30)
    bad = standard_model(
        namespace, prometheus_url, version=2, annotations={"dev.gitsync.io/error-rate": "0.3"}
    )
    repo.write("models/fraud.yaml", bad)
    repo.commit("fraud v2: a bad model")

    seen: list[dict[str, Any]] = []
    drive(
        r,
        watching(kube, namespace, seen, lambda rep: rollout_phase(rep) == "RolledBack"),
        timeout=60,
    )

    assert any(s.get("canary") for s in seen)  # it did take traffic first
    live = kube.get(*ISVC, "fraud", namespace=namespace)
    assert live is not None
    assert "canary" not in live["spec"]
    assert live["spec"]["predictor"]["model"]["storageUri"] == "s3://models/fraud/v1"
    assert "name" not in live["spec"]["predictor"]  # still the first Deployment
    deadline = time.monotonic() + 15
    while standard_split(kube, namespace) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert standard_split(kube, namespace) == []
    doc = yaml.safe_load(repo.status_document(namespace, "ModelDeployment", "fraud"))
    assert doc["phase"] == "RolledBack"
    assert doc["rollout"]["evidence"][0].startswith("error-rate 0.3")
    assert any("canary rolled back at 20% (error-rate 0.3" in s for s in stories(repo))

    later = drive(r, lambda _: True, timeout=5)[-1]
    assert later.changes.writes == []
    assert later.statuses[0].phase.value == "RolledBack"


def test_standard_mode_canary_that_never_becomes_ready_is_rolled_back_at_the_deadline(
    repo: SpecRepo,
    reconciler: Callable[[], Reconciler],
    kube: KubeClient,
    namespace: str,
    prometheus_url: str,
) -> None:
    r = reconciler()
    repo.write("models/fraud.yaml", standard_model(namespace, prometheus_url, version=1))
    repo.commit("fraud v1, Standard mode")
    drive(r, healthy, timeout=30)
    broken = standard_model(
        namespace,
        prometheus_url,
        version=2,
        annotations={"dev.gitsync.io/fail": "true"},
        deadline="5s",
    )
    repo.write("models/fraud.yaml", broken)
    repo.commit("fraud v2: crashes at start")

    seen: list[dict[str, Any]] = []
    drive(
        r,
        watching(kube, namespace, seen, lambda rep: rollout_phase(rep) == "RolledBack"),
        timeout=30,
    )

    (name,) = {s["canary"][0]["predictor"]["name"] for s in seen if s.get("canary")}
    live = kube.get(*ISVC, "fraud", namespace=namespace)
    assert live is not None
    assert "canary" not in live["spec"]
    doc = yaml.safe_load(repo.status_document(namespace, "ModelDeployment", "fraud"))
    assert doc["phase"] == "RolledBack"
    assert doc["rollout"]["reason"] == (f"deployment fraud-{name}-predictor not Ready within 5s")
