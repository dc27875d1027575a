"""Answers as proxies send them: LiteLLM's rewritten errors and renamed headers
(`gateway="litellm"`), and the usage shapes and short answers of the script tokens
`chatusage`, `emptyusage`, `nodetails` and `fewer`."""

from __future__ import annotations

import json

import aiohttp
import openai
import pytest
from simfixtures import AUTH, edit_form, image_bytes, post_edit, sim_stats

from pipeline.simulator import SimConfig, running
from pipeline.simulator.answer import Answer
from pipeline.simulator.gateway import litellm_error, rename_headers

LITELLM = SimConfig(gateway="litellm")


async def scripted(config: SimConfig, prompt: str, fields: dict | None = None, headers=None):
    async with running(config) as url, aiohttp.ClientSession() as session:
        status, got_headers, body = await post_edit(
            session, url, edit_form({"prompt": prompt, **(fields or {})}), headers
        )
        return status, got_headers, json.loads(body), await sim_stats(session, url)


async def test_a_spent_quota_arrives_as_litellms_throttling_error():
    status, _, body, _ = await scripted(LITELLM, "x [sim:quota]")
    error = body["error"]
    assert status == 429
    assert (error["type"], error["code"], error["param"]) == ("throttling_error", "429", None)
    assert "insufficient_quota" in error["message"]
    assert "You exceeded your current quota" in error["message"]
    assert error["message"].startswith("litellm.RateLimitError: ")


async def test_moderation_arrives_as_code_400_with_the_providers_words():
    status, _, body, _ = await scripted(LITELLM, "x [sim:moderation]")
    error = body["error"]
    assert (status, error["code"], error["type"]) == (400, "400", "invalid_request_error")
    assert "moderation_blocked" in error["message"]
    assert "rejected by the safety system" in error["message"]


async def test_a_bad_key_arrives_as_code_401():
    config = SimConfig(gateway="litellm", api_key="sk-right")
    status, _, body, _ = await scripted(config, "x", headers={"Authorization": "Bearer sk-no"})
    assert (status, body["error"]["code"], body["error"]["type"]) == (401, "401", "auth_error")


async def test_retry_after_and_request_id_headers_arrive_renamed():
    config = SimConfig(gateway="litellm", rpm=600)
    status, headers, _, _ = await scripted(config, "x [sim:429:0.5]")
    assert status == 429
    assert (headers["llm_provider-retry-after-ms"], headers["llm_provider-retry-after"]) == (
        "500",
        "1",
    )
    assert headers["llm_provider-x-request-id"].startswith("req_")
    assert not {"retry-after", "retry-after-ms", "x-request-id"} & set(headers)
    assert headers["x-ratelimit-limit-requests"] == "600"


async def test_a_success_passes_the_gateway_unchanged():
    status, headers, body, _ = await scripted(LITELLM, "x", {"quality": "low"})
    assert status == 200
    assert body["usage"]["output_tokens"] == 272
    assert "llm_provider-x-request-id" in headers


async def test_the_official_client_sees_litellms_codes():
    async with running(LITELLM) as url:
        async with openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0) as api:
            with pytest.raises(openai.RateLimitError) as raised:
                await api.images.edit(
                    image=("in.png", image_bytes(), "image/png"), prompt="x [sim:quota]"
                )
    assert (raised.value.code, raised.value.type) == ("429", "throttling_error")


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, "invalid_request_error"), (404, "not_found_error"), (500, "internal_server_error")],
)
def test_litellm_rewrites_each_json_error_by_its_status(status, error_type):
    original = Answer(status, {"error": {"message": "m", "type": "t", "param": "p", "code": "c"}})
    rewritten = litellm_error(original).error
    assert (rewritten["code"], rewritten["type"], rewritten["param"]) == (
        str(status),
        error_type,
        None,
    )
    assert "'code': 'c'" in rewritten["message"] and "'message': 'm'" in rewritten["message"]


def test_litellm_leaves_successes_and_html_pages_alone():
    for answer in (Answer(200, {"data": []}), Answer(502, html="<html></html>")):
        assert litellm_error(answer) == answer


def test_litellm_renames_only_the_retry_and_request_id_headers():
    headers = {"retry-after": "1", "x-request-id": "req_1", "x-ratelimit-limit-requests": "5"}
    rename_headers(headers)
    assert headers == {
        "llm_provider-retry-after": "1",
        "llm_provider-x-request-id": "req_1",
        "x-ratelimit-limit-requests": "5",
    }


USAGE = {"quality": "low", "size": "1024x1024", "model": "gpt-image-1"}


async def test_chatusage_sends_usage_in_the_chat_shape():
    _, _, body, _ = await scripted(SimConfig(), "[sim:chatusage]", USAGE)
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert body["usage"]["completion_tokens"] == 272
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] - 272


async def test_emptyusage_and_nodetails_send_what_proxies_send():
    _, _, empty, stats = await scripted(SimConfig(), "[sim:emptyusage]", USAGE)
    _, _, bare, _ = await scripted(SimConfig(), "[sim:nodetails]", USAGE)
    assert empty["usage"] == {}
    assert stats["usd"] > 0  # the provider billed it all the same
    assert "input_tokens_details" not in bare["usage"]
    assert bare["usage"]["output_tokens"] == 272


@pytest.mark.parametrize(("n", "returned"), [(3, 2), (1, 1)])
async def test_fewer_returns_one_image_less_and_bills_what_it_returned(n, returned):
    _, _, body, stats = await scripted(SimConfig(), "[sim:fewer]", {**USAGE, "n": str(n)})
    assert len(body["data"]) == returned
    assert body["usage"]["output_tokens"] == returned * 272
    assert stats["tokens"]["image_output"] == returned * 272


async def test_usage_shapes_can_be_drawn_at_a_rate():
    config = SimConfig(faults={"chatusage": 1.0})
    async with running(config) as url, aiohttp.ClientSession() as session:
        async with session.post(f"{url}/images/edits", data=edit_form(), headers=AUTH) as r:
            body = await r.json()
    assert "prompt_tokens" in body["usage"]
