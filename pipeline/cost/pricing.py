"""Prices and the cost formula of CONTRACT section 5.

USD = text input x text_input + image input x image_input + image output x image_output
      + text output x text_output, all per 1M tokens, from the `usage` the API returned.
The built-in table is data (`prices.json`, with its source and date); the manifest's
`pricing:` overrides or extends it. A dated snapshot (`gpt-image-2-2026-04-21`) without a row
of its own is priced as its base model (`price_of`, `priced_as`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pipeline.cost.models import base_model

PER = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. A missing text_output price counts output text tokens as image output
    (the gpt-image-1 family bills all output as image tokens)."""

    text_input: float
    image_input: float
    image_output: float
    text_output: float | None = None
    # The Batch API's price as a share of this one (CONTRACT section 8): half, unless
    # `pricing:` says otherwise for the model.
    batch_discount: float = 0.5

    @classmethod
    def from_mapping(cls, data: Mapping[str, float | None]) -> Price:
        discount = data.get("batch_discount")
        return cls(
            text_input=float(data["text_input"]),  # type: ignore[arg-type]
            image_input=float(data["image_input"]),  # type: ignore[arg-type]
            image_output=float(data["image_output"]),  # type: ignore[arg-type]
            text_output=None if data.get("text_output") is None else float(data["text_output"]),  # type: ignore[arg-type]
            batch_discount=0.5 if discount is None else float(discount),
        )

    def at_batch(self) -> Price:
        """This price as the Batch API bills it: every rate times `batch_discount`."""
        d = self.batch_discount
        return Price(
            text_input=self.text_input * d,
            image_input=self.image_input * d,
            image_output=self.image_output * d,
            text_output=None if self.text_output is None else self.text_output * d,
            batch_discount=1.0,
        )


@cache
def builtin_table() -> dict[str, Price]:
    raw = json.loads(resources.files("pipeline").joinpath("cost/prices.json").read_text("utf-8"))
    return {model: Price.from_mapping(p) for model, p in raw["models"].items()}


def price_table(
    overrides: Mapping[str, Mapping[str, float | None] | Price] | None = None,
) -> dict[str, Price]:
    """The built-in table with the manifest's `pricing:` laid over it."""
    table = dict(builtin_table())
    for model, price in (overrides or {}).items():
        table[model] = price if isinstance(price, Price) else Price.from_mapping(price)
    return table


def priced_as(prices: Mapping[str, Price], model: str) -> str | None:
    """The row of `prices` that prices `model`: its own, else its base model's when it is a
    dated snapshot; None when neither is there."""
    if model in prices:
        return model
    base = base_model(model)
    return base if base is not None and base in prices else None


def price_of(prices: Mapping[str, Price], model: str) -> Price | None:
    """The price of `model` (see priced_as), or None."""
    row = priced_as(prices, model)
    return None if row is None else prices[row]


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Billable tokens of one request, split the way prices are."""

    text_input: int = 0
    image_input: int = 0
    image_output: int = 0
    text_output: int = 0

    def usd(self, price: Price) -> float:
        text_out_price = price.image_output if price.text_output is None else price.text_output
        return (
            self.text_input * price.text_input
            + self.image_input * price.image_input
            + self.image_output * price.image_output
            + self.text_output * text_out_price
        ) / PER


def counts_from_usage(usage: Mapping) -> TokenCounts:
    """Split an API `usage` object into billable kinds.

    Input: `input_tokens_details.{text_tokens,image_tokens}`; when the details are missing all
    input counts as text. Output: `output_tokens_details.{image_tokens,text_tokens}` where
    present, else every output token is an image token.
    """
    in_details = usage.get("input_tokens_details") or {}
    input_total = int(usage.get("input_tokens") or 0)
    if in_details:
        text_in = int(in_details.get("text_tokens") or 0)
        image_in = int(in_details.get("image_tokens") or 0)
    else:
        text_in, image_in = input_total, 0
    out_details = usage.get("output_tokens_details") or {}
    output_total = int(usage.get("output_tokens") or 0)
    if out_details:
        image_out = int(out_details.get("image_tokens") or 0)
        text_out = int(out_details.get("text_tokens") or 0)
    else:
        image_out, text_out = output_total, 0
    return TokenCounts(text_in, image_in, image_out, text_out)


def cost_of_usage(usage: Mapping, price: Price) -> float:
    """USD of one response's usage at a price."""
    return counts_from_usage(usage).usd(price)


def closest_model(name: str, prices: Mapping[str, Price]) -> str | None:
    """The priced model `name` is most likely a typo of (`gpt-image-l`: gpt-image-1), if any."""
    import difflib

    # Letters typed for the digits they look like come first: gpt-image-l is gpt-image-1.
    def plain(text: str) -> str:
        return text.lower().translate(_LOOKALIKES)

    same = [model for model in prices if plain(model) == plain(name)]
    if same:
        return same[0]
    close = difflib.get_close_matches(name, sorted(prices), n=1, cutoff=0.8)
    return close[0] if close else None


_LOOKALIKES = str.maketrans({"l": "1", "i": "1", "o": "0"})
