"""What a provider's answer means: the error in a non-2xx body, its class (retry, fail the
item, abort the run), its cause, what the user should fix, and when the server asks to be
called again. Pure functions over plain values, each tested by a table.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
from collections.abc import Mapping
from typing import Any

from pipeline.api.vocabulary import bad_key, moderated, quota_spent
from pipeline.core.errors import (
    AnswerRejected,
    AttemptError,
    FatalError,
    PermanentError,
    RateLimited,
    RetryableError,
)

# A server hint longer than this is taken as garbage (milliseconds sent as seconds, an epoch
# timestamp) and ignored, so the ordinary backoff applies instead of a days-long sleep.
MAX_RETRY_AFTER_S = 86_400.0


def one_line(text: str, limit: int = 400) -> str:
    """Text on one line, cut to `limit` characters: messages never carry a whole page."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_error(status: int, body: bytes, content_type: str) -> tuple[dict | None, str]:
    """The `error` object of a non-2xx body, if any, and a one-line message."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict):
            return error, f"HTTP {status}: {one_line(str(error.get('message') or 'no message'))}"
        if isinstance(error, str):
            return {"message": error}, f"HTTP {status}: {one_line(error)}"
        if isinstance(doc.get("message"), str):
            return doc, f"HTTP {status}: {one_line(doc['message'])}"
    text = body.decode("utf-8", "replace").strip()
    if "html" in content_type.lower() or text.startswith("<"):
        return None, f"HTTP {status} from server (HTML body)"
    return None, f"HTTP {status}: {one_line(text, 200) if text else 'empty body'}"


def classify(status: int, error: Mapping[str, Any] | None) -> type[AttemptError]:
    """The exception class for a non-2xx response (CONTRACT sections 3 and 6). The status
    decides, except where the error's words say more (read from the message too when a
    gateway rewrote the code: vocabulary.py): a spent quota aborts, a bad key aborts whatever
    the status, and a moderation refusal fails the item."""
    if status == 429:
        return FatalError if quota_spent(error) else RateLimited
    if status >= 400 and bad_key(error):
        return FatalError
    if status >= 400 and moderated(error):
        return PermanentError
    if status in (408, 409) or status >= 500:
        return RetryableError
    if status in (401, 403, 404):
        return FatalError
    if 400 <= status < 500:
        return PermanentError
    # 1xx/3xx reaching us means the endpoint is misconfigured (redirects are not followed):
    # every request would get the same answer.
    return FatalError


def cause_of(exc: AttemptError) -> str:
    """A short cause for the ledger and the retry counts of a run's summary."""
    if isinstance(exc, RateLimited):
        return "rate_limit"
    if isinstance(exc, AnswerRejected):
        return "drift"
    if exc.transport == "timeout":
        return "timeout"
    if exc.transport is not None:
        return "connection"
    if exc.http_status in (408, 409):
        return "conflict"
    if exc.http_status is not None and exc.http_status >= 500:
        return "server_error"
    if isinstance(exc, FatalError):
        return "fatal"
    if isinstance(exc, PermanentError):
        return "rejected"
    return "bad_response"


def fix_hint(
    cls: type[AttemptError],
    status: int,
    error: Mapping[str, Any] | None,
    *,
    model: str,
    key_env: str,
    base_url: str,
) -> str:
    """What the user should change, for errors that no retry fixes ("" for retryable ones)."""
    error = error or {}
    if cls is FatalError:
        if status == 401 or bad_key(error):
            return f"check the API key in ${key_env} (the variable endpoint.api_key_env names)"
        if status == 403:
            return (
                f"the key has no access to model {model!r} or to this endpoint (organization "
                "verification, region, project permissions); fix access or choose another model"
            )
        if status == 404 and error.get("code") == "DeploymentNotFound":
            return (
                "no such deployment on this Azure resource: check endpoint.deployment (classic "
                f"route) or the model name {model!r} (v1 route: it names the deployment), and "
                f"endpoint.base_url ({base_url})"
            )
        if status == 404:
            return (
                f"check the model name {model!r} (defaults.model or the item's model), that "
                f"the key has access to it, and endpoint.base_url ({base_url})"
            )
        if status == 429 and quota_spent(error):
            return (
                "the quota or credit is spent: add credit or raise the limit in billing, "
                "then run again to resume"
            )
        return f"the server answered {status}; set endpoint.base_url to the API's own address"
    if cls is PermanentError:
        if moderated(error):
            return (
                "the provider's safety system (moderation, content filter) rejected this "
                "item; change its prompt or images"
            )
        if status == 413:
            return "the request is too large; send smaller or fewer images"
        if error.get("param"):
            return f"fix the item's {error['param']!r} (or defaults.{error['param']})"
        return "fix the item's parameters or inputs"
    return ""


def _finite_seconds(value: float) -> float | None:
    if math.isnan(value) or value < 0 or value > MAX_RETRY_AFTER_S:
        return None
    return value


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asks us to wait, or None when it gave no usable hint.

    `retry-after-ms` (float milliseconds) wins over `retry-after` (seconds, or an HTTP date
    compared with `now`, epoch seconds). Negative, NaN or longer-than-a-day numbers are
    ignored; a date already past means "now" (0.0), since the clocks may differ slightly.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            parsed = _finite_seconds(float(raw_ms.strip()) / 1000.0)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return _finite_seconds(float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" gives a naive datetime; HTTP dates are GMT anyway
        when = when.replace(tzinfo=datetime.UTC)
    return _finite_seconds(max(0.0, when.timestamp() - now))
