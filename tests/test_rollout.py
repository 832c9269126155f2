"""The canary state machine, driven through time with the status KServe would report."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gitsync.rollout import (
    COMMAND_ANNOTATION,
    STATE_ANNOTATION,
    Decision,
    Measurement,
    RolloutPhase,
    RolloutState,
    Verdict,
    analysis_due,
    decide,
    judge,
    next_due,
    predictor_hash,
    render_query,
)
from gitsync.specs import Metric, Rollout

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

ROLLOUT = Rollout.model_validate(
    {
        "strategy": "canary",
        "steps": [{"traffic": 10, "pause": "1m"}, {"traffic": 50, "pause": "2m"}],
        "progressDeadline": "5m",
        "analysis": {
            "interval": "30s",
            "failureLimit": 2,
            "metrics": [{"name": "error-rate", "query": "q", "max": 0.01}],
            "provider": {"prometheus": {"address": "http://127.0.0.1:9090"}},
        },
    }
)
GOOD = [Measurement("error-rate", 0.002, Verdict.PASS, "<= 0.01")]
BAD = [Measurement("error-rate", 0.2, Verdict.FAIL, "> 0.01")]
NO_DATA = [Measurement("error-rate", None, Verdict.INCONCLUSIVE, "no data")]


class Cluster:
    """One InferenceService as the API server and KServe would show it."""

    def __init__(self) -> None:
        self.live: dict[str, Any] | None = None
        self.revision = 0

    def apply(self, decision: Decision) -> None:
        annotations = {STATE_ANNOTATION: decision.state.to_annotation()}
        if self.live is None:
            self.revision = 1
            self.live = {"metadata": {"annotations": annotations}, "status": {}}
            self.ready(rolled_out=True)
            return
        self.live["metadata"]["annotations"].update(annotations)

    def new_revision(self) -> None:
        assert self.live is not None
        self.revision += 1
        predictor = self.live["status"]["components"]["predictor"]
        predictor["latestCreatedRevision"] = f"m-predictor-{self.revision:05d}"

    def ready(self, *, rolled_out: bool = False) -> None:
        assert self.live is not None
        name = f"m-predictor-{self.revision:05d}"
        predictor = self.live["status"].setdefault("components", {}).setdefault("predictor", {})
        predictor.update(latestCreatedRevision=name, latestReadyRevision=name)
        if rolled_out:
            predictor["latestRolledoutRevision"] = name

    def command(self, verb: str, when: datetime) -> None:
        assert self.live is not None
        self.live["metadata"]["annotations"][COMMAND_ANNOTATION] = f"{verb}@{when.isoformat()}"


def step(
    cluster: Cluster,
    target: str,
    at: datetime,
    *,
    measurements: list[Measurement] | None = None,
    rollout: Rollout = ROLLOUT,
) -> Decision:
    decision = decide(
        desired_hash=target,
        live=cluster.live,
        rollout=rollout,
        now=at,
        measurements=measurements or [],
    )
    cluster.apply(decision)
    return decision


def start_canary(cluster: Cluster) -> Decision:
    step(cluster, "v1", T0)
    decision = step(cluster, "v2", T0)
    cluster.new_revision()
    return decision


def test_first_deployment_is_direct_and_a_change_starts_a_canary() -> None:
    cluster = Cluster()
    first = step(cluster, "v1", T0)
    assert (first.traffic, first.state.phase, first.transition) == (
        None,
        RolloutPhase.PROMOTED,
        "first deployment: direct",
    )
    again = step(cluster, "v1", T0 + timedelta(minutes=1))
    assert (again.traffic, again.transition) == (None, None)

    started = step(cluster, "v2", T0 + timedelta(minutes=2))
    assert started.traffic == 10
    assert started.state.stable == "v1"
    assert started.state.stable_revision == "m-predictor-00001"
    assert started.transition == "canary started: 0% -> 10%"


def test_a_good_canary_is_promoted_through_every_step() -> None:
    cluster = Cluster()
    start_canary(cluster)
    t = T0 + timedelta(seconds=10)
    waiting = step(cluster, "v2", t)
    assert (waiting.traffic, waiting.state.step_started_at) == (10, None)  # not Ready yet

    cluster.ready()
    ready = step(cluster, "v2", t)
    assert ready.transition == "canary revision m-predictor-00002 ready: 10% of traffic"
    assert not analysis_due(ready.state, ROLLOUT, t + timedelta(seconds=29))
    assert analysis_due(ready.state, ROLLOUT, t + timedelta(seconds=30))

    # The pause has passed but no analysis yet: hold.
    held = step(cluster, "v2", t + timedelta(minutes=2))
    assert held.traffic == 10

    measured = step(cluster, "v2", t + timedelta(minutes=2), measurements=GOOD)
    assert measured.traffic == 50
    assert measured.transition == "canary 10% -> 50% (error-rate 0.002 <= 0.01)"

    t2 = t + timedelta(minutes=2)
    assert step(cluster, "v2", t2 + timedelta(seconds=40), measurements=GOOD).traffic == 50
    promoted = step(cluster, "v2", t2 + timedelta(minutes=2), measurements=GOOD)
    assert (promoted.traffic, promoted.state.phase) == (None, RolloutPhase.PROMOTED)
    assert promoted.transition == "canary 50% -> 100%: promoted (error-rate 0.002 <= 0.01)"
    assert promoted.state.stable == "v2"


def test_a_bad_canary_is_rolled_back_at_the_failure_limit_and_stays_rolled_back() -> None:
    cluster = Cluster()
    start_canary(cluster)
    cluster.ready()
    step(cluster, "v2", T0)
    first = step(cluster, "v2", T0 + timedelta(seconds=30), measurements=BAD)
    assert (first.traffic, first.state.failures) == (10, 1)

    second = step(cluster, "v2", T0 + timedelta(seconds=60), measurements=BAD)

    assert (second.traffic, second.state.phase) == (0, RolloutPhase.ROLLED_BACK)
    assert second.transition == "canary rolled back at 10% (error-rate 0.2 > 0.01)"
    assert second.state.reason == "failed analysis: error-rate 0.2 > 0.01"
    later = step(cluster, "v2", T0 + timedelta(hours=1))
    assert (later.traffic, later.state.phase, later.transition) == (
        0,
        RolloutPhase.ROLLED_BACK,
        None,
    )

    # A new spec rolls out against the model that kept serving, not the rejected one.
    retry = step(cluster, "v3", T0 + timedelta(hours=2))
    assert (retry.traffic, retry.state.stable) == (10, "v1")


def test_a_revision_that_never_becomes_ready_is_rolled_back_at_the_deadline() -> None:
    cluster = Cluster()
    start_canary(cluster)
    assert step(cluster, "v2", T0 + timedelta(minutes=4, seconds=59)).traffic == 10
    late = step(cluster, "v2", T0 + timedelta(minutes=5))
    assert (late.traffic, late.state.phase) == (0, RolloutPhase.ROLLED_BACK)
    assert late.state.reason == "revision m-predictor-00002 not Ready within 5m"


def test_no_data_is_never_a_pass() -> None:
    cluster = Cluster()
    start_canary(cluster)
    cluster.ready()
    step(cluster, "v2", T0)
    silent = step(cluster, "v2", T0 + timedelta(minutes=5), measurements=NO_DATA)
    assert silent.traffic == 10  # long past the pause, yet no step forward
    rolled = step(cluster, "v2", T0 + timedelta(minutes=6), measurements=NO_DATA)
    assert rolled.state.phase is RolloutPhase.ROLLED_BACK
    assert rolled.state.reason == "no data from analysis: error-rate no data (inconclusive)"


def test_pause_holds_the_step_and_promote_moves_past_it() -> None:
    paused_rollout = ROLLOUT.model_copy(update={"paused": True})
    cluster = Cluster()
    step(cluster, "v1", T0)
    started = step(cluster, "v2", T0, rollout=paused_rollout)
    cluster.new_revision()
    cluster.ready()
    assert started.state.phase is RolloutPhase.PAUSED
    held = step(cluster, "v2", T0 + timedelta(hours=1), measurements=GOOD, rollout=paused_rollout)
    assert (held.traffic, held.state.phase) == (10, RolloutPhase.PAUSED)

    cluster.command("promote", T0 + timedelta(hours=1))
    promoted = step(cluster, "v2", T0 + timedelta(hours=1), rollout=paused_rollout)
    assert promoted.traffic == 50
    assert promoted.transition == "canary 10% -> 50% (promoted by command)"
    # The same command is not acted on twice.
    assert step(cluster, "v2", T0 + timedelta(hours=1), rollout=paused_rollout).traffic == 50


def test_indefinite_pause_waits_for_a_promote() -> None:
    rollout = Rollout.model_validate(
        {"strategy": "canary", "steps": [{"traffic": 20, "pause": "indefinite"}]}
    )
    cluster = Cluster()
    step(cluster, "v1", T0, rollout=rollout)
    step(cluster, "v2", T0, rollout=rollout)
    cluster.new_revision()
    cluster.ready()
    assert step(cluster, "v2", T0 + timedelta(days=3), rollout=rollout).traffic == 20
    cluster.command("promote", T0 + timedelta(days=3))
    done = step(cluster, "v2", T0 + timedelta(days=3), rollout=rollout)
    assert (done.traffic, done.state.phase) == (None, RolloutPhase.PROMOTED)


def test_abort_rolls_back() -> None:
    cluster = Cluster()
    start_canary(cluster)
    cluster.command("abort", T0)
    aborted = step(cluster, "v2", T0)
    assert (aborted.traffic, aborted.state.phase) == (0, RolloutPhase.ABORTED)


def test_reverting_the_spec_drops_the_canary() -> None:
    cluster = Cluster()
    start_canary(cluster)
    back = step(cluster, "v1", T0 + timedelta(seconds=5))
    assert (back.traffic, back.state.phase) == (None, RolloutPhase.PROMOTED)
    assert back.transition == "spec reverted to the stable model: canary dropped"


def test_times_are_stored_in_utc_whatever_zone_the_clock_is_in() -> None:
    east = timezone(timedelta(hours=2))
    cluster = Cluster()
    step(cluster, "v1", T0.astimezone(east))
    step(cluster, "v2", T0.astimezone(east))
    cluster.new_revision()
    cluster.ready()
    ready = step(cluster, "v2", T0.astimezone(east))
    assert ready.state.step_started_at == "2026-11-28T12:00:00Z"
    # The same instants through a UTC clock: the analysis interval counts from 12:00 UTC.
    assert not analysis_due(ready.state, ROLLOUT, T0 + timedelta(seconds=29))
    assert analysis_due(ready.state, ROLLOUT, T0 + timedelta(seconds=30))


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(desired_hash="v1", live=None, rollout=ROLLOUT, now=T0.replace(tzinfo=None))


def test_every_transition_is_numbered_on_the_live_object_across_rollouts() -> None:
    cluster = Cluster()
    step(cluster, "v1", T0)
    started = start_canary(cluster)
    assert [n for n, _ in started.state.journal] == [1, 2]
    cluster.ready()
    ready = step(cluster, "v2", T0 + timedelta(seconds=1))
    assert ready.state.journal[-1] == (3, ready.transition)
    assert ready.state.untold(1) == (started.transition, ready.transition)
    assert ready.state.untold(3) == ()
    quiet = step(cluster, "v2", T0 + timedelta(seconds=2))
    assert quiet.transition is None
    assert quiet.state.journal == ready.state.journal
    # Read back from the live object exactly as written.
    assert RolloutState.from_live(cluster.live) == quiet.state


def test_the_journal_keeps_only_the_last_transitions() -> None:
    cluster = Cluster()
    step(cluster, "v0", T0)
    for version in range(1, 12):  # each change starts a new canary: a transition each
        step(cluster, f"v{version}", T0 + timedelta(seconds=version))
    state = RolloutState.from_live(cluster.live)
    assert state is not None
    numbers = [n for n, _ in state.journal]
    assert numbers == list(range(numbers[0], numbers[0] + 8))
    assert numbers[-1] == 12


def test_next_due_says_when_a_rollout_has_timed_work() -> None:
    cluster = Cluster()
    start_canary(cluster)
    waiting = RolloutState.from_live(cluster.live)
    assert waiting is not None
    assert next_due(waiting, ROLLOUT, T0) == 2.0  # waiting for Ready: look again soon
    cluster.ready()
    stepping = step(cluster, "v2", T0 + timedelta(seconds=1)).state
    # Analysis every 30 s, the step's pause 1 min: the analysis comes first.
    assert next_due(stepping, ROLLOUT, T0 + timedelta(seconds=11)) == 20.0
    measured = step(cluster, "v2", T0 + timedelta(seconds=31), measurements=GOOD).state
    # After a good analysis: the next one in 30 s, the pause's end (1 min after the
    # step began at 1 s) in 30 s too.
    assert next_due(measured, ROLLOUT, T0 + timedelta(seconds=31)) == 30.0
    assert next_due(measured, ROLLOUT, T0 + timedelta(seconds=50)) == 11.0
    promoted = replace(measured, phase=RolloutPhase.PROMOTED)
    assert next_due(promoted, ROLLOUT, T0) is None
    paused = replace(measured, phase=RolloutPhase.PAUSED)
    assert next_due(paused, ROLLOUT, T0) is None


def test_state_survives_serialisation_exactly() -> None:
    cluster = Cluster()
    start_canary(cluster)
    cluster.ready()
    state = step(cluster, "v2", T0 + timedelta(seconds=30), measurements=BAD).state
    live = {"metadata": {"annotations": {STATE_ANNOTATION: state.to_annotation()}}}
    assert RolloutState.from_live(live) == state
    mangled = {"metadata": {"annotations": {STATE_ANNOTATION: "{not json"}}}
    assert RolloutState.from_live(mangled) is None


@pytest.mark.parametrize(
    ("metric", "value", "baseline", "verdict", "text"),
    [
        ({"max": 0.01}, 0.005, None, Verdict.PASS, "m 0.005 <= 0.01"),
        ({"max": 0.01}, 0.05, None, Verdict.FAIL, "m 0.05 > 0.01"),
        ({"min": 0.9}, 0.95, None, Verdict.PASS, "m 0.95 >= 0.9"),
        ({"max": 0.01}, None, None, Verdict.INCONCLUSIVE, "m no data (inconclusive)"),
        (
            {"baselineQuery": "b", "maxIncrease": 0.01},
            0.03,
            0.025,
            Verdict.PASS,
            "m 0.03 vs stable 0.025 <= stable + 0.01",
        ),
        (
            {"baselineQuery": "b", "maxIncrease": 0.01},
            0.05,
            0.025,
            Verdict.FAIL,
            "m 0.05 vs stable 0.025 > stable + 0.01",
        ),
        ({"baselineQuery": "b", "maxIncrease": 0.01}, 0.05, None, Verdict.INCONCLUSIVE, None),
    ],
)
def test_judge(
    metric: dict[str, Any],
    value: float | None,
    baseline: float | None,
    verdict: Verdict,
    text: str | None,
) -> None:
    measurement = judge(
        Metric.model_validate({"name": "m", "query": "q", **metric}), value, baseline
    )
    assert measurement.verdict is verdict
    if text is not None:
        assert measurement.text() == text


def test_query_templates_and_predictor_hash() -> None:
    state = RolloutState(
        "a", "b", RolloutPhase.PROGRESSING, stable_revision="m-1", canary_revision="m-2"
    )
    query = (
        'rate(x{revision="{{canary_revision}}",ns="{{ namespace }}",old="{{stable_revision}}"}[1m])'
    )
    assert render_query(query, namespace="ml", name="m", state=state) == (
        'rate(x{revision="m-2",ns="ml",old="m-1"}[1m])'
    )
    body = {"spec": {"predictor": {"model": {"storageUri": "s3://a"}, "canaryTrafficPercent": 10}}}
    same = {"spec": {"predictor": {"model": {"storageUri": "s3://a"}}}}
    other = {"spec": {"predictor": {"model": {"storageUri": "s3://b"}}}}
    assert predictor_hash(body) == predictor_hash(same) != predictor_hash(other)
