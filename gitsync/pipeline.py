"""Train -> evaluate -> promote: which run a model serves, and when a model takes
what its upstream serves.

Pure decisions over plain data, so every case is a table row:

* :func:`choose_run` judges each Succeeded run against the model's gates and picks
  the newest, or the best by a metric, of those that pass. A run that fails a gate
  is never served, and the evidence (each metric, its value and its bound) says why.
  A metric that was not reported, or not answered, fails: no evidence is never a
  pass, as with CEL's error values and a canary's inconclusive analysis.
* A gate with a ``query`` takes its number from Prometheus. :func:`gate_questions`
  says which questions a cycle must ask for a run, the cycle asks them (the only
  I/O, at the edge), and :func:`with_answers` puts the answers into the run's
  metrics before it is judged, so a queried metric and a reported one are judged,
  ranked and shown as evidence alike.
* :func:`decide_promotion` reads the upstream model's status document (from the
  shared status branch) and says whether this model may take what it serves: the
  upstream must be Healthy, its Ready condition true, no rollout of it in flight or
  failed, and all of that for ``healthyFor`` since it started serving its model.
  Until then this model keeps what it serves; a model that serves nothing yet waits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from gitsync.redact import redact
from gitsync.rollout import fill_holes
from gitsync.schedule import format_time, parse_time
from gitsync.specs.common import parse_duration
from gitsync.specs.pipeline import MetricGate, RunSelection, Upstream
from gitsync.status_document import Phase, Score, StatusDocument
from gitsync.types import ObjectRef

__all__ = [
    "Answer",
    "Candidate",
    "Choice",
    "GateResult",
    "Promotion",
    "Question",
    "choose_run",
    "decide_promotion",
    "gate_questions",
    "judge_run",
    "remembered",
    "scores_of",
    "with_answers",
]

#: Rollout phases of the upstream model that stop a promotion: one still stepping,
#: and one whose analysis failed (what it serves now is the old, stable model, but
#: the team is looking at a failure and nothing should move downstream meanwhile).
_BLOCKING_ROLLOUTS = {
    "Progressing": "is mid-rollout",
    "Paused": "is mid-rollout (paused)",
    "RolledBack": "rolled back its last rollout",
    "Aborted": "aborted its last rollout",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A Succeeded run with an output, and the metrics known for it."""

    run: str
    output_uri: str
    completion_time: str
    source_commit: str
    metrics: Mapping[str, float]
    #: Why a queried metric has no value: ``no data``, or the query's error.
    unanswered: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Question:
    """One PromQL query for one run, and the Prometheus to ask: asked at most once a
    cycle however many gates (or models) ask it, and never again once its answer is
    a model's recorded :class:`~gitsync.status_document.Score`."""

    address: str
    promql: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What Prometheus said: a number, no data (``value`` None), or why it could not
    say (``error``)."""

    value: float | None
    error: str | None = None
    #: Whether asking again may answer (Prometheus away), or only a new commit can (a
    #: query Prometheus refuses).
    retry: bool = True


def _question(gate: MetricGate, *, run: str, training_run: ObjectRef) -> Question | None:
    if gate.query is None or gate.provider is None:
        return None
    holes = {"run": run, "trainingRun": training_run.name, "namespace": training_run.namespace}
    return Question(address=gate.provider.prometheus.address, promql=fill_holes(gate.query, holes))


def gate_questions(
    candidates: Sequence[Candidate], gates: Sequence[MetricGate], *, training_run: ObjectRef
) -> frozenset[Question]:
    """What Prometheus answers to judge these runs against these gates."""
    return frozenset(
        question
        for candidate in candidates
        for gate in gates
        if (question := _question(gate, run=candidate.run, training_run=training_run))
    )


def remembered(questions: Iterable[Question], scores: Sequence[Score]) -> dict[Question, Answer]:
    """The questions a model's recorded scores answer already, with those answers."""
    known = {(score.address, score.query): score.value for score in scores}
    return {
        question: Answer(value)
        for question in questions
        if (value := known.get((redact(question.address), question.promql))) is not None
    }


def scores_of(
    candidates: Sequence[Candidate],
    gates: Sequence[MetricGate],
    answers: Mapping[Question, Answer],
    *,
    training_run: ObjectRef,
) -> tuple[Score, ...]:
    """The numbers Prometheus gave for these runs, to record; no data is not one."""
    scores = []
    for candidate in candidates:
        for gate in gates:
            question = _question(gate, run=candidate.run, training_run=training_run)
            answer = answers.get(question) if question is not None else None
            if question is None or answer is None or answer.value is None:
                continue
            scores.append(
                Score(
                    run=candidate.run,
                    metric=gate.metric,
                    value=answer.value,
                    query=question.promql,
                    address=redact(question.address),
                )
            )
    return tuple(sorted(scores, key=lambda s: (s.run, s.metric, s.query)))


def with_answers(
    candidate: Candidate,
    gates: Sequence[MetricGate],
    answers: Mapping[Question, Answer],
    *,
    training_run: ObjectRef,
) -> Candidate:
    """The run with each queried gate's answer as its metric. A gate's query says
    where its number comes from, so it wins over a reported metric of the same name;
    a query not answered leaves the metric out, and the reason beside it."""
    metrics, unanswered = dict(candidate.metrics), dict(candidate.unanswered)
    for gate in gates:
        if (question := _question(gate, run=candidate.run, training_run=training_run)) is None:
            continue
        metrics.pop(gate.metric, None)
        answer = answers.get(question, Answer(None))
        if answer.error is not None:
            unanswered[gate.metric] = f"query failed ({answer.error})"
        elif answer.value is None:
            unanswered[gate.metric] = "no data"
        else:
            metrics[gate.metric] = answer.value
    return replace(candidate, metrics=metrics, unanswered=unanswered)


