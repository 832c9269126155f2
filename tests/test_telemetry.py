"""Figures derived from a finished cycle's report, and their exposition, as tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitsync.analysis import Analysis
from gitsync.clients.git import Author, Revision
from gitsync.diff import Action, Change, ChangeSet
from gitsync.metrics import Metrics
from gitsync.reconciler import CycleReport
from gitsync.result import CycleResult
from gitsync.rollout import Measurement, Verdict
from gitsync.status_document import Phase, RolloutInfo, StatusDocument
from gitsync.telemetry import CycleFigures, RolloutFigure, figures
from gitsync.types import ObjectRef

COMMIT = "c0ffee" + "0" * 34
REVISION = Revision(COMMIT, "f" * 40, Author("a", "a@x"), datetime(2026, 1, 1, tzinfo=UTC), "m")
FRAUD = ObjectRef("serving.kserve.io", "InferenceService", "ml", "fraud")


def status(name: str, phase: Phase, *, step: int | None = None) -> StatusDocument:
    return StatusDocument(
        kind="ModelDeployment",
        name=name,
        namespace="ml",
        source=f"models/{name}.yaml",
        source_commit=COMMIT,
        phase=phase,
        message="",
        conditions=(),
        rollout=None
        if step is None
        else RolloutInfo(phase="Progressing", traffic=20 * (step + 1), step=step),
    )


def report(**fields: Any) -> CycleReport:
    defaults: dict[str, Any] = {
        "cycle_id": "c1",
        "revision": REVISION,
        "changes": ChangeSet(),
        "diagnostics": (),
        "statuses": (),
        "status_commit": None,
        "result": CycleResult.succeeded(),
    }
    return CycleReport(**{**defaults, **fields})


CHANGES = ChangeSet(
    (
        Change(FRAUD, Action.CREATED),
        Change(ObjectRef("", "ServiceAccount", "ml", "sa"), Action.UNCHANGED),
        Change(ObjectRef("", "ConfigMap", "ml", "c"), Action.CONFIGURED, error="HTTP 422"),
    )
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            report(changes=CHANGES, statuses=(status("fraud", Phase.HEALTHY, step=1),)),
            {
                "objects": {
                    ("created", False): 1,
                    ("unchanged", False): 1,
                    ("configured", True): 1,
                },
                "phases": {"Healthy": 1},
                "rollouts": (RolloutFigure("ml", "fraud", step=1, traffic=40),),
                "revision": COMMIT,
            },
            id="a-cycle-that-applied",
        ),
        pytest.param(
            report(result=CycleResult.succeeded(), skipped=True),
            {"objects": {}, "phases": None, "rollouts": None, "revision": COMMIT},
            id="skipped-keeps-the-state",
        ),
        pytest.param(
            report(result=CycleResult.requeue("apiserver away")),
            {"objects": {}, "phases": None, "rollouts": None, "revision": None},
            id="cut-short-before-statuses-says-nothing",
        ),
        pytest.param(
            report(
                result=CycleResult.requeue("one write failed"),
                statuses=(status("a", Phase.HEALTHY), status("b", Phase.INVALID)),
            ),
            {
                "objects": {},
                "phases": {"Healthy": 1, "Invalid": 1},
                "rollouts": (),
                "revision": None,
            },
            id="failed-with-statuses-tells-them-but-applied-nothing",
        ),
        pytest.param(
            report(statuses=()),
            {"objects": {}, "phases": {}, "rollouts": (), "revision": COMMIT},
            id="no-specs-at-all",
        ),
    ],
)
def test_figures(given: CycleReport, expected: dict[str, object]) -> None:
    figured: CycleFigures = figures(given)
    assert figured.objects == expected["objects"]
    assert figured.applied_revision == expected["revision"]
    if expected["phases"] is None:
        assert figured.specs is None
        return
    assert figured.specs is not None
    nonzero = {phase: n for (_, phase), n in figured.specs.phases.items() if n}
    assert nonzero == expected["phases"]
    # Every phase of every kind seen is there, zeros included.
    kinds = {kind for kind, _ in figured.specs.phases}
    assert len(figured.specs.phases) == len(kinds) * len(Phase)
    assert figured.specs.rollouts == expected["rollouts"]


def test_analysis_measurements_are_counted_by_model_metric_and_verdict() -> None:
    analyses = {
        FRAUD: Analysis(
            measurements=(
                Measurement("error-rate", 0.2, Verdict.FAIL, "> 0.01"),
                Measurement("latency", None, Verdict.INCONCLUSIVE, "<= 0.5"),
            )
        )
    }
    figured = figures(report(analyses=analyses))
    assert figured.measurements == {
        ("ml", "fraud", "error-rate", "fail"): 1,
        ("ml", "fraud", "latency", "inconclusive"): 1,
    }


def test_state_is_replaced_whole_and_kept_through_skipped_cycles() -> None:
    metrics = Metrics()
    metrics.record_cycle(
        report(statuses=(status("fraud", Phase.PROGRESSING, step=0), status("b", Phase.HEALTHY)))
    )
    metrics.record_cycle(report(skipped=True, statuses=()))
    first = scrape(metrics)
    assert first["gitsync_rollout_canary_traffic_percent"] == {
        (("name", "fraud"), ("namespace", "ml")): 20
    }
    metrics.record_cycle(report(statuses=(status("b", Phase.HEALTHY),)))
    second = scrape(metrics)
    # The rollout's spec is gone: so are its gauges, at once.
    assert second.get("gitsync_rollout_canary_traffic_percent", {}) == {}
    assert second["gitsync_specs"][(("kind", "ModelDeployment"), ("phase", "Progressing"))] == 0
    assert second["gitsync_cycles_total"] == {(("outcome", "Succeeded"),): 3}
    assert second["gitsync_last_applied_revision_info"] == {(("revision", COMMIT),): 1}


def scrape(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found
