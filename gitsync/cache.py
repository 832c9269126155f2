"""gitsync's cache on disk (``--cache-dir``): plain JSON values by key, in one file.

What a ``gitsync sync`` process computes from immutable inputs (a blob, a policy
verdict on exact inputs) is kept here so the next process need not compute it again.
A key names its value for good (a blob id, a digest of every input), so an entry
never goes stale and nothing is ever invalidated.

Why one append-only file, ``<root>/entries``, and not a file per key: a first sync of
1,000 specs stores some 3,000 entries, and creating, writing and renaming a file for
each took 0.85 s on a quiet machine and 3 s on a busy one, where appending the same
lines took 6 ms. Each entry is one line, ``<key> <sha256 of the payload> <payload>``,
added with a single ``write`` to a file opened for appending, so processes sharing
the folder add whole lines at its end. Each write starts with its own newline: a line
cut short (a process killed mid-write, a full disk) fails its checksum and is
skipped, and the next entry still begins a line of its own.

What is on disk is input like any other: an entry is used only when its checksum
holds and its payload names its own key, and it is JSON (never pickle), whose shape
each user checks again. The cache is best-effort: a write that fails costs only
computing the value again later.

Compaction. An entry never goes stale, but it goes unused: every new version of a
spec, every verdict on it and every status document published adds lines that later
processes never ask for, and a key put again leaves its older line behind. Left
alone, the file (and reading it whole at every start) grows for as long as the folder
lives. So :meth:`DiskCache.compact` rewrites it with only the entries this process
used (got a value of, or put), plus the whole entries other processes appended since
it read the file, when the file is above 1 MiB and more than twice the bytes kept.
The process that just ran knows the working set best: a run that uses what its
predecessor used never rewrites, a small cache is never rewritten, and a rewrite
(writing at most half of what the file held) happens only once the file has doubled
with entries nobody here asked for. What it drops is recomputed, once, by whoever
still needs it. That holds when a folder has one working set: the reconciler gives
each configuration (repo, branch, folder, instance, shard) folders of its own. Several
working sets taking turns in one folder would each drop the others' entries, and in
strict rotation compute all of their own again at every run.

The new file is written beside the old one and renamed over it (``os.replace``), its
bytes synced to disk first, so a reader opens the old file or the new one, whole,
even across a power cut. A compaction that fails before the rename (a full disk, a
killed process) leaves the old file as it was; its temporary file's name is never
read as entries, and one a killed process left behind is removed by a later
compaction once it is an hour old (a compaction takes milliseconds). What can be
lost: a line another process appends to the old file after compaction read its end
and before the rename goes to the file being replaced; an appender that opens the
file after the rename, as each put does, writes to the new one. A lost line costs
computing its value once more, as any miss does, and no line is ever kept that a
read would not use: the rewritten file holds only lines that passed a read's checks.
Only the file this process read is rewritten: one another process replaced meanwhile
is left to that process's judgement.

When: the reconciler compacts its caches when it closes. A ``gitsync sync`` closes it
after its one cycle, having asked for every entry it will. A daemon closes it when it
stops, and keeps all it used since it started: bounded by its lifetime, not by its
working set, for a cache cannot tell a spec's or a status document's superseded
version from its current one (only its users know which blobs are still current).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Final, TypeAlias

import orjson

from gitsync.canonical import exact_json

__all__ = ["COMPACT_FLOOR", "ENTRIES", "STALE_TEMP_SECONDS", "DiskCache"]

_HEX: Final = frozenset("0123456789abcdef")
#: Git's blob ids (40 hex) up to SHA-256 digests (64): anything else is no key.
_KEY_LENGTHS: Final = range(40, 65)
ENTRIES: Final = "entries"
#: A file of at most this many bytes is never compacted.
COMPACT_FLOOR: Final = 1 << 20
#: Compacted only when the file holds more than this many times the bytes it keeps.
COMPACT_RATIO: Final = 2
#: A compaction's temporary file older than this was left by a killed process.
STALE_TEMP_SECONDS: Final = 3600
_TEMP_SUFFIX: Final = ".tmp"

#: key -> (checksum, payload), as each line holds them.
_Lines: TypeAlias = dict[str, tuple[bytes, bytes]]


@dataclasses.dataclass(frozen=True)
class _Seen:
    """The file a cache read and how many bytes of it: compaction rewrites that file
    only, and what was appended past ``size`` is other processes' news."""

    device: int
    inode: int
    size: int


