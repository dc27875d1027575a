"""The run: one library call, `await run(plan, options)`, that turns a plan into outputs and
ledger lines and returns a summary. It orchestrates; everything it calls is below it.

Flow: lock the ledger -> read (and repair) it -> classify items done/failed/pending -> a pool
of `concurrency` workers, each taking the next pending item: prepare it (read, hash, convert
the mask, in a thread) -> for each attempt: wait for the rate gate, reserve the worst-case cost,
send -> write outputs atomically -> one `succeeded` or `failed` ledger line. Stops (budget,
fatal error, signal) end dispatch; requests in flight finish (signals: within a grace period).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.core.errors import (
    ManifestError,
    UsageError,
)
from pipeline.core.fingerprint import DigestCache
from pipeline.core.plan import Item, Plan
from pipeline.cost.pricing import Price, price_table
from pipeline.engine.budget import BudgetGuard
from pipeline.engine.pool import Pool
from pipeline.engine.summary import Observer, RunStats, RunSummary
from pipeline.ledger.resume import classify
from pipeline.ledger.shards import Shard, select_shard
from pipeline.ledger.status import read_job_state
from pipeline.ledger.writer import LedgerWriter
from pipeline.manifest.validate import check_files
from pipeline.outputs.files import remove_stale_temps

SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What `editbatch run` options override; None keeps the manifest's value."""

    concurrency: int | None = None
    rpm: float | None = None
    max_usd: float | None = None
    base_url: str | None = None
    only: tuple[str, ...] = ()
    retry_failed: bool = False
    simulate: bool = False
    sim_config: Any = None  # pipeline.simulator.SimConfig for --simulate; None = the default
    grace_s: float = 30.0  # how long requests in flight may finish after SIGINT/SIGTERM
    shard: Shard | None = None
    api_key: str | None = None  # else read from the variable named by endpoint.api_key_env
    observer: Observer | None = None
    control: RunControl | None = None
    seed: int | None = None  # backoff jitter; None = random
    backoff_base_s: float = 1.0  # first retry waits up to this (full jitter), doubling after


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
    if options.simulate:
        from pipeline.simulator import SimConfig, running

        config = options.sim_config or SimConfig(latency_s=0.4, jitter_s=0.2, seed=0)
        async with running(config) as base_url:
            return await _Run(plan, options, base_url, "sk-simulated", simulated=True).execute()
    base_url = options.base_url or plan.endpoint.base_url
    api_key = options.api_key or os.environ.get(plan.endpoint.api_key_env)
    if not api_key:
        raise UsageError(
            f"{plan.endpoint.api_key_env} is not set: export the API key in that variable "
            "(endpoint.api_key_env names it), or try the job offline with --simulate"
        )
    return await _Run(plan, options, base_url, api_key, simulated=False).execute()


