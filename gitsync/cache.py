"""gitsync's cache on disk (``--cache-dir``): plain JSON values by key, one file each.

What a ``gitsync sync`` process computes from immutable inputs (a blob, a policy
verdict on exact inputs) is kept here so the next process need not compute it again.
A key names its value for good (a blob id, a digest of every input), so an entry
never goes stale and nothing is ever invalidated.

One file per key, ``<root>/<first 2 hex>/<rest>``, written atomically (a temporary
file renamed into place), so a reader sees a whole entry or none, even with several
processes sharing the folder. What is on disk is input like any other: an entry is
used only when its checksum holds and it names its own key, and it is JSON (never
pickle), whose shape each user checks again. The cache is best-effort: a write that
fails costs only computing the value again later.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Final

import orjson

from gitsync.canonical import exact_json

__all__ = ["DiskCache"]

_HEX: Final = frozenset("0123456789abcdef")
#: Git's blob ids (40 hex) up to SHA-256 digests (64): anything else names no file.
_KEY_LENGTHS: Final = range(40, 65)


class DiskCache:
    """A folder of JSON values by hex key."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def get(self, key: str) -> object | None:
        """The value stored under ``key``; None when absent, corrupt or foreign."""
        path = self._path(key)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        checksum, _, payload = data.partition(b"\n")
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
        path = self._path(key)
        payload = exact_json({"key": key, "value": value})
        if path is None or payload is None:
            return
        data = hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        # Best-effort: a read-only or full cache folder only means computing again.
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                os.replace(temporary, path)
            except OSError:
                os.unlink(temporary)
                raise

    def _path(self, key: str) -> Path | None:
        if len(key) not in _KEY_LENGTHS or not set(key) <= _HEX:
            return None
        return self._root / key[:2] / key[2:]
