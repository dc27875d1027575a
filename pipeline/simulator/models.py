"""The models the simulator serves and what each accepts, as data: the model table, the size
rule, and the output tokens of any size it accepts.

Models (API reference of 2026-08): gpt-image-1.5 (the API's default model), gpt-image-2,
gpt-image-1-mini, chatgpt-image-latest, gpt-image-1 (shut down by OpenAI, still served by
proxies). A dated snapshot such as gpt-image-2-2026-04-21 follows its base model's row. A
model outside the table is accepted (proxies serve their own names) with the gpt-image-1
family's rules and no price.

Sizes: every model takes 1024x1024, 1536x1024, 1024x1536 and auto. A model with free sizes
(gpt-image-2) also takes any WxH with both sides multiples of 16, the long side at most 3840
and the aspect between 1:3 and 3:1 inclusive; its answer's `size` is that string.

Output tokens: a table size at a quality has its figure from pipeline/tokens.py. Any other
size takes the table size whose aspect ratio is nearest (smallest |log((w/h) / (w0/h0))|;
ties go to the first of 1024x1024, 1536x1024, 1024x1536) and scales that size's figure at
the same quality by area, rounded up: ceil(T[s0, q] * w * h / (w0 * h0)). For example
1536x864 medium: nearest 1536x1024 (1568 tokens), ceil(1568 * 0.84375) = 1323.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.cost import tokens
from pipeline.cost.models import table
from pipeline.simulator.answer import InvalidRequest

# The free-size rule is the client's (cost/models.json): validation, the estimate and the
# simulator read the one rule.
_RULE = table().free_rule
FREE_SIZE_STEP = _RULE.step
FREE_SIZE_MAX_SIDE = _RULE.max_side
FREE_SIZE_MAX_ASPECT = _RULE.max_aspect
SIZES = (*tokens.SIZES, "auto")
# What a request that names no model is served as: the API's default today is gpt-image-1.5,
# but the simulator kept gpt-image-1 (SimConfig.default_model changes it).
API_DEFAULT_MODEL = "gpt-image-1.5"
SIM_DEFAULT_MODEL = "gpt-image-1"


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What one model accepts, and which row of the price table it bills at."""

    free_sizes: bool
    high_fidelity: bool
    price_as: str


MODELS: dict[str, ModelFacts] = {
    "gpt-image-1.5": ModelFacts(free_sizes=False, high_fidelity=True, price_as="gpt-image-1.5"),
    "gpt-image-2": ModelFacts(free_sizes=True, high_fidelity=True, price_as="gpt-image-2"),
    "gpt-image-1-mini": ModelFacts(
        free_sizes=False, high_fidelity=False, price_as="gpt-image-1-mini"
    ),
    # Billed as gpt-image-1.5 (the same public prices); pipeline/data/prices.json has no row.
    "chatgpt-image-latest": ModelFacts(
        free_sizes=False, high_fidelity=True, price_as="gpt-image-1.5"
    ),
    "gpt-image-1": ModelFacts(free_sizes=False, high_fidelity=True, price_as="gpt-image-1"),
}
# Rules of a model outside the table: the gpt-image-1 family's, priced at nothing.
UNKNOWN = ModelFacts(free_sizes=False, high_fidelity=True, price_as="")
_SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")


def facts_of(model: str) -> ModelFacts | None:
    """The row of a model or of the base of its dated snapshot; None for an unknown model."""
    if model in MODELS:
        return MODELS[model]
    match = _SNAPSHOT.match(model)
    return MODELS.get(match["base"]) if match else None


def rules_of(model: str) -> ModelFacts:
    return facts_of(model) or UNKNOWN


def free_size_problem(width: int, height: int) -> str | None:
    """Why WxH is not a free size, or None when it is one."""
    return _RULE.problem(width, height)


def check_size(value: str, model: str, first: tuple[int, int] | None) -> str:
    """The concrete size a request asks for (`auto` follows the first image, else square),
    or InvalidRequest in the API's words."""
    if value == "auto":
        return tokens.auto_size(*first) if first is not None else "1024x1024"
    if value in SIZES:
        return value
    dims = tokens.parse_size(value)
    free = rules_of(model).free_sizes
    problem = "" if dims is None else free_size_problem(*dims)
    if free and problem is None:
        return value
    supported = ", ".join(f"'{s}'" for s in SIZES[:-1])
    more = ""
    if free:
        more = (
            f" (or WxH with sides multiples of {FREE_SIZE_STEP}, the long side at most "
            f"{FREE_SIZE_MAX_SIDE} and the aspect between 1:3 and 3:1"
            + (f": {problem}" if problem else "")
            + ")"
        )
    raise InvalidRequest(
        f"Invalid value: '{value}'. Supported values are: {supported}, and 'auto'{more}.",
        param="size",
    )


def nearest_size(width: int, height: int) -> str:
    """The table size whose aspect ratio is nearest WxH's (the first one on a tie)."""
    return tokens.auto_size(width, height)


def output_tokens(size: str, quality: str) -> int:
    """Output image tokens for one image: the table's figure, or the area rule above (the
    estimator's own, cost/tokens.py, so that what it predicts is what the simulator bills)."""
    return tokens.output_tokens(size, quality)
