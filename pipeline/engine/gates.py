"""What an attempt asks before it is sent and reports after: its place in the circuit breaker,
its turn from the rate gate, a reservation of its worst-case cost from the budget, and the live
counters around the request (with what holds dispatch back, for the progress displays).
Check-and-reserve has no `await` between them, so workers on one loop cannot overshoot.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.core.errors import AttemptError, PermanentError, RateLimited, RetryableError
from pipeline.engine.breaker import BreakerSettings
from pipeline.engine.budget import BudgetGuard
from pipeline.engine.circuit import Circuit
from pipeline.engine.pacing import RateGate, littles_law_warning
from pipeline.engine.retry import Tally
from pipeline.engine.stops import StopDispatch, Stops
from pipeline.engine.summary import RunStats

# How much of a failure's message the outage display and message quote.
CAUSE_CHARS = 120


@dataclass(slots=True)
class Admission:
    """One admitted attempt: its budget reservation, when it was sent, whether it is the
    circuit's probe, and whether it still holds its place in the circuit (no outcome yet)."""

    reservation: object
    began: float
    probe: bool = False
    in_circuit: bool = True


def wall_time(monotonic_s: float) -> float:
    """A monotonic instant as wall-clock epoch seconds."""
    return time.time() - (time.monotonic() - monotonic_s)


def clock_text(epoch_s: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch_s))


