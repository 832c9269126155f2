"""Training runs: schedules, run history, and models served from a training run's output.

The pure parts (tick arithmetic, spec validation) are tables; the rest runs end to end
against the real API server and the dev Training Operator and KServe, with an injected
clock for the schedule and fast simulated jobs (see ``FAST``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.loading import load_file
from gitsync.reconciler import CycleReport, Reconciler, SyncOptions
from gitsync.render import ANNOTATION_SCHEDULED_AT, run_name
from gitsync.schedule import RunFacts, decide_schedule, due_tick
from gitsync.specs import TrainingRun

from .specrepo import SpecRepo

TFJOB = ("kubeflow.org/v1", "TFJob")
TRAINJOB_API = "trainer.kubeflow.org/v1alpha1"
ISVC = ("serving.kserve.io/v1beta1", "InferenceService")
HOURLY = "0 * * * *"
#: The dev Training Operator's knobs: start at once, run for a second.
FAST = {"dev.gitsync.io/start-delay": "0", "dev.gitsync.io/run-duration": "1"}
SLOW = {"dev.gitsync.io/start-delay": "0", "dev.gitsync.io/run-duration": "600"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- schedule.due_tick ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "last_tick", "since", "now", "expected"),
    [
        pytest.param(HOURLY, None, "2026-03-01 02:59", "2026-03-01 02:59", None, id="first-sight"),
        pytest.param(HOURLY, None, "2026-03-01 02:59", "2026-03-01 02:59:59", None, id="before"),
        pytest.param(
            HOURLY, None, "2026-03-01 02:59", "2026-03-01 03:00", "2026-03-01 03:00", id="on-tick"
        ),
        pytest.param(
            HOURLY,
            "2026-03-01 03:00",
            "2026-03-01 02:59",
            "2026-03-01 03:30",
            None,
            id="tick-already-taken",
        ),
        pytest.param(
            "0 3 * * 0",
            None,
            "2026-03-01 04:00",
            "2026-03-30 12:00",
            "2026-03-29 03:00",
            id="missed-weeks-coalesce",
        ),
        pytest.param(
            "* * * * *",
            "2026-01-01 00:00",
            "2026-01-01 00:00",
            "2026-02-15 10:17:42",
            "2026-02-15 10:17",
            id="every-minute-after-six-weeks",
        ),
        pytest.param(
            "0 0 29 2 *",
            None,
            "2025-01-01 00:00",
            "2028-03-01 00:00",
            "2028-02-29 00:00",
            id="leap-day-beyond-the-lookback",
        ),
        pytest.param(
            "0 3 * * 1-5",
            None,
            "2026-03-27 12:00",
            "2026-03-30 02:59",
            None,
            id="weekdays-skip-the-weekend",
        ),
        pytest.param(
            "0 3 * * 5-7",
            None,
            "2026-03-27 12:00",
            "2026-03-30 02:59",
            "2026-03-29 03:00",
            id="seven-is-sunday",
        ),
        # 02:30 does not exist in Europe on 2026-03-29; in UTC every day has one.
        pytest.param(
            "30 2 * * *",
            "2026-03-28 02:30",
            "2026-03-01 00:00",
            "2026-03-29 02:30",
            "2026-03-29 02:30",
            id="utc-has-no-dst-gap",
        ),
    ],
)
def test_due_tick(
    schedule: str, last_tick: str | None, since: str, now: str, expected: str | None
) -> None:
    due = due_tick(
        schedule=schedule,
        last_tick=at(last_tick) if last_tick else None,
        since=at(since),
        now=at(now),
    )
    assert due == (at(expected) if expected else None)


@pytest.mark.parametrize(
    ("policy", "start", "replace", "skipped"),
    [("Forbid", False, (), True), ("Replace", True, ("a",), False), ("Allow", True, (), False)],
)
def test_concurrency_policy_at_a_tick_while_a_run_is_active(
    policy: Any, start: bool, replace: tuple[str, ...], skipped: bool
) -> None:
    runs = [
        RunFacts(name="a", active=True, scheduled_at=at("2026-03-01 03:00")),
        RunFacts(name="old", active=False, scheduled_at=at("2026-03-01 02:00")),
    ]
    decision = decide_schedule(
        schedule=HOURLY,
        policy=policy,
        runs=runs,
        since=at("2026-03-01 00:00"),
        recorded_tick=None,
        now=at("2026-03-01 04:00:10"),
    )
    assert decision.last_tick == at("2026-03-01 04:00")
    assert decision.next_tick == at("2026-03-01 05:00")
    assert (decision.start is not None, decision.replace, decision.skipped is not None) == (
        start,
        replace,
        skipped,
    )


# --- spec validation --------------------------------------------------------------------

RUN = """\
apiVersion: gitsync.io/v1alpha1
kind: TrainingRun
metadata: {name: train, namespace: ml}
spec:
  framework: pytorch
  image: ghcr.io/acme/train:1
  schedule: "0 3 * * 0"
"""
MODEL = """\
apiVersion: gitsync.io/v1alpha1
kind: ModelDeployment
metadata: {name: scorer, namespace: ml}
spec:
  model:
    format: tensorflow
    storageUri: s3://models/v1
