"""One run from lock to summary: open and lock the ledger, read the job's state, decide which
items are done, failed or pending, check the pending items' files, reserve nothing past the
budgets, hand the pending items to the pool, and write `run_started` / `run_finished`.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from pipeline.api.providers import Route
from pipeline.core.errors import ManifestError, UsageError
from pipeline.core.fingerprint import DigestCache
from pipeline.core.plan import Item, Location, Plan, Remote
from pipeline.core.secrets import scrub_url
from pipeline.engine.budget import BudgetGuard
from pipeline.engine.opening import opened_run, record_finish, record_start, remote_refs
from pipeline.engine.pool import Pool
from pipeline.engine.settings import RunSettings
from pipeline.engine.summary import Observer, RunStats, RunSummary, verdict
from pipeline.inputs.fetch import Fetcher
from pipeline.inputs.validators import FetchError
from pipeline.ledger.resume import Classified, classify, triage
from pipeline.ledger.scan import ResumeState
from pipeline.ledger.status import read_job_state
from pipeline.ledger.writer import LedgerWriter
from pipeline.manifest.validate import check_files
from pipeline.outputs.files import output_problems
from pipeline.outputs.store import OutputStore, as_store


class SessionBase:
    """What every run of a job carries, interactive or batch: its plan, options and route,
    a fresh run id, live counters, and the warnings it passes to the observer."""

    def __init__(
        self,
        plan: Plan,
        options: Any,  # runner.RunOptions
        settings: RunSettings,
        *,
        route: Route,
        api_key: str | None,
        control: Any,  # runner.RunControl
        simulated: bool,
    ):
        self.plan = plan
        self.options = options
        self.settings = settings
        self.route = route
        self.api_key = api_key
        self.control = control
        self.simulated = simulated
        self.observer: Observer | None = options.observer
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
        self.stats = RunStats()
        self.messages: list[str] = []
        self.late_problems: list = []  # problems found in items classified while sending

    def warn(self, text: str) -> None:
        self.messages.append(text)
        if self.observer is not None:
            self.observer.warning(text)

    def _changed(self) -> None:
        if self.observer is not None:
            self.observer.update(self.stats)


class RunSession(SessionBase):
    """One interactive run: the pool sends the pending items one request each."""

    async def execute(self, items: list[Item]) -> RunSummary:
        self.settings.check_prices(items, self.warn)
        shard = self.settings.shard
        extra: dict[str, Any] = {}
        if self.simulated:
            extra["simulated"] = True
        if shard is not None:
            extra["shard"] = str(shard)
        async with opened_run(
            self.plan, items, run_id=self.run_id, shard=shard, extra=extra
        ) as opened:
            return await self._locked(items, opened.writer, opened.ledger, opened.fetcher)

    async def _locked(
        self, items: list[Item], writer: LedgerWriter, ledger: Path, fetcher: Fetcher | None
    ) -> RunSummary:
        started = time.monotonic()
        state, warnings = await asyncio.to_thread(read_job_state, self.plan, writer.scan)
        for warning in warnings:
            self.warn(warning)
        store = as_store(self.plan.output.dir)
        await asyncio.to_thread(prepare_out_dir, self.plan.output.dir, store)
        cache = DigestCache(base=self.plan.manifest_path.parent)
        if fetcher is not None:
            cache.remote = await remote_digests(fetcher, items, state)
        fresh, known, in_batch = triage(items, state)
        stats = self.stats
        stats.total = len(items)
        stats.in_batch = len(in_batch)
        later: asyncio.Task[list[Item]] | None = None
        if fresh and known:
            # A resume with new items: they are sent while the items with ledger history are
            # classified (keys, stats: seconds for 10^5 items); those still to run follow.
            first = fresh
            stats.pending = len(fresh) + len(known)  # until classified: see _classify_later
            stats.checking = len(known)
        else:
            classified = await asyncio.to_thread(
                classify, known, state, cache, store, retry_failed=self.options.retry_failed
            )
            self._count(classified)
            first = fresh + classified.pending  # one of the two is empty
            stats.pending = len(first)
        # Before the first paid request: every check of the items about to be sent.
        problems = await self._check(first)
        if problems:
            raise ManifestError(problems)
        if in_batch:
            self.warn(
                f"{len(in_batch)} item(s) are in batches still open at the provider: "
                "not sent again; `editbatch run --batch` collects them"
            )
        settings = self.settings
        total_usd = settings.total_usd
        if settings.shard is not None:
            total_usd = settings.shard.total_share(total_usd, state.spent_usd)
        self.budget = BudgetGuard(
            run_usd=settings.run_usd, total_usd=total_usd, spent_before=state.spent_usd
        )
        stats.budget_left_usd = self.budget.left_usd()
        await record_start(writer, self.plan, self._options_record())
        self.pool = Pool(
            plan=self.plan,
            route=self.route,
            api_key=self.api_key,
            concurrency=settings.concurrency,
            rpm=settings.rpm,
            prices=settings.prices,
            budget=self.budget,
            writer=writer,
            stats=stats,
            control=self.control,
            grace_s=self.options.grace_s,
            backoff_base_s=self.options.backoff_base_s,
            probe_cap_s=self.options.probe_cap_s,
            seed=self.options.seed,
            warn=self.warn,
            changed=self._changed,
            store=store,
            fetcher=fetcher,
        )
        if self.observer is not None:
            self.observer.started(stats)
        if fresh and known:
            later = asyncio.create_task(self._classify_later(known, state, cache, store))
        try:
            await self.pool.run(first, later, len(known) if later else 0)
        finally:
            if later is not None:  # the counts need it, even when the run stopped early
                await asyncio.wait([later])
        if later is not None:
            later.result()  # a bug in it surfaces, if no worker was waiting for it
        summary = self._summary(time.monotonic() - started, ledger)
        await record_finish(writer, summary)
        if self.observer is not None:
            self.observer.finished(summary)
        if self.late_problems:
            raise ManifestError(self.late_problems)
        return summary

    async def _check(self, items: list[Item]) -> list:
        """What stops `items` from being sent: unreadable or invalid inputs (when the plan was
        loaded without reading them), and outputs that could not be written (an answer whose
        outputs cannot be written is money lost: its cost is recorded, its images are not)."""
        if not items:
            return []
        if not self.plan.files_checked:
            notes: list = []
            problems = await asyncio.to_thread(
                check_files, items, self.plan.manifest_path.parent, notes
            )
            if problems:
                return problems
            for note in notes:
                self.warn(str(note))
        return await asyncio.to_thread(
            output_problems, items, self.plan.output.dir, self.plan.output.name
        )

    def _count(self, classified: Classified) -> None:
        stats = self.stats
        stats.done_before = len(classified.done)
        stats.failed_before = len(classified.failed)
        stats.failed_before_ids = [item.id for item in classified.failed]

    async def _classify_later(
        self, known: list[Item], state: ResumeState, cache: DigestCache, store: OutputStore
    ) -> list[Item]:
        """The items with ledger history that are still to run, checked as the first ones
        were, for the pool to send after them. A problem among them stops dispatch: the run
        drains, records, and then refuses with the problems (exit 2), as it would have before
        sending anything had there been no new items."""
        classified = await asyncio.to_thread(
            classify, known, state, cache, store, retry_failed=self.options.retry_failed
        )
        self._count(classified)
        self.stats.pending -= len(known) - len(classified.pending)
        self.stats.checking = 0
        self._changed()
        if self.pool.stops.stopping:  # nothing more is sent: no check to make
            return classified.pending
        problems = await self._check(classified.pending)
        if problems:
            self.late_problems = problems
            self.pool.stops.stop("invalid")
            return []
        return classified.pending

    def _options_record(self) -> dict:
        s = self.settings
        return {
            "concurrency": s.concurrency,
            "requests_per_minute": s.rpm,
            "run_usd": s.run_usd,
            "total_usd": s.total_usd,
            "max_attempts": self.plan.limits.max_attempts,
            "timeout_s": self.plan.limits.timeout_s,
            "max_outage_s": self.plan.limits.max_outage_s,
            "retry_failed": self.options.retry_failed,
            "only": list(self.options.only),
            "base_url": scrub_url(self.route.base_url),  # no credentials, no query values
            "provider": self.route.provider,
        }

    def _summary(self, duration: float, ledger: Path) -> RunSummary:
        s = self.stats
        self.messages.extend(self.pool.messages)
        reason, code = verdict(self.pool.stop_reasons, s, self.control.signal_name)
        if reason == "budget":
            self.messages.append(
                f"budget reached: spent ${s.cost_usd:.4f} this run, "
                f"${(self.budget.left_usd() or 0):.4f} left; {s.pending} item(s) pending — "
                "raise budget.run_usd / --max-usd (or budget.total_usd) and run again to resume"
            )
        return RunSummary(
            run_id=self.run_id,
            manifest=self.plan.name,
            reason=reason,
            exit_code=code,
            stats=s,
            duration_s=duration,
            ledger=ledger,
            output_dir=self.plan.output.dir,
            budget_left_usd=self.budget.left_usd(),
            spent_total_usd=self.budget.spent_before + self.budget.spent,
            messages=list(self.messages),
            simulated=self.simulated,
            manifest_path=self.plan.manifest_path,
            base_url=scrub_url(self.route.base_url),
        )


def prepare_out_dir(out_dir: Location, store: OutputStore | None = None) -> None:
    """Make the output folder (or list the bucket's), clearing a killed run's temp files."""
    try:
        (store or as_store(out_dir)).prepare()
    except OSError as exc:
        raise UsageError(
            f"cannot create or list the output folder {out_dir}: {exc.strerror or exc}; "
            "fix output.dir in the manifest, the path on disk, or the store's credentials"
        ) from None


async def remote_digests(fetcher: Fetcher, items: list[Item], state: ResumeState) -> dict:
    """{url: sha256} of the remote inputs of the items the ledger knows (the others need no
    key before they are sent). An object whose validators match its recorded ones is not
    fetched; a changed one is fetched (its new sha256 gives the item a new key); one that
    cannot be had is left out (the item stays pending, and fails when it is prepared)."""
    recorded: dict[str, dict] = {}
    wanted: dict[str, Remote] = {}
    for item in items:
        succeeded = state.succeeded(item.id)
        if succeeded is None and state.failed(item.id) is None:
            continue
        for entry in (succeeded or {}).get("inputs") or ():
            if isinstance(entry.get("url"), str):
                recorded[entry["url"]] = entry
        for ref in remote_refs(item):
            wanted[ref.url] = ref
    found: dict[str, str | None] = {}

    async def one(ref: Remote) -> None:
        try:
            found[ref.url] = await fetcher.sha256(ref, recorded.get(str(ref)))
        except FetchError:
            found[ref.url] = None

    await asyncio.gather(*(one(ref) for ref in wanted.values()))
    return found
