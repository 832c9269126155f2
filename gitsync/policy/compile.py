"""Compiling a validated policy document into a :class:`Policy`, and running one.

Every expression is parsed and type-checked here, when the policy loads, so a
broken policy is refused before it can judge anything. Variables are grouped by
dependency level at compile time, so that running a policy converts its inputs
once per level rather than once per variable.

A variable that errors is bound to a value the runtime refuses on access, so the
error surfaces lazily, only in the expressions that read it, with CEL's usual
absorption by ``||``, ``&&`` and ``?:`` (Kubernetes' lazy variables).

Checking is most of what loading policies costs (the shipped library took about
0.1 s of every ``gitsync sync`` process, mostly in building a type-checking
environment for each variable), and its outcome depends only on the document and
the CEL engine. So, given a :class:`ProgramStore`, a policy that compiled is
remembered as its checked expressions' bytes by a digest of both, and a later
process plans them again without checking. An entry that does not fit the document
its key names, or whose bytes the runtime refuses, is compiled afresh; a policy that
does not compile is never remembered, so its diagnostics come out every time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

from gitsync import __version__
from gitsync.policy import cel
from gitsync.policy.models import PolicyDocument, PolicyResult, PolicySeverity, Violation

__all__ = ["Policy", "ProgramStore", "compile_policy"]

#: Bumped when the shape of a remembered policy changes, so older entries go unused.
_ENTRY_FORMAT: Final = 1


class ProgramStore(Hashable, Protocol):
    """JSON values by key, kept beyond this process (:class:`gitsync.cache.DiskCache`);
    hashable, since loaders remember what they loaded by it."""

    def get(self, key: str) -> object | None: ...

    def put(self, key: str, value: object) -> None: ...


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


def compile_policy(
    document: PolicyDocument, *, source: str, line: int, store: ProgramStore | None = None
) -> Policy:
    """Check and plan every expression of ``document``; raises :class:`cel.CompileError`
    with every problem found. ``store`` remembers the result (see the module's text)."""
    if store is None:
        return _compile(document, source=source, line=line)
    key = _entry_key(document)
    if (policy := _restored(store.get(key), document, source=source, line=line)) is not None:
        return policy
    policy = _compile(document, source=source, line=line)
    store.put(key, _entry(policy))
    return policy


def _compile(document: PolicyDocument, *, source: str, line: int) -> Policy:
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


def _entry_key(document: PolicyDocument) -> str:
    payload = orjson.dumps(
        [_ENTRY_FORMAT, __version__, cel.ENGINE_VERSION, document.model_dump(mode="json")],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(payload).hexdigest()


def _entry(policy: Policy) -> dict[str, Any]:
    """What is remembered of a compiled policy: its programs' checked bytes, each
    variable by its index in the document, by level. The rest is in the document."""
    spec = policy.document.spec
    index = {variable.name: i for i, variable in enumerate(spec.variables)}
    return {
        "variables": [
            [[index[name], _encode(program)] for name, program in level]
            for level in policy._variables
        ],
        "conditions": [_encode(program) for _, program in policy._conditions],
        "validations": [
            [_encode(v.check), _encode(v.message_program) if v.message_program else None]
            for v in policy._validations
        ],
    }


def _restored(value: object, document: PolicyDocument, *, source: str, line: int) -> Policy | None:
    """The policy ``value`` remembers for ``document``; None unless it has exactly the
    shape :func:`_entry` writes for it and the runtime takes every program's bytes."""
    spec = document.spec
    if not (
        isinstance(value, dict)
        and value.keys() == {"variables", "conditions", "validations"}
        and isinstance(levels := value["variables"], list)
        and all(isinstance(level, list) and level for level in levels)
        and all(isinstance(pair, list) and len(pair) == 2 for level in levels for pair in level)
        and sorted(pair[0] for level in levels for pair in level if type(pair[0]) is int)
        == list(range(len(spec.variables)))
        and isinstance(conditions := value["conditions"], list)
        and len(conditions) == len(spec.match_conditions)
        and isinstance(validations := value["validations"], list)
        and len(validations) == len(spec.validations)
        and all(
            isinstance(pair, list)
            and len(pair) == 2
            and (pair[1] is None) == (written.message_expression is None)
            for pair, written in zip(validations, spec.validations, strict=True)
        )
    ):
        return None
    try:
        restored_levels = tuple(
            tuple(
                (spec.variables[i].name, _decode(spec.variables[i].expression, data))
                for i, data in level
            )
            for level in levels
        )
        restored_conditions = tuple(
            (condition.name, _decode(condition.expression, data))
            for condition, data in zip(spec.match_conditions, conditions, strict=True)
        )
        restored_validations = tuple(
            _Validation(
                _decode(written.expression, check),
                written.message,
                _decode(written.message_expression, message)
                if written.message_expression is not None
                else None,
                written.reason,
            )
            for written, (check, message) in zip(spec.validations, validations, strict=True)
        )
    except _Refused:
        return None
    return Policy(
        document=document,
        source=source,
        line=line,
        _conditions=restored_conditions,
        _variables=restored_levels,
        _validations=restored_validations,
        _params=cel.plain(spec.params),
    )


class _Refused(Exception):
    """A remembered program that cannot be used."""


def _encode(program: cel.Program) -> str:
    return base64.b64encode(program.checked).decode("ascii")


def _decode(text: str, data: object) -> cel.Program:
    if not isinstance(data, str):
        raise _Refused
    try:
        checked = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Refused from exc
    if (program := cel.restore(text, checked)) is None:
        raise _Refused
    return program
