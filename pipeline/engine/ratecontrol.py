"""The arithmetic of adaptive pacing: a dispatch rate seeded from the provider's rate-limit
headers and steered by its 429s (AIMD). Pure functions over frozen values, tested by tables;
`limits.RateGate` holds the state and applies them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

# A cut of 0.7 rather than TCP's 0.5: the 429's retry-after already pauses the whole pool, so
# the cut only has to bring the rate under the limit, not drain a queue on the provider's side.
DECREASE = 0.7
# Each clean window adds a tenth of the ceiling (or of the rate that last drew a 429), so a
# cut is made good in three windows: a stray 429 costs little, a real limit is found again.
INCREASE_FRACTION = 0.1
FLOOR_PER_S = 1 / 60  # one request a minute: slow enough for any provider, never zero
# A window is long enough to see ten dispatches at the current rate, so that a change is
# judged on evidence; the bounds keep it meaningful at very high and very low rates.
WINDOW_DISPATCHES = 10
MIN_WINDOW_S = 1.0
MAX_WINDOW_S = 60.0
# Before the first answer tells the rate: four requests a second at first, doubling this
# often. A quick 429 (immediate, with x-ratelimit headers) corrects a low limit at once.
PROBE_START_PER_S = 4.0
PROBE_DOUBLING_S = 0.25
# How closely x-ratelimit-reset-requests must match a token bucket's refill time for the
# counter to be read as a bucket (which refills as we go) rather than a window (which does not).
BUCKET_TOLERANCE = 0.1


@dataclass(frozen=True, slots=True)
class RateState:
    """Where the controller stands. Rates are requests per second; None means unpaced."""

    rate: float | None = None
    cap: float | None = None  # the user's requests_per_minute / 60: never exceeded
    limit: float | None = None  # the provider's x-ratelimit-limit-requests / 60
    floor: float = FLOOR_PER_S
    too_fast: float | None = None  # the rate that last drew a 429
    trial_start: float = -math.inf  # the current rate has run without a 429 since then
    no_cut_until: float = -math.inf  # 429s before this echo requests sent before the last cut
    hold_rate: float | None = None  # a slower pace until a provider window resets
    hold_until: float = -math.inf

    @property
    def ceiling(self) -> float | None:
        bounds = [b for b in (self.cap, self.limit) if b is not None]
        return min(bounds) if bounds else None


@dataclass(frozen=True, slots=True)
class Success:
    """A response that was not a 429 nor an error: evidence that the current rate works."""


@dataclass(frozen=True, slots=True)
class Throttled:
    """A rate-limit 429. `observed_rate` is the measured dispatch rate, used when unpaced."""

    retry_after_s: float | None = None
    observed_rate: float | None = None


@dataclass(frozen=True, slots=True)
class ServerError:
    """A 5xx, timeout or broken connection: says nothing about our rate."""


@dataclass(frozen=True, slots=True)
class Headers:
    """The x-ratelimit-*-requests headers of a response: per minute, remaining, reset seconds."""

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None


Event = Success | Throttled | ServerError | Headers


def window_s(rate: float | None) -> float:
    """How long a rate must run before it is judged again."""
    if rate is None or rate <= 0:
        return MIN_WINDOW_S
    return min(MAX_WINDOW_S, max(MIN_WINDOW_S, WINDOW_DISPATCHES / rate))


def next_rate(state: RateState, event: Event, now: float) -> RateState:
    """The controller's state after `event` happened at `now` (monotonic seconds)."""
    match event:
        case Success():
            return _after_success(state, now)
        case Throttled():
            return _after_throttled(state, event, now)
        case Headers():
            return _after_headers(state, event, now)
        case ServerError():
            return state  # never speed up on an error, and a 5xx is not a rate signal
    raise TypeError(f"next_rate: unknown event {event!r}")


def _after_success(state: RateState, now: float) -> RateState:
    # An unpaced pool stays unpaced until a 429 or a header gives it a number.
    if state.rate is None or now < state.trial_start + window_s(state.rate):
        return state
    ceiling = state.ceiling
    if ceiling is not None and state.rate >= ceiling:
        return state
    reference = ceiling or state.too_fast or state.rate
    raised = state.rate + max(state.floor, INCREASE_FRACTION * reference)
    if ceiling is not None:
        raised = min(raised, ceiling)
    return replace(state, rate=raised, trial_start=now)


