"""What one admitted request gets: a scripted outcome, or a seeded draw among the fault rates,
plus how long it waits. Pure functions and one small per-key script book; the grammar is in
the package docstring.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

# Faults a request can draw at its configured rate.
FAULTS = (
    "429", "quota", "500", "502", "503", "504",
    "moderation", "reset", "stall", "truncated", "corrupt",
)  # fmt: skip
# Azure's content filter (the moderation class there).
PROVIDER = ("content_filter",)
# A 200 in the shape some proxies give it (images as urls or data URIs; usage missing, in the
# chat shape, empty or without input details; one image fewer than n), or one that repaints
# the whole image, mask or not.
VARIANTS = (
    "url", "datauri", "nousage", "chatusage", "emptyusage", "nodetails", "fewer", "repaint",
)  # fmt: skip
# Statuses a test may ask for in a script (or at a rate: anything but ok can be rated).
STATUSES = ("401", "403", "404", "408", "409", "413", "422")
OK = "ok"
OUTCOMES = (OK, *FAULTS, *PROVIDER, *VARIANTS, *STATUSES)
RATED = tuple(name for name in OUTCOMES if name != OK)
# Outcomes that may carry their own retry-after: `429:0.05`.
WITH_RETRY_AFTER = ("429", "408", "409", "500", "502", "503", "504")
# Answered at once, before any generation time: the provider refuses these up front.
IMMEDIATE = ("429", "quota", "401", "403", "404", "413", "422")

SCRIPT_HEADER = "x-sim-script"
_DIRECTIVE = re.compile(r"\[sim:([^\]]*)\]")

# The simulator's own choice of how much longer better quality takes (the public guide only
# says high quality and large sizes take longest, up to about two minutes).
QUALITY_LATENCY = {"low": 0.5, "medium": 1.0, "high": 2.0}


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    retry_after_s: float | None = None


GOOD = Outcome(OK)


def parse_script(text: str) -> tuple[Outcome, ...]:
    """`"429:0.05, 500, ok"` -> its outcomes; ValueError naming the bad token otherwise."""
    script = []
    for token in (part.strip().lower() for part in text.split(",")):
        name, sep, seconds = token.partition(":")
        if name not in OUTCOMES:
            raise ValueError(
                f"unknown outcome {token!r} in script {text!r}; use any of {', '.join(OUTCOMES)}"
            )
        if not sep:
            script.append(Outcome(name))
            continue
        if name not in WITH_RETRY_AFTER:
            raise ValueError(
                f"{token!r}: only {', '.join(WITH_RETRY_AFTER)} take a retry-after (e.g. 429:0.05)"
            )
        try:
            retry_after = float(seconds)
        except ValueError:
            retry_after = -1.0
        if not retry_after >= 0:
            raise ValueError(f"{token!r}: the retry-after must be seconds >= 0, e.g. {name}:0.05")
        script.append(Outcome(name, retry_after))
    return tuple(script)


def find_script(header: str | None, prompt: str) -> tuple[str, str, str] | None:
    """(key, script text, where it came from) of a scripted request, or None.

    The header wins over a prompt directive; its key also holds the prompt, so that one
    header value used with several prompts gives each prompt its own sequence.
    """
    if header is not None and header.strip():
        return f"{header}\n{prompt}", header, SCRIPT_HEADER
    match = _DIRECTIVE.search(prompt)
    if match:
        return prompt, match.group(1), "prompt"
    return None


class ScriptBook:
    """Where each script key is in its sequence: every request takes the next outcome."""

    def __init__(self) -> None:
        self._taken: dict[str, int] = {}

    def take(self, key: str, script: tuple[Outcome, ...]) -> Outcome:
        position = self._taken.get(key, 0)
        self._taken[key] = position + 1
        return script[position] if position < len(script) else GOOD


def request_rng(seed: int, index: int) -> random.Random:
    """The draws of the index-th admitted request: the same for a seed whatever came before."""
    return random.Random(f"editbatch-sim/{seed}/{index}")


def pick_outcome(draw: float, faults: Mapping[str, float]) -> Outcome:
    """The outcome a uniform draw in [0, 1) lands on, walking the rates in a fixed order."""
    edge = 0.0
    for name in RATED:
        edge += faults.get(name, 0.0)
        if draw < edge:
            return Outcome(name)
    return GOOD


def latency_s(
    draw: float, mean_s: float, jitter_s: float, quality_factor: float, sigma: float = 0.0
) -> float:
    """The wait of one answer: mean plus jitter (draw in [0, 1) spans -jitter..+jitter), or
    with `sigma` > 0 a lognormal draw whose median is `mean_s`."""
    if sigma > 0:
        z = NormalDist().inv_cdf(min(max(draw, 1e-9), 1 - 1e-9))
        return mean_s * math.exp(sigma * z) * quality_factor
    return max(0.0, mean_s + (2 * draw - 1) * jitter_s) * quality_factor
