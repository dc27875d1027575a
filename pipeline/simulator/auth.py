"""Who may call: OpenAI's routes (and the Files and Batch APIs) take the key as
`Authorization: Bearer KEY`; Azure's take it only in an `api-key` header (the simulator has
no Entra ID tokens, so a Bearer key alone is Azure's 401). Any non-empty key is accepted,
or only the one the simulator was started with.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pipeline.simulator import replies
from pipeline.simulator.answer import Answer
from pipeline.simulator.azure import azure_error

API_KEY_HEADER = "api-key"


def key_denial(
    headers: Mapping[str, str], expected: str | None, *, azure: bool = False
) -> Answer | None:
    """The 401 for a missing or wrong key in the route's header, else None."""
    if azure:
        return _api_key_denial(headers, expected)
    scheme, _, key = headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return replies.missing_key()
    if not _matches(key, expected):
        return replies.wrong_key(key)
    return None


def _api_key_denial(headers: Mapping[str, str], expected: str | None) -> Answer | None:
    key = headers.get(API_KEY_HEADER, "").strip()
    if key and _matches(key, expected):
        return None
    return azure_error(
        401,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    )


def _matches(key: str, expected: str | None) -> bool:
    return expected is None or hmac.compare_digest(key.encode(), expected.encode())
