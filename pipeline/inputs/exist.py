"""`editbatch validate`'s question about remote inputs: does each exist? One HEAD (or stat)
per distinct URL, a bounded number at once, nothing downloaded."""

from __future__ import annotations

import asyncio
import concurrent.futures
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pipeline.core.plan import Remote
from pipeline.inputs.fetch import Fetcher
from pipeline.inputs.validators import FetchError


async def unreachable(
    refs: Iterable[Remote], *, concurrency: int = 16, timeout_s: float = 30.0
) -> dict[str, str]:
    """{url: why} for each input that cannot be had; the others are left out."""
    distinct = {ref.url: ref for ref in refs}
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as nowhere:  # stat never writes to the cache
        async with Fetcher(
            Path(nowhere), timeout_s=timeout_s, attempts=2, backoff_s=0.2, concurrency=concurrency
        ) as fetcher:

            async def check(ref: Remote) -> None:
                try:
                    await fetcher.stat(ref)
                except FetchError as exc:
                    found[ref.url] = exc.message

            await asyncio.gather(*(check(ref) for ref in distinct.values()))
    return found


def unreachable_now(refs: Iterable[Remote], *, concurrency: int = 16) -> dict[str, str]:
    """The same, from synchronous code (`load_plan`), whether or not an event loop runs in
    this thread: the check gets a loop of its own in a worker thread."""
    refs = list(refs)
    if not refs:
        return {}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, unreachable(refs, concurrency=concurrency)).result()
