"""A 2xx answer's images: the JSON body parsed, base64 decoded, each image checked whole and
within Pillow's decompression-bomb limit. Pure and blocking (run in a thread); an unusable
answer raises a RetryableError that carries the usage the answer had, if any.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
import warnings
import zlib

from PIL import Image

from pipeline.api.answers import one_line
from pipeline.core.errors import RetryableError
from pipeline.media.images import BadImage, refuse_bombs, sniff_format


def unusable(what: str) -> RetryableError:
    # A 2xx body we cannot use is retried like a 5xx (cause bad_response: no transport error).
    return RetryableError(f"unusable response: {what}")


def _decode_b64(text: str) -> bytes:
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if not head.endswith(";base64"):
            raise unusable(f"a data: URL that is not base64 ({one_line(head, 60)})")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise unusable(f"b64_json is not valid base64 ({exc})") from None


def parse_success(body: bytes, expected_n: int | None) -> tuple[list[bytes | str], object]:
    """The decoded images (or URLs still to download) and the usage of a 2xx body.

    Fewer images than asked for are kept (asking again would pay for all n again); more are
    cut to the n asked for. An unusable body raises a RetryableError carrying the usage it
    had (the provider billed it), None when none could be read.
    """
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise unusable(f"the body is not JSON ({one_line(str(exc), 120)})") from None
    return read_answer(doc, expected_n)


def read_answer(doc: object, expected_n: int | None) -> tuple[list[bytes | str], object]:
    """parse_success over a body already parsed (a batch's output line carries it so)."""
    usage = doc.get("usage") if isinstance(doc, dict) else None
    try:
        return _entries(doc, expected_n), usage
    except RetryableError as exc:
        exc.usage = usage
        raise


def _entries(doc: object, expected_n: int | None) -> list[bytes | str]:
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not data:
        raise unusable("the body has no `data` list of images")
    if expected_n is not None and len(data) > expected_n:
        data = data[:expected_n]
    entries: list[bytes | str] = []
    for index, entry in enumerate(data):
        b64 = entry.get("b64_json") if isinstance(entry, dict) else None
        url = entry.get("url") if isinstance(entry, dict) else None
        if isinstance(b64, str) and b64:
            entries.append(_decode_b64(b64))
        elif isinstance(url, str) and url.startswith("data:"):
            entries.append(_decode_b64(url))
        elif isinstance(url, str) and url.startswith(("http://", "https://")):
            entries.append(url)
        else:
            raise unusable(f"data[{index}] has neither b64_json nor an http(s) url")
    return entries


def verify_images(images: list[bytes]) -> str:
    """Check each image is whole (blocking: run in a thread); the first one's format.

    Structural checks, not a full decode, so a 4 MB image costs a checksum pass rather than a
    decompression: the header must parse, a PNG's chunk checksums must hold up to IEND, a JPEG
    must end with its EOI marker, a WEBP's RIFF size must match its length. An image with more
    pixels than Pillow decodes safely is refused, as an input would be: nothing downstream
    (the report's thumbnails, a user's viewer) should have to decode it.
    """
    kinds = []
    for index, data in enumerate(images):
        kind = sniff_format(data)
        if kind is None:
            raise unusable(f"image {index} is not PNG, JPEG or WEBP (starts {data[:8]!r})")
        try:
            if kind == "png":
                refuse_bombs(*_png_checked(data))
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(io.BytesIO(data), formats=[kind.upper()]) as img:
                        refuse_bombs(img.width, img.height)
                        img.verify()
                _check_end(kind, data)
        except (BadImage, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise unusable(f"image {index} ({kind}) {one_line(str(exc), 160)}") from None
        except Exception as exc:  # Pillow raises many types for bad data; all mean "unusable"
            raise unusable(
                f"image {index} ({kind}) is not whole: {one_line(str(exc), 120)}"
            ) from None
        kinds.append(kind)
    return kinds[0]


def _png_checked(data: bytes) -> tuple[int, int]:
    """A PNG's width and height once every chunk's CRC holds up to IEND: what Pillow's verify
    checks, in one pass of zlib's crc32 and no image object (this runs for every answer)."""
    if data[12:16] != b"IHDR" or len(data) < 33:
        raise ValueError("its first chunk is not IHDR")
    width, height = struct.unpack(">II", data[16:24])
    view, pos, end = memoryview(data), 8, len(data)
    while True:
        if pos + 12 > end:
            raise ValueError("it is cut short before its IEND chunk")
        length = int.from_bytes(view[pos : pos + 4], "big")
        kind = bytes(view[pos + 4 : pos + 8])
        crc_at = pos + 8 + length
        if crc_at + 4 > end:
            raise ValueError(f"its {kind!r} chunk is cut short")
        if zlib.crc32(view[pos + 4 : crc_at]) != int.from_bytes(view[crc_at : crc_at + 4], "big"):
            raise ValueError(f"its {kind!r} chunk fails its CRC")
        if kind == b"IEND":
            return width, height
        pos = crc_at + 4


def _check_end(kind: str, data: bytes) -> None:
    if kind == "jpeg" and b"\xff\xd9" not in data[-64:]:
        raise ValueError("no end-of-image marker: the JPEG is cut short")
    if kind == "webp" and int.from_bytes(data[4:8], "little") + 8 > len(data):
        raise ValueError("shorter than its RIFF header says: the WEBP is cut short")
