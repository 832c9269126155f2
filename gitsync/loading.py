"""Turn the files of a spec repo into validated entries, or into precise diagnostics.

Pure: bytes in, entries and diagnostics out, so results can be cached by blob id and
tested with tables. Every problem is a :class:`Diagnostic` naming ``path:line:col``
and the field path; one bad file (or document) never stops the others.

Each file is parsed once, with libyaml (``CSafeLoader``), into nodes that are checked
before they become Python values, and kept to locate validation errors. A file is
*failed* -- its objects are kept, never pruned, and reported Invalid -- when its bytes
cannot be read as specs: over :data:`MAX_FILE_BYTES`, binary (a NUL byte), not UTF-8,
not YAML, a mapping with a key twice (YAML 1.2 says keys are unique; libyaml would
silently keep the last value, and a second ``metadata:`` would rename the object),
nested deeper than :data:`MAX_DEPTH`, aliases that would expand it beyond
:data:`MAX_EXPANDED_SIZE` (a "billion laughs" costs nothing to parse but gigabytes
once rendered), a gitsync kind under another apiVersion, or a path that is
not a regular file (a symbolic link, a folder, a submodule: :func:`unreadable`).

So the only removals gitsync prunes are the ones Git really made: a file deleted
(no entry of any kind left at its path), a document deleted from a file that still
loads, or a file renamed out of the selection; a rename within the selection
declares the same objects from the new path, so nothing is deleted.
"""

from __future__ import annotations

import enum
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

import pydantic
import yaml

from gitsync.errors import SpecError
from gitsync.specs import (
    API_VERSION,
    SPEC_MODELS,
    Config,
    ModelDeployment,
    Spec,
    TrainingRun,
    closest_name,
    model_for_location,
    suggest_field,
)
from gitsync.types import SPEC_GROUP, ObjectRef

__all__ = [
    "CONFIG_FILE",
    "MAX_DEPTH",
    "MAX_ERRORS_PER_FILE",
    "MAX_EXPANDED_SIZE",
    "MAX_FILE_BYTES",
    "Diagnostic",
    "Entry",
    "FileResult",
    "LoadResult",
    "Parsed",
    "Rejected",
    "Severity",
    "document_lines",
    "field_path",
    "load_config",
    "load_documents",
    "load_file",
    "load_parsed",
    "load_tree",
    "parse_yaml",
    "select_paths",
    "unreadable",
    "validation_diagnostics",
]

CONFIG_FILE = "gitsync.yaml"

