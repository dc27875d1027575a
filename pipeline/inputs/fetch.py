"""The fetcher: a remote input's local copy, fetched at most once per change.

`local(ref)` gives the cached copy when the store's validators say the object is unchanged
(one HEAD), else downloads it (capped in size, each attempt bounded by a timeout, retried
with backoff like the API) into the content cache. `sha256(ref, recorded)` is the resume's
question: the digest of the object as it is now, answered from a recorded entry (the ledger's
or the cache's) when the validators match, without a download. Two items naming one URL
share one fetch.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from pipeline.core.plan import Remote
from pipeline.inputs.cache import ContentCache, Fetched
from pipeline.inputs.http import HttpReader
from pipeline.inputs.objects import ObjectReader
from pipeline.inputs.validators import FetchError, Validators, unchanged

MAX_BYTES = 50 * 2**20  # the API's own limit for an input image


class Fetcher:
    """Use as `async with Fetcher(cache_dir) as fetcher:` (it holds one HTTP session)."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        max_bytes: int = MAX_BYTES,
        timeout_s: float = 120.0,
        attempts: int = 4,
        backoff_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        concurrency: int = 16,
    ):
        self.cache = ContentCache(cache_dir)
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.fetched = 0  # downloads, for the tests and the summary
        self.reused = 0  # cached copies confirmed by their validators
        self._limit = asyncio.Semaphore(concurrency)
        self._inflight: dict[str, asyncio.Task[Fetched]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._objects = ObjectReader(timeout_s=timeout_s, max_bytes=max_bytes)

    async def __aenter__(self) -> Fetcher:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._inflight.values():
            task.cancel()
        if self._session is not None:
            await self._session.close()

    def _reader(self, ref: Remote) -> HttpReader | ObjectReader:
        if ref.scheme in ("http", "https"):
            assert self._session is not None, "use the Fetcher as an async context manager"
            return HttpReader(self._session, timeout_s=self.timeout_s, max_bytes=self.max_bytes)
        return self._objects

    async def stat(self, ref: Remote) -> Validators:
        async with self._limit:
            return await self._retried(lambda: self._reader(ref).stat(ref))

    async def local(self, ref: Remote) -> Fetched:
        task = self._inflight.get(ref.url)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self._local(ref))
            self._inflight[ref.url] = task
        return await asyncio.shield(task)

    async def sha256(self, ref: Remote, recorded: dict | None = None) -> str:
        """The object's digest now: the recorded one (a ledger `inputs` entry, else the
        cache's) when the store's validators still match it, else that of a fresh fetch."""
        if recorded is None or not recorded.get("sha256"):
            cached = await asyncio.to_thread(self.cache.lookup, ref)
            if cached is not None:
                recorded = {"sha256": cached.sha256, **cached.validators.record()}
        if recorded is not None and recorded.get("sha256"):
            if unchanged(Validators.of(recorded), await self.stat(ref)):
                self.reused += 1
                return str(recorded["sha256"])
        return (await self.local(ref)).sha256

    async def _local(self, ref: Remote) -> Fetched:
        cached = await asyncio.to_thread(self.cache.lookup, ref)
        if cached is not None and unchanged(cached.validators, await self.stat(ref)):
            self.reused += 1
            return cached
        async with self._limit:
            data, validators = await self._retried(lambda: self._reader(ref).fetch(ref))
        self.fetched += 1
        return await asyncio.to_thread(self.cache.store, ref, data, validators)

    async def _retried(self, call):
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            retry=retry_if_exception(lambda e: isinstance(e, FetchError) and e.retryable),
            wait=lambda state: random.uniform(0, self.backoff_s * 2 ** (state.attempt_number - 1)),
            sleep=self.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity reraises the last error")
