"""Budgets that recorded spend never passes (CONTRACT section 5).

Before each request the runner reserves that request's worst-case cost; when the usage comes
back the reservation is settled at the real cost and the difference is freed. A request that
does not fit waits while other reservations are outstanding (they may free room), and is
refused once nothing is outstanding and it still does not fit: that is the budget stop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


def fits(limit: float | None, committed: float, reserved: float, amount: float) -> bool:
    """Whether `amount` more can be reserved under `limit` (None = no limit).

    A tiny epsilon absorbs float noise so that a budget of exactly N requests admits N.
    """
    if limit is None:
        return True
    return committed + reserved + amount <= limit + 1e-9


@dataclass(slots=True)
class Reservation:
    amount: float
    settled: bool = False


class BudgetGuard:
    """Run and total budgets shared by every worker of one run (event-loop only, no threads)."""

    def __init__(self, *, run_usd: float | None, total_usd: float | None, spent_before: float):
        self.run_usd = run_usd
        self.total_usd = total_usd
        self.spent_before = spent_before  # recorded in the ledger by earlier runs
        self.spent = 0.0  # committed by this run
        self.reserved = 0.0
        self._outstanding = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def limited(self) -> bool:
        return self.run_usd is not None or self.total_usd is not None

    def _fits(self, amount: float) -> bool:
        return fits(self.run_usd, self.spent, self.reserved, amount) and fits(
            self.total_usd, self.spent_before + self.spent, self.reserved, amount
        )

    def left_usd(self) -> float | None:
        """What may still be spent under the tighter of the two bounds (None = unbounded)."""
        lefts = []
        if self.run_usd is not None:
            lefts.append(self.run_usd - self.spent)
        if self.total_usd is not None:
            lefts.append(self.total_usd - self.spent_before - self.spent)
        return max(0.0, min(lefts)) if lefts else None

    async def reserve(self, amount: float) -> Reservation | None:
        """Reserve `amount`, waiting for outstanding reservations to settle when it does not
        fit yet; None when it cannot fit even with nothing outstanding (stop dispatching).

        Check and update happen with no await between them, so concurrent workers on the one
        event loop can never reserve past a limit together."""
        while not self._fits(amount):
            if self._outstanding == 0:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self.reserved += amount
        self._outstanding += 1
        return Reservation(amount)

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        """Free a reservation; commit `actual_usd` (None: nothing was billed). Synchronous, so
        it is safe in a `finally` of a cancelled task."""
        if reservation.settled:
            return
        reservation.settled = True
        self.reserved -= reservation.amount
        self._outstanding -= 1
        if actual_usd:
            self.spent += actual_usd
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
