"""Token arithmetic of GPT image edits: output tokens by size and quality, input image tokens
by the tile rule, and the prompt's text tokens. Pure functions, shared by the simulator (which
bills with them) and the estimator (which predicts with them).

Sources (public): OpenAI's image generation guide, "Cost and latency" table of output tokens
per size and quality for GPT image models (platform.openai.com/docs/guides/image-generation),
and the image input cost rule of the vision guide (platform.openai.com/docs/guides/images-vision:
fit in 2048x2048, short side to 512 px for GPT image models, 65 base + 129 per 512-px tile);
the input_fidelity=high surcharge (4160 square, 6240 otherwise) from the same guide's
"input fidelity" section as summed up in shared/API-FACTS.md.
"""

from __future__ import annotations

import math

SIZES = ("1024x1024", "1536x1024", "1024x1536")
QUALITIES = ("low", "medium", "high")

# Output image tokens for one image, gpt-image-1 family, by (size, quality).
OUTPUT_TOKENS: dict[tuple[str, str], int] = {
    ("1024x1024", "low"): 272,
    ("1024x1024", "medium"): 1056,
    ("1024x1024", "high"): 4160,
    ("1024x1536", "low"): 408,
    ("1024x1536", "medium"): 1584,
    ("1024x1536", "high"): 6240,
    ("1536x1024", "low"): 400,
    ("1536x1024", "medium"): 1568,
    ("1536x1024", "high"): 6208,
}

# What `quality=auto` resolves to when the server decides (the simulator's choice; the
# estimator counts `auto` at its most expensive for the worst case).
AUTO_QUALITY = "medium"
WORST_QUALITY = "high"

TILE = 512
BASE_IMAGE_TOKENS = 65
TOKENS_PER_TILE = 129
FIDELITY_SQUARE = 4160
FIDELITY_OTHER = 6240


def parse_size(size: str) -> tuple[int, int] | None:
    """`"1536x1024"` -> (1536, 1024); anything else (including "auto") -> None."""
    width, sep, height = size.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        return None
    return int(width), int(height)


def auto_size(width: int, height: int) -> str:
    """The supported size whose aspect ratio is nearest the input's."""
    aspect = width / height
    return min(SIZES, key=lambda s: abs(math.log(aspect / _aspect(s))))


def _aspect(size: str) -> float:
    w, h = parse_size(size)  # type: ignore[misc]
    return w / h


def output_tokens(size: str, quality: str) -> int:
    """Output image tokens for one image of a concrete size and quality.

    A size outside the table (gpt-image-2 takes free sizes) is approximated: the table size
    whose aspect ratio is nearest (the first of SIZES on a tie) scaled by area, rounded up,
    e.g. 1536x864 medium = ceil(1568 x (1536 x 864) / (1536 x 1024)) = 1323.
    """
    if (size, quality) in OUTPUT_TOKENS:
        return OUTPUT_TOKENS[(size, quality)]
    dims = parse_size(size)
    if dims is None or quality not in QUALITIES or 0 in dims:
        raise ValueError(f"no output token figure for size={size!r} quality={quality!r}")
    nearest = auto_size(*dims)
    width, height = parse_size(nearest)  # type: ignore[misc]
    scaled = OUTPUT_TOKENS[(nearest, quality)] * dims[0] * dims[1]
    return -(-scaled // (width * height))  # integer ceiling: no float rounding at the edges


def worst_output_tokens(size: str, quality: str) -> int:
    """At least what one image of `size` can cost: the table's figure, or for a free size the
    area at the highest tokens per pixel of any table size of that quality, rounded up."""
    if (size, quality) in OUTPUT_TOKENS:
        return OUTPUT_TOKENS[(size, quality)]
    dims = parse_size(size)
    if dims is None or quality not in QUALITIES or 0 in dims:
        raise ValueError(f"no output token figure for size={size!r} quality={quality!r}")
    area = dims[0] * dims[1]
    return max(
        -(-OUTPUT_TOKENS[(s, quality)] * area // (w * h))
        for s in SIZES
        for w, h in [parse_size(s)]  # type: ignore[misc]
    )


def image_input_tokens(width: int, height: int) -> int:
    """Input tokens of one image: fit in 2048x2048, short side to 512, 65 + 129 per tile."""
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, TILE / min(w, h))
    w, h = w * scale, h * scale
    tiles = math.ceil(round(w, 6) / TILE) * math.ceil(round(h, 6) / TILE)
    return BASE_IMAGE_TOKENS + TOKENS_PER_TILE * tiles


def fidelity_tokens(width: int, height: int, input_fidelity: str | None) -> int:
    """The input_fidelity=high surcharge, decided by the first image's shape."""
    if input_fidelity != "high":
        return 0
    return FIDELITY_SQUARE if width == height else FIDELITY_OTHER


def text_tokens(prompt: str) -> int:
    """The simulator's deterministic text token count: one token per 4 characters, rounded up.

    English averages about 4 characters per token with OpenAI's tokenizers; billing by this
    rule keeps the simulator deterministic without a tokenizer download.
    """
    return max(1, math.ceil(len(prompt) / 4))


def text_tokens_upper_bound(prompt: str) -> int:
    """An upper bound on any BPE tokenizer's count: every token is at least one UTF-8 byte."""
    return max(1, len(prompt.encode("utf-8")))
