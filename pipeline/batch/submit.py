"""Submitting pending items as batches: read each item (key, worst cost at the batch price),
reserve that worst case under the budgets (what does not fit is not submitted), upload each
distinct image and mask once (`file_uploaded`; a later run reuses the file id), write the
JSONL in parts within the API's limits, upload it (recorded with its items before the batch is
created), create the batch and record `batch_submitted`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pipeline.api import batchlines
from pipeline.batch import parts
from pipeline.batch.context import BatchContext
from pipeline.batch.reconcile import find_batches
from pipeline.batch.uploads import ImageUploads
from pipeline.cache.store import AnswerCache
from pipeline.core.errors import RetryableError
from pipeline.core.plan import Item
from pipeline.engine.budget import fits
from pipeline.engine.finishing import ANSWERS, Finisher
from pipeline.engine.prepare import Prepared, Preparer, write_outputs
from pipeline.ledger.batches import BatchState

PREPARE_AT_ONCE = 8  # items read and uploaded at once
CREATE_TRIES = 3


@dataclass(slots=True)
class Allowance:
    """What this run may still commit: worst cases reserved at submission are settled only
    when their batch is collected, perhaps by a later run."""

    run_usd: float | None
    total_usd: float | None
    committed_before: float  # recorded spend plus the open batches' reservations
    reserved: float = 0.0

    def take(self, amount: float) -> bool:
        if not fits(self.run_usd, 0.0, self.reserved, amount):
            return False
        if not fits(self.total_usd, self.committed_before, self.reserved, amount):
            return False
        self.reserved += amount
        return True


@dataclass(frozen=True, slots=True)
class Line:
    item: Item
    entry: dict  # {item, key, custom_id, worst_usd, inputs}: as batch_submitted records it
    endpoint: str
    data: bytes
    worst_usd: float


async def settled(calls: list[Awaitable[Any]]) -> list[Any]:
    """Every call's result, in order, once all of them have ended; then the first error, if
    any, is raised. Unlike a plain gather, no upload is left running unrecorded when another
    one fails: each one that succeeded has its `file_uploaded` line by then."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