"""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(RUN, [], id="weekly"),
        pytest.param(
            RUN.replace("0 3 * * 0", "0 3 * * 8"),
            ["t.yaml:7:13: spec.schedule: '0 3 * * 8' is not a valid cron expression: "],
            id="bad-field",
        ),
        pytest.param(
            RUN.replace("0 3 * * 0", "0 0 3 * * 0"),
            ["t.yaml:7:13: spec.schedule: '0 0 3 * * 0' is not a 5-field cron expression"],
            id="six-fields",
        ),
        pytest.param(
            RUN + "  concurrencyPolicy: Forbidden\n",
            ["t.yaml:8:22: spec.concurrencyPolicy: 'Forbidden' is not one of"],
            id="bad-concurrency-policy",
        ),
        pytest.param(
            RUN + "  historyLimit: 0\n",
            ["t.yaml:8:17: spec.historyLimit: Input should be greater than or equal to 1"],
            id="history-limit-zero",
        ),
        pytest.param(
            MODEL.replace("storageUri: s3://models/v1", "fromTrainingRun: ml-training/fraud-train"),
            [],
            id="from-training-run",
        ),
        pytest.param(
            MODEL + "    fromTrainingRun: fraud-train\n",
            [
                "t.yaml:6:5: spec.model: give exactly one of storageUri, storage, storageUris, "
                "fromTrainingRun or fromModelDeployment (not storageUri and fromTrainingRun)"
            ],
            id="both-sources",
        ),
        pytest.param(
            MODEL.replace("    storageUri: s3://models/v1\n", ""),
            [
                "t.yaml:6:5: spec.model: give exactly one of storageUri, storage, storageUris, "
                "fromTrainingRun or fromModelDeployment"
            ],
            id="no-source",
        ),
        pytest.param(
            MODEL.replace("storageUri: s3://models/v1", "fromTrainingRun: a/b/c"),
            ["t.yaml:7:22: spec.model.fromTrainingRun: String should match pattern"],
            id="bad-reference",
        ),
    ],
)
def test_spec_validation(content: str, expected: list[str]) -> None:
    found = [str(d) for d in load_file("t.yaml", content.encode()).diagnostics]
    assert len(found) == len(expected), found
    for message, prefix in zip(found, expected, strict=True):
        assert message.startswith(prefix), message


def test_a_scheduled_run_is_named_by_its_spec_and_tick() -> None:
    (entry,) = load_file("t.yaml", RUN.encode()).entries
    assert isinstance(entry.spec, TrainingRun)
    tick = at("2026-03-01 03:00")
    (unscheduled,) = load_file(
        "t.yaml", RUN.replace('  schedule: "0 3 * * 0"\n', "").encode()
    ).entries
    assert isinstance(unscheduled.spec, TrainingRun)

    # When runs start is not what a run does: the same spec names the same run.
    assert run_name(entry.spec) == run_name(unscheduled.spec)
    assert run_name(entry.spec, tick=tick) == run_name(entry.spec, tick=tick)
    assert run_name(entry.spec, tick=tick) != run_name(entry.spec, tick=tick + timedelta(hours=1))
    assert len(run_name(entry.spec, tick=tick)) == len("train-") + 8


# --- end to end -------------------------------------------------------------------------


class Clock:
    """The reconciler's clock, moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def training_run(
    namespace: str,
    *,
    image: str = "ghcr.io/acme/train:1.0.0",
    annotations: dict[str, str] = FAST,
    **extra: Any,
) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {
                "name": "train",
                "namespace": namespace,
                "labels": {"team": "risk"},
                "annotations": annotations,
            },
            "spec": {
                "framework": "tensorflow",
                "image": image,
                "replicas": {"worker": 1},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "output": "s3://models/train/{run}",
                **extra,
            },
        },
        sort_keys=False,
    )


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> SpecRepo:
    spec_repo = SpecRepo(tmp_path / "repo")
    spec_repo.write("gitsync.yaml", f"defaults: {{namespace: {namespace}}}\n")
    return spec_repo


@pytest.fixture
def clock() -> Clock:
    return Clock(at("2026-03-01 02:59"))


@pytest.fixture
def reconciler(
    repo: SpecRepo, control_plane: ControlPlane, tmp_path: Path, clock: Clock
) -> Iterator[Callable[[], Reconciler]]:
    """A factory: each call is a fresh reconciler, as a restarted daemon would be."""
    made: list[tuple[Reconciler, GitSource, KubeClient]] = []
    instance = f"train-{uuid.uuid4().hex[:6]}"

    def make() -> Reconciler:
        git = GitSource(repo.url, branch="main", cache_dir=tmp_path / f"cache{len(made)}")
        kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
        options = SyncOptions(instance=instance)
        made.append((r := Reconciler(git=git, kube=kube, options=options, clock=clock), git, kube))
        return r

    yield make
    for r, git, kube in made:
        r.close()
        kube.close()
        git.close()


def jobs(kube: KubeClient, namespace: str) -> dict[str, dict[str, Any]]:
    return {j["metadata"]["name"]: j for j in kube.list(*TFJOB, namespace=namespace)["items"]}


def status_doc(repo: SpecRepo, namespace: str, kind: str, name: str) -> dict[str, Any]:
    doc = yaml.safe_load(repo.status_document(namespace, kind, name))
    assert isinstance(doc, dict)
    return doc


def drive(reconciler: Reconciler, until: Callable[[CycleReport], bool]) -> CycleReport:
    """Cycle until ``until`` holds (the dev controllers move in real time)."""
    deadline = time.monotonic() + 20
    while not until(report := reconciler.cycle()):
        assert time.monotonic() < deadline, [s.message for s in report.statuses]
        time.sleep(0.3)
    return report


def run_phases(report: CycleReport) -> list[str]:
    (status,) = [s for s in report.statuses if s.kind == "TrainingRun"]
    return [r.phase for r in status.runs]


def scheduled(repo: SpecRepo, namespace: str, tick: str) -> str:
    content = training_run(namespace, schedule=HOURLY)
    (entry,) = load_file("t.yaml", content.encode()).entries
    assert isinstance(entry.spec, TrainingRun)
    return run_name(entry.spec, tick=at(tick))


def test_a_schedule_starts_one_run_per_tick_and_coalesces_missed_ticks(
    reconciler: Callable[[], Reconciler],
    repo: SpecRepo,
    kube: KubeClient,
    namespace: str,
    clock: Clock,
) -> None:
    repo.write("train.yaml", training_run(namespace, schedule=HOURLY))
    commit = repo.commit("train hourly")
    daemon = reconciler()

    daemon.cycle()  # 02:59: first sight waits for the next tick
    assert jobs(kube, namespace) == {}
    doc = status_doc(repo, namespace, "TrainingRun", "train")
    assert doc["phase"] == "Pending"
    assert doc["schedule"] == {"since": "2026-03-01T02:59:00Z", "nextTick": "2026-03-01T03:00:00Z"}

    clock.now = at("2026-03-01 03:00:20")
    daemon.cycle()
    first = scheduled(repo, namespace, "2026-03-01 03:00")
    assert set(jobs(kube, namespace)) == {first}
    annotations = jobs(kube, namespace)[first]["metadata"]["annotations"]
    assert annotations[ANNOTATION_SCHEDULED_AT] == "2026-03-01T03:00:00Z"
    drive(daemon, lambda r: run_phases(r) == ["Succeeded"])

    clock.now = at("2026-03-01 06:10")  # 04:00, 05:00 and 06:00 missed: one run, for 06:00
    daemon.cycle()
    latest = scheduled(repo, namespace, "2026-03-01 06:00")
    assert set(jobs(kube, namespace)) == {first, latest}
    drive(daemon, lambda r: run_phases(r) == ["Succeeded", "Succeeded"])

    restarted = reconciler()  # the same ticks name the same runs: nothing is recreated
    assert restarted.cycle().changes.writes == []
    doc = status_doc(repo, namespace, "TrainingRun", "train")
    assert doc["schedule"]["lastTick"] == "2026-03-01T06:00:00Z"
    assert doc["schedule"]["nextTick"] == "2026-03-01T07:00:00Z"
    newest, oldest = doc["runs"]
    assert (newest["name"], oldest["name"]) == (latest, first)
    assert newest["scheduledAt"] == "2026-03-01T06:00:00Z"
    assert newest["sourceCommit"] == commit
    assert newest["outputUri"] == f"s3://models/train/{latest}"
    assert {"startTime", "completionTime", "replicaStatuses"} <= set(newest)


@pytest.mark.parametrize("policy", ["Forbid", "Replace", "Allow"])
def test_concurrency_policy_at_a_tick_while_a_run_is_active_end_to_end(
    reconciler: Callable[[], Reconciler],
    repo: SpecRepo,
    kube: KubeClient,
    namespace: str,
    clock: Clock,
    policy: str,
) -> None:
    content = training_run(namespace, annotations=SLOW, schedule=HOURLY, concurrencyPolicy=policy)
    repo.write("train.yaml", content)
    repo.commit(f"train hourly, {policy}")
    daemon = reconciler()
    daemon.cycle()
    clock.now = at("2026-03-01 03:00:05")
    daemon.cycle()
    (first,) = jobs(kube, namespace)
    drive(daemon, lambda r: run_phases(r) == ["Running"])

    clock.now = at("2026-03-01 04:00:05")
    daemon.cycle()

    names = set(jobs(kube, namespace))
    second = run_name(_spec(content), tick=at("2026-03-01 04:00"))
    doc = status_doc(repo, namespace, "TrainingRun", "train")
    if policy == "Forbid":
        assert names == {first}
        assert doc["schedule"]["skipped"] == (
            f"tick 2026-03-01T04:00:00Z skipped: {first} still active (concurrencyPolicy Forbid)"
        )
        assert "skipped" in doc["message"]
    elif policy == "Replace":
        assert names == {second}
    else:
        assert names == {first, second}
    assert doc["schedule"]["lastTick"] == "2026-03-01T04:00:00Z"


def _spec(content: str) -> TrainingRun:
    (entry,) = load_file("t.yaml", content.encode()).entries
    assert isinstance(entry.spec, TrainingRun)
    return entry.spec


