"""The CEL engine behind policies: environments, checking, running, error texts.

This is the one module that imports ``cel_expr_python`` and reads its error
strings, so that an upgrade of the engine (whose messages are not an API) is a
change in one place, and the rest of the policy package deals in
:class:`Program` values, positions and plain-English reasons.

The engine's Python functions cannot return values of a custom type, so
Kubernetes ``Quantity`` lives in two environments: expressions are *checked* where
``quantity()`` returns the abstract type ``kubernetes.Quantity`` (so
``quantity('1') == '1'`` or ``quantity('1') < quantity('2')`` are type errors, as
in Kubernetes), and the checked program is *run* where a quantity is an opaque
string holding its exact value; the checker has already proved such strings only
ever meet quantity functions.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import itertools
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_math, ext_optional, ext_strings

from gitsync.errors import ConfigurationError
from gitsync.quantity import Quantity, QuantityError
from gitsync.specs import closest_name

#: The CEL engine's release: a stored verdict is only as good as the engine that gave it.
ENGINE_VERSION: Final = importlib.metadata.version("cel-expr-python")

__all__ = [
    "ENGINE_VERSION",
    "ERRORED",
    "INPUTS",
    "CompileError",
    "Problem",
    "Program",
    "activation",
    "checker",
    "compile_expression",
    "declarable",
    "dependencies",
    "plain",
    "restore",
    "run",
    "run_bool",
    "type_name",
    "unpassable",
]

#: CEL's int is a signed 64-bit integer; Python's would silently grow past it.
_MAX_INT64: Final = 2**63 - 1

#: Marks a string holding a quantity at run time. Random per process, so that no input
#: string can pose as a quantity should a policy hand a dyn value to a quantity method.
_QUANTITY_TAG: Final = f"kubernetes.Quantity/{secrets.token_hex(8)}:"


INPUTS: Final = ("object", "oldObject", "rendered", "params", "request")


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


def _quantity_overloads(quantity: Any, *, runtime: bool) -> dict[str, list[Any]]:
    """The quantity functions' overloads, with ``quantity`` as their quantity type;
    with their implementations when ``runtime``."""
    types = {**_SCALARS, "Q": quantity}
    decls: dict[str, list[Any]] = {}
    for name, member, params, result, impl in _quantity_functions():
        overload_id = f"{name}_{'member_' if member else ''}{'_'.join(params)}"
        decls.setdefault(name, []).append(
            cel.Overload(
                overload_id,
                return_type=types[result],
                parameters=[types[p] for p in params],
                is_member=member,
                **({"impl": impl} if runtime else {}),
            )
        )
    return decls


def _checker_functions() -> list[Any]:
    """Declarations for type-checking: quantities are ``kubernetes.Quantity``."""
    quantity = cel.Type.AbstractType("kubernetes.Quantity")
    decls = _quantity_overloads(quantity, runtime=False)
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
    decls = _quantity_overloads(cel.Type.STRING, runtime=True)
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


def checker(variables: Mapping[str, Any]) -> Any:
    declared = {name: cel.Type.DYN for name in INPUTS}
    declared.update({f"variables.{name}": kind for name, kind in variables.items()})
    return cel.NewEnv(variables=declared, extensions=_extensions(), functions=_checker_functions())


def activation(data: Mapping[str, Any]) -> Any:
    """Bindings for running programs; each one converts ``data`` into CEL values anew."""
    return _runtime().Activation(data)


# --- checking ----------------------------------------------------------------------


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
class Program:
    """One checked expression, planned in the runtime environment."""

    text: str
    program: Any
    #: The checker's type of the result (a ``cel.Type``), for declaring variables;
    #: None for a program restored from its bytes (see :func:`restore`).
    checked_type: Any
    #: The checked expression as bytes, what :func:`restore` plans it from again.
    checked: bytes


class CompileError(ConfigurationError):
    """Expressions of one policy that do not check; caught by the loader, which turns
    each problem into a diagnostic at its place in the file."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        self.problems = problems


