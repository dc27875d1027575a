"""Batch mode's entry: `pipeline.run` comes here for `mode: batch` or `RunOptions(batch=True)`.
The same selection, settings and key as an interactive run; a BatchSession does the rest."""

from __future__ import annotations

import os
from dataclasses import replace

from pipeline.api.providers import Route
from pipeline.batch.session import BatchSession
from pipeline.core.errors import UsageError
from pipeline.core.plan import Plan
from pipeline.engine.runner import (
    SIMULATED_KEY,
    RunControl,
    RunOptions,
    live_route,
    select_items,
)
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
    control = options.control or RunControl()
    if options.simulate:
        from pipeline.simulator import SimConfig, running

        config = options.sim_config or SimConfig(seed=0, batch_seconds=SIM_BATCH_SECONDS)
        if options.poll_s is None:
            options = replace(options, poll_s=SIM_POLL_S)
        async with running(config) as base_url:
            session = BatchSession(
                plan,
                options,
                settings,
                route=Route.for_run(plan.endpoint, os.environ, simulated_base=base_url),
                api_key=SIMULATED_KEY,
                control=control,
                simulated=True,
            )
            return await session.execute(items)
    route, api_key = live_route(plan, options)
    session = BatchSession(
        plan,
        options,
        settings,
        route=route,
        api_key=api_key,
        control=control,
        simulated=False,
    )
    return await session.execute(items)
