"""The run: one library call, `await run(plan, options)`, that turns a plan into outputs and
ledger lines and returns a summary. It never prints or exits; the CLI wraps it.

Flow: select the items (`--only`, `--shard`) -> a dry run estimates the pending ones and stops
there; a real run locks the ledger, classifies items done/failed/pending and hands the pending
ones to the pool (see session.py), whose workers prepare, pace, reserve, send, write outputs
atomically and record one verdict per item.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.api.providers import Route
from pipeline.core.errors import ManifestError, UsageError
from pipeline.core.plan import Item, Plan
from pipeline.core.secrets import has_userinfo, scrub_url
from pipeline.engine.session import RunSession
from pipeline.engine.settings import RunSettings
from pipeline.engine.summary import Observer, RunStats, RunSummary
from pipeline.ledger.shards import Shard, select_shard

SIMULATED_KEY = "sk-simulated"


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What `editbatch run` options override; None keeps the manifest's value."""

    concurrency: int | None = None
    rpm: float | None = None
    max_usd: float | None = None
    base_url: str | None = None
    only: tuple[str, ...] = ()
    retry_failed: bool = False
    dry_run: bool = False  # plan and estimate the pending items; send nothing, write nothing
    simulate: bool = False
    sim_config: Any = None  # pipeline.simulator.SimConfig for --simulate; None = the default
    grace_s: float = 30.0  # how long requests in flight may finish after SIGINT/SIGTERM
    shard: Shard | None = None
    api_key: str | None = None  # else read from the variable named by endpoint.api_key_env
    observer: Observer | None = None
    control: RunControl | None = None
    seed: int | None = None  # backoff jitter; None = random
    cache: Path | None = None  # the cross-run cache's folder over the manifest's `cache:`
    no_cache: bool = False  # neither read nor write the cache, whatever the manifest says
    backoff_base_s: float = 1.0  # first retry waits up to this (full jitter), doubling after
    probe_cap_s: float = 60.0  # while the provider fails, probes are at most this far apart
    batch: bool = False  # through the Batch API (as `mode: batch`); see pipeline.batch
    wait: bool = False  # batch mode: poll until every batch is collected
    poll_s: float | None = None  # batch mode: seconds between polls; None = batch.poll_s


class RunControl:
    """How a caller (the CLI's signal handlers) stops a run from outside."""

    def __init__(self) -> None:
        self.stop_requested = asyncio.Event()
        self.cancel_requested = asyncio.Event()
        self.signal_name: str | None = None

    def request_stop(self, signal_name: str) -> None:
        """Stop dispatching; requests in flight may finish within the grace period."""
        if self.signal_name is None:
            self.signal_name = signal_name
        self.stop_requested.set()

    def request_cancel(self) -> None:
        """Cancel requests in flight now (a second Ctrl-C)."""
        self.cancel_requested.set()
        self.stop_requested.set()


def select_items(plan: Plan, only: tuple[str, ...] = (), shard: Shard | None = None) -> list[Item]:
    """The items a run works on: `--only` ids (all known, or a UsageError), then the shard's."""
    items = list(plan.items)
    if only:
        known = {item.id for item in items}
        unknown = [i for i in only if i not in known]
        if unknown:
            raise UsageError(
                "--only names items the manifest does not have: "
                + ", ".join(unknown)
                + "; use the ids that `editbatch validate --json` lists"
            )
        wanted = set(only)
        items = [item for item in items if item.id in wanted]
    if shard is not None:
        items = select_shard(items, shard)
    return items


async def run(plan: Plan, options: RunOptions | None = None) -> RunSummary:
    """Run (or resume) the plan. Raises UsageError for what makes it impossible to start
    (exit 2); every other outcome is in the returned summary's `exit_code`."""
    options = options or RunOptions()
    if options.no_cache or options.cache is not None:
        plan = replace(plan, cache=None if options.no_cache else options.cache)
    items = select_items(plan, options.only, options.shard)
    settings = RunSettings.resolve(
        plan,
        concurrency=options.concurrency,
        rpm=options.rpm,
        max_usd=options.max_usd,
        shard=options.shard,
    )
    if options.dry_run:
        return await asyncio.to_thread(_dry_run, plan, options, settings, items)
    return await start(RunSession, plan, options, settings, items, latency_s=0.4, jitter_s=0.2)


