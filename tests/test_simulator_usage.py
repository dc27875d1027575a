"""Usage follows the public token table, and /_sim/stats bills what the provider would bill:
tokens, USD at the public prices, usable answers per input image, arrivals, concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import json

import aiohttp
import pytest
from simfixtures import edit_form, image_bytes, post_edit, sim_stats, stats_when

from pipeline.simulator import running

# Output image tokens per image, from OpenAI's image generation guide (shared/API-FACTS.md).
TABLE = {
    ("1024x1024", "low"): 272, ("1024x1024", "medium"): 1056, ("1024x1024", "high"): 4160,
    ("1024x1536", "low"): 408, ("1024x1536", "medium"): 1584, ("1024x1536", "high"): 6240,
    ("1536x1024", "low"): 400, ("1536x1024", "medium"): 1568, ("1536x1024", "high"): 6208,
}  # fmt: skip


async def usage(session, url, fields: dict, images: list[bytes] | None = None) -> dict:
    status, _, body = await post_edit(session, url, edit_form(fields, images))
    assert status == 200, body
    return json.loads(body)["usage"]


async def test_output_tokens_follow_the_table_for_each_size_and_quality():
    async with running() as url, aiohttp.ClientSession() as session:
        for (size, quality), expected in TABLE.items():
            got = await usage(session, url, {"size": size, "quality": quality})
            assert got["output_tokens"] == expected, (size, quality)
            got_n = await usage(session, url, {"size": size, "quality": quality, "n": "3"})
            assert got_n["output_tokens"] == 3 * expected


async def test_auto_quality_bills_medium_and_auto_size_the_size_nearest_the_input():
    async with running() as url, aiohttp.ClientSession() as session:
        wide = await usage(
            session, url, {"size": "auto", "quality": "auto"}, [image_bytes((90, 60))]
        )
        tall = await usage(session, url, {}, [image_bytes((60, 90))])
    assert wide["output_tokens"] == 1568
    assert tall["output_tokens"] == 1584


@pytest.mark.parametrize(
    ("sizes", "image_tokens"),
    [
        ([(64, 64)], 65 + 129),  # small images are not scaled up: one tile
        ([(1024, 1024)], 65 + 129),  # short side to 512: one tile
        ([(1536, 1024)], 65 + 2 * 129),  # 768x512
        ([(1200, 600)], 65 + 2 * 129),  # 1024x512
        ([(3000, 1000)], 65 + 3 * 129),  # fit 2048x683, then 1536x512
        ([(64, 64), (1536, 1024), (3000, 1000)], 194 + 323 + 452),
    ],
)
async def test_input_image_tokens_follow_the_tile_rule(sizes, image_tokens):
    async with running() as url, aiohttp.ClientSession() as session:
        images = [image_bytes(size) for size in sizes]
        got = await usage(session, url, {"quality": "low"}, images)
    assert got["input_tokens_details"]["image_tokens"] == image_tokens


@pytest.mark.parametrize(
    ("first", "surcharge"), [((64, 64), 4160), ((96, 64), 6240), ((64, 96), 6240)]
)
async def test_high_input_fidelity_adds_the_surcharge_of_the_first_images_shape(first, surcharge):
    images = [image_bytes(first), image_bytes((64, 64))]
    async with running() as url, aiohttp.ClientSession() as session:
        low = await usage(session, url, {"input_fidelity": "low"}, images)
        high = await usage(session, url, {"input_fidelity": "high"}, images)
    low_images = low["input_tokens_details"]["image_tokens"]
    assert high["input_tokens_details"]["image_tokens"] == low_images + surcharge
    assert high["input_tokens"] == low["input_tokens"] + surcharge


async def test_text_tokens_are_a_quarter_of_the_prompt_length_rounded_up():
    async with running() as url, aiohttp.ClientSession() as session:
        got = await usage(session, url, {"prompt": "x" * 4001})
    assert got["input_tokens_details"]["text_tokens"] == 1001
    details = got["input_tokens_details"]
    assert got["input_tokens"] == details["text_tokens"] + details["image_tokens"]
    assert got["total_tokens"] == got["input_tokens"] + got["output_tokens"]


async def test_stats_bill_tokens_and_usd_at_public_prices_and_count_usable_answers():
    first, second = image_bytes(colour=(1, 2, 3)), image_bytes(colour=(4, 5, 6))
    fields = {"prompt": "abcd", "quality": "low", "size": "1024x1024"}
    async with running() as url, aiohttp.ClientSession() as session:
        await usage(session, url, fields, [first])
        await usage(session, url, {**fields, "model": "gpt-image-1-mini"}, [first])
        await usage(session, url, {**fields, "model": "my-proxy-model"}, [second])
        await post_edit(session, url, edit_form({**fields, "prompt": "[sim:truncated]"}, [second]))
        await post_edit(session, url, edit_form({**fields, "prompt": "[sim:500]"}, [second]))
        stats = await sim_stats(session, url)
    # Each billed 200: 1 text token, 194 image input tokens, 272 output tokens.
    billed = 4
    text_tokens = [1, 1, 1, 4]  # "[sim:truncated]" is 15 characters
    assert stats["tokens"] == {
        "text_input": sum(text_tokens),
        "image_input": billed * 194,
        "image_output": billed * 272,
        "total": sum(text_tokens) + billed * (194 + 272),
    }
    gpt_image_1 = (1 * 5 + 194 * 10 + 272 * 40) / 1e6
    mini = (1 * 2 + 194 * 2.5 + 272 * 8) / 1e6
    lost = (4 * 5 + 194 * 10 + 272 * 40) / 1e6  # truncated: billed, never delivered
    assert stats["usd"] == pytest.approx(gpt_image_1 + mini + lost)  # the proxy model: not priced
    assert stats["usd_delivered"] == pytest.approx(gpt_image_1 + mini)
    assert stats["ok_by_image"] == {
        hashlib.sha256(first).hexdigest(): 2,
        hashlib.sha256(second).hexdigest(): 1,
    }
    assert stats["by_status"] == {"200": 4, "500": 1}
    assert stats["requests"] == 5 and len(stats["arrivals"]) == 5
    assert stats["arrivals"] == sorted(stats["arrivals"])


async def test_stats_show_requests_in_flight_and_their_peak_and_reset_zeroes_them():
    release = asyncio.Event()

    async def sleep(seconds: float) -> None:
        await release.wait()

    async with running(sleep=sleep) as url, aiohttp.ClientSession() as session:
        pending = [
            asyncio.create_task(post_edit(session, url, edit_form({"prompt": str(i)})))
            for i in range(3)
        ]
        busy = await stats_when(session, url, lambda stats: stats["in_flight"] == 3)
        release.set()
        assert [r[0] for r in await asyncio.gather(*pending)] == [200, 200, 200]
        done = await sim_stats(session, url)
        async with session.post(url.removesuffix("/v1") + "/_sim/reset") as response:
            assert response.status == 200
        zeroed = await sim_stats(session, url)
    assert (busy["in_flight"], busy["peak_in_flight"]) == (3, 3)
    assert (done["in_flight"], done["peak_in_flight"], done["requests"]) == (0, 3, 3)
    assert zeroed["requests"] == 0 and zeroed["peak_in_flight"] == 0
    assert zeroed["usd"] == 0 and zeroed["ok_by_image"] == {} and zeroed["arrivals"] == []
