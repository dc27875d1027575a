"""Where a request goes and how it is signed, for each provider: the one place that knows
OpenAI's route from Azure OpenAI's (CONTRACT section 6).

- openai (OpenAI or any compatible server): `POST {base_url}/images/{edits|generations}`.
- azure, v1 route (no deployment): the same URL shape under `https://RESOURCE.openai.azure.com/
  openai/v1`; the body's `model` names the deployment.
- azure, classic route (a deployment): `POST {base_url}/openai/deployments/{deployment}/
  images/{edits|generations}?api-version={api_version}`; the body's `model` is sent as given.
Auth: `Authorization: Bearer KEY` (bearer), `api-key: KEY` (api-key) or nothing (none: a
gateway signs). Extra headers come from the manifest with their `${NAME}` parts read from the
environment when the run starts; they are sent, never recorded.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pipeline.core.envvars import MissingVariable, expand, references
from pipeline.core.errors import UsageError
from pipeline.core.plan import PROVIDERS, Endpoint

# auth -> (header name, how the key is written in it)
AUTH_HEADERS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {"bearer": ("Authorization", "Bearer {key}"), "api-key": ("api-key", "{key}")}
)
SIMULATED_HEADER = "simulated"  # the value of an unset ${NAME} under --simulate


@dataclass(frozen=True, slots=True)
class Route:
    """One run's way to its provider. `headers` hold resolved values: never record them."""

    base_url: str
    provider: str = "openai"
    auth: str = "bearer"
    deployment: str | None = None
    api_version: str | None = None
    body: str = "multipart"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # the values read from the environment: redacted from any message, like the key
    secrets: tuple[str, ...] = ()

    @classmethod
    def for_run(
        cls,
        endpoint: Endpoint,
        environ: Mapping[str, str],
        *,
        base_url: str | None = None,
        simulated_base: str | None = None,
    ) -> Route:
        """The route of a run: the manifest's endpoint, `base_url` overriding its own (the
        `--base-url` option), or the simulator's address (`simulated_base`, its `/v1` URL)
        with the provider's route shape kept. UsageError when a header's variable is unset
        (under the simulator an unset one reads `simulated`)."""
        headers = {}
        secrets = []
        for name, template in endpoint.headers.items():
            secrets += [environ[ref] for ref in references(template) if environ.get(ref)]
            try:
                headers[name] = expand(template, environ)
            except MissingVariable as exc:
                if simulated_base is None:
                    raise UsageError(
                        f"endpoint.headers.{name} reads ${{{exc.name}}}, which is not set: "
                        f"export {exc.name} (it is read when the run starts and never recorded)"
                    ) from None
                headers[name] = expand(template, {**environ, exc.name: SIMULATED_HEADER})
        url = base_url or endpoint.base_url
        auth = endpoint.auth
        if simulated_base is not None:
            url = _simulated_url(endpoint, simulated_base)
            if auth == "none":  # the simulator wants a key where a gateway would add one
                auth = PROVIDERS[endpoint.provider].auth
        return cls(
            base_url=url.rstrip("/"),
            provider=endpoint.provider,
            auth=auth,
            deployment=endpoint.deployment,
            api_version=endpoint.api_version,
            body=endpoint.body,
            headers=MappingProxyType(headers),
            secrets=tuple(secrets),
        )

    def url(self, endpoint: str) -> str:
        """The URL of `edits` or `generations` on this route (a query in base_url is kept)."""
        parts = urllib.parse.urlsplit(self.base_url)
        path = parts.path.rstrip("/")
        query = parts.query
        if self.deployment is not None:
            deployment = urllib.parse.quote(self.deployment, safe="")
            path += f"/openai/deployments/{deployment}"
            version = urllib.parse.urlencode({"api-version": self.api_version or ""})
            query = f"{query}&{version}" if query else version
        return parts._replace(path=f"{path}/images/{endpoint}", query=query).geturl()

    def request_headers(self, api_key: str | None) -> dict[str, str]:
        """The extra headers, then the key in the header its auth names (none: no key)."""
        headers = dict(self.headers)
        if api_key and self.auth in AUTH_HEADERS:
            name, shape = AUTH_HEADERS[self.auth]
            headers[name] = shape.format(key=api_key)
        return headers

    @property
    def needs_key(self) -> bool:
        return self.auth in AUTH_HEADERS

    @property
    def key_header(self) -> str | None:
        """The header the key travels in, for messages."""
        return AUTH_HEADERS[self.auth][0] if self.auth in AUTH_HEADERS else None


def _simulated_url(endpoint: Endpoint, simulated_base: str) -> str:
    """The simulator's URL in the shape of the endpoint's route: its `/v1` for openai, its
    root for Azure's classic route, its `/openai/v1` for Azure's v1 route."""
    base = simulated_base.rstrip("/")
    defaults = PROVIDERS[endpoint.provider]
    if not defaults.deployments:
        return base
    root = base.removesuffix("/v1")
    return root if endpoint.deployment is not None else root + defaults.v1_path
