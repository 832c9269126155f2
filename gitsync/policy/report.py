"""Policy verdicts in the words of a pull-request comment.

Kept apart from :mod:`gitsync.policy.enforce`, which decides, so that how a verdict
reads in a plan can change without touching what it means.
"""

from __future__ import annotations

from gitsync.policy.enforce import Verdicts

__all__ = ["verdict_lines"]


def verdict_lines(verdicts: Verdicts) -> list[str]:
    """A Markdown table of the failures (and a count of what passed), for plan."""
    failed = [(e, r) for e, r in verdicts.results if not r.passed]
    passed = len(verdicts.results) - len(failed)
    if not failed:
        return [f"All {passed} policy checks passed."]
    rows = ["| Policy | Severity | Spec | Message |", "|---|---|---|---|"]
    for entry, result in failed:
        # A pipe in a message would end its table cell.
        message = result.message.replace("|", "\\|")
        rows.append(
            f"| {result.policy} | {result.severity.value} | `{entry.path}:{entry.line}` "
            f"{entry.kind} {entry.name} | {message} |"
        )
    return [*rows, "", f"{passed} other policy check(s) passed."]