#: A spec file larger than this is refused unread. The API server stores an object of
#: at most 1.5 MiB (etcd's request limit) and hand-written specs are a few KiB, so a
#: bigger file is a mistake (a model checked in by accident); the bound keeps a
#: cycle's parse time and memory small whatever lands in the repo.
MAX_FILE_BYTES: Final = 1 << 20
#: Deeper than any Kubernetes object (a CRD schema reaches ~30), well within the
#: recursion the rendering, policies and JSON encoding can afford.
MAX_DEPTH: Final = 100
#: How big a document may be once its aliases are expanded, counting one per node and
#: per character of a scalar: eight times the largest file, so aliases may share a
#: block many times over, but neither a "billion laughs" (billions of nodes) nor a
#: long string repeated by aliases (gigabytes) gets past it.
MAX_EXPANDED_SIZE: Final = 8 << 20
#: Diagnostics reported per file; the rest are counted. A thousand typos are fixed
#: the same way as twenty.
MAX_ERRORS_PER_FILE: Final = 20


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem, located as precisely as the input allows."""

    path: str
    line: int
    column: int
    message: str
    field: str = ""
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        level = "warning: " if self.severity is Severity.WARNING else ""
        return f"{self.path}:{self.line}:{self.column}: {level}{where}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
            "severity": self.severity.value,
        }


@dataclass(frozen=True, slots=True)
class Entry:
    """One valid document: a gitsync spec, or any other Kubernetes object as-is."""

    path: str
    document: int
    line: int
    spec: Spec | None = None
    manifest: Mapping[str, Any] | None = None
    #: Line and column of each of the spec's ``overrides``, which only rendering can
    #: find wrong (a patch path that is not in the rendered object).
    override_positions: tuple[tuple[int, int], ...] = ()

    def override_position(self, index: int) -> tuple[int, int]:
        """Where override ``index`` is written (the document's start if not known)."""
        if index < len(self.override_positions):
            return self.override_positions[index]
        return self.line, 1

    @property
    def kind(self) -> str:
        if self.spec is not None:
            return self.spec.kind
        assert self.manifest is not None  # noqa: S101 - an Entry holds one of the two
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        if self.spec is not None:
            return self.spec.metadata.name
        assert self.manifest is not None  # noqa: S101
        return str(self.manifest["metadata"]["name"])

    def namespace(self, default: str) -> str:
        """The namespace, with the repo default filled in for gitsync specs."""
        if self.spec is not None:
            return self.spec.metadata.namespace or default
        assert self.manifest is not None  # noqa: S101
        return str((self.manifest.get("metadata") or {}).get("namespace") or "")

    def key(self, default_namespace: str) -> ObjectRef:
        """Its identity; two entries of one identity are duplicates."""
        if self.spec is not None:
            return ObjectRef.spec(self.kind, self.namespace(default_namespace), self.name)
        assert self.manifest is not None  # noqa: S101
        return ObjectRef.of(self.manifest)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A document that failed validation but still names what it declares, so its
    status can say Invalid (and its objects are kept rather than pruned)."""

    path: str
    kind: str
    name: str
    namespace: str | None
    api_version: str = ""

    def key(self, default_namespace: str) -> ObjectRef:
        namespace = self.namespace or (default_namespace if self.kind in SPEC_MODELS else "")
        return ObjectRef(self.api_version.rpartition("/")[0], self.kind, namespace, self.name)


@dataclass(frozen=True, slots=True)
class FileResult:
    """What one file yields; cacheable by blob id since it depends only on the bytes."""

    path: str
    entries: tuple[Entry, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    rejected: tuple[Rejected, ...] = ()

    @property
    def failed(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Every valid entry, every diagnostic, and the paths that must not be pruned."""

    entries: tuple[Entry, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    failed_paths: frozenset[str] = field(default_factory=frozenset)
    rejected: tuple[Rejected, ...] = ()


# --- file selection ---------------------------------------------------------------


@cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob where ``**/`` spans any number of folders and ``*`` one name."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def select_paths(paths: Iterable[str], *, root: str, config: Config) -> list[str]:
    """The spec files among ``paths`` (repo-relative) under ``root``, by the config's globs."""
    prefix = f"{root.strip('/')}/" if root.strip("/") else ""
    selected = []
    for path in paths:
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix) :]
        if relative == CONFIG_FILE:
            continue
        if not any(_glob_regex(p).match(relative) for p in config.include):
            continue
        if any(_glob_regex(p).match(relative) for p in config.exclude):
            continue
        if any(relative.startswith(folder.strip("/") + "/") for folder in config.policies):
            continue  # policies, not specs
        selected.append(path)
    return sorted(selected)


# --- parsing ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parsed:
    """A file's documents as values, and as the nodes that locate their fields."""

    documents: tuple[object, ...]
    nodes: tuple[yaml.Node, ...]

    def node(self, index: int) -> yaml.Node | None:
        return self.nodes[index] if index < len(self.nodes) else None


