"""What an attempt asks before it is sent and reports after: its turn from the rate gate, a
reservation of its worst-case cost from the budget, and the live counters around the request.
Check-and-reserve has no `await` between them, so workers on one loop cannot overshoot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.core.errors import AttemptError, RateLimited, RetryableError
from pipeline.engine.budget import BudgetGuard
from pipeline.engine.pacing import RateGate, RetryBudget, littles_law_warning
from pipeline.engine.stops import StopDispatch, Stops
from pipeline.engine.summary import RunStats


@dataclass(slots=True)
class Admission:
    """One admitted attempt: its budget reservation and when it was sent."""

    reservation: object
    began: float


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
    ):
        self.rpm = rpm
        self.concurrency = concurrency
        self.budget = budget
        self.stops = stops
        self.stats = stats
        self._changed = changed
        self._warn = warn
        self.rate = RateGate(rpm=rpm, probe=True)
        # gRPC's throttling rule with a ratio that tolerates the failure rates image APIs
        # show on a normal day (retries stop only while over a third of attempts fail).
        self.retry_budget = RetryBudget(max_tokens=20, token_ratio=0.5)
        self._latencies: list[float] = []
        self._littles_checked = False

    async def admit(self, worst_usd: float) -> Admission:
        """Wait for a turn, then reserve the attempt's worst case; StopDispatch when the run
        stops meanwhile or the budget cannot fit it (which stops the run)."""
        await self.stops.race(self.rate.wait_turn)
        reservation = await self.budget.reserve(worst_usd)
        if reservation is None:
            self.stops.stop("budget")
            raise StopDispatch
        if self.stops.stopping:  # another worker stopped the run while this one waited
            self.budget.settle(reservation, None)
            raise StopDispatch
        self.stats.in_flight += 1
        self.stats.requests += 1
        self._changed()
        return Admission(reservation, time.monotonic())

    def answered(self, admission: Admission, actual_usd: float | None) -> None:
        """The attempt is over (answered or not): release its slot, settle its reservation."""
        self.stats.in_flight -= 1
        self.rate.on_answer()
        self.budget.settle(admission.reservation, actual_usd)
        self.stats.budget_left_usd = self.budget.left_usd()
        self._changed()

    def succeeded(self, headers) -> None:
        self._count("200")
        self.rate.on_success(headers)
        self.retry_budget.on_success()

    def failed(self, exc: AttemptError) -> None:
        """Feed a failed attempt to the rate controller and the retry budget."""
        self._count(status_label(exc))
        if isinstance(exc, RateLimited):
            # the gate slows down for these; the retry budget is for failures, not pacing
            self.rate.on_rate_limited(exc.retry_after_s, exc.headers)
        elif isinstance(exc, RetryableError):
            self.rate.on_error(exc.headers)
            self.retry_budget.on_failure()

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
