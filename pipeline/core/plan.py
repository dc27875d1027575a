"""The validated plan: what `manifest.load_plan` hands to the runner, estimator and reporter.

Plain frozen values, no I/O. Paths are absolute. `Item.params` are the request's form fields
other than the files and the prompt (model, size, quality, n, ... and `extra:` fields), with
the manifest's defaults already laid under each item's own values. An item with no image is a
generation (`/images/generations`); with images, an edit (`/images/edits`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit, urlunsplit

DEFAULT_BASE_URL = "https://api.openai.com/v1"

ParamValue = str | int | float | bool
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True, slots=True)
class Remote:
    """An input or output location reached over the network: an http(s):// URL, or an
    object-storage URL (s3://, gs://, az://, ...) that fsspec opens. `str()` is the URL as it
    may be shown: without userinfo, and with query values (a presigned URL's signature)
    replaced by "...", so that no message or ledger line carries a credential."""

    url: str

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower()

    @property
    def name(self) -> str:
        return posixpath.basename(urlsplit(self.url).path.rstrip("/"))

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    def child(self, relpath: str) -> Remote:
        """The object `relpath` below this folder URL."""
        return Remote(self.url.rstrip("/") + "/" + relpath)

    def __str__(self) -> str:
        parts = urlsplit(self.url)
        netloc = parts.netloc.rpartition("@")[2]
        query = "&".join(f"{pair.partition('=')[0]}=..." for pair in parts.query.split("&"))
        return urlunsplit((parts.scheme, netloc, parts.path, query if parts.query else "", ""))


Location = Path | Remote  # where an input is, or the output folder


def is_url(text: str) -> bool:
    """Whether a manifest path is a URL (scheme://...) rather than a file path."""
    return "://" in text and _URL.match(text) is not None


@dataclass(frozen=True, slots=True)
class Finish:
    """What is done to an answer before it is written (`output:` in the manifest).

    mask_mode: "guide" (the model's image as returned) or "strict" (outside the mask, the
        input's own pixels, blended over feather_px pixels inside the mask's edge).
    size: "api" (as returned) or "input" (the first input's width x height: cover, then
        centre-crop). A strict output always has the input's size.
    max_drift: an answer whose drift is above this is retried (None: never).
    """

    mask_mode: str = "guide"
    feather_px: float = 2
    size: str = "api"
    max_drift: float | None = None

    def key_part(self, has_mask: bool) -> dict | None:
        """What of this changes an item's output files, for its key; None when nothing does,
        so the keys of items run before these settings existed stay the same."""
        if self.mask_mode == "strict" and has_mask:
            # float(): `feather_px: 2` written out and the default 2 are one key
            return {"mask_mode": "strict", "feather_px": float(self.feather_px)}
        if self.size == "input":
            return {"size": "input"}
        return None

    def changes_pixels(self, has_mask: bool) -> bool:
        return self.key_part(has_mask) is not None


DEFAULT_FINISH = Finish()


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    images: tuple[Location, ...]
    prompt: str
    params: Mapping[str, ParamValue]
    mask: Location | None = None
    where: str = ""  # e.g. "items[3]" or "items[2] glob images/*.jpg" (for messages)
    finish: Finish = DEFAULT_FINISH

    @property
    def model(self) -> str:
        return str(self.params.get("model", ""))

    @property
    def n(self) -> int:
        return int(self.params.get("n", 1))

    @property
    def output_format(self) -> str:
        return str(self.params.get("output_format", "png"))

    @property
    def endpoint(self) -> str:
        """`edits` when the item has images, else `generations`."""
        return EDITS if self.images else GENERATIONS


EDITS, GENERATIONS = "edits", "generations"


@dataclass(frozen=True, slots=True)
class ProviderDefaults:
    """What a provider's endpoint uses when the manifest does not say."""

    auth: str
    api_key_env: str
    base_url_env: str  # the variable a missing endpoint.base_url is read from
    base_url: str | None  # when neither the manifest nor the variable gives one
    deployments: bool  # has a classic route by deployment (and api_version)
    v1_path: str = ""  # appended to a resource's root URL read from base_url_env


PROVIDERS: Mapping[str, ProviderDefaults] = MappingProxyType(
    {
        "openai": ProviderDefaults(
            "bearer", "OPENAI_API_KEY", "OPENAI_BASE_URL", DEFAULT_BASE_URL, deployments=False
        ),
        "azure": ProviderDefaults(
            "api-key",
            "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_ENDPOINT",
            None,
            deployments=True,
            v1_path="/openai/v1",
        ),
    }
)
AUTHS = ("bearer", "api-key", "none")
BODIES = ("multipart", "json")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how requests go (CONTRACT section 6). `headers` values are templates whose
    `${NAME}` parts are read from the environment at run time (never stored resolved)."""

    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = "OPENAI_API_KEY"
    provider: str = "openai"  # openai | azure
    deployment: str | None = None  # azure classic route
    api_version: str | None = None  # azure classic route: required with deployment
    auth: str = "bearer"  # bearer | api-key | none
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    body: str = "multipart"  # multipart | json: the edits request's body


@dataclass(frozen=True, slots=True)
class Limits:
    concurrency: int = 4
    requests_per_minute: float = 0  # 0 = no client-side pacing
    max_attempts: int = 5
    timeout_s: float = 300
    max_outage_s: float = 1800  # nothing but failures this long: stop, exit 75; 0 = wait forever
    max_image_mb: float = 64  # answers are capped at n x this (as base64); see api.caps


@dataclass(frozen=True, slots=True)
class Budget:
    run_usd: float | None = None
    total_usd: float | None = None


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """`mode: batch` and the `batch:` block (CONTRACT section 8)."""

    completion_window: str = "24h"
    poll_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Output:
    dir: Location  # a local folder, or an object-storage folder URL
    name: str = "{id}"
    finish: Finish = DEFAULT_FINISH


@dataclass(frozen=True, slots=True)
class Plan:
    manifest_path: Path
    name: str
    endpoint: Endpoint
    limits: Limits
    budget: Budget
    output: Output
    ledger: Path
    items: tuple[Item, ...]
    # USD per 1M tokens by model, as the manifest's `pricing:` gave it (merged over the
    # built-in table by cost.price_table).
    pricing: Mapping[str, Mapping[str, float | None]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # Whether load_plan read every input's header. `editbatch run` loads without, and the
    # runner then checks only the items still to run: on a resume, the done ones were checked
    # (and sent) before, and their inputs are unchanged by the ledger's stat cache.
    files_checked: bool = True
    mode: str = "interactive"  # interactive | batch (the Batch API, at its price)
    batch: BatchSettings = field(default_factory=BatchSettings)
    # The cross-run cache's folder (`cache:`), None when off.
    cache: Path | None = None
    # What checking the files found worth saying that is not wrong, as (where, message)
    # pairs: inputs sent turned upright, masks that mark everything.
    notes: tuple[tuple[str, str], ...] = ()
