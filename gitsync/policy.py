"""Policies as code: CEL rules over specs, checked when they load, evaluated fast.

A policy reads like a Kubernetes ValidatingAdmissionPolicy::

    apiVersion: gitsync.io/v1alpha1
    kind: Policy
    metadata: {name: require-team-label}
    spec:
      severity: deny                 # deny | warn
      match:
        kinds: [ModelDeployment, TrainingRun]
        namespaces: [ml-serving]     # optional
        labelSelector: {matchLabels: {...}, matchExpressions: [...]}  # optional
      matchConditions:               # optional CEL preconditions, all must hold
        - {name: canary, expression: "object.spec.rollout.strategy == 'canary'"}
      variables:
        - {name: team, expression: "object.metadata.labels['team']"}
      validations:
        - expression: "variables.team != ''"
          message: "a team label is required"      # or messageExpression
          reason: Forbidden                         # optional
      params: {...}                  # optional static data, ``params`` in CEL

Expressions see ``object`` (the spec as the user wrote it, a plain dict),
``rendered`` (the Kubernetes object it renders to), ``oldObject`` (the object at
the base revision, or null), ``request`` (``kind``, ``namespace``, ``operation``:
CREATE or UPDATE), ``params`` and ``variables``.

Every expression is parsed and type-checked when the policy loads; a broken
policy is a :class:`~gitsync.loading.Diagnostic` naming the file, line, field and
policy. At evaluation an expression that errors (a missing key, a division by
zero, a non-bool result) is a failed validation whose message says why, never a
pass.

Two environments, one compiled program
--------------------------------------
The engine is ``cel-expr-python`` (the CEL C++ runtime). Its Python functions
cannot return values of a custom type, so Kubernetes ``Quantity`` is handled in
two environments: expressions are *checked* where ``quantity()`` returns the
abstract type ``kubernetes.Quantity`` (so ``quantity('1') == '1'``,
``quantity('1') < quantity('2')`` or ``'a'.isLessThan('b')`` are type errors, as
in Kubernetes), and the checked program is *run* in an environment where a
quantity is an opaque string holding its exact value. The type checker has
already proved that such strings only ever meet quantity functions.

Variables may read the ones declared before them. A variable that errors is bound
to a value the runtime refuses on access, so the error surfaces lazily, only in
the expressions that actually read it, with CEL's usual absorption by ``||``,
``&&`` and ``?:`` (the Kubernetes semantics of lazy variables).

Inputs are copied into plain JSON-like data first; a NUL character becomes U+FFFD
because cel-expr-python would silently cut the string there.
"""

from __future__ import annotations

import datetime
import enum
import functools
import itertools
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import pydantic
import yaml
from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_math, ext_optional, ext_strings
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from gitsync.errors import ConfigurationError
from gitsync.loading import (
    Diagnostic,
    Entry,
    LoadResult,
    Rejected,
    Severity,
    document_lines,
    field_path,
    validation_diagnostics,
)
from gitsync.specs import closest_name

__all__ = [
    "LIBRARY_DIR",
    "LabelSelector",
    "LabelSelectorRequirement",
    "MatchCondition",
    "Policy",
    "PolicyDocument",
    "PolicyMatch",
    "PolicyResult",
    "PolicySet",
    "PolicySeverity",
    "Quantity",
    "QuantityError",
    "Validation",
    "Variable",
    "VerdictMemo",
    "Verdicts",
    "Violation",
    "enforce",
    "entry_object",
    "load_library",
    "load_policies",
    "load_policy_dirs",
]

#: The shipped policy library (``policies/`` at the repository root).
LIBRARY_DIR: Final = Path(__file__).resolve().parent.parent / "policies"

# --- Kubernetes quantities -----------------------------------------------------------

