"""Reading a batch's JSONL input file the way the Batch API validates it while the batch is
`validating`: one request a line, `{"custom_id", "method": "POST", "url": <the batch's
endpoint>, "body": {...}}`, custom ids unique, one model for the whole file, at most 50,000
lines and 200 MB. Problems make the batch `failed` with `errors.data[]` of
`{"code", "message", "param", "line"}` (codes: empty_file, file_too_large, too_many_tasks,
invalid_json_line, missing_required_parameter, invalid_method, url_mismatch,
duplicate_custom_id, model_mismatch). The bodies themselves are checked when each line is
answered, as the interactive endpoint checks them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_LINES = 50_000
MAX_BYTES = 200 * 2**20
MAX_ERRORS = 100  # the errors reported of one file; the rest are not listed


@dataclass(frozen=True, slots=True)
class BatchLine:
    custom_id: str
    body: dict
    line: int  # 1-based, as the API numbers lines in its errors


def line_error(code: str, message: str, line: int | None = None, param: str | None = None):
    return {"code": code, "message": message, "param": param, "line": line}


def read_input(data: bytes, url: str, default_model: str) -> tuple[list[BatchLine], list[dict]]:
    """(the requests, []) for a valid file, or ([], its errors)."""
    if len(data) > MAX_BYTES:
        size_mb = len(data) / 2**20
        return [], [
            line_error(
                "file_too_large", f"The input file is {size_mb:.0f} MB; the limit is 200 MB."
            )
        ]
    texts = [(number, text) for number, text in enumerate(_lines(data), start=1) if text.strip()]
    if not texts:
        return [], [line_error("empty_file", "The batch input file is empty.")]
    if len(texts) > MAX_LINES:
        return [], [
            line_error(
                "too_many_tasks",
                f"The input file has {len(texts):,} requests; a batch takes at most {MAX_LINES:,}.",
            )
        ]
    lines: list[BatchLine] = []
    errors: list[dict] = []
    seen: set[str] = set()
    first_model: str | None = None
    for number, text in texts:
        parsed, error = _one(text, number, url)
        if error is None and parsed is not None:
            model = parsed.body.get("model") or default_model
            if parsed.custom_id in seen:
                error = line_error(
                    "duplicate_custom_id",
                    f"The custom_id {parsed.custom_id!r} is a duplicate of another request's; "
                    "the custom_id must be unique for each request in a batch.",
                    number,
                    "custom_id",
                )
            elif first_model is not None and model != first_model:
                error = line_error(
                    "model_mismatch",
                    f"The model {model!r} differs from the first request's ({first_model!r}); "
                    "a batch takes one model.",
                    number,
                    "body.model",
                )
            else:
                seen.add(parsed.custom_id)
                first_model = first_model or model
                lines.append(parsed)
        if error is not None:
            errors.append(error)
            if len(errors) >= MAX_ERRORS:
                break
    return ([], errors) if errors else (lines, [])


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").split("\n")


def _one(text: str, number: int, url: str) -> tuple[BatchLine | None, dict | None]:
    try:
        request = json.loads(text)
    except ValueError:
        request = None
    if not isinstance(request, dict):
        return None, line_error(
            "invalid_json_line", "This line is not parseable as valid JSON.", number
        )
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None, _missing("custom_id", number)
    if request.get("method") != "POST":
        return None, line_error(
            "invalid_method",
            f"Invalid method {request.get('method')!r}: batch requests must use POST.",
            number,
            "method",
        )
    if request.get("url") != url:
        return None, line_error(
            "url_mismatch",
            f"The url {request.get('url')!r} does not match the batch's endpoint {url!r}.",
            number,
            "url",
        )
    body = request.get("body")
    if not isinstance(body, dict):
        return None, _missing("body", number)
    return BatchLine(custom_id, body, number), None


def _missing(name: str, number: int) -> dict:
    return line_error(
        "missing_required_parameter", f"Missing required parameter: '{name}'.", number, name
    )