class Gates:
    def __init__(
        self,
        *,
        rpm: float,
        concurrency: int,
        budget: BudgetGuard,
        stops: Stops,
        stats: RunStats,
        changed: Callable[[], None],
        warn: Callable[[str], None],
        breaker: BreakerSettings | None = None,
        rng: random.Random | None = None,
    ):
        self.rpm = rpm
        self.concurrency = concurrency
        self.budget = budget
        self.stops = stops
        self.stats = stats
        self._changed = changed
        self._warn = warn
        self.rate = RateGate(rpm=rpm, probe=True)
        self.circuit = Circuit(breaker or BreakerSettings(concurrency), rng=rng)
        self._latencies: list[float] = []
        self._littles_checked = False

    async def admit(self, worst_usd: float) -> Admission:
        """Wait for the circuit and a turn, then reserve the attempt's worst case;
        StopDispatch when the run stops meanwhile, the budget cannot fit it (which stops the
        run) or the provider has failed for limits.max_outage_s (which stops it too)."""
        probe = await self._circuit_turn()
        try:
            await self.stops.race(self.rate.wait_turn)
            reservation = await self.budget.reserve(worst_usd)
            if reservation is None:
                self.stops.stop("budget")
                raise StopDispatch
            if self.stops.stopping:  # another worker stopped the run while this one waited
                self.budget.settle(reservation, None)
                raise StopDispatch
        except BaseException:
            self.circuit.release(probe=probe)
            self.show_holds()
            raise
        self.stats.in_flight += 1
        self.stats.requests += 1
        self._changed()
        return Admission(reservation, time.monotonic(), probe)

    async def _circuit_turn(self) -> bool:
        # Circuit.admit takes its place with no await after the wait, so a stop either finds
        # it still waiting (no place taken) or finds the place taken and returned.
        probe = await self.stops.race(self.circuit.admit)
        if probe is None:
            self.stops.stop("outage", self._outage_message())
            raise StopDispatch
        return probe

    def answered(self, admission: Admission, actual_usd: float | None) -> None:
        """The attempt is over (answered or not): release its slot, settle its reservation."""
        self.stats.in_flight -= 1
        self.rate.on_answer()
        if admission.in_circuit:  # cancelled before any outcome
            admission.in_circuit = False
            self.circuit.release(probe=admission.probe)
        self.budget.settle(admission.reservation, actual_usd)
        self.stats.budget_left_usd = self.budget.left_usd()
        self.show_holds()

    def succeeded(self, headers, admission: Admission) -> None:
        self._count("200")
        self.rate.on_success(headers)
        admission.in_circuit = False
        self.circuit.succeeded(sent_at=admission.began)

    def failed(self, exc: AttemptError, admission: Admission) -> bool:
        """Feed a failed attempt to the rate controller and the circuit breaker; True when it
        counts against the item's max_attempts (probes and outage failures do not)."""
        self._count(status_label(exc))
        admission.in_circuit = False
        counts = True
        if isinstance(exc, RateLimited):
            # the gate slows down for these; the breaker is for failures, not pacing
            self.rate.on_rate_limited(exc.retry_after_s, exc.headers)
            self.circuit.release(probe=admission.probe, retry_after_s=exc.retry_after_s)
        elif isinstance(exc, RetryableError):
            self.rate.on_error(exc.headers)
            cause = f"{status_label(exc)}: {exc.message[:CAUSE_CHARS]}"
            counts = self.circuit.failed(
                probe=admission.probe, retry_after_s=exc.retry_after_s, cause=cause
            )
        elif isinstance(exc, PermanentError):
            # the provider answered: it is the request that is wrong
            self.circuit.succeeded(sent_at=admission.began)
        else:
            self.circuit.release(probe=admission.probe)
        self._refuse_long_wait(exc)
        return counts

    async def judged(self, tally: Tally) -> bool:
        """Whether an item's last counted failure stands as its verdict (see Circuit.judged)."""
        return await self.circuit.judged(tally.last_streak)

    def _refuse_long_wait(self, exc: AttemptError) -> None:
        """A retry-after longer than max_outage_s is an outage: stop, say when to call again."""
        wait, limit = exc.retry_after_s, self.circuit.settings.max_outage_s
        if wait is None or limit <= 0 or wait <= limit:
            return
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(time.time() + wait))
        self.stops.stop(
            "outage",
            f"the server asked to be called again in {wait:.0f} s (at {when}), longer than "
            f"limits.max_outage_s ({limit:g} s): stopped sending; the items left stay "
            "pending, run again after that time",
        )

    def _outage_message(self) -> str:
        state, limit = self.circuit.state, self.circuit.settings.max_outage_s
        since = wall_time(state.failing_since)
        return (
            f"the provider failed every request from {clock_text(since)} for "
            f"limits.max_outage_s ({limit:g} s); last: {state.cause}; stopped sending, the "
            "items left stay pending: run again later (exit 75, a temporary failure)"
        )

    def show_holds(self) -> None:
        """What holds dispatch back, in RunStats for the progress displays (wall clock)."""
        stats, state = self.stats, self.circuit.state
        if self.circuit.is_open and state.failing_since is not None:
            stats.outage_since = wall_time(state.failing_since)
            stats.probe_every_s = self.circuit.probe_every_s()
            stats.outage_cause = state.cause
        else:
            stats.outage_since = stats.probe_every_s = None
            stats.outage_cause = ""
        paused = self.rate.paused_until
        now = time.monotonic()
        stats.paused_until = wall_time(paused) if paused > now else None
        self._changed()

    def _count(self, label: str) -> None:
        by_status = self.stats.by_status
        by_status[label] = by_status.get(label, 0) + 1

    def observe_latency(self, latency: float) -> None:
        """Once, after the first few successes: can `concurrency` reach the rate at the
        latency seen? (Little's law: in flight = rate x latency.)"""
        if self._littles_checked:
            return
        self._latencies.append(latency)
        if len(self._latencies) < 5:
            return
        self._littles_checked = True
        rate = self.rpm / 60.0 if self.rpm > 0 else self.rate.rate_per_s
        if rate:
            median = sorted(self._latencies)[len(self._latencies) // 2]
            warning = littles_law_warning(self.concurrency, rate, median)
            if warning:
                self._warn(warning)


def status_label(exc: AttemptError) -> str:
    """How a failed attempt counts in `requests by status`: the HTTP status, "200 unusable"
    for a 200 whose body was not usable, or the transport error."""
    if exc.http_status == 200:
        return "200 unusable"
    if exc.http_status is not None:
        return str(exc.http_status)
    return exc.transport or "error"
