"""The Files and Batches APIs (API-FACTS "Batch API"): upload a file, create, retrieve, list
and cancel a batch, and download a result file to disk. Each call retries what a retry can fix
(429, 5xx, connection errors) a few times, honouring the server's retry-after, and raises the
AttemptError class of `answers.classify` for the rest, so a bad key aborts the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from pipeline.api.answers import classify, parse_retry_after, quota_spent, read_error
from pipeline.core.errors import AttemptError, RetryableError

ENDED = frozenset({"completed", "expired", "cancelled", "failed"})
_ERROR_BODY_CAP = 256 * 1024
_JSON_CAP = 16 * 2**20  # a batch or file object, or a page of batches


class BatchAPI:
    """The provider's Files and Batches endpoints over one aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 300,
        api_key_env: str = "OPENAI_API_KEY",
        attempts: int = 5,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        headers: dict[str, str] | None = None,
        secrets: tuple[str, ...] = (),
    ):
        """`headers`: every header a call carries (the route's, with the key in the one its
        auth names); without them, the key goes as a bearer token. `secrets`: values never
        to appear in a message (the key is one)."""
        self._session = session
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        if headers is None:
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._auth = dict(headers)
        self._secrets = tuple(s for s in (api_key, *secrets) if s)
        self._key_env = api_key_env
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._attempts = attempts
        self._sleep = sleep

    def _url(self, path: str, query: dict[str, str] | None = None) -> str:
        parts = urllib.parse.urlsplit(self._base)
        url = parts._replace(path=parts.path + path).geturl()
        return f"{url}?{urllib.parse.urlencode(query)}" if query else url

    async def upload(self, data: bytes, filename: str, purpose: str, content_type: str) -> dict:
        """POST /files; the file object ({"id": "file-...", ...})."""

        def form() -> aiohttp.FormData:
            body = aiohttp.FormData(default_to_multipart=True)
            body.add_field("purpose", purpose)
            body.add_field("file", data, filename=filename, content_type=content_type)
            return body

        return await self._json("POST", "/files", data=form)

    async def create_batch(
        self, input_file_id: str, endpoint: str, window: str, metadata: dict[str, str]
    ) -> dict:
        """POST /batches, tried once: creating is not idempotent, so after a failure the
        caller looks for the batch (by its input file) before trying again."""
        body = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": window,
            "metadata": metadata,
        }
        return await self._json("POST", "/batches", json_body=body, once=True)

    async def get_batch(self, batch_id: str) -> dict:
        return await self._json("GET", f"/batches/{urllib.parse.quote(batch_id)}")

    async def cancel_batch(self, batch_id: str) -> dict:
        return await self._json("POST", f"/batches/{urllib.parse.quote(batch_id)}/cancel")

    async def list_batches(self, *, after: str | None = None, limit: int = 100) -> dict:
        """One page, newest first: {"data": [...], "has_more": bool, "last_id": ...}."""
        query = {"limit": str(limit)}
        if after:
            query["after"] = after
        return await self._json("GET", "/batches", query=query)

    async def download(self, file_id: str, dest: Path) -> int:
        """GET /files/{id}/content into `dest`, written whole (a temp file renamed); bytes."""
        url = self._url(f"/files/{urllib.parse.quote(file_id)}/content")
        temp = dest.with_name(f".{dest.name}.{os.getpid()}.part")

        async def fetch() -> int:
            async with self._session.get(url, headers=self._auth, timeout=self._timeout) as resp:
                if resp.status != 200:
                    raise self._error(resp.status, await resp.content.read(_ERROR_BODY_CAP), resp)
                size = 0
                with open(temp, "wb") as f:  # noqa: ASYNC230 (small writes between reads)
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        f.write(chunk)
                        size += len(chunk)
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(temp, dest)
            return size

        try:
            return await self._retrying(f"GET {url}", fetch)
        finally:
            temp.unlink(missing_ok=True)

    async def _json(
        self,
        method: str,
        path: str,
        *,
        data: Callable[[], aiohttp.FormData] | None = None,
        json_body: dict | None = None,
        query: dict[str, str] | None = None,
        once: bool = False,
    ) -> dict:
        url = self._url(path, query)

        async def call() -> dict:
            async with self._session.request(
                method,
                url,
                data=data() if data is not None else None,
                json=json_body,
                headers=self._auth,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                if not 200 <= resp.status < 300:
                    raise self._error(resp.status, await resp.content.read(_ERROR_BODY_CAP), resp)
                body = await resp.content.read(_JSON_CAP)
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise RetryableError(f"{method} {url}: the answer is not a JSON object")
            return doc

        return await self._retrying(f"{method} {url}", call, 1 if once else self._attempts)

    async def _retrying(
        self, doing: str, call: Callable[[], Awaitable[Any]], attempts: int | None = None
    ) -> Any:
        attempts = attempts or self._attempts
        for attempt in range(1, attempts + 1):
            try:
                return await call()
            except (aiohttp.ClientError, TimeoutError) as exc:
                error: AttemptError = RetryableError(
                    f"{doing}: {type(exc).__name__}: {exc}", transport="connection"
                )
            except RetryableError as exc:
                error = exc
            if attempt == attempts:
                raise error
            wait = error.retry_after_s if error.retry_after_s is not None else 2.0 ** (attempt - 1)
            await self._sleep(min(wait, 60.0))
        raise AssertionError("unreachable")

    def _error(self, status: int, body: bytes, resp: aiohttp.ClientResponse) -> AttemptError:
        error, message = read_error(status, body, resp.headers.get("Content-Type", ""))
        cls = classify(status, error)
        hint = batch_hint(cls, status, error, key_env=self._key_env, base_url=self._base)
        text = f"{resp.method} {resp.url.with_query(None)}: {message}"
        if hint:
            text += f"; {hint}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return cls(
            text,
            http_status=status,
            type=None if error is None else _str(error.get("type")),
            code=None if error is None else _str(error.get("code")),
            request_id=resp.headers.get("x-request-id"),
            retry_after_s=parse_retry_after(resp.headers, time.time()),
        )


def batch_hint(
    cls: type[AttemptError], status: int, error: dict | None, *, key_env: str, base_url: str
) -> str:
    """What to change when a Files or Batches call fails for good ("" when a retry may do)."""
    if status < 400 or status in (408, 409) or status >= 500:
        return ""
    if status == 401:
        return f"check the API key in ${key_env} (the variable endpoint.api_key_env names)"
    if status == 403:
        return "the key may not use the Batch API of this project; fix its permissions"
    if status == 404:
        return (
            f"{base_url} has no such file or batch, or no Batch API: batch mode needs a "
            "provider that serves /files and /batches (run without --batch otherwise)"
        )
    if status == 429 and quota_spent(error):
        return "the quota or credit is spent: add credit, then run again to resume"
    if status == 429:
        return "the provider's batch queue limit is reached; run again when batches have ended"
    return "the provider refused the request; see its message"


def _str(value: object) -> str | None:
    return None if value is None else str(value)
