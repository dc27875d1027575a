"""The circuit breaker's state and waiting: every attempt asks `admit` first (one probe at a
time while the provider fails, a growing number while it recovers) and reports its outcome.
The decisions are `breaker`'s pure functions; this module only keeps the state and wakes
the waiters when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import replace

from pipeline.engine import breaker
from pipeline.engine.breaker import Breaker, BreakerSettings, Mode


class Circuit:
    """One run's breaker. Call from the event loop only."""

    def __init__(
        self,
        settings: BreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        self.settings = settings
        self.state = Breaker()
        self.in_flight = 0
        self._opened_in: set[int] = set()  # streaks of failures that opened the circuit
        self.active = 0  # items being worked on (any stage), kept by the attempts
        self._judging = 0  # items waiting in `judged`
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()

    async def admit(self) -> bool | None:
        """Wait until an attempt may start and take its place: True for a probe, False for an
        ordinary attempt, None when the provider has failed for max_outage_s (stop the run)."""
        while True:
            turn = breaker.decide(self.state, self._clock(), self.in_flight, self.settings)
            if turn.outage:
                return None
            if turn.go:
                self.in_flight += 1
                if turn.probe:
                    self._set(replace(self.state, probing=True))
                return turn.probe
            wake = self._wake
            timeout = None if math.isinf(turn.wait_s) else max(turn.wait_s, 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)

    def succeeded(self, sent_at: float = math.inf) -> None:
        """An answer from a working provider to an attempt sent at `sent_at` (monotonic)."""
        self.in_flight -= 1
        self._set(breaker.after_success(self.state, self.settings, sent_at=sent_at))

    def failed(self, *, probe: bool, retry_after_s: float | None, cause: str) -> bool:
        """A 5xx, timeout, reset or unusable answer; True when it counts against the item."""
        self.in_flight -= 1
        state = breaker.after_failure(
            self.state,
            self._clock(),
            self.settings,
            probe=probe,
            retry_after_s=retry_after_s,
            cause=cause,
            rand=self._rng.random(),
        )
        if state.mode is Mode.OPEN and not self.is_open:
            self._opened_in.add(state.streak)
        self._set(state)
        return breaker.counts_against_item(state, probe=probe)

    @property
    def streak(self) -> int:
        """The number of the current (or last) run of failures."""
        return self.state.streak

    def refunded(self, streak: int) -> bool:
        """Whether failures of `streak` were an outage's (it opened the circuit), so they give
        back the attempts they used."""
        return streak in self._opened_in

    async def judged(self, streak: int) -> bool:
        """An item used its last attempt in failure `streak`: may that stand as its verdict?
        True once the provider answered someone since (or no other item is left to tell);
        False when the streak opened the circuit (its attempts are given back)."""
        self._judging += 1
        try:
            while True:
                if self.refunded(streak):
                    return False
                if self.state.streak != streak or self.state.failing_since is None:
                    return True
                if self._judging >= self.active:  # every item left is waiting here
                    return True
                await self._wake.wait()
        finally:
            self._judging -= 1
            self.poke()

    def item_started(self) -> None:
        self.active += 1

    def item_ended(self) -> None:
        self.active -= 1
        self.poke()

    def poke(self) -> None:
        """Wake every waiter to look again (the state, or who is left, changed)."""
        self._wake.set()
        self._wake = asyncio.Event()

    def release(self, *, probe: bool, retry_after_s: float | None = None) -> None:
        """An attempt that says nothing about an outage: a 429, or one never sent."""
        self.in_flight -= 1
        self._set(
            breaker.after_neutral(
                self.state, self._clock(), probe=probe, retry_after_s=retry_after_s
            )
        )

    @property
    def is_open(self) -> bool:
        return self.state.mode is Mode.OPEN

    def probe_every_s(self) -> float:
        """The longest wait between probes now (full jitter draws below it)."""
        return breaker.probe_ceiling_s(self.state.probes_failed, self.settings)

    def _set(self, state: Breaker) -> None:
        self.state = state
        # Waiters hold the old event, which stays set: each wakes once and decides again.
        self.poke()
