"""Sending an answer on the wire, the transport faults included: `truncated` (a 200 whose JSON
is cut in half, Content-Length matching the cut), `reset` (the headers and half the body,
then the connection closes) and `stall` (nothing until the client gives up or the server
shuts down).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from pipeline.simulator.answer import Answer

JSON_TYPE = "application/json"
STALL_POLL_S = 0.05  # how often a stalled request looks whether its client gave up


async def send(request: web.Request, answer: Answer, closing: asyncio.Event) -> web.StreamResponse:
    """The answer as it goes out; `closing` is set when the server shuts down."""
    if answer.transport == "stall":
        await stall(request, closing)
        return web.Response(status=504)  # never seen: the connection is gone
    if answer.transport == "truncated":
        payload = answer.payload()
        return web.Response(body=payload[: len(payload) // 2], content_type=JSON_TYPE)
    if answer.transport == "reset":
        return await reset(request, answer.payload())
    return answer.response()


async def reset(request: web.Request, payload: bytes) -> web.StreamResponse:
    """Headers and half the body, then the connection closes instead of the rest."""
    response = web.StreamResponse(headers={"Content-Type": JSON_TYPE})
    response.content_length = len(payload)
    await response.prepare(request)
    await response.write(payload[: len(payload) // 2])
    drop(request)
    return response


async def stall(request: web.Request, closing: asyncio.Event) -> None:
    """Answer nothing until the client gives up or the server shuts down."""
    while not closing.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), STALL_POLL_S)
    drop(request)


def drop(request: web.Request) -> None:
    """Close the connection where it stands: the client gets what was sent, then EOF."""
    if request.transport is not None:
        request.transport.close()