class _Refused(SpecError):
    """Raised inside the node checks to stop at the first problem; never leaves here."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def _yaml_error(path: str, exc: yaml.YAMLError) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else 1
    problem = getattr(exc, "problem", None) or str(exc)
    return Diagnostic(path, line, column, f"invalid YAML: {problem}")


def _at_byte(path: str, content: bytes, offset: int, message: str) -> Diagnostic:
    line = content.count(b"\n", 0, offset) + 1
    column = offset - (content.rfind(b"\n", 0, offset) + 1) + 1
    return Diagnostic(path, line, column, f"{message} at byte {offset}")


def document_lines(content: bytes) -> list[int]:
    """First line of each document, found cheaply from ``---`` separators."""
    lines = [1]
    for number, raw in enumerate(content.splitlines(), start=1):
        if raw.startswith(b"---") and number > 1:
            lines.append(number)
    return lines


def parse_yaml(path: str, content: bytes) -> Parsed | Diagnostic:
    """Every document of a file, or the one reason it cannot be read as specs."""
    if len(content) > MAX_FILE_BYTES:
        return Diagnostic(
            path, 1, 1, f"file is {len(content)} bytes; spec files are at most {MAX_FILE_BYTES}"
        )
    if (nul := content.find(b"\0")) >= 0:
        return _at_byte(path, content, nul, "binary content: a NUL byte")
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _at_byte(path, content, exc.start, f"invalid UTF-8: byte 0x{content[exc.start]:02x}")
    loader = yaml.CSafeLoader(content)
    documents, nodes = [], []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # the stubs allow it; check_node said a node follows
                break
            _check(path, node)
            nodes.append(node)
            # Constructing after the checks: an alias is then one shared value, which
            # only later code (rendering, policies) would have expanded.
            try:
                documents.append(loader.construct_document(node))
            except (ValueError, TypeError, AttributeError, OverflowError) as exc:
                # libyaml's constructors raise these, not YAMLError, for a scalar that
                # its tag cannot hold (2001-02-30, !!int 'x'): the file's fault.
                mark = node.start_mark
                where = (mark.line + 1, mark.column + 1)
                raise _Refused(
                    Diagnostic(path, *where, f"a value YAML cannot read: {exc}")
                ) from exc
    except yaml.YAMLError as exc:
        return _yaml_error(path, exc)
    except _Refused as refused:
        return refused.diagnostic
    finally:
        loader.dispose()
    return Parsed(tuple(documents), tuple(nodes))


_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


def _check(path: str, root: yaml.Node) -> None:
    """Refuse duplicate keys, deep nesting and alias bombs, visiting each node once.

    ``sizes`` memoises each node's expanded size (nodes plus scalar characters) and
    height by identity: an alias is the very node it names, so a bomb is measured by
    arithmetic, not by expanding it.
    """
    sizes: dict[int, tuple[int, int]] = {}

    def refuse(node: yaml.Node, where: list[str | int], message: str) -> _Refused:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        return _Refused(Diagnostic(path, line, column, message, field_path(where)))

    def visit(node: yaml.Node, where: list[str | int], depth: int) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is None:
            if depth > MAX_DEPTH:
                raise refuse(node, where, f"nested deeper than {MAX_DEPTH} levels")
            known = measure(node, where, depth)
            sizes[id(node)] = known
        size, height = known
        if depth + height > MAX_DEPTH:
            raise refuse(node, where, f"nested deeper than {MAX_DEPTH} levels")
        if size > MAX_EXPANDED_SIZE:
            raise refuse(node, where, f"aliases expand this beyond {MAX_EXPANDED_SIZE} bytes")
        return known

    def measure(node: yaml.Node, where: list[str | int], depth: int) -> tuple[int, int]:
        children: list[tuple[yaml.Node, list[str | int]]] = []
        if isinstance(node, yaml.SequenceNode):
            children = [(item, [*where, i]) for i, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else ""
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    first = seen.setdefault((key.tag, name), key)
                    if first is not key:
                        line = first.start_mark.line + 1
                        raise refuse(
                            key, [*where, name], f"duplicate key {name!r} (first on line {line})"
                        )
                children += [(key, [*where, name]), (value, [*where, name])]
        size, height = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0), 0
        for child, at in children:
            child_size, child_height = visit(child, at, depth + 1)
            size, height = size + child_size, max(height, child_height + 1)
        return size, height

    visit(root, [], 0)


def load_config(content: bytes, *, path: str = CONFIG_FILE) -> tuple[Config, list[Diagnostic]]:
    """Parse ``gitsync.yaml``; on any problem, the defaults and the diagnostics."""
    parsed = parse_yaml(path, content)
    if isinstance(parsed, Diagnostic):
        return Config(), [parsed]
    data = parsed.documents[0] if parsed.documents else None
    if data is None:
        return Config(), []
    if not isinstance(data, dict):
        return Config(), [Diagnostic(path, 1, 1, "gitsync.yaml must be a mapping")]
    try:
        return Config.model_validate(data), []
    except pydantic.ValidationError as exc:
        return Config(), validation_diagnostics(exc, Config, node=parsed.node(0), path=path)


def unreadable(path: str, what: str) -> FileResult:
    """A selected path that is no regular file (a symbolic link, a folder): failed, so
    the objects it declared are kept until it is a file again or really removed."""
    message = f"a {what}, not a file: what it declared is kept, not pruned"
    return FileResult(path, diagnostics=(Diagnostic(path, 1, 1, message),))


def load_file(path: str, content: bytes) -> FileResult:
    """Every document of one YAML file, validated; never raises for bad input."""
    return load_parsed(path, content, parse_yaml(path, content))


def load_parsed(path: str, content: bytes, parsed: Parsed | Diagnostic) -> FileResult:
    """:func:`load_file` of what :func:`parse_yaml` made of ``content``."""
    if isinstance(parsed, Diagnostic):
        return FileResult(path, diagnostics=(parsed,))
    return _validate(path, document_lines(content), parsed.documents, parsed.node)


def load_documents(
    path: str,
    documents: Sequence[object],
    *,
    lines: Sequence[int],
    content: Callable[[], bytes],
) -> FileResult:
    """:func:`load_file` of documents parsed before (kept in a cache as data, with the
    first line of each, :func:`document_lines`): the same result. Validation runs
    again; a file with any problem, or with overrides, is read (``content``) and parsed
    again, for the positions its diagnostics give."""
    result = _validate(path, lines, documents, lambda index: None)
    overridden = any(
        entry.spec is not None and entry.spec.spec.overrides for entry in result.entries
    )
    if result.diagnostics or result.rejected or overridden:
        return load_file(path, content())
    return result


def _validate(
    path: str,
    starts: Sequence[int],
    documents: Sequence[object],
    node: Callable[[int], yaml.Node | None],
) -> FileResult:
    entries: list[Entry] = []
    diagnostics: list[Diagnostic] = []
    rejected: list[Rejected] = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        line = starts[index] if index < len(starts) else 1
        entry, problems = _load_document(path, index, line, document, node(index))
        diagnostics.extend(problems)
        if entry is not None:
            entries.append(entry)
        elif (named := _named(path, document)) is not None:
            rejected.append(named)
    return FileResult(path, tuple(entries), _capped(path, diagnostics), tuple(rejected))


def _capped(path: str, diagnostics: list[Diagnostic]) -> tuple[Diagnostic, ...]:
    if len(diagnostics) <= MAX_ERRORS_PER_FILE:
        return tuple(diagnostics)
    first_hidden = diagnostics[MAX_ERRORS_PER_FILE]
    more = Diagnostic(
        path,
        first_hidden.line,
        first_hidden.column,
        f"{len(diagnostics) - MAX_ERRORS_PER_FILE} more problems in this file",
    )
    return (*diagnostics[:MAX_ERRORS_PER_FILE], more)


def _named(path: str, document: object) -> Rejected | None:
    if not isinstance(document, dict):
        return None
    metadata = document.get("metadata")
    kind = document.get("kind")
    if not isinstance(metadata, dict) or not isinstance(kind, str):
        return None
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not isinstance(name, str):
        return None
    api_version = document.get("apiVersion")
    return Rejected(
        path,
        kind,
        name,
        namespace if isinstance(namespace, str) else None,
        # A gitsync kind under a wrong apiVersion is still the spec its status is for.
        API_VERSION
        if kind in SPEC_MODELS
        else (api_version if isinstance(api_version, str) else ""),
    )


def _load_document(
    path: str, index: int, line: int, document: object, node: yaml.Node | None
) -> tuple[Entry | None, list[Diagnostic]]:
    if not isinstance(document, dict):
        kind = type(document).__name__
        return None, [Diagnostic(path, line, 1, f"a document must be a mapping, not a {kind}")]
    missing = [
        name
        for name in ("apiVersion", "kind")
        if not isinstance(document.get(name), str) or not document.get(name)
    ]
    if missing:
        return None, [Diagnostic(path, line, 1, "required field is missing", field=missing[0])]
    api_version, kind = str(document["apiVersion"]), str(document["kind"])
    if api_version == API_VERSION:
        return _load_spec(path, index, line, document, node)
    if kind in SPEC_MODELS or api_version.partition("/")[0] == SPEC_GROUP:
        # Read as a plain manifest, it would fail to apply and its spec would be
        # pruned: a changed apiVersion is an invalid spec, not a removed one.
        loc = _locate(node, ("apiVersion",), at_key=False)
        message = f"{api_version!r} is not gitsync's apiVersion {API_VERSION!r}"
        return None, [Diagnostic(path, *loc, message, field="apiVersion")]
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        loc = _locate(node, ("metadata",), at_key=True)
        return None, [Diagnostic(path, *loc, "required field is missing", field="metadata.name")]
    return Entry(path, index, line, manifest=document), []


def _load_spec(
    path: str, index: int, line: int, document: dict[str, Any], node: yaml.Node | None
) -> tuple[Entry | None, list[Diagnostic]]:
    kind = str(document["kind"])
    model = SPEC_MODELS.get(kind)
    if model is None:
        hint = closest_name(kind, SPEC_MODELS)
        message = f"unknown kind {kind!r} in {API_VERSION}" + (
            f"; did you mean {hint!r}?" if hint else ""
        )
        loc = _locate(node, ("kind",), at_key=False)
        return None, [Diagnostic(path, *loc, message, field="kind")]
    try:
        spec = model.model_validate(document)
    except pydantic.ValidationError as exc:
        return None, validation_diagnostics(exc, model, node=node, path=path)
    positions = tuple(
        _locate(node, ("spec", "overrides", position), at_key=False)
        for position in range(len(spec.spec.overrides) if node is not None else 0)
    )
    return Entry(path, index, line, spec=spec, override_positions=positions), []


# --- validation errors with positions ---------------------------------------------


def field_path(loc: Sequence[str | int]) -> str:
    """A pydantic location as people write it: ``spec.containers[0].image``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_diagnostics(
    exc: pydantic.ValidationError,
    model: type[pydantic.BaseModel],
    *,
    node: yaml.Node | None,
    path: str,
) -> list[Diagnostic]:
    """Each error of ``exc`` located in ``node``, the document's root (as composed by
    :func:`parse_yaml`: no second parse per error)."""
    errors = exc.errors(include_url=False)
    # A misspelt field shows up twice: the typo as unknown, the real name as missing.
    # Report it once, as the typo with a suggestion.
    suggested: dict[tuple[str | int, ...], str] = {}
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden" and isinstance(loc[-1], str):
            parent = model_for_location(model, loc[:-1])
            hint = suggest_field(parent, loc[-1]) if parent else None
            if hint:
                suggested[loc] = hint
    hinted_missing = {(*loc[:-1], hint) for loc, hint in suggested.items()}

    diagnostics = []
    for error in errors:
        loc = tuple(error["loc"])
        kind = error["type"]
        if kind == "missing" and loc in hinted_missing:
            continue
        if kind == "extra_forbidden":
            hint = suggested.get(loc)
            message = f"unknown field {loc[-1]!r}" + (f"; did you mean {hint!r}?" if hint else "")
            position = _locate(node, loc, at_key=True)
        elif kind == "missing":
            message = "required field is missing"
            position = _locate(node, loc[:-1], at_key=False)
        elif kind == "literal_error":
            got = error.get("input")
            expected = str((error.get("ctx") or {}).get("expected", ""))
            choices = re.findall(r"'([^']*)'", expected)
            hint = closest_name(str(got), choices) if choices else None
            message = f"{got!r} is not one of {expected}" + (
                f"; did you mean {hint!r}?" if hint and hint != got else ""
            )
            position = _locate(node, loc, at_key=False)
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            position = _locate(node, loc, at_key=False)
        diagnostics.append(Diagnostic(path, *position, message, field=field_path(loc)))
    return diagnostics


