"""Checking an images/edits form the way the public API does: `check_form` turns the fields
and files into an `EditRequest`, or raises `InvalidRequest` with the param and code the API
would name. Blocking (Pillow reads image headers): run it in a thread. Limits: the API
reference of images/edits (platform.openai.com/docs/api-reference/images/createEdit).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image

from pipeline.cost import tokens
from pipeline.media.images import sniff_format
from pipeline.simulator.form import FILE_FIELDS, Form, Upload
from pipeline.simulator.replies import InvalidRequest

MAX_PROMPT = 32_000
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_MASK_BYTES = 4 * 1024 * 1024
DEFAULT_MODEL = "gpt-image-1"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
TEXT_FIELDS = (
    "model", "prompt", "n", "size", "quality", "background", "output_format",
    "output_compression", "input_fidelity", "user", "safety_identifier", "stream",
    "partial_images",
)  # fmt: skip
CHOICES = {
    "quality": ("low", "medium", "high", "auto"),
    "background": ("transparent", "opaque", "auto"),
    "output_format": ("png", "jpeg", "webp"),
    "input_fidelity": ("low", "high"),
}
SIZES = (*tokens.SIZES, "auto")
MAX_FREE_SIDE = 4096  # the simulator's cap on gpt-image-2's free sizes, to bound render time


@dataclass(frozen=True, slots=True)
class EditRequest:
    """A checked request, with `auto` size and quality already resolved."""

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
    image_sha256: str  # of the first image: the stats' key for "served twice"
    mask_sha256: str | None


def check_form(form: Form) -> EditRequest:
    """The request the form describes, or InvalidRequest for its first problem."""
    for upload in form.files:
        if upload.field not in FILE_FIELDS:
            raise _unknown(upload.field)
    for name in form.fields:
        if name not in TEXT_FIELDS:
            raise _unknown(name)
    fields = form.fields
    prompt = fields.get("prompt")
    if prompt is None:
        raise _missing("prompt")
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
    model = fields.get("model") or DEFAULT_MODEL
    quality, background, output_format, fidelity = (
        _choice(fields, name, default)
        for name, default in (
            ("quality", "auto"),
            ("background", "auto"),
            ("output_format", "png"),
            ("input_fidelity", "low"),
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
    if fidelity == "high" and model.startswith("gpt-image-1-mini"):
        raise InvalidRequest(
            f"input_fidelity 'high' is not supported by {model}; use 'low' or another model.",
            param="input_fidelity",
        )
    if fields.get("stream", "false").lower() not in ("false", "0"):
        raise InvalidRequest(
            "The simulator does not stream; leave `stream` out or send false.", param="stream"
        )
    images = [u for u in form.files if u.field in ("image", "image[]")]
    dims = _check_images(images)
    masks = [u for u in form.files if u.field == "mask"]
    if len(masks) > 1:
        raise InvalidRequest("Send one mask at most.", param="mask")
    mask = masks[0].data if masks else None
    if mask is not None:
        _check_mask(masks[0], dims[0])
    size = _size(fields.get("size", "auto"), model, dims[0])
    return EditRequest(
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
        image_sha256=hashlib.sha256(images[0].data).hexdigest(),
        mask_sha256=None if mask is None else hashlib.sha256(mask).hexdigest(),
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


def _missing(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


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


def _check_images(images: list[Upload]) -> list[tuple[int, int]]:
    if not images:
        raise _missing("image")
    if len(images) > MAX_IMAGES:
        raise InvalidRequest(
            f"Invalid 'image': array too long. Expected an array with maximum length "
            f"{MAX_IMAGES}, but got an array with length {len(images)} instead.",
            param="image",
            code="array_above_max_length",
        )
    dims = []
    for number, upload in enumerate(images, start=1):
        _check_mimetype(upload, "image")
        if len(upload.data) >= MAX_IMAGE_BYTES:
            raise InvalidRequest(
                f"Image {number} is {len(upload.data) / 2**20:.1f} MB; each image must be "
                "under 50 MB.",
                param="image",
                code="image_too_large",
            )
        dims.append(_header(upload.data, f"image {number}", "image")[0])
    return dims


def _header(data: bytes, what: str, param: str) -> tuple[tuple[int, int], bool]:
    """(width, height) and whether there is an alpha channel, read from the file's header."""
    bad = InvalidRequest(
        f"Invalid image file or mode for {what}: it must be a PNG, JPEG or WEBP file; please "
        "check your image file.",
        param=param,
        code="invalid_image_format",
    )
    if sniff_format(data) is None:
        raise bad
    try:
        with Image.open(io.BytesIO(data)) as image:
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            return image.size, has_alpha
    except (OSError, SyntaxError, ValueError):
        raise bad from None


def _check_mimetype(upload: Upload, param: str) -> None:
    if upload.content_type not in IMAGE_TYPES:
        raise InvalidRequest(
            f"Invalid file '{param}': unsupported mimetype ('{upload.content_type}'). "
            "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.",
            param=param,
            code="unsupported_file_mimetype",
        )


def _check_mask(upload: Upload, image_dims: tuple[int, int]) -> None:
    _check_mimetype(upload, "mask")
    if len(upload.data) >= MAX_MASK_BYTES:
        raise InvalidRequest(
            f"The mask is {len(upload.data) / 2**20:.1f} MB; it must be under 4 MB.",
            param="mask",
            code="image_too_large",
        )
    if sniff_format(upload.data) != "png":
        raise InvalidRequest(
            "Invalid mask: it must be a PNG with an alpha channel.",
            param="mask",
            code="invalid_image_format",
        )
    mask_dims, has_alpha = _header(upload.data, "the mask", "mask")
    if not has_alpha:
        raise InvalidRequest(
            "Invalid mask: it has no alpha channel; transparent pixels mark where to edit.",
            param="mask",
            code="invalid_image_format",
        )
    if mask_dims != image_dims:
        raise InvalidRequest(
            f"The mask is {mask_dims[0]}x{mask_dims[1]} but the image is "
            f"{image_dims[0]}x{image_dims[1]}; a mask must have the first image's size.",
            param="mask",
        )


def _size(value: str, model: str, first: tuple[int, int]) -> str:
    if value == "auto":
        return tokens.auto_size(*first)
    if value in SIZES:
        return value
    dims = tokens.parse_size(value)
    if model.startswith("gpt-image-2") and dims is not None:
        if all(0 < side <= MAX_FREE_SIDE and side % 16 == 0 for side in dims):
            return value
    supported = ", ".join(f"'{s}'" for s in SIZES[:-1])
    more = " (or WxH with sides divisible by 16)" if model.startswith("gpt-image-2") else ""
    raise InvalidRequest(
        f"Invalid value: '{value}'. Supported values are: {supported}, and 'auto'{more}.",
        param="size",
    )
