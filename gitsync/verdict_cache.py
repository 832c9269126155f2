"""Policy verdicts kept on disk, so that one ``gitsync sync`` process need not judge
again what an earlier one judged (judging a thousand specs is most of a no-op sync).

One file per key, ``<root>/<2 hex>/<rest of the key>``, written atomically (a
temporary file renamed into place), so readers see a whole entry or none, even with
several processes sharing the cache. The key is a digest of everything the verdict
depends on (:meth:`~gitsync.policy.PolicySet.verdict_key`), so an entry never goes
stale and nothing is ever invalidated.

What is on disk is input like any other: a file is used only when its checksum,
its key and its shape all hold, else it is as if it were absent; it is plain JSON
(never pickle), decoded into :class:`~gitsync.policy.PolicyResult` field by field.
The cache is best-effort: a write that fails costs only a later re-evaluation.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from gitsync.policy import PolicyResult, PolicySeverity, Violation

__all__ = ["DiskVerdictStore"]

#: Keys are SHA-256 hex digests; anything else names no file of the cache.
_KEY_LENGTH: Final = 64
_HEX: Final = frozenset("0123456789abcdef")
_VIOLATION_FIELDS: Final = {"expression": str, "message": str, "reason": str, "error": bool}


class DiskVerdictStore:
    """A :class:`~gitsync.policy.VerdictStore` in a folder (``<cache-dir>/eval``)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def get(self, key: str) -> tuple[PolicyResult, ...] | None:
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
        if not isinstance(document, dict) or document.get("key") != key:
            return None
        return _results(document.get("results"))

    def put(self, key: str, results: Sequence[PolicyResult]) -> None:
        path = self._path(key)
        if path is None:
            return
        payload = orjson.dumps({"key": key, "results": [_plain(r) for r in results]})
        data = hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        # Best-effort: a read-only or full cache folder only means judging again.
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
        if len(key) != _KEY_LENGTH or not set(key) <= _HEX:
            return None
        return self._root / key[:2] / key[2:]


def _plain(result: PolicyResult) -> dict[str, Any]:
    return {
        "policy": result.policy,
        "severity": result.severity.value,
        "passed": result.passed,
        "violations": [
            {"expression": v.expression, "message": v.message, "reason": v.reason, "error": v.error}
            for v in result.violations
        ],
    }


def _results(value: object) -> tuple[PolicyResult, ...] | None:
    """The results ``value`` holds, or None unless it has exactly the shape
    :func:`_plain` writes."""
    if not isinstance(value, list):
        return None
    results = []
    for item in value:
        if not (
            isinstance(item, dict)
            and item.keys() == {"policy", "severity", "passed", "violations"}
            and isinstance(item["policy"], str)
            and item["severity"] in {s.value for s in PolicySeverity}
            and type(item["passed"]) is bool
            and isinstance(item["violations"], list)
            and all(_is_violation(v) for v in item["violations"])
        ):
            return None
        violations = tuple(Violation(**v) for v in item["violations"])
        if item["passed"] == bool(violations):
            return None  # PolicyResult would refuse it
        severity = PolicySeverity(item["severity"])
        results.append(PolicyResult(item["policy"], severity, item["passed"], violations))
    return tuple(results)


def _is_violation(value: object) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() == _VIOLATION_FIELDS.keys()
        and all(type(value[name]) is kind for name, kind in _VIOLATION_FIELDS.items())
    )
