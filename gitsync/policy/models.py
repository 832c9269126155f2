"""What a policy document is, and what evaluating one yields.

The pydantic models validate a ``kind: Policy`` document before any CEL is looked
at, so a misspelt field is reported like one in a spec; :class:`Violation` and
:class:`PolicyResult` are the immutable verdicts every other part of gitsync (the
CLI, plan, the reconciler) reads, without knowing anything about CEL.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import pydantic
from pydantic import Field, StringConstraints, model_validator

from gitsync.specs import StrictModel

__all__ = [
    "LabelSelector",
    "LabelSelectorRequirement",
    "MatchCondition",
    "PolicyDocument",
    "PolicyMatch",
    "PolicyMetadata",
    "PolicyResult",
    "PolicySeverity",
    "PolicySpec",
    "Validation",
    "Variable",
    "Violation",
]

_CEL_RESERVED: Final = frozenset(
    {
        "as",
        "break",
        "const",
        "continue",
        "else",
        "false",
        "for",
        "function",
        "if",
        "import",
        "in",
        "let",
        "loop",
        "package",
        "namespace",
        "null",
        "return",
        "true",
        "var",
        "void",
        "while",
    }
)
_K8S_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"

PolicyName = Annotated[str, StringConstraints(pattern=_K8S_NAME, max_length=253)]
Expression = Annotated[str, StringConstraints(min_length=1)]


def _check_identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"{name!r} is not a CEL identifier (letters, digits and _)")
    if name in _CEL_RESERVED:
        raise ValueError(f"{name!r} is a reserved word in CEL")
    return name


Identifier = Annotated[str, pydantic.AfterValidator(_check_identifier)]


class PolicySeverity(enum.Enum):
    DENY = "deny"
    """A failure blocks the object."""
    WARN = "warn"
    """A failure is reported; the object is applied."""


class LabelSelectorRequirement(StrictModel):
    key: Annotated[str, StringConstraints(min_length=1)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


class LabelSelector(StrictModel):
    """Kubernetes label selector semantics: every term must hold; empty matches all."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )


class PolicyMatch(StrictModel):
    kinds: list[Annotated[str, StringConstraints(min_length=1)]] = Field(min_length=1)
    namespaces: list[str] = Field(default_factory=list)
    label_selector: LabelSelector = Field(default_factory=LabelSelector)


class MatchCondition(StrictModel):
    name: Identifier
    expression: Expression


class Variable(StrictModel):
    name: Identifier
    expression: Expression


class Validation(StrictModel):
    expression: Expression
    message: str | None = None
    message_expression: Expression | None = None
    reason: Literal["Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge"] = "Invalid"


class PolicySpec(StrictModel):
    severity: Literal["deny", "warn"] = "deny"
    match: PolicyMatch
    match_conditions: list[MatchCondition] = Field(default_factory=list)
    variables: list[Variable] = Field(default_factory=list)
    validations: list[Validation] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_names(self) -> PolicySpec:
        for what, names in (
            ("variable", [v.name for v in self.variables]),
            ("match condition", [c.name for c in self.match_conditions]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{what} {name!r} is declared twice")
                seen.add(name)
        return self


class PolicyMetadata(StrictModel):
    name: PolicyName
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PolicyDocument(StrictModel):
    """One ``kind: Policy`` document as written."""

    api_version: Literal["gitsync.io/v1alpha1"]
    kind: Literal["Policy"]
    metadata: PolicyMetadata
    spec: PolicySpec


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed validation (or match condition that could not be evaluated)."""

    expression: str
    message: str
    reason: str
    #: The expression could not be evaluated (an error, not a false): the policy
    #: author's problem as much as the spec author's.
    error: bool = False


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """The verdict of one policy that matched an object."""

    policy: str
    severity: PolicySeverity
    passed: bool
    violations: tuple[Violation, ...] = ()

    def __post_init__(self) -> None:
        if self.passed == bool(self.violations):
            raise ValueError("a result passes exactly when it has no violations")

    @property
    def message(self) -> str:
        """Every violation's message, in validation order; empty when passed."""
        return "; ".join(v.message for v in self.violations)

    @property
    def reason(self) -> str:
        return self.violations[0].reason if self.violations else ""

    @property
    def error(self) -> bool:
        """Some expression errored (rather than evaluating to false)."""
        return any(v.error for v in self.violations)

    @property
    def denied(self) -> bool:
        return not self.passed and self.severity is PolicySeverity.DENY

    def __str__(self) -> str:
        if self.passed:
            return f"{self.policy}: passed"
        return f"{self.policy} ({self.severity.value}): {self.message}"
