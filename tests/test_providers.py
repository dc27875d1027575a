"""Provider differences as pure decisions: each route's URL and auth header, extra headers
from the environment, the request bodies, and what providers and gateways call their errors."""

from __future__ import annotations

import base64
import json
from types import MappingProxyType

import pytest

from pipeline.api.answers import classify, fix_hint
from pipeline.api.bodies import ImageRequest, build_body
from pipeline.api.providers import Route
from pipeline.api.vocabulary import moderated, quota_spent, standard_headers
from pipeline.core.errors import FatalError, PermanentError, RateLimited, RetryableError, UsageError
from pipeline.core.plan import Endpoint

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def endpoint(**kw) -> Endpoint:
    kw.setdefault("base_url", "https://api.example.com/v1")
    if "headers" in kw:
        kw["headers"] = MappingProxyType(kw["headers"])
    return Endpoint(**kw)


ROUTES = [
    pytest.param(
        {}, "edits", "https://api.example.com/v1/images/edits", id="openai-edits"
    ),
    pytest.param(
        {}, "generations", "https://api.example.com/v1/images/generations", id="openai-generations"
    ),
    pytest.param(
        {"base_url": "https://gw.example.com/v1?team=a"}, "edits",
        "https://gw.example.com/v1/images/edits?team=a", id="query-kept",
    ),
    pytest.param(
        {"base_url": "https://r.openai.azure.com/openai/v1", "provider": "azure",
         "auth": "api-key"},
        "edits", "https://r.openai.azure.com/openai/v1/images/edits", id="azure-v1",
    ),
    pytest.param(
        {"base_url": "https://r.openai.azure.com", "provider": "azure", "auth": "api-key",
         "deployment": "img edit", "api_version": "2025-04-01-preview"},
        "generations",
        "https://r.openai.azure.com/openai/deployments/img%20edit/images/generations"
        "?api-version=2025-04-01-preview",
        id="azure-classic-quoted",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("given", "kind", "url"), ROUTES)
def test_each_route_builds_its_url(given, kind, url):
    assert Route.for_run(endpoint(**given), {}).url(kind) == url


SIMULATED = [
    pytest.param({}, "http://127.0.0.1:9/v1/images/edits", id="openai"),
    pytest.param(
        {"provider": "azure", "auth": "api-key"},
        "http://127.0.0.1:9/openai/v1/images/edits",
        id="azure-v1",
    ),
    pytest.param(
        {"provider": "azure", "auth": "api-key", "deployment": "d", "api_version": "v"},
        "http://127.0.0.1:9/openai/deployments/d/images/edits?api-version=v",
        id="azure-classic",
    ),
]


@pytest.mark.parametrize(("given", "url"), SIMULATED)
def test_the_simulator_is_reached_in_the_shape_of_the_route(given, url):
    route = Route.for_run(endpoint(**given), {}, simulated_base="http://127.0.0.1:9/v1")
    assert route.url("edits") == url


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ("bearer", {"Authorization": "Bearer sk-1"}),
        ("api-key", {"api-key": "sk-1"}),
        ("none", {}),
    ],
)
def test_the_key_travels_in_the_header_its_auth_names(auth, expected):
    route = Route.for_run(endpoint(auth=auth), {})
    assert route.request_headers("sk-1") == expected
    assert route.needs_key is (auth != "none")


def test_extra_headers_read_their_variables_when_the_run_starts():
    given = endpoint(headers={"OpenAI-Project": "proj_1", "X-Gateway-Key": "gk ${GW_KEY}"})
    route = Route.for_run(given, {"GW_KEY": "s3cret"})
    assert route.request_headers("sk-1") == {
        "OpenAI-Project": "proj_1",
        "X-Gateway-Key": "gk s3cret",
        "Authorization": "Bearer sk-1",
    }
    assert given.headers["X-Gateway-Key"] == "gk ${GW_KEY}"  # the plan keeps the template


def test_an_unset_header_variable_stops_the_run_naming_it_but_not_under_the_simulator():
    given = endpoint(headers={"X-Gateway-Key": "${GW_KEY}"})
    with pytest.raises(UsageError, match=r"endpoint.headers.X-Gateway-Key reads \$\{GW_KEY\}"):
        Route.for_run(given, {})
    simulated = Route.for_run(given, {}, simulated_base="http://127.0.0.1:9/v1")
    assert simulated.headers == {"X-Gateway-Key": "simulated"}


def test_the_simulator_gets_the_providers_key_header_where_a_gateway_would_sign():
    route = Route.for_run(endpoint(auth="none"), {}, simulated_base="http://127.0.0.1:9/v1")
    assert route.request_headers("sk-sim") == {"Authorization": "Bearer sk-sim"}


def request(images=(("a.png", PNG, "image/png"),), mask=None, **params) -> ImageRequest:
    return ImageRequest(
        prompt="a chair", params={"model": "gpt-image-2", **params}, images=images, mask=mask
    )


def test_a_json_edit_body_carries_images_and_mask_as_data_urls_with_typed_params():
    req = request(
        images=(("a.png", PNG, "image/png"), ("b.jpg", b"\xff\xd8jpeg", "image/jpeg")),
        mask=("m.png", PNG),
        n=2,
        size="1536x864",
        moderation="low",
        output_compression=80.0,
    )
    body = build_body(req, "json")
    assert body.headers == {"Content-Type": "application/json"}
    doc = json.loads(body.data)
    assert list(doc)[:2] == ["model", "prompt"]
    assert doc["images"] == [
        {"image_url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
        {"image_url": "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8jpeg").decode()},
    ]
    assert doc["mask"] == {"image_url": "data:image/png;base64," + base64.b64encode(PNG).decode()}
    assert (doc["n"], doc["size"], doc["moderation"]) == (2, "1536x864", "low")
    assert doc["output_compression"] == 80 and isinstance(doc["output_compression"], int)


