"""The simulator's error answers, in the shapes the real API (or a proxy in front of it) sends:
`{"error": {"message", "type", "param", "code"}}` JSON, or an HTML page for a 502 (Azure's
content filter: see azure.py). Wording follows the public API's messages as users report
them (see shared/API-FACTS.md). Each function returns an `Answer`, not an HTTP response, so
that batch lines get the same answers.
"""

from __future__ import annotations

import math

from pipeline.simulator.answer import Answer, InvalidRequest
from pipeline.simulator.azure import content_filter
from pipeline.simulator.outcomes import Outcome
from pipeline.simulator.ratelimit import Window, format_duration

RATE_LIMITS_DOC = "https://platform.openai.com/account/rate-limits"
ERROR_CODES_DOC = "https://platform.openai.com/docs/guides/error-codes/api-errors"
HELP = "help.openai.com"


def api_error(
    status: int,
    message: str,
    *,
    type: str,  # the API's own field name
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> Answer:
    error = {"message": message, "type": type, "param": param, "code": code, **extra}
    return Answer(status=status, body={"error": error}, headers=dict(headers or {}))


def invalid(exc: InvalidRequest) -> Answer:
    return api_error(exc.status, exc.message, type=exc.type, param=exc.param, code=exc.code)


def retry_after_headers(seconds: float) -> dict[str, str]:
    """Both forms the API sends: exact milliseconds, and whole seconds rounded up."""
    return {
        "retry-after-ms": str(math.ceil(seconds * 1000)),
        "retry-after": str(math.ceil(seconds)),
    }


def rate_limited(model: str, window: Window, retry_after_s: float) -> Answer:
    message = (
        f"Rate limit reached for {model} in organization org-simulator on requests per min "
        f"(RPM): Limit {window.limit}, Used {window.used}, Requested 1. Please try again in "
        f"{format_duration(retry_after_s)}. Visit {RATE_LIMITS_DOC} to learn more."
    )
    return api_error(
        429,
        message,
        type="requests",
        code="rate_limit_exceeded",
        headers=retry_after_headers(retry_after_s),
    )


def missing_key() -> Answer:
    return api_error(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        type="invalid_request_error",
        code="invalid_api_key",
    )


def wrong_key(key: str) -> Answer:
    shown = f"{key[:5]}{'*' * 12}{key[-4:]}" if len(key) > 12 else f"{key[:2]}***"
    return api_error(
        401,
        f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        type="invalid_request_error",
        code="invalid_api_key",
    )


BAD_GATEWAY_PAGE = """<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>editbatch-simulator (a proxy's error page)</center>
</body>
</html>
"""


def fault(outcome: Outcome, model: str, request_id: str, default_retry_s: float) -> Answer:
    """The answer of a scripted or drawn fault that is a plain HTTP error."""
    name = outcome.name
    headers = {} if outcome.retry_after_s is None else retry_after_headers(outcome.retry_after_s)
    if name == "429":
        seconds = default_retry_s if outcome.retry_after_s is None else outcome.retry_after_s
        return rate_limited(model, Window(limit=5, remaining=0, reset_s=seconds), seconds)
    if name == "502":
        return Answer(status=502, html=BAD_GATEWAY_PAGE, headers=headers)
    if name == "content_filter":
        return content_filter(request_id)
    status, message, error_type, code, extra = _FAULTS[name]
    message = message.format(model=model, request_id=request_id)
    return api_error(status, message, type=error_type, code=code, headers=headers, **extra)


_SERVER_ERROR = (
    "The server had an error while processing your request. Sorry about that! You can retry "
    "your request, or contact us through our help center at " + HELP + " if the error persists. "
    "(Please include the request ID {request_id} in your message.)"
)

# name -> (status, message, type, code, extra error fields)
_FAULTS: dict[str, tuple[int, str, str, str | None, dict]] = {
    "quota": (
        429,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: " + ERROR_CODES_DOC + ".",
        "insufficient_quota",
        "insufficient_quota",
        {},
    ),
    "500": (500, _SERVER_ERROR, "server_error", None, {}),
    "503": (
        503,
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
        {},
    ),
    "504": (504, "Gateway timeout. " + _SERVER_ERROR, "server_error", None, {}),
    "moderation": (
        400,
        "Your request was rejected by the safety system. If you believe this is an error, "
        "contact us at " + HELP + " and include the request ID {request_id}.",
        "image_generation_user_error",
        "moderation_blocked",
        {"moderation_details": {"moderation_stage": "input", "categories": ["simulated"]}},
    ),
    "401": (
        401,
        "Incorrect API key provided: sk-sim***********test. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
        {},
    ),
    "403": (
        403,
        "Your organization must be verified to use the model `{model}`. Please go to "
        "https://platform.openai.com/settings/organization/general and click on Verify "
        "Organization.",
        "invalid_request_error",
        None,
        {},
    ),
    "404": (
        404,
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
        {},
    ),
    "408": (408, "Request timed out.", "server_error", None, {}),
    "409": (
        409,
        "The request conflicted with another request in progress; please retry.",
        "invalid_request_error",
        None,
        {},
    ),
    "413": (
        413,
        "Request too large for images/edits; send smaller images.",
        "invalid_request_error",
        "request_too_large",
        {},
    ),
    "422": (
        422,
        "The request could not be processed: the image could not be edited as asked.",
        "invalid_request_error",
        None,
        {},
    ),
}
