"""The one retry policy: nominal delays double to a cap, and jitter only shortens them."""

from __future__ import annotations

import pytest

from gitsync.backoff import Backoff
from gitsync.errors import ConfigurationError

POLICY = Backoff(base=0.5, factor=2.0, max=30.0, jitter=0.5)


@pytest.mark.parametrize(
    ("failures", "rand", "expected"),
    [
        pytest.param(0, 0.0, 0.0, id="no-failure-no-wait"),
        pytest.param(1, 0.0, 0.5, id="first-is-base"),
        pytest.param(2, 0.0, 1.0, id="doubles"),
        pytest.param(3, 0.0, 2.0, id="doubles-again"),
        pytest.param(7, 0.0, 30.0, id="capped"),
        pytest.param(10_000, 0.0, 30.0, id="long-outage-does-not-overflow"),
        pytest.param(3, 0.5, 1.5, id="jitter-halfway"),
        pytest.param(3, 0.999, 1.001, id="jitter-nearly-half"),
        pytest.param(7, 0.5, 22.5, id="jitter-below-the-cap"),
    ],
)
def test_delay(failures: int, rand: float, expected: float) -> None:
    assert POLICY.delay(failures, rand) == pytest.approx(expected)


def test_without_jitter_the_draw_does_not_matter() -> None:
    steady = Backoff(base=30.0, max=600.0)
    assert [steady.delay(n, 0.7) for n in range(1, 7)] == [30, 60, 120, 240, 480, 600]


@pytest.mark.parametrize(
    "options",
    [
        {"base": -1.0, "max": 1.0},
        {"base": 1.0, "max": -1.0},
        {"base": 1.0, "max": 1.0, "factor": 0.5},
        {"base": 1.0, "max": 1.0, "jitter": 1.5},
    ],
)
def test_nonsense_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match="backoff"):
        Backoff(**options)
