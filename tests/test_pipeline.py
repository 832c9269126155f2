"""The pipeline's decisions as tables: which run passes its gates, which is chosen,
and when a model takes what its upstream serves."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
import yaml
from pydantic import ValidationError

from gitsync.loading import load_file, load_tree
from gitsync.pipeline import (
    Answer,
    Candidate,
    Question,
    choose_run,
    decide_promotion,
    gate_questions,
    judge_run,
    remembered,
    scores_of,
    with_answers,
)
from gitsync.specs import ModelDeployment
from gitsync.specs.pipeline import MetricGate, RunSelection, Upstream
from gitsync.status_document import (
    Condition,
    ModelInfo,
    Phase,
    RolloutInfo,
    Score,
    StatusDocument,
)
from gitsync.types import ObjectRef

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def run(name: str, completed: str, **metrics: float) -> Candidate:
    return Candidate(
        run=name,
        output_uri=f"s3://models/{name}",
        completion_time=completed,
        source_commit="c0ffee",
        metrics=metrics,
    )


ACCURACY = MetricGate(metric="accuracy", min=0.92)
LOSS = MetricGate(metric="loss", max=0.3)
OLD = run("r-old", "2026-11-30T10:00:00Z", accuracy=0.95, loss=0.2)
MID = run("r-mid", "2026-11-30T11:00:00Z", accuracy=0.97, loss=0.25)
NEW = run("r-new", "2026-11-30T12:00:00Z", accuracy=0.90, loss=0.1)
UNREPORTED = run("r-bare", "2026-11-30T13:00:00Z")


@pytest.mark.parametrize(
    ("candidate", "gates", "passed", "evidence"),
    [
        pytest.param(OLD, [], True, (), id="no-gates"),
        pytest.param(OLD, [ACCURACY], True, ("accuracy 0.95 >= 0.92",), id="above-min"),
        pytest.param(NEW, [ACCURACY], False, ("accuracy 0.9 < min 0.92",), id="below-min"),
        pytest.param(
            MID, [ACCURACY, LOSS], True, ("accuracy 0.97 >= 0.92", "loss 0.25 <= 0.3"), id="both"
        ),
        pytest.param(
            run("r", "t", loss=0.5), [LOSS], False, ("loss 0.5 > max 0.3",), id="above-max"
        ),
        pytest.param(
            UNREPORTED, [ACCURACY], False, ("accuracy not reported: fails",), id="missing"
        ),
        pytest.param(
            run("r", "t", accuracy=0.92), [ACCURACY], True, ("accuracy 0.92 >= 0.92",), id="edge"
        ),
        pytest.param(
            run("r", "t", accuracy=0.5),
            [MetricGate(metric="accuracy", min=0.4, max=0.6)],
            True,
            ("accuracy 0.5 >= 0.4 and <= 0.6",),
            id="band",
        ),
    ],
)
def test_judge_run(
    candidate: Candidate, gates: list[MetricGate], passed: bool, evidence: tuple[str, ...]
) -> None:
    result = judge_run(candidate, gates)
    assert (result.passed, result.evidence) == (passed, evidence)


@pytest.mark.parametrize(
    ("selection", "gates", "candidates", "chosen"),
    [
        pytest.param(RunSelection(), [], [OLD, NEW, MID], "r-new", id="latest"),
        pytest.param(RunSelection(), [ACCURACY], [OLD, NEW, MID], "r-mid", id="latest-passing"),
        pytest.param(
            RunSelection(by="best", metric="accuracy"), [], [OLD, NEW, MID], "r-mid", id="best-max"
        ),
        pytest.param(
            RunSelection(by="best", metric="loss", order="min"),
            [],
            [OLD, NEW, MID],
            "r-new",
            id="best-min",
        ),
        pytest.param(
            RunSelection(by="best", metric="loss", order="min"),
            [ACCURACY],
            [OLD, NEW, MID],
            "r-old",
            id="best-among-passing",
        ),
        pytest.param(
            RunSelection(by="best", metric="accuracy"),
            [],
            [UNREPORTED, OLD],
            "r-old",
            id="best-skips-unranked",
        ),
        pytest.param(
            RunSelection(by="best", metric="accuracy"),
            [],
            [
                run("a", "2026-01-01T00:00:00Z", accuracy=0.9),
                run("b", "2026-01-02T00:00:00Z", accuracy=0.9),
            ],
            "b",
            id="tie-goes-to-newer",
        ),
        pytest.param(RunSelection(), [ACCURACY], [NEW, UNREPORTED], None, id="none-passes"),
        pytest.param(RunSelection(), [], [], None, id="no-runs"),
    ],
)
def test_choose_run(
    selection: RunSelection,
    gates: list[MetricGate],
    candidates: list[Candidate],
    chosen: str | None,
) -> None:
    choice = choose_run(candidates, selection=selection, gates=gates)
    assert (choice.chosen.run if choice.chosen else None) == chosen
    assert [j.run for j in choice.judged] == [
        c.run for c in sorted(candidates, key=lambda c: c.completion_time, reverse=True)
    ]


def test_a_failed_gate_says_why_with_the_newest_evidence() -> None:
    choice = choose_run(
        [OLD, NEW], selection=RunSelection(), gates=[MetricGate(metric="accuracy", min=0.99)]
    )
    assert choice.chosen is None
    assert choice.reason == "no run passes its gates (newest, r-new: accuracy 0.9 < min 0.99)"
    assert choose_run([], selection=RunSelection(), gates=[]).reason == (
        "no Succeeded run with an output yet"
    )
    assert choose_run([OLD], selection=RunSelection(), gates=[ACCURACY]).reason == (
        "run r-old passed: accuracy 0.95 >= 0.92"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"by": "best"}, "needs the metric", id="best-without-metric"),
        pytest.param({"metric": "accuracy"}, "only with by: best", id="metric-without-best"),
    ],
)
def test_selection_is_checked(data: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RunSelection.model_validate(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"metric": "accuracy"}, "needs min or max", id="no-bound"),
        pytest.param({"metric": "a", "min": 2, "max": 1}, "above max", id="inverted"),
        pytest.param({"metric": "accuracy", "minimum": 1}, "Extra inputs", id="unknown-field"),
    ],
)
def test_gate_is_checked(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MetricGate.model_validate(data)


PROMETHEUS = {"prometheus": {"address": "http://prometheus:9090"}}
AUC = MetricGate.model_validate(
    {
        "metric": "auc",
        "min": 0.8,
        "query": 'max(eval_auc{job_name="{{run}}", namespace="{{ namespace }}"})',
        "provider": PROMETHEUS,
    }
)
FRAUD_TRAIN = ObjectRef.spec("TrainingRun", "ml-training", "fraud-train")


def asked(run: str) -> Question:
    promql = f'max(eval_auc{{job_name="{run}", namespace="ml-training"}})'
    return Question(address="http://prometheus:9090", promql=promql)


def test_a_queried_gate_asks_one_question_a_run() -> None:
    assert gate_questions([OLD, MID], [ACCURACY, AUC], training_run=FRAUD_TRAIN) == {
        asked("r-old"),
        asked("r-mid"),
    }
    assert gate_questions([OLD, MID], [ACCURACY], training_run=FRAUD_TRAIN) == set()


@pytest.mark.parametrize(
    ("answer", "passed", "evidence"),
    [
        pytest.param(Answer(0.85), True, ("auc 0.85 >= 0.8",), id="answered-above"),
        pytest.param(Answer(0.7), False, ("auc 0.7 < min 0.8",), id="answered-below"),
        pytest.param(Answer(None), False, ("auc no data: fails",), id="no-data"),
        pytest.param(
            Answer(None, error="Prometheus unreachable"),
            False,
            ("auc query failed (Prometheus unreachable): fails",),
            id="error",
        ),
        pytest.param(None, False, ("auc no data: fails",), id="not-answered"),
    ],
)
def test_a_queried_gate_is_judged_by_its_answer(
    answer: Answer | None, passed: bool, evidence: tuple[str, ...]
) -> None:
    # The run reported an auc of its own: the gate's query, not the report, decides.
    candidate = run("r-old", "2026-11-30T10:00:00Z", auc=0.99)
    answers = {} if answer is None else {asked("r-old"): answer}
    judged = judge_run(with_answers(candidate, [AUC], answers, training_run=FRAUD_TRAIN), [AUC])
    assert (judged.passed, judged.evidence) == (passed, evidence)


def test_scores_are_recorded_and_answer_their_questions_again() -> None:
    answers = {asked("r-old"): Answer(0.9), asked("r-mid"): Answer(None)}
    scores = scores_of([OLD, MID], [ACCURACY, AUC], answers, training_run=FRAUD_TRAIN)
    # Only a number is recorded: no data is asked again.
    assert scores == (
        Score(
            run="r-old",
            metric="auc",
            value=0.9,
            query=asked("r-old").promql,
            address="http://prometheus:9090",
        ),
    )
    questions = gate_questions([OLD, MID], [AUC], training_run=FRAUD_TRAIN)
    assert remembered(questions, scores) == {asked("r-old"): Answer(0.9)}
    # A score of another Prometheus, or of another query, answers nothing.
    other = replace(scores[0], address="http://other:9090")
    assert remembered(questions, [other]) == {}


def test_a_recorded_score_with_credentials_matches_its_question_redacted() -> None:
    secret = Question(address="https://bob:s3cret@prom.example", promql="up")
    (score,) = scores_of(
        [OLD],
        [
            MetricGate.model_validate(
                {
                    "metric": "up",
                    "min": 0,
                    "query": "up",
                    "provider": {"prometheus": {"address": secret.address}},
                }
            )
        ],
        {secret: Answer(1.0)},
        training_run=FRAUD_TRAIN,
    )
    assert score.address == "https://***@prom.example"
    assert remembered([secret], [score]) == {secret: Answer(1.0)}


def test_best_ranks_by_a_queried_metric() -> None:
    answers = {
        asked("r-old"): Answer(0.9),
        asked("r-mid"): Answer(0.82),
        asked("r-new"): Answer(0.95),
    }
    candidates = [
        with_answers(c, [AUC], answers, training_run=FRAUD_TRAIN) for c in (OLD, MID, NEW)
    ]
    choice = choose_run(
        candidates, selection=RunSelection(by="best", metric="auc"), gates=[AUC, ACCURACY]
    )
    # r-new has the best auc but fails the accuracy gate.
    assert choice.chosen is not None and choice.chosen.run == "r-old"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            {"metric": "auc", "min": 1, "query": "up"}, "go together", id="query-without-provider"
        ),
        pytest.param(
            {"metric": "auc", "min": 1, "provider": PROMETHEUS}, "go together", id="provider-alone"
        ),
        pytest.param(
            {
                "metric": "auc",
                "min": 1,
                "query": "up",
                "provider": {"prometheus": {"address": "p:9"}},
            },
            "should match pattern",
            id="bad-address",
        ),
    ],
)
def test_a_queried_gate_is_checked(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MetricGate.model_validate(data)


def staging(
    *,
    phase: Phase = Phase.HEALTHY,
    ready: str = "True",
    ready_since: str = "2026-12-01T10:00:00Z",
    served_since: str | None = "2026-12-01T10:30:00Z",
    storage_uri: str | None = "s3://models/r-mid",
    rollout: str | None = None,
) -> StatusDocument:
    return StatusDocument(
        kind="ModelDeployment",
        name="fraud",
        namespace="ml-staging",
        source="specs/staging/fraud.yaml",
        source_commit="abc1234",
        phase=phase,
        message="",
        conditions=(
            Condition(
                type="Ready",
                status=ready,  # type: ignore[arg-type]
                reason="Ready",
                message="",
                last_transition_time=ready_since,
            ),
        ),
        model=ModelInfo(format="sklearn", storage_uri=storage_uri, served_since=served_since),
        rollout=RolloutInfo(phase=rollout, traffic=10, step=1) if rollout else None,
    )


@pytest.mark.parametrize(
    ("document", "hold", "take", "waiting"),
    [
        pytest.param(staging(), "1h", "s3://models/r-mid", None, id="held-long-enough"),
        pytest.param(
            staging(),
            "2h",
            None,
            "ModelDeployment ml-staging/fraud Ready since 2026-12-01T10:30:00Z; "
            "healthyFor 2h ends 2026-12-01T12:30:00Z",
            id="hold-counts-from-the-new-model",
        ),
        pytest.param(
            staging(served_since=None), "2h", "s3://models/r-mid", None, id="ready-since-only"
        ),
        pytest.param(staging(), "0s", "s3://models/r-mid", None, id="no-hold"),
        pytest.param(
            staging(phase=Phase.DEGRADED),
            "0s",
            None,
            "ModelDeployment ml-staging/fraud is Degraded, not Healthy",
            id="degraded",
        ),
        pytest.param(
            staging(ready="False"),
            "0s",
            None,
            "ModelDeployment ml-staging/fraud is not Ready",
            id="not-ready",
        ),
        pytest.param(
            staging(rollout="Progressing"),
            "0s",
            None,
            "ModelDeployment ml-staging/fraud is mid-rollout",
            id="mid-rollout",
        ),
        pytest.param(
            staging(rollout="RolledBack"),
            "0s",
            None,
            "ModelDeployment ml-staging/fraud rolled back its last rollout",
            id="failed-analysis-never-promotes",
        ),
        pytest.param(staging(rollout="Promoted"), "0s", "s3://models/r-mid", None, id="promoted"),
        pytest.param(
            staging(storage_uri=None),
            "0s",
            None,
            "ModelDeployment ml-staging/fraud serves no model yet",
            id="serves-nothing",
        ),
        pytest.param(None, "0s", None, "no status of fraud yet", id="no-document"),
    ],
)
def test_decide_promotion(
    document: StatusDocument | None, hold: str, take: str | None, waiting: str | None
) -> None:
    decision = decide_promotion(
        Upstream.model_validate({"name": "fraud", "healthyFor": hold}), document, now=NOW
    )
    assert (decision.take, decision.waiting) == (take, waiting)
    if waiting and "healthyFor" in waiting:
        assert decision.due == datetime(2026, 12, 1, 12, 30, tzinfo=UTC)


def _loaded(*documents: dict[str, object]) -> list[str]:
    content = yaml.safe_dump_all(list(documents)).encode()
    return [
        str(d)
        for d in load_tree([load_file("p.yaml", content)], default_namespace="ml").diagnostics
    ]


def _model(name: str, **source: object) -> dict[str, object]:
    return {
        "apiVersion": "gitsync.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {"model": {"format": "sklearn", **source}},
    }


def _run(name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "gitsync.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {"framework": "pytorch", "image": "train:1", **spec},
    }


STAGING = _model("staging", fromTrainingRun="train")
TRAIN = _run("train", output="s3://m/{run}")


@pytest.mark.parametrize(
    ("documents", "expected"),
    [
        pytest.param(
            [STAGING, TRAIN, _model("prod", fromModelDeployment={"name": "staging"})],
            [],
            id="a-whole-chain",
        ),
        pytest.param(
            [_model("m", fromTrainingRun="trian"), TRAIN],
            [
                "spec.model.fromTrainingRun: no TrainingRun ml/trian in the repo; "
                "did you mean 'train'?"
            ],
            id="no-such-run",
        ),
        pytest.param(
            [STAGING, _run("train")],
            ["spec.model.fromTrainingRun: TrainingRun ml/train writes no output (spec.output)"],
            id="run-without-output",
        ),
        pytest.param(
            [_model("prod", fromModelDeployment={"name": "stagin"}), STAGING, TRAIN],
            [
                "spec.model.fromModelDeployment.name: no ModelDeployment ml/stagin in the repo; "
                "did you mean 'staging'?"
            ],
            id="no-such-upstream",
        ),
        pytest.param(
            [
                _model("a", fromModelDeployment={"name": "b"}),
                _model("b", fromModelDeployment={"name": "a"}),
            ],
            [
                "spec.model.fromModelDeployment.name: promotion from ModelDeployment ml/b "
                "leads back to ModelDeployment ml/a",
                "spec.model.fromModelDeployment.name: promotion from ModelDeployment ml/a "
                "leads back to ModelDeployment ml/b",
            ],
            id="a-cycle",
        ),
        pytest.param(
            [_model("self", fromModelDeployment={"name": "self"})],
            ["promotion from ModelDeployment ml/self leads back to ModelDeployment ml/self"],
            id="itself",
        ),
        pytest.param(
            [STAGING, {**TRAIN, "spec": {"framework": "pytorch"}}],
            ["p.yaml:"],  # the broken run's own error, and nothing about the model
            id="a-broken-run-is-its-own-error",
        ),
    ],
)
def test_broken_references_are_reported_at_the_model(
    documents: list[dict[str, object]], expected: list[str]
) -> None:
    found = _loaded(*documents)
    assert len(found) == len(expected), found
    for message, part in zip(sorted(found), sorted(expected), strict=True):
        assert part in message, message


@pytest.mark.parametrize(
    ("source", "words"),
    [
        pytest.param(
            {"fromTrainingRun": "t"},
            "from the latest Succeeded run of TrainingRun `t`",
            id="latest",
        ),
        pytest.param(
            {
                "fromTrainingRun": "t",
                "select": {"by": "best", "metric": "accuracy"},
                "gates": [{"metric": "accuracy", "min": 0.92}, {"metric": "loss", "max": 0.3}],
            },
            "from the best (by accuracy) Succeeded run of TrainingRun `t` that passes "
            "accuracy >= 0.92, loss <= 0.3",
            id="best-gated",
        ),
        pytest.param(
            {"fromModelDeployment": {"name": "staging", "healthyFor": "1h"}},
            "what ModelDeployment `staging` serves, once Healthy for 1h",
            id="promoted",
        ),
    ],
)
def test_a_plan_says_where_a_model_comes_from(source: dict[str, object], words: str) -> None:
    model = ModelDeployment.model_validate(_model("m", **source))
    assert model.spec.serves() == words


def test_a_follower_reads_only_other_instances_upstreams() -> None:
    from gitsync.training import followed  # noqa: PLC0415

    def entry(name: str, source: dict[str, object]) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "gitsync.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": name, "namespace": "ml"},
                "spec": {"model": {"format": "sklearn", "fromModelDeployment": source}},
            }
        )

    content = "---\n".join(
        [
            entry("local", {"name": "staging"}),
            entry("own", {"name": "staging", "namespace": "ml", "instance": "prod"}),
            entry("other", {"name": "fraud", "namespace": "ml-staging", "instance": "staging"}),
        ]
    )
    loaded = load_file("models.yaml", content.encode())
    assert loaded.diagnostics == ()
    assert followed(loaded.entries, default_namespace="ml", instance="prod") == frozenset(
        {"status/staging/ml-staging/ModelDeployment/fraud.yaml"}
    )