class _Run:
    def __init__(
        self, plan: Plan, options: RunOptions, base_url: str, api_key: str, *, simulated: bool
    ):
        self.plan = plan
        self.options = options
        self.base_url = base_url
        self.api_key = api_key
        self.simulated = simulated
        self.control = options.control or RunControl()
        self.observer = options.observer
        self.shard = options.shard
        limits = plan.limits
        self.concurrency = options.concurrency or limits.concurrency
        rpm = limits.requests_per_minute if options.rpm is None else options.rpm
        self.budget_run = plan.budget.run_usd if options.max_usd is None else options.max_usd
        self.budget_total = plan.budget.total_usd
        if self.shard is not None:
            rpm, self.budget_run, self.budget_total = self.shard.share(
                rpm,
                self.budget_run,
                self.budget_total,
                explicit_rpm=options.rpm is not None,
                explicit_run_usd=options.max_usd is not None,
            )
        self.rpm = rpm
        self.prices: dict[str, Price] = price_table(plan.pricing)
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
        self.stats = RunStats()
        self.messages: list[str] = []

    # -- setup ---------------------------------------------------------------------------

    def _select(self) -> list[Item]:
        return select_items(self.plan, self.options.only, self.shard)

    def _check_prices(self, items: list[Item]) -> None:
        unpriced = sorted({item.model for item in items if item.model not in self.prices})
        if not unpriced:
            return
        if self.budget_run is not None or self.budget_total is not None:
            raise UsageError(
                "a budget is set but these models have no known price: "
                + ", ".join(unpriced)
                + "; add them under `pricing:` in the manifest (USD per 1M tokens), "
                "or remove the budget"
            )
        self._warn(
            "no price known for "
            + ", ".join(unpriced)
            + ": their cost is recorded as null; add them under `pricing:` to track spend"
        )

    def _warn(self, text: str) -> None:
        self.messages.append(text)
        if self.observer is not None:
            self.observer.warning(text)

    # -- the run -------------------------------------------------------------------------

    async def execute(self) -> RunSummary:
        items = self._select()
        self._check_prices(items)
        ledger_path = self.plan.ledger
        extra: dict[str, Any] = {}
        if self.simulated:
            extra["simulated"] = True
        if self.shard is not None:
            extra["shard"] = str(self.shard)
            ledger_path = self.shard.ledger_path(self.plan.ledger)
        try:
            writer = await asyncio.to_thread(
                LedgerWriter.open, ledger_path, run_id=self.run_id, extra_fields=extra
            )
        except OSError as exc:
            raise UsageError(
                f"cannot open the ledger {ledger_path}: {exc.strerror or exc}; fix `ledger:` "
                "(or output.dir) in the manifest, or the path on disk"
            ) from None
        try:
            return await self._execute_locked(items, writer, ledger_path)
        finally:
            writer.close()

    async def _execute_locked(
        self, items: list[Item], writer: LedgerWriter, ledger_path: Path
    ) -> RunSummary:
        started = time.monotonic()
        state, warnings = await asyncio.to_thread(read_job_state, self.plan, writer.scan)
        for warning in warnings:
            self._warn(warning)
        out_dir = self.plan.output.dir
        await asyncio.to_thread(_prepare_out_dir, out_dir)
        cache = DigestCache(base=self.plan.manifest_path.parent)
        classified = await asyncio.to_thread(
            classify, items, state, cache, out_dir, retry_failed=self.options.retry_failed
        )
        if not self.plan.files_checked:
            problems = await asyncio.to_thread(
                check_files, classified.pending, self.plan.manifest_path.parent
            )
            if problems:
                raise ManifestError(problems)
        stats = self.stats
        stats.total = len(items)
        stats.done_before = len(classified.done)
        stats.failed_before = len(classified.failed)
        stats.pending = len(classified.pending)
        total_usd = self.budget_total
        if self.shard is not None:
            total_usd = self.shard.total_share(total_usd, state.spent_usd)
        self.budget = BudgetGuard(
            run_usd=self.budget_run, total_usd=total_usd, spent_before=state.spent_usd
        )
        stats.budget_left_usd = self.budget.left_usd()
        await writer.awrite(
            "run_started",
            manifest=self.plan.name,
            editbatch=__version__,
            pid=os.getpid(),
            host=socket.gethostname(),
            options=self._options_record(),
        )
        self.dispatcher = Pool(
            plan=self.plan,
            base_url=self.base_url,
            api_key=self.api_key,
            concurrency=self.concurrency,
            rpm=self.rpm,
            prices=self.prices,
            budget=self.budget,
            writer=writer,
            stats=stats,
            control=self.control,
            grace_s=self.options.grace_s,
            backoff_base_s=self.options.backoff_base_s,
            seed=self.options.seed,
            warn=self._warn,
            changed=self._changed,
        )
        if self.observer is not None:
            self.observer.started(stats)
        await self.dispatcher.run(classified.pending)
        summary = self._summary(time.monotonic() - started, ledger_path)
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
        if self.observer is not None:
            self.observer.finished(summary)
        return summary

    def _options_record(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "requests_per_minute": self.rpm,
            "run_usd": self.budget_run,
            "total_usd": self.budget_total,
            "max_attempts": self.plan.limits.max_attempts,
            "timeout_s": self.plan.limits.timeout_s,
            "retry_failed": self.options.retry_failed,
            "only": list(self.options.only),
            "base_url": self.base_url,
        }

    def _changed(self) -> None:
        if self.observer is not None:
            self.observer.update(self.stats)

    def _summary(self, duration: float, ledger_path: Path) -> RunSummary:
        s = self.stats
        reasons = self.dispatcher.stop_reasons
        self.messages.extend(self.dispatcher.messages)
        if "fatal" in reasons:
            reason, code = "fatal", 4
        elif "interrupted" in reasons:
            reason, code = "interrupted", SIGNAL_EXIT.get(self.control.signal_name or "", 130)
        elif "budget" in reasons and s.pending > 0:
            reason, code = "budget", 3
            self.messages.append(
                f"budget reached: spent ${s.cost_usd:.4f} this run, "
                f"${(self.budget.left_usd() or 0):.4f} left; {s.pending} item(s) pending — "
                "raise budget.run_usd / --max-usd (or budget.total_usd) and run again to resume"
            )
        elif s.failed + s.failed_before > 0 or s.pending > 0:
            reason, code = "completed", 1
        else:
            reason, code = "completed", 0
        return RunSummary(
            run_id=self.run_id,
            manifest=self.plan.name,
            reason=reason,
            exit_code=code,
            stats=s,
            duration_s=duration,
            ledger=ledger_path,
            output_dir=self.plan.output.dir,
            budget_left_usd=self.budget.left_usd(),
            spent_total_usd=self.budget.spent_before + self.budget.spent,
            messages=list(self.messages),
            simulated=self.simulated,
        )


def _prepare_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create the output folder {out_dir}: {exc.strerror or exc}; "
            "fix output.dir in the manifest or the path on disk"
        ) from None
    remove_stale_temps(out_dir)
