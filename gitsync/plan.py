"""What a pull request will do, in words a reviewer of an ML change cares about.

Pure: from the specs and rendered objects of a base and a head revision (and, when a
cluster is reachable, what a server-side dry-run says the head objects would become
next to the live ones) to a :class:`Plan`, rendered as one Markdown pull-request
comment or as JSON. The words come first (model v7 -> v8, a GPU more, a new training
run), the object diffs last, folded.

Exit codes follow terraform's ``-detailed-exitcode``: 0 no change, 2 changes, 1 errors.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitsync.diff import holds, normalize, object_diff
from gitsync.loading import Diagnostic, Entry
from gitsync.quantity import Quantity
from gitsync.redact import redact
from gitsync.render import (
    comparable,
    run_name,
    without_provenance,
)
from gitsync.rollout import COMMAND_ANNOTATION, STATE_ANNOTATION
from gitsync.specs import (
    Metric,
    ModelDeployment,
    Resources,
    Rollout,
    TrainingRun,
    Transformer,
    parse_duration,
)
from gitsync.specs.pipeline import MetricGate
from gitsync.types import ObjectRef

__all__ = ["LiveView", "PipelineStep", "Plan", "PlanAction", "SpecChange", "make_plan", "pipelines"]


class PlanAction(enum.Enum):
    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class ObjectChange:
    key: ObjectRef
    action: PlanAction
    diff: str


@dataclass(frozen=True, slots=True)
class SpecChange:
    kind: str
    namespace: str
    name: str
    path: str
    action: PlanAction
    summary: tuple[str, ...]
    objects: tuple[ObjectChange, ...]


@dataclass(frozen=True, slots=True)
class LiveView:
    """For one head object: the live object (None if absent) and the server's dry-run
    of applying the head object to it."""

    live: Mapping[str, Any] | None
    dry_run: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PipelineStep:
    """One spec of a pipeline: a TrainingRun, or a model fed by the step above it."""

    key: ObjectRef
    #: What it does in the pipeline: what trains, what it is gated on, whence promoted.
    words: str
    #: What this change does to it; None when it is unchanged.
    action: PlanAction | None
    then: tuple[PipelineStep, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": str(self.key),
            "action": self.action.value if self.action else None,
            "words": self.words,
            "then": [step.to_json() for step in self.then],
        }

    def to_markdown(self, depth: int = 0) -> list[str]:
        where = f"{self.key.namespace}/{self.key.name}" if self.key.namespace else self.key.name
        marker = f" **({self.action.value})**" if self.action else ""
        line = f"{'  ' * depth}- {self.key.kind} `{where}`{marker}: {self.words}"
        return [line, *(line for step in self.then for line in step.to_markdown(depth + 1))]


@dataclass(frozen=True, slots=True)
class Plan:
    base: str
    head: str
    changes: tuple[SpecChange, ...]
    diagnostics: tuple[Diagnostic, ...] = ()
    against_cluster: bool = False
    policy_lines: tuple[str, ...] = ()
    policy_denied: bool = False
    drift: tuple[str, ...] = field(default_factory=tuple)
    #: The pipelines this change touches, each a tree from where its model comes from.
    pipelines: tuple[PipelineStep, ...] = ()

    @property
    def exit_code(self) -> int:
        if self.diagnostics or self.policy_denied:
            return 1
        return 2 if self.changes else 0

    def counts(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for change in self.changes:
            row = table.setdefault(change.kind, {a.value: 0 for a in PlanAction})
            row[change.action.value] += 1
        return table

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "head": self.head,
            "againstCluster": self.against_cluster,
            "exitCode": self.exit_code,
            "counts": self.counts(),
            "changes": [
                {
                    "kind": c.kind,
                    "namespace": c.namespace,
                    "name": c.name,
                    "path": c.path,
                    "action": c.action.value,
                    "summary": list(c.summary),
                    "objects": [
                        {"object": str(o.key), "action": o.action.value, "diff": o.diff}
                        for o in c.objects
                    ],
                }
                for c in self.changes
            ],
            "errors": [d.as_dict() for d in self.diagnostics],
            "policies": list(self.policy_lines),
            "drift": list(self.drift),
            "pipelines": [step.to_json() for step in self.pipelines],
        }

    def to_markdown(self) -> str:
        totals = {a: sum(1 for c in self.changes if c.action is a) for a in PlanAction}
        title = ", ".join(f"{totals[a]} to {verb}" for a, verb in _VERBS.items())
        compared = (
            "compared with the live cluster (server-side dry-run)"
            if self.against_cluster
            else "compared with the rendered base (no cluster)"
        )
        lines = [
            f"## gitsync plan: {title}",
            "",
            f"base `{self.base[:7]}` → head `{self.head[:7]}`, {compared}",
            "",
        ]
        if self.changes:
            lines += ["| Kind | Added | Changed | Removed |", "|---|---|---|---|"]
            for kind, row in sorted(self.counts().items()):
                lines.append(f"| {kind} | {row['added']} | {row['changed']} | {row['removed']} |")
            lines.append("")
        else:
            lines += ["No change.", ""]
        if self.diagnostics:
            lines += ["### Validation errors", ""]
            lines += [
                f"- `{d.path}:{d.line}` {d.field + ': ' if d.field else ''}{d.message}"
                for d in self.diagnostics
            ]
            lines += ["", "Nothing from these files is applied or pruned until they are fixed.", ""]
        if self.policy_lines:
            lines += ["### Policies", "", *self.policy_lines, ""]
        if self.pipelines:
            lines += ["### Pipelines", ""]
            for step in self.pipelines:
                lines += step.to_markdown()
            lines.append("")
        if self.drift:
            lines += ["### Drift (the cluster differs from the base)", ""]
            lines += [f"- {item}" for item in self.drift]
            lines.append("")
        for change in self.changes:
            where = f"{change.namespace}/{change.name}" if change.namespace else change.name
            lines += [f"### {change.kind} {where} ({change.action.value})", ""]
            lines += [f"- {line}" for line in change.summary]
            lines.append("")
            for obj in change.objects:
                if not obj.diff:
                    continue
                lines += [
                    f"<details><summary>{obj.key} ({obj.action.value})</summary>",
                    "",
                    "```diff",
                    obj.diff.rstrip("\n"),
                    "```",
                    "</details>",
                    "",
                ]
        return "\n".join(lines).rstrip("\n") + "\n"


_VERBS = {PlanAction.ADDED: "add", PlanAction.CHANGED: "change", PlanAction.REMOVED: "remove"}

#: Each entry with its rendering; None for one that waits on the cluster (a trained
#: model, a scheduled run between ticks).
Rendered = Sequence[tuple[Entry, Mapping[str, Any] | None]]


def make_plan(
    *,
    base_commit: str,
    head_commit: str,
    base: Rendered,
    head: Rendered,
    default_namespaces: tuple[str, str],
    diagnostics: Sequence[Diagnostic] = (),
    failed_paths: frozenset[str] = frozenset(),
    live: Mapping[ObjectRef, LiveView] | None = None,
    policy_lines: Sequence[str] = (),
) -> Plan:
    """Compare base and head; with ``live``, object diffs are live -> dry-run instead.

    A spec whose file fails to load at head is not a removal: sync keeps what it
    deployed until the file is fixed, and so does the plan.
    """
    base_ns, head_ns = default_namespaces
    before = {entry.key(base_ns): (entry, body) for entry, body in base}
    after = {entry.key(head_ns): (entry, body) for entry, body in head}
    changes: list[SpecChange] = []
    drift: list[str] = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if new is None and old is not None and old[0].path in failed_paths:
            continue
        old_body = comparable(normalize(old[1])) if old and old[1] is not None else None
        new_body = comparable(normalize(new[1])) if new and new[1] is not None else None
        view = (
            live.get(ObjectRef.of(new[1]))
            if (live is not None and new and new[1] is not None)
            else None
        )
        if view is not None and old_body is not None and view.live is not None:
            live_body = comparable(normalize(view.live))
            if not holds(live_body, old_body):
                drift.append(f"{key}: the live object differs from what the base declares")
        if old_body == new_body and not (view and _differs(view)) and _same_spec(old, new):
            continue
        action = (
            PlanAction.ADDED
            if old is None
            else PlanAction.REMOVED
            if new is None
            else PlanAction.CHANGED
        )
        entry, body = new or old or (None, None)
        if entry is None:  # pragma: no cover - a key comes from one side
            continue
        summary = _summary(old[0] if old else None, new[0] if new else None)
        # Provenance annotations change with every commit and say nothing to a reviewer.
        if view is not None:
            diff = (
                object_diff(_bare(view.live), _bare(view.dry_run), labels=("live", "head"))
                if _differs(view)
                else ""
            )
        else:
            diff = object_diff(
                _bare(old[1] if old else None),
                _bare(new[1] if new else None),
                labels=("base", "head"),
            )
        objects: tuple[ObjectChange, ...] = ()
        if body is not None:
            target = ObjectRef.of(body)
            renamed = old is not None and old[1] is not None and ObjectRef.of(old[1]) != target
            # A changed training spec is a new run: a new object, not a changed one.
            objects = (ObjectChange(target, PlanAction.ADDED if renamed else action, diff),)
        changes.append(
            SpecChange(
                kind=key.kind,
                namespace=key.namespace,
                name=key.name,
                path=entry.path,
                action=action,
                summary=tuple(summary),
                objects=objects,
            )
        )
    actions = {ObjectRef.spec(c.kind, c.namespace, c.name): c.action for c in changes}
    return Plan(
        base=base_commit,
        head=head_commit,
        pipelines=pipelines(
            [entry for entry, _ in head], default_namespace=head_ns, actions=actions
        ),
        changes=tuple(changes),
        diagnostics=tuple(diagnostics),
        against_cluster=live is not None,
        drift=tuple(drift),
        policy_lines=tuple(policy_lines),
    )


def _same_spec(
    old: tuple[Entry, Mapping[str, Any] | None] | None,
    new: tuple[Entry, Mapping[str, Any] | None] | None,
) -> bool:
    """Whether two entries declare the same, for those that render to nothing yet."""
    if old is None or new is None:
        return old is new
    if old[1] is not None and new[1] is not None:
        return True  # compared by their renderings
    return old[0].spec == new[0].spec


def _bare(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if obj is None else _without_rollout_state(without_provenance(obj))


def _differs(view: LiveView) -> bool:
    if view.live is None:
        return True
    live, head = (_without_rollout_state(normalize(o)) for o in (view.live, view.dry_run))
    return comparable(live) != comparable(head)


def _without_rollout_state(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without the rollout's own bookkeeping: a cycle writes it back with the
    next decision, so a dry-run of the bare rendering (which lacks it) is no drift."""
    metadata = dict(obj.get("metadata") or {})
    annotations = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if k not in (STATE_ANNOTATION, COMMAND_ANNOTATION)
    }
    metadata["annotations"] = annotations
    return {**obj, "metadata": metadata}


