"""Status documents are deterministic, carry conditions, and tell the story in commits."""

from __future__ import annotations

import pytest
import yaml

from gitsync.diff import Action, Change
from gitsync.errors import ConfigurationError, Remedy
from gitsync.health import Health, HealthReport, assess
from gitsync.inventory import Inventory
from gitsync.loading import Diagnostic
from gitsync.status import (
    Phase,
    build_status,
    commit_message,
    dump_document,
    overview,
    parse_document,
    readme,
    run_record,
    status_path,
)
from gitsync.status_document import (
    ChildJobs,
    ModelInfo,
    RunRecord,
    StatusDocument,
    Traffic,
    TrainerProgress,
    check_instance,
    document_from_data,
    instance_of_path,
)
from gitsync.types import ObjectRef

KEY = ObjectRef("serving.kserve.io", "InferenceService", "ml", "fraud")
BASE = {
    "kind": "ModelDeployment",
    "name": "fraud",
    "namespace": "ml",
    "instance": "prod",
    "source": "models/fraud.yaml",
    "source_commit": "c" * 40,
}


def document(**fields: object) -> StatusDocument:
    """A previous status document as the branch would hold it (camelCase data)."""
    base = {
        "kind": "ModelDeployment",
        "name": "fraud",
        "namespace": "ml",
        "instance": "prod",
        "source": "models/fraud.yaml",
        "sourceCommit": "c" * 40,
        "phase": "Progressing",
        "message": "x",
        "conditions": [],
    }
    # A field given as None is left out, as an older gitsync left it out.
    parsed = document_from_data({k: v for k, v in {**base, **fields}.items() if v is not None})
    assert parsed is not None
    return parsed


def test_path_layout() -> None:
    path = status_path("ModelDeployment", "ml", "fraud", instance="prod")
    assert path == "status/prod/ml/ModelDeployment/fraud.yaml"
    assert document().path == path
    # Documents from before instances shared a branch name none and lie where they were.
    old = status_path("ModelDeployment", "ml", "fraud", instance="")
    assert old == "status/ml/ModelDeployment/fraud.yaml"
    assert document(instance=None).path == old
    assert instance_of_path(path) == "prod"
    assert instance_of_path(old) == ""
    assert instance_of_path("status/prod/README.md") is None
    assert instance_of_path("status/prod/notes/a/b/c.yaml") is None


@pytest.mark.parametrize("name", ["", "a/b", "-x", "x-", "README.md", "a" * 64, ".."])
def test_an_instance_needs_a_name_that_can_be_a_folder(name: str) -> None:
    with pytest.raises(ConfigurationError, match="instance name"):
        check_instance(name)


def test_invalid_spec_is_stalled_and_lists_errors() -> None:
    diagnostic = Diagnostic("models/fraud.yaml", 8, 5, "unknown field", field="spec.x")
    status = build_status(**BASE, now="t1", diagnostics=[diagnostic])
    assert status.phase is Phase.INVALID
    conditions = {c.type: c.status for c in status.conditions}
    # kstatus: Reconciling is absent rather than False; Healthy is not judged.
    assert conditions == {
        "Ready": "False",
        "Valid": "False",
        "Stalled": "True",
    }
    ready = status.conditions[0]
    assert ready.reason == "Invalid"
    assert ready.message.endswith(f"(revision {'c' * 12})")
    assert status.errors == ("models/fraud.yaml:8:5: spec.x: unknown field",)


def test_rejected_by_the_server_is_invalid_other_errors_degraded() -> None:
    for remedy, phase in ((Remedy.WAIT_FOR_COMMIT, Phase.INVALID), (Remedy.FAIL, Phase.DEGRADED)):
        change = Change(KEY, Action.CONFIGURED, error="nope", error_remedy=remedy)
        assert build_status(**BASE, now="t", change=change).phase is phase


def test_documents_are_byte_identical_when_nothing_changed() -> None:
    health = HealthReport(Health.HEALTHY, "serving fraud-predictor-00001")
    first = build_status(**BASE, now="t1", health=health)
    again = build_status(
        **BASE, now="t2", health=health, previous=parse_document(dump_document(first))
    )
    assert dump_document(first) == dump_document(again)


