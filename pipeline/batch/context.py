"""What submitting, collecting and adopting share within one batch-mode run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.api.batches import BatchAPI
from pipeline.core.plan import Plan
from pipeline.cost.pricing import Price
from pipeline.engine.summary import RunStats
from pipeline.inputs.fetch import Fetcher
from pipeline.ledger.writer import LedgerWriter
from pipeline.outputs.store import OutputStore


@dataclass(slots=True)
class BatchContext:
    plan: Plan
    api: BatchAPI
    writer: LedgerWriter
    stats: RunStats
    run_id: str
    prices: dict[str, Price]  # interactive: what the saving is counted against
    batch_prices: dict[str, Price]  # what the provider bills a batch's lines
    warn: Callable[[str], None]
    changed: Callable[[], None]
    store: OutputStore  # where outputs go: the output folder, or a bucket
    fetcher: Fetcher | None = None  # remote inputs; None when the plan has none

    @property
    def job(self) -> str:
        """The job's name in each batch's metadata (`editbatch_job`)."""
        return self.plan.name

    def metadata(self, part: int) -> dict[str, str]:
        return {
            "editbatch_job": self.job,
            "editbatch_run": self.run_id,
            "editbatch_part": str(part),
        }