class DiskCache:
    """A folder holding JSON values by hex key."""

    def __init__(self, root: Path) -> None:
        self._root = root
        #: key -> (checksum, payload) as last read or written; read on the first get.
        self._lines: _Lines | None = None
        self._seen: _Seen | None = None
        #: The keys this process got a value of or put: what compaction keeps.
        self._used: set[str] = set()
        self._lock = threading.Lock()
        #: The folder was made (or found): a first sync puts some 3,000 entries, and
        #: asking for it each time was as many system calls more.
        self._made = False

    def get(self, key: str) -> object | None:
        """The value stored under ``key``; None when absent, corrupt or foreign."""
        found = self._index().get(key)
        document = None if found is None else _document(key, *found)
        if document is None:
            return None
        self._used.add(key)
        return document["value"]

    def put(self, key: str, value: object) -> None:
        """Store ``value`` (plain JSON data only: anything else is not stored)."""
        payload = exact_json({"key": key, "value": value})
        if not _is_key(key) or payload is None:
            return
        checksum = hashlib.sha256(payload).hexdigest().encode()
        self._index()[key] = (checksum, payload)
        self._used.add(key)
        # Best-effort: a read-only or full cache folder only means computing again.
        with contextlib.suppress(OSError):
            if not self._made:
                self._root.mkdir(parents=True, exist_ok=True)
                self._made = True
            handle = os.open(self._root / ENTRIES, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(handle, _line(key, checksum, payload))
            finally:
                os.close(handle)

    def compact(self) -> bool:
        """Rewrite the file with only the entries this process used and those appended
        since it read it, when it is that much larger (see the module docstring);
        True when it did. Best-effort, as every write here: a failure leaves the file
        as it was."""
        with self._lock:
            seen = self._seen
            kept = {key: self._lines[key] for key in self._used} if self._lines else {}
        _sweep(self._root)
        return seen is not None and _rewrite(self._root / ENTRIES, seen=seen, kept=kept)

    def _index(self) -> _Lines:
        with self._lock:
            if self._lines is None:
                self._lines, self._seen = _read(self._root / ENTRIES)
            return self._lines


def _read(path: Path) -> tuple[_Lines, _Seen | None]:
    """The file's lines, and which file was read; none when it cannot be read."""
    try:
        with path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            data = handle.read()
    except OSError:
        return {}, None
    return _parse(data), _Seen(stat.st_dev, stat.st_ino, len(data))


def _parse(data: bytes) -> _Lines:
    """Every line's key -> its checksum and payload, the last line of a key winning;
    lines that cannot be split so are skipped (what they hold is checked on use)."""
    lines: _Lines = {}
    for line in data.split(b"\n"):
        key, _, rest = line.partition(b" ")
        checksum, _, payload = rest.partition(b" ")
        name = key.decode("ascii", errors="replace")
        if payload and _is_key(name):
            lines[name] = (checksum, payload)
    return lines


def _document(key: str, checksum: bytes, payload: bytes) -> dict[str, object] | None:
    """The line's ``{"key", "value"}`` document when the line is whole and ``key``'s."""
    if checksum != hashlib.sha256(payload).hexdigest().encode():
        return None
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.keys() != {"key", "value"}:
        return None
    return document if document["key"] == key else None


def _line(key: str, checksum: bytes, payload: bytes) -> bytes:
    return b"\n" + key.encode() + b" " + checksum + b" " + payload


def _rewrite(path: Path, *, seen: _Seen, kept: _Lines) -> bool:
    """Replace ``path`` by ``kept`` and the whole lines appended past what ``seen``
    read, when it is still the file read and much larger than that."""
    try:
        with path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            if (stat.st_dev, stat.st_ino) != (seen.device, seen.inode) or stat.st_size < seen.size:
                return False
            if stat.st_size <= COMPACT_FLOOR:
                return False
            handle.seek(seen.size)
            appended = _parse(handle.read())
    except OSError:
        return False
    # Other processes' news, checked as a read would (this process's own are in kept).
    kept = kept | {
        key: line
        for key, line in appended.items()
        if key not in kept and _document(key, *line) is not None
    }
    # Each line is its key, checksum and payload, two spaces and its newline.
    if stat.st_size <= COMPACT_RATIO * sum(
        len(k) + len(c) + len(p) + 3 for k, (c, p) in kept.items()
    ):
        return False
    data = b"".join(_line(key, *line) for key, line in kept.items())
    temp = path.with_name(f"{ENTRIES}.{os.getpid()}.{secrets.token_hex(4)}{_TEMP_SUFFIX}")
    try:
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        return False
    return True


def _sweep(root: Path) -> None:
    """Remove the temporary files of compactions killed before their rename."""
    stale = time.time() - STALE_TEMP_SECONDS
    with contextlib.suppress(OSError), os.scandir(root) as found:
        for entry in found:
            if entry.name.startswith(f"{ENTRIES}.") and entry.name.endswith(_TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < stale:
                        os.unlink(entry.path)


def _is_key(key: str) -> bool:
    return len(key) in _KEY_LENGTHS and set(key) <= _HEX
