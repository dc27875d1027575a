"""The simulator's aiohttp application: the routes, how an images request is read and decided
(key, Azure deployment, body, checks, rate limit, then service.py's outcome and answer; the
wire in wire.py), and the headers every answer carries.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from pipeline.simulator import azure, gateway, replies
from pipeline.simulator.answer import Answer, InvalidRequest
from pipeline.simulator.auth import key_denial
from pipeline.simulator.batches import BatchRoutes
from pipeline.simulator.config import SimConfig
from pipeline.simulator.files import FileRoutes, FileStore
from pipeline.simulator.form import Form, read_body, read_form
from pipeline.simulator.jsonbody import JSON_TYPE, form_of, parse_json
from pipeline.simulator.outcomes import SCRIPT_HEADER
from pipeline.simulator.ratelimit import TokenBucket, format_duration
from pipeline.simulator.render import MIME
from pipeline.simulator.service import Call, ImageService, script_of
from pipeline.simulator.stats import Stats
from pipeline.simulator.validation import ENDPOINTS, check_form
from pipeline.simulator.wire import send

REQUEST_ID = web.RequestKey("request_id", str)
ARRIVED = web.RequestKey("arrived", float)
API_PREFIXES = ("/v1/", "/openai/")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse | Answer]]


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class Route:
    """Which images route a request came in by: OpenAI's, Azure's v1, or Azure's classic
    (the deployment in the path)."""

    endpoint: str
    azure: bool = False
    classic: bool = False


class Simulator:
    """One simulated provider: its limits, counters, files and image service."""

    def __init__(
        self,
        config: SimConfig,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        self.config = config
        self.clock = clock
        self.bucket = TokenBucket(config.rpm, config.burst, clock) if config.rpm > 0 else None
        self.stats = Stats(clock)
        self.service = ImageService(config, self.stats, sleep)
        self.files = FileStore()
        self.file_routes = FileRoutes(self.files, self.max_bytes)
        self.batch_routes = BatchRoutes(config, self.files, self.service)
        self.closing = asyncio.Event()

    @property
    def max_bytes(self) -> int:
        return int(self.config.max_body_mb * 2**20)

    async def images(self, request: web.Request, route: Route) -> web.StreamResponse:
        request[REQUEST_ID], request[ARRIVED] = new_request_id(), self.clock()
        self.stats.arrive()
        status, outcome = None, "error"
        try:
            answer, outcome = await self._images(request, route)
            response = await send(request, self._outgoing(answer), self.closing)
            if answer.transport not in ("reset", "stall"):
                status = response.status
            return response
        finally:
            self.stats.depart(status, outcome)

    async def _images(self, request: web.Request, route: Route) -> tuple[Answer, str]:
        denied = key_denial(request.headers, self.config.api_key, azure=route.azure)
        if denied is not None:
            return denied, "unauthorized"
        deployments, model = self.config.azure_deployments, None
        if route.classic:
            if not request.query.get("api-version"):
                return azure.missing_api_version(), "not_found"
            model = azure.deployment_model(request.match_info["deployment"], deployments)
            if model is None:
                return azure.deployment_not_found(request.match_info["deployment"]), "not_found"
        try:
            form = await self._read(request, route)
            if route.azure and not route.classic:  # v1: the body's model names the deployment
                name = _deployment_field(form)
                model = azure.deployment_model(name, deployments)
                if model is None:
                    return azure.deployment_not_found(name), "not_found"
            checked = await asyncio.to_thread(
                check_form,
                form,
                route.endpoint,
                model=model,
                default_model=self.config.default_model,
            )
            script = script_of(request.headers.get(SCRIPT_HEADER), checked.prompt)
        except InvalidRequest as exc:
            return replies.invalid(exc), "invalid"
        if self.bucket is not None:
            admission = self.bucket.try_take()
            if not admission.admitted:
                window = self.bucket.window()
                reply = replies.rate_limited(checked.model, window, admission.retry_after_s)
                return reply, "rate_limited"
        origin = str(request.url.origin())
        call = Call(checked, request[REQUEST_ID], origin, script, azure=route.azure)
        try:
            return await self.service.answer(call)
        except InvalidRequest as exc:
            return replies.invalid(exc), "invalid"

    async def _read(self, request: web.Request, route: Route) -> Form:
        if request.content_type == JSON_TYPE:
            body = parse_json(await read_body(request, self.max_bytes))
            return await asyncio.to_thread(form_of, body, route.endpoint, self.files.data)
        if route.endpoint == "generations":
            raise InvalidRequest(
                f"Invalid Content-Type header ({request.content_type or 'none'}); "
                "images/generations takes application/json.",
                code=None,
            )
        return await read_form(request, self.max_bytes)

    def _outgoing(self, answer: Answer) -> Answer:
        """The answer as the client receives it (a gateway in front rewrites it)."""
        if self.config.gateway == gateway.LITELLM:
            return gateway.litellm_error(answer)
        return answer

    def guarded(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A Files or Batches handler behind the bearer key, its refusals as API errors."""

        async def route(request: web.Request) -> web.StreamResponse:
            request[REQUEST_ID] = new_request_id()
            answer = key_denial(request.headers, self.config.api_key)
            if answer is None:
                try:
                    result = await handler(request)
                except InvalidRequest as exc:
                    result = replies.invalid(exc)
                if isinstance(result, web.StreamResponse):
                    return result
                answer = result
            return self._outgoing(answer).response()

        return route

    async def hosted_image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        data = self.service.hosted.get(name)
        if not isinstance(data, bytes):
            return replies.api_error(
                404, f"No simulated image {name!r} (it expired or never existed).",
                type="invalid_request_error",
            ).response()  # fmt: skip
        return web.Response(body=data, content_type=MIME[name.rsplit(".", 1)[-1]])

    async def stats_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot(self.batch_routes.by_status()))

    async def rate_view(self, request: web.Request) -> web.Response:
        """POST {"rpm": N}: the rate limit from now on (0 lifts it), for benchmarks of a
        provider whose limit changes while a client runs."""
        try:
            rpm = float((await request.json())["rpm"])
            if not rpm >= 0:
                raise ValueError(rpm)
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'send {"rpm": N} with N >= 0'}, status=400)
        if rpm == 0:
            self.bucket = None
        elif self.bucket is None:
            self.bucket = TokenBucket(rpm, self.config.burst, self.clock)
        else:
            self.bucket.change(rpm)
        return web.json_response({"rpm": rpm})

    async def reset_view(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.snapshot())

    async def unknown_route(self, request: web.Request) -> web.Response:
        return replies.api_error(
            404, f"Invalid URL ({request.method} {request.path})", type="invalid_request_error"
        ).response()

    async def stamp(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """x-request-id on every answer; timing and rate-limit headers on the API's routes."""
        response.headers["x-request-id"] = request.get(REQUEST_ID) or new_request_id()
        if ARRIVED in request:
            elapsed_ms = (self.clock() - request[ARRIVED]) * 1000
            response.headers["openai-processing-ms"] = str(max(0, round(elapsed_ms)))
        if self.bucket is not None and request.path.startswith(API_PREFIXES):
            window = self.bucket.window()
            response.headers["x-ratelimit-limit-requests"] = str(window.limit)
            response.headers["x-ratelimit-remaining-requests"] = str(window.remaining)
            response.headers["x-ratelimit-reset-requests"] = format_duration(window.reset_s)
        if self.config.gateway == gateway.LITELLM:
            gateway.rename_headers(response.headers)

    async def shutdown(self, app: web.Application) -> None:
        self.closing.set()


def _deployment_field(form: Form) -> str:
    """The deployment an Azure v1 request names in its `model` field."""
    name = form.fields.get("model")
    if not name:
        raise InvalidRequest(
            "Missing required parameter: 'model' (the deployment's name).",
            param="model",
            code="missing_required_parameter",
        )
    return name


SIMULATOR = web.AppKey("simulator", Simulator)


def _images_route(simulator: Simulator, route: Route) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await simulator.images(request, route)

    return handler


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
    add = app.router.add_post
    for endpoint in ENDPOINTS:
        add(f"/v1/images/{endpoint}", _images_route(simulator, Route(endpoint)))
        add(f"/openai/v1/images/{endpoint}", _images_route(simulator, Route(endpoint, True)))
        add(
            f"/openai/deployments/{{deployment}}/images/{endpoint}",
            _images_route(simulator, Route(endpoint, True, True)),
        )
    files, guarded = simulator.file_routes, simulator.guarded
    add("/v1/files", guarded(files.create))
    app.router.add_get("/v1/files/{file_id}", guarded(files.retrieve))
    app.router.add_get("/v1/files/{file_id}/content", guarded(files.content))
    app.router.add_delete("/v1/files/{file_id}", guarded(files.delete))
    batches = simulator.batch_routes
    add("/v1/batches", guarded(batches.create))
    app.router.add_get("/v1/batches", guarded(batches.listing))
    app.router.add_get("/v1/batches/{batch_id}", guarded(batches.retrieve))
    add("/v1/batches/{batch_id}/cancel", guarded(batches.cancel))
    for prefix in API_PREFIXES:
        app.router.add_route("*", prefix + "{tail:.*}", simulator.unknown_route)
    app.router.add_get("/_sim/stats", simulator.stats_view)
    app.router.add_post("/_sim/reset", simulator.reset_view)
    app.router.add_post("/_sim/rate", simulator.rate_view)
    app.router.add_get("/_sim/images/{name}", simulator.hosted_image)
    app.on_response_prepare.append(simulator.stamp)
    app.on_shutdown.append(simulator.shutdown)
    app.on_shutdown.append(batches.close)
    return app