def _locate(node: yaml.Node | None, loc: Sequence[str | int], *, at_key: bool) -> tuple[int, int]:
    """Line and column (1-based) of the node at ``loc`` below a document's root ``node``.

    With ``at_key`` the position of the mapping key is returned (for an unknown
    field); otherwise that of the value. Falls back to the deepest node found.
    """
    if node is None:
        return 1, 1
    mark = node.start_mark
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            found = next(((k, v) for k, v in node.value if k.value == part), None)
            if (
                found is None
                and not last
                and any(k.value == loc[position + 1] for k, _ in node.value)
            ):
                # A union's tag (env's valueFrom): a step of the model, not of the YAML.
                continue
            if found is None:
                break
            key_node, node = found
            mark = key_node.start_mark if (last and at_key) else node.start_mark
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return mark.line + 1, mark.column + 1


# --- the whole tree -----------------------------------------------------------------


def load_tree(
    results: Iterable[FileResult], *, default_namespace: str, whole: bool = True
) -> LoadResult:
    """Combine per-file results; a key declared twice is an error on every place, and
    so is (when ``results`` are the ``whole`` repo, not one shard's part of it) a
    model that names a TrainingRun or ModelDeployment the repo cannot feed it from."""
    files = list(results)
    by_key: dict[ObjectRef, list[Entry]] = defaultdict(list)
    for result in files:
        for entry in result.entries:
            by_key[entry.key(default_namespace)].append(entry)

    diagnostics = [d for result in files for d in result.diagnostics]
    failed = {result.path for result in files if result.failed}
    duplicates: set[tuple[str, int]] = set()
    for key, entries in by_key.items():
        if len(entries) < 2:
            continue
        for entry in entries:
            others = ", ".join(f"{o.path}:{o.line}" for o in entries if o is not entry)
            diagnostics.append(
                Diagnostic(entry.path, entry.line, 1, f"{key} is also declared at {others}")
            )
            duplicates.add((entry.path, entry.document))
            failed.add(entry.path)
    if whole:
        named = {r.key(default_namespace) for result in files for r in result.rejected}
        for entry, problem in _broken_references(by_key, named, default_namespace):
            diagnostics.append(problem)
            duplicates.add((entry.path, entry.document))
            failed.add(entry.path)
    entries_ok = tuple(
        entry
        for result in files
        for entry in result.entries
        if (entry.path, entry.document) not in duplicates
    )
    duplicated = tuple(
        Rejected(entry.path, entry.kind, entry.name, entry.namespace(default_namespace) or None)
        for result in files
        for entry in result.entries
        if (entry.path, entry.document) in duplicates
    )
    return LoadResult(
        entries=entries_ok,
        diagnostics=tuple(sorted(diagnostics, key=lambda d: (d.path, d.line, d.column))),
        failed_paths=frozenset(failed),
        rejected=tuple(r for result in files for r in result.rejected) + duplicated,
    )


