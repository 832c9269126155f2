"""Policy files into a :class:`PolicySet`: from disk, from Git, and the shipped library.

Loading reports every problem of every file as a :class:`~gitsync.loading.Diagnostic`
(file, line, column, field, policy) instead of stopping at the first, because a
policy author fixes them all in one go; a policy with any problem is left out.

The shipped policies live in the repository's top-level ``policies/`` folder and
are installed as package data at ``gitsync/policy/shipped/`` (a link to that folder
in a source checkout), so they are found through :mod:`importlib.resources` both
from a checkout and from an installed wheel.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import pydantic
import yaml

from gitsync.errors import ConfigurationError
from gitsync.loading import (
    Diagnostic,
    Severity,
    document_lines,
    field_path,
    parse_yaml,
    validation_diagnostics,
)
from gitsync.policy import cel, locate
from gitsync.policy.compile import Policy, ProgramStore, compile_policy
from gitsync.policy.enforce import PolicySet
from gitsync.policy.models import PolicyDocument

__all__ = ["LIBRARY_DIR", "load_library", "load_policies", "load_policy_dirs"]

#: The shipped policy library. Resolved, so that in a source checkout diagnostics
#: name the file under ``policies/`` that an author would edit, not the link.
LIBRARY_DIR: Final = Path(str(importlib.resources.files("gitsync.policy") / "shipped")).resolve()


def load_policies(
    sources: Iterable[tuple[str, bytes]], *, programs: ProgramStore | None = None
) -> tuple[PolicySet, list[Diagnostic]]:
    """Parse, validate and compile ``(path, content)`` pairs of policy YAML;
    ``programs`` remembers compiled policies (see :mod:`gitsync.policy.compile`).

    A policy with any problem is left out and reported; callers should treat error
    diagnostics as a configuration failure rather than run with fewer policies.
    """
    policies: list[Policy] = []
    diagnostics: list[Diagnostic] = []
    where: dict[str, str] = {}
    for path, content in sources:
        for policy in _load_file(path, content, diagnostics, programs=programs):
            if policy.name in where:
                message = f"policy {policy.name!r} is also declared at {where[policy.name]}"
                diagnostics.append(Diagnostic(path, policy.line, 1, message, "metadata.name"))
                continue
            where[policy.name] = f"{path}:{policy.line}"
            policies.append(policy)
    return PolicySet(tuple(policies)), diagnostics


def load_policy_dirs(
    dirs: Iterable[Path | str], *, programs: ProgramStore | None = None
) -> tuple[PolicySet, list[Diagnostic]]:
    """Every ``*.yaml``/``*.yml`` file in ``dirs`` (not recursive), in name order."""
    return load_policies(_dir_sources(dirs), programs=programs)


def load_library(
    extra_dirs: Iterable[Path | str] = (),
    *,
    extra_sources: Iterable[tuple[str, bytes]] = (),
    library: Path | str = LIBRARY_DIR,
    programs: ProgramStore | None = None,
) -> tuple[PolicySet, list[Diagnostic]]:
    """The shipped policies plus those in ``extra_dirs`` and ``extra_sources`` (a spec
    repo's own policy files, read from Git); ``programs`` as for :func:`load_policies`.

    A repo policy named like a shipped one replaces it (say, to change its params),
    noted by a warning; two repo policies of one name are an error.
    """
    shipped, shipped_diagnostics = _shipped(str(library), programs)
    sources = [*_dir_sources(extra_dirs), *extra_sources]
    extra, extra_diagnostics = load_policies(sources, programs=programs)
    diagnostics = [*shipped_diagnostics, *extra_diagnostics]
    replaced = set(extra.names)
    for policy in extra:
        if (original := shipped.get(policy.name)) is not None:
            message = f"policy {policy.name!r} replaces the shipped one from {original.source}"
            diagnostics.append(
                Diagnostic(
                    policy.source, policy.line, 1, message, "metadata.name", Severity.WARNING
                )
            )
    kept = tuple(p for p in shipped if p.name not in replaced)
    return PolicySet(kept + extra.policies), diagnostics


@functools.cache
def _shipped(
    library: str, programs: ProgramStore | None
) -> tuple[PolicySet, tuple[Diagnostic, ...]]:
    # Compiling the library takes tens of milliseconds: once per process is enough.
    policies, diagnostics = load_policy_dirs([library], programs=programs)
    return policies, tuple(diagnostics)


def _dir_sources(dirs: Iterable[Path | str]) -> list[tuple[str, bytes]]:
    sources: list[tuple[str, bytes]] = []
    for directory in map(Path, dirs):
        if not directory.is_dir():
            raise ConfigurationError(f"policy folder {directory} does not exist")
        files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
        sources.extend((str(path), path.read_bytes()) for path in files)
    return sources


def _load_file(
    path: str, content: bytes, diagnostics: list[Diagnostic], *, programs: ProgramStore | None
) -> list[Policy]:
    read = parse_yaml(path, content)
    if isinstance(read, Diagnostic):
        diagnostics.append(read)
        return []
    starts = document_lines(content)
    policies = []
    for index, document in enumerate(read.documents):
        if document is None:
            continue
        line = starts[index] if index < len(starts) else 1
        if not isinstance(document, dict):
            message = f"a policy document must be a mapping, not a {type(document).__name__}"
            diagnostics.append(Diagnostic(path, line, 1, message))
            continue
        metadata = document.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        label = f"policy {name!r}" if isinstance(name, str) else "policy"
        try:
            parsed = PolicyDocument.model_validate(document)
        except pydantic.ValidationError as exc:
            found = validation_diagnostics(exc, PolicyDocument, node=read.node(index), path=path)
            diagnostics.extend(
                Diagnostic(d.path, d.line, d.column, f"{label}: {d.message}", d.field)
                for d in found
            )
            continue
        try:
            policies.append(compile_policy(parsed, source=path, line=line, store=programs))
        except cel.CompileError as exc:
            lines = content.decode("utf-8", errors="replace").splitlines()
            for loc, cel_line, cel_column, message in exc.problems:
                root = read.node(index)
                node = locate.node_at(root, loc) if root is not None else None
                if isinstance(node, yaml.ScalarNode):
                    at = locate.position(lines, node, cel_line, cel_column)
                else:
                    at = (line, 1)
                text = locate.excerpt(document, loc)
                diagnostics.append(
                    Diagnostic(path, *at, f"{label}: {message} in {text!r}", field_path(loc))
                )
    return policies
