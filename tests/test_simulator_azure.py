"""Azure OpenAI's image routes: classic (deployment in the path, api-version required) and v1
(model = deployment), the key only in `api-key`, Azure's error shapes, deployments mapped
to models, and the content filter as the moderation answer."""

from __future__ import annotations

import base64

import aiohttp
import openai
import pytest
from simfixtures import decode, edit_form, image_bytes

from pipeline.simulator import SimConfig, running
from pipeline.simulator.azure import deployment_model

KEY = "azure-key-123"
VERSION = "2025-04-01-preview"
PNG = ("in.png", image_bytes(), "image/png")


def root(url: str) -> str:
    return url.removesuffix("/v1")


def classic(url: str, deployment: str | None = "gpt-image-1", key: str = KEY):
    return openai.AsyncAzureOpenAI(
        azure_endpoint=root(url),
        azure_deployment=deployment,
        api_key=key,
        api_version=VERSION,
        max_retries=0,
    )


def v1(url: str, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{root(url)}/openai/v1",
        api_key="not-sent-as-bearer-to-azure",
        default_headers={"api-key": key},
        max_retries=0,
    )


async def test_the_azure_client_edits_and_generates_on_the_classic_route():
    async with running(SimConfig(api_key=KEY)) as url, classic(url) as api:
        edited = await api.images.edit(image=PNG, prompt="red", size="1024x1024", quality="low")
        generated = await api.images.generate(prompt="red", size="1024x1024", quality="low")
    assert decode(base64.b64decode(edited.data[0].b64_json)).size == (1024, 1024)
    assert edited.usage.output_tokens == generated.usage.output_tokens == 272
    assert generated.usage.input_tokens_details.image_tokens == 0


async def test_the_azure_client_puts_the_model_in_the_path_without_a_deployment():
    async with running() as url, classic(url, deployment=None) as api:
        result = await api.images.edit(
            image=PNG, prompt="x", model="gpt-image-2", size="640x480", quality="low"
        )
    assert result.size == "640x480"  # served by gpt-image-2: free sizes


async def test_the_openai_client_edits_and_generates_on_the_v1_route():
    async with running(SimConfig(api_key=KEY)) as url, v1(url) as api:
        edited = await api.images.edit(image=PNG, prompt="x", model="gpt-image-2", size="64x64")
        generated = await api.images.generate(prompt="x", model="gpt-image-2", size="64x64")
    assert edited.size == generated.size == "64x64"


async def test_a_bearer_key_without_api_key_gets_azures_401_on_both_routes():
    async with running() as url, aiohttp.ClientSession() as session:
        answers = []
        for path in (
            f"/openai/deployments/gpt-image-1/images/edits?api-version={VERSION}",
            "/openai/v1/images/edits",
        ):
            async with session.post(
                root(url) + path, data=edit_form(), headers={"Authorization": f"Bearer {KEY}"}
            ) as response:
                answers.append((response.status, await response.json()))
    for status, body in answers:
        assert status == 401
        assert body["error"]["code"] == "401"
        assert "Access denied" in body["error"]["message"]


async def test_the_openai_client_with_a_bearer_key_only_raises_authentication_error():
    async with running() as url:
        api = openai.AsyncOpenAI(base_url=f"{root(url)}/openai/v1", api_key=KEY, max_retries=0)
        async with api:
            with pytest.raises(openai.AuthenticationError) as raised:
                await api.images.edit(image=PNG, prompt="x", model="gpt-image-1")
    assert raised.value.code == "401"


async def test_a_wrong_api_key_is_refused_when_the_simulator_has_one():
    async with running(SimConfig(api_key=KEY)) as url, classic(url, key="other") as api:
        with pytest.raises(openai.AuthenticationError):
            await api.images.edit(image=PNG, prompt="x")


async def test_the_classic_route_without_api_version_is_azures_404():
    async with running() as url, aiohttp.ClientSession() as session:
        async with session.post(
            root(url) + "/openai/deployments/gpt-image-1/images/edits",
            data=edit_form(),
            headers={"api-key": KEY},
        ) as response:
            body = await response.json()
    assert response.status == 404
    assert body == {"error": {"code": "404", "message": "Resource not found"}}


async def test_configured_deployments_serve_their_model_and_others_are_not_found():
    config = SimConfig(azure_deployments={"photos": "gpt-image-2"})
    async with running(config) as url:
        async with classic(url, "photos") as api:
            served = await api.images.edit(image=PNG, prompt="x", size="640x480", quality="low")
        async with classic(url, "gpt-image-1") as api:
            with pytest.raises(openai.NotFoundError) as classic_missing:
                await api.images.edit(image=PNG, prompt="x")
        async with v1(url) as api:
            with pytest.raises(openai.NotFoundError) as v1_missing:
                await api.images.edit(image=PNG, prompt="x", model="elsewhere")
    assert served.size == "640x480"
    assert classic_missing.value.code == v1_missing.value.code == "DeploymentNotFound"


async def test_moderation_on_azure_is_the_content_filter_answer():
    async with running() as url, classic(url) as api:
        with pytest.raises(openai.BadRequestError) as raised:
            await api.images.edit(image=PNG, prompt="something [sim:moderation]")
    error = raised.value.body
    assert (raised.value.code, raised.value.param) == ("content_filter", "prompt")
    assert error["status"] == 400
    assert error["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    results = error["innererror"]["content_filter_result"]
    assert results["violence"] == {"filtered": True, "severity": "high"}
    assert results["hate"] == {"filtered": False, "severity": "safe"}


async def test_the_content_filter_token_gives_the_same_answer_on_openai_routes():
    async with running() as url:
        async with openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0) as api:
            with pytest.raises(openai.BadRequestError) as raised:
                await api.images.edit(image=PNG, prompt="x [sim:content_filter]")
    assert raised.value.code == "content_filter"


@pytest.mark.parametrize(
    ("name", "deployments", "model"),
    [
        ("gpt-image-2", {}, "gpt-image-2"),
        ("gpt-image-2-2026-04-21", {}, "gpt-image-2-2026-04-21"),
        ("my-deployment", {}, "gpt-image-1.5"),
        ("photos", {"photos": "gpt-image-1-mini"}, "gpt-image-1-mini"),
        ("gpt-image-2", {"photos": "gpt-image-1-mini"}, None),
    ],
)
def test_which_model_a_deployment_serves(name, deployments, model):
    assert deployment_model(name, deployments) == model


async def test_the_v1_route_needs_the_deployment_in_the_model_field():
    async with running() as url, aiohttp.ClientSession() as session:
        async with session.post(
            root(url) + "/openai/v1/images/generations",
            json={"prompt": "x"},
            headers={"api-key": KEY},
        ) as response:
            body = await response.json()
    assert response.status == 400
    assert (body["error"]["param"], body["error"]["code"]) == (
        "model",
        "missing_required_parameter",
    )
