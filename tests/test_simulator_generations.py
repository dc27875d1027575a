"""images/generations: a JSON body without images, usage with text input only, output tokens
from the size and quality table, and the same faults, scripts and rate limit as edits."""

from __future__ import annotations

import base64
import json

import aiohttp
import openai
import pytest
from simfixtures import AUTH, decode, edit_form, sim_stats

from pipeline.simulator import SimConfig, running


def client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0)


async def generate(session, url: str, body: dict, headers: dict | None = None):
    async with session.post(
        f"{url}/images/generations", json=body, headers={**AUTH, **(headers or {})}
    ) as response:
        return response.status, await response.json()


async def test_the_official_client_generates_an_image_billed_for_text_input_only():
    prompt = "A red teapot on a shelf"  # 23 characters: 6 text tokens
    async with running() as url, client(url) as api:
        result = await api.images.generate(
            model="gpt-image-1", prompt=prompt, size="1024x1536", quality="medium", n=2
        )
    assert len(result.data) == 2
    image = decode(base64.b64decode(result.data[0].b64_json))
    assert (image.format, image.size) == ("PNG", (1024, 1536))
    usage = result.usage
    assert usage.input_tokens_details.image_tokens == 0
    assert usage.input_tokens_details.text_tokens == usage.input_tokens == 6
    assert usage.output_tokens == 2 * 1584
    assert usage.total_tokens == 6 + 2 * 1584


async def test_auto_size_of_a_generation_is_square_and_moderation_is_accepted():
    async with running() as url, aiohttp.ClientSession() as session:
        status, answer = await generate(
            session, url, {"prompt": "x", "moderation": "low", "quality": "low"}
        )
    assert status == 200, answer
    assert (answer["size"], answer["usage"]["output_tokens"]) == ("1024x1024", 272)


@pytest.mark.parametrize("field", ["image", "images", "mask", "input_fidelity"])
async def test_image_fields_are_unknown_parameters_of_a_generation(field):
    async with running() as url, aiohttp.ClientSession() as session:
        status, answer = await generate(session, url, {"prompt": "x", field: "anything"})
    assert status == 400
    assert (answer["error"]["param"], answer["error"]["code"]) == (field, "unknown_parameter")


async def test_a_multipart_generation_is_refused_asking_for_json():
    async with running() as url, aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/images/generations", data=edit_form(), headers=AUTH
        ) as response:
            body = await response.json()
    assert response.status == 400
    assert "application/json" in body["error"]["message"]


async def test_generations_follow_scripts_and_the_same_size_rules():
    async with running() as url, aiohttp.ClientSession() as session:
        statuses = [
            (await generate(session, url, {"prompt": "p [sim:500,moderation]"}))[0]
            for _ in range(3)
        ]
        bad_size = await generate(session, url, {"prompt": "x", "size": "640x480"})
        free_size = await generate(
            session, url, {"prompt": "x", "model": "gpt-image-2", "size": "640x480"}
        )
    assert statuses == [500, 400, 200]
    assert bad_size[0] == 400 and bad_size[1]["error"]["param"] == "size"
    assert free_size[0] == 200 and free_size[1]["size"] == "640x480"


async def test_generations_share_the_rate_limit_and_the_counters_of_edits():
    async with running(SimConfig(rpm=1)) as url, aiohttp.ClientSession() as session:
        first = await generate(session, url, {"prompt": "x", "quality": "low"})
        async with session.post(f"{url}/images/edits", data=edit_form(), headers=AUTH) as response:
            second_status = response.status
            second = json.loads(await response.read())
        stats = await sim_stats(session, url)
    assert first[0] == 200
    assert second_status == 429 and second["error"]["code"] == "rate_limit_exceeded"
    assert stats["by_status"] == {"200": 1, "429": 1}
    assert stats["tokens"]["image_input"] == 0  # the generation had no input image


async def test_a_generation_is_the_prompt_colour_pattern():
    async with running() as url, aiohttp.ClientSession() as session:
        status, answer = await generate(
            session, url, {"prompt": "blue", "model": "gpt-image-2", "size": "64x64"}
        )
    assert status == 200
    image = decode(base64.b64decode(answer["data"][0]["b64_json"])).convert("RGB")
    assert (40, 90, 210) in set(image.get_flattened_data())
