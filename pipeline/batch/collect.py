"""Collecting a batch that has ended: download its output and error files beside the ledger,
read them one line at a time, hand each result to results.py (outputs and one ledger line per
item), note the items it never ran (expired, cancelled), and close it with `batch_collected`.
A result already recorded (a run killed mid-collection) is skipped, so nothing is written or
counted twice.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pipeline.api.answers import one_line
from pipeline.api.batches import ENDED
from pipeline.api.batchlines import parse_line, read_result
from pipeline.batch.context import BatchContext
from pipeline.batch.results import ResultRecorder
from pipeline.core.plan import Item
from pipeline.ledger.batches import BatchState, OpenBatch

READING_AT_ONCE = 4  # result lines decoded and written at once


class Collector:
    def __init__(self, ctx: BatchContext, state: BatchState, items: dict[str, Item]):
        self.ctx = ctx
        self.state = state
        self.items = items
        self.turnaround_s: float | None = None
        self.record = ResultRecorder(ctx, state)

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
                await self.record.not_run(batch, item_id, status, why)
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
            await self.record.succeeded(batch, item, key, attempt, result, self.turnaround_s)
        elif result.unanswered:
            code = result.error.code if result.error is not None else None
            status = "expired" if code == "batch_expired" else "cancelled"
            await self.record.not_run(batch, item_id, status)
        else:
            await self.record.failed(batch, item, key, attempt, result)


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


async def poll_and_collect(ctx: BatchContext, batches: BatchState, by_id: dict) -> int:
    """Poll every open batch and collect those that ended; the number collected. The open
    ones' request counts go to the live stats for the progress display."""
    collector = Collector(ctx, batches, by_id)
    collected = 0
    counts = dict.fromkeys(("total", "completed", "failed"), 0)
    for batch in list(batches.open.values()):
        info = await ctx.api.get_batch(batch.id)
        if info.get("status") in ENDED:
            await collector.collect(batch, info)
            collected += 1
        else:
            for name in counts:
                counts[name] += int((info.get("request_counts") or {}).get(name) or 0)
    ctx.stats.batches = counts
    return collected