def test_history_limit_prunes_the_oldest_finished_runs(
    reconciler: Callable[[], Reconciler],
    repo: SpecRepo,
    kube: KubeClient,
    namespace: str,
    clock: Clock,
) -> None:
    content = training_run(namespace, schedule=HOURLY, historyLimit=2)
    repo.write("train.yaml", content)
    repo.commit("train hourly, keep two")
    daemon = reconciler()
    daemon.cycle()
    ticks = ["2026-03-01 03:00", "2026-03-01 04:00", "2026-03-01 05:00"]
    for tick in ticks:
        clock.now = at(tick) + timedelta(seconds=5)
        daemon.cycle()
        # The cycle that sees the third run finished prunes the first.
        report = drive(daemon, lambda r: run_phases(r)[0] == "Succeeded")

    names = [run_name(_spec(content), tick=at(tick)) for tick in ticks]
    deleted = [(c.key.name, c.reason) for c in report.changes.writes]
    assert deleted == [(names[0], "beyond historyLimit 2")]
    assert set(jobs(kube, namespace)) == set(names[1:])
    doc = status_doc(repo, namespace, "TrainingRun", "train")
    assert [r["name"] for r in doc["runs"]] == [names[2], names[1]]


def served_model(namespace: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": "scorer",
                "namespace": namespace,
                "labels": {"team": "risk"},
                "annotations": {"dev.gitsync.io/ready-delay": "0.2"},
            },
            "spec": {
                "model": {"format": "tensorflow", "fromTrainingRun": "train"},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            },
        },
        sort_keys=False,
    )


def storage_uri(kube: KubeClient, namespace: str) -> str | None:
    live = kube.get(*ISVC, "scorer", namespace=namespace)
    return None if live is None else str(live["spec"]["predictor"]["model"]["storageUri"])


