"""The batches a simulator holds: the batch object as the Batch API returns it, the check of a
`POST /v1/batches` body, and the newest-first pages of `GET /v1/batches`.

Batch object: id, object "batch", endpoint, errors (null or {object: "list", data: [...]}),
input_file_id, completion_window, status (validating -> in_progress -> finalizing ->
completed; or failed, expired, cancelling, cancelled), output_file_id and error_file_id
(either may be null), created_at, in_progress_at, expires_at, finalizing_at, completed_at,
failed_at, expired_at, cancelling_at, cancelled_at, request_counts {total, completed,
failed}, metadata, model.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from pipeline.simulator.answer import InvalidRequest

ENDPOINTS = {"/v1/images/edits": "edits", "/v1/images/generations": "generations"}
COMPLETION_WINDOWS = ("24h",)
WINDOW_S = 24 * 3600
MAX_METADATA = 16
MAX_KEY, MAX_VALUE = 64, 512
EXPIRE_KEY = "sim_expire_after"  # metadata: this batch expires after answering that many lines
STAMPS = (
    "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
    "cancelling_at", "cancelled_at",
)  # fmt: skip
ENDED = ("completed", "failed", "expired", "cancelled")
COUNTS = ("total", "completed", "failed")
DEFAULT_PAGE, MAX_PAGE = 20, 100


@dataclass
class Batch:
    """One batch; its runner in batches.py moves it through the statuses."""

    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    origin: str
    expire_after: int | None = None
    id: str = field(default_factory=lambda: f"batch_{uuid.uuid4().hex}")
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "validating"
    stamps: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(STAMPS))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    errors: list[dict] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    model: str | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)

    def move(self, status: str) -> None:
        """Enter a status and stamp its time (`completed` stamps completed_at, ...)."""
        self.status = status
        if f"{status}_at" in self.stamps:
            self.stamps[f"{status}_at"] = int(time.time())

    def object(self) -> dict:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.created_at + WINDOW_S,
            **self.stamps,
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
            "model": self.model,
        }


def check_create(body: dict) -> tuple[str, str, str, dict[str, str] | None, int | None]:
    """(input_file_id, endpoint, completion_window, metadata, expire_after) of a create
    body, or InvalidRequest naming the field."""
    for name in body:
        if name not in ("input_file_id", "endpoint", "completion_window", "metadata"):
            raise InvalidRequest(
                f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str):
            raise InvalidRequest(
                f"Missing required parameter: '{name}'.",
                param=name,
                code="missing_required_parameter",
            )
    if body["endpoint"] not in ENDPOINTS:
        raise InvalidRequest(
            f"Invalid value: '{body['endpoint']}'. The simulator's batches take "
            + " and ".join(f"'{e}'" for e in ENDPOINTS)
            + ".",
            param="endpoint",
        )
    if body["completion_window"] not in COMPLETION_WINDOWS:
        raise InvalidRequest(
            f"Invalid value: '{body['completion_window']}'. Supported values are: '24h'.",
            param="completion_window",
        )
    metadata = body.get("metadata")
    if metadata is not None:
        _check_metadata(metadata)
    expire_after = None
    if metadata and EXPIRE_KEY in metadata:
        text = metadata[EXPIRE_KEY]
        if not text.isdigit():
            raise InvalidRequest(
                f"metadata.{EXPIRE_KEY} is {text!r}; give a number of lines, e.g. '2'.",
                param="metadata",
            )
        expire_after = int(text)
    return (
        body["input_file_id"],
        body["endpoint"],
        body["completion_window"],
        metadata,
        expire_after,
    )


def _check_metadata(metadata: object) -> None:
    if not isinstance(metadata, dict):
        raise InvalidRequest("Invalid 'metadata': expected an object.", param="metadata")
    if len(metadata) > MAX_METADATA:
        raise InvalidRequest(
            f"Invalid 'metadata': {len(metadata)} pairs; at most {MAX_METADATA}.",
            param="metadata",
        )
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > MAX_KEY or len(value) > MAX_VALUE:
            raise InvalidRequest(
                f"Invalid 'metadata.{key[:MAX_KEY]}': keys are strings of at most {MAX_KEY} "
                f"characters, values strings of at most {MAX_VALUE}.",
                param="metadata",
            )


def page_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidRequest(
            f"Invalid 'limit': {text!r}; give a number from 1 to {MAX_PAGE}.", param="limit"
        )
    return int(text)


def page(newest_first: list[Batch], limit: int, after: str | None) -> dict:
    """One page of the listing: the batches after the one with id `after` (all when None)."""
    start = 0
    if after is not None:
        ids = [batch.id for batch in newest_first]
        start = ids.index(after) + 1 if after in ids else len(ids)
    chunk = newest_first[start : start + limit]
    return {
        "object": "list",
        "data": [batch.object() for batch in chunk],
        "first_id": chunk[0].id if chunk else None,
        "last_id": chunk[-1].id if chunk else None,
        "has_more": start + limit < len(newest_first),
    }
