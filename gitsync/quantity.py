"""Kubernetes ``resource.Quantity``: one grammar for specs, policies and plans.

Specs validate resource requests with it, the policy engine's CEL ``quantity()``
library computes with it, and plans add GPUs up with it; one implementation keeps
the three from disagreeing on what ``200K`` (invalid: only lowercase ``k``) or
``500m`` (half a unit) means. It ports ``ParseQuantity`` from
k8s.io/apimachinery/pkg/api/resource/quantity.go rather than matching a regular
expression, because the Go scanner's edge cases (``+``, ``1.``, ``.5``, ``1e+3``,
rounding below 1n) are what the API server will accept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from gitsync.errors import QuantityError

__all__ = ["Quantity", "QuantityError"]

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

    @classmethod
    def of(cls, value: str | int | float) -> Quantity:
        """A quantity as a spec may hold it: YAML gives ``1`` and ``1.5`` as numbers,
        which Kubernetes reads by their decimal text, as it does a JSON number."""
        if isinstance(value, bool):  # a bool is an int to Python, never a quantity
            raise QuantityError(f"{value!r} is not a quantity")
        if isinstance(value, int):
            return cls.from_int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise QuantityError(f"{value!r} is not a quantity")
            return cls.parse(repr(value))
        return cls.parse(value)

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