def test_a_model_serves_the_latest_successful_run_of_its_training_run(
    reconciler: Callable[[], Reconciler], repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    repo.write("gitsync.yaml", f"defaults: {{namespace: {namespace}}}\n")
    repo.write("train.yaml", training_run(namespace))
    repo.write("scorer.yaml", served_model(namespace))
    first_commit = repo.commit("train, and serve what it trains")
    daemon = reconciler()

    report = daemon.cycle()

    (first,) = jobs(kube, namespace)
    assert kube.get(*ISVC, "scorer", namespace=namespace) is None
    doc = status_doc(repo, namespace, "ModelDeployment", "scorer")
    assert doc["phase"] == "Pending"
    assert doc["message"] == f"waiting for a Succeeded run of TrainingRun {namespace}/train"
    assert doc["model"] == {"format": "tensorflow", "fromTrainingRun": {"name": "train"}}
    assert not report.failed

    drive(daemon, lambda r: storage_uri(kube, namespace) is not None)
    assert storage_uri(kube, namespace) == f"s3://models/train/{first}"
    doc = status_doc(repo, namespace, "ModelDeployment", "scorer")
    lineage = doc["model"]["fromTrainingRun"]
    assert (lineage["run"], lineage["sourceCommit"]) == (first, first_commit)
    assert lineage["completionTime"]
    subjects = [line.split(" ", 1)[1] for line in repo.log("gitsync/status")]
    assert any(f"from run {first} of TrainingRun train" in s for s in subjects), subjects

    repo.write("train.yaml", training_run(namespace, image="ghcr.io/acme/train:1.1.0"))
    second_commit = repo.commit("train: image 1.1.0")
    drive(
        daemon, lambda r: storage_uri(kube, namespace) not in {None, f"s3://models/train/{first}"}
    )

    (second,) = set(jobs(kube, namespace)) - {first}
    assert storage_uri(kube, namespace) == f"s3://models/train/{second}"
    drive(
        daemon,
        lambda r: status_doc(repo, namespace, "ModelDeployment", "scorer")["phase"] == "Healthy",
    )
    lineage = status_doc(repo, namespace, "ModelDeployment", "scorer")["model"]["fromTrainingRun"]
    assert (lineage["run"], lineage["sourceCommit"]) == (second, second_commit)


# --- the operators' surface: each field's mistakes, located and explained ------------

SURFACE = """\
apiVersion: gitsync.io/v1alpha1
kind: TrainingRun
metadata: {name: t, namespace: ml}
spec:
  framework: tensorflow
  image: ghcr.io/acme/train:1
  replicas: {chief: 1, worker: 2}
"""
TORCH = SURFACE.replace("tensorflow", "pytorch").replace("chief: 1, ", "")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            SURFACE + "  roles:\n    cheif: {image: x}\n",
            "t.yaml:9:5: spec.roles.cheif: unknown field 'cheif'; did you mean 'chief'?",
            id="role-typo",
        ),
        pytest.param(
            SURFACE + "  roles:\n    ps: {image: x}\n",
            "t.yaml:9:5: spec.roles: role ps has overrides but no replicas; add it to replicas",
            id="role-without-replicas",
        ),
        pytest.param(
            TORCH + "  roles:\n    ps: {image: x}\n",
            "t.yaml:9:5: spec.roles: role ps is not a pytorch role",
            id="role-of-the-other-framework",
        ),
        pytest.param(
            SURFACE + "  roles:\n    worker: {resource: {}}\n",
            "t.yaml:9:14: spec.roles.worker.resource: unknown field 'resource'; "
            "did you mean 'resources'?",
            id="role-field-typo",
        ),
        pytest.param(
            SURFACE + "  roles: {worker: {workDir: /x}}\n",
            "t.yaml:8:20: spec.roles.worker.workDir: unknown field 'workDir'; "
            "did you mean 'workingDir'?",
            id="working-dir-typo",
        ),
        pytest.param(
            SURFACE.replace("replicas: {chief: 1, worker: 2}", "replicas: {cheif: 1}"),
            "t.yaml:7:13: spec.replicas: replica role(s) cheif unknown for tensorflow; "
            "use chief, evaluator, ps, worker (did you mean 'chief'?)",
            id="replica-role-typo",
        ),
        pytest.param(
            SURFACE + "  env: {TOKEN: {secretKeyRf: {name: s, key: k}}}\n",
            "t.yaml:8:17: spec.env.TOKEN.secretKeyRf: unknown field 'secretKeyRf'; "
            "did you mean 'secretKeyRef'?",
            id="env-secret-key-ref-typo",
        ),
        pytest.param(
            SURFACE + "  env: {TOKEN: {valueFrom: {secretKeyRef: {name: s, key: k}}}}\n",
            "t.yaml:8:16: spec.env.TOKEN: give the source without valueFrom, e.g. "
            "NAME: {secretKeyRef: {name: ..., key: ...}}",
            id="env-kubernetes-spelling",
        ),
        pytest.param(
            SURFACE + "  env: {T: {secretKeyRef: {name: s, key: k}, fieldRef: {fieldPath: x}}}\n",
            "t.yaml:8:12: spec.env.T: give exactly one of secretKeyRef, "
            "configMapKeyRef, fieldRef or resourceFieldRef, not 2",
            id="env-two-sources",
        ),
        pytest.param(
            SURFACE + "  env: {EPOCHS: 3}\n",
            "t.yaml:8:17: spec.env.EPOCHS: a value is text (quote numbers and booleans) or "
            "where it comes from ({secretKeyRef: ...}",
            id="env-unquoted-number",
        ),
        pytest.param(
            SURFACE + "  topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, "
            "whenUnsatisfiable: DoNotSchedul}]\n",
            "t.yaml:8:82: spec.topologySpreadConstraints[0].whenUnsatisfiable: 'DoNotSchedul' "
            "is not one of 'DoNotSchedule' or 'ScheduleAnyway'; did you mean 'DoNotSchedule'?",
            id="topology-spread",
        ),
        pytest.param(
            SURFACE + "  imagePullSecrets: [Ghcr_Pull]\n",
            "t.yaml:8:22: spec.imagePullSecrets[0]: String should match pattern",
            id="image-pull-secret-name",
        ),
        pytest.param(
            SURFACE + "  terminationGracePeriodSeconds: -1\n",
            "t.yaml:8:34: spec.terminationGracePeriodSeconds: Input should be greater than or "
            "equal to 0",
            id="termination-grace-period",
        ),
        pytest.param(
            SURFACE + "  envFrom: [{secretRef: {name: a}, configMapRef: {name: b}}]\n",
            "t.yaml:8:13: spec.envFrom[0]: envFrom needs exactly one of secretRef or configMapRef",
            id="env-from-two-sources",
        ),
        pytest.param(
            SURFACE + "  securityContext: {runAsNonroot: true}\n",
            "t.yaml:8:21: spec.securityContext.runAsNonroot: unknown field 'runAsNonroot'; "
            "did you mean 'runAsNonRoot'?",
            id="security-context-typo",
        ),
        pytest.param(
            SURFACE + "  podSecurityContext: {fsGroupChangePolicy: Sometimes}\n",
            "t.yaml:8:45: spec.podSecurityContext.fsGroupChangePolicy: 'Sometimes' is not one "
            "of 'OnRootMismatch' or 'Always'",
            id="pod-security-context",
        ),
        pytest.param(
            SURFACE + "  restartPolicy: OnFailur\n",
            "t.yaml:8:18: spec.restartPolicy: 'OnFailur' is not one of 'Always', 'OnFailure', "
            "'Never' or 'ExitCode'; did you mean 'OnFailure'?",
            id="restart-policy",
        ),
        pytest.param(
            SURFACE + "  imagePullPolicy: IfNotPresnt\n",
            "t.yaml:8:20: spec.imagePullPolicy: 'IfNotPresnt' is not one of 'Always', "
            "'IfNotPresent' or 'Never'; did you mean 'IfNotPresent'?",
            id="image-pull-policy",
        ),
        pytest.param(
            SURFACE + "  roles: {chief: {image: ''}}\n",
            "t.yaml:8:26: spec.roles.chief.image: role chief has no image",
            id="role-without-image",
        ),
        pytest.param(
            SURFACE + "  volumes: [{name: data, persistentVolumeClame: {claimName: x}}]\n",
            "t.yaml:8:26: spec.volumes[0].persistentVolumeClame: unknown field "
            "'persistentVolumeClame'; did you mean 'persistentVolumeClaim'?",
            id="volume-source-typo",
        ),
        pytest.param(
            SURFACE + "  volumes: [{name: data, persistentVolumeClaim: {claimname: x}}]\n",
            "t.yaml:8:50: spec.volumes[0].persistentVolumeClaim.claimname: unknown field "
            "'claimname'; did you mean 'claimName'?",
            id="pvc-field-typo",
        ),
        pytest.param(
            SURFACE + "  volumes: [{name: data, emptyDir: {}, secret: {secretName: s}}]\n",
            "t.yaml:8:13: spec.volumes[0]: volume data needs exactly one source",
            id="volume-two-sources",
        ),
        pytest.param(
            SURFACE + "  volumes: [{name: data}]\n",
            "t.yaml:8:13: spec.volumes[0]: volume data needs exactly one source",
            id="volume-no-source",
        ),
        pytest.param(
            SURFACE + "  volumes: [{name: d, gcePersistentDisk: {pdName: x}}]\n",
            "t.yaml:8:13: spec.volumes[0]: volume source gcePersistentDisk is a deprecated "
            "in-tree plugin; use a persistentVolumeClaim or csi volume",
            id="volume-deprecated-plugin",
        ),
        pytest.param(
            SURFACE + "  volumes: [{name: d, emptyDir: {}}, {name: d, emptyDir: {}}]\n",
            "t.yaml:8:12: spec.volumes: volume d is declared twice",
            id="volume-twice",
        ),
        pytest.param(
            SURFACE + "  volumes: [{name: d, emptyDir: {sizeLimit: huge}}]\n",
            "t.yaml:8:45: spec.volumes[0].emptyDir.sizeLimit: 'huge' is not a Kubernetes quantity",
            id="empty-dir-size",
        ),
        pytest.param(
            SURFACE + "  volumes: [{name: data, emptyDir: {}}]\n"
            "  volumeMounts: [{name: dat, mountPath: /data}]\n",
            "t.yaml:9:17: spec.volumeMounts: every role mounts volume dat, which is not among "
            "its volumes; did you mean 'data'?",
            id="mount-of-no-volume",
        ),
        pytest.param(
            SURFACE + "  roles:\n    chief: {volumeMounts: [{name: ckpt, mountPath: /c}]}\n",
            "t.yaml:9:5: spec.roles: role chief mounts volume ckpt, which is not among its volumes",
            id="role-mount-of-no-volume",
        ),
        pytest.param(
            SURFACE + "  volumes: [{name: d, emptyDir: {}}]\n"
            "  volumeMounts: [{name: d, mountPath: data}]\n",
            "t.yaml:9:39: spec.volumeMounts[0].mountPath: String should match pattern '^/'",
            id="mount-path-relative",
        ),
        pytest.param(
            SURFACE + "  tolerations: [{key: a, effect: NoScedule}]\n",
            "t.yaml:8:34: spec.tolerations[0].effect: 'NoScedule' is not one of 'NoSchedule', "
            "'PreferNoSchedule' or 'NoExecute'; did you mean 'NoSchedule'?",
            id="toleration-effect",
        ),
        pytest.param(
            SURFACE + "  affinity: {nodeAfinity: {}}\n",
            "t.yaml:8:14: spec.affinity.nodeAfinity: unknown field 'nodeAfinity'; "
            "did you mean 'nodeAffinity'?",
            id="affinity-kind-typo",
        ),
        pytest.param(
            SURFACE + "  nodeSelector: {gpu: true}\n",
            "t.yaml:8:23: spec.nodeSelector.gpu: Input should be a valid string",
            id="node-selector-value",
        ),
        pytest.param(
            SURFACE + "  priorityClassName: [high]\n",
            "t.yaml:8:22: spec.priorityClassName: Input should be a valid string",
            id="priority-class-name",
        ),
        pytest.param(
            SURFACE + "  podAnnotation: {sidecar.istio.io/inject: 'false'}\n",
            "t.yaml:8:3: spec.podAnnotation: unknown field 'podAnnotation'; "
            "did you mean 'podAnnotations'?",
            id="pod-annotations-typo",
        ),
        pytest.param(
            SURFACE + "  podLabels: {team: 7}\n",
            "t.yaml:8:21: spec.podLabels.team: Input should be a valid string",
            id="pod-label-value",
        ),
        pytest.param(
            SURFACE + "  runPolicy: {cleanPodPolicy: none}\n",
            "t.yaml:8:31: spec.runPolicy.cleanPodPolicy: 'none' is not one of 'None', "
            "'Running' or 'All'; did you mean 'None'?",
            id="clean-pod-policy",
        ),
        pytest.param(
            SURFACE + "  runPolicy: {suspend: maybe}\n",
            "t.yaml:8:24: spec.runPolicy.suspend: Input should be a valid boolean",
            id="suspend",
        ),
        pytest.param(
            SURFACE + "  runPolicy: {schedulingPolicy: {minAvaliable: 2}}\n",
            "t.yaml:8:34: spec.runPolicy.schedulingPolicy.minAvaliable: unknown field "
            "'minAvaliable'; did you mean 'minAvailable'?",
            id="scheduling-policy-typo",
        ),
        pytest.param(
            SURFACE + "  runPolicy: {schedulingPolicy: {minResources: {cpu: lots}}}\n",
            "t.yaml:8:54: spec.runPolicy.schedulingPolicy.minResources.cpu: 'lots' is not a "
            "Kubernetes quantity",
            id="scheduling-min-resources",
        ),
        pytest.param(
            SURFACE + "  runPolicy: {managedBy: kueue}\n",
            "t.yaml:8:26: spec.runPolicy.managedBy: 'kueue' is not one of",
            id="managed-by",
        ),
        pytest.param(
            SURFACE + "  runPolicy: {ttlSecondsAfterFinshed: 60}\n",
            "t.yaml:8:15: spec.runPolicy.ttlSecondsAfterFinshed: unknown field "
            "'ttlSecondsAfterFinshed'; did you mean 'ttlSecondsAfterFinished'?",
            id="ttl-typo",
        ),
        pytest.param(
            SURFACE + "  successPolicy: AllWorker\n",
            "t.yaml:8:18: spec.successPolicy: 'AllWorker' is not one of 'AllWorkers'; "
            "did you mean 'AllWorkers'?",
            id="success-policy",
        ),
        pytest.param(
            TORCH + "  successPolicy: AllWorkers\n",
            "t.yaml:8:18: spec.successPolicy: successPolicy is a TFJob field, not pytorch's",
            id="success-policy-on-pytorch",
        ),
        pytest.param(
            SURFACE + "  elasticPolicy: {minReplicas: 1}\n",
            "t.yaml:8:18: spec.elasticPolicy: elasticPolicy is a PyTorchJob field, "
            "not tensorflow's",
            id="elastic-policy-on-tensorflow",
        ),
        pytest.param(
            TORCH + "  elasticPolicy: {minReplicas: 4, maxReplicas: 2}\n",
            "t.yaml:8:18: spec.elasticPolicy: minReplicas (4) is above maxReplicas (2)",
            id="elastic-bounds",
        ),
        pytest.param(
            TORCH + "  elasticPolicy: {rdzvBackend: c10}\n",
            "t.yaml:8:32: spec.elasticPolicy.rdzvBackend: 'c10' is not one of 'c10d', 'etcd' "
            "or 'etcd-v2'; did you mean 'c10d'?",
            id="rendezvous-backend",
        ),
        pytest.param(
            TORCH + "  elasticPolicy: {nProcPerNode: 2}\n",
            "t.yaml:8:19: spec.elasticPolicy.nProcPerNode: unknown field 'nProcPerNode'",
            id="elastic-nproc-deprecated",
        ),
        pytest.param(
            TORCH.replace("{worker: 2}", "{master: 1}") + "  elasticPolicy: {maxReplicas: 2}\n",
            "t.yaml:8:18: spec.elasticPolicy: elasticPolicy needs worker replicas",
            id="elastic-without-workers",
        ),
        pytest.param(
            TORCH + "  nprocPerNode: many\n",
            "t.yaml:8:17: spec.nprocPerNode: 'many' is not auto, cpu, gpu or a number",
            id="nproc-per-node",
        ),
    ],
)
def test_surface_mistakes_are_located_and_explained(content: str, expected: str) -> None:
    found = [str(d) for d in load_file("t.yaml", content.encode()).diagnostics]
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


