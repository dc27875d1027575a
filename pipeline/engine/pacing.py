"""The dispatch gate every HTTP attempt passes through (pacing, whole-pool pauses after a 429)
and the Little's law check of concurrency against the rate.
The arithmetic lives in `ratecontrol`; this module holds the state and the waiting.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from pipeline.engine.ratecontrol import (
    Event,
    RateState,
    ServerError,
    Success,
    Throttled,
    dispatch_rate,
    earliest_start,
    headers_event,
    next_rate,
    probe_spacing_s,
)

# A 429 without retry-after still pauses the pool briefly, so that the waiters behind it do
# not all run into the same limit before the rate controller has reacted.
DEFAULT_429_PAUSE_S = 1.0
# The head waiter re-reads the rate and the pause at least this often while it waits, so a
# rate raised by a header, or a pause extended by a later 429, takes effect without a poll.
MAX_NAP_S = 1.0
# The dispatch rate is measured over the last OBSERVED_STARTS starts (at least a second, so
# that a burst at one instant reads as a rate); it is the base of the first cut when the pool
# runs unpaced and a 429 arrives without rate-limit headers.
OBSERVED_STARTS = 256
MIN_OBSERVED_SPAN_S = 1.0

# While the first answer is awaited, the head waiter looks this often whether it came.
PROBE_NAP_S = 0.05


class RateGate:
    """Awaited before every attempt, first tries and retries alike.

    With `rpm` > 0 attempts start evenly spaced at 60/rpm seconds (providers enforce
    sub-minute windows, so no bursts). With `rpm` == 0 the gate adapts (see ratecontrol):
    it starts unpaced, seeds its rate from x-ratelimit headers and steers it by 429s.
    `adaptive` overrides that choice: True with rpm > 0 adapts below rpm.
    Waiters are served in FIFO order, one slot each; a cancelled waiter gives its turn on.
    """

    def __init__(
        self,
        *,
        rpm: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        adaptive: bool | None = None,
        probe: bool = False,
    ):
        if not math.isfinite(rpm) or rpm < 0:
            raise ValueError(
                f"limits.requests_per_minute is {rpm!r}; set it to 0 (no client-side pacing) "
                "or to a positive number of requests per minute"
            )
        cap = rpm / 60 if rpm > 0 else None
        self._state = RateState(rate=cap, cap=cap)
        self._adaptive = rpm == 0 if adaptive is None else adaptive
        self._clock = clock
        self._sleep = sleep
        # asyncio.Lock is FIFO and hands the turn on when a waiter is cancelled: the head
        # waits for its slot while holding it, the others queue behind in arrival order.
        self._turn = asyncio.Lock()
        self._last_start = -math.inf
        self._paused_until = -math.inf
        self._recent: deque[float] = deque(maxlen=OBSERVED_STARTS)
        # Probe: with no rate known, send one request and hold the rest until its answer
        # (whose headers may tell the rate), instead of bursting `concurrency` requests into
        # a bucket that may hold a handful. Costs one latency, once.
        self._probe: asyncio.Event | None = None
        if probe and self._adaptive and cap is None:
            self._probe = asyncio.Event()
        self._probe_sent = False
        self._probe_at = -math.inf

    async def wait_turn(self) -> None:
        """Return when this attempt may start."""
        async with self._turn:
            if self._probe is not None and self._probe_sent:
                await self._trickle()
            head_since = self._clock()
            while True:
                slot = earliest_start(
                    self._state,
                    now=head_since,
                    last_start=self._last_start,
                    paused_until=self._paused_until,
                )
                now = self._clock()
                if slot <= now:
                    break
                await self._sleep(min(slot - now, MAX_NAP_S))
            # The next slot counts from this one, not from when the sleep ended, so a late
            # wake-up does not push the whole schedule back.
            self._last_start = slot
            self._recent.append(slot)
            if not self._probe_sent:
                self._probe_at = slot
            self._probe_sent = True

    async def _trickle(self) -> None:
        """Until the first answer (or a quick 429) tells the rate, requests follow the first
        at a rate that starts at four a second and doubles every PROBE_DOUBLING_S: a limit of
        a few a minute costs a 429 or two, a fast one is reached within seconds, and a slow
        first answer does not hold the whole pool for its latency."""
        probe = self._probe
        while probe is not None and not probe.is_set():
            elapsed = self._last_start - self._probe_at
            due = self._last_start + probe_spacing_s(elapsed)
            now = self._clock()
            if now >= due:
                return
            await self._sleep(min(due - now, PROBE_NAP_S))
        self._probe = None

    def on_answer(self) -> None:
        """An attempt ended (any answer, or none): the probe, if any, is over."""
        if self._probe is not None:
            self._probe.set()

    def pause_for(self, seconds: float) -> None:
        """Hold every waiter for `seconds` from now (a 429's retry-after)."""
        self.pause_until(self._clock() + seconds)

    def pause_until(self, t: float) -> None:
        """Hold every waiter until monotonic time `t`; a pause is extended, never shortened."""
        self._paused_until = max(self._paused_until, t)

    def on_success(self, headers: Mapping[str, str]) -> None:
        """A usable response: its rate-limit headers seed the rate, a clean window raises it."""
        self._apply(headers_event(headers), Success())

    def on_rate_limited(self, retry_after_s: float | None, headers: Mapping[str, str]) -> None:
        """A rate-limit 429: pause the whole pool for its retry-after, and cut the rate."""
        pause = DEFAULT_429_PAUSE_S if retry_after_s is None else retry_after_s
        self.pause_for(max(pause, 0.0))
        # The cut judges the rate that drew the 429; headers then seed the rate to come.
        throttled = Throttled(retry_after_s, self._observed_rate(self._clock()))
        self._apply(throttled, headers_event(headers))

    def on_error(self, headers: Mapping[str, str]) -> None:
        """A 5xx, timeout or reset: never a reason to speed up."""
        self._apply(ServerError(), headers_event(headers))

    @property
    def rate_per_s(self) -> float | None:
        """The rate attempts start at now (None = unpaced)."""
        return dispatch_rate(self._state, self._clock())

    @property
    def paused_until(self) -> float:
        """Monotonic time until which the pool is paused (-inf when it never was)."""
        return self._paused_until

    @property
    def state(self) -> RateState:
        """The rate controller's state, for progress displays and tests."""
        return self._state

    def _apply(self, *events: Event | None) -> None:
        if not self._adaptive:
            return  # a rate set by the user is kept as set; only pauses apply
        now = self._clock()
        for event in events:
            if event is not None:
                self._state = next_rate(self._state, event, now)

    def _observed_rate(self, now: float) -> float | None:
        if not self._recent:
            return None
        return len(self._recent) / max(MIN_OBSERVED_SPAN_S, now - self._recent[0])


def littles_law_warning(concurrency: int, rate_per_s: float, latency_s: float) -> str | None:
    """Say so when `concurrency` requests in flight cannot sustain `rate_per_s` at `latency_s`
    per request (Little's law: in flight = rate × latency), and what to set instead."""
    if rate_per_s <= 0 or latency_s <= 0:
        return None
    needed = rate_per_s * latency_s
    if concurrency >= needed:
        return None
    # 10% headroom: latency varies, and a pool exactly at the bound falls behind on every
    # slow response. Rounded first so that 22.000000000000004 asks for 22, not 23.
    advised = math.ceil(round(needed * 1.1, 6))
    reachable = concurrency / latency_s * 60
    return (
        f"limits.concurrency {concurrency} cannot reach {rate_per_s * 60:.4g} requests/min: "
        f"at {latency_s:.3g} s per request, {concurrency} in flight complete at most "
        f"{reachable:.4g} requests/min (Little's law: in flight = rate × latency); "
        f"set limits.concurrency (or --concurrency) to {advised} or more"
    )
