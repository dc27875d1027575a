"""The simulated edit: deterministic, visible at a glance, and true to the mask.

Where the mask is opaque the output keeps the first image's pixels (scaled to the output
size); where it is transparent it is repainted with diagonal stripes in the prompt's colour
(the first colour word in the prompt, else a colour hashed from the prompt). Without a mask
the whole image is restyled: posterized and tinted towards that colour. A generation (no
image) is the stripes alone; `repaint` stripes the whole image, mask or not.

A misbehaving model (`SimConfig.outside_drift` = X) also changes the pixels the mask keeps:
each of their R, G, B values moves by round(255 X) up, or down when up would leave 0..255,
or to the far end when neither fits. The mean absolute difference over the kept pixels' RGB
(0..1 scale) is then X up to the 8-bit rounding for X <= 0.5, and as near X as the range
allows above; X = 1 repaints everything, as `repaint` does. `render` is blocking (run it in
a thread); renders are cached by the app, since benchmarks repeat inputs.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import re
from collections import OrderedDict
from functools import lru_cache

from PIL import Image, ImageDraw, ImageOps

from pipeline.simulator.answer import InvalidRequest

MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
PALETTE = {
    "white": (250, 250, 248),
    "black": (18, 18, 20),
    "red": (210, 40, 40),
    "green": (40, 160, 70),
    "blue": (40, 90, 210),
    "yellow": (240, 210, 40),
    "orange": (240, 140, 30),
    "purple": (130, 60, 180),
    "pink": (240, 130, 180),
    "brown": (120, 80, 40),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "gold": (212, 175, 55),
    "silver": (192, 192, 200),
    "beige": (225, 210, 180),
    "teal": (0, 128, 128),
    "marble": (232, 230, 225),
    "wood": (150, 100, 55),
}
STRIPES_PER_SIDE = 16  # stripe period: the short side over this
TINT = 0.4  # how far the restyle moves each pixel towards the prompt colour
PNG_LEVEL = 1  # fast deflate: the simulator must never be a benchmark's bottleneck


def prompt_colour(prompt: str) -> tuple[int, int, int]:
    """The first colour word of the prompt, else a saturated colour hashed from the prompt."""
    for word in re.findall(r"[a-z]+", prompt.lower()):
        if word in PALETTE:
            return PALETTE[word]
    hue = hashlib.sha256(prompt.encode("utf-8")).digest()[0] / 256
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.65, 0.9)
    return round(red * 255), round(green * 255), round(blue * 255)


def _shade(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """A second tone for the stripes: darker on light colours, lighter on dark ones."""
    if sum(colour) > 3 * 128:
        return tuple(round(c * 0.72) for c in colour)  # type: ignore[return-value]
    return tuple(round(c + (255 - c) * 0.45) for c in colour)  # type: ignore[return-value]


@lru_cache(maxsize=16)
def _stripes(width: int, height: int) -> Image.Image:
    """An L-mode mask of diagonal bands; callers only read it."""
    period = max(4, min(width, height) // STRIPES_PER_SIDE)
    band = period // 2
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for left in range(-height, width, period):
        draw.polygon(
            [(left, 0), (left + band, 0), (left + band + height, height), (left + height, height)],
            fill=255,
        )
    return mask


@lru_cache(maxsize=32)
def _fill(width: int, height: int, colour: tuple[int, int, int], mode: str) -> Image.Image:
    """The repaint: stripes of colour and its shade; in RGBA the gaps are transparent.
    Callers only read it."""
    stripes = _stripes(width, height)
    if mode == "RGBA":
        fill = Image.new("RGBA", (width, height), (*colour, 0))
        fill.paste((*_shade(colour), 255), mask=stripes)
        return fill
    fill = Image.new("RGB", (width, height), colour)
    fill.paste(_shade(colour), mask=stripes)
    return fill


@lru_cache(maxsize=8)
def drift_table(amount: float) -> tuple[int, ...]:
    """The 0..255 lookup of one channel under a drift of `amount` (see the docstring)."""
    step = round(amount * 255)
    table = []
    for value in range(256):
        if value + step <= 255:
            table.append(value + step)
        elif value - step >= 0:
            table.append(value - step)
        else:
            table.append(255 if value < 128 else 0)
    return tuple(table)


def _drifted(image: Image.Image, amount: float) -> Image.Image:
    if amount <= 0:
        return image
    table = list(drift_table(amount))
    alpha = list(range(256)) if image.mode == "RGBA" else []
    return image.point(table * 3 + alpha)


def render(
    image: bytes | None,
    mask: bytes | None,
    prompt: str,
    size: tuple[int, int],
    output_format: str,
    background: str,
    compression: int | None,
    *,
    repaint: bool = False,
    drift: float = 0.0,
) -> bytes:
    """The edited (or, without an image, generated) image's file bytes, `size` pixels, in
    `output_format`."""
    mode = "RGBA" if background == "transparent" and output_format != "jpeg" else "RGB"
    colour = prompt_colour(prompt)
    if image is None:
        return encode(_fill(*size, colour, mode), output_format, compression)
    base = _decode(image, mode, size)
    # Edit at the smaller of the input's and the output's resolution, then scale once: the
    # mask has the input's size, and a nearest-neighbour upscale keeps the encoding cheap.
    work = base.size if base.width * base.height <= size[0] * size[1] else size
    if base.size != work:
        base = base.resize(work, Image.Resampling.BILINEAR)
    if repaint or drift >= 1:
        edited = _fill(*work, colour, mode)
    elif mask is None:
        edited = Image.blend(
            ImageOps.posterize(base.convert("RGB"), 3), Image.new("RGB", work, colour), TINT
        )
        if mode == "RGBA":
            edited.putalpha(base.getchannel("A"))  # the restyle keeps the input's transparency
    else:
        with Image.open(io.BytesIO(mask)) as mask_image:
            keep = mask_image.convert("RGBA").getchannel("A")
        if keep.size != work:
            keep = keep.resize(work, Image.Resampling.NEAREST)
        edited = Image.composite(_drifted(base, drift), _fill(*work, colour, mode), keep)
    if edited.size != size:
        edited = edited.resize(size, Image.Resampling.NEAREST)
    return encode(edited, output_format, compression)


def _decode(image: bytes, mode: str, size: tuple[int, int]) -> Image.Image:
    try:
        with Image.open(io.BytesIO(image)) as source:
            source.draft("RGB", size)  # a large JPEG decodes straight at a reduced scale
            return source.convert(mode)
    except (OSError, SyntaxError, ValueError):
        raise InvalidRequest(
            "Invalid image file or mode for image 1: it could not be decoded; please check "
            "your image file.",
            param="image",
            code="invalid_image_format",
        ) from None


def encode(image: Image.Image, output_format: str, compression: int | None) -> bytes:
    out = io.BytesIO()
    if output_format == "png":
        image.save(out, "PNG", compress_level=PNG_LEVEL)
    elif output_format == "jpeg":
        quality = 90 if compression is None else min(95, max(1, compression))
        image.convert("RGB").save(out, "JPEG", quality=quality)
    else:
        quality = 80 if compression is None else compression
        image.save(out, "WEBP", quality=quality, method=0)
    return out.getvalue()


class ByteBudgetCache:
    """Least recently used strings or bytes, held within a total size."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[object, str | bytes] = OrderedDict()
        self._size = 0

    def get(self, key: object) -> str | bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: object, value: str | bytes) -> None:
        if key in self._items:
            self._size -= len(self._items.pop(key))
        self._items[key] = value
        self._size += len(value)
        while self._size > self.max_bytes and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped)
