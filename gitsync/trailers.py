"""Commit trailers: the machine-readable lines at the end of gitsync's commit messages.

gitsync's own commits (status commits, revert branches) end with trailers such as
``Gitsync-Source-Commit: <sha>`` so that ``gitsync history`` and people with
``git log`` can tell which spec commit a status describes. Writing and reading them
in one place keeps the key names and the block layout from drifting apart.

Pure. Reading follows git's trailer conventions (``git interpret-trailers``): the
trailers are the last paragraph of the message, one ``Key: value`` per line, keys
compared without regard to case, a line starting with whitespace continuing the
previous value. Trailers gitsync does not know (``Signed-off-by``, ``Co-authored-by``)
may share the block and are ignored, so a commit a person wrote or amended still
parses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["Trailers", "parse"]

SOURCE_COMMIT: Final = "Gitsync-Source-Commit"
INSTANCE: Final = "Gitsync-Instance"
REVERTS: Final = "Reverts"
# Field of Trailers -> its key, in the order they are written.
_KEYS: Final = {"source_commit": SOURCE_COMMIT, "instance": INSTANCE, "reverts": REVERTS}
_FIELDS: Final = {key.lower(): name for name, key in _KEYS.items()}

# git's token rule: letters, digits and hyphens, then a colon. Prose such as
# "note: see below" matches too, which is why only the last paragraph counts.
_TRAILER: Final = re.compile(r"^(?P<key>[A-Za-z0-9][A-Za-z0-9-]*)\s*:\s?(?P<value>.*)$")
# Lines git itself appends to a trailer block (``commit -s``, ``cherry-pick -x``); with
# one of them, git accepts a block where only a quarter of the lines are trailers.
_GIT_GENERATED: Final = ("Signed-off-by: ", "(cherry picked from commit ")


@dataclass(frozen=True, slots=True)
class Trailers:
    """gitsync's trailers of one commit; None is a trailer the commit does not have."""

    #: The spec commit the commit reports on (status) or starts from (revert).
    source_commit: str | None = None
    #: Which gitsync instance wrote the commit (several may share a status branch).
    instance: str | None = None
    #: The spec commit a revert branch undoes.
    reverts: str | None = None

    def __post_init__(self) -> None:
        for key, value in self._items():
            if value is not None and ("\n" in value or "\r" in value):
                # A line break would end the trailer, or start another, when parsed.
                raise ValueError(f"trailer {key} must be one line, got {value!r}")

    def _items(self) -> list[tuple[str, str | None]]:
        return [(key, getattr(self, name)) for name, key in _KEYS.items()]

    def format(self) -> str:
        """The trailer block: one ``Key: value`` line per trailer set, no blank lines.

        The caller ends its message with a blank line and this block.
        """
        return "".join(f"{key}: {value}\n" for key, value in self._items() if value is not None)


def parse(message: str) -> Trailers:
    """gitsync's trailers in a commit message; those it does not have are None.

    A message of one paragraph has none (that paragraph is the subject). When a key
    repeats, the last one counts: it was added last.
    """
    paragraphs = _paragraphs(message)
    if len(paragraphs) < 2 or not _is_trailer_block(paragraphs[-1]):
        return Trailers()
    found: dict[str, str] = {}
    current: str | None = None
    for line in paragraphs[-1]:
        if line[:1].isspace():
            # A folded value: it continues the trailer above it.
            if current is not None:
                found[current] = f"{found[current]} {line.strip()}"
            continue
        match = _TRAILER.match(line)
        current = _FIELDS.get(match["key"].lower()) if match else None
        if match and current is not None:
            found[current] = match["value"].strip()
    return Trailers(**found)


def _is_trailer_block(lines: list[str]) -> bool:
    """git's rule: every line a trailer, or a git-generated one and a quarter trailers."""
    heads = [line for line in lines if not line[:1].isspace()]
    trailers = sum(1 for line in heads if _TRAILER.match(line))
    if trailers == len(heads):
        return True
    generated = any(line.startswith(_GIT_GENERATED) for line in heads)
    return generated and trailers * 4 >= len(heads)


def _paragraphs(message: str) -> list[list[str]]:
    """The message's non-empty paragraphs, as lists of lines."""
    paragraphs: list[list[str]] = [[]]
    for line in message.splitlines():
        if line.strip():
            paragraphs[-1].append(line.rstrip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]
