"""Tokens and USD of items before they are sent: expected and worst case, per item, per model
and in total. The runner reserves `worst_cost_usd` before each request; `estimate_plan` serves
`editbatch estimate` and `run --dry-run`, reading only image headers.

A generation (an item with no image) has text input only. A free size (gpt-image-2's WxH
outside the table) is estimated by area scaling (cost/tokens.py) and flagged `approximate`
until the provider's usage replaces it. A dated snapshot is priced as its base model, and the
estimate says so (`priced_as`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipeline.core.plan import Item, Plan, Remote
from pipeline.cost import tokens
from pipeline.cost.models import is_fixed_size
from pipeline.cost.pricing import Price, TokenCounts, price_table, priced_as

Dims = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ItemEstimate:
    """One item's tokens and USD. `expected` is what the provider most likely bills; `worst`
    never falls below what it can bill. USD is None when the model has no price."""

    item_id: str
    model: str
    expected: TokenCounts
    worst: TokenCounts
    expected_usd: float | None
    worst_usd: float | None
    # the same through the Batch API (`run --batch`), at the model's batch_discount
    batch_expected_usd: float | None = None
    batch_worst_usd: float | None = None
    endpoint: str = "edits"  # or "generations"
    approximate: bool = False  # a free size, its output tokens scaled by area
    priced_as: str | None = None  # the price row used, when it is not the model's own

    def to_json(self) -> dict:
        data = {
            "id": self.item_id,
            "model": self.model,
            "endpoint": self.endpoint,
            "expected_tokens": _counts_json(self.expected),
            "worst_tokens": _counts_json(self.worst),
            "expected_usd": _usd(self.expected_usd),
            "worst_usd": _usd(self.worst_usd),
            "batch_expected_usd": _usd(self.batch_expected_usd),
            "batch_worst_usd": _usd(self.batch_worst_usd),
        }
        if self.approximate:
            data["approximate"] = True
        if self.priced_as:
            data["priced_as"] = self.priced_as
        return data


def _quality_pair(quality: object) -> tuple[str, str]:
    """(expected, worst) quality. Missing, `auto` or a value this version does not know is
    left to the server: expected as the server's usual choice, worst at the most expensive."""
    if quality in tokens.QUALITIES:
        return str(quality), str(quality)
    return tokens.AUTO_QUALITY, tokens.WORST_QUALITY


# Items of one job share a handful of shapes and parameters: caching the arithmetic by them
# keeps the arithmetic of a 100,000-item estimate to about a second.
@lru_cache(maxsize=4096)
def _output_pair(size: str, quality: object, first: Dims | None) -> tuple[int, int]:
    """(expected, worst) output image tokens of one image; `first` is the first input's size
    (None for a generation: `auto` is then expected square)."""
    expected_quality, worst_quality = _quality_pair(quality)
    if tokens.parse_size(size) is not None:
        return (
            tokens.output_tokens(size, expected_quality),
            tokens.worst_output_tokens(size, worst_quality),
        )
    # `auto` (or a size word the server resolves): the size nearest the input's aspect is
    # expected; the worst case is the largest size of the worst quality.
    auto = tokens.auto_size(*first) if first is not None else tokens.SIZES[0]
    worst = max(tokens.output_tokens(s, worst_quality) for s in tokens.SIZES)
    return tokens.output_tokens(auto, expected_quality), worst


@lru_cache(maxsize=4096)
def _image_input(sizes: tuple[Dims, ...], fidelity: str) -> int:
    """Input image tokens of every image, plus the fidelity surcharge decided by the first."""
    surcharge = tokens.fidelity_tokens(*sizes[0], fidelity)
    return surcharge + sum(tokens.image_input_tokens(w, h) for w, h in sizes)


def estimate_item(
    item: Item, image_sizes: Sequence[Dims], prices: Mapping[str, Price]
) -> ItemEstimate:
    """Estimate one item from its images' (width, height), first image first (none for a
    generation: its input is the prompt's text alone)."""
    if len(image_sizes) != len(item.images):
        raise ValueError(f"{item.where or item.id}: an estimate needs the size of every image")
    params = item.params
    image_in = (
        _image_input(tuple(image_sizes), str(params.get("input_fidelity", "low")))
        if image_sizes
        else 0
    )
    size = str(params.get("size", "auto"))
    out_expected, out_worst = _output_pair(
        size, params.get("quality"), image_sizes[0] if image_sizes else None
    )
    n = item.n
    expected = TokenCounts(tokens.text_tokens(item.prompt), image_in, out_expected * n)
    worst = TokenCounts(tokens.text_tokens_upper_bound(item.prompt), image_in, out_worst * n)
    row = priced_as(prices, item.model)
    price = None if row is None else prices[row]
    batch = None if price is None else price.at_batch()
    return ItemEstimate(
        item_id=item.id,
        model=item.model,
        expected=expected,
        worst=worst,
        expected_usd=None if price is None else expected.usd(price),
        worst_usd=None if price is None else worst.usd(price),
        batch_expected_usd=None if batch is None else expected.usd(batch),
        batch_worst_usd=None if batch is None else worst.usd(batch),
        endpoint=item.endpoint,
        approximate=tokens.parse_size(size) is not None and not is_fixed_size(size),
        priced_as=row if row != item.model else None,
    )


