"""How a model chooses what to serve from upstream: which training run (``select``),
what a run must show first (``gates``), and which model it follows between
environments (``fromModelDeployment``).

A gate is the quality bar between training and serving, the step a Kubeflow
Pipeline writes as an "evaluate" component before its KServe component; here it is
declared beside the model, so the bar is reviewed in the same pull request as the
model it guards. Promotion follows Kargo's and GitOps Promoter's idea of a stage
that takes what the previous stage verified, kept to what a model needs: serve what
the upstream model serves once it has been healthy (and its analysis passing) for a
declared time.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from gitsync.specs.common import (
    DNS1123_LABEL,
    INSTANCE_NAME,
    DnsLabel,
    Duration,
    Provider,
    StrictModel,
)

__all__ = ["MetricGate", "RunSelection", "Upstream"]

MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")]


class RunSelection(StrictModel):
    """Which of the runs that pass every gate a model serves."""

    by: Literal["latest", "best"] = Field(
        default="latest", description="latest: the newest passing run; best: by `metric`"
    )
    metric: MetricName | None = Field(
        default=None, description="With by: best, the metric that ranks the runs"
    )
    order: Literal["max", "min"] = Field(
        default="max", description="With by: best, whether a higher or lower value is better"
    )

    @model_validator(mode="after")
    def _best_names_a_metric(self) -> RunSelection:
        if self.by == "best" and self.metric is None:
            raise ValueError("select.by: best needs the metric that ranks the runs")
        if self.by == "latest" and self.metric is not None:
            raise ValueError("select.metric ranks runs only with by: best")
        return self


class MetricGate(StrictModel):
    """A bound a run's metric must meet before the run is served.

    The value is what the run reported (a TrainJob's ``trainerStatus.metrics``), or,
    with ``query``, what Prometheus answers for the run: an offline evaluation job
    that pushes its scores, or the run's own exported metrics. A metric that is
    missing, not a number, or not answered fails the gate: no evidence is never a
    pass.
    """

    metric: MetricName
    min: float | None = None
    max: float | None = None
    query: str | None = Field(
        default=None,
        min_length=1,
        description="PromQL giving the metric for one run; {{run}}, {{trainingRun}} and "
        "{{namespace}} are the run's job name, its TrainingRun and their namespace",
    )
    provider: Provider | None = Field(default=None, description="Where `query` is asked")

    @model_validator(mode="after")
    def _has_a_bound(self) -> MetricGate:
        if self.min is None and self.max is None:
            raise ValueError("a gate needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        if (self.query is None) != (self.provider is None):
            raise ValueError("query and provider go together: the query is asked of the provider")
        return self


class Upstream(StrictModel):
    """The ModelDeployment whose model this one takes once that one has proven itself."""

    name: Annotated[str, StringConstraints(pattern=DNS1123_LABEL, max_length=63)]
    namespace: DnsLabel | None = Field(default=None, description="Default: this model's")
    instance: Annotated[str, StringConstraints(pattern=INSTANCE_NAME)] | None = Field(
        default=None,
        description="The gitsync instance that reconciles it, when not this one (staging's "
        "cluster): its status is read from that instance's folder of the shared status "
        "branch. Needs namespace: the other repo's default namespace is not this one's",
    )
    healthy_for: Duration = Field(
        default="0s",
        description="How long the upstream model must have been Ready, with no failing "
        "analysis, before this one takes it",
    )

    @model_validator(mode="after")
    def _another_instance_names_the_namespace(self) -> Upstream:
        if self.instance is not None and self.namespace is None:
            raise ValueError(
                f"instance {self.instance!r} needs namespace: the upstream's repo has "
                "defaults of its own"
            )
        return self
