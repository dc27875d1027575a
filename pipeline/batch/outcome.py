"""What a batch-mode run says about itself: its counts from a classification of the job, the
options its `run_started` line records, its summary and exit code; and the interruptible wait
between two polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pipeline.core.plan import Plan
from pipeline.engine.settings import RunSettings
from pipeline.engine.summary import RunStats, RunSummary, verdict
from pipeline.ledger.resume import Classified


def count(s: RunStats, classified: Classified) -> None:
    """The run's counts as the ledger now says them (done_before/failed_before kept)."""
    s.total = len(classified.done) + len(classified.failed)
    s.total += len(classified.pending) + len(classified.in_batch)
    s.succeeded = len(classified.done) - s.done_before
    s.failed = len(classified.failed) - s.failed_before
    before = set(s.failed_before_ids)
    s.failed_ids = [item.id for item in classified.failed if item.id not in before]
    s.pending = len(classified.pending)
    s.in_batch = len(classified.in_batch)


async def pause(
    control: Any,  # engine.runner.RunControl
    sleep: Callable[[float], Awaitable[Any]],
    seconds: float,
) -> bool:
    """Wait for the next poll; True when a signal asked the run to stop meanwhile."""
    stop = asyncio.ensure_future(control.stop_requested.wait())
    nap = asyncio.ensure_future(sleep(seconds))
    try:
        await asyncio.wait({stop, nap}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stop, nap):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return control.stop_requested.is_set()


def options_record(plan: Plan, settings: RunSettings, options: Any, base_url: str) -> dict:
    """The `options` of the run's `run_started` line."""
    return {
        "mode": "batch",
        "wait": bool(options.wait),
        "run_usd": settings.run_usd,
        "total_usd": settings.total_usd,
        "max_attempts": plan.limits.max_attempts,
        "completion_window": plan.batch.completion_window,
        "poll_s": plan.batch.poll_s,
        "retry_failed": options.retry_failed,
        "only": list(options.only),
        "base_url": base_url,
    }


def summarize(
    plan: Plan,
    s: RunStats,
    *,
    run_id: str,
    reasons: list[str],
    signal_name: str | None,
    messages: list[str],
    duration_s: float,
    ledger: Path,
    spent_total_usd: float,
    simulated: bool,
) -> RunSummary:
    """The run's summary; its exit code by `verdict` (5 while batches are in flight)."""
    reason, code = verdict(reasons, s, signal_name)
    notes = list(messages)
    if code == 5:
        notes.append(f"{s.in_batch} item(s) in batches at the provider; run again later to collect")
    return RunSummary(
        run_id=run_id,
        manifest=plan.name,
        reason=reason,
        exit_code=code,
        stats=s,
        duration_s=duration_s,
        ledger=ledger,
        output_dir=plan.output.dir,
        budget_left_usd=s.budget_left_usd,
        spent_total_usd=spent_total_usd,
        messages=notes,
        simulated=simulated,
    )
