"""One retry policy: exponential backoff with jitter, for everything that retries.

The daemon after a failed cycle, the informer after a broken watch, the dev
controllers after a failed status write and the git client after a lost push race
all wait the same way; before this module each had its own formula. Pure: the
random draw is an argument, so a delay is a table test away.

Jitter only shortens: with ``jitter=0.5`` a nominal 4 s becomes anything in
(2 s, 4 s], so processes that failed together do not retry in lockstep, even once
they all reached the cap, and no wait is ever longer than ``max``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gitsync.errors import ConfigurationError

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """``base`` seconds after the first failure, times ``factor`` after each further
    one, capped at ``max``; then spread by ``jitter`` (a fraction, 0 for none)."""

    base: float
    factor: float = 2.0
    max: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.max < 0:
            raise ConfigurationError("backoff base and max must not be negative")
        if self.factor < 1:
            raise ConfigurationError("backoff factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError("backoff jitter must be a fraction in [0, 1]")

    def nominal(self, failures: int) -> float:
        """The delay before jitter after ``failures`` failures in a row (0 for none)."""
        if failures < 1:
            return 0.0
        # Capping the exponent keeps a long outage from overflowing the float.
        exponent = min(failures - 1, 64)
        return float(min(self.max, self.base * self.factor**exponent))

    def delay(self, failures: int, rand: float) -> float:
        """Seconds to wait after ``failures`` failures in a row; ``rand`` is a uniform
        draw from [0, 1) (``random.random()``)."""
        return self.nominal(failures) * (1 - self.jitter * rand)
