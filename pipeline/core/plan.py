"""The validated plan: what `manifest.load_plan` hands to the runner, estimator and reporter.

Plain frozen values, no I/O. Paths are absolute. `Item.params` are the request's form fields
other than the files and the prompt (model, size, quality, n, ... and `extra:` fields), with
the manifest's defaults already laid under each item's own values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

DEFAULT_BASE_URL = "https://api.openai.com/v1"

ParamValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    images: tuple[Path, ...]
    prompt: str
    params: Mapping[str, ParamValue]
    mask: Path | None = None
    where: str = ""  # e.g. "items[3]" or "items[2] glob images/*.jpg" (for messages)

    @property
    def model(self) -> str:
        return str(self.params.get("model", ""))

    @property
    def n(self) -> int:
        return int(self.params.get("n", 1))

    @property
    def output_format(self) -> str:
        return str(self.params.get("output_format", "png"))


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = "OPENAI_API_KEY"


@dataclass(frozen=True, slots=True)
class Limits:
    concurrency: int = 4
    requests_per_minute: float = 0  # 0 = no client-side pacing
    max_attempts: int = 5
    timeout_s: float = 300
    max_outage_s: float = 1800  # nothing but failures this long: stop, exit 75; 0 = wait forever


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
    dir: Path
    name: str = "{id}"


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
