"""A `gitsync sync` whose inputs are those of the last one that settled repeats that
one's report instead of running the cycle again.

A cycle is a function of what it reads: the spec commit, the status branch, the live
objects of the kinds it looks at, its options and gitsync itself. The daemon keeps
that knowledge in memory and skips a quiet cycle in 2 ms; a ``gitsync sync`` run from
cron or CI starts afresh each time and, at 1,000 specs, spent 0.8 s loading,
evaluating and diffing to find again that there is nothing to do. So when a sync
settles (nothing written to the cluster, nothing failed, no rollout in progress, every
gate query answered) it leaves a :class:`Record` of what it read and what it said;
the next sync with the same options reads the same three things cheaply (a fetch of
each branch and one LIST per kind) and, if all match and no wake-up time has come,
prints the same report and exits with the same code. It never writes: the record is
made only by a cycle whose re-run would write nothing.

Every sync that ran its cycle to the end, settled or not, also leaves a ledger
(:class:`gitsync.ledger.Ledger`) beside its record: what it found unchanged, for the
next cycle to carry instead of taking afresh (see gitsync.focus).

What decides equality is exact: commit ids, and the uid and resourceVersion of every
listed object (any write to an object changes its resourceVersion; a deleted and
recreated one has a new uid). The options key covers every command-line option, the
API server's address and gitsync's own files, so another configuration or another
build never takes a record that is not its own. A record is input from disk like any
other: one whose shape is wrong, or that names another key, is not used, and the sync
runs in full. It is trusted as the rest of ``--cache-dir`` is (a forged verdict could
let a denied spec through): whoever can write there can make a sync say what they
like and skip its writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

import gitsync
from gitsync.errors import GitsyncError
from gitsync.ledger import Kind, Ledger
from gitsync.live import ListedSource, instance_selector
from gitsync.types import ObjectRef

if TYPE_CHECKING:
    from gitsync.clients.git import GitSource
    from gitsync.clients.kube import KubeClient

__all__ = [
    "Line",
    "Observed",
    "Record",
    "Settled",
    "load",
    "load_ledger",
    "options_key",
    "save",
    "save_ledger",
    "still_holds",
]

#: One line of a report: whether it goes to stderr, and its text.
Line = tuple[bool, str]

_FORMAT: Final = 1
_LEDGER_FORMAT: Final = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """What a sync reads that can change between two runs of the same options."""

    head: str
    status_head: str | None
    #: :attr:`gitsync.live.ListedSource.fingerprint` of the listed objects.
    live: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Settled:
    """A cycle whose re-run on the same inputs would write nothing and say the same:
    what it read, and how to read that again."""

    observed: Observed
    status_branch: str
    kinds: tuple[Kind, ...]
    #: When the clock alone may change what a cycle decides (a schedule's tick, a
    #: hold's end): from then on it no longer holds.
    wake_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """A settled sync of one options key, and what it said."""

    key: str
    settled: Settled
    lines: tuple[Line, ...]
    exit_code: int


def still_holds(
    record: Record, *, git: GitSource, kube: KubeClient, instance: str, now: datetime
) -> bool:
    """Whether a sync at ``now`` reads what ``record`` read: cheapest first, stopping
    at the first difference (a new commit costs one fetch, not a LIST of every
    kind). Anything that cannot be read is a difference: the full cycle then meets
    that trouble itself, and says so."""
    settled = record.settled
    if settled.wake_at is not None and now >= settled.wake_at:
        return False
    # The selector is the instance's, never the record's: a record from disk says
    # which kinds to list, not which objects.
    source = ListedSource(kube, selector=instance_selector(instance))
    try:
        if git.fetch().commit != settled.observed.head:
            return False
        status = git.fetch_branch(settled.status_branch)
        if (status.commit if status else None) != settled.observed.status_head:
            return False
        source.objects(settled.kinds)
    except GitsyncError:
        return False
    return source.fingerprint == settled.observed.live


def options_key(options: Mapping[str, object], *, server: str) -> str:
    """The key of one configuration of ``gitsync sync`` against one API server, for
    this build of gitsync and what it runs on: an upgrade, a local edit (of its code
    or of the shipped policies) or another version of a dependency never replays
    what an older build said."""
    payload = [
        gitsync.__version__,
        _build(),
        server,
        sorted((k, repr(v)) for k, v in options.items()),
    ]
    return hashlib.sha256(orjson.dumps(payload)).hexdigest()


def _build() -> list[object]:
    """gitsync's files (names, sizes, mtimes; the shipped policies are a linked
    folder, followed), and the distributions installed beside it, whose folder names
    carry their versions: a stat of each, 1 ms in all, where importlib.metadata
    took 25 ms."""
    package = Path(gitsync.__file__).parent
    files = []
    for root, folders, names in os.walk(package, followlinks=True):
        folders[:] = sorted(f for f in folders if f != "__pycache__")
        for name in sorted(names):
            stat = os.stat(os.path.join(root, name))
            files.append(
                (os.path.relpath(os.path.join(root, name), package), stat.st_size, stat.st_mtime_ns)
            )
    paths = sysconfig.get_paths()
    installed = []
    for folder in sorted({paths["purelib"], paths["platlib"]}):
        with contextlib.suppress(OSError):
            installed += sorted(n for n in os.listdir(folder) if n.endswith(".dist-info"))
    return [files, installed]


def load(folder: Path, *, key: str) -> Record | None:
    """The record ``key`` left in ``folder``; None when there is none, or it is not
    whole and well-formed, or it is another key's."""
    try:
        data = orjson.loads((folder / f"{key}.json").read_bytes())
        return _record(data, key=key)
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def save(folder: Path, record: Record | None, *, key: str) -> None:
    """Leave ``record`` for the next sync of ``key``, or (None) leave nothing: a sync
    that did not settle removes the last one's, which no longer says what it did.
    Best-effort, like every cache: a failed write only means a full cycle next time."""
    path = folder / f"{key}.json"
    with contextlib.suppress(OSError):
        if record is None:
            path.unlink(missing_ok=True)
            return
        folder.mkdir(parents=True, exist_ok=True)
        settled = record.settled
        data = {
            "format": _FORMAT,
            "key": record.key,
            "head": settled.observed.head,
            "statusHead": settled.observed.status_head,
            "live": settled.observed.live,
            "statusBranch": settled.status_branch,
            "kinds": [list(kind) for kind in settled.kinds],
            "wakeAt": settled.wake_at.isoformat() if settled.wake_at else None,
            "lines": [[err, text] for err, text in record.lines],
            "exitCode": record.exit_code,
        }
        _write(path, data)


