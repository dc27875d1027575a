"""The floor of the stack: a bare aiohttp loop that sends the same multipart requests as
editbatch and writes the same files the same atomic way (temporary file, fsync, rename, fsync
of the folder), and does nothing else: no ledger, no retries, no checks of what comes back.
With `rpm` it paces starts evenly, as a perfect client-side pacer would. With `drift` (the
"raw + drift" client) it also measures each masked answer's drift, the pixel work the contract
asks of every masked item (CONTRACT section 9), the least way Pillow can: decode the input and
the answer, one difference, one masked sum.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
from collections import Counter
from pathlib import Path

import aiohttp
from PIL import Image, ImageChops, ImageStat


def write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def drift(source: bytes, answer: bytes, keep: Image.Image, kept: int) -> float:
    """Mean |source - answer| over the kept pixels, 0..1 over R, G and B."""
    with Image.open(io.BytesIO(source)) as a, Image.open(io.BytesIO(answer)) as b:
        diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff, mask=keep).sum) / (3 * 255 * kept)


def keep_of(mask: bytes) -> tuple[Image.Image, int]:
    """The mask's kept pixels (alpha > 0) as an L image, and how many there are."""
    with Image.open(io.BytesIO(mask)) as opened:
        keep = opened.convert("RGBA").getchannel("A").point([0] + [255] * 255)
    return keep, keep.histogram()[255]


class Pacer:
    """Starts spaced 1/rate apart, counted from the previous slot, not from the wake-up."""

    def __init__(self, rpm: float):
        self.gap = 60 / rpm if rpm > 0 else 0.0
        self.next = time.monotonic()
        self.lock = asyncio.Lock()

    async def turn(self) -> None:
        if not self.gap:
            return
        async with self.lock:
            slot = max(self.next, time.monotonic())
            self.next = slot + self.gap
            await asyncio.sleep(slot - time.monotonic())


async def raw_loop(spec: dict, base_url: str, api_key: str) -> dict:
    """Send every item of `spec` (workload.write_item_list) once; counts by status."""
    url = base_url.rstrip("/") + "/images/edits"
    auth = {"Authorization": f"Bearer {api_key}"}
    out_dir = Path(spec["out_dir"])
    mask = await asyncio.to_thread(Path(spec["mask"]).read_bytes) if spec["mask"] else None
    pending = iter(spec["items"])
    statuses: Counter[str] = Counter()
    pacer = Pacer(spec["rpm"])
    keep = keep_of(mask) if spec.get("drift") and mask is not None else None
    drifts: list[float] = []

    async def send(session: aiohttp.ClientSession, item_id: str, image_path: str) -> None:
        data = await asyncio.to_thread(Path(image_path).read_bytes)
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("model", spec["params"]["model"])
        form.add_field("prompt", spec["prompt"])
        for name, value in spec["params"].items():
            if name != "model":
                form.add_field(name, str(value))
        form.add_field("image", data, filename=Path(image_path).name, content_type="image/png")
        if mask is not None:
            form.add_field("mask", mask, filename="mask.png", content_type="image/png")
        await pacer.turn()
        async with session.post(url, data=form, headers=auth) as response:
            body = await response.read()
            statuses[str(response.status)] += 1
        if response.status != 200:
            return
        image = base64.b64decode(json.loads(body)["data"][0]["b64_json"])
        del body
        if keep is not None:
            drifts.append(await asyncio.to_thread(drift, data, image, *keep))
        await asyncio.to_thread(write_atomic, out_dir / f"{item_id}.png", image)

    async def worker(session: aiohttp.ClientSession) -> None:
        for item_id, image_path in pending:
            await send(session, item_id, image_path)

    workers = spec["concurrency"]
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(workers)))
    return {"done": statuses["200"], "by_status": dict(statuses), "drifts": len(drifts)}
