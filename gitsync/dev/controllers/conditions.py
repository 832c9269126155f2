"""knative.dev/pkg condition sets, as the simulated KServe writes its conditions.

Both simulated deployment modes of the InferenceService controller (Serverless in
:mod:`.inferenceservice`, Standard in :mod:`.standard`) set conditions through the
same ``ConditionSet`` KServe inherits from knative; one copy of its rules serves both,
as does one copy of ``PropagateModelStatus`` (:func:`model_status`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["FALSE", "READY", "TRUE", "UNKNOWN", "Conditions", "model_status"]

TRUE: Final = "True"
FALSE: Final = "False"
UNKNOWN: Final = "Unknown"
READY: Final = "Ready"


class Conditions:
    """knative.dev/pkg ``ConditionSet`` semantics, which KServe's conditions inherit.

    A happy condition (``Ready``) follows its dependents; a condition keeps its
    lastTransitionTime unless something other than the time changes; non-dependent
    conditions carry severity ``Info``; the list is sorted by type.
    """

    def __init__(self, existing: Iterable[Any], *, dependents: tuple[str, ...], now: str) -> None:
        self._dependents = dependents
        self._now = now
        self._items: dict[str, dict[str, Any]] = {}
        for item in existing:
            if isinstance(item, dict) and isinstance(item.get("type"), str):
                self._items[item["type"]] = dict(item)

    def get(self, kind: str) -> dict[str, Any] | None:
        return self._items.get(kind)

    def status(self, kind: str) -> str | None:
        item = self._items.get(kind)
        return None if item is None else str(item.get("status"))

    def as_list(self) -> list[dict[str, Any]]:
        return [self._items[kind] for kind in sorted(self._items)]

    def _terminal(self, kind: str) -> bool:
        return kind == READY or kind in self._dependents

    def _set(self, kind: str, status: str, reason: str = "", message: str = "") -> None:
        item: dict[str, Any] = {"type": kind, "status": status}
        if not self._terminal(kind):
            item["severity"] = "Info"
        if reason:
            item["reason"] = reason
        if message:
            item["message"] = message
        current = self._items.get(kind)
        if current is not None:
            unchanged = {k: v for k, v in current.items() if k != "lastTransitionTime"}
            if unchanged == item:
                return
        item["lastTransitionTime"] = self._now
        self._items[kind] = item

    def mark_true(self, kind: str, reason: str = "", message: str = "") -> None:
        self._set(kind, TRUE, reason, message)
        if all(self.status(dependent) == TRUE for dependent in self._dependents):
            self._set(READY, TRUE)

    def clear(self, kind: str) -> None:
        """KServe's ``ClearCondition``."""
        self._items.pop(kind, None)

    def mark_false(self, kind: str, reason: str, message: str) -> None:
        self._set(kind, FALSE, reason, message)
        if kind in self._dependents:
            self._set(READY, FALSE, reason, message)

    def mark_unknown(self, kind: str, reason: str, message: str) -> None:
        self._set(kind, UNKNOWN, reason, message)
        # A failed dependent trumps an unknown one, even for a non-dependent condition.
        if any(self.status(dependent) == FALSE for dependent in self._dependents):
            if self.status(READY) != FALSE:
                self._set(READY, FALSE, reason, message)
            return
        if kind in self._dependents:
            self._set(READY, UNKNOWN, reason, message)

    def propagate(self, kind: str, source: Mapping[str, Any] | None) -> None:
        """KServe's ``SetCondition``: copy another object's condition onto ``kind``."""
        if source is None:
            return
        status = source.get("status")
        reason = str(source.get("reason") or "")
        message = str(source.get("message") or "")
        if status == UNKNOWN:
            self.mark_unknown(kind, reason, message)
        elif status == TRUE:
            self.mark_true(kind)
        elif status == FALSE:
            self.mark_false(kind, reason, message)


def model_status(
    previous: Mapping[str, Any], *, loaded: bool, failed: bool, fail_message: str
) -> dict[str, Any]:
    """KServe's ``PropagateModelStatus``: the model ``loaded`` on the serving pods, or
    ``failed`` to load, or still pending; the last failure is kept until a load."""
    active = (previous.get("states") or {}).get("activeModelState") or "Pending"
    failure = previous.get("lastFailureInfo")
    copies: dict[str, Any] = {"failedCopies": 0}
    if loaded:
        target, transition, active = "Loaded", "UpToDate", "Loaded"
        copies["totalCopies"] = 1
    elif failed:
        target, transition = "FailedToLoad", "BlockedByFailedLoad"
        failure = {"reason": "ModelLoadFailed", "message": fail_message, "exitCode": 1}
    else:
        target, transition = "Pending", "InProgress"
    result: dict[str, Any] = {
        "transitionStatus": transition,
        "states": {"activeModelState": active, "targetModelState": target},
        "copies": copies,
    }
    if failure:
        result["lastFailureInfo"] = failure
    return result
