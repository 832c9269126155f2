"""Kubernetes quantities: one grammar, exactly ``resource.ParseQuantity``'s.

The tables are cases of k8s.io/apimachinery/pkg/api/resource; specs, policies and
plan all read quantities through :mod:`gitsync.quantity`, so these are their cases too.
"""

from __future__ import annotations

import pytest

from gitsync.errors import QuantityError, SpecError
from gitsync.loading import load_file
from gitsync.quantity import Quantity


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        ("1000Mi", "1Gi"),
        ("500m", "1"),
        ("1n", "1u"),
        ("999", "1k"),
        ("1k", "1Ki"),
        ("50M", "50Mi"),
        ("-1", "0"),
        ("1.6G", "1.5Gi"),
        ("0.999999999", "1"),
    ],
)
def test_quantity_order(smaller: str, larger: str) -> None:
    assert Quantity.parse(smaller) < Quantity.parse(larger)
    assert Quantity.parse(smaller).compare(Quantity.parse(larger)) == -1


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("1", "1000m"),
        ("0.5", "500m"),
        (".5", "500m"),
        ("1.", "1"),
        ("+1", "1"),
        ("1k", "1000"),
        ("1e3", "1k"),
        ("1E3", "1000"),
        ("2e-3", "2m"),
        ("1Ki", "1024"),
        ("1.5Gi", "1536Mi"),
        ("1E", "1000000000000000000"),
        ("200M", "0.2G"),
        ("0.1n", "1n"),  # more precise than 1n: rounded up, as Kubernetes does
        ("0.9999999999", "1"),
        ("-0.1n", "-1n"),  # ...away from zero
        ("1e-30", "1n"),
        ("16Ei", "9223372036854775807"),  # binary suffixes cap at 2^63-1
        ("-0", "0"),
        ("007", "7"),
    ],
)
def test_quantity_equal_values(left: str, right: str) -> None:
    assert Quantity.parse(left) == Quantity.parse(right)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "200K",
        "10Mo",
        "10Mm",
        "Three",
        "1,3G",
        " 1",
        "1 ",
        "1e",
        "1Gib",
        "--1",
        "1.2.3",
        "1e1.5",
    ],
)
def test_quantity_rejects(text: str) -> None:
    with pytest.raises(QuantityError):
        Quantity.parse(text)


def test_quantity_reads_a_missing_number_as_zero_like_go() -> None:
    # Go's scanner (resource.parseQuantityString) turns an empty number into "0", so
    # ParseQuantity accepts a bare suffix or sign; quantity.go's doc comment says
    # isQuantity('Mi') is false, but the code it calls says otherwise. We follow the code.
    for text in ("Mi", "k", "+", "-", "."):
        assert Quantity.parse(text) == Quantity(0), text


def test_quantity_conversions() -> None:
    assert Quantity.parse("50k").as_integer() == 50000
    assert Quantity.parse("1.5").as_approximate_float() == 1.5
    assert not Quantity.parse("1.5").is_integer()
    assert not Quantity.parse("9999999999999999999999999999999999999G").is_integer()
    with pytest.raises(QuantityError, match="cannot convert value to integer"):
        Quantity.parse("500m").as_integer()
    assert str(Quantity.parse("1.5Gi")) == "1610612736"
    assert str(Quantity.parse("-2500m")) == "-2.5"


@pytest.mark.parametrize(
    ("value", "nanos"),
    [
        (1, 10**9),
        (0, 0),
        (1.5, 15 * 10**8),
        (0.25, 25 * 10**7),
        (1e-10, 1),  # a JSON/YAML number is read by its text, then rounded up to 1n
        ("500m", 5 * 10**8),
        ("2Gi", 2 * 2**30 * 10**9),
    ],
)
def test_quantity_of_spec_values(value: str | float, nanos: int) -> None:
    assert Quantity.of(value).nanos == nanos


@pytest.mark.parametrize("value", [True, float("inf"), float("nan"), "200K", "1.5 Gi"])
def test_quantity_of_refuses(value: str | float) -> None:
    with pytest.raises(QuantityError):
        Quantity.of(value)


def test_quantity_arithmetic_is_exact() -> None:
    half = Quantity.parse("500m")
    assert half * 3 == Quantity.parse("1.5")
    assert half + half == Quantity.from_int(1)
    assert Quantity.parse("1Gi") - Quantity.parse("1024Mi") == Quantity(0)
    assert str(Quantity.parse("100m") * 3) == "0.3"  # where floats give 0.30000000000000004
    assert Quantity.parse("-1").sign == -1
    assert Quantity.parse("0").sign == 0


def test_quantity_error_is_a_spec_error_and_a_value_error() -> None:
    # SpecError: only a new commit fixes it; ValueError: pydantic reports it per field.
    assert issubclass(QuantityError, SpecError)
    assert issubclass(QuantityError, ValueError)


MODEL = """\
apiVersion: gitsync.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fraud
spec:
  model:
    format: sklearn
    storageUri: s3://models/fraud/v1
  resources: {{limits: {{memory: {value}}}}}
"""


@pytest.mark.parametrize("value", ["200K", "1KB", "2Gb", "1.5 Gi", "1e", "lots"])
def test_spec_with_an_invalid_quantity_is_a_load_error_naming_the_field(value: str) -> None:
    loaded = load_file("models/m.yaml", MODEL.format(value=value).encode())
    assert [str(d) for d in loaded.diagnostics] == [
        f"models/m.yaml:9:32: spec.resources.limits.memory: '{value}' is not a Kubernetes "
        "quantity (e.g. 500m, 2Gi, 1)"
    ]
    assert not loaded.entries


@pytest.mark.parametrize("value", ["200k", "200Ki", "1.5Gi", "1e3", "500m", "1", "1.5", '"2"'])
def test_spec_with_a_valid_quantity_loads(value: str) -> None:
    loaded = load_file("models/m.yaml", MODEL.format(value=value).encode())
    assert not loaded.diagnostics
    assert len(loaded.entries) == 1
