"""What one run works with once the command line has overridden the manifest: concurrency,
pacing, budgets (a shard's share of them) and prices; and the check that a budget can be kept
(every model it will send priced). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipeline.core.errors import UsageError
from pipeline.core.plan import Item, Plan
from pipeline.cost.pricing import Price, price_table, priced_as
from pipeline.ledger.shards import Shard
from pipeline.manifest.prices import model_fix


@dataclass(frozen=True, slots=True)
class RunSettings:
    concurrency: int
    rpm: float
    run_usd: float | None
    total_usd: float | None
    prices: dict[str, Price]
    shard: Shard | None = None

    @classmethod
    def resolve(
        cls,
        plan: Plan,
        *,
        concurrency: int | None = None,
        rpm: float | None = None,
        max_usd: float | None = None,
        shard: Shard | None = None,
    ) -> RunSettings:
        """The manifest's limits and budgets, overridden by the options given (None keeps
        the manifest's), and shared out when the run is one shard of N."""
        run_usd = plan.budget.run_usd if max_usd is None else max_usd
        total_usd = plan.budget.total_usd
        pace = plan.limits.requests_per_minute if rpm is None else rpm
        if shard is not None:
            pace, run_usd, total_usd = shard.share(
                pace,
                run_usd,
                total_usd,
                explicit_rpm=rpm is not None,
                explicit_run_usd=max_usd is not None,
            )
        return cls(
            concurrency=concurrency or plan.limits.concurrency,
            rpm=pace,
            run_usd=run_usd,
            total_usd=total_usd,
            prices=price_table(plan.pricing),
            shard=shard,
        )

    @property
    def has_budget(self) -> bool:
        return self.run_usd is not None or self.total_usd is not None

    def check_prices(self, items: Iterable[Item], warn: Callable[[str], None]) -> None:
        """A budget needs a price for every model it sends (UsageError otherwise); without a
        budget an unpriced model is a warning and its cost is recorded as null."""
        models = {item.model for item in items}
        unpriced = sorted(m for m in models if priced_as(self.prices, m) is None)
        if not unpriced:
            return
        fixes = "; ".join(f"{model}: {model_fix(model, self.prices)}" for model in unpriced)
        if self.has_budget:
            raise UsageError(
                "a budget is set but these models have no known price: "
                + ", ".join(unpriced)
                + f" (defaults.model or an item's model:); {fixes}"
            )
        warn(
            "no price known for "
            + ", ".join(unpriced)
            + f": their cost is recorded as null; {fixes}"
        )
