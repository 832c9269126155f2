"""Compiling a validated policy document into a :class:`Policy`, and running one.

Every expression is parsed and type-checked here, when the policy loads, so a
broken policy is refused before it can judge anything. Variables are grouped by
dependency level at compile time, so that running a policy converts its inputs
once per level rather than once per variable.

A variable that errors is bound to a value the runtime refuses on access, so the
error surfaces lazily, only in the expressions that read it, with CEL's usual
absorption by ``||``, ``&&`` and ``?:`` (Kubernetes' lazy variables).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitsync.policy import cel
from gitsync.policy.models import PolicyDocument, PolicyResult, PolicySeverity, Violation

__all__ = ["Policy", "compile_policy"]


@dataclass(frozen=True, slots=True)
class _Validation:
    check: cel.Program
    message: str | None
    message_program: cel.Program | None
    reason: str


@dataclass(frozen=True, slots=True)
class Policy:
    """A loaded policy: its document and its compiled expressions."""

    document: PolicyDocument
    source: str
    line: int
    _conditions: tuple[tuple[str, cel.Program], ...] = field(repr=False, compare=False)
    #: Variables by dependency level: each level reads only the levels before it, so
    #: it is evaluated in one activation (each activation converts the inputs anew).
    _variables: tuple[tuple[tuple[str, cel.Program], ...], ...] = field(repr=False, compare=False)
    _validations: tuple[_Validation, ...] = field(repr=False, compare=False)
    _params: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.document.metadata.name

    @property
    def severity(self) -> PolicySeverity:
        return PolicySeverity(self.document.spec.severity)

    @property
    def params(self) -> Mapping[str, Any]:
        return self.document.spec.params

    def matches(
        self,
        *,
        kind: str,
        namespace: str,
        labels: Mapping[str, str],
        rendered_kind: str | None = None,
    ) -> bool:
        """Whether ``match`` selects an object (``matchConditions`` aside): by its own
        kind, or by the kind it renders to, so a policy for InferenceServices judges
        the ModelDeployments that become one as well as those written as YAML."""
        match = self.document.spec.match
        return (
            (kind in match.kinds or rendered_kind in match.kinds or "*" in match.kinds)
            and (not match.namespaces or namespace in match.namespaces)
            and match.label_selector.matches(labels)
        )

    def evaluate(self, inputs: Mapping[str, Any]) -> PolicyResult | None:
        """Run against inputs prepared by :meth:`PolicySet.evaluate` (plain data, one
        copy for every policy); ``None`` when a match condition is false."""
        data: dict[str, Any] = {**inputs, "params": self._params}
        errors = self._bind_variables(data)
        activation = cel.activation(data)

        for name, program in self._conditions:
            outcome, error = cel.run_bool(program, activation, errors)
            if error is not None:
                message = f"match condition {name!r} could not be evaluated: {error}"
                violation = Violation(program.text, message, "Invalid", error=True)
                return self._result((violation,))
            if not outcome:
                return None

        violations = []
        for validation in self._validations:
            outcome, error = cel.run_bool(validation.check, activation, errors)
            if error is not None:
                message = f"could not evaluate {validation.check.text!r}: {error}"
                violations.append(Violation(validation.check.text, message, "Invalid", error=True))
            elif not outcome:
                message = _failure_message(validation, activation, errors)
                violations.append(Violation(validation.check.text, message, validation.reason))
        return self._result(tuple(violations))

    def _bind_variables(self, data: dict[str, Any]) -> dict[str, str]:
        """Evaluate the variables into ``data``; why each one that errored did."""
        errors: dict[str, str] = {}
        for level in self._variables:
            activation = cel.activation(data)
            bound = {}
            for name, program in level:
                value, _, error = cel.run(program, activation, errors, plain=True)
                if error is None:
                    bound[f"variables.{name}"] = value
                else:
                    errors[name] = error
                    bound[f"variables.{name}"] = cel.ERRORED
            data.update(bound)
        return errors

    def _result(self, violations: tuple[Violation, ...]) -> PolicyResult:
        return PolicyResult(self.name, self.severity, passed=not violations, violations=violations)


def _failure_message(validation: _Validation, activation: Any, errors: Mapping[str, str]) -> str:
    """messageExpression, else message, else the expression (Kubernetes' fallbacks)."""
    if validation.message_program is not None:
        text, _, _ = cel.run(validation.message_program, activation, errors)
        if isinstance(text, str) and text.strip() and "\n" not in text:
            return text
    if validation.message:
        return validation.message
    return f"failed expression: {validation.check.text}"


def compile_policy(document: PolicyDocument, *, source: str, line: int) -> Policy:
    spec = document.spec
    problems: list[cel.Problem] = []
    declared: dict[str, Any] = {}

    def attempt(checker: Any, text: str, loc: tuple[str | int, ...], want: str | None) -> Any:
        try:
            return cel.compile_expression(
                checker, text, loc=loc, want=want, variables=list(declared)
            )
        except cel.CompileError as exc:
            problems.extend(exc.problems)
            return None

    levels: dict[str, int] = {}
    variables: list[tuple[int, str, cel.Program]] = []
    for index, variable in enumerate(spec.variables):
        loc = ("spec", "variables", index, "expression")
        program = attempt(cel.checker(declared), variable.expression, loc, None)
        if program is not None and (message := cel.unpassable(program.checked_type)):
            problems.append((loc, 1, 1, message))
            program = None
        if program is not None:
            uses = cel.dependencies(variable.expression, declared)
            levels[variable.name] = 1 + max((levels[name] for name in uses), default=-1)
            variables.append((levels[variable.name], variable.name, program))
        # Later expressions are checked against the variable's checked type.
        declared[variable.name] = cel.declarable(program.checked_type if program else None)

    checker = cel.checker(declared)
    conditions = []
    for index, condition in enumerate(spec.match_conditions):
        loc = ("spec", "matchConditions", index, "expression")
        if (program := attempt(checker, condition.expression, loc, "BOOL")) is not None:
            conditions.append((condition.name, program))
    validations = []
    for index, validation in enumerate(spec.validations):
        loc = ("spec", "validations", index, "expression")
        check = attempt(checker, validation.expression, loc, "BOOL")
        message_program = None
        if validation.message_expression is not None:
            loc = ("spec", "validations", index, "messageExpression")
            message_program = attempt(checker, validation.message_expression, loc, "STRING")
        if check is not None:
            validations.append(
                _Validation(check, validation.message, message_program, validation.reason)
            )
    if problems:
        raise cel.CompileError(problems)
    return Policy(
        document=document,
        source=source,
        line=line,
        _conditions=tuple(conditions),
        _variables=tuple(
            tuple((name, program) for level, name, program in variables if level == depth)
            for depth in range(1 + max((v[0] for v in variables), default=-1))
        ),
        _validations=tuple(validations),
        _params=cel.plain(spec.params),
    )
