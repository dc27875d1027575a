"""What the simulator answers, before it becomes an HTTP response or a batch output line: a
status, a JSON body (or a proxy's HTML page), headers, and how the connection fails it when
the outcome is a transport fault (`reset`, `truncated`, `stall`).

Deciding in these values keeps one copy of the decisions: the HTTP routes send them, the
batch runner writes them into files, and the Azure and gateway layers rewrite them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

TRANSPORT_FAULTS = ("reset", "truncated", "stall")


@dataclass(frozen=True)
class Answer:
    """One answer. `transport` names how the bytes go wrong on the wire, or is None."""

    status: int
    body: Any = None  # the JSON body: a dict, or None for an HTML page
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    transport: str | None = None

    def payload(self) -> bytes:
        if self.html is not None:
            return self.html.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")

    @property
    def content_type(self) -> str:
        return "text/html" if self.html is not None else "application/json"

    @property
    def error(self) -> dict | None:
        """The `error` object of a JSON error answer, else None."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"]
        return None

    def with_body(self, body: Any) -> Answer:
        return replace(self, body=body)

    def with_headers(self, headers: Mapping[str, str]) -> Answer:
        return replace(self, headers=dict(headers))

    def response(self) -> web.Response:
        """The answer as a whole HTTP response (transport faults are sent by the app)."""
        return web.Response(
            status=self.status,
            body=self.payload(),
            content_type=self.content_type,
            headers=dict(self.headers),
        )


class InvalidRequest(Exception):
    """A request the API refuses as sent: status 400 (or 413), with the offending param."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = "invalid_value",
        status: int = 400,
        type: str = "invalid_request_error",  # the API's own field name
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.type = type


def json_answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status=status, body=body, headers=dict(headers or {}))
