"""EditsClient on each provider's route, against a tiny aiohttp server on 127.0.0.1 that
records what it receives: Azure's two routes with the key in `api-key`, extra headers, the JSON
edit body, generations, and a LiteLLM-style gateway's renamed headers and rewritten errors."""

from __future__ import annotations

import base64
import io
import json
from types import MappingProxyType

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from pipeline.api.bodies import ImageRequest
from pipeline.api.client import EditsClient
from pipeline.api.providers import Route
from pipeline.core.errors import FatalError, PermanentError, RateLimited
from pipeline.core.plan import Endpoint

KEY = "sk-azure-SECRET-42"


def png(size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG = png()
USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"text_tokens": 12, "image_tokens": 0},
    "output_tokens": 272,
    "total_tokens": 284,
}


class Recorder:
    """A server on a free loopback port answering every POST with `answer`; keeps requests."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answer = (
            200,
            {"data": [{"b64_json": base64.b64encode(PNG).decode()}], "usage": USAGE},
            {},
        )

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "content_type": request.content_type,
                "body": body,
            }
        )
        status, doc, headers = self.answer
        return web.json_response(doc, status=status, headers=headers)


@pytest.fixture
async def server():
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    recorder.root = f"http://{host}:{port}"
    yield recorder
    await runner.cleanup()


async def send(route: Route, req: ImageRequest, key: str | None = KEY):
    async with aiohttp.ClientSession() as session:
        client = EditsClient(session, route, key, timeout_s=10, api_key_env="AZURE_OPENAI_API_KEY")
        return await client.edit(req)


def edit(**params) -> ImageRequest:
    return ImageRequest(
        prompt="white background",
        params={"model": "gpt-image-1.5", **params},
        images=[("a.png", PNG, "image/png")],
        mask=("m.png", PNG),
    )


def generation(**params) -> ImageRequest:
    return ImageRequest(prompt="a lamp on oak", params={"model": "gpt-image-2", **params})


def azure(server, **kw) -> Route:
    return Route.for_run(Endpoint(provider="azure", auth="api-key", base_url=server.root, **kw), {})


async def test_azure_classic_sends_the_key_in_api_key_with_the_api_version(server):
    route = azure(server, deployment="img-edit", api_version="2025-04-01-preview")
    response = await send(route, edit())
    (got,) = server.requests
    assert got["path"] == "/openai/deployments/img-edit/images/edits"
    assert got["query"] == {"api-version": "2025-04-01-preview"}
    assert got["headers"]["api-key"] == KEY and "Authorization" not in got["headers"]
    assert got["content_type"] == "multipart/form-data"
    assert response.images == [PNG]


async def test_azure_v1_generation_goes_to_generations_as_json(server):
    route = Route.for_run(
        Endpoint(provider="azure", auth="api-key", base_url=server.root + "/openai/v1"), {}
    )
    await send(route, generation(size="1536x864", input_fidelity="high"))
    (got,) = server.requests
    assert got["path"] == "/openai/v1/images/generations" and got["query"] == {}
    assert got["headers"]["api-key"] == KEY
    assert got["content_type"] == "application/json"
    assert json.loads(got["body"]) == {
        "model": "gpt-image-2",
        "prompt": "a lamp on oak",
        "size": "1536x864",
    }


async def test_the_json_edit_body_reaches_the_server_with_data_urls(server):
    route = Route.for_run(Endpoint(base_url=server.root + "/v1", body="json"), {})
    await send(route, edit(moderation="low", n=1))
    (got,) = server.requests
    assert got["path"] == "/v1/images/edits"
    assert got["headers"]["Authorization"] == f"Bearer {KEY}"
    doc = json.loads(got["body"])
    prefix = "data:image/png;base64,"
    assert doc["images"][0]["image_url"].startswith(prefix)
    assert base64.b64decode(doc["images"][0]["image_url"][len(prefix) :]) == PNG
    assert doc["mask"]["image_url"].startswith(prefix)
    assert (doc["moderation"], doc["n"]) == ("low", 1)


async def test_extra_headers_from_the_environment_go_with_every_request(server):
    endpoint = Endpoint(
        base_url=server.root + "/v1",
        auth="none",
        headers=MappingProxyType({"X-Gateway-Key": "${GW}", "OpenAI-Project": "proj_1"}),
    )
    await send(Route.for_run(endpoint, {"GW": "gw-secret"}), edit(), key=None)
    (got,) = server.requests
    assert got["headers"]["X-Gateway-Key"] == "gw-secret"
    assert got["headers"]["OpenAI-Project"] == "proj_1"
    assert "Authorization" not in got["headers"] and "api-key" not in got["headers"]


async def test_litellm_renamed_headers_give_the_request_id_and_the_wait(server):
    route = Route.for_run(Endpoint(base_url=server.root + "/v1"), {})
    headers = {"llm_provider-x-request-id": "req_lite_1"}
    server.answer = (200, {"data": [{"b64_json": base64.b64encode(PNG).decode()}]}, headers)
    assert (await send(route, edit())).request_id == "req_lite_1"
    rate = {
        "message": "litellm.RateLimitError: Error code: 429 - {'error': {'code': "
        "'rate_limit_exceeded'}}",
        "type": "throttling_error",
        "param": None,
        "code": "429",
    }
    headers = {"llm_provider-retry-after-ms": "2500", "llm_provider-x-request-id": "req_lite_2"}
    server.answer = (429, {"error": rate}, headers)
    with pytest.raises(RateLimited) as caught:
        await send(route, edit())
    assert caught.value.retry_after_s == 2.5
    assert caught.value.request_id == "req_lite_2"
    assert caught.value.headers["retry-after-ms"] == "2500"


async def test_litellm_quota_aborts_and_azure_content_filter_fails_the_item(server):
    route = Route.for_run(Endpoint(base_url=server.root + "/v1"), {})
    quota = {
        "message": "litellm.RateLimitError: OpenAIException - Error code: 429 - {'error': "
        "{'message': 'You exceeded your current quota', 'code': 'insufficient_quota'}}",
        "type": "throttling_error",
        "param": None,
        "code": "429",
    }
    server.answer = (429, {"error": quota}, {})
    with pytest.raises(FatalError, match="quota or credit is spent"):
        await send(route, edit())
    content_filter = {
        "code": "content_filter",
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
        "content management policy.",
        "innererror": {"code": "ResponsibleAIPolicyViolation"},
    }
    server.answer = (400, {"error": content_filter}, {})
    with pytest.raises(PermanentError, match="safety system") as caught:
        await send(azure(server, deployment="d", api_version="v"), edit())
    assert caught.value.code == "content_filter"


async def test_a_header_value_echoed_in_an_error_is_redacted_like_the_key(server):
    endpoint = Endpoint(
        base_url=server.root + "/v1", headers=MappingProxyType({"X-Gateway-Key": "${GW}"})
    )
    refused = {"message": "gateway key gw-echoed-secret is not allowed", "code": "denied"}
    server.answer = (403, {"error": refused}, {})
    with pytest.raises(FatalError) as caught:
        await send(Route.for_run(endpoint, {"GW": "gw-echoed-secret"}), edit())
    assert "gw-echoed-secret" not in str(caught.value) and "***" in str(caught.value)
