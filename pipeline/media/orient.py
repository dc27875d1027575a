"""EXIF orientation: which way up a photo is meant to be shown, and its bytes turned upright.

Phones store a photo as the sensor saw it and say in EXIF (tag 0x0112, Orientation) how to
turn it; the API ignores that tag, so a sideways photo would be edited sideways. The tag is
read from the file's own bytes (a JPEG's APP1, a PNG's eXIf chunk before the image data, a
WEBP's EXIF chunk), by the same function for `validate` and for sending, so both agree on the
size a mask must have.
"""

from __future__ import annotations

import io
import struct

from PIL import Image, JpegImagePlugin

_TAG = 0x0112
_EXIF_PREFIX = b"Exif\x00\x00"
# Orientation value -> the transpose that shows the photo upright (EXIF 2.3, table of 0x0112).
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
TURNS = {2: "mirrored", 3: "turned 180°", 4: "flipped", 5: "mirrored and turned 90° left"}
TURNS |= {6: "turned 90° right", 7: "mirrored and turned 90° right", 8: "turned 90° left"}


def orientation(data: bytes, fmt: str) -> int | None:
    """The EXIF Orientation (1-8; 1 when there is none or it is unreadable), or None when
    `data` (a file's first bytes) ends before the EXIF does: read the whole file then."""
    try:
        tiff = _exif_of(data, fmt)
    except (struct.error, IndexError):
        return None  # a chunk or segment header cut by the end of `data`
    if tiff is _MORE:
        return None
    return 1 if tiff is None else _orientation_in_tiff(tiff)


def swaps_sides(value: int) -> bool:
    """Whether the upright photo's width is the stored height (a quarter turn)."""
    return value in (5, 6, 7, 8)


def upright(data: bytes, fmt: str) -> bytes:
    """The image's bytes as they should be sent: unchanged when its orientation is 1, else
    turned upright and saved again in its own format, the orientation tag removed. A JPEG keeps
    its quantisation tables and chroma subsampling, so the second encoding loses next to
    nothing; PNG and lossless WEBP lose nothing. Blocking: run it in a thread."""
    value = orientation(data, fmt) or 1
    if value == 1:
        return data
    with Image.open(io.BytesIO(data)) as image:
        options: dict = {}
        if image.info.get("icc_profile"):
            options["icc_profile"] = image.info["icc_profile"]
        exif = image.getexif()
        exif.pop(_TAG, None)
        if fmt == "jpeg":
            options["qtables"] = image.quantization
            sampling = JpegImagePlugin.get_sampling(image)
            if sampling != -1:
                options["subsampling"] = sampling
        elif fmt == "webp":
            options |= {"lossless": True} if b"VP8L" in data[12:40] else {"quality": 95}
        turned = image.transpose(TRANSPOSE[value])
    out = io.BytesIO()
    turned.save(out, {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt], exif=exif, **options)
    return out.getvalue()


_MORE = object()  # a sentinel: the EXIF goes on past the bytes given


def _exif_of(data: bytes, fmt: str) -> object:
    """The EXIF's TIFF bytes, None when there is none, or _MORE."""
    if fmt == "jpeg":
        return _jpeg_exif(data)
    if fmt == "png":
        return _png_exif(data)
    if fmt == "webp":
        return _webp_exif(data)
    return None


def _jpeg_exif(data: bytes) -> object:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # the image data starts: EXIF comes before it or not at all
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xE1 and data[pos + 4 : pos + 10] == _EXIF_PREFIX:
            end = pos + 2 + length
            return data[pos + 10 : end] if end <= len(data) else _MORE
        pos += 2 + length
    return _MORE


def _png_exif(data: bytes) -> object:
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind in (b"IDAT", b"IEND"):
            return None  # only an eXIf before the image data counts (as browsers read it)
        if kind == b"eXIf":
            end = pos + 8 + length
            if end > len(data):
                return _MORE
            chunk = data[pos + 8 : end]
            return chunk[6:] if chunk.startswith(_EXIF_PREFIX) else chunk
        pos += 12 + length
    return _MORE


def _webp_exif(data: bytes) -> object:
    if data[12:16] != b"VP8X" or not data[20] & 0x08:  # no extended header, or no EXIF flag
        return None
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if kind == b"EXIF":
            end = pos + 8 + length
            if end > len(data):
                return _MORE
            chunk = data[pos + 8 : end]
            return chunk[6:] if chunk.startswith(_EXIF_PREFIX) else chunk
        pos += 8 + length + (length & 1)
    return _MORE


def _orientation_in_tiff(tiff: bytes) -> int:
    """Tag 0x0112 of IFD0 of a TIFF structure (EXIF's container); 1 when absent or invalid."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    try:
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
        for number in range(count):
            entry = ifd + 2 + 12 * number
            tag, kind = struct.unpack(order + "HH", tiff[entry : entry + 4])
            if tag == _TAG and kind == 3:  # SHORT
                (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
                return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1