TRAINJOB = """\
apiVersion: gitsync.io/v1alpha1
kind: TrainingRun
metadata: {name: t, namespace: ml}
spec:
  runtimeRef: {name: torch-distributed}
"""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            TRAINJOB + "  framework: pytorch\n",
            [
                "t.yaml:5:15: spec.runtimeRef: give framework (TFJob, PyTorchJob) or runtimeRef "
                "(TrainJob), not both"
            ],
            id="framework-and-runtime",
        ),
        pytest.param(
            TRAINJOB.replace("  runtimeRef: {name: torch-distributed}\n", "  image: x\n"),
            [
                "t.yaml:5:3: spec.framework: give framework (TFJob, PyTorchJob) or runtimeRef "
                "(TrainJob)"
            ],
            id="neither",
        ),
        pytest.param(
            TRAINJOB.replace("{name: torch-distributed}", "{name: x, kind: ClusterRuntime}"),
            [
                "t.yaml:5:31: spec.runtimeRef.kind: 'ClusterRuntime' is not one of "
                "'ClusterTrainingRuntime' or 'TrainingRuntime'; did you mean "
                "'ClusterTrainingRuntime'?"
            ],
            id="runtime-kind",
        ),
        pytest.param(
            TRAINJOB + "  replicas: {worker: 2}\n",
            [
                "t.yaml:6:13: spec.replicas: replicas is not for a TrainJob: the runtime's "
                "replicated jobs run it; give numNodes"
            ],
            id="replicas",
        ),
        pytest.param(
            TRAINJOB + "  roles: {worker: {image: x}}\n",
            ["t.yaml:6:10: spec.roles: roles is not for a TrainJob"],
            id="roles",
        ),
        pytest.param(
            TRAINJOB + "  restartPolicy: Never\n",
            ["t.yaml:6:18: spec.restartPolicy: restartPolicy is not for a TrainJob"],
            id="restart-policy",
        ),
        pytest.param(
            TRAINJOB + "  schedulerName: volcano\n",
            [
                "t.yaml:6:18: spec.schedulerName: schedulerName is not for a TrainJob: the runtime "
                "sets it (runtimePatches cannot)"
            ],
            id="scheduler-name",
        ),
        pytest.param(
            TRAINJOB + "  envFrom: [{secretRef: {name: a}}]\n",
            [
                "t.yaml:6:12: spec.envFrom: envFrom is not for a TrainJob: a TrainJob's trainer "
                "takes env only; give each variable under env"
            ],
            id="env-from",
        ),
        pytest.param(
            TRAINJOB + "  runPolicy: {backoffLimit: 2}\n",
            [
                "t.yaml:6:29: spec.runPolicy.backoffLimit: runPolicy.backoffLimit is not for a "
                "TrainJob"
            ],
            id="run-policy-field",
        ),
        pytest.param(
            TRAINJOB + "  nprocPerNode: gpu\n",
            ["t.yaml:6:17: spec.nprocPerNode: a TrainJob's nprocPerNode is a number"],
            id="nproc-per-node",
        ),
        pytest.param(
            TRAINJOB + "  elasticPolicy: {maxReplicas: 2}\n",
            [
                "t.yaml:6:18: spec.elasticPolicy: elasticPolicy is not for a TrainJob: it is a "
                "PyTorchJob field"
            ],
            id="elastic-policy",
        ),
        pytest.param(
            TRAINJOB + "  initializer: {dataset: {storageUri: alpaca}}\n",
            ["t.yaml:6:39: spec.initializer.dataset.storageUri: 'alpaca' is not a URI"],
            id="initializer-uri",
        ),
        pytest.param(
            TRAINJOB + "  initializer: {datset: {storageUri: hf://a}}\n",
            [
                "t.yaml:6:17: spec.initializer.datset: unknown field 'datset'; "
                "did you mean 'dataset'?"
            ],
            id="initializer-typo",
        ),
        pytest.param(
            TRAINJOB + "  numNodes: 0\n",
            ["t.yaml:6:13: spec.numNodes: Input should be greater than or equal to 1"],
            id="num-nodes",
        ),
        pytest.param(
            TRAINJOB.replace(
                "  runtimeRef: {name: torch-distributed}\n",
                "  framework: pytorch\n  image: x\n  numNodes: 2\n"
                "  initializer: {model: {storageUri: hf://m}}\n",
            ),
            [
                "t.yaml:7:13: spec.numNodes: numNodes is for a TrainJob (runtimeRef)",
                "t.yaml:8:16: spec.initializer: initializer is for a TrainJob (runtimeRef)",
            ],
            id="trainjob-fields-on-a-pytorchjob",
        ),
        pytest.param(
            TRAINJOB.replace("name: t,", "name: 7t,"),
            ["t.yaml:3:18: metadata.name: String should match pattern '^[a-z]"],
            id="name-starts-with-a-digit",
        ),
    ],
)
def test_trainjob_mistakes_are_located_and_explained(content: str, expected: list[str]) -> None:
    found = [str(d) for d in load_file("t.yaml", content.encode()).diagnostics]
    assert len(found) == len(expected), found
    for message, prefix in zip(found, expected, strict=True):
        assert message.startswith(prefix), message


