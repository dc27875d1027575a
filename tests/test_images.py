"""Image facts from headers (by bytes, never the name) and the mask conversion."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from pipeline.media.images import (
    BadImage,
    content_type,
    converted_mask_bound,
    image_info,
    mask_bytes,
    mask_is_thresholded,
    mask_sent_as_is,
    sniff_format,
)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def picture(mode: str, size=(40, 24)) -> Image.Image:
    """Not square, so a swapped width and height shows."""
    image = Image.new("RGB", size, (200, 120, 40)).convert(mode)
    if mode == "P":
        image.info["transparency"] = 0
    return image


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "png"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "jpeg"),
        (b"RIFF\x10\0\0\0WEBPVP8 ", "webp"),
        (b"RIFF\x10\0\0\0AVI LIST", None),
        (b"GIF89a\x01\0\x01\0", None),
        (b"just some text", None),
        (b"", None),
    ],
)
def test_sniff_format_reads_magic_bytes(head, fmt):
    assert sniff_format(head) == fmt


def test_content_types_are_the_real_ones():
    assert [content_type(f) for f in ("png", "jpeg", "webp")] == [
        "image/png",
        "image/jpeg",
        "image/webp",
    ]


CASES = [
    ("PNG", "RGB", {}),
    ("PNG", "RGBA", {}),
    ("PNG", "LA", {}),
    ("PNG", "L", {}),
    ("PNG", "P", {}),  # palette with a transparent index (tRNS)
    ("PNG", "I;16", {}),
    ("JPEG", "RGB", {}),
    ("JPEG", "RGB", {"progressive": True}),
    ("JPEG", "L", {}),
    ("JPEG", "CMYK", {}),
    ("WEBP", "RGB", {}),  # lossy: VP8
    ("WEBP", "RGB", {"lossless": True}),  # VP8L
    ("WEBP", "RGBA", {"lossless": True}),
    ("WEBP", "RGBA", {}),  # lossy with alpha: VP8X
    ("WEBP", "RGB", {"exif": b"Exif\0\0II*\0\x08\0\0\0\0\0"}),  # VP8X without alpha
]


@pytest.mark.parametrize(("fmt", "mode", "options"), CASES)
def test_image_info_agrees_with_pillow(tmp_path, fmt, mode, options):
    data = encoded(picture(mode), fmt, **options)
    path = write(tmp_path, "file.bin", data)
    info = image_info(path)
    with Image.open(path) as image:
        expected = (fmt.lower(), image.width, image.height, image.has_transparency_data)
    assert (info.format, info.width, info.height, info.has_alpha) == expected
    assert (info.width, info.height) == (40, 24)
    assert info.bytes == len(data)


def test_a_header_beyond_what_is_read_is_left_to_pillow(tmp_path):
    # A big ICC profile puts the JPEG frame header past the first 64 KB.
    data = encoded(picture("RGB"), "JPEG", icc_profile=os.urandom(150_000))
    info = image_info(write(tmp_path, "big-icc.jpg", data))
    assert (info.format, info.width, info.height) == ("jpeg", 40, 24)


def test_formats_come_from_bytes_not_names(tmp_path):
    info = image_info(write(tmp_path, "photo.png", encoded(picture("RGB"), "JPEG")))
    assert info.format == "jpeg"
    with pytest.raises(BadImage, match="is not a PNG, JPEG or WEBP image"):
        image_info(write(tmp_path, "notes.png", b"hello, this is text"))


def test_damaged_headers_are_bad_images(tmp_path):
    png = encoded(picture("RGB"), "PNG")
    with pytest.raises(BadImage, match="damaged"):
        image_info(write(tmp_path, "cut.png", png[:12]))
    with pytest.raises(BadImage, match="damaged"):
        image_info(write(tmp_path, "cut.jpg", b"\xff\xd8\xff\xe0\0\x10JFIF\0"))
    zero = bytearray(png)
    zero[16:20] = b"\0\0\0\0"  # width 0
    with pytest.raises(BadImage, match="damaged PNG"):
        image_info(write(tmp_path, "zero.png", bytes(zero)))


def test_a_header_claiming_billions_of_pixels_is_refused_unread(tmp_path):
    data = bytearray(encoded(picture("RGB"), "PNG"))
    data[16:24] = (60_000).to_bytes(4, "big") * 2
    with pytest.raises(BadImage, match="60000x60000 pixels, more than"):
        image_info(write(tmp_path, "bomb.png", bytes(data)))


@pytest.mark.parametrize("limit", [3000, 1000])  # Pillow warns above it, refuses above twice it
def test_pillows_decompression_bomb_warning_and_error_are_bad_images(tmp_path, monkeypatch, limit):
    data = encoded(picture("RGB", (64, 64)), "JPEG", icc_profile=os.urandom(150_000))
    path = write(tmp_path, "bomb.jpg", data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(BadImage, match="too large to decode safely"):
        image_info(path)


def test_a_png_with_an_alpha_channel_is_sent_as_it_is(tmp_path):
    for mode in ("RGBA", "LA"):
        data = encoded(picture(mode), "PNG")
        path = write(tmp_path, f"{mode}.png", data)
        assert mask_sent_as_is(path)
        assert mask_bytes(path) == data


def alpha_of(data: bytes) -> list[int]:
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.mode) == ("PNG", "RGBA")
        assert image.getextrema()[:3] == ((0, 0), (0, 0), (0, 0))  # black
        return list(image.getchannel("A").tobytes())


def test_a_black_and_white_mask_becomes_white_transparent_black_opaque(tmp_path):
    mask = Image.new("L", (4, 1))
    mask.putdata([255, 0, 128, 127])  # light edits, dark keeps; 128 is light
    for name, fmt in (("bw.png", "PNG"), ("bw.jpg", "JPEG")):
        path = write(
            tmp_path, name, encoded(mask, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
        )
        assert not mask_sent_as_is(path)
        assert alpha_of(mask_bytes(path)) == [0, 255, 0, 255]


def test_a_one_bit_mask_is_converted(tmp_path):
    mask = Image.new("1", (2, 1))
    mask.putdata([1, 0])
    assert alpha_of(mask_bytes(write(tmp_path, "one-bit.png", encoded(mask, "PNG")))) == [0, 255]


def test_a_mask_with_transparency_but_no_alpha_channel_keeps_its_transparency(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 255, 255, 0, 0, 0])
    palette.putdata([0, 1])  # index 0 is white but transparent: transparency wins
    data = encoded(palette, "PNG", transparency=0)
    assert alpha_of(mask_bytes(write(tmp_path, "palette.png", data))) == [0, 255]
    webp = encoded(Image.new("RGBA", (2, 1), (255, 255, 255, 0)), "WEBP", lossless=True)
    assert alpha_of(mask_bytes(write(tmp_path, "mask.webp", webp))) == [0, 0]


def test_converted_mask_bounds_hold_for_noise(tmp_path):
    for side in (16, 100, 300):
        noise = Image.frombytes("L", (side, side), os.urandom(side * side))
        path = write(tmp_path, f"noise{side}.png", encoded(noise, "PNG"))
        assert mask_is_thresholded(image_info(path))
        assert len(mask_bytes(path)) <= converted_mask_bound(side, side, thresholded=True)
        see_through = noise.convert("RGBA")
        see_through.putalpha(noise)
        path = write(tmp_path, f"noise{side}.webp", encoded(see_through, "WEBP", lossless=True))
        assert not mask_is_thresholded(image_info(path))
        assert len(mask_bytes(path)) <= converted_mask_bound(side, side, thresholded=False)


def test_a_thresholded_1024_mask_fits_by_its_size_alone():
    assert converted_mask_bound(1024, 1024, thresholded=True) < 4 * 2**20
    assert converted_mask_bound(1024, 1024, thresholded=False) > 4 * 2**20
