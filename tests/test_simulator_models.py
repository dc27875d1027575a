"""Model rules as data: which sizes each model takes (gpt-image-2's free sizes), the output
tokens of a free size by the area rule, input_fidelity on gpt-image-1-mini, snapshots, prices
and the default model."""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest
from simfixtures import decode, edit_form, post_edit, sim_stats

from pipeline.simulator import SimConfig, running
from pipeline.simulator.answer import InvalidRequest
from pipeline.simulator.models import (
    MODELS,
    check_size,
    facts_of,
    free_size_problem,
    nearest_size,
    output_tokens,
)

SIZE_CASES = [
    # (model, size asked, served size or None when refused)
    ("gpt-image-2", "1536x864", "1536x864"),
    ("gpt-image-2", "64x64", "64x64"),
    ("gpt-image-2", "3840x1280", "3840x1280"),  # 3:1 exactly
    ("gpt-image-2", "1024x3072", "1024x3072"),  # 1:3 exactly
    ("gpt-image-2", "1000x1000", None),  # not multiples of 16
    ("gpt-image-2", "3840x1024", None),  # aspect 3.75:1
    ("gpt-image-2", "3856x1296", None),  # long side over 3840
    ("gpt-image-2", "0x0", None),
    ("gpt-image-2", "big", None),
    ("gpt-image-2-2026-04-21", "1536x864", "1536x864"),  # a snapshot follows its base
    ("gpt-image-1.5", "1536x864", None),
    ("gpt-image-1-mini", "640x480", None),
    ("chatgpt-image-latest", "640x480", None),
    ("gpt-image-1", "640x480", None),
    ("proxy-model", "640x480", None),  # unknown models: the gpt-image-1 family's rules
    ("gpt-image-1.5", "1024x1536", "1024x1536"),
    ("gpt-image-1.5", "auto", "1536x1024"),  # the first image is 96x64
]


@pytest.mark.parametrize(("model", "asked", "served"), SIZE_CASES)
def test_each_model_takes_its_sizes(model, asked, served):
    if served is None:
        with pytest.raises(InvalidRequest) as raised:
            check_size(asked, model, (96, 64))
        assert (raised.value.param, raised.value.code) == ("size", "invalid_value")
    else:
        assert check_size(asked, model, (96, 64)) == served


@pytest.mark.parametrize(
    ("width", "height", "problem"),
    [
        (1536, 864, None),
        (1000, 1000, "multiples of 16"),
        (3840, 1024, "between 1:3 and 3:1"),
        (3856, 1296, "at most 3840"),
    ],
)
def test_a_free_size_problem_is_said(width, height, problem):
    found = free_size_problem(width, height)
    assert found is None if problem is None else problem in found


@pytest.mark.parametrize(
    ("size", "quality", "nearest", "tokens"),
    [
        ("1024x1024", "high", "1024x1024", 4160),  # table sizes keep their figure
        ("1536x864", "medium", "1536x1024", 1323),  # ceil(1568 * 1536*864 / (1536*1024))
        ("2048x2048", "high", "1024x1024", 16640),
        ("1024x3072", "low", "1024x1536", 816),  # 408 * 2
        ("64x64", "low", "1024x1024", 2),  # ceil(272 / 256)
        ("1280x1024", "medium", "1536x1024", 1307),  # aspect 1.25: nearer 1.5 than 1 (log)
    ],
)
def test_free_sizes_scale_the_nearest_table_size_by_area(size, quality, nearest, tokens):
    width, height = (int(side) for side in size.split("x"))
    assert nearest_size(width, height) == nearest
    assert output_tokens(size, quality) == tokens


def test_snapshots_follow_their_base_and_unknown_models_have_no_row():
    assert facts_of("gpt-image-2-2026-04-21") is MODELS["gpt-image-2"]
    assert facts_of("gpt-image-1-mini-2025-10-06") is MODELS["gpt-image-1-mini"]
    assert facts_of("proxy-model") is None
    assert facts_of("gpt-image-9-2026-01-01") is None


async def test_gpt_image_2_answers_a_free_size_with_that_size_and_scaled_tokens():
    fields = {"model": "gpt-image-2", "size": "1536x864", "quality": "medium"}
    async with running() as url, aiohttp.ClientSession() as session:
        status, _, body = await post_edit(session, url, edit_form(fields))
        refused = [
            await post_edit(session, url, edit_form({**fields, "size": size}))
            for size in ("1000x1000", "3840x1024")
        ]
    answer = json.loads(body)
    assert status == 200, answer
    assert answer["size"] == "1536x864"
    assert answer["usage"]["output_tokens"] == 1323
    assert decode(base64.b64decode(answer["data"][0]["b64_json"])).size == (1536, 864)
    for refused_status, _, refused_body in refused:
        assert refused_status == 400
        assert json.loads(refused_body)["error"]["param"] == "size"


@pytest.mark.parametrize("model", ["gpt-image-1-mini", "gpt-image-1-mini-2025-10-06"])
async def test_high_input_fidelity_is_refused_on_gpt_image_1_mini(model):
    async with running() as url, aiohttp.ClientSession() as session:
        status, _, body = await post_edit(
            session, url, edit_form({"model": model, "input_fidelity": "high"})
        )
    assert status == 400
    assert json.loads(body)["error"]["param"] == "input_fidelity"


async def test_snapshots_and_chatgpt_image_latest_bill_at_their_rows_prices():
    fields = {"prompt": "abcd", "quality": "low", "size": "1024x1024"}
    async with running() as url, aiohttp.ClientSession() as session:
        for model in ("gpt-image-2-2026-04-21", "chatgpt-image-latest"):
            await post_edit(session, url, edit_form({**fields, "model": model}))
        stats = await sim_stats(session, url)
    gpt_image_2 = (1 * 5 + 194 * 8 + 272 * 30) / 1e6
    gpt_image_1_5 = (1 * 5 + 194 * 8 + 272 * 32) / 1e6
    assert stats["usd"] == pytest.approx(gpt_image_2 + gpt_image_1_5)


async def test_the_default_model_serves_requests_that_name_none():
    fields = {"prompt": "abcd", "quality": "low", "size": "1024x1024"}
    async with (
        running(SimConfig(default_model="gpt-image-1.5")) as url,
        aiohttp.ClientSession() as session,
    ):
        await post_edit(session, url, edit_form(fields))
        unknown = await post_edit(session, url, edit_form({**fields, "model": "proxy-model"}))
        stats = await sim_stats(session, url)
    assert stats["usd"] == pytest.approx((1 * 5 + 194 * 8 + 272 * 32) / 1e6)
    assert unknown[0] == 200  # an unknown model is served, and not priced
