"""The endpoint block and the items it serves: provider defaults, Azure's two routes, extra
headers, generations, the model size rules and refused fields, each problem located."""

from __future__ import annotations

import pytest
from helpers import make_image
from test_manifest import write_yaml

from pipeline.core.errors import ManifestError
from pipeline.manifest.load import load_plan

AZURE = "https://r.openai.azure.com"


def job(tmp_path, endpoint: str = "", items: str = "", defaults: str = "model: gpt-image-1.5"):
    make_image(tmp_path / "a.png")
    items = items or "  - image: a.png\n    prompt: p\n"
    text = f"version: 1\ndefaults: {{{defaults}}}\n"
    if endpoint:
        text += f"endpoint: {endpoint}\n"
    return write_yaml(tmp_path, text + "items:\n" + items)


def problems(path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_plan(path)
    return [str(p) for p in caught.value.problems]


def test_azure_defaults_to_its_key_variable_and_the_api_key_header(tmp_path):
    plan = load_plan(job(tmp_path, f"{{provider: azure, base_url: {AZURE}/openai/v1}}"))
    endpoint = plan.endpoint
    assert (endpoint.provider, endpoint.auth, endpoint.api_key_env) == (
        "azure",
        "api-key",
        "AZURE_OPENAI_API_KEY",
    )
    assert endpoint.deployment is None and endpoint.body == "multipart"


def test_openai_defaults_are_unchanged(tmp_path):
    endpoint = load_plan(job(tmp_path)).endpoint
    assert (endpoint.provider, endpoint.auth, endpoint.api_key_env, endpoint.base_url) == (
        "openai",
        "bearer",
        "OPENAI_API_KEY",
        "https://api.openai.com/v1",
    )


def test_azure_reads_its_endpoint_variable_as_the_sdk_does(tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", AZURE + "/")
    v1 = load_plan(job(tmp_path, "{provider: azure}")).endpoint
    assert v1.base_url == AZURE + "/openai/v1"
    classic = load_plan(
        job(tmp_path, "{provider: azure, deployment: d, api_version: 2025-04-01-preview}")
    ).endpoint
    assert classic.base_url == AZURE


def test_headers_are_kept_as_templates(tmp_path):
    plan = load_plan(
        job(tmp_path, "{headers: {OpenAI-Project: proj_1, X-Gateway-Key: '${GATEWAY_KEY}'}}")
    )
    assert dict(plan.endpoint.headers) == {
        "OpenAI-Project": "proj_1",
        "X-Gateway-Key": "${GATEWAY_KEY}",
    }


ENDPOINT_PROBLEMS = [
    pytest.param(
        f"{{provider: azure, base_url: {AZURE}, deployment: d}}",
        "endpoint.deployment: needs endpoint.api_version",
        id="deployment-without-api-version",
    ),
    pytest.param(
        f"{{provider: azure, base_url: {AZURE}/openai/v1, api_version: '2025-04-01-preview'}}",
        "endpoint.api_version: is only sent on Azure's classic route",
        id="api-version-without-deployment",
    ),
    pytest.param(
        "{deployment: d, api_version: v}",
        "endpoint.deployment: is for Azure OpenAI's classic route",
        id="deployment-on-openai",
    ),
    pytest.param(
        "{provider: azure}",
        "endpoint.base_url: is not set, nor is $AZURE_OPENAI_ENDPOINT",
        id="azure-without-base-url",
    ),
    pytest.param(
        f"{{provider: azure, base_url: {AZURE}/openai/v1, deployment: d, api_version: v}}",
        "the classic route adds /openai/deployments/... itself",
        id="classic-with-v1-url",
    ),
    pytest.param(
        f"{{provider: azure, base_url: {AZURE}}}",
        "is the resource's root; without a deployment requests take the v1 route",
        id="v1-at-resource-root",
    ),
    pytest.param(
        "{headers: {X-Key: '${1BAD}'}}",
        "headers.X-Key: '${1BAD}' is not a ${NAME} reference",
        id="bad-template",
    ),
    pytest.param(
        "{headers: {Content-Type: text/plain}}",
        "headers.Content-Type is set by the client",
        id="client-header",
    ),
    pytest.param("{provider: gcp}", "endpoint.provider", id="unknown-provider"),
    pytest.param("{body: xml}", "endpoint.body", id="unknown-body"),
]


@pytest.mark.parametrize(("endpoint", "problem"), ENDPOINT_PROBLEMS)
def test_endpoint_rules_are_located_problems(tmp_path, endpoint, problem):
    found = problems(job(tmp_path, endpoint))
    assert any(problem in p for p in found), found


def test_an_item_without_image_is_a_generation_and_mixes_with_edits(tmp_path):
    items = (
        "  - image: a.png\n    prompt: white background\n"
        "  - id: hero\n    prompt: a lamp on oak\n    size: 1536x864\n    model: gpt-image-2\n"
    )
    edit, generation = load_plan(job(tmp_path, items=items)).items
    assert (edit.endpoint, generation.endpoint) == ("edits", "generations")
    assert generation.images == () and generation.mask is None


SIZES = [
    pytest.param("gpt-image-2", "1536x864", None, id="free-size"),
    pytest.param("gpt-image-2-2026-04-21", "3840x1280", None, id="snapshot-3-to-1"),
    pytest.param("gpt-image-2", "1000x1000", "multiples of 16", id="not-16"),
    pytest.param("gpt-image-2", "4096x2048", "at most 3840", id="too-long"),
    pytest.param("gpt-image-2", "3072x960", "between 1:3 and 3:1", id="too-narrow"),
    pytest.param("gpt-image-1.5", "1536x864", "not one gpt-image-1.5 takes", id="fixed-model"),
    pytest.param("gpt-image-1.5", "auto", None, id="auto-passes"),
    pytest.param("my-proxy-model", "1536x864", None, id="unknown-model-passes"),
]


@pytest.mark.parametrize(("model", "size", "problem"), SIZES)
def test_sizes_follow_the_models_rules(tmp_path, model, size, problem):
    path = job(tmp_path, defaults=f"model: {model}, size: '{size}'")
    if problem is None:
        assert load_plan(path).items[0].params["size"] == size
    else:
        (found,) = problems(path)
        assert found.startswith("items[0] (a).size: size") and problem in found
        assert "use 1024x1024, 1536x1024, 1024x1536" in found


def test_stream_is_refused_with_the_reason(tmp_path):
    (found,) = problems(job(tmp_path, defaults="model: gpt-image-1.5, extra: {stream: true}"))
    assert "extra.stream is refused" in found and "streamed answers" in found


def test_moderation_needs_a_json_body_on_edits_but_not_on_generations(tmp_path):
    items = "  - image: a.png\n    prompt: p\n  - id: g\n    prompt: q\n"
    path = job(tmp_path, items=items, defaults="model: gpt-image-1.5, moderation: low")
    (found,) = problems(path)
    assert found.startswith("items[0] (a): moderation is sent only in JSON bodies")
    path = job(
        tmp_path, "{body: json}", items=items, defaults="model: gpt-image-1.5, moderation: low"
    )
    assert len(load_plan(path).items) == 2


def test_validate_says_the_provider_and_endpoints_and_needs_no_key_for_auth_none(
    tmp_path, capsys, monkeypatch
):
    import json

    from pipeline.cli.main import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    items = "  - image: a.png\n    prompt: p\n  - id: g\n    prompt: q\n"
    path = job(tmp_path, "{auth: none, headers: {X-Gateway-Key: '${GW}'}}", items=items)
    assert main(["validate", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["provider"] == "openai" and out["endpoints"] == {"edits": 1, "generations": 1}
    (warning,) = out["warnings"]  # no key warning: auth none reads no key
    assert warning.startswith("endpoint.headers.X-Gateway-Key reads ${GW}, which is not set")
    monkeypatch.setenv("GW", "set")
    assert main(["validate", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
