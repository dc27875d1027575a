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
import contextlib
import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from pipeline import __version__
from pipeline.budget import BudgetGuard
from pipeline.client import EditResponse, EditsClient
from pipeline.cost import Price, TokenCounts, cost_of_usage, counts_from_usage, price_table
from pipeline.errors import (
    AttemptError,
    FatalError,
    PermanentError,
    RateLimited,
    RetryableError,
    UsageError,
)
from pipeline.fingerprint import DigestCache
from pipeline.ledger import LedgerWriter
from pipeline.limits import RETRY_BUDGET_MESSAGE, RateGate, RetryBudget, littles_law_warning
from pipeline.outputs import remove_stale_temps
from pipeline.plan import Item, Plan
from pipeline.prepare import Prepared, Preparer, write_outputs
from pipeline.resume import classify
from pipeline.retry import cause_of, retrying
from pipeline.shards import Shard, select_shard
from pipeline.status import read_job_state
from pipeline.summary import Observer, RunStats, RunSummary

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


class _Stop(Exception):
    """Internal: the run stopped dispatching; the item stays pending."""


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
        self.rng = random.Random(options.seed)
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
        self.stats = RunStats()
        self.stop_reasons: list[str] = []
        self.messages: list[str] = []
        self._stopping = asyncio.Event()
        self._finalizers: set[asyncio.Task] = set()
        self._latencies: list[float] = []
        self._littles_checked = False

    # -- setup ---------------------------------------------------------------------------

    def _select(self) -> list[Item]:
        items = list(self.plan.items)
        if self.options.only:
            known = {item.id for item in items}
            unknown = [i for i in self.options.only if i not in known]
            if unknown:
                raise UsageError(
                    "--only names items the manifest does not have: "
                    + ", ".join(unknown)
                    + "; use the ids that `editbatch validate --json` lists"
                )
            wanted = set(self.options.only)
            items = [item for item in items if item.id in wanted]
        if self.shard is not None:
            items = select_shard(items, self.shard)
        return items

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
        writer = await asyncio.to_thread(
            LedgerWriter.open, ledger_path, run_id=self.run_id, extra_fields=extra
        )
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
        cache = DigestCache(state.recorded_inputs(self.plan.manifest_path.parent))
        classified = await asyncio.to_thread(
            classify, items, state, cache, out_dir, retry_failed=self.options.retry_failed
        )
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
        self.writer = writer
        self.gate = RateGate(rpm=self.rpm)
        self.retry_budget = RetryBudget()
        self.preparer = Preparer(self.plan, self.prices)
        if self.observer is not None:
            self.observer.started(stats)
        if classified.pending:
            await self._pool(classified.pending)
        await self._drain_finalizers()
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

    async def _pool(self, pending: list[Item]) -> None:
        queue = iter(pending)
        workers = min(self.concurrency, len(pending))
        connector = aiohttp.TCPConnector(limit=workers, limit_per_host=workers)
        timeout = self.plan.limits.timeout_s
        async with aiohttp.ClientSession(connector=connector) as session:
            self.client = EditsClient(
                session,
                self.base_url,
                self.api_key,
                timeout_s=timeout,
                api_key_env=self.plan.endpoint.api_key_env,
            )
            tasks = [asyncio.create_task(self._worker(queue)) for _ in range(workers)]
            watcher = asyncio.create_task(self._watch_signals(tasks))
            try:
                await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # a bug, not an API outcome: let it surface

    async def _watch_signals(self, tasks: list[asyncio.Task]) -> None:
        await self.control.stop_requested.wait()
        self._stop("interrupted")
        cancel = asyncio.create_task(self.control.cancel_requested.wait())
        try:
            await asyncio.wait_for(asyncio.shield(cancel), timeout=self.options.grace_s)
        except TimeoutError:
            self._warn(
                f"requests in flight did not finish within {self.options.grace_s:g} s; cancelled"
            )
        finally:
            cancel.cancel()
        for task in tasks:
            task.cancel()

    def _stop(self, reason: str) -> None:
        if reason not in self.stop_reasons:
            self.stop_reasons.append(reason)
        self._stopping.set()

    async def _worker(self, queue) -> None:
        while not self._stopping.is_set():
            item = next(queue, None)
            if item is None:
                return
            await self._process(item)

    # -- one item ------------------------------------------------------------------------

    async def _process(self, item: Item) -> None:
        try:
            prepared = await self.preparer.prepare(item)
        except (OSError, ValueError) as exc:
            await self._record_failed(
                item, None, "permanent", None, f"cannot read the input: {exc}", 0
            )
            return
        attempts = retrying(
            max_attempts=self.plan.limits.max_attempts,
            sleep=self._sleep,
            rng=self.rng,
            base=self.options.backoff_base_s,
            before_sleep=lambda state: self._attempt_failed(item, prepared, state),
            should_retry=self.retry_budget.allow_retry,
        )
        try:
            async for attempt in attempts:
                with attempt:
                    response, latency = await self._attempt(
                        prepared, attempt.retry_state.attempt_number
                    )
        except _Stop:
            return
        except FatalError as exc:
            self._stop("fatal")
            self.messages.append(f"aborted: {exc}")
            await self._record_failed(
                item, prepared.key, "fatal", exc, str(exc), attempt.retry_state.attempt_number
            )
            return
        except PermanentError as exc:
            await self._record_failed(
                item, prepared.key, "permanent", exc, str(exc), attempt.retry_state.attempt_number
            )
            return
        except RetryableError as exc:
            n = attempt.retry_state.attempt_number
            why = str(exc)
            if n < self.plan.limits.max_attempts:
                why += f" ({RETRY_BUDGET_MESSAGE})"
            await self._record_failed(item, prepared.key, "exhausted", exc, why, n)
            return
        task = asyncio.create_task(
            self._succeeded(prepared, response, latency, attempt.retry_state.attempt_number)
        )
        self._finalizers.add(task)
        task.add_done_callback(self._finalizers.discard)
        await asyncio.shield(task)

    async def _attempt(self, prepared: Prepared, number: int) -> tuple[EditResponse, float]:
        await self._wait_turn()
        reservation = await self.budget.reserve(prepared.worst_usd)
        if reservation is None:
            self._stop("budget")
            raise _Stop
        if self._stopping.is_set():  # another worker stopped the run while this one waited
            self.budget.settle(reservation, None)
            raise _Stop
        stats = self.stats
        stats.in_flight += 1
        stats.requests += 1
        self._changed()
        began = time.monotonic()
        actual: float | None = None
        try:
            response = await self.client.edit(prepared.request)
        except AttemptError as exc:
            status = str(exc.http_status) if exc.http_status is not None else exc.transport
            stats.by_status[status or "error"] = stats.by_status.get(status or "error", 0) + 1
            self._react(exc)
            raise
        else:
            stats.by_status["200"] = stats.by_status.get("200", 0) + 1
            actual = self._cost(prepared, response)[0]
            self.gate.on_success(response.headers)
            self.retry_budget.on_success()
            return response, time.monotonic() - began
        finally:
            stats.in_flight -= 1
            self.budget.settle(reservation, actual)
            stats.budget_left_usd = self.budget.left_usd()
            self._changed()

    def _react(self, exc: AttemptError) -> None:
        """Feed a failed attempt to the rate controller and the retry budget."""
        headers = exc.headers
        if isinstance(exc, RateLimited):
            # the gate slows down for these; the retry budget is for failures, not pacing
            self.gate.on_rate_limited(exc.retry_after_s, headers)
        elif isinstance(exc, RetryableError):
            self.gate.on_error(headers)
            self.retry_budget.on_failure()

    async def _wait_turn(self) -> None:
        if self._stopping.is_set():
            raise _Stop
        turn = asyncio.ensure_future(self.gate.wait_turn())
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({turn, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not turn.done():
                turn.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await turn
        if self._stopping.is_set():
            raise _Stop

    async def _sleep(self, seconds: float) -> None:
        """Backoff sleep that a stop interrupts (the item then stays pending)."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise _Stop

    def _cost(self, prepared: Prepared, response: EditResponse) -> tuple[float | None, bool]:
        price = self.prices.get(prepared.item.model)
        if response.usage is None:
            return prepared.expected_usd, True
        if price is None:
            return None, False
        return cost_of_usage(response.usage, price), False

    def _attempt_failed(self, item: Item, prepared: Prepared, retry_state) -> None:
        exc = retry_state.outcome.exception()
        wait = retry_state.upcoming_sleep
        cause = cause_of(exc)
        self.stats.retries[cause] = self.stats.retries.get(cause, 0) + 1
        self.writer.write(
            "attempt_failed",
            item=item.id,
            key=prepared.key,
            attempt=retry_state.attempt_number,
            http_status=exc.http_status,
            transport=exc.transport,
            cause=cause,
            type=exc.type,
            code=exc.code,
            message=exc.message,
            request_id=exc.request_id,
            retry_in_s=round(wait, 3),
        )
        self._changed()

    async def _succeeded(
        self, prepared: Prepared, response: EditResponse, latency: float, attempt: int
    ) -> None:
        item = prepared.item
        try:
            outputs = await write_outputs(self.plan, item, response.images)
        except (OSError, ValueError) as exc:
            await self._record_failed(
                item, prepared.key, "permanent", None, f"cannot write the output: {exc}", attempt
            )
            return
        cost, estimated = self._cost(prepared, response)
        fields: dict[str, Any] = {
            "item": item.id,
            "key": prepared.key,
            "attempt": attempt,
            "model": item.model,
            "params": dict(item.params),
            "latency_s": round(latency, 3),
            "request_id": response.request_id,
            "usage": response.usage,
            "cost_usd": None if cost is None else round(cost, 8),
            "outputs": outputs,
            "inputs": prepared.inputs,
        }
        if estimated:
            fields["cost_estimated"] = True
        await self.writer.awrite("succeeded", **fields)
        stats = self.stats
        stats.succeeded += 1
        stats.pending -= 1
        stats.cost_usd += cost or 0.0
        counts = (
            counts_from_usage(response.usage) if response.usage else _estimated_counts(prepared)
        )
        stats.add_tokens(counts)
        self._latencies.append(latency)
        self._check_littles_law()
        self._changed()

    def _check_littles_law(self) -> None:
        if self._littles_checked or self.rpm <= 0 or len(self._latencies) < 5:
            return
        self._littles_checked = True
        latency = sorted(self._latencies)[len(self._latencies) // 2]
        warning = littles_law_warning(self.concurrency, self.rpm / 60.0, latency)
        if warning:
            self._warn(warning)

    async def _record_failed(
        self,
        item: Item,
        key: str | None,
        cls: str,
        exc: AttemptError | None,
        message: str,
        attempts: int,
    ) -> None:
        error = {"class": cls, "http_status": None, "type": None, "code": None, "message": message}
        if exc is not None:
            error.update(exc.describe())
            error["message"] = message
        await self.writer.awrite("failed", item=item.id, key=key, attempts=attempts, error=error)
        if cls != "fatal":
            self.stats.failed += 1
            self.stats.pending -= 1
            self.stats.errors[message] = self.stats.errors.get(message, 0) + 1
        self._changed()

    async def _drain_finalizers(self) -> None:
        while self._finalizers:
            await asyncio.gather(*list(self._finalizers), return_exceptions=True)

    def _changed(self) -> None:
        if self.observer is not None:
            self.observer.update(self.stats)

    def _summary(self, duration: float, ledger_path: Path) -> RunSummary:
        s = self.stats
        reasons = self.stop_reasons
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


def _estimated_counts(prepared: Prepared) -> TokenCounts:
    return prepared.expected_counts


def _prepare_out_dir(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
