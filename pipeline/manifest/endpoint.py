"""The manifest's `endpoint:` block into the plan's Endpoint (CONTRACT section 6): defaults by
provider, the base URL from the environment when the manifest has none, and the rules that
need several keys at once (a deployment needs an api_version and Azure; a generation takes
no mask; `moderation` needs a JSON body). Every rule breaks into a located Problem.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from pipeline.core import plan
from pipeline.core.errors import Problem
from pipeline.core.plan import EDITS, PROVIDERS, Item, ProviderDefaults
from pipeline.manifest.expand import label
from pipeline.manifest.schema import Endpoint as EndpointSpec


def build_endpoint(
    spec: EndpointSpec, problems: list[Problem], environ: Mapping[str, str] = os.environ
) -> plan.Endpoint:
    """The plan's endpoint; what is wrong with the block goes to `problems`."""
    defaults = PROVIDERS[spec.provider]
    base_url = spec.base_url
    if base_url is None:
        base_url = _base_url_from_env(spec, defaults, problems, environ)
    if spec.deployment is not None and not defaults.deployments:
        problems.append(
            Problem(
                "endpoint.deployment",
                "is for Azure OpenAI's classic route",
                "set endpoint.provider: azure, or remove deployment (OpenAI names the model "
                "in defaults.model)",
            )
        )
    if spec.deployment is not None and spec.api_version is None:
        problems.append(
            Problem(
                "endpoint.deployment",
                "needs endpoint.api_version (the classic route sends ?api-version=)",
                "add api_version: 2025-04-01-preview (or the version your resource takes), or "
                "remove deployment to use the v1 route",
            )
        )
    if spec.api_version is not None and spec.deployment is None:
        problems.append(
            Problem(
                "endpoint.api_version",
                "is only sent on Azure's classic route, which needs endpoint.deployment",
                "add deployment: (classic route), or remove api_version (the v1 route takes none)",
            )
        )
    if defaults.v1_path and base_url:
        problems += _route_path_problems(base_url, defaults.v1_path, spec.deployment is not None)
    return plan.Endpoint(
        base_url=base_url.rstrip("/"),
        api_key_env=spec.api_key_env or defaults.api_key_env,
        provider=spec.provider,
        deployment=spec.deployment,
        api_version=spec.api_version,
        auth=spec.auth or defaults.auth,
        headers=MappingProxyType(dict(spec.headers)),
        body=spec.body,
    )


def _base_url_from_env(
    spec: EndpointSpec,
    defaults: ProviderDefaults,
    problems: list[Problem],
    environ: Mapping[str, str],
) -> str:
    variable = defaults.base_url_env
    value = environ.get(variable, "")
    if not value and defaults.base_url is not None:
        return defaults.base_url
    if not value:
        problems.append(
            Problem(
                "endpoint.base_url",
                f"is not set, nor is ${variable}",
                "set base_url: https://RESOURCE.openai.azure.com (classic route, with "
                "deployment) or https://RESOURCE.openai.azure.com/openai/v1 (v1 route)",
            )
        )
        return ""
    if not value.startswith(("http://", "https://")):
        problems.append(
            Problem(
                f"${variable}",
                "is not an http:// or https:// URL",
                "correct or unset it, or set endpoint.base_url in the manifest",
            )
        )
        return ""
    if defaults.v1_path and spec.deployment is None:
        # $AZURE_OPENAI_ENDPOINT names the resource, as the official SDK reads it.
        if not urllib.parse.urlsplit(value).path.rstrip("/"):
            value = value.rstrip("/") + defaults.v1_path
    return value


def _route_path_problems(base_url: str, v1_path: str, classic: bool) -> list[Problem]:
    """A provider with two routes: the classic one takes the resource's root, the v1 one its
    v1 path; a base URL shaped for the other route is a problem."""
    path = urllib.parse.urlsplit(base_url).path.rstrip("/")
    if classic and path.endswith(("/openai", v1_path)):
        return [
            Problem(
                "endpoint.base_url",
                f"ends in {path!r}, but the classic route adds /openai/deployments/... itself",
                "set base_url to the resource, e.g. https://RESOURCE.openai.azure.com",
            )
        ]
    if not classic and not path:
        return [
            Problem(
                "endpoint.base_url",
                "is the resource's root; without a deployment requests take the v1 route",
                f"append {v1_path} to base_url, or set deployment: and api_version: "
                "for the classic route",
            )
        ]
    return []


def check_items(items: Iterable[Item], endpoint: plan.Endpoint) -> list[Problem]:
    """Rules between items and the endpoint: `moderation` is a JSON field (generations and
    the JSON edit body), not a multipart one."""
    if endpoint.body != "multipart":
        return []
    return [
        Problem(
            label(item),
            "moderation is sent only in JSON bodies (generations, or edits with "
            "endpoint.body: json)",
            "set endpoint.body: json, or remove moderation from this edit",
        )
        for item in items
        if item.endpoint == EDITS and "moderation" in item.params
    ]
