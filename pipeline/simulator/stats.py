"""The running totals of one simulator, served at `GET /_sim/stats`: HTTP requests by status
and outcome, concurrency, arrivals, and what the provider billed (interactive answers at the
public prices, batch lines at the batch price) and delivered.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping

from pipeline.cost import pricing as cost
from pipeline.simulator.accounting import usd_of

MAX_ARRIVALS = 200_000


class Stats:
    """Counters of one simulator since its start or the last reset.

    `usd` and `tokens` are what the provider bills: every 200 whose body carried usage,
    including those lost on the way (reset, truncated, corrupt), and batch lines at the batch
    price (`usd_batch` is their part of `usd`). `usd_delivered` and `ok_by_image` count only
    answers whose images reached the client usable. `batches` counts batch lines answered
    and billed; its `by_status` (batches held now, by status) comes from the batch book.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        # Requests still in flight stay counted there: they will depart after the reset.
        self.started = self._clock()
        self.requests = 0
        self.peak_in_flight = self.in_flight
        self.by_status: Counter[str] = Counter()
        self.by_outcome: Counter[str] = Counter()
        self.tokens = {"text_input": 0, "image_input": 0, "image_output": 0, "total": 0}
        self.usd = 0.0
        self.usd_batch = 0.0
        self.usd_delivered = 0.0
        self.ok_by_image: Counter[str] = Counter()
        self.arrivals: list[float] = []
        self.batch_lines: Counter[str] = Counter()
        self.batch_lines_billed = 0

    def arrive(self) -> None:
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if len(self.arrivals) < MAX_ARRIVALS:
            self.arrivals.append(round(self._clock() - self.started, 6))

    def depart(self, status: int | None, outcome: str) -> None:
        """A request ended; status None when no whole answer went out (reset, stall)."""
        self.in_flight -= 1
        if status is not None:
            self.by_status[str(status)] += 1
        self.by_outcome[outcome] += 1

    def batch_line(self, status: int) -> None:
        self.batch_lines[str(status)] += 1

    def bill(self, model: str, usage: Mapping, batch: bool = False) -> None:
        counts = cost.counts_from_usage(usage)
        self.tokens["text_input"] += counts.text_input
        self.tokens["image_input"] += counts.image_input
        self.tokens["image_output"] += counts.image_output + counts.text_output
        self.tokens["total"] += int(usage["total_tokens"])
        usd = usd_of(model, usage, batch) or 0.0
        self.usd += usd
        if batch:
            self.usd_batch += usd
            self.batch_lines_billed += 1

    def deliver(self, image_sha256: str, model: str, usage: Mapping | None, batch: bool) -> None:
        self.ok_by_image[image_sha256] += 1
        if usage is not None:
            self.usd_delivered += usd_of(model, usage, batch) or 0.0

    def snapshot(self, batches_by_status: Mapping[str, int] | None = None) -> dict:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "by_outcome": dict(self.by_outcome),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "tokens": dict(self.tokens),
            "usd": round(self.usd, 9),
            "usd_batch": round(self.usd_batch, 9),
            "usd_delivered": round(self.usd_delivered, 9),
            "ok_by_image": dict(self.ok_by_image),
            "batches": {
                "by_status": dict(batches_by_status or {}),
                "lines": sum(self.batch_lines.values()),
                "lines_by_status": dict(self.batch_lines),
                "lines_billed": self.batch_lines_billed,
            },
            "arrivals": list(self.arrivals),
        }
