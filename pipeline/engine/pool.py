"""The worker pool of one run: `concurrency` workers over one aiohttp session, each taking the
next pending item, and the stop handling around them: a signal stops dispatch, requests in
flight get the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp

from pipeline.api.client import EditsClient
from pipeline.api.providers import Route
from pipeline.core.plan import Item, Plan
from pipeline.cost.pricing import Price
from pipeline.engine.attempts import Attempts
from pipeline.engine.breaker import BreakerSettings
from pipeline.engine.budget import BudgetGuard
from pipeline.engine.gates import Gates
from pipeline.engine.record import Recorder
from pipeline.engine.stops import StopDispatch, Stops
from pipeline.engine.summary import RunStats
from pipeline.inputs.fetch import Fetcher
from pipeline.ledger.writer import LedgerWriter
from pipeline.outputs.store import OutputStore


class Pool:
    """Dispatches one run's pending items; `run` returns when nothing is in flight."""

    def __init__(
        self,
        *,
        plan: Plan,
        route: Route,
        api_key: str | None,
        concurrency: int,
        rpm: float,
        prices: dict[str, Price],
        budget: BudgetGuard,
        writer: LedgerWriter,
        stats: RunStats,
        control: Any,  # runner.RunControl
        grace_s: float,
        backoff_base_s: float,
        probe_cap_s: float,
        seed: int | None,
        warn: Callable[[str], None],
        changed: Callable[[], None],
        store: OutputStore,
        fetcher: Fetcher | None = None,
    ):
        self.plan = plan
        self.route = route
        self.api_key = api_key
        self.concurrency = concurrency
        self.control = control
        self.grace_s = grace_s
        self._warn = warn
        self.stops = Stops()
        rng = random.Random(seed)
        breaker = BreakerSettings(
            concurrency,
            base_s=backoff_base_s,
            cap_s=probe_cap_s,
            max_outage_s=plan.limits.max_outage_s,
        )
        self.gates = Gates(
            rpm=rpm,
            concurrency=concurrency,
            budget=budget,
            stops=self.stops,
            stats=stats,
            changed=changed,
            warn=warn,
            breaker=breaker,
            rng=rng,
        )
        self.attempts = Attempts(
            plan=plan,
            prices=prices,
            gates=self.gates,
            stops=self.stops,
            recorder=Recorder(writer, stats, changed, provider=route.provider),
            rng=rng,
            backoff_base_s=backoff_base_s,
            warn=warn,
            store=store,
            fetcher=fetcher,
        )

    @property
    def stop_reasons(self) -> list[str]:
        return self.stops.reasons

    @property
    def messages(self) -> list[str]:
        return self.stops.messages

    async def run(
        self,
        pending: list[Item],
        later: asyncio.Future[list[Item]] | None = None,
        later_most: int = 0,
    ) -> None:
        """Dispatch every pending item (or until a stop); returns when nothing is in flight.
        `later`: more items to send after `pending`, once known (a resume classifies the
        items with ledger history while the new ones are already being sent), at most
        `later_most` of them."""
        if pending or later is not None:
            await self._pool(Feed(pending, later), len(pending) + later_most)
        while self.attempts.finalizers:
            await asyncio.gather(*list(self.attempts.finalizers), return_exceptions=True)
        unanswered = self.attempts.unanswered
        if unanswered:
            self.stops.messages.append(
                f"{len(unanswered)} item(s) got no answer from the API in "
                f"{self.plan.limits.max_attempts} attempts (last: "
                f"{self.attempts.unanswered_cause}); that is no verdict on them: they stay "
                "pending and the next run tries them (check the network or the base URL)"
            )

    async def _pool(self, feed: Feed, most: int) -> None:
        workers = max(1, min(self.concurrency, most))
        connector = aiohttp.TCPConnector(limit=workers, limit_per_host=workers)
        async with aiohttp.ClientSession(connector=connector) as session:
            self.attempts.client = EditsClient(
                session,
                self.route,
                self.api_key,
                timeout_s=self.plan.limits.timeout_s,
                api_key_env=self.plan.endpoint.api_key_env,
                max_image_mb=self.plan.limits.max_image_mb,
            )
            tasks = [asyncio.create_task(self._worker(feed)) for _ in range(workers)]
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
        self.stops.stop("interrupted")
        cancel = asyncio.create_task(self.control.cancel_requested.wait())
        try:
            await asyncio.wait_for(asyncio.shield(cancel), timeout=self.grace_s)
        except TimeoutError:
            self._warn(f"requests in flight did not finish within {self.grace_s:g} s; cancelled")
        finally:
            cancel.cancel()
        for task in tasks:
            task.cancel()

    async def _worker(self, feed: Feed) -> None:
        attempts = self.attempts
        while not self.stops.stopping:
            item = feed.next_now()
            if item is None:
                if not feed.waiting:
                    return
                try:
                    await self.stops.race(feed.wait)
                except StopDispatch:
                    return
                continue
            await attempts.process(item)


class Feed:
    """The items a pool sends, in order: the ones known at the start, then (once `later` is
    done) the ones it brings. Each item is taken by one worker only."""

    def __init__(self, items: list[Item], later: asyncio.Future[list[Item]] | None):
        self._items = deque(items)
        self._later = later

    @property
    def waiting(self) -> bool:
        """More items may come: `later` has not been taken in yet."""
        return self._later is not None

    def next_now(self) -> Item | None:
        return self._items.popleft() if self._items else None

    async def wait(self) -> None:
        """Until `later` is done; the first worker back takes its items in (the others find
        them in the queue). Its exception, if any, is every waiting worker's."""
        later = self._later
        if later is None:
            return
        items = await asyncio.shield(later)
        if self._later is later:
            self._later = None
            self._items.extend(items)
