"""Checking an images request the way the public API does: `check_form` turns the fields and
files of an edit (multipart or JSON) or of a generation into an `ImageRequest`, or raises
`InvalidRequest` with the param and code the API would name. Blocking (Pillow reads image
headers): run it in a thread. Limits: the API reference of images/edits and
images/generations (platform.openai.com/docs/api-reference/images); model rules: models.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.cost import tokens
from pipeline.simulator.answer import InvalidRequest
from pipeline.simulator.form import FILE_FIELDS, Form
from pipeline.simulator.models import SIM_DEFAULT_MODEL, check_size, rules_of
from pipeline.simulator.uploads import check_images, check_mask, missing

MAX_PROMPT = 32_000
ENDPOINTS = ("edits", "generations")
COMMON_FIELDS = (
    "model", "prompt", "n", "size", "quality", "background", "output_format",
    "output_compression", "user", "safety_identifier", "stream", "partial_images",
)  # fmt: skip
CHOICES = {
    "quality": ("low", "medium", "high", "auto"),
    "background": ("transparent", "opaque", "auto"),
    "output_format": ("png", "jpeg", "webp"),
    "input_fidelity": ("low", "high"),
    "moderation": ("auto", "low"),
}


def text_fields(endpoint: str, kind: str) -> tuple[str, ...]:
    """The non-file fields a body may hold: edits add input_fidelity, and `moderation` exists
    only in JSON bodies (generations are always JSON)."""
    fields = COMMON_FIELDS
    if endpoint == "edits":
        fields += ("input_fidelity",)
    if kind == "json":
        fields += ("moderation",)
    return fields


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """A checked request, with `auto` size and quality already resolved. A generation has
    no images (and its `image_sha256` is the prompt's, the stats' key for "served twice")."""

    model: str
    prompt: str
    images: tuple[bytes, ...]
    dims: tuple[tuple[int, int], ...]
    mask: bytes | None
    n: int
    size: str
    quality: str
    background: str
    output_format: str
    output_compression: int | None
    input_fidelity: str
    image_sha256: str
    mask_sha256: str | None
    endpoint: str = "edits"


def check_form(
    form: Form,
    endpoint: str = "edits",
    *,
    model: str | None = None,
    default_model: str = SIM_DEFAULT_MODEL,
) -> ImageRequest:
    """The request the form describes, or InvalidRequest for its first problem. `model`
    overrides the form's (an Azure deployment serves its own model whatever the body says)."""
    allowed = text_fields(endpoint, form.kind)
    for upload in form.files:
        if endpoint != "edits" or upload.field not in FILE_FIELDS:
            raise _unknown(upload.field)
    for name in form.fields:
        if name not in allowed:
            raise _unknown(name)
    fields = form.fields
    prompt = fields.get("prompt")
    if prompt is None:
        raise missing("prompt")
    if not prompt:
        raise InvalidRequest(
            "Invalid 'prompt': string too short. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param="prompt",
            code="string_below_min_length",
        )
    if len(prompt) > MAX_PROMPT:
        raise InvalidRequest(
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{MAX_PROMPT}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    model = model or fields.get("model") or default_model
    quality, background, output_format, fidelity, _ = (
        _choice(fields, name, default)
        for name, default in (
            ("quality", "auto"),
            ("background", "auto"),
            ("output_format", "png"),
            ("input_fidelity", "low"),
            ("moderation", "auto"),
        )
    )
    n = parse_int(fields, "n", 1, 1, 10) or 1
    compression = parse_int(fields, "output_compression", None, 0, 100)
    if background == "transparent" and output_format == "jpeg":
        raise InvalidRequest(
            "Transparent background is not supported with output_format 'jpeg'; "
            "use 'png' or 'webp', or background 'opaque'.",
            param="background",
        )
    if fidelity == "high" and not rules_of(model).high_fidelity:
        raise InvalidRequest(
            f"input_fidelity 'high' is not supported by {model}; use 'low' or another model.",
            param="input_fidelity",
        )
    if fields.get("stream", "false").lower() not in ("false", "0"):
        raise InvalidRequest(
            "The simulator does not stream; leave `stream` out or send false.", param="stream"
        )
    images = [u for u in form.files if u.field in ("image", "image[]")]
    dims: list[tuple[int, int]] = []
    mask = None
    if endpoint == "edits":
        dims = check_images(images, "images" if form.kind == "json" else "image")
        masks = [u for u in form.files if u.field == "mask"]
        if len(masks) > 1:
            raise InvalidRequest("Send one mask at most.", param="mask")
        mask = masks[0].data if masks else None
        if mask is not None:
            check_mask(masks[0], dims[0])
    size = check_size(fields.get("size", "auto"), model, dims[0] if dims else None)
    first = images[0].data if images else prompt.encode("utf-8")
    return ImageRequest(
        model=model,
        prompt=prompt,
        images=tuple(u.data for u in images),
        dims=tuple(dims),
        mask=mask,
        n=n,
        size=size,
        quality=tokens.AUTO_QUALITY if quality == "auto" else quality,
        background=background,
        output_format=output_format,
        output_compression=compression,
        input_fidelity=fidelity,
        image_sha256=hashlib.sha256(first).hexdigest(),
        mask_sha256=None if mask is None else hashlib.sha256(mask).hexdigest(),
        endpoint=endpoint,
    )


def parse_int(
    fields: dict[str, str], name: str, default: int | None, low: int, high: int
) -> int | None:
    """An integer form field within [low, high], in the API's words when it is not."""
    text = fields.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequest(
            f"Invalid type for '{name}': expected an integer, but got a string instead.",
            param=name,
            code="invalid_type",
        ) from None
    if value < low:
        raise InvalidRequest(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, but "
            f"got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if value > high:
        raise InvalidRequest(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, but "
            f"got {value} instead.",
            param=name,
            code="integer_above_max_value",
        )
    return value


def _unknown(name: str) -> InvalidRequest:
    return InvalidRequest(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def _choice(fields: dict[str, str], name: str, default: str) -> str:
    value = fields.get(name, default)
    if value not in CHOICES[name]:
        supported = ", ".join(f"'{c}'" for c in CHOICES[name][:-1])
        raise InvalidRequest(
            f"Invalid value: '{value}'. Supported values are: {supported}, and "
            f"'{CHOICES[name][-1]}'.",
            param=name,
        )
    return value
