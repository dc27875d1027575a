"""Collecting a batch that has ended: download its output and error files beside the ledger,
read them one line at a time, write each image atomically and one ledger line per item
(`succeeded` at the batch price, `attempt_failed` for what is retried in the next batch,
`failed` for what no retry fixes), note the items it never ran (expired, cancelled), and close
it with `batch_collected`. A result already recorded (a run killed mid-collection) is skipped,
so nothing is written or counted twice.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pipeline.api.answers import cause_of, one_line
from pipeline.api.batchlines import LineResult, parse_line, read_result
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

READING_AT_ONCE = 4  # result lines decoded and written at once


class Collector:
    def __init__(self, ctx: BatchContext, state: BatchState, items: dict[str, Item]):
        self.ctx = ctx
        self.state = state
        self.items = items
        self.max_attempts = ctx.plan.limits.max_attempts
        self.turnaround_s: float | None = None
        self.preparer = Preparer(ctx.plan, ctx.batch_prices, ctx.fetcher)  # for finishing
        self._finishing = asyncio.Semaphore(FINISHING)
        self.cache = AnswerCache(ctx.plan.cache) if ctx.plan.cache else None

    async def collect(self, batch: OpenBatch, info: dict) -> None:
        """Record every result of `batch` (whose provider object is `info`, ended)."""
        by_cid = {cid: item for item, (_key, cid) in batch.items.items()}
        self.turnaround_s = turnaround(info)
        seen: set[str] = set()
        for field in ("output_file_id", "error_file_id"):
            file_id = info.get(field)
            if not file_id:
                continue
            path = self._download_path(batch.id, field)
            await self.ctx.api.download(str(file_id), path)
            try:
                await self._read(path, batch, by_cid, seen)
            finally:
                path.unlink(missing_ok=True)
        status = str(info.get("status"))
        why = refusal(info)
        for item_id in batch.items:
            if item_id not in seen and item_id not in batch.recorded:
                await self._not_run(batch, item_id, status, why)
        await self.ctx.writer.awrite(
            "batch_collected",
            batch=batch.id,
            status=status,
            counts=info.get("request_counts") or {},
            output_file=info.get("output_file_id"),
            error_file=info.get("error_file_id"),
        )

    def _download_path(self, batch_id: str, field: str) -> Path:
        ledger = self.ctx.writer.path
        kind = "errors" if field == "error_file_id" else "output"
        return ledger.with_name(f".{ledger.name}.{batch_id}.{kind}.jsonl")

    async def _read(
        self, path: Path, batch: OpenBatch, by_cid: dict[str, str], seen: set[str]
    ) -> None:
        lock = asyncio.Lock()
        with open(path, "rb") as f:  # noqa: ASYNC230 (lines are read in a thread below)

            async def worker() -> None:
                while True:
                    async with lock:
                        raw = await asyncio.to_thread(f.readline)
                    if not raw:
                        return
                    if raw.strip():
                        await self._line(raw, batch, by_cid, seen)

            await asyncio.gather(*(worker() for _ in range(READING_AT_ONCE)))

    async def _line(
        self, raw: bytes, batch: OpenBatch, by_cid: dict[str, str], seen: set[str]
    ) -> None:
        try:
            doc = await asyncio.to_thread(parse_line, raw)
        except ValueError:
            self.ctx.warn(f"batch {batch.id}: a result line that is not a result; skipped")
            return
        item_id = by_cid.get(doc["custom_id"])
        if item_id is None or item_id in seen:
            self.ctx.warn(f"batch {batch.id}: a result for {doc['custom_id']!r}, not asked")
            return
        seen.add(item_id)
        if item_id in batch.recorded:  # written before a kill
            return
        item = self.items.get(item_id)
        if item is None:
            self.ctx.warn(f"batch {batch.id}: item {item_id} is no longer in the manifest")
            return
        result = await asyncio.to_thread(read_result, doc, item.n)
        del doc
        key = batch.items[item_id][0]
        attempt = self.state.attempts_of(item_id, key) + 1
        if result.images is not None:
            await self._succeeded(batch, item, key, attempt, result)
        elif result.unanswered:
            code = result.error.code if result.error is not None else None
            status = "expired" if code == "batch_expired" else "cancelled"
            await self._not_run(batch, item_id, status)
        else:
            await self._failed(batch, item, key, attempt, result)

    async def _succeeded(
        self, batch: OpenBatch, item: Item, key: str, attempt: int, result: LineResult
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
            await self._failed(batch, item, key, attempt, result, cause="drift")
            return
        except (OSError, ValueError) as exc:  # its input went away since it was submitted
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            error = PermanentError(f"cannot read the item's input to finish its answer: {reason}")
            result = LineResult(
                result.custom_id, result.request_id, usage=result.usage, error=error, billed=True
            )
            await self._failed(batch, item, key, attempt, result, cause="input")
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
            "latency_s": self.turnaround_s,  # the batch's, from creation to its end
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

    async def _failed(
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

    async def _not_run(self, batch: OpenBatch, item_id: str, status: str, why: str = "") -> None:
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


def refusal(info: dict) -> str:
    """Why the provider failed a batch as a whole (`errors.data[].message`), as ": ..."."""
    errors = info.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else None
    messages = [str(e.get("message")) for e in data or () if isinstance(e, dict)]
    return f": {one_line('; '.join(messages), 300)}" if messages else ""


def turnaround(info: dict) -> float | None:
    """Seconds from a batch's creation to its end, as the provider's timestamps say."""
    created = info.get("created_at")
    ended = info.get(f"{info.get('status')}_at") or info.get("completed_at")
    if isinstance(created, int | float) and isinstance(ended, int | float) and ended >= created:
        return float(ended - created)
    return None


def stale_downloads(ledger: Path) -> list[Path]:
    """Result files a killed collection left beside the ledger."""
    prefix = f".{ledger.name}."
    return [
        ledger.parent / name
        for name in os.listdir(ledger.parent)
        if name.startswith(prefix) and name.endswith((".jsonl", ".part"))
    ]
