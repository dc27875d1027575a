"""How a simulator instance behaves: rate limit, latency, fault rates, seed, key, the model
served by default, Azure deployments, gateway mode, drift outside the mask, batch timing.

`SimConfig` is a frozen value checked when built; `parse_faults` turns the CLI's
`500=0.05,429=0.1,reset=0.02` into the mapping it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pipeline.simulator.models import SIM_DEFAULT_MODEL
from pipeline.simulator.outcomes import RATED

GATEWAYS = ("litellm",)


@dataclass(frozen=True)
class SimConfig:
    """One simulator's settings. Every number is checked in `__post_init__`.

    rpm: requests per minute of the token bucket (0 = unlimited).
    burst: requests the bucket holds when full (None = one second's worth, at least 1: the
        provider enforces limits over windows shorter than a minute).
    latency_s / jitter_s: each answer that involves a generation waits latency_s plus a draw
        uniform in [-jitter_s, +jitter_s] seconds (never below 0).
    latency_sigma: when above 0, the wait is lognormal instead: latency_s is its median and
        latency_sigma the standard deviation of its logarithm (heavy-tailed: 0.8 puts the 99th
        percentile near 6x the median); jitter_s is then unused.
    latency_by_quality: scale that wait by quality (low x0.5, medium x1, high x2).
    faults: outcome name -> probability per admitted request (sum at most 1).
    seed: makes fault and latency draws reproducible.
    api_key: when set, only this bearer key is accepted; otherwise any non-empty key.
    max_body_mb: larger request bodies get a 413.
    fault_retry_after_s: the retry-after of a 429 fault that names none.
    default_model: the model of a request that names none.
    azure_deployments: Azure deployment name -> model it serves; empty = any name, served as
        itself when it is a known model, else as gpt-image-1.5 (see azure.py).
    gateway: None, or "litellm" to answer as a LiteLLM proxy would (see gateway.py).
    outside_drift: 0 to 1, how much an edit also changes the pixels its mask keeps (the mean
        absolute RGB difference, 0..1 scale; 1 repaints everything; see render.py).
    batch_seconds: how long a batch spends validating, in progress and finalizing, in all.
    batch_expire_after: when set, a batch expires after answering this many lines (a
        batch's metadata key `sim_expire_after` sets it for that batch alone).
    """

    rpm: float = 0
    burst: float | None = None
    latency_s: float = 0
    jitter_s: float = 0
    latency_sigma: float = 0
    latency_by_quality: bool = False
    faults: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    api_key: str | None = None
    max_body_mb: float = 256
    fault_retry_after_s: float = 1.0
    default_model: str = SIM_DEFAULT_MODEL
    azure_deployments: Mapping[str, str] = field(default_factory=dict)
    gateway: str | None = None
    outside_drift: float = 0.0
    batch_seconds: float = 2.0
    batch_expire_after: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "rpm", "latency_s", "jitter_s", "latency_sigma", "fault_retry_after_s", "batch_seconds",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"SimConfig.{name} is {getattr(self, name)}; use 0 or more")
        if self.burst is not None and self.burst < 1:
            raise ValueError(f"SimConfig.burst is {self.burst}; use 1 or more, or None")
        if self.max_body_mb <= 0:
            raise ValueError(f"SimConfig.max_body_mb is {self.max_body_mb}; use a positive size")
        if self.api_key == "":
            raise ValueError("SimConfig.api_key is empty; give a key or None to accept any key")
        if not self.default_model:
            raise ValueError("SimConfig.default_model is empty; name a model")
        if self.gateway is not None and self.gateway not in GATEWAYS:
            raise ValueError(
                f"SimConfig.gateway is {self.gateway!r}; use None or one of {', '.join(GATEWAYS)}"
            )
        if not 0 <= self.outside_drift <= 1:
            raise ValueError(f"SimConfig.outside_drift is {self.outside_drift}; use 0 to 1")
        if self.batch_expire_after is not None and self.batch_expire_after < 0:
            raise ValueError(
                f"SimConfig.batch_expire_after is {self.batch_expire_after}; use 0 or more, or None"
            )
        checked = check_faults(self.faults, where="SimConfig.faults")
        object.__setattr__(self, "faults", MappingProxyType(checked))
        deployments = {str(name): str(model) for name, model in self.azure_deployments.items()}
        object.__setattr__(self, "azure_deployments", MappingProxyType(deployments))


def check_faults(faults: Mapping[str, float], where: str = "faults") -> dict[str, float]:
    """The fault rates as a plain dict, or ValueError saying which entry is wrong and why."""
    checked: dict[str, float] = {}
    for name, rate in faults.items():
        if name not in RATED:
            raise ValueError(f"{where}: unknown fault {name!r}; known faults: {', '.join(RATED)}")
        rate = float(rate)
        if not 0 <= rate <= 1:
            raise ValueError(f"{where}: {name}={rate} is not a probability; use 0 to 1")
        checked[name] = rate
    total = sum(checked.values())
    if total > 1 + 1e-9:
        raise ValueError(f"{where}: the rates add up to {total:g}; they may add up to 1 at most")
    return checked


def parse_faults(spec: str) -> dict[str, float]:
    """`"500=0.05,reset=0.02"` -> {"500": 0.05, "reset": 0.02}; "" -> {}."""
    faults: dict[str, float] = {}
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        name, sep, value = (text.strip() for text in entry.partition("="))
        if not sep or not name or not value:
            raise ValueError(f"faults: {entry!r} is not NAME=RATE; write e.g. 500=0.05")
        if name in faults:
            raise ValueError(f"faults: {name!r} is given twice; give each fault once")
        try:
            faults[name] = float(value)
        except ValueError:
            raise ValueError(
                f"faults: {entry!r}: {value!r} is not a number; write a probability such as 0.05"
            ) from None
    return check_faults(faults)
