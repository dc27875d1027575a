"""Finding batches the ledger does not know of: a run killed between creating a batch and
recording it, or a create whose answer was lost, leaves a batch at the provider that only its
input file ties to the job. Every input file is recorded (`file_uploaded`, with its items)
before its batch is created, so an input file named by no `batch_submitted` line is the one
sign to look for: the provider's batches are listed, newest first, back to that upload, and
one made from it (its `metadata` naming this job) is recorded as submitted before anything is
sent again.
"""

from __future__ import annotations

import calendar
import time

from pipeline.api.batches import BatchAPI
from pipeline.batch.context import BatchContext
from pipeline.ledger.batches import BatchState

MARGIN_S = 3600  # clock skew between here and the provider that listing tolerates
MAX_PAGES = 50


def upload_time(ts: str) -> float:
    """Epoch seconds of a ledger timestamp (2026-11-26T13:40:00.123Z); 0 when unreadable."""
    try:
        return float(calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")))
    except (ValueError, TypeError):
        return 0.0


async def find_batches(
    api: BatchAPI, job: str, file_ids: set[str], since: float
) -> dict[str, dict]:
    """The provider's batches made from `file_ids` for this job, by input file id. Pages are
    read newest first until one reaches back past `since` (epoch seconds)."""
    found: dict[str, dict] = {}
    after = None
    for _ in range(MAX_PAGES):
        page = await api.list_batches(after=after)
        batches = [b for b in page.get("data") or () if isinstance(b, dict)]
        for batch in batches:
            metadata = batch.get("metadata") or {}
            file_id = batch.get("input_file_id")
            if file_id in file_ids and metadata.get("editbatch_job") == job:
                found.setdefault(str(file_id), batch)
        oldest = min((float(b.get("created_at") or 0) for b in batches), default=0.0)
        if not page.get("has_more") or not batches or oldest < since - MARGIN_S:
            break
        if found.keys() >= file_ids:
            break
        after = page.get("last_id") or batches[-1].get("id")
    return found


async def adopt_unrecorded(ctx: BatchContext, state: BatchState) -> int:
    """Record as submitted every batch created from an input file this job uploaded but never
    named in a `batch_submitted` line; the number adopted."""
    orphans = {fid: rec for fid, rec in state.inputs.items() if rec.get("items")}
    if not orphans:
        return 0
    since = min(upload_time(str(rec.get("ts") or "")) for rec in orphans.values())
    found = await find_batches(ctx.api, ctx.job, set(orphans), since)
    for file_id, batch in found.items():
        record = orphans[file_id]
        await ctx.writer.awrite(
            "batch_submitted",
            batch=batch["id"],
            input_file=file_id,
            endpoint=record.get("endpoint", "edits"),
            status=batch.get("status"),
            requests=len(record["items"]),
            worst_usd=record.get("worst_usd"),
            items=record["items"],
            adopted=True,
        )
        ctx.warn(
            f"batch {batch['id']} was created by a run that stopped before recording it; "
            "recorded it now, nothing is sent twice"
        )
    return len(found)
