"""The example spec repo, loaded and rendered as the reconciler would."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from gitsync.loading import (
    CONFIG_FILE,
    LoadResult,
    load_config,
    load_file,
    load_tree,
    select_paths,
)
from gitsync.render import RenderContext, TrainedModel, render
from gitsync.render.training import run_name
from gitsync.specs import Config, ModelDeployment, TrainingRun
from gitsync.types import ObjectRef

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "repo"


def load_examples() -> tuple[Config, LoadResult]:
    config, problems = load_config((EXAMPLES / CONFIG_FILE).read_bytes())
    assert not problems, problems
    paths = [str(path.relative_to(EXAMPLES)) for path in sorted(EXAMPLES.rglob("*.yaml"))]
    results = [
        load_file(path, (EXAMPLES / path).read_bytes())
        for path in select_paths(paths, root="", config=config)
    ]
    return config, load_tree(results, default_namespace=config.defaults.namespace)


def walked_pipeline(loaded: LoadResult, *, default_namespace: str) -> dict[ObjectRef, TrainedModel]:
    """What each pipeline model of the examples serves once its pipeline has walked:
    the current run of the TrainingRun it is fed from, and for a follower what its
    upstream serves. Without runs a pipeline model is Pending and renders nothing, so
    this is how its InferenceService is rendered (and dry-run) at all."""
    runs = {
        entry.key(default_namespace): entry.spec
        for entry in loaded.entries
        if isinstance(entry.spec, TrainingRun)
    }
    models = {
        entry.key(default_namespace): entry
        for entry in loaded.entries
        if isinstance(entry.spec, ModelDeployment) and entry.spec.spec.resolved
    }

    def served(key: ObjectRef) -> TrainedModel:
        entry = models[key]
        assert isinstance(entry.spec, ModelDeployment)
        namespace = entry.namespace(default_namespace)
        if (upstream := entry.spec.spec.upstream(namespace)) is not None:
            return replace(served(upstream), promoted_from=upstream)
        ref = entry.spec.spec.training_run(namespace)
        assert ref is not None
        run = runs[ref]
        name = run_name(run)
        assert run.spec.output is not None
        return TrainedModel(
            run=name,
            output_uri=run.spec.output.replace("{run}", name),
            completion_time="2026-12-01T00:00:00Z",
            source_commit="0" * 40,
        )

    return {key: served(key) for key in models}


def examples_context(config: Config, loaded: LoadResult, *, instance: str) -> RenderContext:
    """The examples' render context with their pipelines walked (see :func:`walked_pipeline`)."""
    namespace = config.defaults.namespace
    return RenderContext(
        instance=instance,
        default_namespace=namespace,
        source_commits={entry.path: "0" * 40 for entry in loaded.entries},
        trained=walked_pipeline(loaded, default_namespace=namespace),
    )


def rendered_examples(*, instance: str = "examples") -> list[dict[str, Any]]:
    config, loaded = load_examples()
    assert not loaded.diagnostics, loaded.diagnostics
    context = examples_context(config, loaded, instance=instance)
    return [render(entry, context) for entry in loaded.entries]
