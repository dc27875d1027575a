"""What providers and gateways call things: the error codes and messages that mean "no money
left", "refused by moderation" or "bad key", and the headers gateways rename. Pure data and
matching functions, read by `answers.classify` and the client.

- OpenAI names the class in `type`/`code` (`insufficient_quota`, `moderation_blocked`).
- Azure OpenAI answers its content filter with code `content_filter` and an `innererror` of
  code `ResponsibleAIPolicyViolation`: the moderation class.
- LiteLLM and gateways like it rewrite `type` and `code` (a spent quota arrives as 429
  `throttling_error`, code "429"; moderation as code "400") and keep the provider's own code
  only inside the message, so where the code was rewritten the message is read too. They also
  rename `retry-after`, `retry-after-ms` and `x-request-id` to `llm_provider-...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Error types or codes of a 429 that mean "no money left", not "too fast".
SPENT_CODES = frozenset(
    {
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "quota_exceeded",
        "credit_exhausted",
        "insufficient_credits",
        "access_terminated",
    }
)
SPENT_WORDS = ("quota", "credit", "billing")  # inside a type or code
MODERATION_CODES = frozenset({"moderation_blocked", "content_filter", "content_policy_violation"})
MODERATION_INNER_CODES = frozenset({"ResponsibleAIPolicyViolation"})
BAD_KEY_CODES = frozenset({"invalid_api_key"})

# Phrases of a message that name the class when a gateway rewrote the type and code
# (lower case; matched as substrings of the lower-cased message).
SPENT_PHRASES = (
    *SPENT_CODES,
    "exceeded your current quota",
    "credit balance is too low",
)
MODERATION_PHRASES = (
    *MODERATION_CODES,
    "responsibleaipolicyviolation",
    "rejected by the safety system",
    "content management policy",
)
BAD_KEY_PHRASES = ("invalid_api_key", "incorrect api key provided", "invalid subscription key")

# `type` values gateways put in place of the provider's (LiteLLM's exception classes).
GATEWAY_TYPES = frozenset(
    {
        "throttling_error",
        "auth_error",
        "api_error",
        "not_found_error",
        "permission_denied_error",
        "internal_server_error",
        "service_unavailable_error",
        "timeout_error",
    }
)

GATEWAY_PREFIX = "llm_provider-"
RENAMED_HEADERS = ("retry-after", "retry-after-ms", "x-request-id")


def _text(error: Mapping[str, Any] | None, key: str) -> str:
    value = (error or {}).get(key)
    return value if isinstance(value, str) else ""


def rewritten(error: Mapping[str, Any] | None) -> bool:
    """Whether the error's code says nothing of its own: missing, or an HTTP status as text
    (a gateway's rewrite), so that its message must be read for the class."""
    if not error:
        return False
    code = error.get("code")
    if code is None or (isinstance(code, int) and not isinstance(code, bool)):
        return True
    return isinstance(code, str) and (code.isdigit() or _text(error, "type") in GATEWAY_TYPES)


def _message_says(error: Mapping[str, Any] | None, phrases: tuple[str, ...]) -> bool:
    if not rewritten(error):
        return False
    message = _text(error, "message").lower()
    return any(phrase in message for phrase in phrases)


def quota_spent(error: Mapping[str, Any] | None) -> bool:
    """Whether the error says the account's quota or credit is spent."""
    for key in ("type", "code"):
        lowered = _text(error, key).lower()
        if lowered in SPENT_CODES or any(word in lowered for word in SPENT_WORDS):
            return True
    return _message_says(error, SPENT_PHRASES)


def moderated(error: Mapping[str, Any] | None) -> bool:
    """Whether the provider's safety system refused the request (OpenAI's moderation, Azure's
    content filter), in its own words or inside a gateway's message."""
    if _text(error, "code") in MODERATION_CODES:
        return True
    inner = (error or {}).get("innererror")
    if isinstance(inner, Mapping) and inner.get("code") in MODERATION_INNER_CODES:
        return True
    return _message_says(error, MODERATION_PHRASES)


def bad_key(error: Mapping[str, Any] | None) -> bool:
    """Whether the error says the key is wrong, where a gateway answered it as another status."""
    return _text(error, "code") in BAD_KEY_CODES or _message_says(error, BAD_KEY_PHRASES)


def standard_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with lower-case names, a gateway's `llm_provider-retry-after` (and the
    others it renames) read as `retry-after` where the plain one is absent."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for name in RENAMED_HEADERS:
        renamed = lowered.get(GATEWAY_PREFIX + name)
        if renamed is not None and name not in lowered:
            lowered[name] = renamed
    return lowered
