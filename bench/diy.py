"""The DIY baseline of issue 5: what users write instead of editbatch. The official SDK with its
two retries, a semaphore and gather; each result's base64 written to a file. Nothing paces it,
so a rate limit turns into 429s that the SDK's retries may or may not outlast.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from pathlib import Path

from openai import AsyncOpenAI


async def diy(spec: dict, base_url: str, api_key: str) -> dict:
    """Edit every item of `spec` (workload.write_item_list); counts of done and errors."""
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=spec.get("retries", 2))
    semaphore = asyncio.Semaphore(spec["concurrency"])
    out_dir = Path(spec["out_dir"])
    params = spec["params"]

    # Written the way users write it, blocking opens and writes included (ruff's ASYNC230).
    async def edit(item_id: str, image_path: str) -> None:
        async with semaphore:
            with open(image_path, "rb") as image:  # noqa: ASYNC230
                if spec["mask"] is None:
                    result = await client.images.edit(image=image, prompt=spec["prompt"], **params)
                else:
                    with open(spec["mask"], "rb") as mask:  # noqa: ASYNC230
                        result = await client.images.edit(
                            image=image, mask=mask, prompt=spec["prompt"], **params
                        )
            data = base64.b64decode(result.data[0].b64_json)
            with open(out_dir / f"{item_id}.png", "wb") as out:  # noqa: ASYNC230
                out.write(data)

    async with client:
        outcomes = await asyncio.gather(
            *(edit(item_id, path) for item_id, path in spec["items"]), return_exceptions=True
        )
    errors = Counter(type(o).__name__ for o in outcomes if isinstance(o, BaseException))
    return {"done": sum(o is None for o in outcomes), "errors": dict(errors)}
