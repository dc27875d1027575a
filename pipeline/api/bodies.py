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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

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

    data: aiohttp.FormData | bytes
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


def build_form(req: ImageRequest) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    if "model" in req.params:  # first, as the official SDK sends it
        form.add_field("model", form_value(req.params["model"]))
    form.add_field("prompt", req.prompt)
    for name, value in req.params.items():
        if name != "model" and value is not None:
            form.add_field(name, form_value(value))
    image_field = "image" if len(req.images) == 1 else "image[]"
    for filename, data, content_type in req.images:
        form.add_field(image_field, data, filename=filename, content_type=content_type)
    if req.mask is not None:
        form.add_field("mask", req.mask[1], filename=req.mask[0], content_type="image/png")
    return form


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
