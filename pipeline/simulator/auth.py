"""Who may call: the bearer key of the OpenAI routes (any non-empty key, or the one the
simulator was started with). Azure's `api-key` header is in azure.py.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pipeline.simulator import replies
from pipeline.simulator.answer import Answer


def bearer_denial(headers: Mapping[str, str], expected: str | None) -> Answer | None:
    """The 401 for a missing or wrong `Authorization: Bearer` key, else None."""
    scheme, _, key = headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return replies.missing_key()
    if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
        return replies.wrong_key(key)
    return None
