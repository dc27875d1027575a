"""The simulator refuses what the real images/edits endpoint refuses, with the same status and
error shape `{"error": {"message", "type", "param", "code"}}`, and accepts what it accepts."""

from __future__ import annotations

import io
import json

import aiohttp
import pytest
from PIL import Image
from simfixtures import AUTH, edit_form, image_bytes, mask_bytes, post_edit, sim_stats

from pipeline.simulator import SimConfig, running

PNG = image_bytes()
INVALID, BAD_IMAGE = "invalid_value", "invalid_image_format"
UNSUPPORTED, TOO_BIG = "unsupported_file_mimetype", "integer_above_max_value"


def rgb_png(size=(64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (0, 0, 0)).save(out, "PNG")
    return out.getvalue()


def fields(**values: str) -> dict:
    return {"fields": values}


REFUSALS = [
    # (id, form arguments, param, code)
    ("unknown field", fields(colour="red"), "colour", "unknown_parameter"),
    ("no prompt", fields(prompt=""), "prompt", "string_below_min_length"),
    ("long prompt", fields(prompt="x" * 32_001), "prompt", "string_above_max_length"),
    ("no image", {"images": []}, "image", "missing_required_parameter"),
    ("17 images", {"images": [PNG] * 17}, "image", "array_above_max_length"),
    ("octet-stream", {"content_type": "application/octet-stream"}, "image", UNSUPPORTED),
    ("not an image", {"images": [b"GIF89a" + bytes(64)]}, "image", BAD_IMAGE),
    ("broken png", {"images": [PNG[:20]]}, "image", BAD_IMAGE),
    ("n zero", fields(n="0"), "n", "integer_below_min_value"),
    ("n eleven", fields(n="11"), "n", "integer_above_max_value"),
    ("n text", fields(n="two"), "n", "invalid_type"),
    ("size", fields(size="512x512"), "size", INVALID),
    ("free size on gpt-image-1", fields(size="640x480"), "size", INVALID),
    ("free size not /16", fields(model="gpt-image-2", size="650x480"), "size", INVALID),
    ("quality", fields(quality="hd"), "quality", INVALID),
    ("background", fields(background="none"), "background", INVALID),
    (
        "transparent jpeg",
        fields(background="transparent", output_format="jpeg"),
        "background",
        INVALID,
    ),
    ("output_format", fields(output_format="gif"), "output_format", INVALID),
    ("compression", fields(output_compression="101"), "output_compression", TOO_BIG),
    ("fidelity", fields(input_fidelity="max"), "input_fidelity", INVALID),
    (
        "fidelity on mini",
        fields(model="gpt-image-1-mini", input_fidelity="high"),
        "input_fidelity",
        INVALID,
    ),
    ("mask without alpha", {"mask": rgb_png()}, "mask", BAD_IMAGE),
    ("mask of other size", {"mask": mask_bytes((32, 32), (0, 0, 8, 8))}, "mask", INVALID),
    ("mask not png", {"mask": image_bytes(fmt="JPEG")}, "mask", BAD_IMAGE),
    ("bad script", fields(prompt="x [sim:ok,boom]"), "prompt", INVALID),
]


@pytest.mark.parametrize(
    ("form_args", "param", "code"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
async def test_a_bad_request_gets_a_400_naming_the_param_and_code(form_args, param, code):
    async with running() as url, aiohttp.ClientSession() as session:
        status, headers, body = await post_edit(session, url, edit_form(**form_args))
    error = json.loads(body)["error"]
    assert status == 400, error
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert error["message"]
    assert headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "gpt-image-2", "size": "640x480"},
        {"size": "auto", "quality": "auto", "background": "auto"},
        {"background": "transparent", "output_format": "webp", "output_compression": "50"},
        {"input_fidelity": "high", "user": "u-1", "n": "3"},
        {"model": "some-proxy-model", "output_format": "jpeg", "output_compression": "0"},
    ],
)
async def test_valid_parameters_are_accepted(fields):
    async with running() as url, aiohttp.ClientSession() as session:
        status, _, body = await post_edit(session, url, edit_form(fields))
    assert status == 200, body
    assert len(json.loads(body)["data"]) == int(fields.get("n", 1))


async def test_jpeg_and_webp_inputs_are_judged_by_their_bytes():
    images = [image_bytes(fmt="JPEG"), image_bytes(fmt="WEBP")]
    async with running() as url, aiohttp.ClientSession() as session:
        status, _, body = await post_edit(
            session, url, edit_form(images=images, image_field="image[]")
        )
    assert status == 200, body


async def test_a_body_over_the_limit_gets_a_413():
    config = SimConfig(max_body_mb=0.5)
    big = image_bytes() + bytes(600_000)  # PNG readers ignore trailing bytes
    async with running(config) as url, aiohttp.ClientSession() as session:
        status, _, body = await post_edit(session, url, edit_form(images=[big]))
    error = json.loads(body)["error"]
    assert status == 413
    assert error["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "You didn't provide an API key"),
        ({"Authorization": "Bearer "}, "You didn't provide an API key"),
        ({"Authorization": "Basic abc"}, "You didn't provide an API key"),
    ],
)
async def test_no_bearer_key_gets_a_401(headers, message):
    async with running() as url, aiohttp.ClientSession() as session:
        async with session.post(f"{url}/images/edits", data=edit_form(), headers=headers) as r:
            body = await r.json()
            assert r.status == 401
            assert r.headers["x-request-id"].startswith("req_")
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["message"].startswith(message)


async def test_a_json_body_is_refused_with_a_400():
    async with running() as url, aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/images/edits", json={"prompt": "x"}, headers=AUTH
        ) as response:
            body = await response.json()
    assert response.status == 400
    assert "multipart/form-data" in body["error"]["message"]


async def test_an_unknown_api_route_gets_a_json_404():
    async with running() as url, aiohttp.ClientSession() as session:
        async with session.get(f"{url}/images/edits", headers=AUTH) as response:
            body = await response.json()
    assert response.status == 404
    assert body["error"]["message"] == "Invalid URL (GET /v1/images/edits)"


async def test_refused_requests_are_counted_and_never_billed():
    async with running() as url, aiohttp.ClientSession() as session:
        await post_edit(session, url, edit_form({"size": "bad"}))
        await post_edit(session, url, edit_form(), headers={"Authorization": ""})
        stats = await sim_stats(session, url)
    assert stats["requests"] == 2
    assert stats["by_status"] == {"400": 1, "401": 1}
    assert stats["by_outcome"] == {"invalid": 1, "unauthorized": 1}
    assert stats["usd"] == 0 and stats["tokens"]["total"] == 0
