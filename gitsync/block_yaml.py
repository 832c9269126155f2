"""Plain data as YAML, byte for byte as PyYAML's safe dumper writes it, but faster.

A first sync of 1,000 specs writes 1,000 status documents. ``yaml.dump`` with the
libyaml emitter still builds a node for every value in Python and asks PyYAML's
resolver about every scalar twice: 0.4-0.9 s of that sync, on the one thread that
the Event posters wait on for the GIL. The documents are small trees of mappings,
lists and short ASCII strings, whose YAML is simple to write directly.

:func:`dump` writes what it can decide exactly and returns None for the rest (a
non-ASCII or multi-line string, a long one that libyaml might fold, a list in a
list, a key that is not a string): the caller then leaves the whole document to
PyYAML. What it writes follows libyaml's own rules (``yaml_emitter_analyze_scalar``
and ``yaml_emitter_select_scalar_style``): a string is plain unless PyYAML's
resolver would read it back as something else (``'true'``, ``'12'``, a date) or an
indicator forbids it (``'a: b'``, ``'#x'``, ``'x '``), and then single-quoted. The
resolver itself is PyYAML's, asked once per distinct string. ``tests/test_block_yaml.py``
compares the output with ``yaml.dump`` over generated documents.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Final

import yaml
import yaml.resolver

__all__ = ["dump"]

_STR: Final = "tag:yaml.org,2002:str"
_FLOAT: Final = "tag:yaml.org,2002:float"
#: Long enough for any status document's messages, short enough that libyaml's
#: folding at column 1000 never applies.
_LONGEST: Final = 400
_LONGEST_KEY: Final = 100  # libyaml writes a key of more than 128 as a complex key
_INDICATORS: Final = frozenset("#,[]{}&*!|>'\"%@`")

_resolver = yaml.resolver.Resolver()


class _Undecided(Exception):
    """A value this module leaves to PyYAML."""


def dump(data: Mapping[str, object]) -> str | None:
    """``data`` as ``yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False,
    allow_unicode=True, width=1000)`` writes it, or None when left to PyYAML."""
    if not data:
        return "{}\n"
    out: list[str] = []
    try:
        _mapping(data, 0, out)
    except _Undecided:
        return None
    return "".join(out)


def _mapping(
    data: Mapping[str, object], indent: int, out: list[str], *, inline: bool = False
) -> None:
    """A block mapping at column ``indent``; ``inline``: its first key goes on the
    line a list item's "- " began."""
    pad = " " * indent
    for index, (key, value) in enumerate(data.items()):
        out.append(_key(key) if inline and index == 0 else pad + _key(key))
        out.append(":")
        if isinstance(value, Mapping) and value:
            out.append("\n")
            _mapping(value, indent + 2, out)
        elif isinstance(value, list) and value:
            # Not indented further: libyaml's indentless sequence in a mapping.
            out.append("\n")
            _sequence(value, indent, out)
        else:
            out.append(" " + _leaf(value) + "\n")


def _sequence(data: list[object], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for item in data:
        if isinstance(item, Mapping) and item:
            out.append(pad + "- ")
            _mapping(item, indent + 2, out, inline=True)
        elif isinstance(item, list) and item:
            raise _Undecided  # a list in a list: "- - x"
        else:
            out.append(pad + "- " + _leaf(item) + "\n")


def _leaf(value: object) -> str:
    """A scalar, or an empty mapping or list (written in flow style)."""
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def _key(key: object) -> str:
    if not isinstance(key, str) or len(key) > _LONGEST_KEY:
        raise _Undecided
    return _string(key)


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    raise _Undecided


def _float(value: float) -> str:
    # SafeRepresenter.represent_float's spelling.
    if value != value:  # noqa: PLR0124 - NaN is the one float not equal to itself
        return ".nan"
    if value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value).lower()
    if "." not in text and "e" in text:
        text = text.replace("e", ".0e", 1)
    if _implicit_tag(text) != _FLOAT:
        raise _Undecided
    return text


def _implicit_tag(text: str) -> str:
    """The tag PyYAML reads a plain scalar ``text`` back as."""
    tag: str = _resolver.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return tag


def _string(text: str) -> str:
    if (written := _style(text)) is None:
        raise _Undecided
    return written


# Keys and most values repeat across documents; bounded, for a daemon's messages
# name ever new revisions.
@functools.lru_cache(maxsize=4096)
def _style(text: str) -> str | None:
    """``text`` plain or single-quoted, as libyaml chooses for a block-context value
    or simple key; None for what it would write otherwise (double-quoted, folded)."""
    if len(text) > _LONGEST or not text.isascii() or not text.isprintable():
        return None
    # Plain only when PyYAML reads it back as this string (not a bool, a number, a
    # date, null) and no indicator forbids it.
    if text and _implicit_tag(text) == _STR and _plain(text):
        return text
    return "'" + text.replace("'", "''") + "'"


def _plain(text: str) -> bool:
    """Whether libyaml allows ``text`` (printable ASCII, not empty) as a plain scalar
    in block context."""
    if text[0] == " " or text[-1] == " " or text.startswith(("---", "...")):
        return False
    last = len(text) - 1
    for index, char in enumerate(text):
        followed_by_space = index == last or text[index + 1] == " "
        if index == 0:
            if char in _INDICATORS or (char in "?:-" and followed_by_space):
                return False
        elif (char == ":" and followed_by_space) or (char == "#" and text[index - 1] == " "):
            return False
    return True