def test_a_trainjob_runs_to_complete_with_its_metrics_and_its_output_is_served(
    reconciler: Callable[[], Reconciler], repo: SpecRepo, kube: KubeClient, namespace: str
) -> None:
    """A TrainingRun naming a runtime is a Kubeflow Trainer v2 TrainJob: it runs on the
    torch-distributed runtime Kubeflow ships, its trainer's progress and metrics reach
    the status document, and a fromTrainingRun model serves its OUTPUT_URI."""
    knobs = {**FAST, "dev.gitsync.io/progress": "30", "dev.gitsync.io/metrics": "accuracy=0.94"}
    content = yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {
                "name": "train",
                "namespace": namespace,
                "labels": {"team": "risk"},
                "annotations": knobs,
            },
            "spec": {
                "runtimeRef": {"name": "torch-distributed"},
                "image": "ghcr.io/acme/finetune:1.0.0",
                "numNodes": 2,
                "resources": {"limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}},
                "output": "s3://models/train/{run}",
                "initializer": {"model": {"storageUri": "hf://acme/base-model"}},
            },
        }
    )
    repo.write("train.yaml", content)
    repo.write("scorer.yaml", served_model(namespace))
    commit = repo.commit("fine-tune on Trainer v2, and serve it")
    daemon = reconciler()

    drive(daemon, lambda r: storage_uri(kube, namespace) is not None)

    (job,) = kube.list(TRAINJOB_API, "TrainJob", namespace=namespace)["items"]
    run = job["metadata"]["name"]
    assert run == run_name(_spec(content))
    assert storage_uri(kube, namespace) == f"s3://models/train/{run}"
    doc = status_doc(repo, namespace, "TrainingRun", "train")
    assert doc["phase"] == "Succeeded"
    (record,) = doc["runs"]
    assert (record["name"], record["phase"], record["sourceCommit"]) == (run, "Succeeded", commit)
    assert record["outputUri"] == f"s3://models/train/{run}"
    assert record["trainerStatus"]["progressPercentage"] == 100
    assert record["trainerStatus"]["metrics"] == {"accuracy": "0.94"}
    assert record["jobsStatus"] == [{"name": "node", "succeeded": 1}]
    assert record["completionTime"] >= record["startTime"]
    lineage = status_doc(repo, namespace, "ModelDeployment", "scorer")["model"]["fromTrainingRun"]
    assert (lineage["run"], lineage["sourceCommit"]) == (run, commit)
