"""One item's way through a run: prepare it, make attempts under tenacity (each through the
gates), and turn the outcome into one ledger line: `succeeded` once its outputs are written,
`failed` with its class, or none when every failure was a transport error (the API never
answered: the item stays pending for the next run). Probes and failures during an outage do
not use up the item's `max_attempts` (see `breaker`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from pipeline.api.client import EditResponse, EditsClient
from pipeline.cache.store import AnswerCache
from pipeline.core.errors import (
    AttemptError,
    FatalError,
    LedgerUnwritable,
    PermanentError,
    RetryableError,
)
from pipeline.core.plan import Item, Plan
from pipeline.cost.pricing import Price, price_of
from pipeline.cost.usage import Charge
from pipeline.engine.delivery import Delivery
from pipeline.engine.finishing import FREE, Finisher
from pipeline.engine.gates import Gates
from pipeline.engine.prepare import Prepared, Preparer
from pipeline.engine.record import Recorder, internal_error
from pipeline.engine.retry import Tally, retrying
from pipeline.engine.stops import StopDispatch, Stops
from pipeline.inputs.fetch import Fetcher
from pipeline.media.finish import Finished
from pipeline.outputs.store import OutputStore


class Attempts:
    """Makes every item's attempts for one run (shared by the pool's workers)."""

    def __init__(
        self,
        *,
        plan: Plan,
        prices: dict[str, Price],
        gates: Gates,
        stops: Stops,
        recorder: Recorder,
        rng: random.Random,
        backoff_base_s: float,
        warn: Callable[[str], None] = lambda text: None,
        store: OutputStore,
        fetcher: Fetcher | None = None,
    ):
        self.plan = plan
        self.prices = prices
        self.gates = gates
        self.stops = stops
        self.recorder = recorder
        self.rng = rng
        self.backoff_base_s = backoff_base_s
        self.preparer = Preparer(plan, prices, fetcher)
        self.finisher = Finisher(AnswerCache(plan.cache) if plan.cache else None, warn)
        self.delivery = Delivery(plan=plan, store=store, recorder=recorder, stops=stops)
        self.client: EditsClient | None = None  # set by the pool when its session opens
        # items whose attempts all failed without an answer from the API: left pending
        self.unanswered: list[str] = []
        self.unanswered_cause = ""
        self.finalizers: set[asyncio.Task] = set()

    async def process(self, item: Item) -> None:
        """One item to its verdict. A bug met on the way fails this item (class `internal`,
        with a traceback digest), never the run; a ledger that cannot be written stops it."""
        circuit = self.gates.circuit
        circuit.item_started()  # an item being worked on may yet tell whether the provider answers
        try:
            await self._process(item)
        except (StopDispatch, asyncio.CancelledError):
            raise
        except LedgerUnwritable as exc:
            self.stops.stop("fatal", f"aborted: {exc}")
        except Exception as exc:
            message, detail = internal_error(exc)
            await self.recorder.failed(
                item.id, None, "internal", None, message, 0, "internal", detail=detail
            )
        finally:
            circuit.item_ended()

    async def _process(self, item: Item) -> None:
        try:
            prepared = await self.preparer.prepare(item)
        except (OSError, ValueError) as exc:
            message = f"cannot read the input: {exc}"
            await self.recorder.failed(item.id, None, "permanent", None, message, 0)
            return
        try:
            hit = await self.finisher.from_cache(prepared)
            if hit is not None:  # paid for by an earlier run or job: nothing is sent
                await self._succeeded(prepared, *hit, 0.0, 0)
                return
            await self._send(prepared)
        finally:
            # tenacity's retrying object and its call state refer to each other: a cycle only
            # the garbage collector frees, holding this item's bytes through the closure and
            # the last attempt's traceback. Let go of them now, so memory stays bounded by
            # concurrency rather than by the collector's schedule.
            del prepared

    async def _send(self, prepared: Prepared) -> None:
        item = prepared.item
        box = [prepared]  # what the retry callback sees; emptied when the item is done
        tally = Tally(refunded=self.gates.circuit.refunded)
        number = 0  # attempts made so far, probes included
        attempt = None
        try:
            while True:
                made = number
                attempts = retrying(
                    max_attempts=self.plan.limits.max_attempts,
                    sleep=self.stops.sleep,
                    rng=self.rng,
                    base=self.backoff_base_s,
                    before_sleep=lambda state, made=made: self._attempt_failed(box[0], state, made),
                    tally=tally,
                )
                try:
                    async for attempt in attempts:
                        with attempt:
                            number = made + attempt.retry_state.attempt_number
                            response, latency, charge = await self._attempt(prepared, tally)
                            finished = await self.finisher.finish(prepared, response, charge, tally)
                    break
                except RetryableError as exc:
                    # The last attempt failed in a streak that may yet turn out an outage's.
                    if not await self.stops.race(lambda: self.gates.judged(tally)):
                        self.recorder.attempt_failed(prepared, exc, number, 0.0)
                        continue
                    if tally.answered:
                        await self.recorder.failed(
                            item.id, prepared.key, "exhausted", exc, str(exc), number
                        )
                    else:
                        self._unanswered(prepared, exc, number)
                    return
        except StopDispatch:
            return
        except FatalError as exc:
            self.stops.stop("fatal", f"aborted: {exc}")
            await self.recorder.failed(item.id, prepared.key, "fatal", exc, str(exc), number)
            return
        except PermanentError as exc:
            await self.recorder.failed(item.id, prepared.key, "permanent", exc, str(exc), number)
            return
        finally:
            box.clear()
            if attempt is not None:
                attempt.retry_state.outcome = None  # the traceback holds this frame's locals
        # Writing outputs and the verdict is shielded: a cancellation (the grace period ending)
        # must not leave a paid answer unrecorded.
        task = asyncio.create_task(
            self._succeeded(prepared, response, finished, latency, number, charge)
        )
        self.finalizers.add(task)
        task.add_done_callback(self.finalizers.discard)
        await asyncio.shield(task)

    def _unanswered(self, prepared: Prepared, exc: RetryableError, number: int) -> None:
        """Attempts used up by transport errors alone (refused, DNS, timeouts): the API never
        answered, so this is no verdict on the item. Record the attempt; it stays pending."""
        self.unanswered.append(prepared.item.id)
        self.unanswered_cause = f"{exc.transport or 'error'}: {exc.message}"
        self.recorder.attempt_failed(prepared, exc, number, None)

    async def _attempt(
        self, prepared: Prepared, tally: Tally
    ) -> tuple[EditResponse, float, Charge]:
        admission = await self.gates.admit(prepared.worst_usd)
        actual: float | None = None
        try:
            response = await self.client.edit(prepared.request)
        except AttemptError as exc:
            if exc.billed:  # an unusable 2xx: the provider billed it all the same
                exc.charge = self._charge(prepared, exc.usage, usable=False)
                actual = exc.charge.cost_usd
            counts = self.gates.failed(exc, admission)
            tally.failed(counts, answered=answered(exc), streak=self.gates.circuit.streak)
            raise
        else:
            charge = self._charge(prepared, response.usage, usable=True)
            actual = charge.cost_usd
            self.gates.succeeded(response.headers, admission)
            return response, time.monotonic() - admission.began, charge
        finally:
            self.gates.answered(admission, actual)

    def _charge(self, prepared: Prepared, usage: object, *, usable: bool) -> Charge:
        return prepared.charge(usage, price_of(self.prices, prepared.item.model), usable=usable)

    def _attempt_failed(self, prepared: Prepared, retry_state, made: int) -> None:
        """tenacity's before_sleep: the attempt failed and another comes after the wait."""
        exc = retry_state.outcome.exception()
        number = made + retry_state.attempt_number
        self.recorder.attempt_failed(prepared, exc, number, retry_state.upcoming_sleep)

    async def _succeeded(
        self,
        prepared: Prepared,
        response: EditResponse,
        finished: Finished,
        latency: float,
        attempt: int,  # 0: from the cross-run cache, nothing paid
        charge: Charge = FREE,  # what the answer cost (a cache hit: nothing)
    ) -> None:
        # The answer was billed whether or not its outputs can be written: the verdict line
        # carries the cost either way, so the ledger's spend is the provider's bill.
        cached = attempt == 0
        if await self.delivery.deliver(prepared, response, finished, latency, attempt, charge):
            if not cached:
                self.gates.observe_latency(latency)
                await self.finisher.remember(prepared, response)


# Transport errors with which the API never answered: no status, no body.
UNANSWERED = frozenset({"timeout", "cannot connect", "connection reset", "connection error"})


def answered(exc: AttemptError) -> bool:
    """Whether the API answered the attempt at all (a status, or a body cut short)."""
    return exc.http_status is not None or exc.transport not in UNANSWERED
