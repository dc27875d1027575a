"""http(s):// inputs over aiohttp: a HEAD for the validators, a GET capped in size.

Statuses are judged the way the API's are: 404 and 410 say the input is missing, 401 and 403
that access is refused (no retry helps either); 408, 429 and 5xx, timeouts and resets are
worth another try.
"""

from __future__ import annotations

import aiohttp

from pipeline.core.plan import Remote
from pipeline.inputs.validators import FetchError, Validators

_CHUNK = 256 * 1024
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpReader:
    def __init__(self, session: aiohttp.ClientSession, *, timeout_s: float, max_bytes: int):
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_bytes = max_bytes

    async def stat(self, ref: Remote) -> Validators:
        try:
            async with self.session.head(
                ref.url, timeout=self.timeout, allow_redirects=True
            ) as response:
                if response.status in (405, 501):
                    return Validators()  # no HEAD here: nothing to compare, fetch it
                _judge(ref, response.status)
                return _validators(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport(ref, exc) from None

    async def fetch(self, ref: Remote) -> tuple[bytes, Validators]:
        try:
            async with self.session.get(
                ref.url, timeout=self.timeout, allow_redirects=True
            ) as response:
                _judge(ref, response.status)
                declared = response.content_length
                if declared is not None and declared > self.max_bytes:
                    raise _too_large(ref, declared, self.max_bytes)
                body = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise _too_large(ref, None, self.max_bytes)
                return bytes(body), _validators(response, len(body))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport(ref, exc) from None


def _judge(ref: Remote, status: int) -> None:
    if 200 <= status < 300:
        return
    if status in (404, 410):
        raise FetchError(f"{ref}: not found (HTTP {status})", missing=True)
    if status in (401, 403):
        raise FetchError(
            f"{ref}: access refused (HTTP {status}); a URL that needs credentials must carry "
            "them itself (a presigned URL), or use the store's own URL (s3://, gs://, az://)"
        )
    raise FetchError(f"{ref}: HTTP {status}", retryable=status in _RETRYABLE)


def _validators(response: aiohttp.ClientResponse, size: int | None = None) -> Validators:
    if size is None:
        size = response.content_length
    return Validators(
        size=size,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
    )


def _too_large(ref: Remote, size: int | None, limit: int) -> FetchError:
    told = f"is {size / 2**20:.1f} MB, more" if size is not None else "sends more"
    return FetchError(f"{ref}: {told} than the {limit / 2**20:g} MB an input may have")


def _transport(ref: Remote, exc: BaseException) -> FetchError:
    what = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
    return FetchError(f"{ref}: {what}", retryable=True)