def _broken_references(
    by_key: Mapping[ObjectRef, Sequence[Entry]],
    rejected: AbstractSet[ObjectRef],
    default_namespace: str,
) -> Iterator[tuple[Entry, Diagnostic]]:
    """Each model fed from a TrainingRun that the repo does not declare or that writes
    no output, or from a ModelDeployment it does not declare or that leads back to it.
    Without this such a model validates and then waits forever. A reference to a spec
    whose file is broken is that file's error, not this one's."""
    for entries in by_key.values():
        for entry in entries:
            spec = entry.spec
            if not isinstance(spec, ModelDeployment) or spec.spec.model is None:
                continue
            namespace = entry.namespace(default_namespace)
            run = spec.spec.training_run(namespace)
            # Another instance's upstream is declared where this load cannot see: its
            # existence, and a cycle through it, are that repo's to check.
            elsewhere = spec.spec.model.follows_another_instance
            upstream = None if elsewhere else spec.spec.upstream(namespace)
            field, target = (
                ("spec.model.fromTrainingRun", run)
                if run is not None
                else ("spec.model.fromModelDeployment.name", upstream)
            )
            if target is None or target in rejected:
                continue
            origin = entry.key(default_namespace)
            if (message := _reference_problem(origin, target, by_key, default_namespace)) is None:
                continue
            yield entry, Diagnostic(entry.path, entry.line, 1, message, field=field)


