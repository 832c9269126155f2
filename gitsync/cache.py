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
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from typing import Final

import orjson

from gitsync.canonical import exact_json

__all__ = ["DiskCache"]

_HEX: Final = frozenset("0123456789abcdef")
#: Git's blob ids (40 hex) up to SHA-256 digests (64): anything else is no key.
_KEY_LENGTHS: Final = range(40, 65)
ENTRIES: Final = "entries"


class DiskCache:
    """A folder holding JSON values by hex key."""

    def __init__(self, root: Path) -> None:
        self._root = root
        #: key -> (checksum, payload) as last read or written; read on the first get.
        self._lines: dict[str, tuple[bytes, bytes]] | None = None
        self._lock = threading.Lock()

    def get(self, key: str) -> object | None:
        """The value stored under ``key``; None when absent, corrupt or foreign."""
        found = self._index().get(key)
        if found is None:
            return None
        checksum, payload = found
        if checksum != hashlib.sha256(payload).hexdigest().encode():
            return None
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict) or document.keys() != {"key", "value"}:
            return None
        return document["value"] if document["key"] == key else None

    def put(self, key: str, value: object) -> None:
        """Store ``value`` (plain JSON data only: anything else is not stored)."""
        payload = exact_json({"key": key, "value": value})
        if not _is_key(key) or payload is None:
            return
        checksum = hashlib.sha256(payload).hexdigest().encode()
        self._index()[key] = (checksum, payload)
        line = b"\n" + key.encode() + b" " + checksum + b" " + payload
        # Best-effort: a read-only or full cache folder only means computing again.
        with contextlib.suppress(OSError):
            self._root.mkdir(parents=True, exist_ok=True)
            handle = os.open(self._root / ENTRIES, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(handle, line)
            finally:
                os.close(handle)

    def _index(self) -> dict[str, tuple[bytes, bytes]]:
        with self._lock:
            if self._lines is None:
                self._lines = _read(self._root / ENTRIES)
            return self._lines


def _read(path: Path) -> dict[str, tuple[bytes, bytes]]:
    """Every line's key -> its checksum and payload, the last line of a key winning;
    lines that cannot be split so are skipped (what they hold is checked on use)."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    lines: dict[str, tuple[bytes, bytes]] = {}
    for line in data.split(b"\n"):
        key, _, rest = line.partition(b" ")
        checksum, _, payload = rest.partition(b" ")
        name = key.decode("ascii", errors="replace")
        if payload and _is_key(name):
            lines[name] = (checksum, payload)
    return lines


def _is_key(key: str) -> bool:
    return len(key) in _KEY_LENGTHS and set(key) <= _HEX
