"""The Files API of the simulator: uploads held in memory until deleted or the simulator stops.

    POST   /v1/files               multipart `file` and `purpose` (batch, vision, user_data)
    GET    /v1/files/{id}          the file object
    GET    /v1/files/{id}/content  the bytes
    DELETE /v1/files/{id}          {"id", "object": "file", "deleted": true}

File object: {"id": "file-...", "object": "file", "bytes", "created_at", "filename",
"purpose", "status": "processed", "expires_at": null, "status_details": null}. Batches add
their output and error files with purpose `batch_output`. Images uploaded here are what a
JSON body's `{"file_id": ...}` refers to.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from aiohttp import web

from pipeline.simulator.answer import Answer, InvalidRequest, json_answer
from pipeline.simulator.form import read_form
from pipeline.simulator.replies import api_error

PURPOSES = ("batch", "vision", "user_data")
OUTPUT_PURPOSE = "batch_output"


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def object(self) -> dict:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


class FileStore:
    """Files by id, in memory."""

    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}

    def add(self, data: bytes, filename: str, purpose: str) -> StoredFile:
        stored = StoredFile(f"file-{uuid.uuid4().hex[:24]}", filename, purpose, data, now())
        self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        return self._files.get(file_id)

    def data(self, file_id: str) -> bytes | None:
        stored = self._files.get(file_id)
        return None if stored is None else stored.data

    def delete(self, file_id: str) -> bool:
        return self._files.pop(file_id, None) is not None


def now() -> int:
    return int(time.time())


def no_such_file(file_id: str) -> Answer:
    return api_error(
        404, f"No such File object: {file_id}", type="invalid_request_error", param="id"
    )


class FileRoutes:
    """The HTTP handlers of the Files API (the app checks the key before them)."""

    def __init__(self, store: FileStore, max_bytes: int):
        self.store, self.max_bytes = store, max_bytes

    async def create(self, request: web.Request) -> Answer:
        form = await read_form(request, self.max_bytes, route="files")
        uploads = [u for u in form.files if u.field == "file"]
        purpose = form.fields.get("purpose")
        if not uploads:
            raise InvalidRequest(
                "Missing required parameter: 'file'.",
                param="file",
                code="missing_required_parameter",
            )
        if purpose is None:
            raise InvalidRequest(
                "Missing required parameter: 'purpose'.",
                param="purpose",
                code="missing_required_parameter",
            )
        if purpose not in PURPOSES:
            raise InvalidRequest(
                f"Invalid value: '{purpose}'. Supported values are: "
                + ", ".join(f"'{p}'" for p in PURPOSES)
                + ".",
                param="purpose",
            )
        upload = uploads[0]
        stored = self.store.add(upload.data, upload.filename or "upload", purpose)
        return json_answer(stored.object())

    async def retrieve(self, request: web.Request) -> Answer:
        stored = self.store.get(request.match_info["file_id"])
        if stored is None:
            return no_such_file(request.match_info["file_id"])
        return json_answer(stored.object())

    async def content(self, request: web.Request) -> web.Response | Answer:
        stored = self.store.get(request.match_info["file_id"])
        if stored is None:
            return no_such_file(request.match_info["file_id"])
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def delete(self, request: web.Request) -> Answer:
        file_id = request.match_info["file_id"]
        if not self.store.delete(file_id):
            return no_such_file(file_id)
        return json_answer({"id": file_id, "object": "file", "deleted": True})
