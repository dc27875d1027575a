"""Reading a JSON images body into the `Form` the multipart reader makes, so that one check
(validation.py) covers both: JSON types are checked here, and images arrive as
`{"image_url": "data:image/png;base64,..."}` or `{"file_id": "file-..."}` (a file uploaded
to /v1/files). The simulator has no network: an http(s) `image_url` is a 400 invalid_value
asking for a data URL or a file_id instead.

Body of edits: model, prompt, images [{image_url} | {file_id}], mask {same shape}, n, size,
quality, background, output_format, output_compression, input_fidelity, moderation, user.
Generations: the same without images, mask and input_fidelity.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from pipeline.media.images import content_type, sniff_format
from pipeline.simulator.answer import InvalidRequest
from pipeline.simulator.form import Form, Upload
from pipeline.simulator.validation import text_fields

JSON_TYPE = "application/json"
INTEGERS = ("n", "output_compression", "partial_images")
BOOLEANS = ("stream",)
_DATA_URL = re.compile(
    r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.S
)
# Finds an uploaded file's bytes by id (None when there is no such file).
FileLookup = Callable[[str], bytes | None]


def parse_json(raw: bytes) -> dict:
    """The body as a JSON object, or the API's 400 for a body that is not one."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)",
            code=None,
        )
    return body


def form_of(body: dict, endpoint: str, files: FileLookup) -> Form:
    """The Form a JSON body stands for; InvalidRequest for a field of the wrong type or shape."""
    form = Form(kind="json")
    allowed = text_fields(endpoint, "json")
    for name, value in body.items():
        if endpoint == "edits" and name == "images":
            if not isinstance(value, list):
                raise _wrong_type(name, "an array", value)
            for index, entry in enumerate(value):
                form.files.append(_image(entry, f"images[{index}]", "image[]", files))
        elif endpoint == "edits" and name == "mask":
            if value is not None:
                form.files.append(_image(value, "mask", "mask", files))
        elif name not in allowed:
            raise InvalidRequest(
                f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )
        elif value is not None:
            form.fields[name] = _text(name, value)
    return form


def _text(name: str, value: Any) -> str:
    """A scalar field as the text the multipart form would carry, after its JSON type check."""
    if name in INTEGERS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(name, "an integer", value)
        return str(value)
    if name in BOOLEANS:
        if not isinstance(value, bool):
            raise _wrong_type(name, "a boolean", value)
        return "true" if value else "false"
    if not isinstance(value, str):
        raise _wrong_type(name, "a string", value)
    return value


def _image(entry: Any, where: str, field: str, files: FileLookup) -> Upload:
    if not isinstance(entry, dict):
        raise _wrong_type(where, "an object", entry)
    for key in entry:
        if key not in ("image_url", "file_id"):
            raise InvalidRequest(
                f"Unknown parameter: '{where}.{key}'.",
                param=f"{where}.{key}",
                code="unknown_parameter",
            )
    if len(entry) != 1:
        raise InvalidRequest(
            f"Invalid '{where}': give exactly one of 'image_url' and 'file_id'.", param=where
        )
    if "file_id" in entry:
        return _from_file(entry["file_id"], f"{where}.file_id", field, files)
    return _from_url(entry["image_url"], f"{where}.image_url", field)


def _from_file(file_id: Any, param: str, field: str, files: FileLookup) -> Upload:
    if not isinstance(file_id, str):
        raise _wrong_type(param, "a string", file_id)
    data = files(file_id)
    if data is None:
        raise InvalidRequest(
            f"Invalid '{param}': no file with id '{file_id}' (it was never uploaded to "
            "/v1/files, or it was deleted).",
            param=param,
        )
    fmt = sniff_format(data)
    return Upload(field, content_type(fmt) if fmt else "application/octet-stream", data)


def _from_url(url: Any, param: str, field: str) -> Upload:
    if not isinstance(url, str):
        raise _wrong_type(param, "a string", url)
    if url.startswith(("http://", "https://")):
        raise InvalidRequest(
            f"Invalid '{param}': the simulator has no network and cannot fetch {url[:80]!r}; "
            "send the image as a data URL (data:image/png;base64,...) or upload it to "
            "/v1/files and send its file_id.",
            param=param,
        )
    match = _DATA_URL.match(url)
    if match is None or ";base64" not in match["params"]:
        raise InvalidRequest(
            f"Invalid '{param}': expected a URL or a base64 data URL (data:image/png;base64,...).",
            param=param,
        )
    try:
        data = base64.b64decode(re.sub(r"\s+", "", match["data"]), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"Invalid '{param}': the data URL's base64 could not be decoded.", param=param
        ) from None
    return Upload(field, (match["type"] or "text/plain").lower(), data)


def _wrong_type(name: str, expected: str, value: Any) -> InvalidRequest:
    got = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), "an array" if isinstance(value, list) else "an object"
    )
    if value is None:
        got = "null"
    return InvalidRequest(
        f"Invalid type for '{name}': expected {expected}, but got {got} instead.",
        param=name,
        code="invalid_type",
    )
