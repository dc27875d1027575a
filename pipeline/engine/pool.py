"""Dispatching one run's pending items: a pool of workers, each taking the next item, preparing
it, and making attempts through the rate gate and the budget until the item succeeds, fails or
the run stops. Every outcome becomes one ledger line; the live counters feed the progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from pipeline.api.client import EditResponse, EditsClient
from pipeline.core.errors import (
    AttemptError,
    FatalError,
    PermanentError,
    RateLimited,
    RetryableError,
)
from pipeline.core.plan import Item, Plan
from pipeline.cost.pricing import Price, cost_of_usage
from pipeline.engine.budget import BudgetGuard
from pipeline.engine.pacing import RETRY_BUDGET_MESSAGE, RateGate, RetryBudget, littles_law_warning
from pipeline.engine.prepare import Prepared, Preparer, write_outputs
from pipeline.engine.record import Recorder
from pipeline.engine.retry import retrying
from pipeline.engine.summary import RunStats
from pipeline.ledger.writer import LedgerWriter


class _Stop(Exception):
    """The run stopped dispatching; the item stays pending."""


class Dispatcher:
    """The machinery one run shares between its workers (one event loop, no threads)."""

    def __init__(
        self,
        *,
        plan: Plan,
        base_url: str,
        api_key: str,
        concurrency: int,
        rpm: float,
        prices: dict[str, Price],
        budget: BudgetGuard,
        writer: LedgerWriter,
        stats: RunStats,
        control: Any,  # runner.RunControl
        grace_s: float,
        backoff_base_s: float,
        seed: int | None,
        warn: Callable[[str], None],
        changed: Callable[[], None],
    ):
        self.plan = plan
        self.base_url = base_url
        self.api_key = api_key
        self.concurrency = concurrency
        self.rpm = rpm
        self.prices = prices
        self.budget = budget
        self.writer = writer
        self.stats = stats
        self.control = control
        self.grace_s = grace_s
        self.backoff_base_s = backoff_base_s
        self.rng = random.Random(seed)
        self._warn = warn
        self._changed = changed
        self.gate = RateGate(rpm=rpm, probe=True)
        # gRPC's throttling rule with a ratio that tolerates the failure rates image APIs
        # show on a normal day (retries stop only while over a third of attempts fail).
        self.retry_budget = RetryBudget(max_tokens=20, token_ratio=0.5)
        self.preparer = Preparer(plan, prices)
        self.recorder = Recorder(writer, stats, changed)
        self.stop_reasons: list[str] = []
        self.messages: list[str] = []
        self._stopping = asyncio.Event()
        self._finalizers: set[asyncio.Task] = set()
        self._latencies: list[float] = []
        self._littles_checked = False
        self.deferred: list[Item] = []  # retries the retry budget held back
        self._attempts_used: dict[str, int] = {}

    async def run(self, pending: list[Item]) -> None:
        """Dispatch every pending item (or until a stop); returns when nothing is in flight."""
        if pending:
            await self._pool(pending)
        while self._finalizers:
            await asyncio.gather(*list(self._finalizers), return_exceptions=True)
        if self.deferred and not self._stopping.is_set():
            self.messages.append(
                f"{len(self.deferred)} item(s) left pending: {RETRY_BUDGET_MESSAGE}; "
                "run again to resume them"
            )

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
            await asyncio.wait_for(asyncio.shield(cancel), timeout=self.grace_s)
        except TimeoutError:
            self._warn(f"requests in flight did not finish within {self.grace_s:g} s; cancelled")
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
                # Fresh items first; then items whose retries the retry budget deferred, once
                # successes have refilled it.
                if not self.deferred or not self.retry_budget.allow_retry():
                    return
                item = self.deferred.pop(0)
            await self._process(item)

    # -- one item ------------------------------------------------------------------------

    async def _process(self, item: Item) -> None:
        try:
            prepared = await self.preparer.prepare(item)
        except (OSError, ValueError) as exc:
            message = f"cannot read the input: {exc}"
            await self.recorder.failed(item.id, None, "permanent", None, message, 0)
            return
        try:
            await self._send(prepared)
        finally:
            # tenacity's retrying object and its call state refer to each other: a cycle only
            # the garbage collector frees, holding this item's bytes through the closure and
            # the last attempt's traceback. Let go of them now, so memory stays bounded by
            # concurrency rather than by the collector's schedule.
            del prepared

    async def _send(self, prepared: Prepared) -> None:
        item = prepared.item
        used = self._attempts_used.pop(item.id, 0)  # by an earlier, deferred round
        box = [prepared]  # what the retry callback sees; emptied when the item is done
        attempts = retrying(
            max_attempts=self.plan.limits.max_attempts - used,
            sleep=self._sleep,
            rng=self.rng,
            base=self.backoff_base_s,
            before_sleep=lambda state: self._attempt_failed(box[0], state, used),
            should_retry=self.retry_budget.allow_retry,
        )
        number = used
        attempt = None
        try:
            async for attempt in attempts:
                with attempt:
                    number = used + attempt.retry_state.attempt_number
                    response, latency = await self._attempt(prepared)
        except _Stop:
            return
        except FatalError as exc:
            self._stop("fatal")
            self.messages.append(f"aborted: {exc}")
            await self.recorder.failed(item.id, prepared.key, "fatal", exc, str(exc), number)
            return
        except PermanentError as exc:
            await self.recorder.failed(item.id, prepared.key, "permanent", exc, str(exc), number)
            return
        except RetryableError as exc:
            if number < self.plan.limits.max_attempts:
                self._defer(item, prepared, exc, number)
            else:
                await self.recorder.failed(
                    item.id, prepared.key, "exhausted", exc, str(exc), number
                )
            return
        finally:
            box.clear()
            if attempt is not None:
                attempt.retry_state.outcome = None  # the traceback holds this frame's locals
        task = asyncio.create_task(self._succeeded(prepared, response, latency, number))
        self._finalizers.add(task)
        task.add_done_callback(self._finalizers.discard)
        await asyncio.shield(task)

    def _defer(self, item: Item, prepared: Prepared, exc: RetryableError, number: int) -> None:
        """The retry budget refused a retry: record the attempt, and keep the item for after
        the fresh ones (or for the next run: it stays pending, never marked failed)."""
        self._attempts_used[item.id] = number
        self.deferred.append(item)
        self.recorder.attempt_failed(prepared, exc, number, None)

    async def _attempt(self, prepared: Prepared) -> tuple[EditResponse, float]:
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
            status = _status_label(exc)
            stats.by_status[status] = stats.by_status.get(status, 0) + 1
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
            self.gate.on_answer()
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

    def _attempt_failed(self, prepared: Prepared, retry_state, used: int) -> None:
        """tenacity's before_sleep: the attempt failed and another comes after the wait."""
        exc = retry_state.outcome.exception()
        number = used + retry_state.attempt_number
        self.recorder.attempt_failed(prepared, exc, number, retry_state.upcoming_sleep)

    async def _succeeded(
        self, prepared: Prepared, response: EditResponse, latency: float, attempt: int
    ) -> None:
        item = prepared.item
        try:
            outputs = await write_outputs(self.plan, item, response.images)
        except ValueError as exc:  # the output name leaves the folder (a symlink, say)
            message = f"cannot write the output: {exc}"
            await self.recorder.failed(item.id, prepared.key, "permanent", None, message, attempt)
            return
        except OSError as exc:  # disk full, permissions: every item would fail the same way
            message = (
                f"cannot write outputs to {self.plan.output.dir}: {exc}; free space or fix "
                "permissions, then run again (this item stays pending)"
            )
            self._stop("fatal")
            self.messages.append(f"aborted: {message}")
            await self.recorder.failed(item.id, prepared.key, "fatal", None, message, attempt)
            return
        cost, estimated = self._cost(prepared, response)
        await self.recorder.succeeded(
            prepared,
            response,
            outputs,
            attempt=attempt,
            latency_s=latency,
            cost_usd=cost,
            estimated=estimated,
        )
        self._check_littles_law(latency)

    def _check_littles_law(self, latency: float) -> None:
        """Once, after the first few successes: can `concurrency` reach the rate at the
        latency seen? (Little's law: in flight = rate x latency.)"""
        if self._littles_checked:
            return
        self._latencies.append(latency)
        if len(self._latencies) < 5:
            return
        self._littles_checked = True
        rate = self.rpm / 60.0 if self.rpm > 0 else self.gate.rate_per_s
        if rate:
            median = sorted(self._latencies)[len(self._latencies) // 2]
            warning = littles_law_warning(self.concurrency, rate, median)
            if warning:
                self._warn(warning)


def _status_label(exc: AttemptError) -> str:
    """How a failed attempt counts in `requests by status`: the HTTP status, "200 unusable"
    for a 200 whose body was not usable, or the transport error."""
    if exc.http_status == 200:
        return "200 unusable"
    if exc.http_status is not None:
        return str(exc.http_status)
    return exc.transport or "error"
