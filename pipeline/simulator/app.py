"""The simulator's aiohttp application: the routes, the order in which an edit request is
decided (key, form, checks, rate limit, outcome, generation time, answer), and the headers
every answer carries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from pipeline.simulator import replies
from pipeline.simulator.accounting import Stats, usage_of
from pipeline.simulator.config import SimConfig
from pipeline.simulator.form import read_form
from pipeline.simulator.outcomes import (
    IMMEDIATE,
    QUALITY_LATENCY,
    SCRIPT_HEADER,
    Outcome,
    ScriptBook,
    find_script,
    latency_s,
    parse_script,
    pick_outcome,
    request_rng,
)
from pipeline.simulator.ratelimit import TokenBucket, format_duration
from pipeline.simulator.render import MIME, ByteBudgetCache, render
from pipeline.simulator.replies import InvalidRequest
from pipeline.simulator.validation import EditRequest, check_form

REQUEST_ID = web.RequestKey("request_id", str)
ARRIVED = web.RequestKey("arrived", float)
# Outcomes whose answer is (or starts as) a 200 with images; the provider bills the first six.
IMAGE_ANSWERS = ("ok", "url", "datauri", "reset", "truncated", "corrupt", "nousage")
BILLED = IMAGE_ANSWERS[:6]
DELIVERED = ("ok", "url", "datauri", "nousage")
STALL_POLL_S = 0.05  # how often a stalled request looks whether its client gave up
RENDER_CACHE_BYTES = 128 * 2**20
HOSTED_BYTES = 64 * 2**20


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


class Simulator:
    """One simulated provider: its limits, scripts, counters and rendered images."""

    def __init__(
        self,
        config: SimConfig,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        self.config = config
        self.clock, self.sleep = clock, sleep
        self.bucket = TokenBucket(config.rpm, config.burst, clock) if config.rpm > 0 else None
        self.stats = Stats(clock)
        self.scripts = ScriptBook()
        self.renders = ByteBudgetCache(RENDER_CACHE_BYTES)
        self.hosted = ByteBudgetCache(HOSTED_BYTES)
        self.admitted = itertools.count()
        self.closing = asyncio.Event()

    async def edits(self, request: web.Request) -> web.StreamResponse:
        request[REQUEST_ID], request[ARRIVED] = new_request_id(), self.clock()
        self.stats.arrive()
        status, outcome = None, "error"
        try:
            response, outcome = await self._edit(request)
            if outcome not in ("reset", "stall"):
                status = response.status
            return response
        finally:
            self.stats.depart(status, outcome)

    async def _edit(self, request: web.Request) -> tuple[web.StreamResponse, str]:
        denied = self._authorize(request)
        if denied is not None:
            return denied, "unauthorized"
        try:
            form = await read_form(request, int(self.config.max_body_mb * 2**20))
            edit = await asyncio.to_thread(check_form, form)
            script = self._script(request, edit.prompt)
        except InvalidRequest as exc:
            return replies.invalid(exc), "invalid"
        if self.bucket is not None:
            admission = self.bucket.try_take()
            if not admission.admitted:
                window = self.bucket.window()
                reply = replies.rate_limited(edit.model, window, admission.retry_after_s)
                return reply, "rate_limited"
        rng = request_rng(self.config.seed, next(self.admitted))
        fault_draw, latency_draw = rng.random(), rng.random()
        if script is not None:
            outcome = self.scripts.take(*script)
        else:
            outcome = pick_outcome(fault_draw, self.config.faults)
        if outcome.name not in IMMEDIATE:
            await self.sleep(self._generation_s(latency_draw, edit.quality))
        try:
            return await self._answer(request, edit, outcome), outcome.name
        except InvalidRequest as exc:
            return replies.invalid(exc), "invalid"

    def _generation_s(self, draw: float, quality: str) -> float:
        config = self.config
        factor = QUALITY_LATENCY[quality] if config.latency_by_quality else 1.0
        return latency_s(draw, config.latency_s, config.jitter_s, factor)

    def _authorize(self, request: web.Request) -> web.Response | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return replies.missing_key()
        expected = self.config.api_key
        if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
            return replies.wrong_key(key)
        return None

    def _script(self, request: web.Request, prompt: str) -> tuple[str, tuple[Outcome, ...]] | None:
        found = find_script(request.headers.get(SCRIPT_HEADER), prompt)
        if found is None:
            return None
        key, text, where = found
        try:
            return key, parse_script(text)
        except ValueError as exc:
            raise InvalidRequest(f"{where}: {exc}", param=where) from None

    async def _answer(
        self, request: web.Request, edit: EditRequest, outcome: Outcome
    ) -> web.StreamResponse:
        name = outcome.name
        if name == "stall":
            await self._stall(request)
            return web.Response(status=504)  # never seen: the connection is gone
        if name not in IMAGE_ANSWERS:
            return replies.fault(
                outcome, edit.model, request[REQUEST_ID], self.config.fault_retry_after_s
            )
        image = await self._image(edit)
        if name == "corrupt":
            junk = hashlib.sha256(edit.prompt.encode()).digest() * 64
            image = base64.b64encode(b"not an image " + junk).decode("ascii")
        usage = usage_of(edit)
        body = {
            "created": int(time.time()),
            "data": self._data(request, edit, name, image),
            "background": "opaque" if edit.background == "auto" else edit.background,
            "output_format": edit.output_format,
            "quality": edit.quality,
            "size": edit.size,
        }
        if name != "nousage":
            body["usage"] = usage
        if name in BILLED:
            self.stats.bill(edit.model, usage)
        if name in DELIVERED:
            self.stats.deliver(edit.image_sha256, edit.model, body.get("usage"))
        payload = json.dumps(body).encode("utf-8")
        if name == "truncated":
            return web.Response(body=payload[: len(payload) // 2], content_type="application/json")
        if name == "reset":
            return await self._reset(request, payload)
        return web.Response(body=payload, content_type="application/json")

    async def _image(self, edit: EditRequest) -> str:
        """The rendered output as base64, from the cache when these inputs were seen before."""
        key = (
            edit.image_sha256, edit.mask_sha256, edit.prompt, edit.size,
            edit.output_format, edit.background, edit.output_compression,
        )  # fmt: skip
        cached = self.renders.get(key)
        if isinstance(cached, str):
            return cached
        encoded = await asyncio.to_thread(_render_b64, edit)
        self.renders.put(key, encoded)
        return encoded

    def _data(self, request: web.Request, edit: EditRequest, name: str, image: str) -> list[dict]:
        if name == "datauri":
            return [{"b64_json": f"data:{MIME[edit.output_format]};base64,{image}"}] * edit.n
        if name != "url":
            return [{"b64_json": image}] * edit.n
        raw = base64.b64decode(image)
        urls = []
        for index in range(edit.n):
            file_name = f"{request[REQUEST_ID]}-{index}.{edit.output_format}"
            self.hosted.put(file_name, raw)
            urls.append({"url": f"{request.url.origin()}/_sim/images/{file_name}"})
        return urls

    async def _reset(self, request: web.Request, payload: bytes) -> web.StreamResponse:
        """Headers and half the body, then the connection closes instead of the rest."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(payload)
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        _drop(request)
        return response

    async def _stall(self, request: web.Request) -> None:
        """Answer nothing until the client gives up or the server shuts down."""
        while not self.closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), STALL_POLL_S)
        _drop(request)

    async def hosted_image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        data = self.hosted.get(name)
        if not isinstance(data, bytes):
            return replies.api_error(
                404, f"No simulated image {name!r} (it expired or never existed).",
                type="invalid_request_error",
            )  # fmt: skip
        return web.Response(body=data, content_type=MIME[name.rsplit(".", 1)[-1]])

    async def stats_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot())

    async def reset_view(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.snapshot())

    async def unknown_route(self, request: web.Request) -> web.Response:
        return replies.api_error(
            404, f"Invalid URL ({request.method} {request.path})", type="invalid_request_error"
        )

    async def stamp(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """x-request-id on every answer; timing and rate-limit headers on the API's routes."""
        response.headers["x-request-id"] = request.get(REQUEST_ID) or new_request_id()
        if ARRIVED in request:
            elapsed_ms = (self.clock() - request[ARRIVED]) * 1000
            response.headers["openai-processing-ms"] = str(max(0, round(elapsed_ms)))
        if self.bucket is not None and request.path.startswith("/v1/"):
            window = self.bucket.window()
            response.headers["x-ratelimit-limit-requests"] = str(window.limit)
            response.headers["x-ratelimit-remaining-requests"] = str(window.remaining)
            response.headers["x-ratelimit-reset-requests"] = format_duration(window.reset_s)

    async def shutdown(self, app: web.Application) -> None:
        self.closing.set()


def _render_b64(edit: EditRequest) -> str:
    width, height = (int(side) for side in edit.size.split("x"))
    data = render(
        edit.images[0], edit.mask, edit.prompt, (width, height),
        edit.output_format, edit.background, edit.output_compression,
    )  # fmt: skip
    return base64.b64encode(data).decode("ascii")


def _drop(request: web.Request) -> None:
    """Close the connection where it stands: the client gets what was sent, then EOF."""
    if request.transport is not None:
        request.transport.close()


SIMULATOR = web.AppKey("simulator", Simulator)


def make_app(
    config: SimConfig | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> web.Application:
    """The simulator as an aiohttp application; `sleep` is where generation time is spent."""
    simulator = Simulator(config or SimConfig(), clock, sleep)
    app = web.Application()
    app[SIMULATOR] = simulator
    app.router.add_post("/v1/images/edits", simulator.edits)
    app.router.add_route("*", "/v1/{tail:.*}", simulator.unknown_route)
    app.router.add_get("/_sim/stats", simulator.stats_view)
    app.router.add_post("/_sim/reset", simulator.reset_view)
    app.router.add_get("/_sim/images/{name}", simulator.hosted_image)
    app.on_response_prepare.append(simulator.stamp)
    app.on_shutdown.append(simulator.shutdown)
    return app
