"""The batches of a ledger (batch mode): each batch's id, status, items, the provider's counts,
what its answers cost at the batch price and what they would have cost interactively."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class BatchRow:
    id: str
    status: str  # the provider's status when submitted, then when collected
    items: int
    counts: dict[str, int] = field(default_factory=dict)
    succeeded: int = 0
    cost_usd: float = 0.0
    interactive_usd: float = 0.0

    @property
    def saving_usd(self) -> float:
        return self.interactive_usd - self.cost_usd


def batch_rows(records: Iterable[dict]) -> list[BatchRow]:
    """One row per batch, in the order they were submitted."""
    rows: dict[str, BatchRow] = {}
    costs: dict[str, list[float]] = {}
    listed: dict[str, list[float]] = {}
    for rec in records:
        event, batch = rec.get("event"), rec.get("batch")
        if batch is None:
            continue
        if event == "batch_submitted":
            rows[batch] = BatchRow(batch, "in flight", len(rec.get("items") or ()))
        elif event == "batch_collected" and batch in rows:
            rows[batch].status = str(rec.get("status"))
            rows[batch].counts = dict(rec.get("counts") or {})
        elif event == "succeeded" and batch in rows:
            rows[batch].succeeded += 1
            costs.setdefault(batch, []).append(float(rec.get("cost_usd") or 0.0))
            listed.setdefault(batch, []).append(float(rec.get("interactive_usd") or 0.0))
    for batch, row in rows.items():
        row.cost_usd = math.fsum(costs.get(batch, ()))
        row.interactive_usd = math.fsum(listed.get(batch, ()))
    return list(rows.values())
