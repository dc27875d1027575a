"""Helpers for the pipeline tests: small images, manifests written to tmp_path, simulator stats."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import yaml
from PIL import Image


def make_image(path: Path, size=(64, 64), color=(200, 40, 40), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(
        path, format=fmt or (path.suffix.lstrip(".").upper().replace("JPG", "JPEG"))
    )
    return path


def make_mask(path: Path, size=(64, 64), box=(0, 0, 32, 64)) -> Path:
    """An RGBA mask: transparent (edit here) inside box, opaque elsewhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), box)
    mask.save(path, format="PNG")
    return path


def write_manifest(folder: Path, items: list[dict], **blocks) -> Path:
    data = {
        "version": 1,
        "defaults": {"model": "gpt-image-1", "size": "1024x1024", "quality": "low"},
    }
    for key, value in blocks.items():
        data[key] = value
    data["items"] = items
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def simple_job(folder: Path, count: int, *, prompt: str = "white background", **blocks) -> Path:
    items = []
    for i in range(count):
        make_image(folder / "images" / f"img{i:03d}.png", color=(i * 7 % 256, 100, 150))
        items.append({"id": f"sku-{i:03d}", "image": f"images/img{i:03d}.png", "prompt": prompt})
    return write_manifest(folder, items, **blocks)


def read_ledger_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Sim:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.root = base_url.rsplit("/v1", 1)[0]

    async def stats(self) -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.root}/_sim/stats") as response:
                return await response.json()
