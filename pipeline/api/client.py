"""One HTTP attempt at an image endpoint (edits or generations, on the route of the run's
provider: providers.py), with the body bodies.py builds; the answer becomes decoded, verified
images (payload.py) or an AttemptError of the right class. The runner owns the loop around it:
pacing, retries, the ledger. Every body read is capped (caps.py) and every string that leaves
the client has its secrets blanked (core.secrets) before it is cut to length.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp

from pipeline.api.answers import classify, fix_hint, one_line, parse_retry_after, read_error
from pipeline.api.bodies import JSON, ImageRequest, build_body
from pipeline.api.caps import (
    DEFAULT_MAX_IMAGE_MB,
    MB,
    TooLarge,
    answer_cap,
    read_capped,
    read_prefix,
)
from pipeline.api.payload import parse_success, unusable, verify_images
from pipeline.api.providers import Route
from pipeline.api.vocabulary import standard_headers
from pipeline.core.errors import AttemptError, RetryableError
from pipeline.core.plan import EDITS, GENERATIONS
from pipeline.core.secrets import Redactor, scrub_url, url_secrets

_KEPT_HEADERS = ("retry-after", "retry-after-ms")
# A body this small is parsed and its images checked on the event loop: tens of microseconds,
# less than the hand-off to a thread and back costs. Larger ones go to a thread.
INLINE_BYTES = 64 * 1024
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EditResponse:
    images: list[bytes]  # decoded and verified, in the order the server sent them
    output_format: str  # png, jpeg or webp: sniffed from the bytes, which is what gets written
    usage: object  # as the server sent it (None: it sent none); cost.usage reads it
    request_id: str | None
    status: int
    body_size: int
    latency_s: float
    headers: Mapping[str, str] = field(default_factory=dict)  # x-ratelimit-*, retry-after*


def _transport_error(
    exc: BaseException, doing: str, timeout_s: float, redact: Redactor
) -> RetryableError:
    if isinstance(exc, TimeoutError):
        kind, what = "timeout", f"no complete response within {timeout_s:g} s"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        kind, what = "truncated body", "the connection ended before the body was complete"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind, what = "cannot connect", str(exc)
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        kind, what = "connection reset", str(exc) or type(exc).__name__
    else:
        kind, what = "connection error", f"{type(exc).__name__}: {exc}"
    return RetryableError(f"{doing}: {one_line(redact(what), 200)}", transport=kind)


async def _off_loop(size: int, work: Callable[..., T], *args: object) -> T:
    """work(*args) on the loop for up to INLINE_BYTES of input, else in a thread."""
    if size <= INLINE_BYTES:
        return work(*args)
    return await asyncio.to_thread(work, *args)


class EditsClient:
    """Sends one request (an edit or a generation) per call; holds no state between calls but
    its configuration (and a semaphore that bounds how many answers are decoded at once).
    `route` is a provider's Route, or a base URL for OpenAI's route with a bearer key."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        route: Route | str,
        api_key: str | None,
        *,
        timeout_s: float,
        api_key_env: str = "OPENAI_API_KEY",
        clock: Callable[[], float] = time.monotonic,
        decoding: int = 4,
        max_image_mb: float = DEFAULT_MAX_IMAGE_MB,
    ):
        self._session = session
        self._decoding = asyncio.Semaphore(decoding)  # 200 bodies read and parsed at once
        self._route = route if isinstance(route, Route) else Route(base_url=route)
        self._shown_base_url = scrub_url(self._route.base_url)
        self._urls = {endpoint: self._route.url(endpoint) for endpoint in (EDITS, GENERATIONS)}
        self._headers = self._route.request_headers(api_key)
        self._key_env = api_key_env
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._max_image = int(max_image_mb * MB)
        # Some servers echo the key they refused, a gateway's header or the URL with its
        # query: none may reach a message, the ledger or a log.
        self._redact = Redactor([api_key, *self._route.secrets, *url_secrets(self._route.base_url)])

    async def edit(self, req: ImageRequest) -> EditResponse:
        """One attempt. Raises an AttemptError subclass saying what to do next; one raised
        after a 2xx status arrived is `billed` (the provider charged for the answer)."""
        try:
            return await self._edit(req)
        except AttemptError as exc:
            raise self._scrubbed(exc) from None

    async def _edit(self, req: ImageRequest) -> EditResponse:
        started = self._clock()
        status: int | None = None
        kept: dict[str, str] = {}
        request_id, usage = None, None
        url = self._urls[req.endpoint]
        if req.images and self._route.body == JSON:
            # base64 of every image, then the JSON text: CPU work sized by the inputs, kept
            # off the event loop (a multipart form streams the bytes as they are).
            payload = await asyncio.to_thread(build_body, req, JSON)
        else:
            payload = build_body(req, self._route.body)
        try:
            async with self._session.post(
                url,
                data=payload.data,
                headers={**self._headers, **payload.headers},
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                headers = standard_headers(resp.headers)  # a gateway's renamed ones read too
                kept = {
                    k: v
                    for k, v in headers.items()
                    if k.startswith("x-ratelimit-") or k in _KEPT_HEADERS
                }
                request_id = headers.get("x-request-id")
                if not 200 <= status < 300:
                    body = await read_prefix(resp)
                    raise _tag(self._http_error(req, status, body, headers, request_id), kept)
                # A 200's body is base64 JSON, 1.33 times the image, parsed into a string as
                # large again: reading and decoding at most a few at once keeps peak memory
                # near concurrency x (input + image) instead of x (input + 3.7 images). The
                # bodies waiting meanwhile stay in the socket, paused by flow control.
                async with self._decoding:
                    body = await read_capped(resp, answer_cap(req.n, self._max_image))
                    body_size = len(body)
                    entries, usage = await _off_loop(body_size, parse_success, body, req.n)
                    del body
            images = [e if isinstance(e, bytes) else await self._download(e) for e in entries]
            output_format = await _off_loop(sum(map(len, images)), verify_images, images)
        except TooLarge as exc:
            error = unusable(f"the body is {exc} (limits.max_image_mb x n); connection closed")
            raise _billed(error, status, request_id, kept) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            doing = f"POST {scrub_url(url)}"
            error = _transport_error(exc, doing, self._timeout_s, self._redact)
            raise _billed(error, status, request_id, kept) from exc
        except RetryableError as exc:
            if exc.usage is None:  # images that fail after the body was read: its usage holds
                exc.usage = usage
            raise _billed(exc, status, request_id, kept) from None
        return EditResponse(
            images=images,
            output_format=output_format,
            usage=usage,
            request_id=request_id,
            status=status,
            body_size=body_size,
            latency_s=self._clock() - started,
            headers=kept,
        )

    def _http_error(
        self,
        req: ImageRequest,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        request_id: str | None,
    ) -> AttemptError:
        body = self._redact.body(body)  # before any field is read out of it, or cut
        error, message = read_error(status, body, headers.get("content-type", ""))
        cls = classify(status, error)
        hint = fix_hint(
            cls,
            status,
            error,
            model=req.model,
            key_env=self._key_env,
            base_url=self._shown_base_url,
        )
        if 300 <= status < 400:
            hint += f" (it redirects to {scrub_url(headers.get('location', 'nowhere'))})"
        fields = {key: (error or {}).get(key) for key in ("type", "code", "param")}
        return cls(
            f"{message}; {hint}" if hint else message,
            http_status=status,
            **{key: None if value is None else str(value) for key, value in fields.items()},
            request_id=request_id,
            retry_after_s=parse_retry_after(headers, time.time()),
        )

    def _scrubbed(self, exc: AttemptError) -> AttemptError:
        """Every string of the error with its secrets blanked: message, type, code, param,
        request id (each cut to a sane length after, never before)."""
        redact = self._redact
        exc.message = redact(exc.message)
        exc.args = (exc.message,)
        exc.type, exc.code, exc.param = (
            None if value is None else one_line(redact(value), 200)
            for value in (exc.type, exc.code, exc.param)
        )
        if exc.request_id is not None:
            exc.request_id = one_line(redact(exc.request_id), 200)
        return exc

    async def _download(self, url: str) -> bytes:
        # The key is sent only to the API: a result URL may point at another host.
        where = scrub_url(url)  # a signed URL's query is a credential of its own
        try:
            async with self._session.get(url, timeout=self._timeout) as resp:
                if resp.status != 200:
                    raise unusable(f"downloading {where} gave HTTP {resp.status}")
                return bytes(await read_capped(resp, self._max_image))
        except TooLarge as exc:
            raise unusable(f"downloading {where}: the image is {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            doing = f"downloading {where}"
            raise _transport_error(exc, doing, self._timeout_s, self._redact) from exc


def _tag(exc: AttemptError, headers: Mapping[str, str]) -> AttemptError:
    exc.headers = dict(headers)  # read by the rate controller
    return exc


def _billed(
    exc: AttemptError, status: int | None, request_id: str | None, headers: Mapping[str, str]
) -> AttemptError:
    """Mark a failure after a 2xx status arrived: the provider billed that answer (a body cut
    by a reset or a timeout, unusable images, a failed download). Others pass unchanged."""
    if status is None or not 200 <= status < 300:
        return exc
    exc.http_status, exc.request_id, exc.billed = status, request_id, True
    return _tag(exc, headers)