def test_a_generation_is_json_whatever_the_edit_body_and_leaves_out_edit_only_fields():
    req = request(images=(), quality="high", input_fidelity="high", background="opaque")
    assert req.endpoint == "generations"
    for kind in ("multipart", "json"):
        doc = json.loads(build_body(req, kind).data)
        assert doc == {
            "model": "gpt-image-2",
            "prompt": "a chair",
            "quality": "high",
            "background": "opaque",
        }


def test_a_multipart_edit_body_is_a_form_with_its_own_boundary():
    body = build_body(request(), "multipart")
    assert body.content_type is None and body.data.is_multipart


def test_renamed_gateway_headers_are_read_under_their_plain_names():
    got = standard_headers(
        {
            "llm_provider-retry-after-ms": "1500",
            "llm_provider-x-request-id": "req_9",
            "Retry-After": "3",
            "llm_provider-retry-after": "30",
        }
    )
    assert got["retry-after-ms"] == "1500"
    assert got["x-request-id"] == "req_9"
    assert got["retry-after"] == "3"  # the plain header wins


LITELLM_QUOTA = {
    "message": "litellm.RateLimitError: OpenAIException - Error code: 429 - {'error': "
    "{'message': 'You exceeded your current quota, please check your plan and billing "
    "details.', 'type': 'insufficient_quota', 'param': None, 'code': 'insufficient_quota'}}",
    "type": "throttling_error",
    "param": None,
    "code": "429",
}
LITELLM_RATE = {
    "message": "litellm.RateLimitError: OpenAIException - Error code: 429 - {'error': "
    "{'message': 'Rate limit reached for gpt-image-1 on requests per min (RPM): Limit 5, "
    "Used 5, Requested 1.', 'type': 'requests', 'code': 'rate_limit_exceeded'}}",
    "type": "throttling_error",
    "param": None,
    "code": "429",
}
LITELLM_MODERATION = {
    "message": "litellm.BadRequestError: OpenAIException - Error code: 400 - {'error': "
    "{'message': 'Your request was rejected by the safety system.', 'type': "
    "'image_generation_user_error', 'code': 'moderation_blocked'}}",
    "type": "invalid_request_error",
    "param": None,
    "code": "400",
}
LITELLM_BAD_KEY_500 = {
    "message": "litellm.APIError: OpenAIException - Incorrect API key provided: sk-***.",
    "type": "api_error",
    "param": None,
    "code": "500",
}
AZURE_FILTER = {
    "code": "content_filter",
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
    "management policy.",
    "innererror": {"code": "ResponsibleAIPolicyViolation"},
}
AZURE_INNER_ONLY = {"code": "BadRequest", "innererror": {"code": "ResponsibleAIPolicyViolation"}}
OPENAI_RATE = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
# A quota word in a message whose code is the provider's own is not read: the code decides.
OWN_CODE_MENTIONS_QUOTA = {
    "message": "Rate limit reached; this is not your quota",
    "type": "requests",
    "code": "rate_limit_exceeded",
}

CLASSES = [
    pytest.param(429, LITELLM_QUOTA, FatalError, id="litellm-quota-aborts"),
    pytest.param(429, LITELLM_RATE, RateLimited, id="litellm-rate-limit-retries"),
    pytest.param(400, LITELLM_MODERATION, PermanentError, id="litellm-moderation-fails-item"),
    pytest.param(500, LITELLM_BAD_KEY_500, FatalError, id="litellm-bad-key-as-500-aborts"),
    pytest.param(400, AZURE_FILTER, PermanentError, id="azure-content-filter"),
    pytest.param(400, AZURE_INNER_ONLY, PermanentError, id="azure-inner-error"),
    pytest.param(429, OPENAI_RATE, RateLimited, id="openai-rate-limit"),
    pytest.param(429, OWN_CODE_MENTIONS_QUOTA, RateLimited, id="own-code-decides"),
    pytest.param(500, {"message": "oops", "type": "server_error"}, RetryableError, id="500"),
]


@pytest.mark.parametrize(("status", "error", "cls"), CLASSES)
def test_errors_are_classed_by_code_or_where_rewritten_by_message(status, error, cls):
    assert classify(status, error) is cls


def test_moderation_in_any_vocabulary_gets_the_safety_hint():
    for error in (LITELLM_MODERATION, AZURE_FILTER, AZURE_INNER_ONLY):
        assert moderated(error)
        hint = fix_hint(PermanentError, 400, error, model="m", key_env="K", base_url="u")
        assert "safety system" in hint and "change its prompt" in hint
    assert not moderated(OPENAI_RATE)


def test_a_quota_spent_behind_a_gateway_points_at_billing_and_a_bad_key_at_the_key():
    assert quota_spent(LITELLM_QUOTA) and not quota_spent(LITELLM_RATE)
    hint = fix_hint(FatalError, 429, LITELLM_QUOTA, model="m", key_env="K", base_url="u")
    assert "quota or credit is spent" in hint
    hint = fix_hint(FatalError, 500, LITELLM_BAD_KEY_500, model="m", key_env="GW", base_url="u")
    assert "$GW" in hint


def test_a_missing_azure_deployment_says_which_keys_to_check():
    error = {"code": "DeploymentNotFound", "message": "The API deployment 'x' does not exist"}
    assert classify(404, error) is FatalError
    hint = fix_hint(FatalError, 404, error, model="gpt-image-1.5", key_env="K", base_url="u")
    assert "endpoint.deployment" in hint
