"""The answer to one checked image request, decided once for every way in: the HTTP routes
(OpenAI and Azure) and the lines of a batch. It takes the request's scripted outcome or
draws one from the fault rates, spends the generation time, and builds the answer: images
(rendered, cached), usage in the shape the outcome asks for, billing, or the fault's error.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipeline.simulator import replies
from pipeline.simulator.accounting import USAGE_SHAPES, shaped_usage, usage_of
from pipeline.simulator.answer import TRANSPORT_FAULTS, Answer, InvalidRequest
from pipeline.simulator.config import SimConfig
from pipeline.simulator.outcomes import (
    IMMEDIATE,
    QUALITY_LATENCY,
    Outcome,
    ScriptBook,
    find_script,
    latency_s,
    parse_script,
    pick_outcome,
    request_rng,
)
from pipeline.simulator.render import MIME, ByteBudgetCache, render
from pipeline.simulator.stats import Stats
from pipeline.simulator.validation import ImageRequest

# Outcomes whose answer is (or starts as) a 200 with images.
IMAGE_ANSWERS = (
    "ok", "url", "datauri", "reset", "truncated", "corrupt", "nousage",
    "chatusage", "emptyusage", "nodetails", "fewer", "repaint",
)  # fmt: skip
# Those the provider bills: all but `nousage` (left unbilled, as the simulator always did).
BILLED = tuple(name for name in IMAGE_ANSWERS if name != "nousage")
NOT_DELIVERED = ("reset", "truncated", "corrupt")
RENDER_CACHE_BYTES = 128 * 2**20
HOSTED_BYTES = 64 * 2**20


# What a batch line answers for the outcomes that only exist on a connection.
BATCH_STAND_INS = {name: "500" for name in (*TRANSPORT_FAULTS, "502")}
Script = tuple[str, tuple[Outcome, ...]]


def script_of(header: str | None, prompt: str) -> Script | None:
    """(key, outcomes) of a scripted request, or None; InvalidRequest for a bad script."""
    found = find_script(header, prompt)
    if found is None:
        return None
    key, text, where = found
    try:
        return key, parse_script(text)
    except ValueError as exc:
        raise InvalidRequest(f"{where}: {exc}", param=where) from None


@dataclass(frozen=True, slots=True)
class Call:
    """One checked request and where it came from. `script` is (key, outcomes) or None;
    `origin` is the scheme and host that `url` answers point at."""

    request: ImageRequest
    request_id: str
    origin: str
    script: Script | None = None
    azure: bool = False
    batch: bool = False


class ImageService:
    """Scripts, draws, renders and hosted images of one simulator, shared by its routes."""

    def __init__(
        self,
        config: SimConfig,
        stats: Stats,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        self.config, self.stats, self.sleep = config, stats, sleep
        self.scripts = ScriptBook()
        self.renders = ByteBudgetCache(RENDER_CACHE_BYTES)
        self.hosted = ByteBudgetCache(HOSTED_BYTES)
        self.admitted = itertools.count()

    def _draw(self, call: Call) -> tuple[Outcome, float]:
        """The call's outcome and its latency draw: the n-th call's depend on seed and n."""
        rng = request_rng(self.config.seed, next(self.admitted))
        fault_draw, latency_draw = rng.random(), rng.random()
        if call.script is not None:
            outcome = self.scripts.take(*call.script)
        else:
            outcome = pick_outcome(fault_draw, self.config.faults)
        if call.azure and outcome.name == "moderation":
            outcome = Outcome("content_filter")
        if call.batch and outcome.name in BATCH_STAND_INS:
            # A batch line has no connection to break nor a proxy: the worker saw a failure.
            outcome = Outcome(BATCH_STAND_INS[outcome.name])
        return outcome, latency_draw

    async def answer(self, call: Call) -> tuple[Answer, str]:
        """The call's answer and the name of its outcome."""
        outcome, latency_draw = self._draw(call)
        if not call.batch and outcome.name not in IMMEDIATE:
            await self.sleep(self._generation_s(latency_draw, call.request.quality))
        if outcome.name not in IMAGE_ANSWERS:
            if outcome.name == "stall":
                return Answer(status=504, transport="stall"), outcome.name
            fault = replies.fault(
                outcome, call.request.model, call.request_id, self.config.fault_retry_after_s
            )
            return fault, outcome.name
        return await self._images(call, outcome.name), outcome.name

    def _generation_s(self, draw: float, quality: str) -> float:
        config = self.config
        factor = QUALITY_LATENCY[quality] if config.latency_by_quality else 1.0
        return latency_s(draw, config.latency_s, config.jitter_s, factor, config.latency_sigma)

    async def _images(self, call: Call, name: str) -> Answer:
        request = call.request
        image = await self._image(request, repaint=name == "repaint")
        if name == "corrupt":
            junk = hashlib.sha256(request.prompt.encode()).digest() * 64
            image = base64.b64encode(b"not an image " + junk).decode("ascii")
        count = request.n - 1 if name == "fewer" and request.n > 1 else request.n
        usage = usage_of(request, count)
        body = {
            "created": int(time.time()),
            "data": self._data(call, name, image, count),
            "background": "opaque" if request.background == "auto" else request.background,
            "output_format": request.output_format,
            "quality": request.quality,
            "size": request.size,
        }
        if name != "nousage":
            body["usage"] = shaped_usage(usage, name) if name in USAGE_SHAPES else usage
        if name in BILLED:
            self.stats.bill(request.model, usage, call.batch)
        if name not in NOT_DELIVERED:
            delivered = None if name == "nousage" else usage
            self.stats.deliver(request.image_sha256, request.model, delivered, call.batch)
        transport = name if name in TRANSPORT_FAULTS else None
        return Answer(status=200, body=body, transport=transport)

    async def _image(self, request: ImageRequest, repaint: bool) -> str:
        """The rendered output as base64, from the cache when these inputs were seen before."""
        key = (
            request.image_sha256, request.mask_sha256, request.prompt, request.size,
            request.output_format, request.background, request.output_compression,
            request.endpoint, repaint,
        )  # fmt: skip
        cached = self.renders.get(key)
        if isinstance(cached, str):
            return cached
        drift = self.config.outside_drift
        encoded = await asyncio.to_thread(_render_b64, request, repaint, drift)
        self.renders.put(key, encoded)
        return encoded

    def _data(self, call: Call, name: str, image: str, count: int) -> list[dict]:
        request = call.request
        if name == "datauri":
            return [{"b64_json": f"data:{MIME[request.output_format]};base64,{image}"}] * count
        if name != "url":
            return [{"b64_json": image}] * count
        raw = base64.b64decode(image)
        urls = []
        for index in range(count):
            file_name = f"{call.request_id}-{index}.{request.output_format}"
            self.hosted.put(file_name, raw)
            urls.append({"url": f"{call.origin}/_sim/images/{file_name}"})
        return urls


def _render_b64(request: ImageRequest, repaint: bool, drift: float) -> str:
    width, height = (int(side) for side in request.size.split("x"))
    data = render(
        request.images[0] if request.images else None, request.mask, request.prompt,
        (width, height), request.output_format, request.background,
        request.output_compression, repaint=repaint, drift=drift,
    )  # fmt: skip
    return base64.b64encode(data).decode("ascii")
