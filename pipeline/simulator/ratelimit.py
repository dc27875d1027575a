"""The simulator's requests-per-minute limit: a token bucket on an injected clock, the
`x-ratelimit-*` figures it reports, and durations written the way the API writes them.
The bucket holds one second's worth by default because OpenAI's rate limits guide
(platform.openai.com/docs/guides/rate-limits) says limits are enforced over shorter periods
than a minute (60 RPM may be enforced as 1 request per second).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

# A request arriving this much before its token is due is still admitted: loopback jitter
# would otherwise punish a client that paces itself exactly at the limit.
GRACE_S = 0.05


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    retry_after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Window:
    """What the x-ratelimit-*-requests headers say, in per-minute terms."""

    limit: int
    remaining: int
    reset_s: float

    @property
    def used(self) -> int:
        return self.limit - self.remaining


class TokenBucket:
    """rpm / 60 tokens a second, holding `burst` at most; one token per request."""

    def __init__(
        self, rpm: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ):
        if rpm <= 0:
            raise ValueError(f"a token bucket needs rpm > 0, got {rpm}")
        self._burst = burst
        self._clock = clock
        self._at = clock()
        self._set(rpm)
        self._tokens = self.capacity

    def _set(self, rpm: float) -> None:
        self.rpm = rpm
        self.rate = rpm / 60
        self.capacity = self._burst if self._burst is not None else max(1.0, self.rate)

    def change(self, rpm: float) -> None:
        """A new limit from now on (a provider changing its limit mid-run); what the bucket
        holds carries over, up to the new capacity."""
        if rpm <= 0:
            raise ValueError(f"a token bucket needs rpm > 0, got {rpm}")
        self._refill()
        self._set(rpm)
        self._tokens = min(self._tokens, self.capacity)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def try_take(self) -> Admission:
        self._refill()
        if self._tokens + GRACE_S * self.rate >= 1:
            self._tokens -= 1
            return Admission(True)
        return Admission(False, (1 - self._tokens) / self.rate)

    def window(self) -> Window:
        self._refill()
        limit = max(1, round(self.rpm))
        # The bucket's fill, said as requests left of the minute's allowance.
        remaining = math.floor(max(0.0, self._tokens) / self.capacity * limit)
        reset_s = (self.capacity - self._tokens) / self.rate
        return Window(limit, min(limit, remaining), max(0.0, reset_s))


def format_duration(seconds: float) -> str:
    """Durations as the API's headers and messages write them: "120ms", "1s", "1.5s", "6m0s"."""
    millis = math.ceil(round(seconds * 1000, 6))
    if millis < 1000:
        return f"{millis}ms"
    minutes, rest_ms = divmod(millis, 60_000)
    hours, minutes = divmod(minutes, 60)
    secs = f"{rest_ms / 1000:g}s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs
