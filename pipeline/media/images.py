"""Facts about input images, read from their bytes (never their extension), and the mask to send.

Width, height and alpha come from the file's header alone (Pillow only when the header is
unusual), so validating 100,000 inputs stays quick. A mask without an alpha channel is
converted: light pixels (luminance 128 or more) mean "edit here" and become fully transparent,
dark ones mean "keep" and become fully opaque. The threshold is deliberate: the API edits only
fully transparent pixels, so a half-transparent grey would silently mean "keep".
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.core.fingerprint import NotRegularFile, open_regular
from pipeline.media.orient import orientation, swaps_sides

# Enough for the headers of nearly every file; a longer one (big EXIF, ICC) goes to Pillow.
HEAD_BYTES = 64 * 1024
_PNG = b"\x89PNG\r\n\x1a\n"
_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_LIGHT_IS_EDIT = [255] * 128 + [0] * 128  # luminance -> alpha
_REEXPORT = "open and save it again in an image editor"


class BadImage(ValueError):
    """The file is not an image editbatch can send; the message says why, `fix` what to do."""

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # "png" | "jpeg" | "webp", by the bytes
    width: int
    height: int
    has_alpha: bool  # an alpha channel or transparency (a PNG tRNS chunk)
    bytes: int  # the file's size
    orientation: int = 1  # EXIF Orientation: 1 is upright; others are turned before sending

    @property
    def upright_size(self) -> tuple[int, int]:
        """Width and height as sent (after turning it upright): what a mask must match."""
        if swaps_sides(self.orientation):
            return self.height, self.width
        return self.width, self.height


def sniff_format(head: bytes) -> str | None:
    """The image format by its magic bytes (the first 12 are enough), or None."""
    if head.startswith(_PNG):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def content_type(fmt: str) -> str:
    return _CONTENT_TYPES[fmt]


def image_info(path: str | Path) -> ImageInfo:
    """Format, size and alpha of an image from its header. Raises OSError when the file cannot
    be read, BadImage when it is not a usable PNG, JPEG or WEBP."""
    try:
        fd = open_regular(path)  # not open(): no buffered file object, a third faster
    except NotRegularFile as exc:
        raise BadImage("is " + str(exc).rpartition(" is ")[2], "name an image file") from None
    try:
        size = os.fstat(fd).st_size
        head = os.read(fd, HEAD_BYTES)
    finally:
        os.close(fd)
    fmt = sniff_format(head)
    if fmt is None:
        raise BadImage(
            "is not a PNG, JPEG or WEBP image (judged by its first bytes, not its name)",
            "convert it to PNG, JPEG or WEBP",
        )
    facts = _HEADER_READERS[fmt](head) or _pillow_header(path, fmt)
    width, height, has_alpha = facts
    if width <= 0 or height <= 0:
        raise BadImage(f"is a damaged {fmt.upper()}: its header says {width}x{height}")
    refuse_bombs(width, height)
    turn = orientation(head, fmt)
    if turn is None:  # the EXIF goes on past the header bytes (rare): read it all
        with open(path, "rb") as f:
            turn = orientation(f.read(), fmt) or 1
    return ImageInfo(fmt, width, height, has_alpha, size, turn)


def mask_sent_as_is(path: str | Path) -> bool:
    """True for a PNG with a real alpha channel (grey+alpha or RGBA), which is sent unchanged."""
    with open(path, "rb") as f:
        return has_alpha_channel(f.read(26))


def has_alpha_channel(head: bytes) -> bool:
    """Whether a file's first 26 bytes are those of a PNG with a real alpha channel."""
    return head.startswith(_PNG) and head[12:16] == b"IHDR" and head[25] in (4, 6)