_NANO: Final = 10**9
_MAX_INT64: Final = 2**63 - 1
_DECIMAL_SUFFIXES: Final = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIXES: Final = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_SUFFIX_CHARS: Final = frozenset("eEinumkKMGTP")
_DIGITS: Final = frozenset("0123456789")
#: Beyond this many decimal digits a quantity is refused rather than computed (the Go
#: implementation keeps arbitrary precision; no resource is anywhere near this).
_MAX_MAGNITUDE_DIGITS: Final = 1000


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity, or an impossible conversion."""


@dataclass(frozen=True, slots=True, order=True)
class Quantity:
    """A Kubernetes ``resource.Quantity``, held exactly as a count of nano-units.

    Parsing follows ``k8s.io/apimachinery/pkg/api/resource.ParseQuantity``: the same
    grammar (``1.5Gi``, ``500m``, ``2e3``, but not ``200K``), values more precise
    than 1n rounded up away from zero, binary-suffixed values capped at 2^63-1.
    Comparison is by value: ``Quantity.parse('1Gi') > Quantity.parse('1000Mi')``.
    """

    nanos: int

    @classmethod
    def parse(cls, text: str) -> Quantity:
        if not text:
            raise QuantityError("a quantity cannot be empty")
        if text == "0":
            return cls(0)
        positive, num, denom, suffix = _scan_quantity(text)
        base, exponent = _interpret_suffix(text, suffix)
        if len(num) + len(denom) > _MAX_MAGNITUDE_DIGITS:
            raise QuantityError(f"quantity {text!r} has too many digits")
        digits = int(num + denom)
        if base == 10:
            magnitude = _scaled_up(digits, exponent + 9 - len(denom), text)
        else:
            numerator = digits * (1 << exponent) * _NANO
            magnitude = -(-numerator // 10 ** len(denom))  # ceiling: round up
            magnitude = min(magnitude, _MAX_INT64 * _NANO)
        return cls(magnitude if positive else -magnitude)

    @classmethod
    def from_int(cls, value: int) -> Quantity:
        return cls(value * _NANO)

    def compare(self, other: Quantity) -> int:
        return (self.nanos > other.nanos) - (self.nanos < other.nanos)

    @property
    def sign(self) -> int:
        return (self.nanos > 0) - (self.nanos < 0)

    def is_integer(self) -> bool:
        whole, fraction = divmod(self.nanos, _NANO)
        return fraction == 0 and -_MAX_INT64 - 1 <= whole <= _MAX_INT64

    def as_integer(self) -> int:
        if not self.is_integer():
            raise QuantityError("cannot convert value to integer")
        return self.nanos // _NANO

    def as_approximate_float(self) -> float:
        try:
            return self.nanos / _NANO
        except OverflowError:
            return float("inf") if self.nanos > 0 else float("-inf")

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(self.nanos + other.nanos)

    def __sub__(self, other: Quantity) -> Quantity:
        return Quantity(self.nanos - other.nanos)

    def __mul__(self, factor: int) -> Quantity:
        return Quantity(self.nanos * factor)

    def __str__(self) -> str:
        whole, fraction = divmod(abs(self.nanos), _NANO)
        sign = "-" if self.nanos < 0 else ""
        if fraction == 0:
            return f"{sign}{whole}"
        return f"{sign}{whole}.{fraction:09d}".rstrip("0")


def _scan_quantity(text: str) -> tuple[bool, str, str, str]:
    """Sign, integer digits, fraction digits and suffix; a port of Go's scanner."""
    end = len(text)
    pos = 0
    positive = True
    if text[0] in "+-":
        positive = text[0] == "+"
        pos = 1
    while pos < end and text[pos] == "0":
        pos += 1
    if pos >= end:
        return positive, "0", "", ""
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    num = text[start:pos] or "0"
    denom = ""
    if pos < end and text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        denom = text[start:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise QuantityError(
            f"{text!r} is not a quantity: expected <number><suffix>, such as 500m, 2Gi or 1e3"
        )
    return positive, num, denom, text[suffix_start:]


def _interpret_suffix(text: str, suffix: str) -> tuple[int, int]:
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix]
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix]
    if len(suffix) > 1 and suffix[0] in "eE":
        exponent = suffix[1:]
        if exponent[-1] in _DIGITS and all(c in _DIGITS for c in exponent.lstrip("+-")):
            value = int(exponent)
            if -_MAX_INT64 - 1 <= value <= _MAX_INT64:
                return 10, ((value + 2**31) % 2**32) - 2**31  # Go's int32 conversion
    raise QuantityError(
        f"{text!r} has an unknown suffix {suffix!r} (use n u m k M G T P E, Ki..Ei)"
    )


