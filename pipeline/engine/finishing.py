"""Between an answer and the item's outputs: drift measured, strict compositing or the input's
size applied (media/finish.py, in a thread), an answer over `output.max_drift` turned into
AnswerRejected for tenacity to retry; and the cross-run cache: a hit replaces the request, a
success is stored.

At most FINISHING answers are decoded at once, so peak memory stays bounded (each holds the
input, its mask and one answer image decoded) whatever the concurrency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pipeline.api.client import EditResponse
from pipeline.cache.store import AnswerCache
from pipeline.core.errors import AnswerRejected
from pipeline.cost.pricing import TokenCounts
from pipeline.cost.usage import Charge
from pipeline.engine.prepare import Prepared
from pipeline.engine.retry import Tally
from pipeline.media.finish import Finished, TooMuchDrift, finish, needs_pixels
from pipeline.media.images import sniff_format

FINISHING = 4
NO_STREAK = -1  # circuit streaks count from 0: this one never opened the circuit
ANSWERS = "answers/"  # where strict items keep the model's own images, in the output folder
FREE = Charge(cost_usd=0.0, counts=TokenCounts())  # what an answer from the cache costs


class Finisher:
    def __init__(self, cache: AnswerCache | None, warn: Callable[[str], None]):
        self.cache = cache
        self._warn = warn
        self._slots = asyncio.Semaphore(FINISHING)
        self._cache_failed = False

    async def finish(
        self, prepared: Prepared, response: EditResponse, charge: Charge, tally: Tally
    ) -> Finished:
        """The outputs of a fresh answer; AnswerRejected (billed `charge`) when its drift is
        over the limit. The rejection counts against the item's max_attempts (in `tally`),
        in no streak of provider failures: the provider answered, an outage cannot refund it."""
        try:
            return await self._finish(prepared, response.images)
        except TooMuchDrift as exc:
            tally.failed(True, answered=True, streak=NO_STREAK)
            raise AnswerRejected(
                str(exc),
                usage=response.usage,
                charge=charge,
                drift=exc.drift,
                request_id=response.request_id,
            ) from None

    async def _finish(self, prepared: Prepared, images: list[bytes]) -> Finished:
        item = prepared.item
        mask = prepared.request.mask
        if not prepared.request.images or not needs_pixels(item.finish, mask is not None):
            # a generation has no input to measure against or to be brought back to
            return Finished(list(images), None)
        compression = item.params.get("output_compression")
        async with self._slots:
            return await asyncio.to_thread(
                finish,
                item.finish,
                prepared.request.images[0][1],
                None if mask is None else mask[1],
                images,
                compression if isinstance(compression, int) else None,
            )

    async def from_cache(self, prepared: Prepared) -> tuple[EditResponse, Finished] | None:
        """The item's outputs from an answer stored by an earlier run or job, or None (no
        cache, not stored, or its drift is over this job's limit: then it is sent)."""
        if self.cache is None:
            return None
        hit = await asyncio.to_thread(self.cache.get, prepared.cache_key)
        if hit is None:
            return None
        try:
            finished = await self._finish(prepared, hit.images)
        except TooMuchDrift:
            return None
        response = EditResponse(
            images=hit.images,
            output_format=sniff_format(hit.images[0][:16]) or prepared.item.output_format,
            usage=None,
            request_id=None,
            status=200,
            body_size=0,
            latency_s=0.0,
        )
        return response, finished

    async def remember(self, prepared: Prepared, response: EditResponse) -> None:
        """Store a paid answer for later runs and jobs. A cache that cannot be written is
        said once and otherwise ignored: the outputs and the ledger are what count."""
        if self.cache is None or self._cache_failed:
            return
        try:
            await asyncio.to_thread(
                self.cache.put,
                prepared.cache_key,
                response.images,
                model=prepared.item.model,
                usage=response.usage,
            )
        except OSError as exc:
            self._cache_failed = True
            self._warn(
                f"cannot write to the cache {self.cache.root}: {exc.strerror or exc}; answers "
                "of this run are not cached (fix the folder's permissions or space)"
            )
