"""How a batch's request lines are split into input files under the API's limits (50,000
requests, 200 MB per file), one endpoint per batch. Pure: sizes in, index ranges out."""

from __future__ import annotations

from collections.abc import Sequence

MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1000 * 1000


def split(
    sizes: Sequence[int], *, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES
) -> list[range]:
    """Consecutive ranges of line indexes, each within both limits, in order. A single line
    over max_bytes is a ValueError: no file can carry it."""
    parts: list[range] = []
    start, size = 0, 0
    for index, line in enumerate(sizes):
        if line > max_bytes:
            raise ValueError(
                f"request line {index} has {line:,} bytes, over the {max_bytes:,} a batch "
                "input file may hold"
            )
        if index > start and (index - start >= max_requests or size + line > max_bytes):
            parts.append(range(start, index))
            start, size = index, 0
        size += line
    if start < len(sizes):
        parts.append(range(start, len(sizes)))
    return parts
