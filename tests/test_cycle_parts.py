"""The pure parts a cycle's steps call, each as a table: training plans, the status
inventory, revert proposals, analysis, the kinds to observe, the evaluation path.

Nothing here talks to a cluster or a remote; the end-to-end behaviour of the same
code is covered against the real API server in test_reconcile, test_training and
test_canary.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from gitsync.analysis import measure
from gitsync.clients.prometheus import MetricQueryError, MetricsUnavailableError
from gitsync.errors import ConfigurationError, GitsyncError
from gitsync.evaluation import Evaluator
from gitsync.inventory import Inventory
from gitsync.live import kinds_to_observe
from gitsync.loading import LoadResult, load_file, load_tree
from gitsync.policy import load_library
from gitsync.render import LABEL_TRAINING_RUN, RenderContext
from gitsync.revert import revert_proposals
from gitsync.rollout import Decision, RolloutPhase, RolloutState, Verdict
from gitsync.spec_status import _untold
from gitsync.specs import Rollout
from gitsync.status import build_status
from gitsync.status_document import RolloutInfo, RunRecord, StatusDocument
from gitsync.training import jobs_by_training_run, plan_training
from gitsync.types import ObjectRef, format_resource, parse_resource

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def load(*documents: Mapping[str, Any], path: str = "specs.yaml") -> LoadResult:
    content = yaml.safe_dump_all(list(documents)).encode()
    return load_tree([load_file(path, content)], default_namespace="ml")


def model(name: str, **model_fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gitsync.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ml", "labels": {"team": "risk"}},
        "spec": {
            "model": {"format": "sklearn", **model_fields},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        },
    }


def training(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gitsync.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": "ml", "labels": {"team": "risk"}},
        "spec": {
            "framework": "pytorch",
            "image": "ghcr.io/acme/train:1.0",
            "replicas": {"master": 1},
            "output": "s3://models/out",
            **spec,
        },
    }


def job(name: str, run: str, *, phase: str, created: str, completed: str = "") -> dict[str, Any]:
    conditions = {
        "Succeeded": [{"type": "Succeeded", "status": "True"}],
        "Running": [{"type": "Running", "status": "True"}],
    }[phase]
    status: dict[str, Any] = {"conditions": conditions}
    if completed:
        status["completionTime"] = completed
    container = {"name": "pytorch", "env": [{"name": "OUTPUT_URI", "value": f"s3://m/{name}"}]}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {LABEL_TRAINING_RUN: run},
            "creationTimestamp": created,
        },
        "spec": {
            "pytorchReplicaSpecs": {"Master": {"template": {"spec": {"containers": [container]}}}}
        },
        "status": status,
    }


def live(*objects: Mapping[str, Any]) -> dict[ObjectRef, Mapping[str, Any]]:
    return {ObjectRef.of(o): o for o in objects}


# --- identity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (
            "serving.kserve.io/v1beta1 InferenceService ml/fraud",
            (
                "serving.kserve.io/v1beta1",
                ObjectRef("serving.kserve.io", "InferenceService", "ml", "fraud"),
            ),
        ),
        ("v1 Namespace ml", ("v1", ObjectRef("", "Namespace", "", "ml"))),
        ("v1 Namespace", None),
        ("", None),
        ("a b c d", None),
    ],
)
def test_recorded_resources_read_back(text: str, parsed: tuple[str, ObjectRef] | None) -> None:
    assert parse_resource(text) == parsed
    if parsed is not None:
        assert format_resource(*parsed) == text


def test_an_entry_is_named_like_the_object_it_declares() -> None:
    loaded = load(model("fraud", storageUri="s3://m"))
    (entry,) = loaded.entries
    assert entry.key("ml") == ObjectRef.spec("ModelDeployment", "ml", "fraud")
    assert str(entry.key("ml")) == "ModelDeployment ml/fraud"


# --- training ---------------------------------------------------------------------------


def test_jobs_are_grouped_by_their_training_run_newest_first() -> None:
    objects = live(
        job("t-1", "t", phase="Succeeded", created="2026-03-01T01:00:00Z"),
        job("t-2", "t", phase="Running", created="2026-03-01T02:00:00Z"),
        job("u-1", "u", phase="Running", created="2026-03-01T00:00:00Z"),
    )
    grouped = jobs_by_training_run(objects)
    t = ObjectRef.spec("TrainingRun", "ml", "t")
    assert [j["metadata"]["name"] for j in grouped[t]] == ["t-2", "t-1"]
    assert set(grouped) == {t, ObjectRef.spec("TrainingRun", "ml", "u")}


@pytest.mark.parametrize(
    ("jobs", "remembered", "served"),
    [
        pytest.param([], [], None, id="nothing-yet"),
        pytest.param(
            [job("t-1", "t", phase="Running", created="2026-03-01T01:00:00Z")],
            [],
            None,
            id="running-is-not-served",
        ),
        pytest.param(
            [
                job("t-1", "t", phase="Succeeded", created="1", completed="2026-03-01T01:00:00Z"),
                job("t-2", "t", phase="Succeeded", created="2", completed="2026-03-01T03:00:00Z"),
            ],
            [],
            "t-2",
            id="latest-completion-wins",
        ),
        pytest.param(
            [],
            [
                RunRecord(
                    name="t-0",
                    phase="Succeeded",
                    output_uri="s3://models/t-0",
                    completion_time="2026-02-01T00:00:00Z",
                )
            ],
            "t-0",
            id="expired-job-served-from-the-status-history",
        ),
        pytest.param(
            [], [RunRecord(name="t-0", phase="Succeeded")], None, id="no-output-is-not-served"
        ),
    ],
)
def test_a_model_serves_the_latest_succeeded_run(
    jobs: list[dict[str, Any]], remembered: list[RunRecord], served: str | None
) -> None:
    loaded = load(model("m", fromTrainingRun="t"), training("t"))
    doc = build_status(
        kind="TrainingRun",
        name="t",
        namespace="ml",
        instance="i",
        source="specs.yaml",
        source_commit="c",
        now="t",
        runs=remembered,
    )
    plan = plan_training(
        loaded.entries,
        live(*jobs),
        inventory=Inventory(instance="i", documents={doc.path: doc}),
        default_namespace="ml",
        now=NOW,
    )
    trained = plan.trained.get(ObjectRef.spec("ModelDeployment", "ml", "m"))
    assert (trained.run if trained else None) == served


def test_finished_runs_beyond_the_history_limit_retire() -> None:
    loaded = load(training("t", historyLimit=1))
    jobs = [
        job(f"t-{i}", "t", phase="Succeeded", created=f"2026-03-01T0{i}:00:00Z") for i in range(3)
    ]
    plan = plan_training(
        loaded.entries,
        live(*jobs),
        inventory=Inventory(instance="i"),
        default_namespace="ml",
        now=NOW,
    )
    assert {key.name: why for key, why in plan.retire.items()} == {
        "t-1": "beyond historyLimit 1",
        "t-0": "beyond historyLimit 1",
    }


# --- inventory --------------------------------------------------------------------------


def test_the_inventory_answers_from_typed_documents() -> None:
    run_doc = build_status(
        kind="TrainingRun",
        name="t",
        namespace="ml",
        instance="i",
        source="t.yaml",
        source_commit="c",
        now="t",
        resources=["kubeflow.org/v1 PyTorchJob ml/t-1"],
        runs=[RunRecord(name="t-1", phase="Failed"), RunRecord(name="t-2", phase="Running")],
    )
    inventory = Inventory(instance="i", documents={run_doc.path: run_doc})
    ref = ObjectRef.spec("TrainingRun", "ml", "t")
    assert [r.name for r in inventory.runs(ref)] == ["t-1", "t-2"]
    assert inventory.finished_runs() == {"t-1"}
    assert inventory.applied_kinds() == {("kubeflow.org/v1", "PyTorchJob")}
    assert inventory.runs(ObjectRef.spec("TrainingRun", "ml", "other")) == ()


# --- revert proposals -------------------------------------------------------------------


def _rolled_back(*, transition: str | None) -> Decision:
    state = RolloutState("b", "a", RolloutPhase.ROLLED_BACK, reason="failed analysis")
    return Decision(0, state, transition)


@pytest.mark.parametrize(
    ("on_failure", "transition", "written", "proposed"),
    [
        pytest.param("revert", "canary rolled back", True, True, id="rolled-back-now"),
        pytest.param("revert", None, True, False, id="rolled-back-earlier"),
        pytest.param("revert", "canary rolled back", False, False, id="rollback-not-written"),
        pytest.param("hold", "canary rolled back", True, False, id="no-revert-asked"),
    ],
)
def test_a_revert_is_proposed_only_for_a_rollback_this_cycle(
    on_failure: str, transition: str | None, written: bool, proposed: bool
) -> None:
    spec = model("fraud", storageUri="s3://m/v2")
    spec["spec"]["rollout"] = {
        "strategy": "canary",
        "steps": [{"traffic": 10, "pause": "1s"}],
        "onFailure": on_failure,
    }
    loaded = load(spec, path="models/fraud.yaml")
    key = ObjectRef("serving.kserve.io", "InferenceService", "ml", "fraud")
    proposals = revert_proposals(
        loaded.entries,
        {key: _rolled_back(transition=transition)},
        written={key: {}} if written else {},
        last_commits={"models/fraud.yaml": "f" * 40},
        default_namespace="ml",
    )
    assert bool(proposals) is proposed
    if proposals:
        (proposal,) = proposals
        assert proposal.branch == "gitsync/revert/fraud"
        message = proposal.message(source_commit="a" * 40)
        assert message.startswith("Revert fraud to its spec before fffffff\n")
        assert f"Reverts: {'f' * 40}" in message


# --- analysis ---------------------------------------------------------------------------


class Scripted:
    """The answers of a metrics source, by query: a value, None, or an error."""

    def __init__(self, answers: Mapping[str, float | GitsyncError | None]) -> None:
        self._answers = answers

    def value(self, promql: str) -> float | None:
        answer = self._answers[promql]
        if isinstance(answer, GitsyncError):
            raise answer
        return answer


def _rollout() -> Rollout:
    return Rollout.model_validate(
        {
            "strategy": "canary",
            "steps": [{"traffic": 10, "pause": "1s"}],
            "analysis": {
                "interval": "1s",
                "metrics": [
                    {"name": "errors", "query": "errors", "max": 0.05},
                    {"name": "latency", "query": "latency", "max": 0.5},
                ],
                "provider": {"prometheus": {"address": "http://127.0.0.1:9"}},
            },
        }
    )


def test_a_provider_no_client_can_be_made_for_is_this_specs_error() -> None:
    state = RolloutState("b", "a", RolloutPhase.PROGRESSING)
    key = ObjectRef("serving.kserve.io", "InferenceService", "ml", "fraud")

    def refuse(address: str) -> Scripted:
        raise ConfigurationError(f"Prometheus address {address!r}: expected http(s)://host")

    analysis = measure(_rollout(), key=key, state=state, sources=refuse)
    assert analysis.measurements == ()
    (error,) = analysis.errors
    assert error.startswith("analysis provider: Prometheus address")


@pytest.mark.parametrize(
    ("errors", "latency", "verdicts", "problem"),
    [
        pytest.param(0.01, 0.1, [Verdict.PASS, Verdict.PASS], None, id="pass"),
        pytest.param(0.2, 0.1, [Verdict.FAIL, Verdict.PASS], None, id="fail"),
        pytest.param(None, 0.1, [Verdict.INCONCLUSIVE, Verdict.PASS], None, id="no-data"),
        pytest.param(
            MetricsUnavailableError("down"),
            0.1,
            [Verdict.INCONCLUSIVE, Verdict.PASS],
            None,
            id="prometheus-away-is-no-data",
        ),
        pytest.param(
            MetricQueryError("parse error"), 0.1, [], "errors", id="bad-query-holds-the-step"
        ),
        pytest.param(
            0.01, ConfigurationError("HTTP 401"), [], "latency", id="not-prometheus-holds"
        ),
    ],
)
def test_measurements_by_the_type_of_what_went_wrong(
    errors: float | GitsyncError | None,
    latency: float | GitsyncError | None,
    verdicts: list[Verdict],
    problem: str | None,
) -> None:
    state = RolloutState("b", "a", RolloutPhase.PROGRESSING)
    source = Scripted({"errors": errors, "latency": latency})
    key = ObjectRef("serving.kserve.io", "InferenceService", "ml", "fraud")
    analysis = measure(_rollout(), key=key, state=state, sources=lambda _address: source)
    assert [m.verdict for m in analysis.measurements] == verdicts
    if problem is None:
        assert analysis.errors == ()
    else:
        (error,) = analysis.errors
        assert error.startswith(f"analysis metric {problem!r}")


# --- kinds to observe -------------------------------------------------------------------


def test_kinds_to_observe_include_what_git_and_the_status_branch_name() -> None:
    kinds = kinds_to_observe(
        rendered=[("serving.kserve.io/v1beta1", "InferenceService")],
        manifests=[{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}],
        recorded={("v1", "ServiceAccount"), ("v1", "ConfigMap")},
    )
    assert kinds == [
        ("serving.kserve.io/v1beta1", "InferenceService"),
        ("v1", "ConfigMap"),
        ("v1", "ServiceAccount"),
    ]


# --- evaluation -------------------------------------------------------------------------


def test_the_evaluator_renders_again_only_what_changed_and_drops_the_denied() -> None:
    policies, problems = load_library()
    assert not problems
    context = RenderContext(instance="t", default_namespace="ml")
    evaluator = Evaluator()
    good = load(model("a", storageUri="s3://m/a"), path="a.yaml")
    first = evaluator.evaluate(good, policies=policies, context=context, blobs={"a.yaml": "b1"})
    again = evaluator.evaluate(good, policies=policies, context=context, blobs={"a.yaml": "b1"})
    assert first.desired[0] is again.desired[0]  # the same blob: not rendered again
    changed = evaluator.evaluate(good, policies=policies, context=context, blobs={"a.yaml": "b2"})
    assert changed.desired[0] is not first.desired[0]

    unlabelled = model("b", storageUri="s3://m/b")
    del unlabelled["metadata"]["labels"]  # require-team-label denies it
    both = load_tree(
        [
            load_file("a.yaml", yaml.safe_dump(model("a", storageUri="s3://m/a")).encode()),
            load_file("b.yaml", yaml.safe_dump(unlabelled).encode()),
        ],
        default_namespace="ml",
    )
    judged = evaluator.evaluate(
        both, policies=policies, context=context, blobs={"a.yaml": "b2", "b.yaml": "b3"}
    )
    assert [e.name for e in judged.loaded.entries] == ["a"]
    assert len(judged.desired) == 1
    assert "b.yaml" in judged.loaded.failed_paths
    assert any("require-team-label" in d.message for d in judged.loaded.diagnostics)


# --- the rollout journal, as the status tells it ------------------------------------------


def _journal(*numbers: int) -> Decision:
    state = RolloutState(
        "b", "a", RolloutPhase.PROGRESSING, journal=tuple((n, f"step {n}") for n in numbers)
    )
    return Decision(10, state, f"step {numbers[-1]}" if numbers else None)


def _told(told: int | None) -> StatusDocument:
    return build_status(
        kind="ModelDeployment",
        name="m",
        namespace="ml",
        instance="i",
        source="m.yaml",
        source_commit="c",
        now="t",
        rollout=RolloutInfo(phase="Progressing", traffic=10, step=1, told=told),
    )


@pytest.mark.parametrize(
    ("journal", "told", "expected"),
    [
        pytest.param((1, 2, 3), 1, ["step 2", "step 3"], id="a-lost-push-is-told-next-time"),
        pytest.param((1, 2, 3), 3, [], id="all-told"),
        pytest.param((1,), 5, ["step 1"], id="journal-restarted-with-the-object"),
        pytest.param((4, 5), None, ["step 5"], id="a-document-from-before-the-journal"),
    ],
)
def test_the_status_tells_what_the_branch_has_not(
    journal: tuple[int, ...], told: int | None, expected: list[str]
) -> None:
    assert list(_untold(_journal(*journal), _told(told))) == expected
