"""Putting the input's own pixels back where the mask keeps them (`mask_mode: strict`), and
bringing an answer to the input's size (`size: input`).

The model treats a mask as guidance and repaints kept pixels too. Strict compositing undoes
that: the answer is scaled to the input's width and height (the whole frame: the input was
sent whole, so a relative position in the answer is the same position in the input), then
every kept pixel is the input's, exactly, and the masked region is the answer's. The blend
runs over `feather_px` pixels *inside* the masked region, from the edge inwards, so not one
kept pixel is touched and the seam does not show. Pillow only: every step here is a C loop
over the image (resample, blur, point, composite), about 0.6 s together for a 4000x3000 photo;
numpy would not help, the rest of a finish is the output's encoding (bench/finishing.py).
"""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageFilter, ImageOps

RESAMPLE = Image.Resampling.LANCZOS
_KEEP_LUT = [0] + [255] * 255  # alpha -> keep: any opacity keeps (the API edits only alpha 0)
# A blurred edit region is about half strength at its edge: stretch [128, 255] to [0, 255],
# so the blend starts at 0 at the edge and is complete feather_px pixels in.
_RAMP_LUT = [max(0, min(255, 2 * v - 255)) for v in range(256)]
_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
# zlib level of PNG outputs. Pillow's default (6) spends 5 s on a 12 MP photo; 3 takes 1.5 s for
# files 5-15% larger on photos (bench/finishing.py). The pixel work itself is ~0.6 s.
PNG_LEVEL = 3


def in_mode(image: Image.Image, mode: str) -> Image.Image:
    """The image decoded in `mode`: itself when it is in that mode already (convert copies)."""
    if image.mode == mode:
        image.load()
        return image
    return image.convert(mode)


def keep_region(mask: Image.Image) -> Image.Image:
    """An L image: 255 where the mask (as sent: alpha = keep) keeps the input, 0 where the
    model may edit."""
    return mask.convert("RGBA").getchannel("A").point(_KEEP_LUT)


def edit_weight(keep: Image.Image, feather_px: float) -> Image.Image:
    """How much of the answer each pixel takes (L, 0-255): 0 on every kept pixel, 255 in the
    masked region from feather_px pixels past its edge on, a ramp in between."""
    edit = ImageChops.invert(keep)
    if feather_px <= 0:
        return edit
    soft = edit.filter(ImageFilter.BoxBlur(feather_px)).point(_RAMP_LUT)
    return ImageChops.darker(soft, edit)  # a kept pixel stays 0 even in a concave corner


def stretch_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The whole image scaled to exactly `size` (what strict compositing lines up against)."""
    return image if image.size == size else image.resize(size, RESAMPLE)


def cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scaled to cover `size` (keeping its aspect), then the centre cut out: `size: input`."""
    return (
        image if image.size == size else ImageOps.fit(image, size, RESAMPLE, centering=(0.5, 0.5))
    )


def strict(
    source: Image.Image, answer: Image.Image, keep: Image.Image, feather_px: float
) -> Image.Image:
    """The answer (already at the source's size) with the source's pixels wherever `keep`
    keeps them; both in the same mode."""
    return Image.composite(answer, source, edit_weight(keep, feather_px))


def work_mode(source: Image.Image, answer: Image.Image, fmt: str) -> str:
    """RGBA when the output can carry transparency and either image has some, else RGB."""
    if fmt == "jpeg":
        return "RGB"
    return "RGBA" if answer.has_transparency_data or source.has_transparency_data else "RGB"


def encode(image: Image.Image, fmt: str, compression: int | None) -> bytes:
    """The final file in the format the answer came in. JPEG keeps full colour resolution
    (4:4:4) at the request's output_compression, else quality 95; WEBP is lossless unless
    output_compression asks for a quality; PNG is lossless (zlib level PNG_LEVEL)."""
    out = io.BytesIO()
    options: dict = {}
    if fmt == "jpeg":
        options = {"quality": min(95, compression or 95), "subsampling": 0}
        image = image.convert("RGB")
    elif fmt == "webp":
        options = {"lossless": True} if compression is None else {"quality": compression}
    else:
        options = {"compress_level": PNG_LEVEL}
    image.save(out, _FORMATS[fmt], **options)
    return out.getvalue()
