"""One result of a batch into outputs and a ledger line: a usable answer finished as an
interactive one is (drift, strict compositing, the input's size), written atomically and
recorded `succeeded` at the batch price (and stored in the answer cache); a failed line
recorded `attempt_failed` (the next batch sends it again) or `failed`; an item the batch never
ran noted for resubmission.
"""

from __future__ import annotations

import asyncio

from pipeline.api.answers import cause_of
from pipeline.api.batchlines import LineResult
from pipeline.batch.context import BatchContext
from pipeline.cache.store import AnswerCache
from pipeline.core.errors import AttemptError, PermanentError, RetryableError
from pipeline.core.plan import Item
from pipeline.cost.pricing import TokenCounts, price_of
from pipeline.cost.usage import Charge, charge, recordable_usage
from pipeline.engine.finishing import ANSWERS, FINISHING
from pipeline.engine.prepare import Preparer, write_outputs
from pipeline.ledger.batches import BatchState, OpenBatch
from pipeline.media.finish import Finished, TooMuchDrift, finish, needs_pixels


class ResultRecorder:
    def __init__(self, ctx: BatchContext, state: BatchState):
        self.ctx = ctx
        self.state = state
        self.max_attempts = ctx.plan.limits.max_attempts
        self.preparer = Preparer(ctx.plan, ctx.batch_prices, ctx.fetcher)  # for finishing
        self._finishing = asyncio.Semaphore(FINISHING)
        self.cache = AnswerCache(ctx.plan.cache) if ctx.plan.cache else None

    async def succeeded(
        self,
        batch: OpenBatch,
        item: Item,
        key: str,
        attempt: int,
        result: LineResult,
        turnaround_s: float | None = None,
    ) -> None:
        ctx = self.ctx
        billed = self._charge(batch, item, result.usage, usable=True)
        try:
            finished = await self._finish(item, result.images or [])
        except TooMuchDrift as exc:  # the model's doing: retried in the next batch, paid
            result = LineResult(
                result.custom_id,
                result.request_id,
                usage=result.usage,
                error=RetryableError(str(exc), code="drift", request_id=result.request_id),
                billed=True,
            )
            await self.failed(batch, item, key, attempt, result, cause="drift")
            return
        except (OSError, ValueError) as exc:  # its input went away since it was submitted
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            error = PermanentError(f"cannot read the item's input to finish its answer: {reason}")
            result = LineResult(
                result.custom_id, result.request_id, usage=result.usage, error=error, billed=True
            )
            await self.failed(batch, item, key, attempt, result, cause="input")
            return
        outputs = await write_outputs(ctx.plan, item, finished.images, store=ctx.store)
        answers = None
        if finished.answers is not None:  # strict: what the model drew, for review
            answers = await write_outputs(
                ctx.plan, item, finished.answers, ANSWERS, store=ctx.store
            )
        price = price_of(ctx.prices, item.model)
        interactive = None
        if billed.cost_usd is not None and price is not None and price.batch_discount > 0:
            interactive = round(billed.cost_usd / price.batch_discount, 8)
        fields = {
            "item": item.id,
            "key": key,
            "attempt": attempt,
            "endpoint": item.endpoint,
            "provider": ctx.plan.endpoint.provider,
            "model": item.model,
            "params": dict(item.params),
            "latency_s": turnaround_s,  # the batch's, from creation to its end
            "request_id": result.request_id,
            "usage": recordable_usage(result.usage),
            **billed.ledger_fields(),
            "interactive_usd": interactive,
            "outputs": outputs,
            "inputs": batch.inputs.get(item.id) or [],
            "batch": batch.id,
        }
        if finished.drift is not None:
            fields["drift"] = finished.drift
        if answers is not None:
            fields["answers"] = answers
        await ctx.writer.awrite("succeeded", **fields)
        await self._remember(batch, item, result)
        ctx.stats.cost_usd += billed.cost_usd or 0.0
        ctx.stats.add_tokens(billed.counts)
        ctx.changed()

    async def _remember(self, batch: OpenBatch, item: Item, result: LineResult) -> None:
        """A paid answer into the cross-run cache, as an interactive run stores it; a cache
        that cannot be written is said once and otherwise ignored."""
        key = batch.cache_keys.get(item.id)
        if self.cache is None or key is None or not result.images:
            return
        try:
            await asyncio.to_thread(
                self.cache.put, key, result.images, model=item.model, usage=result.usage
            )
        except OSError as exc:
            self.cache = None
            self.ctx.warn(
                f"cannot write to the cache: {exc.strerror or exc}; answers of this run are "
                "not cached (fix the folder's permissions or space)"
            )

    async def _finish(self, item: Item, images: list[bytes]) -> Finished:
        """Drift, strict compositing or the input's size, as an interactive answer gets them
        (media/finish.py): the item's input and mask are read again for it."""
        if not item.images or not needs_pixels(item.finish, item.mask is not None):
            return Finished(list(images), None)
        async with self._finishing:
            prepared = await self.preparer.prepare(item)
            request = prepared.request
            compression = item.params.get("output_compression")
            return await asyncio.to_thread(
                finish,
                item.finish,
                request.images[0][1],
                None if request.mask is None else request.mask[1],
                images,
                compression if isinstance(compression, int) else None,
            )

    def _charge(self, batch: OpenBatch, item: Item, usage: object, *, usable: bool) -> Charge:
        """The answer's cost at the batch price; without a readable usage, the worst case
        reserved for the item at submission (flagged cost_estimated), so budgets still hold."""
        worst = batch.worst.get(item.id)
        if worst is None and batch.items:
            worst = batch.worst_usd / len(batch.items)
        bound = (worst, TokenCounts())
        price = price_of(self.ctx.batch_prices, item.model)
        return charge(usage, price, usable=usable, expected=bound, worst=bound)

    async def failed(
        self,
        batch: OpenBatch,
        item: Item,
        key: str,
        attempt: int,
        result: LineResult,
        cause: str | None = None,
    ) -> None:
        ctx = self.ctx
        exc: AttemptError = result.error  # type: ignore[assignment]
        common: dict = {"item": item.id, "key": key, "batch": batch.id}
        if result.billed:  # a 200 that was unusable: the provider billed it all the same
            billed = self._charge(batch, item, result.usage, usable=False)
            common.update(usage=recordable_usage(result.usage), **billed.ledger_fields())
            ctx.stats.cost_usd += billed.cost_usd or 0.0
            ctx.stats.add_tokens(billed.counts)
        cause = cause or cause_of(exc)
        ctx.stats.note_cause(cause, exc.message)
        if result.permanent or attempt >= self.max_attempts:
            error = {"class": "permanent" if result.permanent else "exhausted", **exc.describe()}
            await ctx.writer.awrite("failed", attempts=attempt, error=error, **common)
        else:
            ctx.stats.retries[cause] = ctx.stats.retries.get(cause, 0) + 1
            await ctx.writer.awrite(
                "attempt_failed",
                attempt=attempt,
                http_status=exc.http_status,
                cause=cause,
                type=exc.type,
                code=exc.code,
                message=exc.message,
                request_id=exc.request_id,
                retry_in_s=None,
                **common,
            )
        ctx.changed()

    async def not_run(self, batch: OpenBatch, item_id: str, status: str, why: str = "") -> None:
        """An item its batch never answered: it goes into the next batch."""
        ended = status in ("expired", "cancelled", "failed")
        cause = f"batch_{status}" if ended else "batch_missing"
        key = batch.items[item_id][0]
        self.ctx.stats.note_cause(cause, f"batch {batch.id} ended {status}")
        await self.ctx.writer.awrite(
            "attempt_failed",
            item=item_id,
            key=key,
            attempt=self.state.attempts_of(item_id, key) + 1,
            cause=cause,
            message=f"batch {batch.id} ended ({status}) without running it{why}; resubmitted",
            retry_in_s=None,
            batch=batch.id,
        )
