"""Canonical JSON: the one encoding that both keys a cache and fills it.

orjson alone is not enough for either. It writes NaN and infinity as null, and a
date, a dataclass or a ``str`` subclass like the string it prints as, so two values a
policy (or a status document) tells apart could share a key, or come back from a
cache as something else. :func:`exact_json` refuses those instead: what it encodes
decodes to an equal value of the same types, and equal bytes mean equal values.
"""

from __future__ import annotations

import math
from typing import Any, Final

import orjson

__all__ = ["exact_json"]

_OPTIONS: Final = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def exact_json(value: Any) -> bytes | None:
    """``value`` as sorted-key JSON, or None unless it is plain JSON data (dicts with
    string keys, lists, strings, finite numbers, booleans, null)."""
    try:
        payload = orjson.dumps(value, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: a date, bytes, a non-string key...
        return None
    # NaN and infinity come out as null, so output without one held neither: the walk
    # over every value (a seventh of a first sync's caching) is needed only then.
    if b"null" in payload and not _finite(value):
        return None
    return payload


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):  # orjson writes a tuple as a list
        return all(_finite(v) for v in value)
    return True
