"""Step a canary rollout of a model, one decision per cycle.

KServe splits traffic (``canaryTrafficPercent`` in Serverless mode, ``spec.canary[]``
in Standard mode) but never decides to move it. This module decides: pure functions
from the spec's rollout, the live InferenceService and the time (and, when an
analysis was due, the measurements the caller took) to the share of traffic the new
model gets next and the new rollout state, the same in both modes;
:mod:`gitsync.traffic` writes that share where the mode keeps it.

The state lives on the live InferenceService, in one annotation, so a restarted
daemon continues exactly where the last one stopped: it never skips a pause or an
analysis and never jumps to 100%. A rollout that failed stays rolled back for that
spec: Git still names the rejected model, and gitsync neither retries it nor calls
it healthy until the spec changes. (KServe copies an InferenceService's annotations
into its revision template unless they are listed in its
``serviceAnnotationDisallowedList``; the state annotation must be listed there,
otherwise every state change would start a new revision: see
:data:`KSERVE_DISALLOWED_ANNOTATIONS`.)
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, ParamSpec

import orjson

from gitsync.render import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_SOURCE_COMMIT,
    ANNOTATION_SOURCE_PATH,
    ANNOTATION_SPEC_KIND,
    applied_hash,
)
from gitsync.specs import Metric, Rollout, parse_duration
from gitsync.traffic import observe, write_traffic

__all__ = [
    "COMMAND_ANNOTATION",
    "KSERVE_DISALLOWED_ANNOTATIONS",
    "STATE_ANNOTATION",
    "Decision",
    "Measurement",
    "RolloutPhase",
    "RolloutState",
    "Verdict",
    "analysis_due",
    "decide",
    "fill_holes",
    "judge",
    "next_due",
    "predictor_hash",
    "render_query",
    "with_decision",
]

P = ParamSpec("P")

STATE_ANNOTATION: Final = "rollout.gitsync.io/state"
#: Written by `gitsync rollout promote|abort NAME`: "<verb>@<timestamp>".
COMMAND_ANNOTATION: Final = "rollout.gitsync.io/command"

#: gitsync's bookkeeping annotations on an InferenceService. KServe copies the
#: annotations of an InferenceService into its revision template, so a cluster
#: running gitsync lists these in KServe's serviceAnnotationDisallowedList
#: (deploy/kserve-config-patch.yaml): otherwise every rollout step, and every
#: provenance update, would stamp a new revision of the same model.
KSERVE_DISALLOWED_ANNOTATIONS: Final = frozenset(
    {
        ANNOTATION_APPLIED_HASH,
        ANNOTATION_SOURCE_COMMIT,
        ANNOTATION_SOURCE_PATH,
        ANNOTATION_SPEC_KIND,
        STATE_ANNOTATION,
        COMMAND_ANNOTATION,
    }
)


class RolloutPhase(enum.Enum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"

    @property
    def active(self) -> bool:
        return self in {RolloutPhase.PROGRESSING, RolloutPhase.PAUSED}


class Verdict(enum.Enum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One metric measured once, against its bounds."""

    metric: str
    value: float | None
    verdict: Verdict
    bound: str
    baseline: float | None = None

    def text(self) -> str:
        if self.value is None:
            return f"{self.metric} no data ({self.verdict.value})"
        against = f" vs stable {self.baseline:.4g}" if self.baseline is not None else ""
        return f"{self.metric} {self.value:.4g}{against} {self.bound}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "baseline": self.baseline,
            "verdict": self.verdict.value,
            "bound": self.bound,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        return cls(
            metric=str(data.get("metric")),
            value=data.get("value"),
            verdict=Verdict(data.get("verdict", "inconclusive")),
            bound=str(data.get("bound", "")),
            baseline=data.get("baseline"),
        )


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Where a rollout stands; serialised into the state annotation."""

    target: str
    stable: str
    phase: RolloutPhase
    step: int = 0
    started_at: str = ""
    step_started_at: str | None = None
    last_analysis_at: str | None = None
    failures: int = 0
    inconclusive: int = 0
    passed_in_step: bool = False
    stable_revision: str | None = None
    canary_revision: str | None = None
    evidence: tuple[Measurement, ...] = ()
    reason: str = ""
    handled_command: str | None = None
    #: The last transitions, in words, numbered: the status branch tells each one
    #: (its documents record the number of the last they told), so a step applied
    #: just before a crash is still told by the next cycle.
    journal: tuple[tuple[int, str], ...] = ()

    @property
    def story(self) -> str:
        """The last transition: what the status says until the next one."""
        return self.journal[-1][1] if self.journal else ""

    @property
    def told_up_to(self) -> int | None:
        """The number of the newest transition in the journal."""
        return self.journal[-1][0] if self.journal else None

    def untold(self, told: int | None) -> tuple[str, ...]:
        """The transitions newer than ``told`` (all of them when nothing was told)."""
        return tuple(text for number, text in self.journal if told is None or number > told)

    def to_annotation(self) -> str:
        return orjson.dumps(
            {
                "target": self.target,
                "stable": self.stable,
                "phase": self.phase.value,
                "step": self.step,
                "startedAt": self.started_at,
                "stepStartedAt": self.step_started_at,
                "lastAnalysisAt": self.last_analysis_at,
                "failures": self.failures,
                "inconclusive": self.inconclusive,
                "passedInStep": self.passed_in_step,
                "stableRevision": self.stable_revision,
                "canaryRevision": self.canary_revision,
                "evidence": [m.as_dict() for m in self.evidence],
                "reason": self.reason,
                "handledCommand": self.handled_command,
                "journal": [list(item) for item in self.journal],
            },
            option=orjson.OPT_SORT_KEYS,
        ).decode()

    @classmethod
    def from_live(cls, live: Mapping[str, Any] | None) -> RolloutState | None:
        raw = ((live or {}).get("metadata") or {}).get("annotations", {}).get(STATE_ANNOTATION)
        if not raw:
            return None
        try:
            data = orjson.loads(raw)
            return cls(
                target=str(data["target"]),
                stable=str(data["stable"]),
                phase=RolloutPhase(data["phase"]),
                step=int(data.get("step", 0)),
                started_at=str(data.get("startedAt", "")),
                step_started_at=data.get("stepStartedAt"),
                last_analysis_at=data.get("lastAnalysisAt"),
                failures=int(data.get("failures", 0)),
                inconclusive=int(data.get("inconclusive", 0)),
                passed_in_step=bool(data.get("passedInStep", False)),
                stable_revision=data.get("stableRevision"),
                canary_revision=data.get("canaryRevision"),
                evidence=tuple(Measurement.from_dict(m) for m in data.get("evidence") or []),
                reason=str(data.get("reason", "")),
                handled_command=data.get("handledCommand"),
                journal=tuple((int(n), str(text)) for n, text in data.get("journal") or ()),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # Someone mangled it: start from what the live object shows.
            return None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to apply: ``traffic`` is the percent of requests for the new model (None:
    all of them; 0: none, the stable model serves alone), in either deployment mode
    (:func:`gitsync.traffic.write_traffic` writes it where the mode keeps it)."""

    traffic: int | None
    state: RolloutState
    transition: str | None = None