async def start(
    session_class: Any,  # RunSession, or batch mode's BatchSession: same constructor
    plan: Plan,
    options: RunOptions,
    settings: RunSettings,
    items: list[Item],
    **sim_defaults: Any,
) -> RunSummary:
    """Run a session against the in-process simulator (`--simulate`: its config, else one
    made of `sim_defaults`) or against the endpoint's real route with the key."""
    control = options.control or RunControl()
    if options.simulate:
        from pipeline.simulator import SimConfig, running

        config = options.sim_config or SimConfig(seed=0, **sim_defaults)
        async with running(config) as base_url:
            route = Route.for_run(plan.endpoint, os.environ, simulated_base=base_url)
            session = session_class(
                plan,
                options,
                settings,
                route=route,
                api_key=SIMULATED_KEY,
                control=control,
                simulated=True,
            )
            return await session.execute(items)
    route, api_key = live_route(plan, options)
    session = session_class(
        plan, options, settings, route=route, api_key=api_key, control=control, simulated=False
    )
    return await session.execute(items)


def live_route(plan: Plan, options: RunOptions) -> tuple[Route, str | None]:
    """Where a real (not simulated) run sends its requests, and the key it sends (None when
    the endpoint's auth needs none). UsageError for what would fail every request."""
    route = Route.for_run(plan.endpoint, os.environ, base_url=options.base_url)
    if has_userinfo(route.base_url):  # aiohttp refuses it, and it would be a password on record
        raise UsageError(
            f"--base-url {scrub_url(route.base_url)}: a base URL may not hold a user name or "
            "password (user:pass@); put the key in the variable endpoint.api_key_env names"
        )
    if not route.needs_key:
        return route, None
    api_key = options.api_key or os.environ.get(plan.endpoint.api_key_env)
    if not api_key:
        raise UsageError(
            f"{plan.endpoint.api_key_env} is not set: export the API key in that variable "
            "(endpoint.api_key_env names it), or try the job offline with --simulate"
        )
    return route, api_key


def _dry_run(
    plan: Plan, options: RunOptions, settings: RunSettings, items: list[Item]
) -> RunSummary:
    """A run that sends nothing: what is done, failed and pending, what the pending items
    would cost, where the budget would stop them, and whether the run could start (the
    prices a budget needs, the key variable). Reads the job's ledgers without their lock."""
    from pipeline.core.fingerprint import DigestCache
    from pipeline.cost.estimate import estimate_plan
    from pipeline.cost.outlook import budget_outlook
    from pipeline.ledger.resume import classify
    from pipeline.ledger.status import read_job_state
    from pipeline.outputs.files import output_problems

    state, messages = read_job_state(plan)
    cache = DigestCache(base=plan.manifest_path.parent)
    classified = classify(items, state, cache, plan.output.dir, retry_failed=options.retry_failed)
    settings.check_prices(classified.pending, messages.append)  # as a run would, before sending
    problems = output_problems(classified.pending, plan.output.dir, plan.output.name)
    if problems:  # a run would refuse to start: say so now, as validate does
        raise ManifestError(problems)
    stats = RunStats(
        total=len(items),
        done_before=len(classified.done),
        failed_before=len(classified.failed),
        pending=len(classified.pending),
        failed_before_ids=[item.id for item in classified.failed],
    )
    estimate = estimate_plan(plan, classified.pending)
    priced, committed = estimate.items, state.spent_usd
    if options.batch or plan.mode == "batch":
        # Batch mode reserves at the batch price, and open batches hold their reservations.
        priced = [
            replace(e, expected_usd=e.batch_expected_usd, worst_usd=e.batch_worst_usd)
            for e in estimate.items
        ]
        committed += state.batches.reserved_usd()
        stats.in_batch = len(classified.in_batch)
    total_usd = settings.total_usd
    if settings.shard is not None:
        total_usd = settings.shard.total_share(total_usd, state.spent_usd)
    key_env = plan.endpoint.api_key_env
    ledger = plan.ledger if options.shard is None else options.shard.ledger_path(plan.ledger)
    return RunSummary(
        run_id="dry-run",
        manifest=plan.name,
        reason="dry_run",
        exit_code=0,
        stats=stats,
        duration_s=0.0,
        ledger=ledger,
        output_dir=plan.output.dir,
        budget_left_usd=None,
        spent_total_usd=state.spent_usd,
        messages=messages,
        simulated=options.simulate,
        estimate=estimate,
        manifest_path=plan.manifest_path,
        outlook=budget_outlook(
            priced,
            run_usd=settings.run_usd,
            total_usd=total_usd,
            spent_before_usd=committed,
        ),
        key_env=key_env,
        key_set=None
        if options.simulate or plan.endpoint.auth == "none"
        else bool(options.api_key or os.environ.get(key_env)),
    )
