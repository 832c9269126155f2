"""Which Events a cycle tells: a table over what cycles report (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from gitsync.diff import Action, Change, ChangeSet
from gitsync.events import NOTE_LIMIT, EventType, Reason, bounded_note, cycle_events
from gitsync.render import (
    ANNOTATION_SOURCE_COMMIT,
    ANNOTATION_SOURCE_PATH,
    ANNOTATION_SPEC_KIND,
)
from gitsync.rollout import (
    STATE_ANNOTATION,
    Decision,
    Measurement,
    RolloutPhase,
    RolloutState,
    Verdict,
)
from gitsync.status_document import Condition, Phase, StatusDocument
from gitsync.types import ObjectRef

NOW = "2026-12-01T12:00:00Z"
EARLIER = "2026-12-01T11:00:00Z"
ISVC = ObjectRef("serving.kserve.io", "InferenceService", "ml", "fraud")


def obj(*, commit: str = "a" * 40, uid: str = "u-1", name: str = "fraud") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": uid,
            "annotations": {
                ANNOTATION_SOURCE_PATH: "models/fraud.yaml",
                ANNOTATION_SOURCE_COMMIT: commit,
                ANNOTATION_SPEC_KIND: "ModelDeployment",
            },
        },
    }


def change(action: Action, **settings: Any) -> Change:
    settings.setdefault("desired", obj(commit="b" * 40))
    return Change(ISVC, action, **settings)


def decision(
    phase: RolloutPhase, transition: str | None, *, traffic: int | None = 20, **state: Any
) -> Decision:
    return Decision(
        traffic, RolloutState("new", "old", phase, started_at=EARLIER, **state), transition
    )


def at(step: int, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` carrying the state of a canary at ``step``, as the live object does."""
    state = RolloutState("new", "old", RolloutPhase.PROGRESSING, step=step, started_at=EARLIER)
    metadata = body["metadata"]
    annotations = {**metadata["annotations"], STATE_ANNOTATION: state.to_annotation()}
    return {**body, "metadata": {**metadata, "annotations": annotations}}


def status(*, valid: str = "True", says: str = "y", errors: tuple[str, ...] = ()) -> StatusDocument:
    return StatusDocument(
        kind="ModelDeployment",
        name="fraud",
        namespace="ml",
        instance="default",
        source="models/fraud.yaml",
        source_commit="c" * 40,
        phase=Phase.INVALID if valid == "False" else Phase.HEALTHY,
        message="1 validation error(s)" if valid == "False" else "serving",
        conditions=(
            Condition(
                type="Valid", status=valid, reason="x", message=says, last_transition_time=NOW
            ),
        ),
        errors=errors,
    )


