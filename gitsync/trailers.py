"""Commit trailers gitsync writes and reads (placeholder until the trailers work lands)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Trailers"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Trailers:
    source_commit: str | None = None
    instance: str | None = None
    reverts: str | None = None

    def format(self) -> str:
        lines = []
        if self.reverts:
            lines.append(f"Reverts: {self.reverts}")
        if self.source_commit:
            lines.append(f"Gitsync-Source-Commit: {self.source_commit}")
        if self.instance:
            lines.append(f"Gitsync-Instance: {self.instance}")
        return "".join(f"{line}\n" for line in lines)