# --- pipelines ------------------------------------------------------------------------


def pipelines(
    entries: Sequence[Entry],
    *,
    default_namespace: str,
    actions: Mapping[ObjectRef, PlanAction],
) -> tuple[PipelineStep, ...]:
    """Each chain from a source (a TrainingRun, or a model with a fixed URI that others
    follow) through the models fed from it, for the chains this change touches.

    A reviewer of a gate or a hold needs the whole chain: what a changed TrainingRun
    will feed, and to where its model will walk. A chain round a cycle has no source
    and is left out; ``validate`` reports it.
    """
    specs = {entry.key(default_namespace): entry for entry in entries if entry.spec is not None}
    fed: dict[ObjectRef, list[ObjectRef]] = {}
    for key, entry in specs.items():
        if (source := _source(entry, default_namespace)) is not None:
            fed.setdefault(source, []).append(key)

    def step(key: ObjectRef, seen: frozenset[ObjectRef]) -> PipelineStep:
        followers = sorted(k for k in fed.get(key, ()) if k not in seen)
        return PipelineStep(
            key=key,
            words=_step_words(specs[key].spec, key, actions.get(key)),
            action=actions.get(key),
            then=tuple(step(k, seen | {k}) for k in followers),
        )

    # A model promoted from another instance's starts its chain here: the chain's
    # upstream is declared where this repo cannot see it.
    roots = sorted(
        k
        for k, entry in specs.items()
        if _source(entry, default_namespace) is None and (k in fed or _follows_elsewhere(entry))
    )
    trees = [step(root, frozenset({root})) for root in roots]
    return tuple(tree for tree in trees if _touched(tree))