def worst_cost_usd(
    item: Item, image_sizes: list[Dims], prices: Mapping[str, Price]
) -> float | None:
    """The most one request for `item` can cost: what the runner reserves before sending it.
    None when the item's model has no price."""
    return estimate_item(item, image_sizes, prices).worst_usd


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over a group of item estimates (one model, or the whole plan)."""

    pending: int
    expected: TokenCounts
    worst: TokenCounts
    expected_usd: float
    worst_usd: float
    unpriced_items: int
    batch_expected_usd: float = 0.0
    batch_worst_usd: float = 0.0

    @classmethod
    def of(cls, estimates: Sequence[ItemEstimate]) -> Totals:
        priced = [e for e in estimates if e.expected_usd is not None and e.worst_usd is not None]
        return cls(
            pending=len(estimates),
            expected=_sum_counts([e.expected for e in estimates]),
            worst=_sum_counts([e.worst for e in estimates]),
            expected_usd=math.fsum(e.expected_usd or 0.0 for e in priced),
            worst_usd=math.fsum(e.worst_usd or 0.0 for e in priced),
            unpriced_items=len(estimates) - len(priced),
            batch_expected_usd=math.fsum(e.batch_expected_usd or 0.0 for e in priced),
            batch_worst_usd=math.fsum(e.batch_worst_usd or 0.0 for e in priced),
        )

    def to_json(self) -> dict:
        return {
            "pending": self.pending,
            "expected_tokens": _counts_json(self.expected),
            "worst_tokens": _counts_json(self.worst),
            "expected_usd": _usd(self.expected_usd),
            "worst_usd": _usd(self.worst_usd),
            "batch_expected_usd": _usd(self.batch_expected_usd),
            "batch_worst_usd": _usd(self.batch_worst_usd),
            "unpriced_items": self.unpriced_items,
        }


@dataclass(slots=True)
class PlanEstimate:
    """The estimate of the pending items of a plan. USD totals cover priced models only;
    `unpriced_models` names the others (add them to the manifest's `pricing:`)."""

    total: Totals
    by_model: dict[str, Totals]
    items: list[ItemEstimate]

    @property
    def unpriced_models(self) -> list[str]:
        return sorted(m for m, t in self.by_model.items() if t.unpriced_items)

    @property
    def priced_as(self) -> dict[str, str]:
        """Models priced by another row (a dated snapshot by its base model)."""
        return {e.model: e.priced_as for e in self.items if e.priced_as}

    @property
    def approximate_items(self) -> int:
        """Items whose output tokens are scaled by area (free sizes): approximate."""
        return sum(1 for e in self.items if e.approximate)

    @property
    def endpoints(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.items:
            counts[e.endpoint] = counts.get(e.endpoint, 0) + 1
        return counts

    def to_json(self, *, items: bool = False) -> dict:
        data = self.total.to_json()
        data["unpriced_models"] = self.unpriced_models
        data["priced_as"] = dict(sorted(self.priced_as.items()))
        data["approximate_items"] = self.approximate_items
        data["endpoints"] = self.endpoints
        data["models"] = {m: t.to_json() for m, t in sorted(self.by_model.items())}
        if items:
            data["items"] = [e.to_json() for e in self.items]
        return data


# A remote input's size is unknown until it is fetched: estimated as a square 1024 (the run's
# own reservation uses the real size, read when the item is prepared).
REMOTE_DIMS: Dims = (1024, 1024)


def header_dims(path: Path | Remote) -> Dims:
    """An image's (width, height) from its header only."""
    from pipeline.media.images import image_info  # the one place that knows image formats

    if isinstance(path, Remote):
        return REMOTE_DIMS
    info = image_info(path)
    return info.width, info.height


def estimate_plan(
    plan: Plan,
    items: Iterable[Item] | None = None,
    *,
    dims_of: Callable[[Path], Dims] = header_dims,
) -> PlanEstimate:
    """Estimate `items` (default: every item of the plan; the caller passes the pending ones),
    priced by the built-in table under the manifest's `pricing:`."""
    prices = price_table(plan.pricing)
    cache: dict[str, Dims] = {}

    def dims(path: Path) -> Dims:
        # Keyed by the path's string: hashing a Path costs more than the arithmetic.
        key = str(path)
        if key not in cache:
            cache[key] = dims_of(path)
        return cache[key]

    estimates = [
        estimate_item(item, [dims(p) for p in item.images], prices)
        for item in (plan.items if items is None else items)
    ]
    by_model: dict[str, list[ItemEstimate]] = {}
    for est in estimates:
        by_model.setdefault(est.model, []).append(est)
    return PlanEstimate(
        total=Totals.of(estimates),
        by_model={model: Totals.of(group) for model, group in by_model.items()},
        items=estimates,
    )


def _sum_counts(counts: Sequence[TokenCounts]) -> TokenCounts:
    return TokenCounts(
        sum(c.text_input for c in counts),
        sum(c.image_input for c in counts),
        sum(c.image_output for c in counts),
        sum(c.text_output for c in counts),
    )


def _counts_json(c: TokenCounts) -> dict[str, int]:
    return {
        "text_input": c.text_input,
        "image_input": c.image_input,
        "image_output": c.image_output,
        "text_output": c.text_output,
    }


def _usd(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