def _write(path: Path, data: object) -> None:
    # Written aside and renamed: a reader sees the old file or the new, whole.
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_bytes(orjson.dumps(data))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load_ledger(folder: Path, *, key: str) -> Ledger | None:
    """The ledger ``key`` left in ``folder``; None as for :func:`load`."""
    try:
        data = orjson.loads((folder / "ledger" / f"{key}.json").read_bytes())
        return _ledger(data, key=key)
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def save_ledger(folder: Path, ledger: Ledger | None, *, key: str) -> None:
    """Leave ``ledger`` for the next sync of ``key``, or remove the last one's (a cycle
    cut short cannot vouch for what it found). Best-effort, as :func:`save`."""
    path = folder / "ledger" / f"{key}.json"
    with contextlib.suppress(OSError):
        if ledger is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": _LEDGER_FORMAT,
            "key": key,
            "head": ledger.head,
            "statusBranch": ledger.status_branch,
            "kinds": [list(kind) for kind in ledger.kinds],
            "wakeAt": ledger.wake_at.isoformat() if ledger.wake_at else None,
            "unchanged": [[*_ref(ref), version] for ref, version in ledger.unchanged.items()],
            "documents": dict(ledger.documents),
        }
        _write(path, data)


def _ref(ref: ObjectRef) -> tuple[str, str, str, str]:
    return (ref.group, ref.kind, ref.namespace, ref.name)


def _ledger(data: Any, *, key: str) -> Ledger | None:
    if not _ours(data, key=key, version=_LEDGER_FORMAT):
        return None
    documents = data["documents"]
    if not isinstance(documents, dict):
        return None
    unchanged = {}
    for group, kind, namespace, name, version in data["unchanged"]:
        ref = ObjectRef(
            group=_text(group), kind=_text(kind), namespace=_text(namespace), name=_text(name)
        )
        unchanged[ref] = _text(version)
    return Ledger(
        head=_text(data["head"]),
        status_branch=_text(data["statusBranch"]),
        kinds=_kinds(data["kinds"]),
        wake_at=_time(data["wakeAt"]),
        unchanged=unchanged,
        documents={_text(path): _text(blob) for path, blob in documents.items()},
    )


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(_text(value))
    if moment.tzinfo is None:
        raise ValueError("a time without a zone is not gitsync's")
    return moment


def _ours(data: Any, *, key: str, version: int) -> bool:
    """Whether ``data`` is a mapping that this gitsync's format wrote for ``key``: one
    of another key, or of another format, is never used."""
    return (
        isinstance(data, dict)
        and type(data["format"]) is int
        and data["format"] == version
        and data["key"] == key
    )


def _kinds(value: Any) -> tuple[Kind, ...]:
    return tuple((_text(api_version), _text(kind)) for api_version, kind in value)


def _record(data: Any, *, key: str) -> Record | None:
    if not _ours(data, key=key, version=_FORMAT):
        return None
    status_head = data["statusHead"]
    kinds = _kinds(data["kinds"])
    lines = tuple((_flag(err), _text(text)) for err, text in data["lines"])
    exit_code = data["exitCode"]
    if not isinstance(exit_code, int) or isinstance(exit_code, bool) or exit_code not in (0, 1):
        return None
    wake = _time(data["wakeAt"])
    settled = Settled(
        observed=Observed(
            head=_text(data["head"]),
            status_head=None if status_head is None else _text(status_head),
            live=_text(data["live"]),
        ),
        status_branch=_text(data["statusBranch"]),
        kinds=kinds,
        wake_at=wake,
    )
    return Record(key=key, settled=settled, lines=lines, exit_code=exit_code)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, not {type(value).__name__}")
    return value
