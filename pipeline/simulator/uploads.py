"""Checking the image and mask files of an edit the way the public API does: how many, their
declared content types, sizes, formats, and a mask's alpha channel and dimensions. Blocking
(Pillow reads the headers): called from `check_form`, which runs in a thread.
"""

from __future__ import annotations

import io

from PIL import Image

from pipeline.media.images import sniff_format
from pipeline.simulator.answer import InvalidRequest
from pipeline.simulator.form import Upload

MAX_IMAGES = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_MASK_BYTES = 4 * 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
JSON_IMAGES_HINT = (
    ' Send them as [{"image_url": "data:image/png;base64,..."} or {"file_id": "file-..."}]'
    " in a JSON body, or as image parts of a multipart/form-data body."
)


def missing(name: str, hint: str = "") -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{name}'.{hint}",
        param=name,
        code="missing_required_parameter",
    )


def check_images(images: list[Upload], param: str = "image") -> list[tuple[int, int]]:
    """(width, height) of each image, or InvalidRequest for the first problem."""
    if not images:
        if param == "images":  # a JSON body
            raise missing(param, JSON_IMAGES_HINT)
        raise missing(param)
    if len(images) > MAX_IMAGES:
        raise InvalidRequest(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{MAX_IMAGES}, but got an array with length {len(images)} instead.",
            param=param,
            code="array_above_max_length",
        )
    dims = []
    for number, upload in enumerate(images, start=1):
        check_mimetype(upload, param)
        if len(upload.data) >= MAX_IMAGE_BYTES:
            raise InvalidRequest(
                f"Image {number} is {len(upload.data) / 2**20:.1f} MB; each image must be "
                "under 50 MB.",
                param=param,
                code="image_too_large",
            )
        dims.append(header(upload.data, f"image {number}", param)[0])
    return dims


def header(data: bytes, what: str, param: str) -> tuple[tuple[int, int], bool]:
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


def check_mimetype(upload: Upload, param: str) -> None:
    if upload.content_type not in IMAGE_TYPES:
        raise InvalidRequest(
            f"Invalid file '{param}': unsupported mimetype ('{upload.content_type}'). "
            "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.",
            param=param,
            code="unsupported_file_mimetype",
        )


def check_mask(upload: Upload, image_dims: tuple[int, int]) -> None:
    check_mimetype(upload, "mask")
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
    mask_dims, has_alpha = header(upload.data, "the mask", "mask")
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
