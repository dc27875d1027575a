"""The lines of a batch: what goes into the input JSONL (one request per item, in the JSON body
with `file_id` references) and what one line of the output or error file means. Pure: no I/O.

Input line:  {"custom_id", "method": "POST", "url": "/v1/images/edits", "body": {...}}
Result line: {"id", "custom_id", "response": {"status_code", "request_id", "body"} | null,
              "error": null | {"code", "message"}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.api.answers import classify, one_line
from pipeline.api.bodies import json_fields
from pipeline.api.payload import read_answer, verify_images
from pipeline.core.errors import AttemptError, FatalError, PermanentError, RetryableError
from pipeline.core.plan import ParamValue

URLS = {"edits": "/v1/images/edits", "generations": "/v1/images/generations"}
KEY_CHARS = 16  # of the item's key in its custom_id: enough to tell two versions apart
# Line-level error codes of a request the batch never ran: it goes into the next batch, and
# it does not count as one of the item's attempts.
UNANSWERED = frozenset({"batch_expired", "batch_cancelled"})


def custom_id(item_id: str, key: str) -> str:
    """The line's id: the key's first characters, a dash, the item's id."""
    return f"{key[:KEY_CHARS]}-{item_id}"


def split_custom_id(value: str) -> tuple[str, str] | None:
    """(key prefix, item id) of a custom_id made by `custom_id`; None for another shape."""
    prefix, dash, item_id = value[:KEY_CHARS], value[KEY_CHARS : KEY_CHARS + 1], value[17:]
    if dash != "-" or not item_id or len(prefix) != KEY_CHARS:
        return None
    if any(c not in "0123456789abcdef" for c in prefix):
        return None
    return prefix, item_id


def request_body(
    params: Mapping[str, ParamValue],
    prompt: str,
    image_ids: Sequence[str],
    mask_id: str | None,
) -> dict:
    """The JSON body of one request (bodies.json_fields, images and mask by file id): edits
    when there are images, generations otherwise."""
    images = [{"file_id": file_id} for file_id in image_ids]
    mask = None if mask_id is None else {"file_id": mask_id}
    return json_fields(prompt, params, images, mask)


def request_line(cid: str, endpoint: str, body: dict) -> bytes:
    line = {"custom_id": cid, "method": "POST", "url": URLS[endpoint], "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


@dataclass(frozen=True, slots=True)
class LineResult:
    """One result line. Exactly one of `images` and `error` is set, unless `unanswered`."""

    custom_id: str
    request_id: str | None = None
    images: list[bytes] | None = None
    output_format: str | None = None
    usage: dict | None = None
    error: AttemptError | None = None
    unanswered: bool = False  # expired or cancelled before it ran: resubmit, no attempt
    billed: bool = False  # a 2xx the provider billed, though its images were unusable

    @property
    def permanent(self) -> bool:
        return isinstance(self.error, PermanentError)


def parse_line(raw: bytes | str) -> dict:
    """One line of an output or error file as an object with a custom_id, or ValueError."""
    doc = json.loads(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("custom_id"), str):
        raise ValueError("a result line without its custom_id")
    return doc


def read_result(doc: dict, expected_n: int | None) -> LineResult:
    """What one parsed result line says, images decoded and checked (blocking: run it in a
    thread)."""
    cid = doc["custom_id"]
    response = doc.get("response") if isinstance(doc.get("response"), dict) else None
    line_error = doc.get("error") if isinstance(doc.get("error"), dict) else None
    if response is None:
        code = str((line_error or {}).get("code") or "")
        message = one_line(str((line_error or {}).get("message") or "no answer"))
        if code in UNANSWERED:
            return LineResult(cid, unanswered=True, error=RetryableError(message, code=code))
        return LineResult(cid, error=RetryableError(f"batch line: {message}", code=code or None))
    status = int(response.get("status_code") or 0)
    request_id = response.get("request_id")
    body = response.get("body")
    if not 200 <= status < 300:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else None
        cls = classify(status, error)
        if cls is FatalError:  # a line the provider refused for good: the item fails
            cls = PermanentError
        message = f"HTTP {status}: {one_line(str((error or {}).get('message') or 'no message'))}"
        return LineResult(
            cid,
            request_id=request_id,
            error=cls(
                message,
                http_status=status,
                type=_str((error or {}).get("type")),
                code=_str((error or {}).get("code")),
                param=_str((error or {}).get("param")),
                request_id=request_id,
            ),
        )
    try:
        entries, usage = read_answer(body, expected_n)
        if any(not isinstance(e, bytes) for e in entries):
            raise RetryableError("unusable response: a batch answer with image URLs")
        images = [e for e in entries if isinstance(e, bytes)]
        output_format = verify_images(images)
    except RetryableError as exc:
        exc.http_status, exc.request_id = status, request_id
        usage = body.get("usage") if isinstance(body, dict) else None
        return LineResult(cid, request_id=request_id, error=exc, usage=usage, billed=True)
    return LineResult(cid, request_id, images, output_format, usage)


def _str(value: object) -> str | None:
    return None if value is None else str(value)
