"""The JSON body of images/edits: images as data URLs or uploaded file ids, the same checks,
usage, rendering and error shapes as the multipart form, and `moderation` only here."""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest
from simfixtures import AUTH, decode, edit_form, image_bytes, mask_bytes, post_edit

from pipeline.simulator import running
from pipeline.simulator.answer import InvalidRequest
from pipeline.simulator.jsonbody import form_of
from pipeline.simulator.validation import text_fields

PNG = image_bytes()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def edit_body(**fields) -> dict:
    return {"prompt": "a test", "images": [{"image_url": data_url(PNG)}], **fields}


async def post_json(session, url: str, body: dict, path: str = "/images/edits"):
    async with session.post(f"{url}{path}", json=body, headers=AUTH) as response:
        return response.status, await response.json()


async def upload(session, url: str, data: bytes, purpose: str = "vision") -> str:
    form = aiohttp.FormData()
    form.add_field("purpose", purpose)
    form.add_field("file", data, filename="in.png", content_type="image/png")
    async with session.post(f"{url}/files", data=form, headers=AUTH) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["id"]


async def test_a_json_edit_is_billed_and_sized_as_the_same_multipart_edit():
    fields = {"model": "gpt-image-1", "size": "1536x1024", "quality": "high", "n": 2}
    async with running() as url, aiohttp.ClientSession() as session:
        status, answer = await post_json(session, url, edit_body(**fields))
        text_fields_only = {k: str(v) for k, v in fields.items()}
        _, _, multipart = await post_edit(session, url, edit_form(text_fields_only, [PNG]))
    assert status == 200, answer
    assert answer["usage"] == json.loads(multipart)["usage"]
    assert len(answer["data"]) == 2
    assert decode(base64.b64decode(answer["data"][0]["b64_json"])).size == (1536, 1024)


async def test_a_json_mask_is_honoured_like_a_multipart_one():
    source, mask = image_bytes((64, 64)), mask_bytes((64, 64), (0, 0, 32, 64))
    body = {
        "prompt": "black",
        "model": "gpt-image-2",
        "size": "64x64",
        "images": [{"image_url": data_url(source)}],
        "mask": {"image_url": data_url(mask)},
    }
    async with running() as url, aiohttp.ClientSession() as session:
        status, answer = await post_json(session, url, body)
    assert status == 200, answer
    result = decode(base64.b64decode(answer["data"][0]["b64_json"])).convert("RGB")
    original = decode(source).convert("RGB")
    assert result.crop((32, 0, 64, 64)).tobytes() == original.crop((32, 0, 64, 64)).tobytes()
    assert result.crop((0, 0, 32, 64)).tobytes() != original.crop((0, 0, 32, 64)).tobytes()


async def test_file_ids_of_uploaded_images_stand_for_the_images():
    async with running() as url, aiohttp.ClientSession() as session:
        image_id = await upload(session, url, PNG)
        status, answer = await post_json(
            session, url, {"prompt": "x", "images": [{"file_id": image_id}], "quality": "low"}
        )
        missing_status, missing = await post_json(
            session, url, {"prompt": "x", "images": [{"file_id": "file-nope"}]}
        )
    assert status == 200, answer
    assert answer["usage"]["input_tokens_details"]["image_tokens"] == 65 + 129
    assert missing_status == 400
    assert missing["error"]["param"] == "images[0].file_id"


async def test_moderation_is_taken_in_json_and_refused_in_multipart():
    async with running() as url, aiohttp.ClientSession() as session:
        status, answer = await post_json(session, url, edit_body(moderation="low"))
        form_status, _, form_body = await post_edit(session, url, edit_form({"moderation": "low"}))
    assert status == 200, answer
    assert form_status == 400
    error = json.loads(form_body)["error"]
    assert (error["param"], error["code"]) == ("moderation", "unknown_parameter")


async def test_a_scripted_fault_in_a_json_prompt_answers_as_in_multipart():
    async with running() as url, aiohttp.ClientSession() as session:
        status, answer = await post_json(session, url, edit_body(prompt="x [sim:500]"))
    assert status == 500
    assert answer["error"]["type"] == "server_error"


async def test_a_body_that_is_not_a_json_object_is_a_400():
    async with running() as url, aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/images/edits",
            data=b"[1, 2",
            headers={**AUTH, "Content-Type": "application/json"},
        ) as response:
            body = await response.json()
    assert response.status == 400
    assert "could not parse the JSON body" in body["error"]["message"]


REFUSALS = [
    # (id, body, param, code)
    ("http url", edit_body(images=[{"image_url": "https://example.com/a.png"}]),
     "images[0].image_url", "invalid_value"),
    ("not a data url", edit_body(images=[{"image_url": "ftp://x"}]),
     "images[0].image_url", "invalid_value"),
    ("bad base64", edit_body(images=[{"image_url": "data:image/png;base64,@@@"}]),
     "images[0].image_url", "invalid_value"),
    ("both keys", edit_body(images=[{"image_url": data_url(PNG), "file_id": "file-x"}]),
     "images[0]", "invalid_value"),
    ("other key", edit_body(images=[{"url": "x"}]), "images[0].url", "unknown_parameter"),
    ("images not a list", edit_body(images={"image_url": "x"}), "images", "invalid_type"),
    ("singular image", edit_body(image=data_url(PNG)), "image", "unknown_parameter"),
    ("n as text", edit_body(n="2"), "n", "invalid_type"),
    ("n as bool", edit_body(n=True), "n", "invalid_type"),
    ("size as number", edit_body(size=1024), "size", "invalid_type"),
    ("stream as text", edit_body(stream="yes"), "stream", "invalid_type"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "param", "code"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_json_bodies_of_the_wrong_shape_are_refused_naming_the_param(body, param, code):
    with pytest.raises(InvalidRequest) as raised:
        form_of(body, "edits", lambda file_id: None)
    assert (raised.value.param, raised.value.code, raised.value.status) == (param, code, 400)


async def test_json_and_multipart_refuse_the_same_values_with_the_same_error():
    async with running() as url, aiohttp.ClientSession() as session:
        for fields in ({"size": "999x999"}, {"quality": "ultra"}, {"n": 11}, {"colour": "red"}):
            status, answer = await post_json(session, url, edit_body(**fields))
            as_text = {k: str(v) for k, v in fields.items()}
            form_status, _, form_body = await post_edit(session, url, edit_form(as_text))
            assert (status, answer["error"]) == (form_status, json.loads(form_body)["error"])


async def test_a_json_body_without_images_says_how_to_send_them():
    async with running() as url, aiohttp.ClientSession() as session:
        status, answer = await post_json(session, url, {"prompt": "x"})
    assert status == 400
    assert answer["error"]["param"] == "images"
    assert "data:image/png;base64" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("endpoint", "kind", "has_fidelity", "has_moderation"),
    [
        ("edits", "multipart", True, False),
        ("edits", "json", True, True),
        ("generations", "json", False, True),
    ],
)
def test_which_text_fields_each_body_takes(endpoint, kind, has_fidelity, has_moderation):
    fields = text_fields(endpoint, kind)
    assert ("input_fidelity" in fields) is has_fidelity
    assert ("moderation" in fields) is has_moderation
    assert {"model", "prompt", "n", "size", "quality", "user"} <= set(fields)
