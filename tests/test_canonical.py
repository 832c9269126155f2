"""exact_json keys and fills the caches: it must refuse what would not come back equal."""

from __future__ import annotations

import datetime
import math
from typing import Any

import orjson
import pytest

from gitsync.canonical import exact_json


class Name(str):
    """A str subclass: orjson would write it as the string it prints as."""


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        {"a": {"b": [1, 2, math.nan]}},
        [None, {"x": math.inf}],  # a null elsewhere in the output
        {"null": "null", "v": [math.nan]},
        {"a": (None, math.nan)},
        {"when": datetime.date(2026, 12, 1)},
        {"name": Name("x")},
        {1: "a non-string key"},
        {"bytes": b"x"},
        {"set": {1, 2}},
    ],
)
def test_what_would_not_come_back_equal_is_refused(value: Any) -> None:
    assert exact_json(value) is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"b": 1, "a": [1.5, -0.0, 10**18, True, None, "null", ""]},
        {"nested": {"z": [], "y": {}}, "unicode": "ü"},
        [math.pi, 1e308],
    ],
)
def test_plain_data_comes_back_equal_with_sorted_keys(value: Any) -> None:
    payload = exact_json(value)
    assert payload is not None
    assert orjson.loads(payload) == value
    assert exact_json(orjson.loads(payload)) == payload  # equal values: equal bytes
