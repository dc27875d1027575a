"""Will the budget let the pending items through, and where does it stop them? A dry run's
answer, from the items' estimates and the run's budgets. Pure arithmetic that follows the
runner's rule (engine/budget.py): an item is sent while its worst case fits in what is left,
and the first one that does not fit stops dispatch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.cost.estimate import ItemEstimate


@dataclass(frozen=True, slots=True)
class BudgetOutlook:
    pending: int
    expected_usd: float
    worst_usd: float
    run_usd: float | None
    total_usd: float | None
    spent_before_usd: float  # recorded in the job's ledgers already
    limit_usd: float | None  # what this run may spend: the tighter of the two budgets
    binding: str | None  # "run_usd" or "total_usd": which budget sets the limit
    expected_items: int  # items sent before the budget stops, if each costs what is expected
    worst_items: int  # ... if each costs its worst case: at least this many go

    @property
    def fits(self) -> bool:
        return self.expected_items == self.pending

    def to_json(self) -> dict:
        return {
            "run_usd": self.run_usd,
            "total_usd": self.total_usd,
            "spent_before_usd": round(self.spent_before_usd, 6),
            "limit_usd": None if self.limit_usd is None else round(self.limit_usd, 6),
            "binding": self.binding,
            "expected_items": self.expected_items,
            "worst_items": self.worst_items,
            "stops": not self.fits,
            "summary": self.sentence(),
        }

    def sentence(self) -> str:
        """One line for a person: what is spent against which budget, and where it stops."""
        if self.pending == 0:
            return "nothing to send: $0"
        cost = f"expected ${self.expected_usd:.4f}, worst ${self.worst_usd:.4f}"
        if self.limit_usd is None:
            return f"{cost}; no budget set (budget.run_usd, budget.total_usd or --max-usd)"
        name = "budget.run_usd" if self.binding == "run_usd" else "budget.total_usd"
        limit = f"this run may spend ${self.limit_usd:.4f} ({name}"
        if self.binding == "total_usd":
            limit += f" ${self.total_usd:.2f} less ${self.spent_before_usd:.4f} spent before"
        limit += ")"
        if self.worst_items == self.pending:
            return f"{cost}; {limit}: all {self.pending} item(s) fit even at the worst case"
        if self.fits:
            return (
                f"{cost}; {limit}: all {self.pending} item(s) fit as expected, at least "
                f"{self.worst_items} at the worst case"
            )
        # Enough for every item even at the worst case: the worst total (plus, for the job's
        # total, what the ledgers hold already).
        needed = self.worst_usd
        if self.binding == "total_usd":
            needed += self.spent_before_usd
        option = " (or --max-usd)" if self.binding == "run_usd" else ""
        return (
            f"{cost}; {limit}: the budget stops after about {self.expected_items} of "
            f"{self.pending} item(s) (at least {self.worst_items} at the worst case); "
            f"{name}{option} of ${math.ceil(needed * 100) / 100:.2f} sends them all"
        )


def items_within(costs: Sequence[float], worst: Sequence[float], limit: float) -> int:
    """How many items in order are sent when item k goes while `worst[k]` fits in what is
    left and then costs `costs[k]`; the first that does not fit stops dispatch."""
    spent = 0.0
    for count, (cost, reserve) in enumerate(zip(costs, worst, strict=True)):
        if spent + reserve > limit + 1e-12:
            return count
        spent += cost
    return len(costs)


def budget_outlook(
    estimates: Sequence[ItemEstimate],
    *,
    run_usd: float | None = None,
    total_usd: float | None = None,
    spent_before_usd: float = 0.0,
) -> BudgetOutlook:
    """The outlook of sending `estimates` in order under the run's budgets. Unpriced items
    count as free here: a run with a budget refuses them before sending (engine/settings.py)."""
    expected = [e.expected_usd or 0.0 for e in estimates]
    worst = [e.worst_usd or 0.0 for e in estimates]
    limits = {}
    if run_usd is not None:
        limits["run_usd"] = run_usd
    if total_usd is not None:
        limits["total_usd"] = max(0.0, total_usd - spent_before_usd)
    binding = min(limits, key=limits.__getitem__) if limits else None
    limit = limits.get(binding) if binding else None
    count = len(estimates)
    return BudgetOutlook(
        pending=count,
        expected_usd=math.fsum(expected),
        worst_usd=math.fsum(worst),
        run_usd=run_usd,
        total_usd=total_usd,
        spent_before_usd=spent_before_usd,
        limit_usd=limit,
        binding=binding,
        expected_items=count if limit is None else items_within(expected, worst, limit),
        worst_items=count if limit is None else items_within(worst, worst, limit),
    )