def compile_expression(
    checker: Any,
    text: str,
    *,
    loc: tuple[str | int, ...],
    want: str | None,
    variables: Sequence[str],
) -> Program:
    """Parse, type-check and plan ``text``; ``want`` is the required result type."""
    try:
        checked = checker.compile(text)
    except RuntimeError as exc:
        problems = [(loc, ln, col, msg) for ln, col, msg in _cel_errors(str(exc), variables)]
        raise CompileError(problems) from exc
    result_type = checked.return_type()
    result = str(result_type.name())
    if want is not None and result not in (want, "DYN"):
        message = f"must evaluate to {want.lower()}, but evaluates to {type_name(result)}"
        raise CompileError([(loc, 1, 1, message)])
    serialized = checked.serialize()
    program = _runtime().deserialize(serialized)
    return Program(text=text, program=program, checked_type=result_type, checked=serialized)


def restore(text: str, checked: bytes) -> Program | None:
    """The program of ``text`` planned from its checked bytes (:attr:`Program.checked`)
    without checking it again; None when the runtime refuses the bytes."""
    try:
        program = _runtime().deserialize(checked)
    except RuntimeError:
        return None
    return Program(text=text, program=program, checked_type=None, checked=checked)


def type_name(name: str) -> str:
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
    hint = closest_name(root, INPUTS)
    return f"unknown name {root!r}; expressions see {', '.join(INPUTS)} and variables" + (
        f"; did you mean {hint!r}?" if hint else ""
    )


_DECLARABLE = re.compile(
    r"(BOOL|INT|UINT|DOUBLE|STRING|BYTES|DYN|TIMESTAMP|DURATION|kubernetes\.Quantity"
    r"|LIST<|MAP<|, |>)+"
)


def unpassable(checked_type: Any) -> str | None:
    """Why a variable of this type cannot be handed to other expressions, if it can't."""
    name = str(checked_type.name())
    if name.startswith("optional"):
        return "a variable cannot hold an optional value; end it with .orValue(default)"
    if name.startswith("TYPE"):
        return "a variable cannot hold a type value; compare types inside one expression"
    return None


def declarable(checked_type: Any) -> Any:
    """A variable's checked type, when it survives being declared again (scalars,
    lists, maps, quantities); otherwise dyn (optional and type values do not)."""
    if checked_type is not None and _DECLARABLE.fullmatch(str(checked_type.name())):
        return checked_type
    return cel.Type.DYN


def dependencies(text: str, declared: Mapping[str, Any]) -> list[str]:
    """The earlier variables an expression reads: those it names, proven by checking it
    with only them declared; all of them when that proof fails (say, a name hidden
    behind a comment), which costs speed, never correctness."""
    named = [name for name in _VARIABLE_USE.findall(text) if name in declared]
    try:
        checker({name: declared[name] for name in named}).compile(text)
    except RuntimeError:
        return list(declared)
    return named


# --- running -----------------------------------------------------------------------


class _Errored:
    """Bound in place of a variable whose expression errored: the runtime refuses it
    on access, so the error reaches exactly the expressions that read it."""

    __slots__ = ()


ERRORED: Final = _Errored()


def run(
    program: Program, activation: Any, errors: Mapping[str, str], *, plain: bool = False
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


def run_bool(
    program: Program, activation: Any, errors: Mapping[str, str]
) -> tuple[bool, str | None]:
    value, kind, error = run(program, activation, errors)
    if error is None and not isinstance(value, bool):
        error = f"evaluates to {type_name(kind)}, not bool"
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


# --- inputs ------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """JSON-like data for CEL: mappings to dicts, tuples to lists, dates to strings.

    cel-expr-python cuts a string at its first NUL character, which would let
    ``"img:1.0\\x00:latest"`` pass as ``"img:1.0"``; NUL becomes U+FFFD instead, so
    policies see every character that follows it.
    """
    kind = type(value)
    if kind is str:
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if kind is dict:
        return {plain(k): plain(v) for k, v in value.items()}
    if kind is list:
        return [plain(v) for v in value]
    return value if kind in _ATOMS else _plain_other(value)


def _plain_other(value: Any) -> Any:
    """The slow path of :func:`plain`: subclasses, other mappings and sequences, dates."""
    if isinstance(value, str):
        return plain(str(value))
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime.date):  # YAML timestamps; Kubernetes sends strings
        return value.isoformat()
    return value


_ATOMS: Final = frozenset({int, float, bool, type(None), bytes})
