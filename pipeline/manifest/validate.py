"""Checks of the files behind a plan's items: each exists and can be read, is a PNG, JPEG or
WEBP by its bytes, is within the API's size limits, each mask has its image's size (upright:
a photo with an EXIF rotation is sent turned) and marks something to edit. Images are judged by
their headers; masks are decoded once each, to count what they mark. A file shared by many
items is read once.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.core.errors import Problem
from pipeline.core.plan import Item, Remote
from pipeline.inputs.exist import unreachable_now
from pipeline.manifest.expand import label
from pipeline.media.images import (
    BadImage,
    ImageInfo,
    converted_mask_bound,
    image_info,
    mask_bytes,
    mask_edit_pixels,
    mask_is_thresholded,
    mask_sent_as_is,
)
from pipeline.media.orient import TURNS

MB = 2**20
IMAGE_LIMIT = 50 * MB  # per input image
MASK_LIMIT = 4 * MB  # the mask as sent, after any conversion

Finding = ImageInfo | tuple[str, str]  # the facts, or (message, fix) of why there are none


def check_remote_inputs(items: list[Item], *, concurrency: int = 16) -> list[Problem]:
    """Every remote input that its store says does not exist (or cannot be reached), located
    at each item naming it; one HEAD per distinct URL, nothing downloaded."""
    refs = [ref for item in items for ref in (*item.images, item.mask) if isinstance(ref, Remote)]
    if not refs:
        return []
    why = unreachable_now(refs, concurrency=concurrency)
    problems = []
    for item in items:
        named = [
            (f".image[{n}]" if len(item.images) > 1 else ".image", ref)
            for n, ref in enumerate(item.images)
        ]
        named.append((".mask", item.mask))
        for suffix, ref in named:
            if isinstance(ref, Remote) and ref.url in why:
                problems.append(
                    Problem(
                        label(item) + suffix,
                        why[ref.url],
                        "check the URL, or skip this check with --offline-inputs",
                    )
                )
    return problems


def check_files(items: list[Item], base: Path, notes: list[Problem] | None = None) -> list[Problem]:
    """Every problem with the items' input files; `base` shortens the paths shown. What is
    worth knowing but not wrong (an input turned upright, a mask that marks everything) is
    appended to `notes`, once per file."""
    problems: list[Problem] = []
    notes = [] if notes is None else notes
    seen: dict[str, Finding] = {}
    mask_sizes: dict[str, int | tuple[str, str]] = {}
    coverage: dict[str, Problem | None] = {}
    turned: set[str] = set()

    def look(path: Path) -> Finding:
        key = str(path)
        if key not in seen:
            seen[key] = _inspect(path, base)
        return seen[key]

    for item in items:
        name = label(item)
        first: ImageInfo | None = None
        for number, path in enumerate(item.images):
            if isinstance(path, Remote):
                continue
            where = f"{name}.image" if len(item.images) == 1 else f"{name}.image[{number}]"
            info = look(path)
            if isinstance(info, tuple):
                problems.append(Problem(where, *info))
                continue
            if info.bytes > IMAGE_LIMIT:
                problems.append(
                    Problem(
                        where,
                        f"{_shown(path, base)} is {info.bytes / MB:.1f} MB; "
                        f"the API takes images up to {IMAGE_LIMIT // MB} MB",
                        "shrink it, or save it as JPEG or WEBP",
                    )
                )
            if number == 0:
                first = info
            if info.orientation != 1 and str(path) not in turned:
                turned.add(str(path))
                width, height = info.upright_size
                notes.append(
                    Problem(
                        where,
                        f"{_shown(path, base)} has EXIF Orientation {info.orientation}: it is "
                        f"sent {TURNS[info.orientation]}, upright, as {width}x{height}",
                    )
                )
        if (
            item.mask is None or not item.images or isinstance(item.mask, Remote)
        ):  # a mask without an image: told elsewhere
            continue
        where = f"{name}.mask"
        info = look(item.mask)
        if isinstance(info, tuple):
            problems.append(Problem(where, *info))
            continue
        if first is not None and (info.width, info.height) != first.upright_size:
            width, height = first.upright_size
            upright = " upright (as its EXIF Orientation says)" if first.orientation != 1 else ""
            problems.append(
                Problem(
                    where,
                    f"{info.width}x{info.height} does not match the image's {width}x{height}"
                    + upright,
                    f"a mask must have the image's size: resize it to {width}x{height}",
                )
            )
            continue
        key = str(item.mask)
        if key not in coverage:
            coverage[key] = _coverage(item.mask, base, where, notes)
        if coverage[key] is not None:
            problems.append(Problem(where, coverage[key].message, coverage[key].fix))
        if key not in mask_sizes:
            mask_sizes[key] = _sent_mask_size(item.mask, info, base)
        size = mask_sizes[key]
        if isinstance(size, tuple):
            problems.append(Problem(where, *size))
        elif size > MASK_LIMIT:
            problems.append(
                Problem(
                    where,
                    f"{_shown(item.mask, base)} is {size / MB:.1f} MB as sent (a PNG with "
                    f"alpha); the API takes masks up to {MASK_LIMIT // MB} MB",
                    "use a flat black-and-white mask, or a smaller image and mask",
                )
            )
    return problems


def _coverage(path: Path, base: Path, where: str, notes: list[Problem]) -> Problem | None:
    """The problem of a mask that marks nothing to edit (the model would repaint the photo
    anyway, and it is paid for); a note for one that marks everything (no mask would do)."""
    try:
        edit, total = mask_edit_pixels(path)
    except (OSError, BadImage) as exc:
        return Problem(where, *_why_unusable(exc, _shown(path, base)))
    if edit == 0:
        return Problem(
            where,
            f"{_shown(path, base)} marks no pixel to edit",
            "white or transparent marks where to edit (black or opaque keeps); draw the area "
            "to change, or remove mask: to let the model change anything",
        )
    if edit == total:
        notes.append(
            Problem(
                where,
                f"{_shown(path, base)} marks every pixel to edit: it keeps nothing, so the item "
                "is edited as if it had no mask (drift is not measured)",
            )
        )
    return None


def _sent_mask_size(path: Path, info: ImageInfo, base: Path) -> int | tuple[str, str]:
    """The mask's size as sent: the file's when sent as it is; else that of its conversion,
    bounded from its width and height, and converted to know only when the bound is over the
    limit (a large mask)."""
    try:
        if info.format == "png" and info.has_alpha and mask_sent_as_is(path):
            return info.bytes
        bound = converted_mask_bound(info.width, info.height, thresholded=mask_is_thresholded(info))
        return bound if bound <= MASK_LIMIT else len(mask_bytes(path))
    except (OSError, BadImage) as exc:
        return _why_unusable(exc, _shown(path, base))


def _inspect(path: Path, base: Path) -> Finding:
    try:
        return image_info(path)
    except (OSError, BadImage) as exc:
        return _why_unusable(exc, _shown(path, base))


def _why_unusable(exc: OSError | BadImage, shown: str) -> tuple[str, str]:
    if isinstance(exc, BadImage):
        return f"{shown} {exc.message}", exc.fix
    if isinstance(exc, FileNotFoundError):
        fix = "check the path; a relative path starts at the manifest's folder"
        if "{" in shown:
            fix = "{stem}, {name} and {parent} are filled in glob: items only; " + fix
        return f"no such file: {shown}", fix
    if isinstance(exc, IsADirectoryError):
        return f"{shown} is a folder, not an image file", "name an image file"
    if isinstance(exc, PermissionError):
        return f"{shown} cannot be read: permission denied", "make the file readable"
    return f"{shown} cannot be read: {exc.strerror or exc}", ""


def _shown(path: Path, base: Path) -> str:
    """The path as short as it can be said: relative to the manifest's folder when inside it."""
    text, prefix = str(path), os.path.join(base, "")
    if text == str(base):
        return "."
    return text[len(prefix) :] if text.startswith(prefix) else text
