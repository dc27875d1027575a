"""Every body the client reads is capped (api.caps): an endless or huge answer, a huge error
page, an over-large download, or an image past Pillow's bomb limit is an unusable answer
(retried like a 5xx, billed when it was a 2xx) and the connection is closed, never drained.
Served by the hostile-answer fake; figures of memory are bench/hostile_bodies.py's."""

from __future__ import annotations

import asyncio
import base64
import io

import aiohttp
import hostile
import pytest
from aiohttp import web
from PIL import Image

from pipeline.api.bodies import ImageRequest
from pipeline.api.caps import answer_cap, read_prefix
from pipeline.api.client import EditsClient
from pipeline.core.errors import RetryableError

MB = 2**20


def request(prompt: str, n: int = 1) -> ImageRequest:
    return ImageRequest(
        prompt=prompt,
        params={"model": "gpt-image-1", "n": n},
        images=[("a.png", hostile.PNG, "image/png")],
    )


async def attempt(base_url: str, prompt: str, max_image_mb: float = 0.25) -> RetryableError:
    async with aiohttp.ClientSession() as session:
        client = EditsClient(session, base_url, "sk-t", timeout_s=20, max_image_mb=max_image_mb)
        with pytest.raises(RetryableError) as caught:
            await client.edit(request(prompt))
    return caught.value


@pytest.mark.parametrize("token", ["endless", "bigbody", "biglength"])
async def test_an_answer_past_its_cap_is_unusable_billed_and_cut_off(token):
    async with hostile.serving() as (base_url, fake):
        exc = await attempt(base_url, f"[hostile:{token}]")
        await asyncio.sleep(0.05)  # the server notices the closed connection
    assert exc.http_status == 200 and exc.billed and exc.usage is None
    assert "larger than its cap" in exc.message and exc.transport is None
    cap = answer_cap(1, int(0.25 * MB))
    # Closed, not drained: the server got to send little more than the cap (socket buffers).
    assert fake.streamed and fake.streamed[0] < cap + 16 * MB


async def test_a_huge_error_page_is_read_only_to_its_first_kilobytes():
    async with hostile.serving() as (base_url, fake):
        exc = await attempt(base_url, "[hostile:bigerror]")
        await asyncio.sleep(0.05)
    assert exc.http_status == 500 and not exc.billed
    assert len(exc.message) < 600
    assert fake.streamed[0] < 32 * MB  # of the 150 MB page


def test_the_answer_cap_grows_with_n_and_takes_any_n():
    image = 64 * MB
    one = answer_cap(1, image)
    assert one > image * 4 / 3
    assert answer_cap(3, image) > 3 * (one - MB)
    assert answer_cap(None, image) == answer_cap(10, image) == answer_cap(0, image)


async def test_read_prefix_stops_at_its_cap():
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 100_000)

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{host}:{port}/") as resp:
                assert await read_prefix(resp, 1000) == b"x" * 1000
    finally:
        await runner.cleanup()


def png_of(size) -> str:
    out = io.BytesIO()
    Image.new("L", size, 0).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.mark.parametrize("size", [(40, 40), (64, 64)], ids=["past the warning", "past the error"])
async def test_an_answer_image_past_pillows_bomb_limits_is_unusable(monkeypatch, size):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # warns past 1000, refuses past 2000

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        body = {"data": [{"b64_json": png_of(size)}], "usage": hostile.BILLED_USAGE}
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/v1/images/edits", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        exc = await attempt(f"http://{host}:{port}/v1", "p")
    finally:
        await runner.cleanup()
    assert exc.billed and exc.usage == hostile.BILLED_USAGE
    assert "unusable response: image 0 (png)" in exc.message
