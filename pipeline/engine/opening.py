"""What every run of a job holds while it works, interactive or batch: the job's lock (no two
runs of one job pay for the same items), its own ledger open for appending, and, when any item
has a remote input, the fetcher with its content cache beside the ledger.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline import __version__
from pipeline.core.errors import UsageError
from pipeline.core.plan import Item, Plan, Remote
from pipeline.engine.summary import RunSummary
from pipeline.inputs.fetch import Fetcher
from pipeline.ledger.joblock import JobLock
from pipeline.ledger.shards import Shard
from pipeline.ledger.writer import LedgerWriter


@dataclass(frozen=True, slots=True)
class Opened:
    writer: LedgerWriter
    ledger: Path  # this run's ledger: the job's, or its shard's
    fetcher: Fetcher | None  # None when no item has a remote input


@asynccontextmanager
async def opened_run(
    plan: Plan, items: list[Item], *, run_id: str, shard: Shard | None, extra: dict
) -> AsyncIterator[Opened]:
    """Lock the job, open this run's ledger, start a fetcher if needed; release all on exit."""
    ledger = plan.ledger if shard is None else shard.ledger_path(plan.ledger)
    try:
        # The job's lock, not only this ledger's: a plain run and a shard run of one job
        # must never pay for the same items at once (see ledger/joblock.py for the rule).
        lock = await asyncio.to_thread(JobLock.acquire, plan.ledger, shard)
    except OSError as exc:
        raise UsageError(
            f"cannot lock the job beside its ledger {plan.ledger}: {exc.strerror or exc}; fix "
            "`ledger:` (or output.dir) in the manifest, or the path on disk"
        ) from None
    try:
        try:
            writer = await asyncio.to_thread(
                LedgerWriter.open, ledger, run_id=run_id, extra_fields=extra, locked=True
            )
        except OSError as exc:
            raise UsageError(
                f"cannot open the ledger {ledger}: {exc.strerror or exc}; fix `ledger:` "
                "(or output.dir) in the manifest, or the path on disk"
            ) from None
        try:
            if not any(remote_refs(item) for item in items):
                yield Opened(writer, ledger, None)
                return
            async with Fetcher(input_cache_dir(plan)) as fetcher:
                yield Opened(writer, ledger, fetcher)
        finally:
            await writer.idle()
            writer.close()
    finally:
        lock.release()


def remote_refs(item: Item) -> list[Remote]:
    return [ref for ref in (*item.images, item.mask) if isinstance(ref, Remote)]


def input_cache_dir(plan: Plan) -> Path:
    """The content cache of remote inputs: beside the ledger, shared by the job's shards."""
    return plan.ledger.parent / "input-cache"


async def record_start(writer: LedgerWriter, plan: Plan, options: dict) -> None:
    """The run's first line: who runs what, with which options (secrets never among them)."""
    await writer.awrite(
        "run_started",
        manifest=plan.name,
        editbatch=__version__,
        pid=os.getpid(),
        host=socket.gethostname(),
        options=options,
    )


async def record_finish(writer: LedgerWriter, summary: RunSummary) -> None:
    """The run's last line: its verdict, counts, tokens and what it spent."""
    await writer.awrite(
        "run_finished",
        reason=summary.reason,
        exit_code=summary.exit_code,
        counts=summary.counts(),
        tokens=summary.tokens,
        requests=summary.requests,
        cost_usd=round(summary.cost_usd, 6),
        duration_s=round(summary.duration_s, 3),
    )
