"""The example spec repo, loaded and rendered as the reconciler would."""

from __future__ import annotations

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
from gitsync.render import RenderContext, render
from gitsync.specs import Config

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


def rendered_examples(*, instance: str = "examples") -> list[dict[str, Any]]:
    config, loaded = load_examples()
    assert not loaded.diagnostics, loaded.diagnostics
    context = RenderContext(
        instance=instance,
        default_namespace=config.defaults.namespace,
        source_commits={entry.path: "0" * 40 for entry in loaded.entries},
    )
    return [render(entry, context) for entry in loaded.entries]