FAILED = Measurement("error-rate", 0.3, Verdict.FAIL, "> 0.05")
CASES: list[tuple[str, dict[str, Any], list[tuple[Reason, str]]]] = [
    ("a no-op cycle tells nothing", {"changes": [change(Action.UNCHANGED, live=obj())]}, []),
    (
        "created, with its file and commit",
        {"changes": [change(Action.CREATED)], "objects": {ISVC: obj()}},
        [(Reason.CREATED, "created from models/fraud.yaml@bbbbbbbbbbbb")],
    ),
    (
        "a created object the server did not return is not told without a uid",
        {"changes": [change(Action.CREATED)]},
        [],
    ),
    (
        "configured by a new commit",
        {"changes": [change(Action.CONFIGURED, live=obj())], "objects": {ISVC: obj()}},
        [(Reason.CONFIGURED, "configured from models/fraud.yaml@bbbbbbbbbbbb")],
    ),
    (
        "drift reverted",
        {"changes": [change(Action.CONFIGURED, live=obj(), drift=True)]},
        [(Reason.DRIFT_REVERTED, "reverted a change made outside Git")],
    ),
    (
        "pruned, regarding the object as it was",
        {"changes": [change(Action.DELETED, desired=None, live=obj(), reason="gone from Git")]},
        [(Reason.PRUNED, "pruned: gone from Git (models/fraud.yaml)")],
    ),
    (
        "a failed write",
        {"changes": [change(Action.CONFIGURED, live=obj(), error="HTTP 422: denied")]},
        [(Reason.APPLY_FAILED, "HTTP 422: denied")],
    ),
    (
        "a failed prune regards the object it could not delete",
        {"changes": [change(Action.DELETED, desired=None, live=obj(), error="HTTP 403")]},
        [(Reason.APPLY_FAILED, "HTTP 403")],
    ),
    (
        "a rollout step of the same commit is told as the step only",
        {
            "changes": [change(Action.CONFIGURED, live=obj(commit="b" * 40))],
            "objects": {ISVC: obj()},
            "rollouts": {ISVC: decision(RolloutPhase.PROGRESSING, "canary 20% -> 60% (ok)")},
        },
        [(Reason.ROLLOUT_STEP, "canary 20% -> 60% (ok)")],
    ),
    (
        "an analysis round (or a revision turning ready) moves nothing: no step, no Configured",
        {
            "changes": [change(Action.CONFIGURED, live=at(0, obj(commit="b" * 40)))],
            "objects": {ISVC: obj()},
            "rollouts": {ISVC: decision(RolloutPhase.PROGRESSING, "analysis at 20%: ok")},
        },
        [],
    ),
    (
        "the next step moves it",
        {
            "changes": [change(Action.CONFIGURED, live=at(0, obj(commit="b" * 40)))],
            "objects": {ISVC: obj()},
            "rollouts": {
                ISVC: decision(RolloutPhase.PROGRESSING, "canary 20% -> 60%", traffic=60, step=1)
            },
        },
        [(Reason.ROLLOUT_STEP, "canary 20% -> 60%")],
    ),
    (
        "a pause is a move",
        {
            "changes": [change(Action.CONFIGURED, live=at(0, obj(commit="b" * 40)))],
            "objects": {ISVC: obj()},
            "rollouts": {ISVC: decision(RolloutPhase.PAUSED, "canary paused at 20%")},
        },
        [(Reason.ROLLOUT_STEP, "canary paused at 20%")],
    ),
    (
        "rolled back from a step",
        {
            "changes": [change(Action.CONFIGURED, live=at(0, obj(commit="b" * 40)))],
            "objects": {ISVC: obj()},
            "rollouts": {
                ISVC: decision(RolloutPhase.ROLLED_BACK, "canary rolled back at 20%", traffic=0)
            },
        },
        [(Reason.ROLLED_BACK, "canary rolled back at 20%")],
    ),
    (
        "a new commit that starts a canary: configured, then the step",
        {
            "changes": [change(Action.CONFIGURED, live=obj())],
            "objects": {ISVC: obj()},
            "rollouts": {ISVC: decision(RolloutPhase.PROGRESSING, "canary started: 0% -> 20%")},
        },
        [(Reason.CONFIGURED, "configured from"), (Reason.ROLLOUT_STEP, "canary started")],
    ),
    (
        "a transition whose write failed is not told",
        {
            "changes": [change(Action.CONFIGURED, live=obj(), error="HTTP 500")],
            "objects": {ISVC: obj()},
            "rollouts": {ISVC: decision(RolloutPhase.PROGRESSING, "canary 20% -> 60%")},
        },
        [(Reason.APPLY_FAILED, "HTTP 500")],
    ),
    (
        "a decision without a transition is not told",
        {
            "changes": [change(Action.UNCHANGED, live=obj())],
            "objects": {ISVC: obj()},
            "rollouts": {ISVC: decision(RolloutPhase.PROGRESSING, None)},
        },
        [],
    ),
    (
        "a first deployment's decision is told by its Created event",
        {
            "changes": [change(Action.CREATED)],
            "objects": {ISVC: obj()},
            "rollouts": {ISVC: decision(RolloutPhase.PROMOTED, "first deployment: direct")},
        },
        [(Reason.CREATED, "created from")],
    ),
    (
        "promoted",
        {
            "changes": [change(Action.CONFIGURED, live=obj(commit="b" * 40))],
            "objects": {ISVC: obj()},
            "rollouts": {
                ISVC: decision(
                    RolloutPhase.PROMOTED, "canary 60% -> 100%: promoted", reason="all steps passed"
                )
            },
        },
        [(Reason.PROMOTED, "canary 60% -> 100%: promoted")],
    ),
    (
        "a canary dropped for the stable model is a step",
        {
            "changes": [change(Action.CONFIGURED, live=obj(commit="b" * 40))],
            "objects": {ISVC: obj()},
            "rollouts": {ISVC: decision(RolloutPhase.PROMOTED, "spec reverted: canary dropped")},
        },
        [(Reason.ROLLOUT_STEP, "canary dropped")],
    ),
    (
        "rolled back, with the evidence",
        {
            "changes": [change(Action.CONFIGURED, live=obj(commit="b" * 40))],
            "objects": {ISVC: obj()},
            "rollouts": {
                ISVC: decision(
                    RolloutPhase.ROLLED_BACK, "canary rolled back at 20%", evidence=(FAILED,)
                )
            },
        },
        [(Reason.ROLLED_BACK, "canary rolled back at 20%; evidence: error-rate 0.3 > 0.05")],
    ),
    (
        "an invalid spec regards its last deployed object, in the cycle it turned invalid",
        {"statuses": [status(valid="False")], "previous": [status()], "objects": {ISVC: obj()}},
        [(Reason.INVALID_SPEC, "ModelDeployment fraud at models/fraud.yaml@cccccccccccc refused")],
    ),
    (
        "a spec denied by a policy",
        {
            "statuses": [status(valid="False", errors=("f.yaml:1:1: denied by policy p: no",))],
            "objects": {ISVC: obj()},
        },
        [(Reason.POLICY_DENIED, "refused, the last deployed object kept")],
    ),
    (
        "a spec that stays invalid is not told again",
        {
            "statuses": [status(valid="False")],
            "previous": [status(valid="False")],
            "objects": {ISVC: obj()},
        },
        [],
    ),
    (
        "a spec invalid in a new way (another commit, another error) is told again",
        {
            "statuses": [status(valid="False", says="z")],
            "previous": [status(valid="False")],
            "objects": {ISVC: obj()},
        },
        [(Reason.INVALID_SPEC, "refused")],
    ),
    (
        "a spec refused at its first sight (no document yet) is told",
        {"statuses": [status(valid="False")], "objects": {ISVC: obj()}},
        [(Reason.INVALID_SPEC, "refused")],
    ),
    (
        "a refused spec that never deployed has no object to regard",
        {"statuses": [status(valid="False")]},
        [],
    ),
    ("a valid spec is no refusal", {"statuses": [status()], "objects": {ISVC: obj()}}, []),
]


