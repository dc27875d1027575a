"""The circuit breaker's decisions: whether the provider is answering, as a small state machine
over the outcomes of attempts and an injected clock. Pure functions over frozen values, tested
by tables; `circuit.Circuit` holds the state and does the waiting.

Closed: attempts go at the pool's rate. Once failures (5xx, timeouts, resets, unusable answers)
outrun successes among the recent outcomes, the circuit opens: one probe at a time, spaced by
full-jitter exponential backoff (capped near a minute, never sooner than a retry-after). The
first success moves it to ramp: attempts in flight grow by one per success (slow start) until
the pool's concurrency, where it is closed again. Rate-limit 429s are the rate gate's business
and are neutral here; so is an attempt given back unanswered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

# The recent outcomes judged, and how many failures among them open the circuit (when they also
# outnumber the successes): a normal day's few percent of 5xx never does, an outage within a
# handful of answers.
WINDOW = 10
OPEN_AFTER = 5


class Mode(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    RAMP = "ramp"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    concurrency: int
    base_s: float = 1.0  # the first probe waits up to this (full jitter), doubling per failure
    cap_s: float = 60.0  # probes are never further apart than this, unless a retry-after says so
    max_outage_s: float = 1800.0  # nothing but failures this long: the run stops; 0 = never


@dataclass(frozen=True, slots=True)
class Breaker:
    """Where the breaker stands. Times are monotonic seconds."""

    mode: Mode = Mode.CLOSED
    recent: tuple[bool, ...] = ()  # the last WINDOW outcomes, True for a success
    failing_since: float | None = None  # the first failure since the last success
    probes_failed: int = 0  # failed probes in a row while open
    next_probe_at: float = -math.inf
    probing: bool = False  # a probe is out
    allowed: int = 0  # ramp: attempts in flight at most
    cause: str = ""  # the last failure's cause, for the display
    streak: int = 0  # numbers each run of failures with no success between


@dataclass(frozen=True, slots=True)
class Turn:
    """`decide`'s answer: go now (as a probe or not), or wait up to `wait_s` (inf: until an
    outcome changes the state), or stop the run: `outage`."""

    go: bool
    probe: bool = False
    wait_s: float = 0.0
    outage: bool = False


def outage_deadline(state: Breaker, settings: BreakerSettings) -> float:
    """When nothing but failures has gone on for max_outage_s (inf when that cannot happen)."""
    if settings.max_outage_s <= 0 or state.failing_since is None:
        return math.inf
    return state.failing_since + settings.max_outage_s


def decide(state: Breaker, now: float, in_flight: int, settings: BreakerSettings) -> Turn:
    """May an attempt start now, with `in_flight` attempts already out?"""
    deadline = outage_deadline(state, settings)
    if now >= deadline:
        return Turn(go=False, outage=True)
    if state.mode is Mode.CLOSED:
        return Turn(go=True)
    if state.mode is Mode.RAMP:
        if in_flight < state.allowed:
            return Turn(go=True)
        return Turn(go=False, wait_s=deadline - now)
    if state.probing:
        return Turn(go=False, wait_s=deadline - now)
    if now < state.next_probe_at:
        return Turn(go=False, wait_s=min(state.next_probe_at, deadline) - now)
    return Turn(go=True, probe=True)


def probe_ceiling_s(probes_failed: int, settings: BreakerSettings) -> float:
    """The longest wait before the next probe after `probes_failed` failed probes."""
    return min(settings.cap_s, settings.base_s * 2.0 ** min(probes_failed, 64))


def _opens(recent: tuple[bool, ...]) -> bool:
    failures = recent.count(False)
    return failures >= OPEN_AFTER and failures > len(recent) - failures


def after_success(
    state: Breaker, settings: BreakerSettings, *, sent_at: float = math.inf
) -> Breaker:
    """An answer from a working provider (images, or a 4xx about the request itself) to an
    attempt sent at `sent_at`. One sent before the current streak of failures began is old
    news: it neither ends the streak nor closes the circuit."""
    recent = (*state.recent, True)[-WINDOW:]
    if state.failing_since is not None and sent_at < state.failing_since:
        return state if state.mode is Mode.OPEN else replace(state, recent=recent)
    if state.mode is Mode.OPEN:
        # The first success closes the circuit, but dispatch grows back one at a time.
        return Breaker(mode=Mode.RAMP, recent=(True,), allowed=1, streak=state.streak)
    if state.mode is Mode.RAMP:
        allowed = state.allowed + 1
        if allowed >= settings.concurrency:
            return Breaker(recent=recent, streak=state.streak)
        return replace(state, recent=recent, allowed=allowed, failing_since=None)
    return replace(state, recent=recent, failing_since=None)


def after_failure(
    state: Breaker,
    now: float,
    settings: BreakerSettings,
    *,
    probe: bool,
    retry_after_s: float | None,
    cause: str,
    rand: float,
) -> Breaker:
    """A 5xx, timeout, reset or unusable answer at `now`; `rand` in [0, 1) draws the jitter."""
    floor = now + (retry_after_s or 0.0)
    fresh = state.failing_since is None
    state = replace(
        state,
        recent=(*state.recent, False)[-WINDOW:],
        failing_since=now if fresh else state.failing_since,
        cause=cause,
        streak=state.streak + 1 if fresh else state.streak,
    )
    if state.mode is Mode.OPEN:
        if not probe:  # an attempt sent before the circuit opened: it only confirms it
            return replace(state, next_probe_at=max(state.next_probe_at, floor))
        failed = state.probes_failed + 1
        wait = rand * probe_ceiling_s(failed, settings)
        return replace(
            state, probing=False, probes_failed=failed, next_probe_at=max(now + wait, floor)
        )
    # In ramp a failure does not shrink what is allowed: the provider answers (a success
    # closed the circuit), and if failures outrun successes again the circuit reopens anyway.
    if not _opens(state.recent):
        return state
    wait = rand * probe_ceiling_s(0, settings)
    return replace(
        state,
        mode=Mode.OPEN,
        recent=(),
        probes_failed=0,
        probing=False,
        next_probe_at=max(now + wait, floor),
    )


def after_neutral(
    state: Breaker, now: float, *, probe: bool, retry_after_s: float | None
) -> Breaker:
    """An attempt that says nothing about an outage (a 429, or one given back unsent)."""
    if not probe:
        return state
    later = max(state.next_probe_at, now + (retry_after_s or 0.0))
    return replace(state, probing=False, next_probe_at=later)


def counts_against_item(state: Breaker, *, probe: bool) -> bool:
    """Whether a failure (already applied to `state`) uses up one of the item's attempts: only
    while the provider is otherwise answering, never a probe nor a failure during an outage.
    (When a streak of failures opens the circuit, the circuit also gives back the attempts its
    earlier failures used: see `Circuit.refunded`.)"""
    return not probe and state.mode is not Mode.OPEN