def _source(entry: Entry, default_namespace: str) -> ObjectRef | None:
    """Where a model of this repo takes its model from, in this repo."""
    spec = entry.spec
    if not isinstance(spec, ModelDeployment) or spec.spec.model is None:
        return None
    if _follows_elsewhere(entry):
        return None
    namespace = entry.namespace(default_namespace)
    return spec.spec.model.training_run(namespace) or spec.spec.model.upstream(namespace)


def _follows_elsewhere(entry: Entry) -> bool:
    spec = entry.spec
    model = spec.spec.model if isinstance(spec, ModelDeployment) else None
    return model is not None and model.follows_another_instance


def _touched(step: PipelineStep) -> bool:
    return step.action is not None or any(_touched(s) for s in step.then)


def _step_words(spec: object, key: ObjectRef, action: PlanAction | None) -> str:
    if isinstance(spec, TrainingRun):
        target = (
            f"TrainJob on {spec.spec.runtime_ref.name}"
            if spec.spec.runtime_ref
            else f"{spec.spec.framework} job"
        )
        if spec.spec.schedule:
            return f"trains a {target} on schedule `{spec.spec.schedule}`"
        starts = "; it starts on merge" if action in (PlanAction.ADDED, PlanAction.CHANGED) else ""
        return f"trains a {target} as run `{run_name(spec)}`{starts}"
    assert isinstance(spec, ModelDeployment)  # noqa: S101 - only models are fed
    model = spec.spec.model
    if model is None or (model.from_training_run is None and model.from_model_deployment is None):
        return f"serves {spec.spec.serves()}"
    if (upstream := model.from_model_deployment) is not None:
        source = model.upstream(key.namespace)
        where = f" of instance `{upstream.instance}`" if upstream.instance else ""
        return (
            f"promoted from `{source.namespace}/{source.name}`{where}" if source else "promoted"
        ) + (
            f" once it has been Healthy, with no rollout in flight or rolled back, for "
            f"{upstream.healthy_for}"
        )
    select = model.select
    which = (
        f"the best run by {select.metric}" if select and select.by == "best" else "the latest run"
    )
    if not model.gates:
        return f"serves {which} that Succeeded, ungated"
    return f"serves {which} that passes " + ", ".join(_gate_words(gate) for gate in model.gates)


