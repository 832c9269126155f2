"""The specs of one commit: its gitsync.yaml, every spec file loaded, and their blobs.

Shared by the reconciler (the head of the branch, every cycle) and ``gitsync plan``
(the base and head of a pull request), so both read a revision the same way. Parsed
files are cached by blob id: a file that did not change is not parsed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gitsync.clients.git import Repository
from gitsync.loading import (
    CONFIG_FILE,
    Diagnostic,
    FileResult,
    LoadResult,
    load_config,
    load_file,
    load_tree,
    select_paths,
)
from gitsync.specs import Config

__all__ = ["Snapshot", "read_snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    commit: str
    config: Config
    config_diagnostics: tuple[Diagnostic, ...]
    loaded: LoadResult
    #: The selected spec files, path -> blob id.
    blobs: Mapping[str, str]
    #: Parsed files by "blob:path", to pass to the next read.
    parsed: Mapping[str, FileResult] = field(default_factory=dict)


def read_snapshot(
    repo: Repository,
    commit: str,
    *,
    root: str = "",
    parsed: Mapping[str, FileResult] | None = None,
) -> Snapshot:
    """Load ``root`` of ``commit``. With an invalid gitsync.yaml nothing else is loaded:
    without its defaults the specs cannot be read as their authors meant them."""
    root = root.strip("/")
    files = repo.files(commit, under=root)
    config_path = f"{root}/{CONFIG_FILE}" if root else CONFIG_FILE
    config, problems = Config(), list[Diagnostic]()
    if (config_blob := files.get(config_path)) is not None:
        config, problems = load_config(repo.read_blob(config_blob), path=config_path)
    if problems:
        return Snapshot(commit, config, tuple(problems), LoadResult(), {})
    known = parsed or {}
    results, fresh = [], {}
    paths = select_paths(files, root=root, config=config)
    for path in paths:
        key = f"{files[path]}:{path}"
        result = known.get(key) or load_file(path, repo.read_blob(files[path]))
        fresh[key] = result
        results.append(result)
    loaded = load_tree(results, default_namespace=config.defaults.namespace)
    return Snapshot(
        commit=commit,
        config=config,
        config_diagnostics=(),
        loaded=loaded,
        blobs={path: files[path] for path in paths},
        parsed=fresh,
    )
