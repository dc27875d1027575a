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

from pipeline.core.errors import RateLimited, RetryableError


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


class wait_server_floor(wait_base):
    """Full-jitter backoff whose floor is the failed attempt's `retry_after_s`."""

    def __init__(self, rng: random.Random, *, base: float, cap: float):
        self.rng = rng
        self.base = base
        self.cap = cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        floor = getattr(exc, "retry_after_s", None)
        return backoff_s(
            retry_state.attempt_number,
            base=self.base,
            cap=self.cap,
            floor=floor,
            rand=self.rng.random(),
        )


def worth_retrying(exc: BaseException, budget_allows: Callable[[], bool] | None = None) -> bool:
    """Whether a failed attempt may be tried again (attempt counts aside).

    Only RetryableError is. A run-wide retry budget (`budget_allows`) can veto retries of
    5xx, timeouts, resets and bad bodies during an outage; rate limits are exempt, since the
    pool's pacing, not a budget, answers them.
    """
    if not isinstance(exc, RetryableError):
        return False
    if isinstance(exc, RateLimited) or budget_allows is None:
        return True
    return budget_allows()


def retrying(
    *,
    max_attempts: int,
    sleep: Callable[[float], Awaitable[None]],
    rng: random.Random,
    before_sleep: Callable[[tenacity.RetryCallState], Any] | None = None,
    should_retry: Callable[[], bool] | None = None,
    base: float = 1.0,
    cap: float = 60.0,
) -> tenacity.AsyncRetrying:
    """A tenacity controller: retries what `worth_retrying` allows, up to `max_attempts` in all.

    Other exceptions (PermanentError, FatalError, bugs) propagate at once, and the last
    RetryableError is re-raised as itself when attempts run out or `should_retry` says no.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be 1 or more, got {max_attempts}")
    return tenacity.AsyncRetrying(
        sleep=sleep,
        stop=tenacity.stop_after_attempt(max_attempts),
        wait=wait_server_floor(rng, base=base, cap=cap),
        retry=tenacity.retry_if_exception(lambda exc: worth_retrying(exc, should_retry)),
        before_sleep=before_sleep,
        reraise=True,
    )