def test_transition_time_moves_only_when_the_condition_changes() -> None:
    progressing = build_status(**BASE, now="t1", health=HealthReport(Health.PROGRESSING))
    healthy = build_status(
        **BASE,
        now="t2",
        health=HealthReport(Health.HEALTHY),
        previous=parse_document(dump_document(progressing)),
    )
    times = {c.type: c.last_transition_time for c in healthy.conditions}
    # Reconciling went away with the progress; Valid and Applied did not change.
    assert times == {"Ready": "t2", "Valid": "t1", "Healthy": "t2"}
    before = {c.type for c in progressing.conditions}
    assert before == {"Ready", "Valid", "Healthy", "Reconciling"}


def test_ready_is_derived_from_the_first_condition_that_is_not_true() -> None:
    change = Change(
        KEY, Action.CONFIGURED, error="admission webhook said no", error_remedy=Remedy.FAIL
    )
    status = build_status(**BASE, now="t", change=change, health=HealthReport(Health.HEALTHY))
    by_type = {c.type: c for c in status.conditions}
    assert by_type["Applied"].status == "False"
    assert by_type["Ready"].status == "False"
    assert by_type["Ready"].reason == "ApplyFailed"
    assert by_type["Ready"].message.startswith("admission webhook said no")
    assert by_type["Stalled"].status == "True"
    assert "Reconciling" not in by_type


def test_run_history_keeps_the_latest_runs_and_finished_names() -> None:
    previous = document(
        kind="TrainingRun",
        runs=[{"name": "t-1", "phase": "Succeeded"}, {"name": "t-2", "phase": "Running"}],
    )
    status = build_status(
        **{**BASE, "kind": "TrainingRun"},
        now="t",
        previous=previous,
        health=HealthReport(Health.FAILED),
        run=RunRecord(name="t-2", phase="Failed"),
    )
    assert [r.name for r in status.runs] == ["t-2", "t-1"]
    inventory = Inventory(
        instance="prod", documents={status.path: parse_document(dump_document(status))}
    )
    assert inventory.finished_runs() == {"t-1", "t-2"}


def test_commit_message_tells_what_changed() -> None:
    before = {"status/prod/ml/ModelDeployment/fraud.yaml": document()}
    after = [build_status(**BASE, now="t", health=HealthReport(Health.HEALTHY, "serving r1"))]
    message = commit_message(
        before=before, after=after, removed=[], source_commit="c" * 40, instance="prod"
    )
    subject, blank, *rest = message.splitlines()
    assert subject == "gitsync status: 1 healthy [source ccccccc]"
    assert blank == ""
    assert "- ModelDeployment ml/fraud: Progressing -> Healthy: serving r1" in rest
    assert rest[-2:] == [f"Gitsync-Source-Commit: {'c' * 40}", "Gitsync-Instance: prod"]


def test_readme_table() -> None:
    status = build_status(
        **BASE,
        now="t",
        health=HealthReport(Health.HEALTHY, "ok"),
        model=ModelInfo(
            storage_uri="s3://m/v7", traffic=(Traffic(revision="r1", percent=100, latest=True),)
        ),
    )
    text = readme([status], instance="prod").decode()
    assert text.startswith("# gitsync status: prod\n")
    assert "| ml | ModelDeployment | [fraud](ml/ModelDeployment/fraud.yaml) | Healthy | " in text
    assert "s3://m/v7 | r1 100% |" in text


def test_the_overview_counts_each_instance_by_phase() -> None:
    text = overview(
        {"prod": [Phase.HEALTHY, Phase.HEALTHY, Phase.FAILED], "staging": []}, old_layout=2
    ).decode()
    assert "| [prod](prod/README.md) | 3 | 1 Failed, 2 Healthy |" in text
    assert "| [staging](staging/README.md) | 0 |  |" in text
    assert text.index("[prod]") < text.index("[staging]")
    assert "2 document(s) lie in the old layout" in text
    assert "old layout" not in overview({"prod": []}).decode()


