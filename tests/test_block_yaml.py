"""gitsync.block_yaml writes exactly what PyYAML's safe dumper writes, or leaves it.

Generated documents of every shape the status documents have (and of shapes they
do not, which the module must leave to PyYAML) are written both ways and compared
byte for byte; the strings are drawn from the characters that change a scalar's
style (indicators, quotes, spaces, digits, words the resolver reads as bools or
numbers, tabs, line breaks, non-ASCII).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gitsync.block_yaml import dump

WORDS = [
    "yes",
    "No",
    "true",
    "OFF",
    "null",
    "~",
    "1",
    "-2",
    "0x1f",
    "1:20",
    "1.5",
    ".inf",
    "2026-12-01",
    "2026-12-01T12:00:00Z",
    "<<",
    "=",
    "---",
    "...",
    "-",
    "?",
    ":",
]
CHARS = "ab Z09_-.:#?,[]{}&*!|>'\"%@`/=+~\\ \t\né"


def pyyaml(data: Any) -> str:
    return yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True, width=1000)


strings = st.one_of(
    st.sampled_from(WORDS),
    st.text(alphabet=CHARS, max_size=12),
    st.lists(st.sampled_from([*WORDS, "a", " ", ": ", " #", "x"]), max_size=5).map("".join),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    strings,
)
keys = st.one_of(st.sampled_from(["kind", "name", "sourceCommit", "a b", "x:", ""]), strings)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(keys, documents, max_size=6))
def test_what_it_writes_is_what_pyyaml_writes(data: dict[str, Any]) -> None:
    written = dump(data)
    if written is not None:
        assert written == pyyaml(data)


printable = st.text(alphabet=[chr(c) for c in range(0x20, 0x7F)], max_size=40)
status_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), printable),
    lambda children: st.one_of(
        st.lists(st.one_of(st.dictionaries(printable, children, max_size=3), printable)),
        st.dictionaries(printable, children, max_size=4),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(printable, status_like, max_size=8))
def test_it_writes_every_document_of_short_printable_strings_itself(data: dict[str, Any]) -> None:
    """What status documents hold is never left to PyYAML: the speed-up applies."""
    assert dump(data) == pyyaml(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"a": "x\ny"}, id="a line break"),
        pytest.param({"a": "tab\there"}, id="a tab"),
        pytest.param({"a": "café"}, id="non-ASCII"),
        pytest.param({"a": "word " * 100}, id="long enough to fold"),
        pytest.param({"a": [[1]]}, id="a list in a list"),
        pytest.param({1: "x"}, id="a key that is no string"),
        pytest.param({"k" * 129: "x"}, id="a key libyaml writes as a complex key"),
        pytest.param({"a": b"bytes"}, id="a value of another type"),
    ],
)
def test_what_it_cannot_decide_is_left_to_pyyaml(data: dict[Any, Any]) -> None:
    assert dump(data) is None
