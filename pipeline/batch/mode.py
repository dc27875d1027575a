"""Batch mode's entry: `pipeline.run` comes here for `mode: batch` or `RunOptions(batch=True)`.
The same selection, settings and key as an interactive run; a BatchSession does the rest."""

from __future__ import annotations

from dataclasses import replace

from pipeline.batch.session import BatchSession
from pipeline.core.errors import UsageError
from pipeline.core.plan import Plan
from pipeline.engine.runner import RunOptions, select_items, start
from pipeline.engine.settings import RunSettings
from pipeline.engine.summary import RunSummary

# The in-process simulator's batch life for `run --simulate --batch`: seconds, not hours,
# polled at a pace to match (unless the caller set one).
SIM_BATCH_SECONDS = 2.0
SIM_POLL_S = 0.5


async def run_batch(plan: Plan, options: RunOptions) -> RunSummary:
    if options.shard is not None:
        raise UsageError(
            "--shard is for interactive runs: a batch job is submitted whole (the provider "
            "runs it in parallel); drop --shard, or run without --batch / mode: batch"
        )
    if plan.endpoint.provider != "openai":
        raise UsageError(
            f"batch mode speaks the OpenAI Batch API; endpoint.provider is "
            f"{plan.endpoint.provider!r}, whose batches need deployments of their own: run "
            "this job without --batch / mode: batch"
        )
    items = select_items(plan, options.only)
    settings = RunSettings.resolve(plan, max_usd=options.max_usd)
    if options.simulate and options.poll_s is None:
        options = replace(options, poll_s=SIM_POLL_S)
    return await start(
        BatchSession, plan, options, settings, items, batch_seconds=SIM_BATCH_SECONDS
    )
