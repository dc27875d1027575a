"""One batch-mode run: lock the ledger, then round after round adopt batches a killed run
created, collect the open batches that have ended, submit the pending items that are in no
open batch, and stop (exit 5 while batches are in flight) or, with `wait`, poll again after
`batch.poll_s`. The state is read from the ledger at each round: it is the only truth.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from pipeline.api.batches import BatchAPI
from pipeline.api.providers import Route
from pipeline.batch.collect import poll_and_collect, stale_downloads
from pipeline.batch.context import BatchContext
from pipeline.batch.outcome import count, options_record, pause, summarize
from pipeline.batch.reconcile import adopt_unrecorded
from pipeline.batch.submit import Allowance, Submitter
from pipeline.core.errors import AttemptError, FatalError, ManifestError
from pipeline.core.fingerprint import DigestCache
from pipeline.core.plan import Item, Plan
from pipeline.engine.opening import opened_run, record_finish, record_start
from pipeline.engine.session import SessionBase, prepare_out_dir, remote_digests
from pipeline.engine.settings import RunSettings
from pipeline.engine.summary import RunSummary
from pipeline.inputs.fetch import Fetcher
from pipeline.ledger.reader import read_ledger
from pipeline.ledger.resume import Classified, classify
from pipeline.ledger.scan import ResumeState
from pipeline.ledger.writer import LedgerWriter
from pipeline.manifest.validate import check_files
from pipeline.outputs.store import as_store


class BatchSession(SessionBase):
    def __init__(
        self,
        plan: Plan,
        options: Any,  # engine.runner.RunOptions
        settings: RunSettings,
        *,
        route: Route,
        api_key: str | None,
        control: Any,  # engine.runner.RunControl
        simulated: bool,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        super().__init__(
            plan,
            options,
            settings,
            route=route,
            api_key=api_key,
            control=control,
            simulated=simulated,
        )
        self.base_url = route.base_url
        self.reasons: list[str] = []
        self._sleep = sleep
        self._checked: set[str] = set()  # items whose input files were checked this run
        self._spent_total = 0.0  # the ledger's spend as last read
        self.poll_s = options.poll_s or plan.batch.poll_s

    async def execute(self, items: list[Item]) -> RunSummary:
        self.settings.check_prices(items, self.warn)
        extra = {"simulated": True} if self.simulated else {}
        # The job's lock, as an interactive run takes it: no shard run of this job may send
        # its items meanwhile.
        async with opened_run(
            self.plan, items, run_id=self.run_id, shard=None, extra=extra
        ) as opened:
            return await self._locked(items, opened.writer, opened.fetcher)

    async def _locked(
        self, items: list[Item], writer: LedgerWriter, fetcher: Fetcher | None
    ) -> RunSummary:
        started = time.monotonic()
        for warning in writer.scan.warnings:
            self.warn(warning)
        self.store = as_store(self.plan.output.dir)
        self.fetcher = fetcher
        await asyncio.to_thread(prepare_out_dir, self.plan.output.dir, self.store)
        for leftover in stale_downloads(writer.path):
            leftover.unlink(missing_ok=True)
        await record_start(
            writer, self.plan, options_record(self.plan, self.settings, self.options, self.base_url)
        )
        timeout = aiohttp.ClientTimeout(total=self.plan.limits.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            api = BatchAPI(
                http,
                self.base_url,
                self.api_key,
                timeout_s=self.plan.limits.timeout_s,
                api_key_env=self.plan.endpoint.api_key_env,
                sleep=self._sleep,
                headers=self.route.request_headers(self.api_key),
                secrets=self.route.secrets,
            )
            ctx = BatchContext(
                plan=self.plan,
                api=api,
                writer=writer,
                stats=self.stats,
                run_id=self.run_id,
                prices=self.settings.prices,
                batch_prices={m: p.at_batch() for m, p in self.settings.prices.items()},
                warn=self.warn,
                changed=self._changed,
                store=self.store,
                fetcher=fetcher,
            )
            try:
                await self._rounds(ctx, items, writer.scan.state, first=True)
            except FatalError as exc:
                self.reasons.append("fatal")
                self.warn(exc.message)
            except AttemptError as exc:  # the provider kept failing: everything is resumable
                self.reasons.append("outage")
                self.warn(f"the Batch API kept failing ({exc.message}); run again to resume")
        summary = self._summary(time.monotonic() - started, writer.path)
        await record_finish(writer, summary)
        if self.observer is not None:
            self.observer.finished(summary)
        return summary

    async def _rounds(
        self, ctx: BatchContext, items: list[Item], state: ResumeState, first: bool
    ) -> None:
        by_id = {item.id: item for item in items}
        while True:
            self._spent_total = state.spent_usd
            if await adopt_unrecorded(ctx, state.batches):
                state = await self._reread(ctx)
            if await poll_and_collect(ctx, state.batches, by_id):
                state = await self._reread(ctx)
            self._spent_total = state.spent_usd
            classified = await self._classify(items, state)
            if first:
                self.stats.done_before = len(classified.done)
                self.stats.failed_before = len(classified.failed)
                self.stats.failed_before_ids = [item.id for item in classified.failed]
            count(self.stats, classified)
            self._changed()
            if first and self.observer is not None:
                self.observer.started(self.stats)
            first = False
            if classified.pending and self.control.stop_requested.is_set():
                self.reasons.append("interrupted")  # a signal came first: nothing submitted
            elif classified.pending:
                await self._submit(ctx, state, classified.pending)
            if not self.options.wait or self.stats.in_batch == 0 or "budget" in self.reasons:
                return
            if await pause(self.control, self._sleep, self.poll_s):
                self.reasons.append("interrupted")
                return
            state = await self._reread(ctx)

    async def _reread(self, ctx: BatchContext) -> ResumeState:
        # The lock is ours and every line was written whole: no repair, no torn tail.
        return (await asyncio.to_thread(read_ledger, ctx.writer.path)).state

    async def _classify(self, items: list[Item], state: ResumeState) -> Classified:
        cache = DigestCache(base=self.plan.manifest_path.parent)
        if self.fetcher is not None:
            cache.remote = await remote_digests(self.fetcher, items, state)
        classified = await asyncio.to_thread(
            classify, items, state, cache, self.store, retry_failed=self.options.retry_failed
        )
        if not self.plan.files_checked:
            unchecked = [item for item in classified.pending if item.id not in self._checked]
            problems = await asyncio.to_thread(
                check_files, unchecked, self.plan.manifest_path.parent
            )
            if problems:
                raise ManifestError(problems)
            self._checked.update(item.id for item in unchecked)
        return classified

    async def _submit(self, ctx: BatchContext, state: ResumeState, pending: list[Item]) -> None:
        settings = self.settings
        allowance = Allowance(
            run_usd=settings.run_usd,
            total_usd=settings.total_usd,
            committed_before=state.spent_usd + state.batches.reserved_usd(),
        )
        submitter = Submitter(ctx, state.batches, allowance, sleep=self._sleep)
        submitter.stopping = self.control.stop_requested.is_set
        self.stats.requests += await submitter.submit(pending)
        if submitter.interrupted:
            self.reasons.append("interrupted")
        if submitter.budget_stopped:
            self.reasons.append("budget")
            self.messages.append(
                f"budget reached: {submitter.budget_stopped} item(s) not submitted (each "
                "reserves its worst case at the batch price); raise budget.run_usd / "
                "--max-usd (or budget.total_usd) and run again"
            )
        left = [b for b in (settings.run_usd, settings.total_usd) if b is not None]
        if left:
            self.stats.budget_left_usd = max(0.0, min(left) - allowance.reserved)

    def _summary(self, duration: float, ledger: Path) -> RunSummary:
        return summarize(
            self.plan,
            self.stats,
            run_id=self.run_id,
            reasons=self.reasons,
            signal_name=self.control.signal_name,
            messages=self.messages,
            duration_s=duration,
            ledger=ledger,
            spent_total_usd=self._spent_total,
            simulated=self.simulated,
        )
