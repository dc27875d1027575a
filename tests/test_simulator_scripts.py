"""Scripted mode gives exactly the scripted sequence, through a header or a prompt directive;
every outcome token has its documented answer; generation time is drawn and spent as said."""

from __future__ import annotations

import base64
import io
import json

import aiohttp
import pytest
from PIL import Image
from simfixtures import edit_form, post_edit, sim_stats

from pipeline.simulator import SimConfig, running


async def statuses(url: str, prompts: list[str], header: str | None = None) -> list[int]:
    headers = {} if header is None else {"x-sim-script": header}
    async with aiohttp.ClientSession() as session:
        return [
            (await post_edit(session, url, edit_form({"prompt": p}), headers))[0] for p in prompts
        ]


async def test_a_header_script_gives_its_sequence_then_ok():
    async with running() as url:
        got = await statuses(url, ["same"] * 6, header="429,500,503,502,ok,413")
        after = await statuses(url, ["same"], header="429,500,503,502,ok,413")
    assert got == [429, 500, 503, 502, 200, 413]
    assert after == [200]


async def test_a_prompt_directive_scripts_each_prompt_separately():
    async with running() as url:
        got = await statuses(
            url,
            ["a [sim:500,504]", "b [sim:429]", "a [sim:500,504]", "b [sim:429]", "a [sim:500,504]"],
        )
    assert got == [500, 429, 504, 200, 200]


async def test_the_header_wins_over_a_prompt_directive_and_keys_on_the_prompt_too():
    async with running() as url:
        got = await statuses(url, ["x [sim:500]", "y", "x [sim:500]"], header="409")
    assert got == [409, 409, 200]


async def test_a_scripted_retry_after_sets_both_headers():
    async with running() as url, aiohttp.ClientSession() as session:
        status, headers, body = await post_edit(
            session, url, edit_form({"prompt": "[sim:429:0.05]"})
        )
        status_503, headers_503, _ = await post_edit(
            session, url, edit_form({"prompt": "[sim:503:2.5]"})
        )
    assert status == 429
    assert (headers["retry-after-ms"], headers["retry-after"]) == ("50", "1")
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert "Please try again in 50ms." in error["message"]
    assert (status_503, headers_503["retry-after-ms"], headers_503["retry-after"]) == (
        503,
        "2500",
        "3",
    )


async def test_a_bad_script_header_is_refused_naming_the_header():
    async with running() as url, aiohttp.ClientSession() as session:
        status, _, body = await post_edit(
            session, url, edit_form(), headers={"x-sim-script": "429,teapot"}
        )
    assert status == 400
    assert json.loads(body)["error"]["param"] == "x-sim-script"
    assert "teapot" in json.loads(body)["error"]["message"]


@pytest.mark.parametrize(
    ("token", "status", "error_type", "code"),
    [
        ("401", 401, "invalid_request_error", "invalid_api_key"),
        ("403", 403, "invalid_request_error", None),
        ("404", 404, "invalid_request_error", "model_not_found"),
        ("408", 408, "server_error", None),
        ("409", 409, "invalid_request_error", None),
        ("413", 413, "invalid_request_error", "request_too_large"),
        ("422", 422, "invalid_request_error", None),
        ("quota", 429, "insufficient_quota", "insufficient_quota"),
        ("moderation", 400, "image_generation_user_error", "moderation_blocked"),
        ("500", 500, "server_error", None),
        ("504", 504, "server_error", None),
    ],
)
async def test_each_error_token_answers_with_its_status_and_error(token, status, error_type, code):
    async with running() as url, aiohttp.ClientSession() as session:
        got, headers, body = await post_edit(session, url, edit_form({"prompt": f"[sim:{token}]"}))
    error = json.loads(body)["error"]
    assert (got, error["type"], error["code"]) == (status, error_type, code)
    assert set(error) >= {"message", "type", "param", "code"}
    assert headers["x-request-id"].startswith("req_")


async def test_url_datauri_and_nousage_answers_carry_usable_images():
    async with running() as url, aiohttp.ClientSession() as session:
        answers = {}
        for token in ("url", "datauri", "nousage"):
            _, _, body = await post_edit(
                session, url, edit_form({"prompt": f"[sim:{token}]", "n": "2"})
            )
            answers[token] = json.loads(body)
        links = [item["url"] for item in answers["url"]["data"]]
        fetched = []
        for link in links:
            async with session.get(link) as response:
                fetched.append((response.status, response.content_type, await response.read()))
        stats = await sim_stats(session, url)
    assert [f[:2] for f in fetched] == [(200, "image/png")] * 2
    Image.open(io.BytesIO(fetched[0][2])).verify()
    data_uri = answers["datauri"]["data"][0]["b64_json"]
    prefix = "data:image/png;base64,"
    assert data_uri.startswith(prefix)
    Image.open(io.BytesIO(base64.b64decode(data_uri.removeprefix(prefix)))).verify()
    assert "usage" not in answers["nousage"] and len(answers["nousage"]["data"]) == 2
    assert "usage" in answers["url"]
    assert sum(stats["ok_by_image"].values()) == 3


async def test_generation_time_is_mean_plus_jitter_scaled_by_quality_and_seeded():
    async def slept_for(quality: str, seed: int) -> list[float]:
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        config = SimConfig(latency_s=2.0, jitter_s=0.5, latency_by_quality=True, seed=seed)
        async with running(config, sleep=sleep) as url, aiohttp.ClientSession() as session:
            for prompt in ("a", "b", "c", "d", "e [sim:429]", "f [sim:quota]"):
                await post_edit(session, url, edit_form({"quality": quality, "prompt": prompt}))
        return slept

    medium = await slept_for("medium", seed=5)
    assert len(medium) == 4  # 429 and quota answer at once, with no generation time
    assert all(1.5 <= s <= 2.5 for s in medium)
    assert len(set(medium)) == 4
    assert await slept_for("medium", seed=5) == medium
    assert await slept_for("medium", seed=6) != medium
    assert await slept_for("high", seed=5) == [2 * s for s in medium]
    assert await slept_for("low", seed=5) == [0.5 * s for s in medium]