def _scaled_up(digits: int, power: int, text: str) -> int:
    """``ceil(digits * 10**power)`` without building huge powers of ten."""
    if digits == 0:
        return 0
    if power >= 0:
        if len(str(digits)) + power > _MAX_MAGNITUDE_DIGITS:
            raise QuantityError(f"quantity {text!r} is too large")
        return digits * int(10**power)
    if -power > len(str(digits)):
        return 1  # below one nano-unit: rounded up to 1n, as Kubernetes does
    return -(-digits // int(10**-power))


# --- policy documents ----------------------------------------------------------------

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


class _Strict(BaseModel):
    """camelCase on the wire, unknown fields rejected, instances immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )


class PolicySeverity(enum.Enum):
    DENY = "deny"
    """A failure blocks the object."""
    WARN = "warn"
    """A failure is reported; the object is applied."""


class LabelSelectorRequirement(_Strict):
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


class LabelSelector(_Strict):
    """Kubernetes label selector semantics: every term must hold; empty matches all."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )


class PolicyMatch(_Strict):
    kinds: list[Annotated[str, StringConstraints(min_length=1)]] = Field(min_length=1)
    namespaces: list[str] = Field(default_factory=list)
    label_selector: LabelSelector = Field(default_factory=LabelSelector)


class MatchCondition(_Strict):
    name: Identifier
    expression: Expression


class Variable(_Strict):
    name: Identifier
    expression: Expression


class Validation(_Strict):
    expression: Expression
    message: str | None = None
    message_expression: Expression | None = None
    reason: Literal["Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge"] = "Invalid"


class PolicySpec(_Strict):
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


class PolicyMetadata(_Strict):
    name: PolicyName
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PolicyDocument(_Strict):
    """One ``kind: Policy`` document as written."""

    api_version: Literal["gitsync.io/v1alpha1"]
    kind: Literal["Policy"]
    metadata: PolicyMetadata
    spec: PolicySpec


# --- results -------------------------------------------------------------------------


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


# --- the CEL environments ------------------------------------------------------------

#: Marks a string holding a quantity at run time. Random per process, so that no input
#: string can pose as a quantity should a policy hand a dyn value to a quantity method.
_QUANTITY_TAG: Final = f"kubernetes.Quantity/{secrets.token_hex(8)}:"
_INPUTS: Final = ("object", "oldObject", "rendered", "params", "request")


def _encode(quantity: Quantity) -> str:
    return _QUANTITY_TAG + str(quantity.nanos)


def _decode(value: object) -> Quantity:
    if not isinstance(value, str) or not value.startswith(_QUANTITY_TAG):
        raise TypeError("no such overload: not a quantity")
    return Quantity(int(value[len(_QUANTITY_TAG) :]))


def _cel_int(value: int) -> int:
    if not -_MAX_INT64 - 1 <= value <= _MAX_INT64:
        raise OverflowError("integer overflow")
    return value


def _numbers(values: list[Any], what: str) -> list[Any]:
    kinds = {type(v) for v in values}
    if not kinds <= {int} and not kinds <= {float}:
        names = ", ".join(sorted(k.__name__ for k in kinds))
        raise TypeError(f"{what}() needs a list of ints or of doubles, not of {names}")
    return values


def _list_sum(values: list[Any]) -> Any:
    total = sum(_numbers(values, "sum"))
    return _cel_int(total) if isinstance(total, int) else total


def _list_extreme(pick: Callable[[list[Any]], Any], name: str) -> Callable[[list[Any]], Any]:
    def extreme(values: list[Any]) -> Any:
        if not values:
            raise ValueError(f"{name}() called on an empty list")
        if len({type(v) for v in values}) > 1:
            raise TypeError(f"{name}() needs a list of one type")
        return pick(values)

    return extreme


def _is_sorted(values: list[Any]) -> bool:
    if len({type(v) for v in values}) > 1:
        raise TypeError("isSorted() needs a list of one type")
    return all(a <= b for a, b in itertools.pairwise(values))


def _quantity_functions() -> list[tuple[str, bool, list[str], str, Callable[..., Any]]]:
    """(name, member, parameter types, result type, implementation); ``Q`` is a
    Kubernetes quantity. Semantics of k8s.io/apiserver/pkg/cel/library/quantity.go."""
    q = Quantity.parse
    return [
        ("quantity", False, ["string"], "Q", lambda s: _encode(q(s))),
        ("isQuantity", False, ["string"], "bool", _is_quantity),
        ("sign", True, ["Q"], "int", lambda a: _decode(a).sign),
        ("sign", False, ["Q"], "int", lambda a: _decode(a).sign),
        ("isGreaterThan", True, ["Q", "Q"], "bool", lambda a, b: _decode(a) > _decode(b)),
        ("isLessThan", True, ["Q", "Q"], "bool", lambda a, b: _decode(a) < _decode(b)),
        ("compareTo", True, ["Q", "Q"], "int", lambda a, b: _decode(a).compare(_decode(b))),
        ("asApproximateFloat", True, ["Q"], "double", lambda a: _decode(a).as_approximate_float()),
        ("asInteger", True, ["Q"], "int", lambda a: _decode(a).as_integer()),
        ("isInteger", True, ["Q"], "bool", lambda a: _decode(a).is_integer()),
        ("add", True, ["Q", "Q"], "Q", lambda a, b: _encode(_decode(a) + _decode(b))),
        ("add", True, ["Q", "int"], "Q", lambda a, b: _encode(_decode(a) + Quantity.from_int(b))),
        ("sub", True, ["Q", "Q"], "Q", lambda a, b: _encode(_decode(a) - _decode(b))),
        ("sub", True, ["Q", "int"], "Q", lambda a, b: _encode(_decode(a) - Quantity.from_int(b))),
        ("mul", True, ["Q", "int"], "Q", lambda a, b: _encode(_decode(a) * b)),
    ]


def _is_quantity(text: str) -> bool:
    try:
        Quantity.parse(text)
    except QuantityError:
        return False
    return True


#: Kubernetes' list library (k8s.io/apiserver/pkg/cel/library/lists.go), the part
#: policies need: element types each overload is checked for, and one implementation.
_LIST_FUNCTIONS: Final[list[tuple[str, list[str], str | None, Callable[[list[Any]], Any]]]] = [
    ("sum", ["int", "double"], None, _list_sum),
    ("min", ["int", "double", "string"], None, _list_extreme(min, "min")),
    ("max", ["int", "double", "string"], None, _list_extreme(max, "max")),
    ("isSorted", ["int", "double", "string", "bool"], "bool", _is_sorted),
]

_SCALARS: Final = {
    "string": cel.Type.STRING,
    "int": cel.Type.INT,
    "double": cel.Type.DOUBLE,
    "bool": cel.Type.BOOL,
}


def _extensions() -> list[Any]:
    return [
        ext_strings.ExtStrings(),
        ext_math.ExtMath(),
        ext_optional.ExtOptional(),
        ext_bindings.ExtBindings(),
    ]


def _checker_functions() -> list[Any]:
    """Declarations for type-checking: quantities are ``kubernetes.Quantity``."""
    types = {**_SCALARS, "Q": cel.Type.AbstractType("kubernetes.Quantity")}
    decls: dict[str, list[Any]] = {}
    for name, member, params, result, _ in _quantity_functions():
        overload_id = f"{name}_{'member_' if member else ''}{'_'.join(params)}"
        decls.setdefault(name, []).append(
            cel.Overload(
                overload_id,
                return_type=types[result],
                parameters=[types[p] for p in params],
                is_member=member,
            )
        )
    for name, elements, returns, _ in _LIST_FUNCTIONS:
        for element in elements:
            decls.setdefault(name, []).append(
                cel.Overload(
                    f"list_{element}_{name}",
                    return_type=_SCALARS[returns or element],
                    parameters=[cel.Type.List(_SCALARS[element])],
                    is_member=True,
                )
            )
    return [cel.FunctionDecl(name, overloads) for name, overloads in decls.items()]


def _runtime_functions() -> list[Any]:
    """The same functions for running checked programs: a quantity is a string and
    dispatch is by runtime kind, so one implementation serves every list type."""
    types = {**_SCALARS, "Q": cel.Type.STRING}
    decls: dict[str, list[Any]] = {}
    for name, member, params, result, impl in _quantity_functions():
        overload_id = f"{name}_{'member_' if member else ''}{'_'.join(params)}"
        decls.setdefault(name, []).append(
            cel.Overload(
                overload_id,
                return_type=types[result],
                parameters=[types[p] for p in params],
                is_member=member,
                impl=impl,
            )
        )
    for name, _, returns, list_impl in _LIST_FUNCTIONS:
        decls.setdefault(name, []).append(
            cel.Overload(
                f"list_{name}",
                return_type=_SCALARS[returns] if returns else cel.Type.DYN,
                parameters=[cel.Type.List(cel.Type.DYN)],
                is_member=True,
                impl=list_impl,
            )
        )
    return [cel.FunctionDecl(name, overloads) for name, overloads in decls.items()]


@functools.cache
def _runtime() -> Any:
    return cel.NewEnv(extensions=_extensions(), functions=_runtime_functions())


def _checker(variables: Mapping[str, Any]) -> Any:
    declared = {name: cel.Type.DYN for name in _INPUTS}
    declared.update({f"variables.{name}": kind for name, kind in variables.items()})
    return cel.NewEnv(variables=declared, extensions=_extensions(), functions=_checker_functions())


# --- compiling -----------------------------------------------------------------------

_CEL_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")
_UNDECLARED = re.compile(r"undeclared reference to '([^']+)'")
_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")
_STATUS_SUFFIX = re.compile(r"\s*\[[A-Z_]+\]$")
_NO_KEY = re.compile(r'Key not found in map : "(.*)"')
_VARIABLE_USE = re.compile(r"\bvariables\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_VARIABLE_REFUSED = re.compile(r"Non-CEL value type for 'variables\.([A-Za-z_][A-Za-z0-9_]*)'")

Problem = tuple[tuple[str | int, ...], int, int, str]
"""Where (field path, line and column inside the expression) and what."""


@dataclass(frozen=True, slots=True)
class _Program:
    """One checked expression, planned in the runtime environment."""

    text: str
    program: Any
    #: The checker's type of the result (a ``cel.Type``), for declaring variables.
    checked_type: Any


@dataclass(frozen=True, slots=True)
class _Validation:
    check: _Program
    message: str | None
    message_program: _Program | None
    reason: str


class _CompileError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        self.problems = problems


def _compile(
    checker: Any,
    text: str,
    *,
    loc: tuple[str | int, ...],
    want: str | None,
    variables: Sequence[str],
) -> _Program:
    """Parse, type-check and plan ``text``; ``want`` is the required result type."""
    try:
        checked = checker.compile(text)
    except RuntimeError as exc:
        problems = [(loc, ln, col, msg) for ln, col, msg in _cel_errors(str(exc), variables)]
        raise _CompileError(problems) from exc
    result_type = checked.return_type()
    result = str(result_type.name())
    if want is not None and result not in (want, "DYN"):
        message = f"must evaluate to {want.lower()}, but evaluates to {_type_name(result)}"
        raise _CompileError([(loc, 1, 1, message)])
    program = _runtime().deserialize(checked.serialize())
    return _Program(text=text, program=program, checked_type=result_type)


def _type_name(name: str) -> str:
    return name.lower().replace("kubernetes.quantity", "kubernetes.Quantity")


def _cel_errors(error: str, variables: Sequence[str]) -> list[tuple[int, int, str]]:
    found = []
    for line, column, text in _CEL_ERROR.findall(error):
        raw = _STATUS_SUFFIX.sub("", text)
        message = raw
        if match := _UNDECLARED.search(raw):
            message = _undeclared(match.group(1), variables)
        elif "kubernetes.Quantity" in raw and re.search(r"'_(<|<=|>|>=)_'", raw):
            message += "; compare quantities with isLessThan(), isGreaterThan() or compareTo()"
        found.append((int(line), int(column), message))
    if not found:
        found.append((1, 1, _STATUS_PREFIX.sub("", error.strip().splitlines()[0])))
    return found


def _undeclared(name: str, variables: Sequence[str]) -> str:
    if name.startswith("variables."):
        short = name.removeprefix("variables.")
        known = ", ".join(variables) if variables else "none"
        hint = closest_name(short, variables)
        return f"unknown variable {short!r} (declared before this expression: {known})" + (
            f"; did you mean {hint!r}?" if hint else ""
        )
    root = name.split(".", maxsplit=1)[0]
    hint = closest_name(root, _INPUTS)
    return f"unknown name {root!r}; expressions see {', '.join(_INPUTS)} and variables" + (
        f"; did you mean {hint!r}?" if hint else ""
    )


# --- policies ------------------------------------------------------------------------


class _Errored:
    """Bound in place of a variable whose expression errored: the runtime refuses it
    on access, so the error reaches exactly the expressions that read it."""

    __slots__ = ()


_ERRORED: Final = _Errored()


@dataclass(frozen=True, slots=True)
class Policy:
    """A loaded policy: its document and its compiled expressions."""

    document: PolicyDocument
    source: str
    line: int
    _conditions: tuple[tuple[str, _Program], ...] = field(repr=False, compare=False)
    #: Variables by dependency level: each level reads only the levels before it, so
    #: it is evaluated in one activation (each activation converts the inputs anew).
    _variables: tuple[tuple[tuple[str, _Program], ...], ...] = field(repr=False, compare=False)
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

    def matches(self, *, kind: str, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether ``match`` selects an object (``matchConditions`` aside)."""
        match = self.document.spec.match
        return (
            (kind in match.kinds or "*" in match.kinds)
            and (not match.namespaces or namespace in match.namespaces)
            and match.label_selector.matches(labels)
        )

    def _evaluate(self, inputs: Mapping[str, Any]) -> PolicyResult | None:
        """Run against prepared inputs; ``None`` when a match condition is false."""
        data: dict[str, Any] = {**inputs, "params": self._params}
        errors = self._bind_variables(data)
        activation = _runtime().Activation(data)

        for name, program in self._conditions:
            outcome, error = _run_bool(program, activation, errors)
            if error is not None:
                message = f"match condition {name!r} could not be evaluated: {error}"
                violation = Violation(program.text, message, "Invalid", error=True)
                return self._result((violation,))
            if not outcome:
                return None

        violations = []
        for validation in self._validations:
            outcome, error = _run_bool(validation.check, activation, errors)
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
            activation = _runtime().Activation(data)
            bound = {}
            for name, program in level:
                value, _, error = _run(program, activation, errors, plain=True)
                if error is None:
                    bound[f"variables.{name}"] = value
                else:
                    errors[name] = error
                    bound[f"variables.{name}"] = _ERRORED
            data.update(bound)
        return errors

    def _result(self, violations: tuple[Violation, ...]) -> PolicyResult:
        return PolicyResult(self.name, self.severity, passed=not violations, violations=violations)


def _run(
    program: _Program, activation: Any, errors: Mapping[str, str], *, plain: bool = False
) -> tuple[Any, str, str | None]:
    """The Python value and CEL type of the result, or why there is none.

    CEL returns most errors as values, and raises a few; both, and a result Python
    cannot hold, are an error here, never a value that might pass.
    """
    try:
        value = program.program.eval(activation)
        kind = str(value.type().name())
    except Exception as exc:  # noqa: BLE001 - whatever the runtime throws is a failure
        return None, "ERROR", _error_text(str(exc), errors)
    try:
        if kind == "ERROR":
            return None, kind, _error_text(str(value.value()), errors)
        return (value.plain_value() if plain else value.value()), kind, None
    except Exception:  # noqa: BLE001 - a value with no Python form, such as an optional
        return None, kind, f"its value ({value!r}) has no form that can be used here"


def _run_bool(
    program: _Program, activation: Any, errors: Mapping[str, str]
) -> tuple[bool, str | None]:
    value, kind, error = _run(program, activation, errors)
    if error is None and not isinstance(value, bool):
        error = f"evaluates to {_type_name(kind)}, not bool"
    return value is True, error


def _error_text(raw: str, errors: Mapping[str, str]) -> str:
    if (match := _VARIABLE_REFUSED.search(raw)) and match.group(1) in errors:
        name = match.group(1)
        return f"variable {name!r} could not be evaluated: {errors[name]}"
    text = _STATUS_PREFIX.sub("", raw.strip())
    if match := _NO_KEY.search(text):
        return f"no such key {match.group(1)!r}"
    if "Applying SELECT to non-message type" in text:
        return "selects a field of a value that is not a map (null, or a scalar)"
    return text


def _failure_message(validation: _Validation, activation: Any, errors: Mapping[str, str]) -> str:
    """messageExpression, else message, else the expression (Kubernetes' fallbacks)."""
    if validation.message_program is not None:
        text, _, _ = _run(validation.message_program, activation, errors)
        if isinstance(text, str) and text.strip() and "\n" not in text:
            return text
    if validation.message:
        return validation.message
    return f"failed expression: {validation.check.text}"


_DECLARABLE = re.compile(
    r"(BOOL|INT|UINT|DOUBLE|STRING|BYTES|DYN|TIMESTAMP|DURATION|kubernetes\.Quantity"
    r"|LIST<|MAP<|, |>)+"
)


def _unpassable(checked_type: Any) -> str | None:
    """Why a variable of this type cannot be handed to other expressions, if it can't."""
    name = str(checked_type.name())
    if name.startswith("optional"):
        return "a variable cannot hold an optional value; end it with .orValue(default)"
    if name.startswith("TYPE"):
        return "a variable cannot hold a type value; compare types inside one expression"
    return None


def _declarable(checked_type: Any) -> Any:
    """A variable's checked type, when it survives being declared again (scalars,
    lists, maps, quantities); otherwise dyn (optional and type values do not)."""
    if checked_type is not None and _DECLARABLE.fullmatch(str(checked_type.name())):
        return checked_type
    return cel.Type.DYN


def _dependencies(text: str, declared: Mapping[str, Any]) -> list[str]:
    """The earlier variables an expression reads: those it names, proven by checking it
    with only them declared; all of them when that proof fails (say, a name hidden
    behind a comment), which costs speed, never correctness."""
    named = [name for name in _VARIABLE_USE.findall(text) if name in declared]
    try:
        _checker({name: declared[name] for name in named}).compile(text)
    except RuntimeError:
        return list(declared)
    return named


def _compile_policy(document: PolicyDocument, *, source: str, line: int) -> Policy:
    spec = document.spec
    problems: list[Problem] = []
    declared: dict[str, Any] = {}

    def attempt(checker: Any, text: str, loc: tuple[str | int, ...], want: str | None) -> Any:
        try:
            return _compile(checker, text, loc=loc, want=want, variables=list(declared))
        except _CompileError as exc:
            problems.extend(exc.problems)
            return None

    levels: dict[str, int] = {}
    variables: list[tuple[int, str, _Program]] = []
    for index, variable in enumerate(spec.variables):
        loc = ("spec", "variables", index, "expression")
        program = attempt(_checker(declared), variable.expression, loc, None)
        if program is not None and (message := _unpassable(program.checked_type)):
            problems.append((loc, 1, 1, message))
            program = None
        if program is not None:
            uses = _dependencies(variable.expression, declared)
            levels[variable.name] = 1 + max((levels[name] for name in uses), default=-1)
            variables.append((levels[variable.name], variable.name, program))
        # Later expressions are checked against the variable's checked type.
        declared[variable.name] = _declarable(program.checked_type if program else None)

    checker = _checker(declared)
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
        raise _CompileError(problems)
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
        _params=_plain(spec.params),
    )


# --- policy sets ---------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-like data for CEL: mappings to dicts, tuples to lists, dates to strings.

    cel-expr-python cuts a string at its first NUL character, which would let
    ``"img:1.0\\x00:latest"`` pass as ``"img:1.0"``; NUL becomes U+FFFD instead, so
    policies see every character that follows it.
    """
    kind = type(value)
    if kind is str:
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if kind is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if kind is list:
        return [_plain(v) for v in value]
    return value if kind in _ATOMS else _plain_other(value)


def _plain_other(value: Any) -> Any:
    """The slow path of :func:`_plain`: subclasses, other mappings and sequences, dates."""
    if isinstance(value, str):
        return _plain(str(value))
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.date):  # YAML timestamps; Kubernetes sends strings
        return value.isoformat()
    return value


_ATOMS: Final = frozenset({int, float, bool, type(None), bytes})


def entry_object(entry: Entry) -> dict[str, Any]:
    """What ``object`` holds for a loaded entry: a manifest as-is, a spec as written
    (the fields the user set, camelCase; defaults are not filled in)."""
    if entry.spec is not None:
        dumped: dict[str, Any] = entry.spec.model_dump(
            mode="json", by_alias=True, exclude_unset=True
        )
        return dumped
    plain: dict[str, Any] = _plain(entry.manifest or {})
    return plain


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Loaded policies, evaluated together against one object at a time."""

    policies: tuple[Policy, ...] = ()

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(policy.name for policy in self.policies)

    def get(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)

    def evaluate(
        self,
        *,
        kind: str,
        object: Mapping[str, Any],
        rendered: Mapping[str, Any] | None,
        old_object: Mapping[str, Any] | None,
        namespace: str,
        labels: Mapping[str, str] | None = None,
    ) -> list[PolicyResult]:
        """One result per policy that selects the object, in policy order.

        ``namespace`` is where the object lands (the repo default filled in; empty
        for cluster-scoped kinds); ``labels`` default to ``object.metadata.labels``.
        """
        current = _plain(object)
        if labels is None:
            metadata = current.get("metadata")
            found = metadata.get("labels") if isinstance(metadata, dict) else None
            labels = found if isinstance(found, dict) else {}
        inputs = {
            "object": current,
            "oldObject": _plain(old_object),
            "rendered": _plain(rendered),
            "request": _plain(
                {
                    "kind": kind,
                    "namespace": namespace,
                    "operation": "CREATE" if old_object is None else "UPDATE",
                }
            ),
        }
        results = []
        for policy in self.policies:
            if not policy.matches(kind=kind, namespace=namespace, labels=labels):
                continue
            if (result := policy._evaluate(inputs)) is not None:
                results.append(result)
        return results

    def evaluate_entry(
        self,
        entry: Entry,
        *,
        rendered: Mapping[str, Any] | None,
        default_namespace: str,
        old_object: Mapping[str, Any] | None = None,
    ) -> list[PolicyResult]:
        """:meth:`evaluate` for a loaded entry and its rendering."""
        return self.evaluate(
            kind=entry.kind,
            object=entry_object(entry),
            rendered=rendered,
            old_object=old_object,
            namespace=entry.namespace(default_namespace),
        )


# --- loading -------------------------------------------------------------------------


def load_policies(sources: Iterable[tuple[str, bytes]]) -> tuple[PolicySet, list[Diagnostic]]:
    """Parse, validate and compile ``(path, content)`` pairs of policy YAML.

    A policy with any problem is left out and reported; callers should treat error
    diagnostics as a configuration failure rather than run with fewer policies.
    """
    policies: list[Policy] = []
    diagnostics: list[Diagnostic] = []
    where: dict[str, str] = {}
    for path, content in sources:
        for policy in _load_file(path, content, diagnostics):
            if policy.name in where:
                message = f"policy {policy.name!r} is also declared at {where[policy.name]}"
                diagnostics.append(Diagnostic(path, policy.line, 1, message, "metadata.name"))
                continue
            where[policy.name] = f"{path}:{policy.line}"
            policies.append(policy)
    return PolicySet(tuple(policies)), diagnostics


def load_policy_dirs(dirs: Iterable[Path | str]) -> tuple[PolicySet, list[Diagnostic]]:
    """Every ``*.yaml``/``*.yml`` file in ``dirs`` (not recursive), in name order."""
    return load_policies(_dir_sources(dirs))


def load_library(
    extra_dirs: Iterable[Path | str] = (),
    *,
    extra_sources: Iterable[tuple[str, bytes]] = (),
    library: Path | str = LIBRARY_DIR,
) -> tuple[PolicySet, list[Diagnostic]]:
    """The shipped policies plus those in ``extra_dirs`` and ``extra_sources`` (a spec
    repo's own policy files, read from Git).

    A repo policy named like a shipped one replaces it (say, to change its params),
    noted by a warning; two repo policies of one name are an error.
    """
    shipped, shipped_diagnostics = _shipped(str(library))
    sources = [*_dir_sources(extra_dirs), *extra_sources]
    extra, extra_diagnostics = load_policies(sources)
    diagnostics = [*shipped_diagnostics, *extra_diagnostics]
    replaced = set(extra.names)
    for policy in extra:
        if (original := shipped.get(policy.name)) is not None:
            message = f"policy {policy.name!r} replaces the shipped one from {original.source}"
            diagnostics.append(
                Diagnostic(
                    policy.source, policy.line, 1, message, "metadata.name", Severity.WARNING
                )
            )
    kept = tuple(p for p in shipped if p.name not in replaced)
    return PolicySet(kept + extra.policies), diagnostics


@functools.cache
def _shipped(library: str) -> tuple[PolicySet, tuple[Diagnostic, ...]]:
    # Compiling the library takes tens of milliseconds: once per process is enough.
    policies, diagnostics = load_policy_dirs([library])
    return policies, tuple(diagnostics)


def _dir_sources(dirs: Iterable[Path | str]) -> list[tuple[str, bytes]]:
    sources: list[tuple[str, bytes]] = []
    for directory in map(Path, dirs):
        if not directory.is_dir():
            raise ConfigurationError(f"policy folder {directory} does not exist")
        files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
        sources.extend((str(path), path.read_bytes()) for path in files)
    return sources


def _load_file(path: str, content: bytes, diagnostics: list[Diagnostic]) -> list[Policy]:
    try:
        documents = list(yaml.load_all(content, Loader=yaml.CSafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc)
        diagnostics.append(Diagnostic(path, line, column, f"invalid YAML: {problem}"))
        return []
    starts = document_lines(content)
    nodes: list[Any] | None = None
    policies = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        line = starts[index] if index < len(starts) else 1
        if not isinstance(document, dict):
            message = f"a policy document must be a mapping, not a {type(document).__name__}"
            diagnostics.append(Diagnostic(path, line, 1, message))
            continue
        metadata = document.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        label = f"policy {name!r}" if isinstance(name, str) else "policy"
        try:
            parsed = PolicyDocument.model_validate(document)
        except pydantic.ValidationError as exc:
            found = validation_diagnostics(
                exc, PolicyDocument, content=content, path=path, index=index
            )
            diagnostics.extend(
                Diagnostic(d.path, d.line, d.column, f"{label}: {d.message}", d.field)
                for d in found
            )
            continue
        try:
            policies.append(_compile_policy(parsed, source=path, line=line))
        except _CompileError as exc:
            if nodes is None:
                nodes = list(yaml.compose_all(content, Loader=yaml.CSafeLoader))
            lines = content.decode("utf-8", errors="replace").splitlines()
            for loc, cel_line, cel_column, message in exc.problems:
                node = _node_at(nodes[index], loc) if index < len(nodes) else None
                if isinstance(node, yaml.ScalarNode):
                    at = _position(lines, node, cel_line, cel_column)
                else:
                    at = (line, 1)
                text = _excerpt(document, loc)
                diagnostics.append(
                    Diagnostic(path, *at, f"{label}: {message} in {text!r}", field_path(loc))
                )
    return policies


def _excerpt(document: Any, loc: Sequence[str | int]) -> str:
    value = document
    for part in loc:
        value = value[part]
    text = " ".join(str(value).split())
    return text if len(text) <= 120 else text[:117] + "..."


def _node_at(root: Any, loc: Sequence[str | int]) -> Any:
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            return None
    return node


def _position(lines: list[str], node: Any, cel_line: int, cel_column: int) -> tuple[int, int]:
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


# --- enforcement ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Every policy result of one set of entries, and what that means for them."""

    results: tuple[tuple[Entry, PolicyResult], ...]
    #: Entries that stay: none of their deny policies failed.
    entries: tuple[Entry, ...]
    #: One error per failed deny policy, one warning per failed warn policy.
    diagnostics: tuple[Diagnostic, ...]

    def applied_to(self, loaded: LoadResult) -> LoadResult:
        """``loaded`` with denied entries treated as invalid: dropped, their files
        protected from pruning, their errors reported, their statuses Invalid."""
        kept = {id(entry) for entry in self.entries}
        denied = [entry for entry in loaded.entries if id(entry) not in kept]
        errors = [d for d in self.diagnostics if d.severity is Severity.ERROR]
        return LoadResult(
            entries=tuple(entry for entry in loaded.entries if id(entry) in kept),
            diagnostics=tuple(
                sorted([*loaded.diagnostics, *errors], key=lambda d: (d.path, d.line, d.column))
            ),
            failed_paths=loaded.failed_paths | {entry.path for entry in denied},
            rejected=(
                *loaded.rejected,
                *(
                    Rejected(entry.path, entry.kind, entry.name, entry.namespace(""))
                    for entry in denied
                ),
            ),
        )

    def lines(self) -> list[str]:
        """A Markdown table of the failures (and a count of what passed), for plan."""
        failed = [(e, r) for e, r in self.results if not r.passed]
        passed = len(self.results) - len(failed)
        if not failed:
            return [f"All {passed} policy checks passed."]
        rows = ["| Policy | Severity | Spec | Message |", "|---|---|---|---|"]
        for entry, result in failed:
            message = result.message.replace("|", "\\|")
            rows.append(
                f"| {result.policy} | {result.severity.value} | `{entry.path}:{entry.line}` "
                f"{entry.kind} {entry.name} | {message} |"
            )
        return [*rows, "", f"{passed} other policy check(s) passed."]


#: What :func:`enforce` remembers per entry: the exact inputs (compared by identity,
#: since the caller's caches hand back the same objects while nothing changed) and
#: the results they gave.
VerdictMemo = dict[int, tuple[tuple[object, ...], list[PolicyResult]]]


def enforce(
    policies: PolicySet,
    entries: Sequence[tuple[Entry, Mapping[str, Any] | None]],
    *,
    default_namespace: str,
    old_objects: Mapping[tuple[str, str, str], Mapping[str, Any]] | None = None,
    memo: VerdictMemo | None = None,
) -> Verdicts:
    """Run the policies over each entry and its rendering.

    With ``memo`` (kept by the caller from one call to the next), an entry whose spec,
    rendering, old object and policies are the very same objects as last time is not
    evaluated again: a daemon cycle re-judges only what changed.

    ``old_objects`` (by kind, namespace, name: the spec as it was at the base revision)
    feeds ``oldObject`` for transition rules. An entry failing a deny policy is
    dropped from :attr:`Verdicts.entries` and gets an error diagnostic at its line, so
    callers treat it like an invalid spec: not applied, nothing of its file pruned.
    """
    old = old_objects or {}
    results: list[tuple[Entry, PolicyResult]] = []
    kept: list[Entry] = []
    diagnostics: list[Diagnostic] = []
    seen: VerdictMemo = {}
    for entry, rendered in entries:
        namespace = entry.namespace(default_namespace)
        old_object = old.get((entry.kind, namespace, entry.name))
        inputs = (policies, entry, rendered, old_object)
        cached = (memo or {}).get(id(entry))
        if cached is not None and all(a is b for a, b in zip(cached[0], inputs, strict=True)):
            outcome = cached[1]
        else:
            outcome = policies.evaluate_entry(
                entry,
                rendered=rendered,
                default_namespace=default_namespace,
                old_object=old_object,
            )
        seen[id(entry)] = (inputs, outcome)
        denied = False
        for result in outcome:
            results.append((entry, result))
            if result.passed:
                continue
            denied = denied or result.denied
            severity = Severity.ERROR if result.denied else Severity.WARNING
            verb = "denied" if result.denied else "warning"
            diagnostics.append(
                Diagnostic(
                    entry.path,
                    entry.line,
                    1,
                    f"{verb} by policy {result.policy}: {result.message}",
                    severity=severity,
                )
            )
        if not denied:
            kept.append(entry)
    if memo is not None:
        memo.clear()
        memo.update(seen)
    return Verdicts(tuple(results), tuple(kept), tuple(diagnostics))
