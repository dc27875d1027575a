"""Helpers shared by the simulator's tests: small images and masks made in memory, and a raw
multipart POST to a running simulator (for answers the official client would hide).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterable

import aiohttp
from PIL import Image

KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


def image_bytes(
    size: tuple[int, int] = (64, 64),
    colour: tuple[int, ...] = (20, 180, 60),
    fmt: str = "PNG",
    mode: str = "RGB",
) -> bytes:
    """An image with a distinct pixel at each corner, so scaling and edits show."""
    image = Image.new(mode, size, colour)
    width, height = size
    corner = (250, 10, 10, 255)[: len(mode)] if mode != "L" else 250
    for x, y in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)):
        image.putpixel((x, y), corner)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def mask_bytes(
    size: tuple[int, int] = (64, 64), hole: tuple[int, int, int, int] = (0, 0, 32, 64)
) -> bytes:
    """An RGBA mask, opaque everywhere except the transparent box `hole` (left, top, right,
    bottom): the part to edit."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), hole)
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def edit_form(
    fields: dict[str, str] | None = None,
    images: Iterable[bytes] | None = None,
    *,
    image_field: str = "image",
    content_type: str = "image/png",
    mask: bytes | None = None,
) -> aiohttp.FormData:
    """A multipart edit request as a client would send it; prompt "a test" unless given."""
    form = aiohttp.FormData()
    for name, value in {"prompt": "a test", **(fields or {})}.items():
        form.add_field(name, value)
    for index, data in enumerate([image_bytes()] if images is None else images):
        form.add_field(image_field, data, filename=f"in{index}.png", content_type=content_type)
    if mask is not None:
        form.add_field("mask", mask, filename="mask.png", content_type="image/png")
    return form


async def post_edit(
    session: aiohttp.ClientSession,
    base_url: str,
    form: aiohttp.FormData,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """POST to /images/edits; (status, headers with lower-case names, body)."""
    async with session.post(
        f"{base_url}/images/edits", data=form, headers={**AUTH, **(headers or {})}
    ) as response:
        body = await response.read()
        return response.status, {k.lower(): v for k, v in response.headers.items()}, body


async def sim_stats(session: aiohttp.ClientSession, base_url: str) -> dict:
    async with session.get(base_url.removesuffix("/v1") + "/_sim/stats") as response:
        return await response.json()


async def stats_when(
    session: aiohttp.ClientSession, base_url: str, condition: Callable[[dict], bool]
) -> dict:
    """The stats as soon as `condition` holds of them (polled: the simulator's counters are
    the only view of what happens inside it)."""
    for _ in range(200):
        stats = await sim_stats(session, base_url)
        if condition(stats):
            return stats
        await asyncio.sleep(0.02)
    raise AssertionError(f"the stats did not reach the expected state in 4 s: {stats}")


async def settled_stats(session: aiohttp.ClientSession, base_url: str) -> dict:
    """The stats once no request is in flight (a stalled request leaves when the simulator
    notices its client gave up)."""
    return await stats_when(session, base_url, lambda stats: stats["in_flight"] == 0)