def _gate_words(gate: MetricGate) -> str:
    bounds = [
        f">= {gate.min:g}" if gate.min is not None else "",
        f"<= {gate.max:g}" if gate.max is not None else "",
    ]
    where = (
        # A pull-request comment is public to every reviewer: no credentials in it.
        f"as Prometheus `{redact(gate.provider.prometheus.address)}` answers `{gate.query}`"
        if gate.query is not None and gate.provider is not None
        else "as the run reports it"
    )
    return f"{gate.metric} {' and '.join(b for b in bounds if b)} ({where})"


# --- words ----------------------------------------------------------------------------


def _summary(old: Entry | None, new: Entry | None) -> list[str]:
    either = new or old
    spec = either.spec if either else None
    if isinstance(spec, ModelDeployment):
        return _model_words(
            old.spec if old and isinstance(old.spec, ModelDeployment) else None,
            new.spec if new and isinstance(new.spec, ModelDeployment) else None,
        )
    if isinstance(spec, TrainingRun):
        return _run_words(
            old.spec if old and isinstance(old.spec, TrainingRun) else None,
            new.spec if new and isinstance(new.spec, TrainingRun) else None,
        )
    if new is None:
        return ["removed from Git: it will be pruned"]
    return ["applied as written" if old is None else "changed as written"]


def _model_words(old: ModelDeployment | None, new: ModelDeployment | None) -> list[str]:
    if new is None:
        assert old is not None  # noqa: S101 - one side always exists
        return [f"model {old.spec.serves()} stops serving: the InferenceService is pruned"]
    model = new.spec.model
    if old is None:
        words = [
            f"new model {new.spec.serves()}"
            + (
                f" ({model.format}"
                + (f" {model.runtime_version}" if model.runtime_version else "")
                + ")"
                if model is not None
                else ""
            ),
            f"replicas {new.spec.replica_range()}",
        ]
        if new.spec.overrides:
            words.append(f"{len(new.spec.overrides)} override(s) applied to the object")
        words += _resource_words(None, new.spec.resources)
        # A model's first deployment is always direct, whatever its strategy.
        words.append("rollout: direct (first deployment), all traffic once Ready")
        return words
    was = old.spec.model
    words = []
    if old.spec.serves() != new.spec.serves():
        words.append(f"model {old.spec.serves()} → {new.spec.serves()}")
    for label, a, b in (
        ("format", was and was.format, model and model.format),
        ("runtime", was and was.runtime, model and model.runtime),
        ("runtime version", was and was.runtime_version, model and model.runtime_version),
    ):
        if a != b:
            words.append(f"{label} {a or '(default)'} → {b or '(default)'}")
    if old.spec.replica_range() != new.spec.replica_range():
        words.append(f"replicas {old.spec.replica_range()} → {new.spec.replica_range()}")
    words += _resource_words(old.spec.resources, new.spec.resources)
    before_images, after_images = _images(old.spec.transformer), _images(new.spec.transformer)
    if before_images != after_images:
        words.append(f"transformer {before_images} → {after_images}")
    if old.spec.overrides != new.spec.overrides:
        words.append(
            f"overrides: {len(old.spec.overrides)} → {len(new.spec.overrides)} patch(es), "
            "applied as the object diff shows"
        )
    if not words and old.spec.model_copy(update={"rollout": new.spec.rollout}) != new.spec:
        words.append("other settings (pods, scaling, explainer, ...) change as the diff shows")
    predictor_changed = bool(words)
    if predictor_changed:
        words.append(_rollout_words(new.spec.rollout))
    return words or ["metadata only (labels or annotations)"]


