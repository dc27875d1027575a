"""Answering as a LiteLLM proxy in front of the provider does (`SimConfig.gateway="litellm"`,
`editbatch simulate --gateway litellm`): successes pass unchanged, usage included, but

- every JSON error is rewritten in LiteLLM's shape: `{"error": {"message", "type", "param":
  null, "code": "<the HTTP status as a string>"}}`, `type` after LiteLLM's exception class
  (429: throttling_error, 401: auth_error, 400: invalid_request_error, ...) and the provider's
  own error (its code, such as insufficient_quota or moderation_blocked, and its words) only
  inside the message: "litellm.RateLimitError: OpenAIException - Error code: 429 - {...}";
- `retry-after`, `retry-after-ms` and `x-request-id` arrive as `llm_provider-retry-after`,
  `llm_provider-retry-after-ms` and `llm_provider-x-request-id`; `x-ratelimit-*` pass as
  they are.

A proxy's 502 page and the transport faults are not rewritten. Batch files are not either.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from pipeline.simulator.answer import Answer

LITELLM = "litellm"
PREFIX = "llm_provider-"
RENAMED = ("retry-after", "retry-after-ms", "x-request-id")
# HTTP status -> (LiteLLM's exception class, the `type` its proxy answers)
EXCEPTIONS: dict[int, tuple[str, str]] = {
    400: ("BadRequestError", "invalid_request_error"),
    401: ("AuthenticationError", "auth_error"),
    403: ("PermissionDeniedError", "permission_denied_error"),
    404: ("NotFoundError", "not_found_error"),
    408: ("Timeout", "timeout_error"),
    413: ("BadRequestError", "invalid_request_error"),
    422: ("UnprocessableEntityError", "invalid_request_error"),
    429: ("RateLimitError", "throttling_error"),
    500: ("InternalServerError", "internal_server_error"),
    503: ("ServiceUnavailableError", "service_unavailable_error"),
    504: ("Timeout", "timeout_error"),
}
OTHER = ("APIError", "api_error")


def litellm_error(answer: Answer) -> Answer:
    """The answer as LiteLLM's proxy passes it on: JSON errors rewritten, the rest as is."""
    error = answer.error
    if error is None:
        return answer
    exception, kind = EXCEPTIONS.get(answer.status, OTHER)
    upstream = repr({"error": error})  # LiteLLM prints the provider's error as a Python dict
    message = f"litellm.{exception}: OpenAIException - Error code: {answer.status} - {upstream}"
    rewritten = {"message": message, "type": kind, "param": None, "code": str(answer.status)}
    return answer.with_body({"error": rewritten})


def rename_headers(headers: MutableMapping[str, str]) -> None:
    """Move the headers LiteLLM renames to their `llm_provider-` names, in place."""
    for name in RENAMED:
        if name in headers:
            headers[PREFIX + name] = headers.pop(name)
