"""What one answered attempt costs, from whatever `usage` the server sent (CONTRACT sections
3 and 5). Pure functions, tested by a table.

A usage is trusted only in the image API's shape: `input_tokens` and `output_tokens` as
non-negative numbers. Anything else (a chat-shaped usage, `{}`, strings, NaN, negatives) is
not a usage, and the attempt is charged the item's worst case, flagged `cost_estimated`: the
recorded spend must never fall below what the provider can bill, so that the budgets bound
the real bill. A usage whose input or output split is missing or broken has the unknown part
priced at the dearer rate of its side, flagged too. A usage far above the worst case is
counted as it is and flagged `usage_suspect`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.cost.pricing import Price, TokenCounts

# Above this many times the item's worst case a usage is flagged (still counted): the worst
# case is built never to fall below a real bill, so this much above it is a broken proxy.
SUSPECT_FACTOR = 2.0
# Token counts are clamped here so that float arithmetic stays finite (10^18 tokens is
# trillions of dollars: the budget stops the run long before the clamp matters).
MAX_TOKENS = 10**18
# A usage larger than this (as JSON) is not copied into the ledger: a hostile answer must not
# swell a ledger line.
MAX_RECORDED_USAGE = 2048


@dataclass(frozen=True, slots=True)
class UsageReading:
    """Tokens read from a usage; `unknown_input` / `unknown_output` have no known split."""

    text_input: int = 0
    image_input: int = 0
    image_output: int = 0
    text_output: int = 0
    unknown_input: int = 0
    unknown_output: int = 0
    doubtful: bool = False  # a split was missing or broken: the cost is partly an estimate

    def counts(self, price: Price | None) -> TokenCounts:
        """The tokens by kind, unknown parts given to the dearer kind of their side."""
        text_in_dearer = price is not None and price.text_input > price.image_input
        text_out_dearer = (
            price is not None
            and price.text_output is not None
            and price.text_output > price.image_output
        )
        return TokenCounts(
            text_input=self.text_input + (self.unknown_input if text_in_dearer else 0),
            image_input=self.image_input + (0 if text_in_dearer else self.unknown_input),
            image_output=self.image_output + (0 if text_out_dearer else self.unknown_output),
            text_output=self.text_output + (self.unknown_output if text_out_dearer else 0),
        )


@dataclass(frozen=True, slots=True)
class Charge:
    """What one answered attempt is recorded to cost."""

    cost_usd: float | None  # None: the model has no price
    counts: TokenCounts
    estimated: bool = False  # `cost_estimated`: not (wholly) from a usage
    suspect: bool = False  # `usage_suspect`: far above the worst case, counted anyway

    def ledger_fields(self) -> dict:
        fields: dict = {"cost_usd": None if self.cost_usd is None else round(self.cost_usd, 8)}
        if self.estimated:
            fields["cost_estimated"] = True
        if self.suspect:
            fields["usage_suspect"] = True
        return fields


def _tokens(value: object) -> int | None:
    """A token count, or None when the value is not one (bool, string, NaN, negative)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return min(value, MAX_TOKENS) if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return min(math.ceil(value), MAX_TOKENS)
    return None


def _split(details: object, total: int, first: str, second: str) -> tuple[int, int, int, bool]:
    """(first, second, unknown, doubtful) tokens of one side from its `*_tokens_details`."""
    if details is None:
        return 0, 0, total, False
    if not isinstance(details, Mapping):
        return 0, 0, total, True
    a, b = _tokens(details.get(first, 0)), _tokens(details.get(second, 0))
    if a is None or b is None:
        return 0, 0, total, True
    unknown = max(0, total - a - b)
    return a, b, unknown, unknown > 0


def read_usage(usage: object) -> UsageReading | None:
    """The tokens of a usage in the image API's shape, or None when it is not one."""
    if not isinstance(usage, Mapping):
        return None
    input_total = _tokens(usage.get("input_tokens"))
    output_total = _tokens(usage.get("output_tokens"))
    if input_total is None or output_total is None:
        return None  # chat-shaped, {}, strings, NaN, negative: not the image API's usage
    text_in, image_in, unknown_in, in_doubt = _split(
        usage.get("input_tokens_details"), input_total, "text_tokens", "image_tokens"
    )
    if usage.get("input_tokens_details") is None and input_total:
        in_doubt = True  # the split is unknown: priced at the dearer rate, flagged
    image_out, text_out, unknown_out, out_doubt = _split(
        usage.get("output_tokens_details"), output_total, "image_tokens", "text_tokens"
    )
    return UsageReading(
        text_input=text_in,
        image_input=image_in,
        image_output=image_out,
        text_output=text_out,
        unknown_input=unknown_in,
        unknown_output=unknown_out,
        doubtful=in_doubt or out_doubt,
    )


def charge(
    usage: object,
    price: Price | None,
    *,
    usable: bool,
    expected: tuple[float | None, TokenCounts],
    worst: tuple[float | None, TokenCounts],
) -> Charge:
    """The charge of one answer the provider billed.

    `usable`: the answer's images were kept. A usable answer without any usage (some proxies
    send none) is charged its expected cost (CONTRACT section 5); every other answer without
    a readable usage is charged the worst case. Both are flagged `cost_estimated`.
    """
    reading = read_usage(usage)
    if reading is None:
        cost, counts = expected if usable and usage is None else worst
        return Charge(cost, counts, estimated=True)
    counts = reading.counts(price)
    if price is None:
        return Charge(None, counts, estimated=reading.doubtful)
    cost = counts.usd(price)
    worst_usd = worst[0]
    suspect = worst_usd is not None and worst_usd > 0 and cost > SUSPECT_FACTOR * worst_usd
    return Charge(cost, counts, estimated=reading.doubtful, suspect=suspect)


def recordable_usage(usage: object) -> object:
    """The usage as the ledger keeps it: as the server sent it when it is small, plain JSON
    (no NaN or infinities); otherwise a note saying what it was."""
    if usage is None:
        return None
    try:
        text = json.dumps(usage, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return {"unreadable": "the usage held values JSON cannot carry (NaN, infinity)"}
    if len(text) > MAX_RECORDED_USAGE:
        return {"unreadable": f"a usage of {len(text)} bytes, not copied"}
    return usage


def counts_of(usage: object) -> TokenCounts | None:
    """The tokens of a usage as reports count them (unknown splits as image tokens), or None
    when it is not a usage."""
    reading = read_usage(usage)
    return None if reading is None else reading.counts(None)