def _rollout_words(rollout: Rollout) -> str:
    """The rollout a predictor change will run: steps, pauses, gates, rough duration."""
    if rollout.strategy == "direct":
        return "rollout: direct, the new revision takes all traffic once Ready"
    steps, known, open_ended = [], 0.0, False
    for step in rollout.steps:
        if step.pause == "indefinite":
            steps.append(f"{step.traffic}% (until promoted)")
            open_ended = True
        else:
            steps.append(f"{step.traffic}% ({_seconds(parse_duration(step.pause))})")
            known += parse_duration(step.pause)
    words = f"rollout: canary {' → '.join(steps)} → 100%"
    if rollout.analysis is not None:
        analysis = rollout.analysis
        gates = ", ".join(_gate(metric) for metric in analysis.metrics)
        interval = parse_duration(analysis.interval)
        words += (
            f"; gated by {gates} every {_seconds(interval)}, rolled back after "
            f"{analysis.failure_limit} failed measurements"
        )
        known = max(known, interval * len(rollout.steps))
    words += f"; Ready within {rollout.progress_deadline} or rolled back"
    duration = f"at least {_seconds(known)}" + (" plus a manual promote" if open_ended else "")
    if rollout.paused:
        duration = "held: paused in the spec"
    return f"{words}; takes {duration}"


def _gate(metric: Metric) -> str:
    bounds = []
    if metric.max is not None:
        bounds.append(f"{metric.name} <= {metric.max:g}")
    if metric.min is not None:
        bounds.append(f"{metric.name} >= {metric.min:g}")
    if metric.max_increase is not None:
        bounds.append(f"{metric.name} <= stable + {metric.max_increase:g}")
    return " and ".join(bounds)


def _seconds(value: float) -> str:
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{seconds}s" if seconds else "",
    ]
    return "".join(parts) or "0s"


def _images(transformer: Transformer | None) -> str:
    if transformer is None:
        return "(none)"
    if transformer.image is not None:
        return transformer.image
    return ", ".join(container.image for container in transformer.containers)


def _resource_words(old: Resources | None, new: Resources | None) -> list[str]:
    words = []
    for section in ("requests", "limits"):
        before = dict(getattr(old, section)) if old else {}
        after = dict(getattr(new, section)) if new else {}
        for name in sorted(before.keys() | after.keys()):
            a, b = before.get(name), after.get(name)
            if a == b:
                continue
            label = "GPU" if name == "nvidia.com/gpu" else name
            was, now = ("-" if v is None else v for v in (a, b))
            words.append(f"{label} {section[:-1]} {was} → {now}")
    return words


def _run_words(old: TrainingRun | None, new: TrainingRun | None) -> list[str]:
    if new is None:
        assert old is not None  # noqa: S101
        return [f"removed: a running `{run_name(old)}` is stopped; finished runs are kept"]
    spec = new.spec
    # Exact: "500m" or 1.5 GPUs per replica are fractions a float-to-int cast would lose.
    gpus = None
    if spec.runtime_ref is not None:
        nodes = spec.num_nodes
        shape = f"TrainJob on {spec.runtime_ref.kind} {spec.runtime_ref.name}, " + (
            f"{nodes} node(s)" if nodes else "the runtime's nodes"
        )
        limit = spec.resources.limits.get("nvidia.com/gpu") if spec.resources else None
        gpus = Quantity.of(limit) * nodes if limit and nodes else None
    else:
        shape = f"{spec.framework}, " + ", ".join(
            f"{role} {count}" for role, count in sorted(spec.replicas.items())
        )
        for role, workload in spec.workloads().items():
            limit = workload.resources.limits.get("nvidia.com/gpu") if workload.resources else None
            if limit:
                gpus = (gpus or Quantity.of(0)) + Quantity.of(limit) * spec.replicas[role]
    image = f"image `{spec.image}`" if spec.image else "the runtime's image"
    start = f"starts run `{run_name(new)}` ({shape}; {image}"
    start += f"; {gpus} GPU(s) in all)" if gpus is not None else ")"
    if old is None:
        return [start]
    words = [start, f"the previous run `{run_name(old)}` is kept (runs are immutable)"]
    if old.spec.image != new.spec.image:
        words.append(f"image `{old.spec.image}` → `{new.spec.image}`")
    return words