def predictor_hash(body: Mapping[str, Any]) -> str:
    """What identifies the model being served: the predictor without its traffic, and
    without the name Standard mode gives the Deployment that serves it."""
    predictor = dict((body.get("spec") or {}).get("predictor") or {})
    predictor.pop("canaryTrafficPercent", None)
    predictor.pop("name", None)
    return hashlib.sha256(orjson.dumps(predictor, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _ts(moment: datetime) -> str:
    """RFC 3339 in UTC, the form the state annotation stores and :func:`_since` reads."""
    if moment.utcoffset() is None:
        # Local time or UTC? The caller's clock must say; guessing would shift every
        # pause and deadline by the machine's offset.
        raise ValueError(f"rollout times must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _since(stamp: str | None, now: datetime) -> float:
    if not stamp:
        return 0.0
    return (now - datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z")).total_seconds()


def render_query(query: str, *, namespace: str, name: str, state: RolloutState) -> str:
    """Fill the ``{{namespace}} {{name}} {{canary_revision}} {{stable_revision}}`` holes."""
    return fill_holes(
        query,
        {
            "namespace": namespace,
            "name": name,
            "canary_revision": state.canary_revision or "",
            "stable_revision": state.stable_revision or "",
        },
    )


def fill_holes(query: str, values: Mapping[str, str]) -> str:
    """A PromQL query with each ``{{key}}`` (or ``{{ key }}``) replaced by its value.

    Plain replacement, not a template engine: PromQL's own braces (label matchers)
    must pass through untouched, and a hole that names no value stays as written, so
    Prometheus rejects the query and the spec hears of it.
    """
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value).replace("{{ " + key + " }}", value)
    return query


def judge(metric: Metric, value: float | None, baseline: float | None = None) -> Measurement:
    """A measurement's verdict: no data is inconclusive, never a pass."""
    if value is None or (metric.baseline_query is not None and baseline is None):
        return Measurement(metric.name, value, Verdict.INCONCLUSIVE, "no data", baseline)
    # (passed, bound as it reads when passed, as it reads when failed)
    checks: list[tuple[bool, str, str]] = []
    if metric.max is not None:
        checks.append((value <= metric.max, f"<= {metric.max:g}", f"> {metric.max:g}"))
    if metric.min is not None:
        checks.append((value >= metric.min, f">= {metric.min:g}", f"< {metric.min:g}"))
    if metric.max_increase is not None and baseline is not None:
        allowed = f"stable + {metric.max_increase:g}"
        ok = value - baseline <= metric.max_increase
        checks.append((ok, f"<= {allowed}", f"> {allowed}"))
    passed = all(ok for ok, _, _ in checks)
    bound = " and ".join(good if passed else bad for ok, good, bad in checks if passed or not ok)
    return Measurement(
        metric.name, value, Verdict.PASS if passed else Verdict.FAIL, bound, baseline
    )


def analysis_due(state: RolloutState | None, rollout: Rollout, now: datetime) -> bool:
    """Whether the caller should measure now: the canary has had traffic for a whole
    interval since the step began or since the last measurement."""
    if state is None or not state.phase.active or rollout.analysis is None:
        return False
    if state.step_started_at is None:
        return False
    interval = parse_duration(rollout.analysis.interval)
    since = state.last_analysis_at or state.step_started_at
    return _since(since, now) >= interval


#: How soon to look again at a canary waiting for its revision to become Ready: the
#: controller's status is the only clock then.
_READINESS_POLL_S: Final = 2.0


def next_due(state: RolloutState, rollout: Rollout, now: datetime) -> float | None:
    """Seconds until this rollout has something to do although nothing changes: its
    next analysis, the end of its step's pause, or a look at whether its revision is
    Ready yet. None when it waits on nothing timed (promoted, rolled back, paused)."""
    if not state.phase.active or state.phase is RolloutPhase.PAUSED:
        return None
    if state.step_started_at is None:
        deadline = parse_duration(rollout.progress_deadline) - _since(state.started_at, now)
        return max(0.0, min(_READINESS_POLL_S, deadline))
    due: list[float] = []
    if rollout.analysis is not None:
        since = state.last_analysis_at or state.step_started_at
        due.append(parse_duration(rollout.analysis.interval) - _since(since, now))
    pause = rollout.steps[min(state.step, len(rollout.steps) - 1)].pause
    if pause != "indefinite":
        due.append(parse_duration(pause) - _since(state.step_started_at, now))
    return max(0.0, min(due)) if due else None


def _traffic(state: RolloutState, rollout: Rollout) -> int | None:
    if state.phase is RolloutPhase.PROMOTED:
        return None
    if state.phase in {RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED}:
        return 0
    return rollout.steps[min(state.step, len(rollout.steps) - 1)].traffic


def _command(live: Mapping[str, Any] | None, state: RolloutState) -> str | None:
    raw = ((live or {}).get("metadata") or {}).get("annotations", {}).get(COMMAND_ANNOTATION)
    if not raw or raw == state.handled_command:
        return None
    return str(raw)


#: Transitions kept on the live object: more than a crash can leave untold.
_JOURNAL_LENGTH: Final = 8


def _telling(decide: Callable[P, Decision]) -> Callable[P, Decision]:
    """Carry the journal of transitions from the live state into the decided one, and
    add the decision's transition to it (written with the step it describes)."""

    @functools.wraps(decide)
    def told(*args: P.args, **kwargs: P.kwargs) -> Decision:
        decision = decide(*args, **kwargs)
        live = kwargs.get("live")
        before = RolloutState.from_live(live if isinstance(live, Mapping) else None)
        journal = before.journal if before is not None else ()
        if decision.transition is not None:
            number = (journal[-1][0] if journal else 0) + 1
            journal = (*journal, (number, decision.transition))[-_JOURNAL_LENGTH:]
        return replace(decision, state=replace(decision.state, journal=journal))

    return told


@_telling
def decide(
    *,
    desired_hash: str,
    live: Mapping[str, Any] | None,
    rollout: Rollout,
    now: datetime,
    measurements: Sequence[Measurement] = (),
    live_matches_desired: bool = False,
) -> Decision:
    """The next traffic split and state for a canary ModelDeployment.

    ``live_matches_desired`` says whether a live object without rollout state already
    serves the desired predictor (then it is adopted as stable, not rolled out).
    """
    stamp = _ts(now)
    state = RolloutState.from_live(live)
    if live is None or (state is None and live_matches_desired):
        adopted = RolloutState(desired_hash, desired_hash, RolloutPhase.PROMOTED, started_at=stamp)
        note = "first deployment: direct" if live is None else None
        return Decision(None, adopted, note)

    current_revision = observe(live, target=desired_hash).stable
    if state is None or state.target != desired_hash:
        return _start_or_revert(state, desired_hash, rollout, stamp, current_revision)
    command = _command(live, state)
    if command is not None:
        state = replace(state, handled_command=command)
        verb = command.split("@", 1)[0]
        if verb == "abort" and state.phase.active:
            aborted = replace(
                state, phase=RolloutPhase.ABORTED, reason="aborted by gitsync rollout abort"
            )
            return Decision(
                0, aborted, f"canary aborted at {_traffic(state, rollout)}%: by command"
            )
        if verb == "promote" and state.phase.active:
            return _advance(state, rollout, stamp, why="promoted by command")
    if not state.phase.active:
        return Decision(_traffic(state, rollout), state)
    return _step(
        state=state, live=live, rollout=rollout, now=now, stamp=stamp, measurements=measurements
    )


def _start_or_revert(
    state: RolloutState | None,
    desired_hash: str,
    rollout: Rollout,
    stamp: str,
    current_revision: str | None,
) -> Decision:
    if state is not None and desired_hash == state.stable and state.target != state.stable:
        # The spec went back to the model still serving: nothing to roll out.
        restored = RolloutState(desired_hash, desired_hash, RolloutPhase.PROMOTED, started_at=stamp)
        return Decision(None, restored, "spec reverted to the stable model: canary dropped")
    if state is None:
        stable = "unknown"
    elif state.phase is RolloutPhase.PROMOTED:
        stable = state.target
    else:
        stable = state.stable
    started = RolloutState(
        target=desired_hash,
        stable=stable,
        phase=RolloutPhase.PAUSED if rollout.paused else RolloutPhase.PROGRESSING,
        step=0,
        started_at=stamp,
        stable_revision=current_revision,
    )
    return Decision(
        rollout.steps[0].traffic,
        started,
        f"canary started: 0% -> {rollout.steps[0].traffic}%",
    )


def _step(
    *,
    state: RolloutState,
    live: Mapping[str, Any],
    rollout: Rollout,
    now: datetime,
    stamp: str,
    measurements: Sequence[Measurement],
) -> Decision:
    traffic = _traffic(state, rollout)
    canary = observe(live, target=state.target, stable_revision=state.stable_revision)
    transition = None

    paused = RolloutPhase.PAUSED if rollout.paused else RolloutPhase.PROGRESSING
    if paused is not state.phase:
        state = replace(state, phase=paused)
        transition = f"canary {'paused' if rollout.paused else 'resumed'} at {traffic}%"

    if state.step_started_at is None:
        if not canary.ready:
            deadline = parse_duration(rollout.progress_deadline)
            if _since(state.started_at, now) >= deadline:
                reason = (
                    f"{canary.noun} {canary.canary or '(none)'} not Ready"
                    f" within {rollout.progress_deadline}"
                )
                rolled = replace(state, phase=RolloutPhase.ROLLED_BACK, reason=reason)
                return Decision(0, rolled, f"canary rolled back at {traffic}%: {reason}")
            return Decision(traffic, state, transition)
        state = replace(state, step_started_at=stamp, canary_revision=canary.canary)
        ready = f"canary {canary.noun} {canary.canary} ready: {traffic}% of traffic"
        transition = transition or ready

    if measurements:
        state = _record(state, measurements, stamp)
        limit = rollout.analysis.failure_limit if rollout.analysis else 1
        failed = state.failures >= limit
        silent = state.inconclusive >= limit
        evidence = ", ".join(m.text() for m in state.evidence)
        if failed or silent:
            what = "failed analysis" if failed else "no data from analysis"
            reason = f"{what}: {evidence}"
            rolled = replace(state, phase=RolloutPhase.ROLLED_BACK, reason=reason)
            return Decision(0, rolled, f"canary rolled back at {traffic}% ({evidence})")
        # Every measurement is part of the record, failed ones with their count.
        tally = "passed" if state.passed_in_step else f"{state.failures} of {limit} failures"
        transition = transition or f"analysis at {traffic}%: {evidence} ({tally})"

    pause = rollout.steps[state.step].pause
    held_long_enough = pause != "indefinite" and _since(
        state.step_started_at, now
    ) >= parse_duration(pause)
    analysed = rollout.analysis is None or state.passed_in_step
    if state.phase is RolloutPhase.PROGRESSING and held_long_enough and analysed:
        return _advance(state, rollout, stamp, why=None)
    return Decision(traffic, state, transition)


def _record(state: RolloutState, measurements: Sequence[Measurement], stamp: str) -> RolloutState:
    verdicts = {m.verdict for m in measurements}
    if Verdict.FAIL in verdicts:
        return replace(
            state,
            failures=state.failures + 1,
            evidence=tuple(measurements),
            last_analysis_at=stamp,
            passed_in_step=False,
        )
    if Verdict.INCONCLUSIVE in verdicts:
        return replace(
            state,
            inconclusive=state.inconclusive + 1,
            evidence=tuple(measurements),
            last_analysis_at=stamp,
        )
    return replace(state, evidence=tuple(measurements), last_analysis_at=stamp, passed_in_step=True)


def _advance(state: RolloutState, rollout: Rollout, stamp: str, *, why: str | None) -> Decision:
    before = _traffic(state, rollout)
    evidence = ", ".join(m.text() for m in state.evidence if m.verdict is Verdict.PASS)
    because = why or evidence
    suffix = f" ({because})" if because else ""
    if state.step + 1 >= len(rollout.steps):
        promoted = replace(
            state,
            phase=RolloutPhase.PROMOTED,
            stable=state.target,
            reason="all steps passed" if why is None else why,
        )
        return Decision(None, promoted, f"canary {before}% -> 100%: promoted{suffix}")
    following = replace(
        state,
        phase=RolloutPhase.PROGRESSING,
        step=state.step + 1,
        step_started_at=stamp,
        passed_in_step=False,
        last_analysis_at=None,
    )
    after = rollout.steps[state.step + 1].traffic
    return Decision(after, following, f"canary {before}% -> {after}%{suffix}")


def with_decision(
    body: Mapping[str, Any], decision: Decision, *, live: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The body carrying the decided traffic split and rollout state, re-stamped so
    that an unchanged rollout step still plans as unchanged. ``live`` is the object
    as it is now: in Standard mode its ``spec.predictor`` is the stable model."""
    split = write_traffic(body, traffic=decision.traffic, target=decision.state.target, live=live)
    metadata = dict(body["metadata"])
    metadata["annotations"] = {
        **metadata.get("annotations", {}),
        STATE_ANNOTATION: decision.state.to_annotation(),
    }
    stamped = {**split, "metadata": metadata}
    metadata["annotations"][ANNOTATION_APPLIED_HASH] = applied_hash(stamped)
    return stamped