@pytest.mark.parametrize(("report", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cycle_events(report: dict[str, Any], expected: list[tuple[Reason, str]]) -> None:
    events = cycle_events(
        changes=ChangeSet(tuple(report.get("changes", ()))),
        rollouts=report.get("rollouts", {}),
        statuses=report.get("statuses", ()),
        objects=report.get("objects", {}),
        previous={doc.path: doc for doc in report.get("previous", ())},
    )
    assert [e.reason for e in events] == [reason for reason, _ in expected]
    for event, (_, text) in zip(events, expected, strict=True):
        assert text in event.note
    for event in events:
        assert event.regarding["uid"] == "u-1"
        assert event.regarding["namespace"] == "ml"
        assert "resourceVersion" not in event.regarding  # a repeat is the same series
        warning = event.reason in {
            Reason.DRIFT_REVERTED,
            Reason.APPLY_FAILED,
            Reason.ROLLED_BACK,
            Reason.INVALID_SPEC,
            Reason.POLICY_DENIED,
        }
        assert event.type is (EventType.WARNING if warning else EventType.NORMAL)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("short", "short"),
        ("x" * NOTE_LIMIT, "x" * NOTE_LIMIT),
        (
            "failed at https://bob:hunter2@git.example.com/r.git",
            "failed at https://***@git.example.com/r.git",
        ),
    ],
)
def test_a_note_is_redacted(text: str, expected: str) -> None:
    assert bounded_note(text) == expected


@pytest.mark.parametrize("text", ["y" * 5000, "é" * 3000, "a" + "€" * 1000])
def test_a_long_note_is_cut_to_the_limit_on_a_character(text: str) -> None:
    note = bounded_note(text)
    assert len(note.encode()) <= NOTE_LIMIT
    assert note.endswith(" [...]")
    assert text.startswith(note.removesuffix(" [...]"))