@dataclass(frozen=True, slots=True, kw_only=True)
class GateResult:
    run: str
    passed: bool
    #: One line a gate: ``accuracy 0.93 >= 0.92``, ``auc not reported``.
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """The run a model serves, if any, and how every candidate fared."""

    chosen: Candidate | None
    #: Newest first.
    judged: tuple[GateResult, ...]

    @property
    def reason(self) -> str:
        """Why this run, or why none: what a status document says."""
        if self.chosen is not None:
            passed = next(j for j in self.judged if j.run == self.chosen.run)
            return f"run {self.chosen.run}" + (
                f" passed: {'; '.join(passed.evidence)}" if passed.evidence else ""
            )
        if not self.judged:
            return "no Succeeded run with an output yet"
        newest = self.judged[0]
        return f"no run passes its gates (newest, {newest.run}: {'; '.join(newest.evidence)})"


def judge_run(candidate: Candidate, gates: Sequence[MetricGate]) -> GateResult:
    evidence: list[str] = []
    passed = True
    for gate in gates:
        value = candidate.metrics.get(gate.metric)
        if value is None:
            passed = False
            why = candidate.unanswered.get(gate.metric, "not reported")
            evidence.append(f"{gate.metric} {why}: fails")
            continue
        if gate.min is not None and value < gate.min:
            passed = False
            evidence.append(f"{gate.metric} {value:g} < min {gate.min:g}")
        elif gate.max is not None and value > gate.max:
            passed = False
            evidence.append(f"{gate.metric} {value:g} > max {gate.max:g}")
        else:
            evidence.append(f"{gate.metric} {value:g} {_within(gate)}")
    return GateResult(run=candidate.run, passed=passed, evidence=tuple(evidence))


def _within(gate: MetricGate) -> str:
    bounds = []
    if gate.min is not None:
        bounds.append(f">= {gate.min:g}")
    if gate.max is not None:
        bounds.append(f"<= {gate.max:g}")
    return " and ".join(bounds)


def choose_run(
    candidates: Sequence[Candidate], *, selection: RunSelection, gates: Sequence[MetricGate]
) -> Choice:
    newest_first = sorted(candidates, key=lambda c: (c.completion_time, c.run), reverse=True)
    judged = tuple(judge_run(c, gates) for c in newest_first)
    passing = [c for c, j in zip(newest_first, judged, strict=True) if j.passed]
    if selection.by == "best":
        metric = selection.metric
        assert metric is not None  # noqa: S101 - RunSelection guarantees it
        ranked = [c for c in passing if metric in c.metrics]
        sign = 1 if selection.order == "max" else -1
        # max() keeps the first of equals, and the list is newest first: a tie goes
        # to the newer run.
        chosen = max(ranked, key=lambda c: sign * c.metrics[metric], default=None)
    else:
        chosen = passing[0] if passing else None
    return Choice(chosen=chosen, judged=judged)


@dataclass(frozen=True, slots=True, kw_only=True)
class Promotion:
    """What a model following an upstream one may serve now."""

    #: The upstream's storageUri to serve, or None to keep what is served (or wait).
    take: str | None
    #: The upstream's status document the decision read, for lineage in the status.
    upstream: StatusDocument | None
    #: Why not (yet), when ``take`` is None.
    waiting: str | None = None
    #: When the hold ends: a quiet daemon must look again then.
    due: datetime | None = None


def decide_promotion(
    upstream: Upstream, document: StatusDocument | None, *, now: datetime
) -> Promotion:
    if document is None:
        where = f" from instance {upstream.instance}" if upstream.instance else ""
        return Promotion(
            take=None, upstream=None, waiting=f"no status of {upstream.name}{where} yet"
        )
    who = f"ModelDeployment {document.namespace}/{document.name}"
    served = document.model.storage_uri if document.model else None
    if (obstacle := _obstacle(document)) is not None or served is None:
        return Promotion(take=None, upstream=document, waiting=f"{who} {obstacle}")
    ready = next(c for c in document.conditions if c.type == "Ready")
    # Ready may have stayed true while the model under it changed: the hold counts
    # from the later of the two, so a new model proves itself for the whole hold.
    times = (parse_time(ready.last_transition_time), _served_since(document))
    since = max((t for t in times if t is not None), default=None)
    hold = timedelta(seconds=parse_duration(upstream.healthy_for))
    if since is None and hold:
        return Promotion(take=None, upstream=document, waiting=f"{who} has no Ready time")
    due = (since or now) + hold
    if now < due:
        return Promotion(
            take=None,
            upstream=document,
            waiting=f"{who} Ready since {format_time(since or now)}; "
            f"healthyFor {upstream.healthy_for} ends {format_time(due)}",
            due=due,
        )
    return Promotion(take=served, upstream=document)


def _obstacle(document: StatusDocument) -> str | None:
    """What keeps the upstream model from being promoted, or None."""
    if document.model is None or document.model.storage_uri is None:
        return "serves no model yet"
    if document.phase is not Phase.HEALTHY:
        return f"is {document.phase.value}, not Healthy"
    if document.rollout is not None and (blocked := _BLOCKING_ROLLOUTS.get(document.rollout.phase)):
        return blocked
    if not any(c.type == "Ready" and c.status == "True" for c in document.conditions):
        return "is not Ready"
    return None


def _served_since(document: StatusDocument) -> datetime | None:
    return parse_time(document.model.served_since) if document.model else None