def _reference_problem(
    origin: ObjectRef,
    target: ObjectRef,
    by_key: Mapping[ObjectRef, Sequence[Entry]],
    default_namespace: str,
) -> str | None:
    found = by_key.get(target)
    if not found:
        names = [
            k.name for k in by_key if k.kind == target.kind and k.namespace == target.namespace
        ]
        hint = closest_name(target.name, names)
        return f"no {target} in the repo" + (f"; did you mean {hint!r}?" if hint else "")
    spec = found[0].spec
    if isinstance(spec, TrainingRun) and not spec.spec.output:
        return f"{target} writes no output (spec.output), so none of its runs can be served"
    if _promotion_cycle(origin, by_key, default_namespace):
        return f"promotion from {target} leads back to {origin}"
    return None


def _promotion_cycle(
    origin: ObjectRef, by_key: Mapping[ObjectRef, Sequence[Entry]], default_namespace: str
) -> bool:
    """Whether following fromModelDeployment from ``origin`` comes round again."""
    seen, current = {origin}, origin
    while True:
        found = by_key.get(current) or ()
        spec = found[0].spec if found else None
        if not isinstance(spec, ModelDeployment):
            return False
        following = spec.spec.upstream(found[0].namespace(default_namespace))
        if following is None or (spec.spec.model and spec.spec.model.follows_another_instance):
            return False
        if following in seen:
            return True
        seen.add(following)
        current = following
