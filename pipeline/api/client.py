"""One HTTP attempt at an image endpoint (edits or generations, on the route of the run's
provider: providers.py), with the body bodies.py builds; the answer becomes decoded, verified
images or an AttemptError of the right class. The runner owns the loop around it: pacing,
retries, the ledger.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
from PIL import Image

from pipeline.api.answers import classify, fix_hint, one_line, parse_retry_after, read_error
from pipeline.api.bodies import ImageRequest, build_body
from pipeline.api.providers import Route
from pipeline.api.vocabulary import standard_headers
from pipeline.core.errors import AttemptError, RetryableError
from pipeline.media.images import sniff_format

EditRequest = ImageRequest  # its name from before generations: an edit or a generation
_KEPT_HEADERS = ("retry-after", "retry-after-ms")


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


def _unusable(what: str) -> RetryableError:
    # A 2xx body we cannot use is retried like a 5xx (cause bad_response: no transport error).
    return RetryableError(f"unusable response: {what}")


def _decode_b64(text: str) -> bytes:
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if not head.endswith(";base64"):
            raise _unusable(f"a data: URL that is not base64 ({one_line(head, 60)})")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _unusable(f"b64_json is not valid base64 ({exc})") from None


def parse_success(body: bytes, expected_n: int | None) -> tuple[list[bytes | str], object]:
    """The decoded images (or URLs still to download) and the usage of a 2xx body.

    Fewer images than asked for are kept (asking again would pay for all n again); more are
    cut to the n asked for. An unusable body raises a RetryableError carrying the usage it
    had (the provider billed it), None when none could be read.
    """
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise _unusable(f"the body is not JSON ({one_line(str(exc), 120)})") from None
    return read_answer(doc, expected_n)


def read_answer(doc: object, expected_n: int | None) -> tuple[list[bytes | str], dict | None]:
    """parse_success over a body already parsed (a batch's output line carries it so)."""
    usage = doc.get("usage") if isinstance(doc, dict) else None
    try:
        return _entries(doc, expected_n), usage
    except RetryableError as exc:
        exc.usage = usage
        raise


def _entries(doc: object, expected_n: int | None) -> list[bytes | str]:
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not data:
        raise _unusable("the body has no `data` list of images")
    if expected_n is not None and len(data) > expected_n:
        data = data[:expected_n]
    entries: list[bytes | str] = []
    for index, entry in enumerate(data):
        b64 = entry.get("b64_json") if isinstance(entry, dict) else None
        url = entry.get("url") if isinstance(entry, dict) else None
        if isinstance(b64, str) and b64:
            entries.append(_decode_b64(b64))
        elif isinstance(url, str) and url.startswith("data:"):
            entries.append(_decode_b64(url))
        elif isinstance(url, str) and url.startswith(("http://", "https://")):
            entries.append(url)
        else:
            raise _unusable(f"data[{index}] has neither b64_json nor an http(s) url")
    return entries


def verify_images(images: list[bytes]) -> str:
    """Check each image is whole (blocking: run in a thread); the first one's format.

    Structural checks, not a full decode, so a 4 MB image costs a checksum pass rather than a
    decompression: the header must parse, a PNG's chunk checksums must hold up to IEND, a JPEG
    must end with its EOI marker, a WEBP's RIFF size must match its length.
    """
    kinds = []
    for index, data in enumerate(images):
        kind = sniff_format(data)
        if kind is None:
            raise _unusable(f"image {index} is not PNG, JPEG or WEBP (starts {data[:8]!r})")
        try:
            with Image.open(io.BytesIO(data), formats=[kind.upper()]) as img:
                img.verify()  # PNG: every chunk's CRC, up to IEND
            _check_end(kind, data)
        except Exception as exc:  # Pillow raises many types for bad data; all mean "unusable"
            raise _unusable(
                f"image {index} ({kind}) is not whole: {one_line(str(exc), 120)}"
            ) from None
        kinds.append(kind)
    return kinds[0]


def _check_end(kind: str, data: bytes) -> None:
    if kind == "jpeg" and b"\xff\xd9" not in data[-64:]:
        raise ValueError("no end-of-image marker: the JPEG is cut short")
    if kind == "webp" and int.from_bytes(data[4:8], "little") + 8 > len(data):
        raise ValueError("shorter than its RIFF header says: the WEBP is cut short")


def _transport_error(exc: BaseException, doing: str, timeout_s: float) -> RetryableError:
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
    return RetryableError(f"{doing}: {one_line(what, 200)}", transport=kind)


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
    ):
        self._session = session
        self._decoding = asyncio.Semaphore(decoding)  # 200 bodies read and parsed at once
        self._route = route if isinstance(route, Route) else Route(base_url=route)
        self._base_url = self._route.base_url
        self._api_key = api_key
        self._headers = self._route.request_headers(api_key)
        self._key_env = api_key_env
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock

    def _redact(self, text: str) -> str:
        # Some servers echo the key they refused (or a gateway's header); it must reach no
        # message, ledger or log.
        for secret in (self._api_key, *self._route.secrets):
            if secret:
                text = text.replace(secret, "***")
        return text

    async def edit(self, req: ImageRequest) -> EditResponse:
        """One attempt. Raises an AttemptError subclass saying what to do next; one raised
        after a 2xx status arrived is `billed` (the provider charged for the answer)."""
        started = self._clock()
        status: int | None = None
        kept: dict[str, str] = {}
        request_id = None
        url = self._route.url(req.endpoint)
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
                    body = await resp.read()
                    raise _tag(self._http_error(req, status, body, headers, request_id), kept)
                # A 200's body is base64 JSON, 1.33 times the image, parsed into a string as
                # large again: reading and decoding at most a few at once keeps peak memory
                # near concurrency x (input + image) instead of x (input + 3.7 images). The
                # bodies waiting meanwhile stay in the socket, paused by flow control.
                async with self._decoding:
                    body = await resp.read()
                    body_size = len(body)
                    entries, usage = await asyncio.to_thread(parse_success, body, req.n)
                    del body
            images = [e if isinstance(e, bytes) else await self._download(e) for e in entries]
            output_format = await asyncio.to_thread(verify_images, images)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = _transport_error(exc, f"POST {url}", self._timeout_s)
            raise _billed(error, status, request_id, kept) from exc
        except RetryableError as exc:
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
        error, message = read_error(status, body, headers.get("content-type", ""))
        cls = classify(status, error)
        hint = fix_hint(
            cls, status, error, model=req.model, key_env=self._key_env, base_url=self._base_url
        )
        if 300 <= status < 400:
            hint += f" (it redirects to {headers.get('location', 'nowhere')})"
        fields = {key: (error or {}).get(key) for key in ("type", "code", "param")}
        return cls(
            self._redact(f"{message}; {hint}" if hint else message),
            http_status=status,
            **{key: None if value is None else str(value) for key, value in fields.items()},
            request_id=request_id,
            retry_after_s=parse_retry_after(headers, time.time()),
        )

    async def _download(self, url: str) -> bytes:
        # The key is sent only to the API: a result URL may point at another host.
        where = url.split("?", 1)[0]  # a signed URL's query is a credential of its own
        try:
            async with self._session.get(url, timeout=self._timeout) as resp:
                if resp.status != 200:
                    raise _unusable(f"downloading {where} gave HTTP {resp.status}")
                return await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc, f"downloading {where}", self._timeout_s) from exc


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
