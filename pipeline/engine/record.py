"""Outcomes into ledger lines and live counters: one place that knows the shape of the
`attempt_failed`, `succeeded` and `failed` lines (CONTRACT section 4) and keeps RunStats in
step with them."""

from __future__ import annotations

import hashlib
import os
import traceback
from collections.abc import Callable
from typing import Any

from pipeline.api.answers import cause_of
from pipeline.api.client import EditResponse
from pipeline.core.errors import AnswerRejected, AttemptError
from pipeline.cost.usage import Charge, recordable_usage
from pipeline.engine.prepare import Prepared
from pipeline.engine.summary import RunStats
from pipeline.ledger.writer import LedgerWriter


class Recorder:
    def __init__(
        self,
        writer: LedgerWriter,
        stats: RunStats,
        changed: Callable[[], None],
        *,
        provider: str = "openai",
    ):
        self.provider = provider
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
        fields: dict[str, Any] = {
            "item": prepared.item.id,
            "key": prepared.key,
            "attempt": number,
            "http_status": exc.http_status,
            "transport": exc.transport,
            "cause": cause,
            "type": exc.type,
            "code": exc.code,
            "message": exc.message,
            "request_id": exc.request_id,
            "retry_in_s": None if retry_in_s is None else round(retry_in_s, 3),
        }
        fields.update(self._spend(exc.charge, exc.usage))
        if isinstance(exc, AnswerRejected):
            fields["drift"] = exc.drift
        self.writer.write("attempt_failed", **fields)
        self._changed()

    def _spend(self, charge: Charge | None, usage: object) -> dict[str, Any]:
        """The ledger fields of a billed answer's cost, counted in the run's stats; none for
        an attempt nobody billed."""
        if charge is None:
            return {}
        self.stats.cost_usd += charge.cost_usd or 0.0
        self.stats.add_tokens(charge.counts)
        return {"usage": recordable_usage(usage), **charge.ledger_fields()}

    async def succeeded(
        self,
        prepared: Prepared,
        response: EditResponse,
        outputs: list[dict],
        *,
        attempt: int,
        latency_s: float,
        charge: Charge,
        drift: float | None = None,
        cached: bool = False,
        answers: list[dict] | None = None,
    ) -> None:
        item = prepared.item
        fields: dict[str, Any] = {
            "item": item.id,
            "key": prepared.key,
            "attempt": attempt,
            "endpoint": item.endpoint,
            "provider": self.provider,
            "model": item.model,
            "params": dict(item.params),
            "latency_s": round(latency_s, 3),
            "request_id": response.request_id,
            **self._spend(charge, response.usage),
            "outputs": outputs,
            "inputs": prepared.inputs,
        }
        if len(outputs) < item.n:  # a short answer is kept, not paid for again
            fields["returned"] = len(outputs)
        if charge.estimated and prepared.approximate:
            fields["cost_approximate"] = True  # a free size's tokens, scaled by area
        if drift is not None:
            fields["drift"] = drift
        if cached:  # outputs from the cross-run cache: nothing was sent or paid
            fields["cached"] = True
        if answers is not None:  # strict: the model's images before compositing
            fields["answers"] = answers
        await self.writer.awrite("succeeded", **fields)
        stats = self.stats
        stats.succeeded += 1
        stats.pending -= 1
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
        *,
        charge: Charge | None = None,
        usage: object = None,
        detail: dict | None = None,
    ) -> None:
        """The item's verdict: `permanent`, `exhausted`, `internal` (a bug met while handling
        this item: it fails, the run goes on), or `fatal` (the run's, not the
        item's: a fatal item stays pending in the counts and runs again next time). The cost
        of its last attempt, when that was billed, is on this line: the `charge` of an answer
        whose outputs could not be written, or the one the last failed attempt carries."""
        error = {"class": cls, "http_status": None, "type": None, "code": None}
        if exc is not None:
            error.update(exc.describe())
            if charge is None:
                charge, usage = exc.charge, exc.usage
        error["message"] = message
        error.update(detail or {})
        spend = self._spend(charge, usage)
        if isinstance(exc, AnswerRejected):
            spend["drift"] = exc.drift
        await self.writer.awrite(
            "failed", item=item_id, key=key, attempts=attempts, error=error, **spend
        )
        # The last attempt has no attempt_failed line: its cause is counted here.
        self.stats.note_cause(cause_of(exc) if exc is not None else cause, message)
        if cls != "fatal":
            self.stats.failed += 1
            self.stats.pending -= 1
            self.stats.failed_ids.append(item_id)
        self._changed()


def internal_error(exc: BaseException) -> tuple[str, dict]:
    """The message and the ledger's `error` details of a bug met while handling one item: the
    exception, where it was raised, and a digest of its traceback's frames (the same bug gives
    the same digest, so reports group it and a bug report can name it)."""
    frames = traceback.extract_tb(exc.__traceback__)
    shape = "|".join(f"{os.path.basename(f.filename)}:{f.name}:{f.lineno}" for f in frames)
    digest = hashlib.sha256(f"{type(exc).__name__}|{shape}".encode()).hexdigest()[:12]
    last = frames[-1] if frames else None
    where = f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}" if last else "?"
    message = (
        f"internal error: {type(exc).__name__}: {str(exc)[:300]} (at {where}); this item "
        f"failed, the run went on. This is a bug in editbatch: report it with traceback "
        f"{digest}; rerun with --retry-failed once fixed"
    )
    return message, {"type": type(exc).__name__, "traceback": digest, "where": where}