def test_a_moved_traffic_split_is_the_subject() -> None:
    traffic = (
        Traffic(revision="m-2", percent=20, latest=True),
        Traffic(revision="m-1", percent=80, latest=False),
    )
    before = {
        "status/prod/ml/ModelDeployment/fraud.yaml": document(
            message="canary 20%",
            model={"traffic": [{"revision": "m-1", "percent": 100, "latest": True}]},
        )
    }
    after = build_status(
        **BASE,
        now="t",
        previous=before["status/prod/ml/ModelDeployment/fraud.yaml"],
        health=HealthReport(Health.PROGRESSING, "canary 20%"),
        model=ModelInfo(storage_uri="s3://m/v2", traffic=traffic),
    )
    message = commit_message(
        before=before, after=[after], removed=[], source_commit="c" * 40, instance="i"
    )
    assert message.splitlines()[0] == "fraud: traffic now m-2 20%, m-1 80% [source ccccccc]"


def test_a_document_reads_back_as_it_was_written() -> None:
    written = build_status(
        **BASE,
        now="t",
        health=HealthReport(Health.HEALTHY, "ok"),
        model=ModelInfo(storage_uri="s3://m/v1"),
    )
    content = dump_document(written)
    assert parse_document(content) == written
    assert content.startswith(
        b"kind: ModelDeployment\nname: fraud\nnamespace: ml\ninstance: prod\n"
    )
    assert b"storageUri: s3://m/v1" in content


@pytest.mark.parametrize(
    ("content", "readable"),
    [
        (b"kind: [unclosed", False),
        (b"- a list\n", False),
        (b"kind: ModelDeployment\n", False),  # required fields missing
        (b"", False),
    ],
)
def test_an_unreadable_document_counts_as_absent(content: bytes, readable: bool) -> None:
    assert (parse_document(content) is not None) is readable


def test_fields_a_newer_gitsync_adds_are_ignored() -> None:
    data = yaml.safe_load(dump_document(build_status(**BASE, now="t")))
    data["dashboardUrl"] = "https://example.test/fraud"
    parsed = parse_document(yaml.safe_dump(data).encode())
    assert parsed is not None
    assert parsed.name == "fraud"


def test_a_document_with_an_impossible_date_counts_as_absent() -> None:
    assert parse_document(b"kind: ModelDeployment\nname: 2001-02-30\n") is None


def test_a_trainjob_run_record_carries_its_child_jobs_and_trainer_status() -> None:
    """jobsStatus and trainerStatus are typed in the document, and survive a round trip;
    what the cluster sends that does not fit is dropped, not trusted."""
    job = {
        "kind": "TrainJob",
        "metadata": {"name": "ft-1", "creationTimestamp": "2026-03-01T10:00:00Z"},
        "spec": {"trainer": {"env": [{"name": "OUTPUT_URI", "value": "s3://m/ft-1"}]}},
        "status": {
            "conditions": [
                {
                    "type": "Complete",
                    "status": "True",
                    "reason": "AllJobsCompleted",
                    "message": "jobset completed successfully",
                    "lastTransitionTime": "2026-03-01T10:30:00Z",
                }
            ],
            "jobsStatus": [{"name": "node", "succeeded": 1, "active": "many"}, "garbage"],
            "trainerStatus": {
                "progressPercentage": 100,
                "metrics": [{"name": "accuracy", "value": "0.94"}, {"value": "no name"}],
                "lastUpdatedTime": "2026-03-01T10:29:59Z",
            },
        },
    }
    record = run_record("ft-1", assess(job), job)
    assert record.phase == "Succeeded" and record.output_uri == "s3://m/ft-1"
    assert (record.start_time, record.completion_time) == (
        "2026-03-01T10:00:00Z",
        "2026-03-01T10:30:00Z",
    )
    assert record.jobs_status == (ChildJobs(name="node", succeeded=1),)
    assert record.trainer_status == TrainerProgress(
        progress_percentage=100,
        metrics={"accuracy": "0.94"},
        last_updated_time="2026-03-01T10:29:59Z",
    )
    doc = StatusDocument(
        kind="TrainingRun",
        name="ft",
        namespace="ml",
        source="t.yaml",
        source_commit="0" * 40,
        phase=Phase.SUCCEEDED,
        message="",
        conditions=(),
        runs=(record,),
    )
    text = dump_document(doc)
    assert (
        b"trainerStatus:\n    progressPercentage: 100\n    metrics:\n      accuracy: '0.94'" in text
    )
    assert parse_document(text) == doc
