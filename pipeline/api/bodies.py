"""The request bodies of the image endpoints, built from one ImageRequest:

- edits, multipart (the default): `model`, `prompt`, each image as `image` (one) or `image[]`
  (several), `mask`, and the other parameters as form fields; each file with its real type.
- edits, JSON (`endpoint.body: json`): `images: [{image_url}]` and `mask: {image_url}` as
  data URLs, and the other parameters with their JSON types (`moderation` exists only here and
  in generations).
- generations (an item with no image): JSON of `model`, `prompt` and the other parameters,
  leaving out those only edits take (`input_fidelity`).
The Batch API's lines carry the same JSON with `{file_id}` references (`json_fields`).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from pipeline.core.plan import EDITS, GENERATIONS, ParamValue

ImagePart = tuple[str, bytes, str]  # filename, bytes, content type
RESERVED = frozenset({"prompt", "image", "image[]", "images", "mask"})
EDIT_ONLY = frozenset({"input_fidelity"})  # left out of a generation's body
MULTIPART, JSON = "multipart", "json"


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One request: an edit when it has images, else a generation."""

    prompt: str
    params: Mapping[str, ParamValue]  # model, size, quality, n, ...
    images: Sequence[ImagePart] = ()
    mask: tuple[str, bytes] | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and not self.images:
            raise ValueError("a mask needs an image: a request without images is a generation")
        clash = RESERVED & set(self.params)
        if clash:
            raise ValueError(f"params may not hold {sorted(clash)}: they are set by the request")

    @property
    def endpoint(self) -> str:
        return EDITS if self.images else GENERATIONS

    @property
    def model(self) -> str:
        return str(self.params.get("model", ""))

    @property
    def n(self) -> int | None:
        try:
            return int(self.params.get("n", 1))
        except (TypeError, ValueError):
            return None  # the API decides what a strange n means; no count check then


@dataclass(frozen=True, slots=True)
class Body:
    """What goes on the wire: a multipart form (which sets its own Content-Type with the
    boundary) or JSON bytes."""

    data: Form | bytes
    content_type: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type} if self.content_type else {}


def build_body(req: ImageRequest, kind: str = MULTIPART) -> Body:
    """The body of `req`: a generation is always JSON; an edit is multipart or JSON by `kind`."""
    if req.endpoint == GENERATIONS:
        return _json(generation_fields(req))
    if kind == JSON:
        return _json(json_edit_fields(req))
    return Body(build_form(req), None)


def form_value(value: ParamValue) -> str:
    """A parameter as the API reads a form field: booleans lower-case, whole floats as ints."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def build_form(req: ImageRequest) -> Form:
    fields = []
    if "model" in req.params:  # first, as the official SDK sends it
        fields.append(("model", form_value(req.params["model"])))
    fields.append(("prompt", req.prompt))
    for name, value in req.params.items():
        if name != "model" and value is not None:
            fields.append((name, form_value(value)))
    image_field = "image" if len(req.images) == 1 else "image[]"
    files = [(image_field, *part) for part in req.images]
    if req.mask is not None:
        files.append(("mask", req.mask[0], req.mask[1], "image/png"))
    return Form(fields, files)


# Parts up to this size are copied into the bytes around them, so that a small request goes out
# in one write; larger files are written as they are, never copied.
_COALESCE_BYTES = 64 * 1024


class Form(Payload):
    """A multipart/form-data body (RFC 7578), laid out once as a few byte strings: the text
    fields and every part's header joined, each large file left as the bytes already held.

    aiohttp's FormData writes each part's boundary, headers, content and CRLF separately,
    about 20 socket writes for an edit; this writes one for a small request and 2 or 3 more
    per large file, with no copy of the files. The layout is the official SDK's (httpx): a
    text field has no Content-Type, a file part carries its name and its type, and a quote,
    CR or LF in a name is percent-escaped (part names are made safe before: prepare.part_name).
    """

    def __init__(
        self,
        fields: Sequence[tuple[str, str]],
        files: Sequence[tuple[str, str, bytes, str]] = (),  # field, filename, bytes, type
    ):
        boundary = uuid.uuid4().hex
        chunks: list[bytes] = []
        pending: list[bytes] = []
        for name, value in fields:
            pending.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"'
                f"\r\n\r\n{value}\r\n".encode()
            )
        for name, filename, data, kind in files:
            pending.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"; '
                f'filename="{_quoted(filename)}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
            )
            if len(data) > _COALESCE_BYTES:
                chunks += [b"".join(pending), data]
                pending = []
            else:
                pending.append(data)
            pending.append(b"\r\n")
        pending.append(f"--{boundary}--\r\n".encode())
        chunks.append(b"".join(pending))
        self.chunks = tuple(chunk for chunk in chunks if chunk)
        super().__init__(self.chunks, content_type=f"multipart/form-data; boundary={boundary}")
        self._size = sum(len(chunk) for chunk in self.chunks)

    @property
    def is_multipart(self) -> bool:
        return True

    async def write(self, writer: AbstractStreamWriter) -> None:
        for chunk in self.chunks:
            await writer.write(chunk)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        if content_length is None or content_length >= self._size:
            await self.write(writer)
            return
        left = content_length
        for chunk in self.chunks:
            if left <= 0:
                break
            await writer.write(chunk[:left])
            left -= len(chunk)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self.chunks).decode(encoding, errors)

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks)


def _quoted(name: str) -> str:
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def data_url(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def json_edit_fields(req: ImageRequest) -> dict:
    images = [{"image_url": data_url(data, kind)} for _, data, kind in req.images]
    mask = None if req.mask is None else {"image_url": data_url(req.mask[1], "image/png")}
    return json_fields(req.prompt, req.params, images, mask)


def generation_fields(req: ImageRequest) -> dict:
    return json_fields(req.prompt, req.params)


def json_fields(
    prompt: str,
    params: Mapping[str, ParamValue],
    images: Sequence[Mapping[str, str]] = (),
    mask: Mapping[str, str] | None = None,
) -> dict:
    """A request's JSON: `model` and `prompt` first, the other parameters with their JSON types,
    and for an edit its image and mask references (`{"image_url": ...}` or `{"file_id": ...}`);
    a generation (no images) leaves out the parameters only edits take."""
    fields: dict = {}
    if "model" in params:
        fields["model"] = params["model"]
    fields["prompt"] = prompt
    leave_out = frozenset() if images else EDIT_ONLY
    for name, value in params.items():
        if name != "model" and value is not None and name not in leave_out:
            fields[name] = _json_value(value)
    if images:
        fields["images"] = [dict(ref) for ref in images]
    if mask is not None:
        fields["mask"] = dict(mask)
    return fields


def _json_value(value: ParamValue) -> ParamValue:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _json(fields: dict) -> Body:
    return Body(json.dumps(fields, ensure_ascii=False).encode("utf-8"), "application/json")
