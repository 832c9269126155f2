"""Where in a policy file a problem is: from a field path and a position inside
a CEL expression to the line and column an editor jumps to.

YAML folds and quotes scalars, so column 12 of an expression is rarely column 12 of
its line; this module undoes the block (``|``, ``>``) and flow styles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["excerpt", "node_at", "position"]


def excerpt(document: Any, loc: Sequence[str | int]) -> str:
    value = document
    for part in loc:
        value = value[part]
    text = " ".join(str(value).split())
    return text if len(text) <= 120 else text[:117] + "..."


def node_at(root: Any, loc: Sequence[str | int]) -> Any:
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            return None
    return node


def position(lines: list[str], node: Any, cel_line: int, cel_column: int) -> tuple[int, int]:
    """Line and column in the file of a position inside an expression scalar."""
    start = node.start_mark
    expression_lines = node.value.rstrip("\n").split("\n")
    if cel_line > len(expression_lines):  # past a block's final newline: its last character
        cel_line, cel_column = len(expression_lines), len(expression_lines[-1]) + 1
    if node.style == "|":  # literal block: expression lines are source lines
        first = next(
            (text for text in lines[start.line + 1 : node.end_mark.line + 1] if text.strip()), ""
        )
        indent = len(first) - len(first.lstrip(" "))
        return start.line + cel_line + 1, indent + cel_column
    # Other styles fold source lines into one, joined by single spaces.
    offset = sum(len(text) + 1 for text in expression_lines[: cel_line - 1]) + cel_column - 1
    if node.style == ">":
        first, column = start.line + 1, None
    else:
        first, column = start.line, start.column + (1 if node.style in ("'", '"') else 0)
    consumed = 0
    for index in range(first, min(node.end_mark.line + 1, len(lines))):
        source = lines[index]
        begin = (
            column if index == first and column is not None else len(source) - len(source.lstrip())
        )
        segment = source[begin:].rstrip()
        if offset <= consumed + len(segment):
            return index + 1, begin + offset - consumed + 1
        consumed += len(segment) + 1
    return start.line + 1, start.column + 1
