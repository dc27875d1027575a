"""When to try again and how long to wait: full-jitter exponential backoff that never undercuts
the server's retry-after, and the tenacity controller an item's attempts run under.
`backoff_s` is pure (the randomness comes in as a number), so it is tested by a table.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import tenacity
from tenacity.wait import wait_base

from pipeline.core.errors import RetryableError


def backoff_s(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 60.0,
    floor: float | None = None,
    rand: float,
) -> float:
    """Full-jitter exponential backoff after failed attempt `attempt` (1-based).

    A uniform draw (`rand` in [0, 1)) times min(cap, base * 2**(attempt-1)), never below the
    server's `floor` (its retry-after), which may exceed `cap`: the server knows best.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, got {attempt}")
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand}")
    # The exponent is bounded so a huge attempt number cannot overflow a float.
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    return max(rand * ceiling, floor or 0.0)


class Tally:
    """An item's failed attempts that use up its `max_attempts`. The attempt code tells, for
    each failure, whether it counts (probes and failures during an outage do not) and in which
    streak of failures it fell; `refunded(streak)` gives back a streak's attempts later, when
    that streak turns out to have been an outage."""

    def __init__(self, refunded: Callable[[int], bool] | None = None) -> None:
        self._refunded = refunded or (lambda streak: False)
        self._counted: list[tuple[int, bool]] = []  # (streak, answered) per counted failure
        self.last_counted = True
        self.last_streak = 0

    def failed(self, counts: bool, *, answered: bool = True, streak: int = 0) -> None:
        self.last_counted = counts
        self.last_streak = streak
        if counts:
            self._counted.append((streak, answered))

    @property
    def used(self) -> int:
        return sum(1 for streak, _ in self._counted if not self._refunded(streak))

    @property
    def answered(self) -> bool:
        """Whether a counted failure came with an answer from the API (not a transport error)."""
        return any(ok for streak, ok in self._counted if not self._refunded(streak))


class wait_server_floor(wait_base):
    """Full-jitter backoff whose floor is the failed attempt's `retry_after_s`. With a tally,
    the exponent is the item's counted failures, and a failure that did not count waits only
    for its floor: the circuit breaker, not the item, spaces the probes of an outage."""

    def __init__(self, rng: random.Random, *, base: float, cap: float, tally: Tally | None = None):
        self.rng = rng
        self.base = base
        self.cap = cap
        self.tally = tally

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        floor = getattr(exc, "retry_after_s", None)
        attempt = retry_state.attempt_number
        if self.tally is not None:
            if not self.tally.last_counted:
                return floor or 0.0
            attempt = max(1, self.tally.used)
        return backoff_s(attempt, base=self.base, cap=self.cap, floor=floor, rand=self.rng.random())


def worth_retrying(exc: BaseException) -> bool:
    """Whether a failed attempt may be tried again (attempt counts aside): only RetryableError
    (408, 409, 429 rate limits, 5xx, timeouts, resets, unusable bodies)."""
    return isinstance(exc, RetryableError)


def retrying(
    *,
    max_attempts: int,
    sleep: Callable[[float], Awaitable[None]],
    rng: random.Random,
    before_sleep: Callable[[tenacity.RetryCallState], Any] | None = None,
    tally: Tally | None = None,
    base: float = 1.0,
    cap: float = 60.0,
) -> tenacity.AsyncRetrying:
    """A tenacity controller: retries what `worth_retrying` allows until `max_attempts` failed
    attempts count (every attempt, or those the `tally` counts).

    Other exceptions (PermanentError, FatalError, bugs) propagate at once, and the last
    RetryableError is re-raised as itself when attempts run out.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be 1 or more, got {max_attempts}")
    if tally is None:
        stop = tenacity.stop_after_attempt(max_attempts)
    else:

        def stop(retry_state: tenacity.RetryCallState) -> bool:
            return tally.used >= max_attempts

    return tenacity.AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=wait_server_floor(rng, base=base, cap=cap, tally=tally),
        retry=tenacity.retry_if_exception(worth_retrying),
        before_sleep=before_sleep,
        reraise=True,
    )
