"""The dashboard's pages as data (gitsync.board), by tables."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gitsync.board import (
    BoardData,
    Filters,
    age,
    cycles_page,
    key_of,
    overview_page,
    path_of_key,
    pipelines_page,
    spec_page,
)
from gitsync.health import Health, HealthReport
from gitsync.history import SpecCommit, StatusCommit
from gitsync.status import build_status
from gitsync.status_document import (
    Lineage,
    ModelInfo,
    RolloutInfo,
    RunRecord,
    StatusDocument,
    Traffic,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def doc(
    name: str,
    *,
    kind: str = "ModelDeployment",
    namespace: str = "ml",
    instance: str = "prod",
    health: Health = Health.HEALTHY,
    message: str = "fine",
    source: str | None = None,
    **parts: object,
) -> StatusDocument:
    return build_status(
        kind=kind,
        name=name,
        namespace=namespace,
        instance=instance,
        source=source or f"{name}.yaml",
        source_commit="c" * 40,
        now="2026-12-01T12:00:00Z",
        health=HealthReport(health, message),
        **parts,  # type: ignore[arg-type]
    )


def board(*docs: StatusDocument, **fields: object) -> BoardData:
    return BoardData(
        status_commit="s" * 40,
        spec_commit="p" * 40,
        documents={d.path: d for d in docs},
        **fields,  # type: ignore[arg-type]
    )


FRAUD = doc(
    "fraud",
    model=ModelInfo(
        storage_uri="s3://models/fraud/v8",
        traffic=(Traffic(revision="fraud-2", percent=20, latest=True),),
    ),
)
CHURN = doc("churn", namespace="ml-b", health=Health.DEGRADED, message="crash loop")
TRAIN = doc("fraud-train", kind="TrainingRun", namespace="ml-t", health=Health.RUNNING)
LABELS = {
    "status/ml/ModelDeployment/fraud.yaml": {"team": "risk"},
    "status/ml-b/ModelDeployment/churn.yaml": {"team": "growth"},
}


@pytest.mark.parametrize(
    ("filters", "names"),
    [
        (Filters(), ["churn", "fraud", "fraud-train"]),
        (Filters(namespace="ml"), ["fraud"]),
        (Filters(team="growth"), ["churn"]),
        (Filters(kind="TrainingRun"), ["fraud-train"]),
        (Filters(phase="Degraded"), ["churn"]),
        (Filters(q="FRAUD"), ["fraud", "fraud-train"]),
        (Filters(q="s3://models/fraud/v8"), ["fraud"]),
        (Filters(q="crash"), ["churn"]),
        (Filters(namespace="ml", phase="Degraded"), []),
        (Filters(instance="staging"), []),
    ],
)
def test_filters_keep_the_specs_they_name(filters: Filters, names: list[str]) -> None:
    page = overview_page(board(FRAUD, CHURN, TRAIN, labels=LABELS), filters)
    assert sorted(row.name for row in page.rows) == names
    assert page.total == 3


def test_facets_count_every_spec_whatever_the_filter() -> None:
    page = overview_page(board(FRAUD, CHURN, TRAIN, labels=LABELS), Filters(namespace="ml"))
    facets = {facet.name: dict(facet.choices) for facet in page.facets}
    assert facets["namespace"] == {"ml": 1, "ml-b": 1, "ml-t": 1}
    assert facets["team"] == {"growth": 1, "risk": 1}  # the run has no label: no choice
    assert facets["phase"] == {"Degraded": 1, "Healthy": 1, "Running": 1}
    assert dict(page.phases) == facets["phase"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, Filters()),
        ({"namespace": [" ml "], "q": ["a", "b"]}, Filters(namespace="ml", q="a")),
        ({"q": ["x" * 500]}, Filters(q="x" * 200)),
        ({"unknown": ["1"]}, Filters()),
    ],
)
def test_filters_from_a_query_string(query: dict[str, list[str]], expected: Filters) -> None:
    assert Filters.of(query) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (7200, "2h"), (90000, "1d"), (-5, "0s")],
)
def test_age_in_the_largest_whole_unit(seconds: int, text: str) -> None:
    assert age(T0 - timedelta(seconds=seconds), T0) == text


def test_age_of_nothing() -> None:
    assert age(None, T0) == "-"


def test_row_shows_version_traffic_team_and_the_last_spec_commit() -> None:
    commits = [
        SpecCommit("n" * 40, "Ann", T0, "fraud v8", frozenset({"fraud.yaml"})),
        SpecCommit("o" * 40, "Bob", T0 - timedelta(days=1), "fraud v7", frozenset({"fraud.yaml"})),
    ]
    (row,) = overview_page(board(FRAUD, spec_commits=commits, labels=LABELS), Filters()).rows
    assert (row.version, row.team, row.phase) == ("s3://models/fraud/v8", "risk", "Healthy")
    assert [(s.revision, s.percent, s.latest) for s in row.traffic] == [("fraud-2", 20, True)]
    assert (row.change.author, row.change.summary, row.change.short) == (
        "Ann",
        "fraud v8",
        "nnnnnnn",
    )


def test_without_history_the_last_change_is_the_documents_commit() -> None:
    (row,) = overview_page(board(FRAUD), Filters()).rows
    assert (row.change.commit, row.change.author, row.change.at) == ("c" * 40, None, None)


@pytest.mark.parametrize(
    ("model", "run", "version"),
    [
        (
            ModelInfo(storage_uri="https://u:pw@host/m?X-Amz-Signature=abc"),
            None,
            "https://***@host/m?X-Amz-Signature=***",
        ),
        (ModelInfo(from_training_run=Lineage(name="t", run="t-1234")), None, "run t-1234"),
        (ModelInfo(from_training_run=Lineage(name="t")), None, "from t"),
        (None, RunRecord(name="t-99", phase="Running"), "t-99"),
        (None, None, ""),
    ],
)
def test_version_column(model: ModelInfo | None, run: RunRecord | None, version: str) -> None:
    (row,) = overview_page(board(doc("x", model=model, run=run)), Filters()).rows
    assert row.version == version


def test_keys_and_paths_round_trip_and_unknown_keys_have_no_page() -> None:
    assert key_of(FRAUD.path) == "prod/ml/ModelDeployment/fraud"
    assert path_of_key(key_of(FRAUD.path)) == FRAUD.path
    data = board(FRAUD)
    assert spec_page(data, "prod/ml/ModelDeployment/nope") is None
    assert spec_page(data, "../../etc/passwd") is None


def _rollout(phase: str, traffic: int, step: int, story: str, *evidence: str) -> RolloutInfo:
    return RolloutInfo(phase=phase, traffic=traffic, step=step, story=story, evidence=evidence)


def _at(doc_: StatusDocument, minutes: int, commit: str) -> StatusCommit:
    return StatusCommit(
        commit=commit * 40,
        at=T0 + timedelta(minutes=minutes),
        summary=f"status {commit}",
        source_commit="c" * 40,
        documents={doc_.path: doc_},
    )


def test_the_rollout_timeline_has_one_step_per_change_newest_first() -> None:
    def split(canary: int) -> ModelInfo:
        return ModelInfo(
            traffic=(
                Traffic(revision="r2", percent=canary, latest=True),
                Traffic(revision="r1", percent=100 - canary, latest=False),
            )
        )

    started = replace(
        FRAUD, rollout=_rollout("Progressing", 20, 0, "canary started"), model=split(20)
    )
    again = replace(started, message="same rollout, another message")
    moved = replace(
        started, rollout=_rollout("Progressing", 60, 1, "20% -> 60%", "err 0 <= 1"), model=split(60)
    )
    back = replace(
        moved, rollout=_rollout("RolledBack", 0, 1, "rolled back", "err 5 > 1"), model=split(0)
    )
    commits = [_at(back, 3, "d"), _at(moved, 2, "c"), _at(again, 1, "b"), _at(started, 0, "a")]
    page = spec_page(board(back, status_commits=commits), key_of(FRAUD.path))
    assert page is not None
    assert [(s.phase, s.traffic, s.story, s.evidence) for s in page.rollout_steps] == [
        ("RolledBack", 0, "rolled back", ("err 5 > 1",)),
        ("Progressing", 60, "20% -> 60%", ("err 0 <= 1",)),
        ("Progressing", 20, "canary started", ()),
    ]
    assert [[s.percent for s in p.segments] for p in page.traffic_history] == [
        [0, 100],
        [60, 40],
        [20, 80],
    ]
    assert [e.kind for e in page.events] == ["status"] * 4


def test_lineage_links_a_model_to_its_run_and_the_run_to_its_models() -> None:
    served = doc(
        "fraud",
        model=ModelInfo(from_training_run=Lineage(name="fraud-train", run="fraud-train-1")),
    )
    other = doc(
        "other", instance="staging", model=ModelInfo(from_training_run=Lineage(name="fraud-train"))
    )
    data = board(served, other, TRAIN)
    model_page = spec_page(data, key_of(served.path))
    run_page = spec_page(data, key_of(TRAIN.path))
    assert model_page is not None and run_page is not None
    assert model_page.trained_by is not None
    assert model_page.trained_by.key == key_of(TRAIN.path)
    # Only the same instance's models: staging's is another cluster's.
    assert [link.label for link in run_page.feeds] == ["ModelDeployment ml/fraud"]


def test_a_runs_current_run_comes_first_once() -> None:
    current = RunRecord(name="t-2", phase="Running")
    older = RunRecord(name="t-1", phase="Succeeded")
    with_both = doc("t", kind="TrainingRun", run=current, runs=(older,))
    page = spec_page(board(with_both), key_of(with_both.path))
    assert page is not None
    assert [r.name for r in page.runs] == [r.name for r in with_both.runs]
    assert page.runs[0].name == "t-2"


def test_cycles_list_what_changed_and_what_is_blocked() -> None:
    bad = doc("churn", health=Health.DEGRADED, message="crash loop")
    commits = [_at(bad, 1, "b"), replace(_at(FRAUD, 0, "a"), removed=frozenset({"x"}))]
    page = cycles_page(board(FRAUD, bad, status_commits=commits))
    assert [row.summary for row in page.rows] == ["status b", "status a"]
    assert [(b.label, b.phase, b.problems) for b in page.rows[0].blocked] == [
        ("ModelDeployment ml/churn", "Degraded", ("crash loop",))
    ]
    assert page.rows[1].blocked == ()
    assert (page.rows[1].removed, page.more) == (1, 0)


@pytest.mark.parametrize(
    ("evidence", "charts"),
    [
        # Oldest step first in the chart; the bound scaled in with the values.
        (
            [("error-rate 0.001 <= 0.01",), ("error-rate 0.2 > 0.01",)],
            [("error-rate", "0.01", (0.001, 0.2), ((0.0, 39.84), (100.0, 8.0)), 38.4)],
        ),
        ([("error-rate no data (inconclusive)",)], []),
        (
            [("latency 0.3 vs stable 0.2 <= 0.5",)],
            [("latency", "0.5", (0.3,), ((50.0, 20.8),), 8.0)],
        ),
        ([("error-rate nan-ish <= x",)], []),
        ([("zero 0 <= 0",)], [("zero", "0", (0.0,), ((50.0, 40.0),), 40.0)]),
    ],
)
def test_analysis_charts_from_the_evidence(
    evidence: list[tuple[str, ...]], charts: list[tuple[object, ...]]
) -> None:
    commits = []
    for i, texts in enumerate(evidence):
        step = replace(FRAUD, rollout=_rollout("Progressing", 20, i, f"step {i}", *texts))
        commits.insert(0, _at(step, i, "abcdef"[i]))
    page = spec_page(board(FRAUD, status_commits=commits), key_of(FRAUD.path))
    assert page is not None
    assert [(c.metric, c.bound, c.values, c.points, c.bound_y) for c in page.charts] == charts


def test_pipelines_run_from_a_training_run_through_its_gate_to_production() -> None:
    staging = doc(
        "staging",
        model=ModelInfo(
            storage_uri="s3://m/fraud-train-1",
            from_training_run=Lineage(
                name="fraud-train", run="fraud-train-1", evidence=("accuracy 0.95 >= 0.92",)
            ),
        ),
    )
    production = doc(
        "production",
        health=Health.PENDING,
        message="waiting to promote: ModelDeployment ml/staging is mid-rollout",
        model=ModelInfo(
            from_training_run=Lineage(
                name="ModelDeployment ml/staging", promoted_from="ModelDeployment ml/staging"
            )
        ),
    )
    lone = doc("lone", model=ModelInfo(storage_uri="s3://m/fixed"))
    page = pipelines_page(board(staging, production, lone, TRAIN))
    (chain,) = page.chains
    assert [s.label for s in chain] == [
        "TrainingRun ml/fraud-train",
        "ModelDeployment ml/staging",
        "ModelDeployment ml/production",
    ]
    assert chain[1].serves == "s3://m/fraud-train-1 (run fraud-train-1)"
    assert chain[1].detail == "accuracy 0.95 >= 0.92"
    assert (chain[2].phase, chain[2].detail) == (
        "Pending",
        "waiting to promote: ModelDeployment ml/staging is mid-rollout",
    )


def test_a_pipeline_whose_run_has_no_status_yet_and_a_cycle_end() -> None:
    fed = doc("fed", model=ModelInfo(from_training_run=Lineage(name="nightly")))
    a = doc(
        "a",
        model=ModelInfo(from_training_run=Lineage(name="x", promoted_from="ModelDeployment ml/b")),
    )
    b = doc(
        "b",
        model=ModelInfo(from_training_run=Lineage(name="x", promoted_from="ModelDeployment ml/a")),
    )
    page = pipelines_page(board(fed, a, b))
    # A chain with no root (a cycle, which validate refuses) is not drawn at all.
    assert [[s.label for s in chain] for chain in page.chains] == [
        ["TrainingRun ml/nightly", "ModelDeployment ml/fed"]
    ]
    assert page.chains[0][0].detail == "no status yet"


def test_a_pipeline_crosses_instances_that_share_a_name() -> None:
    """Staging and production each have a ModelDeployment ml/fraud; production's
    follows staging's, and each chain stays with its own instance."""
    staging = doc(
        "fraud",
        instance="staging",
        model=ModelInfo(
            storage_uri="s3://m/fraud-train-1",
            from_training_run=Lineage(name="fraud-train", run="fraud-train-1"),
        ),
    )
    upstream = "ModelDeployment ml/fraud of instance staging"
    production = doc(
        "fraud",
        instance="production",
        model=ModelInfo(
            storage_uri="s3://m/fraud-train-1",
            from_training_run=Lineage(name=upstream, promoted_from=upstream),
        ),
    )
    train = doc("fraud-train", kind="TrainingRun", instance="staging")
    page = pipelines_page(board(staging, production, train))
    assert [[s.label for s in chain] for chain in page.chains] == [
        [
            "TrainingRun ml/fraud-train of instance staging",
            "ModelDeployment ml/fraud of instance staging",
            "ModelDeployment ml/fraud of instance production",
        ]
    ]
    assert [s.key for s in page.chains[0]] == [key_of(d.path) for d in (train, staging, production)]
