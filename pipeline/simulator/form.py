"""Reading the multipart body of `POST /v1/images/edits` (and of `POST /v1/files`) into plain
values: text fields and file parts with their declared content types, refusing (413) a body
past the size limit while it streams in, before it is all in memory. A JSON body becomes the
same `Form` in jsonbody.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, web

from pipeline.simulator.answer import InvalidRequest

FILE_FIELDS = ("image", "image[]", "mask")
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Upload:
    field: str
    content_type: str
    data: bytes
    filename: str | None = None


@dataclass
class Form:
    """Text fields and files of a request; `kind` is "multipart" or "json" (what it came as)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)
    kind: str = "multipart"


async def read_form(request: web.Request, max_bytes: int, route: str = "images/edits") -> Form:
    """Every part of the multipart body; 413 once it passes `max_bytes`."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(request.content_length, max_bytes)
    if request.content_type == "application/x-www-form-urlencoded":
        # No file parts at all: read the fields, so that the check names what is missing.
        body = await read_body(request, max_bytes)
        return Form(fields=dict(parse_qsl(body.decode("utf-8", errors="replace"))))
    if request.content_type != "multipart/form-data":
        raise InvalidRequest(
            f"Invalid Content-Type header ({request.content_type or 'none'}); {route} "
            "takes multipart/form-data with the files as parts.",
            code=None,
        )
    try:
        return await _read_parts(request, max_bytes)
    except ValueError as exc:  # aiohttp's word for a malformed multipart body
        raise InvalidRequest(
            f"Could not parse the multipart body ({exc}); send multipart/form-data.", code=None
        ) from None


async def _read_parts(request: web.Request, max_bytes: int) -> Form:
    form, seen = Form(), 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise InvalidRequest("Nested multipart parts are not supported.", code=None)
        chunks = []
        while chunk := await part.read_chunk(CHUNK):
            seen += len(chunk)
            if seen > max_bytes:
                raise _too_large(seen, max_bytes)
            chunks.append(chunk)
        data = b"".join(chunks)
        name = part.name or ""
        if part.filename is not None or name in FILE_FIELDS:
            content_type = part.headers.get("Content-Type", "application/octet-stream")
            declared = content_type.split(";")[0].strip().lower()
            form.files.append(Upload(name, declared, data, part.filename))
        else:
            form.fields[name] = data.decode("utf-8", errors="replace")
    return form


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole raw body; 413 once it passes `max_bytes`."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(request.content_length, max_bytes)
    chunks, seen = [], 0
    async for chunk in request.content.iter_chunked(CHUNK):
        seen += len(chunk)
        if seen > max_bytes:
            raise _too_large(seen, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"Request body of {size / 2**20:.1f} MB exceeds the limit of {limit / 2**20:.0f} MB; "
        "send fewer or smaller images.",
        code="request_too_large",
        status=413,
    )
