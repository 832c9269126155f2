"""Policy verdicts kept in gitsync's cache, so that one ``gitsync sync`` process need
not judge again what an earlier one judged (judging a thousand specs is most of a
no-op sync).

The key is a digest of everything the verdict depends on
(:meth:`~gitsync.policy.PolicySet.verdict_key`), so an entry never goes stale. An
entry is decoded into :class:`~gitsync.policy.PolicyResult` field by field, and used
only when it has exactly the shape this module writes (see :mod:`gitsync.cache` for
what makes an entry whole).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from gitsync.cache import DiskCache
from gitsync.policy import PolicyResult, PolicySeverity, Violation

__all__ = ["DiskVerdictStore"]

_VIOLATION_FIELDS: Final = {"expression": str, "message": str, "reason": str, "error": bool}
_RESULT_FIELDS: Final = frozenset({"policy", "severity", "passed", "violations"})
_SEVERITIES: Final = {s.value: s for s in PolicySeverity}


class DiskVerdictStore:
    """A :class:`~gitsync.policy.VerdictStore` in gitsync's cache: ``eval/`` of a
    configuration's folder under ``<cache-dir>/scopes``."""

    def __init__(self, cache: DiskCache) -> None:
        self._cache = cache

    def get(self, key: str) -> tuple[PolicyResult, ...] | None:
        return _results(self._cache.get(key))

    def put(self, key: str, results: Sequence[PolicyResult]) -> None:
        self._cache.put(key, [_plain(r) for r in results])


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
            and item.keys() == _RESULT_FIELDS
            and isinstance(item["policy"], str)
            and item["severity"] in _SEVERITIES
            and type(item["passed"]) is bool
            and isinstance(item["violations"], list)
            and all(_is_violation(v) for v in item["violations"])
        ):
            return None
        violations = tuple(Violation(**v) for v in item["violations"])
        if item["passed"] == bool(violations):
            return None  # PolicyResult would refuse it
        severity = _SEVERITIES[item["severity"]]
        results.append(PolicyResult(item["policy"], severity, item["passed"], violations))
    return tuple(results)


def _is_violation(value: object) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() == _VIOLATION_FIELDS.keys()
        and all(type(value[name]) is kind for name, kind in _VIOLATION_FIELDS.items())
    )
