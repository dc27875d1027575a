"""What the simulated provider bills and counts: the `usage` of an answer (from the public
token arithmetic in pipeline/tokens.py), its USD at the built-in prices (pipeline/cost.py),
and the running totals served at `GET /_sim/stats`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping

from pipeline.cost import pricing as cost
from pipeline.cost import tokens
from pipeline.simulator.validation import EditRequest

MAX_ARRIVALS = 200_000


def usage_of(edit: EditRequest) -> dict:
    """The `usage` object of a 200 answer, as the API reports it."""
    text = tokens.text_tokens(edit.prompt)
    image = sum(tokens.image_input_tokens(w, h) for w, h in edit.dims)
    image += tokens.fidelity_tokens(*edit.dims[0], edit.input_fidelity)
    output = edit.n * tokens.output_tokens(edit.size, edit.quality)
    return {
        "input_tokens": text + image,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image},
        "output_tokens": output,
        "total_tokens": text + image + output,
    }


def usd_of(model: str, usage: Mapping) -> float | None:
    """USD at the built-in public prices; None for a model the table does not know."""
    price = cost.builtin_table().get(model)
    return None if price is None else cost.cost_of_usage(usage, price)


class Stats:
    """Counters of one simulator since its start or the last reset.

    `usd` and `tokens` are what the provider bills: every 200 whose body carried usage,
    including those lost on the way (reset, truncated, corrupt). `usd_delivered` and
    `ok_by_image` count only answers whose images reached the client usable.
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
        self.usd_delivered = 0.0
        self.ok_by_image: Counter[str] = Counter()
        self.arrivals: list[float] = []

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

    def bill(self, model: str, usage: Mapping) -> None:
        counts = cost.counts_from_usage(usage)
        self.tokens["text_input"] += counts.text_input
        self.tokens["image_input"] += counts.image_input
        self.tokens["image_output"] += counts.image_output + counts.text_output
        self.tokens["total"] += int(usage["total_tokens"])
        self.usd += usd_of(model, usage) or 0.0

    def deliver(self, image_sha256: str, model: str, usage: Mapping | None) -> None:
        self.ok_by_image[image_sha256] += 1
        if usage is not None:
            self.usd_delivered += usd_of(model, usage) or 0.0

    def snapshot(self) -> dict:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "by_outcome": dict(self.by_outcome),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "tokens": dict(self.tokens),
            "usd": round(self.usd, 9),
            "usd_delivered": round(self.usd_delivered, 9),
            "ok_by_image": dict(self.ok_by_image),
            "arrivals": list(self.arrivals),
        }
