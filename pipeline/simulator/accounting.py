"""What the simulated provider bills: the `usage` of an answer (from the public token
arithmetic in pipeline/tokens.py and the size rule of models.py), its USD at the built-in
prices (pipeline/cost.py; half of it for a batch line), and the shapes in which proxies pass
usage on (`chatusage`, `emptyusage`, `nodetails`). The running totals are in stats.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.cost import pricing as cost
from pipeline.cost import tokens
from pipeline.simulator import models
from pipeline.simulator.validation import ImageRequest

# The Batch API bills half the interactive price (shared/API-FACTS.md, "Batch API").
BATCH_DISCOUNT = 0.5
USAGE_SHAPES = ("chatusage", "emptyusage", "nodetails")


def usage_of(request: ImageRequest, images: int | None = None) -> dict:
    """The `usage` object of a 200 answer, as the API reports it, for `images` outputs
    (default: the n asked for). A generation has text input only."""
    text = tokens.text_tokens(request.prompt)
    image = sum(tokens.image_input_tokens(w, h) for w, h in request.dims)
    if request.dims:
        image += tokens.fidelity_tokens(*request.dims[0], request.input_fidelity)
    count = request.n if images is None else images
    output = count * models.output_tokens(request.size, request.quality)
    return {
        "input_tokens": text + image,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image},
        "output_tokens": output,
        "total_tokens": text + image + output,
    }


def usd_of(model: str, usage: Mapping, batch: bool = False) -> float | None:
    """USD at the built-in public prices (half for a batch line); None for a model the table
    does not know. A dated snapshot bills as its base model (models.py's `price_as`)."""
    table = cost.builtin_table()
    price = table.get(model)
    if price is None:
        price = table.get(models.rules_of(model).price_as)
    if price is None:
        return None
    usd = cost.cost_of_usage(usage, price)
    return usd * BATCH_DISCOUNT if batch else usd


def shaped_usage(usage: dict, shape: str) -> dict:
    """The usage as a proxy passes it on: `chatusage` in the chat shape, `emptyusage` as {},
    `nodetails` without input_tokens_details; any other name leaves it as the API sent it."""
    if shape == "chatusage":
        return {
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"],
        }
    if shape == "emptyusage":
        return {}
    if shape == "nodetails":
        return {k: v for k, v in usage.items() if k != "input_tokens_details"}
    return usage
