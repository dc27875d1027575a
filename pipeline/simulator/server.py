"""Running the simulator on a socket: `running()` starts it (a free loopback port by default)
and yields its base URL, for tests and `run --simulate`; leaving the block shuts it down,
stalled requests included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from pipeline.simulator.app import make_app
from pipeline.simulator.config import SimConfig

# How long shutdown waits for requests still in their generation time before cancelling them.
SHUTDOWN_GRACE_S = 2.0


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


@asynccontextmanager
async def running(
    config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncIterator[str]:
    """Serve a simulator while the block runs; yields e.g. "http://127.0.0.1:43211/v1"."""
    app = make_app(config, clock=clock, sleep=sleep)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield base_url(host, bound_port)
    finally:
        await runner.cleanup()
