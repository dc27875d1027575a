"""Outcomes into ledger lines and live counters: one place that knows the shape of the
`attempt_failed`, `succeeded` and `failed` lines (CONTRACT section 4) and keeps RunStats in
step with them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.api.answers import cause_of
from pipeline.api.client import EditResponse
from pipeline.core.errors import AttemptError
from pipeline.cost.pricing import counts_from_usage
from pipeline.engine.prepare import Prepared
from pipeline.engine.summary import RunStats
from pipeline.ledger.writer import LedgerWriter


class Recorder:
    def __init__(self, writer: LedgerWriter, stats: RunStats, changed: Callable[[], None]):
        self.writer = writer
        self.stats = stats
        self._changed = changed

    def attempt_failed(
        self, prepared: Prepared, exc: AttemptError, number: int, retry_in_s: float | None
    ) -> None:
        """A failed attempt that will be retried (after retry_in_s; None: held back)."""
        cause = cause_of(exc)
        self.stats.retries[cause] = self.stats.retries.get(cause, 0) + 1
        self.stats.note_cause(cause, exc.message)
        self.writer.write(
            "attempt_failed",
            item=prepared.item.id,
            key=prepared.key,
            attempt=number,
            http_status=exc.http_status,
            transport=exc.transport,
            cause=cause,
            type=exc.type,
            code=exc.code,
            message=exc.message,
            request_id=exc.request_id,
            retry_in_s=None if retry_in_s is None else round(retry_in_s, 3),
        )
        self._changed()

    async def succeeded(
        self,
        prepared: Prepared,
        response: EditResponse,
        outputs: list[dict],
        *,
        attempt: int,
        latency_s: float,
        cost_usd: float | None,
        estimated: bool,
    ) -> None:
        item = prepared.item
        fields: dict[str, Any] = {
            "item": item.id,
            "key": prepared.key,
            "attempt": attempt,
            "model": item.model,
            "params": dict(item.params),
            "latency_s": round(latency_s, 3),
            "request_id": response.request_id,
            "usage": response.usage,
            "cost_usd": None if cost_usd is None else round(cost_usd, 8),
            "outputs": outputs,
            "inputs": prepared.inputs,
        }
        if estimated:
            fields["cost_estimated"] = True
        await self.writer.awrite("succeeded", **fields)
        stats = self.stats
        stats.succeeded += 1
        stats.pending -= 1
        stats.cost_usd += cost_usd or 0.0
        usage = response.usage
        stats.add_tokens(counts_from_usage(usage) if usage else prepared.expected_counts)
        self._changed()

    async def failed(
        self,
        item_id: str,
        key: str | None,
        cls: str,
        exc: AttemptError | None,
        message: str,
        attempts: int,
        cause: str = "input",  # without an exception: what could not be read or written
    ) -> None:
        """The item's verdict: `permanent`, `exhausted`, or `fatal` (the run's, not the
        item's: a fatal item stays pending in the counts and runs again next time)."""
        error = {"class": cls, "http_status": None, "type": None, "code": None}
        if exc is not None:
            error.update(exc.describe())
        error["message"] = message
        await self.writer.awrite("failed", item=item_id, key=key, attempts=attempts, error=error)
        # The last attempt has no attempt_failed line: its cause is counted here.
        self.stats.note_cause(cause_of(exc) if exc is not None else cause, message)
        if cls != "fatal":
            self.stats.failed += 1
            self.stats.pending -= 1
            self.stats.failed_ids.append(item_id)
        self._changed()
