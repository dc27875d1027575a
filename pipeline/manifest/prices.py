"""The models a manifest sends, checked against the prices known (the built-in table under the
manifest's `pricing:`): a budget cannot be kept for a model without a price, and a name close
to a priced one is most likely a typo (`gpt-image-l`), so the fix offered first is the name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pipeline.core.errors import Problem
from pipeline.core.plan import Item
from pipeline.cost.pricing import Price, closest_model, priced_as
from pipeline.manifest.yamlfile import locate


def unpriced_problems(
    items: Iterable[Item],
    prices: Mapping[str, Price],
    data: dict,
    raw: bytes,
    shown: str,
) -> list[Problem]:
    """With a budget in the manifest: one located problem per model that has no price."""
    unpriced = sorted({m for m in {item.model for item in items} if priced_as(prices, m) is None})
    problems = []
    for model in unpriced:
        loc = _written_at(model, data)
        marks = locate(raw, {loc}) if loc else {}
        line, column = marks[loc][1] if loc in marks else (0, 0)
        where = f"{shown}:{line}:{column}" if line else shown
        dotted = ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc or ()).replace(
            ".[", "["
        )
        problems.append(
            Problem(
                where,
                f"{dotted or 'model'}: no known price for {model!r}, and the budget needs one",
                model_fix(model, prices),
            )
        )
    return problems


def model_fix(model: str, prices: Mapping[str, Price]) -> str:
    """The fix for an unpriced model: the close priced name first, else a price to add."""
    add = f"add {model} under pricing: (USD per 1M tokens: text_input, image_input, image_output)"
    close = closest_model(model, prices)
    if close:
        return f"did you mean {close}? fix the model name; if {model!r} is right, {add}"
    return f"{add} (or remove the budget, and its cost is recorded as null)"


def _written_at(model: str, data: dict) -> tuple | None:
    """Where the manifest names `model`: defaults.model, or the first item that sets it."""
    defaults = data.get("defaults")
    if isinstance(defaults, dict) and defaults.get("model") == model:
        return ("defaults", "model")
    items = data.get("items")
    for index, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("model") == model:
            return ("items", index, "model")
    return None
