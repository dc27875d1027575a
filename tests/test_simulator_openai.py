"""The official `openai` client against the simulator on loopback: what it sends is accepted,
what comes back decodes, and its errors map to the client's exception classes."""

from __future__ import annotations

import base64
import math

import openai
import pytest
from simfixtures import KEY, decode, image_bytes, mask_bytes

from pipeline.simulator import SimConfig, running


def client(base_url: str, api_key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)


def png_file(data: bytes, name: str = "in.png") -> tuple[str, bytes, str]:
    return (name, data, "image/png")


async def test_one_image_gives_a_decodable_image_of_the_size_asked_and_its_usage():
    prompt = "Put the shoe on white marble"  # 28 characters: 7 text tokens
    async with running() as url, client(url) as api:
        result = await api.images.edit(
            image=png_file(image_bytes()),
            prompt=prompt,
            model="gpt-image-1",
            size="1024x1536",
            quality="high",
        )
    image = decode(base64.b64decode(result.data[0].b64_json))
    assert (image.format, image.size) == ("PNG", (1024, 1536))
    assert (result.size, result.quality, result.output_format) == ("1024x1536", "high", "png")
    usage = result.usage
    assert usage.output_tokens == 6240
    assert usage.input_tokens_details.image_tokens == 65 + 129
    assert usage.input_tokens_details.text_tokens == 7
    assert usage.input_tokens == 7 + 194
    assert usage.total_tokens == 7 + 194 + 6240


async def test_several_images_are_each_billed_and_n_images_come_back():
    wide = image_bytes((1200, 600))  # short side to 512 -> 1024x512: two tiles
    async with running() as url, client(url) as api:
        result = await api.images.edit(
            image=[png_file(image_bytes()), png_file(wide, "wide.png")],
            prompt="blue",
            model="gpt-image-1",
            size="1024x1024",
            quality="low",
            n=2,
        )
    assert len(result.data) == 2
    for item in result.data:
        assert decode(base64.b64decode(item.b64_json)).size == (1024, 1024)
    assert result.usage.input_tokens_details.image_tokens == (65 + 129) + (65 + 2 * 129)
    assert result.usage.output_tokens == 2 * 272


async def test_a_mask_is_accepted_and_auto_size_follows_the_input_aspect():
    async with running() as url, client(url) as api:
        result = await api.images.edit(
            image=png_file(image_bytes((96, 64))),
            mask=png_file(mask_bytes((96, 64), (0, 0, 48, 64)), "mask.png"),
            prompt="red",
            model="gpt-image-1",
            size="auto",
            output_format="webp",
        )
    image = decode(base64.b64decode(result.data[0].b64_json))
    assert (image.format, image.size) == ("WEBP", (1536, 1024))
    assert (result.size, result.quality) == ("1536x1024", "medium")
    assert result.usage.output_tokens == 1568


async def test_missing_model_is_served_as_gpt_image_1():
    async with running() as url, client(url) as api:
        result = await api.images.edit(image=png_file(image_bytes()), prompt="x", quality="low")
    assert result.usage.output_tokens == 272


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"size": "999x999"}, "size", "invalid_value"),
        ({"quality": "ultra"}, "quality", "invalid_value"),
        ({"n": 11}, "n", "integer_above_max_value"),
        ({"extra_body": {"colour": "red"}}, "colour", "unknown_parameter"),
    ],
)
async def test_a_bad_parameter_raises_bad_request_with_the_api_code(params, param, code):
    async with running() as url, client(url) as api:
        with pytest.raises(openai.BadRequestError) as raised:
            await api.images.edit(image=png_file(image_bytes()), prompt="x", **params)
    assert (raised.value.code, raised.value.param) == (code, param)
    assert raised.value.type == "invalid_request_error"
    assert raised.value.request_id.startswith("req_")


async def test_over_the_rate_limit_raises_rate_limit_error_with_retry_after_headers():
    async with running(SimConfig(rpm=1)) as url, client(url) as api:
        await api.images.edit(image=png_file(image_bytes()), prompt="x", quality="low")
        with pytest.raises(openai.RateLimitError) as raised:
            await api.images.edit(image=png_file(image_bytes()), prompt="x", quality="low")
    error = raised.value
    assert (error.code, error.type) == ("rate_limit_exceeded", "requests")
    headers = error.response.headers
    retry_after_ms = int(headers["retry-after-ms"])
    assert 55_000 <= retry_after_ms <= 60_000  # one request a minute, one just taken
    assert int(headers["retry-after"]) == math.ceil(retry_after_ms / 1000)
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "Limit 1, Used 1, Requested 1" in error.message


async def test_the_wrong_key_raises_authentication_error_when_a_key_is_required():
    async with running(SimConfig(api_key="sk-right-key-123456")) as url:
        async with client(url, "sk-abcdefghijklmnopqrstuvwxyz") as api:
            with pytest.raises(openai.AuthenticationError) as raised:
                await api.images.edit(image=png_file(image_bytes()), prompt="x")
        async with client(url, "sk-right-key-123456") as api:
            await api.images.edit(image=png_file(image_bytes()), prompt="x", quality="low")
    assert raised.value.code == "invalid_api_key"
    assert "Incorrect API key provided: sk-ab" in raised.value.message
    assert "abcdefghijklmnopqrstuv" not in raised.value.message


async def test_octet_stream_image_parts_are_refused_like_the_real_api():
    async with running() as url, client(url) as api:
        with pytest.raises(openai.BadRequestError) as raised:
            await api.images.edit(
                image=("in.png", image_bytes(), "application/octet-stream"), prompt="x"
            )
    assert raised.value.code == "unsupported_file_mimetype"
    assert "application/octet-stream" in raised.value.message


async def test_scripted_quota_and_model_errors_map_to_the_client_exceptions():
    async with running() as url, client(url) as api:
        image = png_file(image_bytes())
        with pytest.raises(openai.RateLimitError) as quota:
            await api.images.edit(image=image, prompt="x [sim:quota]")
        with pytest.raises(openai.NotFoundError) as missing:
            await api.images.edit(image=image, prompt="y [sim:404]", model="gpt-image-9")
        with pytest.raises(openai.InternalServerError):
            await api.images.edit(image=image, prompt="z [sim:500]")
    assert (quota.value.code, quota.value.type) == ("insufficient_quota", "insufficient_quota")
    assert missing.value.code == "model_not_found"
    assert "gpt-image-9" in missing.value.message