def _after_throttled(state: RateState, event: Throttled, now: float) -> RateState:
    state = replace(state, trial_start=now)
    if now < state.no_cut_until:
        return state  # the rest of a burst already answered by the last cut
    base = state.rate if state.rate is not None else event.observed_rate
    cut = state.floor if base is None or base <= 0 else max(state.floor, base * DECREASE)
    if state.ceiling is not None:
        cut = min(cut, state.ceiling)
    quiet = max(window_s(cut), event.retry_after_s or 0.0)
    return replace(state, rate=cut, too_fast=base, no_cut_until=now + quiet)


def _after_headers(state: RateState, event: Headers, now: float) -> RateState:
    if event.limit is not None and event.limit > 0:
        limit = event.limit / 60
        if limit != state.limit:
            # First sight of the limit, or it changed (a tier upgrade): it is the best
            # estimate there is, better than whatever the 429s taught so far.
            state = replace(state, limit=limit)
            state = replace(state, rate=state.ceiling, trial_start=now)
    return _with_hold(state, event, now)


def _with_hold(state: RateState, event: Headers, now: float) -> RateState:
    """Spread what remains of a provider's window until it resets, when it cannot last.

    A token bucket (OpenAI's kind: reset = time until full again) refills as we go, so
    pacing at the limit is already right. A counter that resets sooner than a bucket would
    refill is a window: sending faster than remaining / reset runs into 429s until it resets.
    """
    if state.limit is None or event.remaining is None or not event.reset_s:
        return state
    remaining = max(event.remaining, 0.0)
    spread = remaining / event.reset_s
    refill_s = max(state.limit * 60 - remaining, 0.0) / state.limit
    like_bucket = abs(event.reset_s - refill_s) <= max(1.0, BUCKET_TOLERANCE * refill_s)
    if like_bucket or spread >= min(state.limit, state.cap or math.inf):
        return replace(state, hold_rate=None, hold_until=-math.inf)
    return replace(state, hold_rate=spread, hold_until=now + event.reset_s)


def probe_spacing_s(elapsed_s: float) -> float:
    """Before any answer, the gap after a request sent `elapsed_s` after the first one: the
    rate starts at PROBE_START_PER_S and doubles every PROBE_DOUBLING_S (slow start)."""
    exponent = min(max(elapsed_s, 0.0) / PROBE_DOUBLING_S, 60.0)
    return 1.0 / (PROBE_START_PER_S * 2.0**exponent)


def dispatch_rate(state: RateState, now: float) -> float | None:
    """The rate attempts start at now: the controller's rate, slowed by a window hold."""
    if state.hold_rate is None or now >= state.hold_until:
        return state.rate
    return state.hold_rate if state.rate is None else min(state.rate, state.hold_rate)


def earliest_start(
    state: RateState, *, now: float, last_start: float, paused_until: float
) -> float:
    """When the next attempt may start: evenly spaced after the last one, after any pause."""
    start = -math.inf if state.rate is None else last_start + 1 / state.rate
    if state.hold_rate is not None and now < state.hold_until:
        slow = state.hold_until if state.hold_rate <= 0 else last_start + 1 / state.hold_rate
        start = max(start, min(slow, state.hold_until))
    return max(now, paused_until, start)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|μs|ns)")
_UNIT_S = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """Seconds in a duration header such as "1s", "6m0s", "20ms", "1m30.5s" (a bare number
    counts as seconds, as some proxies send)."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = _sum_of_parts(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(_bad_duration(text))
    return seconds


def _sum_of_parts(text: str) -> float:
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        raise ValueError(_bad_duration(text))
    return total


def _bad_duration(text: str) -> str:
    return (
        f"duration {text!r} is not understood; expected a number of seconds or units such "
        'as "1s", "6m0s", "20ms", "1m30.5s"'
    )


def headers_event(headers: Mapping[str, str]) -> Headers | None:
    """The x-ratelimit-*-requests headers of a response, or None if it sent none.

    A value that does not parse is left out rather than failing the response: pacing hints
    are advice, and a proxy's odd header must not cost an image.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    limit = _number(lowered.get("x-ratelimit-limit-requests"), float)
    remaining = _number(lowered.get("x-ratelimit-remaining-requests"), float)
    reset_s = _number(lowered.get("x-ratelimit-reset-requests"), parse_duration)
    if limit is None and remaining is None and reset_s is None:
        return None
    return Headers(limit=limit, remaining=remaining, reset_s=reset_s)


def _number(value: str | None, parse: Callable[[str], float]) -> float | None:
    if value is None:
        return None
    try:
        number = parse(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