class Submitter:
    def __init__(
        self,
        ctx: BatchContext,
        state: BatchState,
        allowance: Allowance,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        self.ctx = ctx
        self.state = state
        self.allowance = allowance
        self.preparer = Preparer(ctx.plan, ctx.batch_prices, ctx.fetcher)
        cache = AnswerCache(ctx.plan.cache) if ctx.plan.cache else None
        self.finisher = Finisher(cache, ctx.warn)  # answers paid by earlier runs or jobs
        self.uploads = ImageUploads(ctx, state)
        self._sleep = sleep
        self.budget_stopped = 0
        self.interrupted = False
        self.stopping: Callable[[], bool] = lambda: False  # a signal asked the run to stop

    async def submit(self, items: list[Item]) -> int:
        """Submit `items`; the number submitted. Items past the budget stay pending
        (`budget_stopped` counts them)."""
        lines: list[Line] = []
        for start in range(0, len(items), PREPARE_AT_ONCE):
            if self.stopping():  # what is read and uploaded so far still goes in a batch
                self.interrupted = True
                break
            chunk = items[start : start + PREPARE_AT_ONCE]
            prepared = await settled([self._prepare(item) for item in chunk])
            accepted = []
            for item, ready in zip(chunk, prepared, strict=True):
                if ready is None or await self._from_cache(ready):
                    continue
                if not self.allowance.take(ready.worst_usd):
                    self.budget_stopped = len(items) - items.index(item)
                    break
                accepted.append(ready)
            lines += await settled([self._line(p) for p in accepted])
            if self.budget_stopped:
                break
        submitted = 0
        for endpoint in ("edits", "generations"):
            group = [line for line in lines if line.endpoint == endpoint]
            for number, part in enumerate(parts.split([len(x.data) for x in group]), start=1):
                submitted += await self._batch([group[i] for i in part], endpoint, number)
        return submitted

    async def _from_cache(self, prepared: Prepared) -> bool:
        """Whether the item was done from the answer cache (nothing sent, nothing paid)."""
        hit = await self.finisher.from_cache(prepared)
        if hit is None:
            return False
        _response, finished = hit
        plan, item = self.ctx.plan, prepared.item
        fields: dict[str, Any] = {
            "item": item.id,
            "key": prepared.key,
            "attempt": 0,
            "endpoint": item.endpoint,
            "provider": plan.endpoint.provider,
            "model": item.model,
            "params": dict(item.params),
            "latency_s": 0.0,
            "request_id": None,
            "usage": None,
            "cost_usd": 0.0,
            "outputs": await write_outputs(plan, item, finished.images, store=self.ctx.store),
            "inputs": prepared.inputs,
            "cached": True,
        }
        if finished.drift is not None:
            fields["drift"] = finished.drift
        if finished.answers is not None:
            fields["answers"] = await write_outputs(
                plan, item, finished.answers, ANSWERS, store=self.ctx.store
            )
        await self.ctx.writer.awrite("succeeded", **fields)
        self.ctx.stats.succeeded += 1
        self.ctx.stats.pending -= 1
        self.ctx.changed()
        return True

    async def _prepare(self, item: Item) -> Prepared | None:
        try:
            return await self.preparer.prepare(item)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            await self.ctx.writer.awrite(
                "failed",
                item=item.id,
                key=None,
                attempts=0,
                error={
                    "class": "permanent",
                    "http_status": None,
                    "type": None,
                    "code": None,
                    "message": f"cannot read the item's input: {reason}",
                },
            )
            self.ctx.stats.failed += 1
            self.ctx.stats.pending -= 1
            return None

    async def _line(self, prepared: Prepared) -> Line:
        request = prepared.request
        image_ids = [
            await self.uploads.file_id(data, filename, content_type)
            for filename, data, content_type in request.images
        ]
        mask_id = None
        if request.mask is not None:
            mask_id = await self.uploads.file_id(request.mask[1], request.mask[0], "image/png")
        item = prepared.item
        endpoint = "edits" if image_ids else "generations"
        cid = batchlines.custom_id(item.id, prepared.key)
        body = batchlines.request_body(request.params, request.prompt, image_ids, mask_id)
        entry = {
            "item": item.id,
            "key": prepared.key,
            "custom_id": cid,
            "worst_usd": round(prepared.worst_usd, 8),
            "cache_key": prepared.cache_key,
            "inputs": prepared.inputs,
        }
        return Line(
            item=item,
            entry=entry,
            endpoint=endpoint,
            data=batchlines.request_line(cid, endpoint, body),
            worst_usd=prepared.worst_usd,
        )

    async def _batch(self, lines: list[Line], endpoint: str, number: int) -> int:
        ctx = self.ctx
        data = b"".join(line.data for line in lines)
        sha = hashlib.sha256(data).hexdigest()
        entries = [line.entry for line in lines]
        worst = round(sum(line.worst_usd for line in lines), 8)
        file_id = next((f for f, r in self.state.inputs.items() if r.get("sha256") == sha), None)
        if file_id is None:
            name = f"{ctx.job}-{ctx.run_id}-{endpoint}-{number}.jsonl"
            uploaded = await ctx.api.upload(data, name, "batch", "application/jsonl")
            file_id = str(uploaded["id"])
            # Recorded, with its items, before the batch exists: a kill after the create is
            # then found by the next run (reconcile.py) instead of submitted again.
            await ctx.writer.awrite(
                "file_uploaded",
                sha256=sha,
                file_id=file_id,
                bytes=len(data),
                purpose="batch",
                filename=name,
                endpoint=endpoint,
                worst_usd=worst,
                items=entries,
            )
        del data
        batch = await self._create(file_id, endpoint, number)
        await ctx.writer.awrite(
            "batch_submitted",
            batch=batch["id"],
            input_file=file_id,
            endpoint=endpoint,
            status=batch.get("status"),
            requests=len(lines),
            worst_usd=worst,
            items=entries,
        )
        self.state.inputs.pop(file_id, None)
        ctx.stats.pending -= len(lines)
        ctx.stats.in_batch += len(lines)
        ctx.changed()
        return len(lines)

    async def _create(self, file_id: str, endpoint: str, number: int) -> dict:
        ctx = self.ctx
        url = batchlines.URLS[endpoint]
        window = ctx.plan.batch.completion_window
        for attempt in range(1, CREATE_TRIES + 1):
            try:
                return await ctx.api.create_batch(file_id, url, window, ctx.metadata(number))
            except RetryableError:
                # The create may have reached the provider with only its answer lost: look
                # before creating again, or the items would run (and be paid for) twice.
                found = await find_batches(ctx.api, ctx.job, {file_id}, since=time.time())
                if file_id in found:
                    return found[file_id]
                if attempt == CREATE_TRIES:
                    raise
                await self._sleep(2.0**attempt)
        raise AssertionError("unreachable")
