"""The specs of one commit: its gitsync.yaml, every spec file loaded, and their blobs.

Shared by the reconciler (the head of the branch, every cycle) and ``gitsync plan``
(the base and head of a pull request), so both read a revision the same way. Parsed
files are cached by blob id: a file that did not change is not parsed again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gitsync.cache import DiskCache
from gitsync.loading import (
    CONFIG_FILE,
    Diagnostic,
    FileResult,
    LoadResult,
    Parsed,
    Severity,
    document_lines,
    load_config,
    load_documents,
    load_file,
    load_parsed,
    load_tree,
    parse_yaml,
    select_paths,
    unreadable,
)
from gitsync.policy import PolicySet, ProgramStore, load_library
from gitsync.sharding import WHOLE, Shard
from gitsync.specs import Config, Defaults

if TYPE_CHECKING:
    # Only its type: `gitsync validate` reads a folder, and needs no pygit2.
    from gitsync.clients.git import Repository

__all__ = ["Snapshot", "read_folder", "read_snapshot"]


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
    #: The shipped policy library plus the repo's own (gitsync.yaml ``policies``).
    policies: PolicySet = field(default_factory=lambda: PolicySet(()))
    #: Warnings from loading the policies (a repo policy replacing a shipped one).
    policy_warnings: tuple[Diagnostic, ...] = ()


def read_snapshot(
    repo: Repository,
    commit: str,
    *,
    root: str = "",
    parsed: Mapping[str, FileResult] | None = None,
    documents: DiskCache | None = None,
    programs: ProgramStore | None = None,
    shard: Shard = WHOLE,
) -> Snapshot:
    """Load ``root`` of ``commit`` and its policies. With an invalid gitsync.yaml or
    policy, nothing else is loaded. ``documents`` keeps each spec file's YAML as data
    by blob id beyond this process (validated again each time it is used), and
    ``programs`` the compiled policies (see :mod:`gitsync.policy.compile`). A
    ``shard`` loads only the spec files it owns (gitsync.yaml and the policies are
    every shard's)."""
    listing = repo.listing(commit, under=root.strip("/"))
    return _read(
        listing.files,
        listing.others,
        repo.read_blob,
        commit=commit,
        root=root,
        parsed=parsed,
        documents=documents,
        programs=programs,
        shard=shard,
    )


def read_folder(folder: Path, *, default_namespace: str | None = None) -> Snapshot:
    """The same for a folder on disk (``gitsync validate`` of uncommitted work);
    ``default_namespace`` replaces gitsync.yaml's ``defaults.namespace``."""
    files: dict[str, str] = {}
    others: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if ".git" in relative.parts:
            continue
        if path.is_symlink():
            others[relative.as_posix()] = "symbolic link"
        elif path.is_file():
            files[relative.as_posix()] = str(path)
        elif path.is_dir():
            others[relative.as_posix()] = "folder"
    return _read(
        files,
        others,
        lambda where: Path(where).read_bytes(),
        commit="",
        root="",
        parsed=None,
        documents=None,
        default_namespace=default_namespace,
    )


def _load(
    path: str, blob: str, read: Callable[[str], bytes], documents: DiskCache | None
) -> FileResult:
    """One spec file, its YAML parsed at most once per cache, and read only when it
    was not (a thousand blobs read took a fiftieth of a one-change sync)."""
    if documents is None:
        return load_file(path, read(blob))
    cached = documents.get(blob)
    if (
        isinstance(cached, dict)
        and cached.keys() == {"documents", "lines"}
        and isinstance(found := cached["documents"], list)
        and isinstance(lines := cached["lines"], list)
        and all(type(line) is int for line in lines)
    ):
        return load_documents(path, found, lines=lines, content=lambda: read(blob))
    content = read(blob)
    parsed = parse_yaml(path, content)
    result = load_parsed(path, content, parsed)
    if isinstance(parsed, Parsed) and not result.diagnostics:
        documents.put(blob, {"documents": list(parsed.documents), "lines": document_lines(content)})
    return result


def _read(
    files: Mapping[str, str],
    others: Mapping[str, str],
    read: Callable[[str], bytes],
    *,
    commit: str,
    root: str,
    parsed: Mapping[str, FileResult] | None,
    documents: DiskCache | None,
    programs: ProgramStore | None = None,
    default_namespace: str | None = None,
    shard: Shard = WHOLE,
) -> Snapshot:
    """``files`` maps each path to what ``read`` takes to get its bytes (a blob id, a
    file name); that handle also keys the parse cache. ``others`` says what each path
    that is no regular file is."""
    root = root.strip("/")
    config_path = f"{root}/{CONFIG_FILE}" if root else CONFIG_FILE
    config, problems = Config(), list[Diagnostic]()
    if (config_blob := files.get(config_path)) is not None:
        config, problems = load_config(read(config_blob), path=config_path)
    if default_namespace is not None:
        config = config.model_copy(update={"defaults": Defaults(namespace=default_namespace)})
    policies, policy_problems = _library(
        tuple(_policy_sources(files, read, root=root, folders=config.policies)), programs
    )
    problems += [p for p in policy_problems if p.severity is Severity.ERROR]
    if problems:
        # Without its defaults (or with fewer policies than it declares) a repo cannot
        # be read as its authors meant it.
        return Snapshot(commit, config, tuple(problems), LoadResult(), {})
    known = parsed or {}
    results, fresh = [], {}
    paths = [p for p in select_paths(files, root=root, config=config) if shard.owns(p)]
    for path in paths:
        key = f"{files[path]}:{path}"
        result = known.get(key) or _load(path, files[path], read, documents)
        fresh[key] = result
        results.append(result)
    results += [
        unreadable(path, others[path])
        for path in select_paths(others, root=root, config=config)
        if path not in files and shard.owns(path)
    ]
    loaded = load_tree(results, default_namespace=config.defaults.namespace, whole=shard == WHOLE)
    return Snapshot(
        commit=commit,
        config=config,
        config_diagnostics=(),
        loaded=loaded,
        blobs={path: files[path] for path in paths},
        parsed=fresh,
        policies=policies,
        policy_warnings=tuple(p for p in policy_problems if p.severity is Severity.WARNING),
    )


def _policy_sources(
    files: Mapping[str, str],
    read: Callable[[str], bytes],
    *,
    root: str,
    folders: Sequence[str],
) -> list[tuple[str, bytes]]:
    prefixes = [f"{root}/{f.strip('/')}/" if root else f"{f.strip('/')}/" for f in folders]
    return [
        (path, read(handle))
        for path, handle in sorted(files.items())
        if path.endswith((".yaml", ".yml")) and any(path.startswith(p) for p in prefixes)
    ]


@functools.lru_cache(maxsize=8)
def _library(
    sources: tuple[tuple[str, bytes], ...], programs: ProgramStore | None
) -> tuple[PolicySet, list[Diagnostic]]:
    # The same policy files give the very same PolicySet object, so a daemon does not
    # recompile them each cycle and can tell, by identity, that they did not change.
    return load_library(extra_sources=sources, programs=programs)