def converted_mask_bound(width: int, height: int, *, thresholded: bool) -> int:
    """Most bytes a converted mask (8-bit RGBA PNG) takes, from its size alone.

    A mask that keeps its own transparency can be anything: zlib grows data by at most about
    0.05%, PNG adds a few dozen bytes per chunk. A thresholded one is black with a 0-or-255
    alpha: even pure noise compresses to under 8% of its raw size (measured up to 1536x1536),
    so a quarter bounds it with room to spare, and a 1024x1024 mask need not be converted to
    know it fits the API's 4 MB.
    """
    raw = height * (1 + 4 * width)
    return (raw // 4 if thresholded else raw + raw // 1000) + 1024


def mask_is_thresholded(info: ImageInfo) -> bool:
    """Whether mask_bytes makes the alpha from light and dark (no transparency of its own)."""
    return not info.has_alpha


def mask_bytes(path: str | Path) -> bytes:
    """The PNG to send as the mask: the file as it is when it is a PNG with an alpha channel,
    else an RGBA PNG (black, alpha from the mask's transparency, or light = edit if it has
    none). Blocking: run it in a thread from async code."""
    info = image_info(path)  # refuses non-images and decompression bombs before decoding
    data = Path(path).read_bytes()
    if has_alpha_channel(data[:26]):
        return data
    with _pillow_open(io.BytesIO(data)) as image:
        try:
            if mask_is_thresholded(info):
                alpha = image.convert("L").point(_LIGHT_IS_EDIT)
            else:
                alpha = image.convert("RGBA").getchannel("A")
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadImage(f"is a damaged image: {exc}", _REEXPORT) from None
    black = Image.new("L", alpha.size, 0)
    out = io.BytesIO()
    Image.merge("RGBA", (black, black, black, alpha)).save(out, "PNG")
    return out.getvalue()


def mask_edit_pixels(path: str | Path) -> tuple[int, int]:
    """(pixels the mask marks to edit, all its pixels), read as mask_bytes would send it:
    alpha 0 is edit; without alpha, light is edit. Blocking: decodes the mask."""
    info = image_info(path)
    with _pillow_open(path, info.format) as image:
        try:
            if mask_is_thresholded(info):
                histogram = image.convert("L").histogram()
                edit = sum(histogram[128:])
            else:
                alpha = image if image.mode in ("RGBA", "LA") else image.convert("RGBA")
                edit = alpha.getchannel("A").histogram()[0]
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadImage(f"is a damaged image: {exc}", _REEXPORT) from None
    return edit, info.width * info.height


def _png_header(head: bytes) -> tuple[int, int, bool] | None:
    if head[12:16] != b"IHDR" or len(head) < 33:
        return None
    width, height = struct.unpack(">II", head[16:24])
    if head[25] in (4, 6):  # colour types with an alpha channel
        return width, height, True
    # Others may carry transparency in a tRNS chunk, which must come before the image data.
    pos = 33
    while pos + 8 <= len(head):
        length, kind = struct.unpack(">I4s", head[pos : pos + 8])
        if kind == b"tRNS":
            return width, height, True
        if kind in (b"IDAT", b"IEND"):
            return width, height, False
        pos += 12 + length
    return None


def _jpeg_header(head: bytes) -> tuple[int, int, bool] | None:
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in _SOF_MARKERS:
            if pos + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return width, height, False
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        pos += 2 + int.from_bytes(head[pos + 2 : pos + 4], "big")
    return None


def _webp_header(head: bytes) -> tuple[int, int, bool] | None:
    kind = head[12:16]
    if kind == b"VP8X" and len(head) >= 30:
        width = 1 + int.from_bytes(head[24:27], "little")
        height = 1 + int.from_bytes(head[27:30], "little")
        return width, height, bool(head[20] & 0x10)
    if kind == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF), bool(bits >> 28 & 1)
    if kind == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF, False
    return None


_HEADER_READERS = {"png": _png_header, "jpeg": _jpeg_header, "webp": _webp_header}


def dimensions(data: bytes, fmt: str) -> tuple[int, int]:
    """Width and height of an image held in memory: from its header when it says (no Pillow
    object built per request), else as Pillow reads it."""
    facts = _HEADER_READERS[fmt](data[:HEAD_BYTES])
    if facts is not None:
        return facts[0], facts[1]
    with _pillow_open(io.BytesIO(data), fmt) as image:
        return image.size


def _pillow_header(path: str | Path, fmt: str) -> tuple[int, int, bool]:
    with _pillow_open(path, fmt) as image:
        return image.width, image.height, image.has_transparency_data


def _pillow_open(source, fmt: str | None = None) -> Image.Image:
    """Image.open with decompression bombs and damaged files turned into BadImage."""
    formats = [_PILLOW_FORMATS[fmt]] if fmt else list(_PILLOW_FORMATS.values())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source, formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"is too large to decode safely: {exc}", "resize it") from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise BadImage(f"is a damaged image: {exc}", _REEXPORT) from None
    try:
        refuse_bombs(image.width, image.height)
    except BadImage:
        image.close()
        raise
    return image


def refuse_bombs(width: int, height: int) -> None:
    """BadImage when width x height is more than Pillow decodes safely (its warning limit)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise BadImage(
            f"has {width}x{height} pixels, more than the {limit:,} Pillow decodes safely "
            "(a decompression bomb, or simply too large)",
            "resize it",
        )
