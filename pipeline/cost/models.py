"""What the known models accept, as data (`models.json`, with its source and date): which take
free sizes and the rule those sizes follow, and how a dated snapshot's name leads to its base
model. Used by validation (a size the model refuses is a manifest problem), by the estimate
(a free size's tokens are approximate) and by pricing (a snapshot is priced as its base).

A model outside the table is a proxy's own name: nothing is checked, the server decides.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from pipeline.cost.tokens import parse_size

_SNAPSHOT = re.compile(r"^(?P<base>.+)-(?P<date>\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True, slots=True)
class FreeSizeRule:
    """Sizes other than the fixed ones: both sides multiples of `step`, the long side at most
    `max_side`, the long side at most `max_aspect` times the short one."""

    step: int
    max_side: int
    max_aspect: float

    def problem(self, width: int, height: int) -> str | None:
        """Why WxH breaks the rule, or None."""
        if width <= 0 or height <= 0:
            return "both sides must be positive"
        if width % self.step or height % self.step:
            return f"both sides must be multiples of {self.step}"
        if max(width, height) > self.max_side:
            return f"the long side must be at most {self.max_side}"
        if max(width, height) > self.max_aspect * min(width, height):
            return (
                f"the aspect ratio must be between 1:{self.max_aspect:g} and {self.max_aspect:g}:1"
            )
        return None

    def describe(self) -> str:
        return (
            f"any WxH with both sides multiples of {self.step}, the long side at most "
            f"{self.max_side} and the aspect between 1:{self.max_aspect:g} and "
            f"{self.max_aspect:g}:1"
        )


@dataclass(frozen=True, slots=True)
class ModelTable:
    fixed_sizes: tuple[str, ...]
    free_rule: FreeSizeRule
    free_sizes: dict[str, bool]  # model -> whether it takes free sizes


@cache
def table() -> ModelTable:
    raw = json.loads(resources.files("pipeline").joinpath("cost/models.json").read_text("utf-8"))
    rule = raw["free_size_rule"]
    return ModelTable(
        fixed_sizes=tuple(raw["fixed_sizes"]),
        free_rule=FreeSizeRule(rule["step"], rule["max_side"], float(rule["max_aspect"])),
        free_sizes={name: bool(row["free_sizes"]) for name, row in raw["models"].items()},
    )


def base_model(model: str) -> str | None:
    """`gpt-image-2-2026-04-21` -> `gpt-image-2`; None when the name is not a dated snapshot."""
    match = _SNAPSHOT.match(model)
    return match["base"] if match else None


def known_as(model: str) -> str | None:
    """The table's row for a model: itself, or the base of its dated snapshot; None if unknown."""
    rows = table().free_sizes
    if model in rows:
        return model
    base = base_model(model)
    return base if base in rows else None


def is_fixed_size(size: str) -> bool:
    return size in table().fixed_sizes


@lru_cache(maxsize=1024)  # a job's items share a few (model, size) pairs
def size_problem(model: str, size: str) -> tuple[str, str] | None:
    """(message, fix) when a known model refuses `size`; None when it takes it, when the size
    is a word (`auto`: the server decides) or when the model is not in the table."""
    row = known_as(model)
    dims = parse_size(size)
    if row is None or dims is None or is_fixed_size(size):
        return None
    models = table()
    fixed = ", ".join(models.fixed_sizes)
    if models.free_sizes[row]:
        why = models.free_rule.problem(*dims)
        if why is None:
            return None
        return (
            f"size {size} is not one {model} takes: {why}",
            f"use {fixed}, auto, or {models.free_rule.describe()}",
        )
    free = sorted(name for name, free in models.free_sizes.items() if free)
    return (
        f"size {size} is not one {model} takes",
        f"use {fixed} or auto" + (f" (free sizes need {' or '.join(free)})" if free else ""),
    )
