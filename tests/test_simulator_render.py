"""The simulated edit: the requested size and format, pixels under the opaque part of the mask
kept, the transparent part repainted in the prompt's colour, deterministic output."""

from __future__ import annotations

import base64
import io
import json

import aiohttp
import pytest
from PIL import Image
from simfixtures import decode, edit_form, image_bytes, mask_bytes, post_edit

from pipeline.simulator import running
from pipeline.simulator.render import PALETTE, prompt_colour


def noisy_png(size: tuple[int, int]) -> bytes:
    """Pixels that vary everywhere, so a kept pixel cannot match by chance."""
    width, height = size
    image = Image.new("RGB", size)
    rows = (
        ((x * 7) % 200, (y * 5) % 200, (x + y) % 200) for y in range(height) for x in range(width)
    )
    image.putdata(list(rows))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def edit(url: str, fields: dict, image: bytes, mask: bytes | None = None) -> Image.Image:
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_edit(session, url, edit_form(fields, [image], mask=mask))
    assert status == 200, body
    return decode(base64.b64decode(json.loads(body)["data"][0]["b64_json"]))


def pixels(image: Image.Image, box: tuple[int, int, int, int]) -> list:
    return list(image.crop(box).convert("RGB").get_flattened_data())


@pytest.mark.parametrize(
    ("model", "side"), [("gpt-image-2", 64), ("gpt-image-1", 1024)], ids=["64px", "1024px"]
)
async def test_the_mask_keeps_opaque_pixels_and_repaints_transparent_ones(model, side):
    source = noisy_png((side, side))
    half = side // 2
    fields = {"model": model, "size": f"{side}x{side}", "prompt": "a white wall"}
    async with running() as url:
        result = await edit(url, fields, source, mask_bytes((side, side), (0, 0, half, side)))
    original = decode(source)
    kept, repainted = (half, 0, side, side), (0, 0, half, side)
    assert pixels(result, kept) == pixels(original, kept)
    before, after = pixels(original, repainted), pixels(result, repainted)
    assert all(a != b for a, b in zip(before, after, strict=True))
    # Stripes of the prompt's colour and a second tone: a visible pattern, not noise.
    assert len(set(after)) == 2
    assert PALETTE["white"] in set(after)


async def test_scaled_up_the_kept_part_shows_only_input_pixels_and_the_hole_none():
    source = noisy_png((64, 64))
    fields = {"size": "1024x1024", "prompt": "black"}
    async with running() as url:
        result = await edit(url, fields, source, mask_bytes((64, 64), (0, 0, 32, 64)))
    input_kept, input_hole = (
        set(pixels(decode(source), (32, 0, 64, 64))),
        set(pixels(decode(source), (0, 0, 32, 64))),
    )
    assert result.size == (1024, 1024)
    assert set(pixels(result, (512, 0, 1024, 1024))) <= input_kept
    assert not set(pixels(result, (0, 0, 512, 1024))) & (input_kept | input_hole)


async def test_without_a_mask_the_whole_image_is_restyled():
    source = noisy_png((64, 64))
    async with running() as url:
        result = await edit(url, {"model": "gpt-image-2", "size": "64x64"}, source)
    before, after = pixels(decode(source), (0, 0, 64, 64)), pixels(result, (0, 0, 64, 64))
    changed = sum(a != b for a, b in zip(before, after, strict=True))
    assert changed / len(before) > 0.9


@pytest.mark.parametrize(
    ("fields", "fmt", "size"),
    [
        ({"size": "1024x1024", "output_format": "png"}, "PNG", (1024, 1024)),
        ({"size": "1536x1024", "output_format": "jpeg"}, "JPEG", (1536, 1024)),
        ({"size": "1024x1536", "output_format": "webp"}, "WEBP", (1024, 1536)),
        (
            {"model": "gpt-image-2", "size": "640x480", "output_compression": "10"},
            "PNG",
            (640, 480),
        ),
        (
            {
                "model": "gpt-image-2",
                "size": "480x640",
                "output_format": "jpeg",
                "output_compression": "5",
            },
            "JPEG",
            (480, 640),
        ),
    ],
)
async def test_the_output_has_the_requested_size_and_format(fields, fmt, size):
    async with running() as url:
        result = await edit(url, {"quality": "low", **fields}, image_bytes())
    assert (result.format, result.size) == (fmt, size)


@pytest.mark.parametrize(
    ("input_size", "expected"),
    [((64, 64), (1024, 1024)), ((300, 200), (1536, 1024)), ((200, 300), (1024, 1536))],
)
async def test_auto_size_is_the_supported_size_nearest_the_input_aspect(input_size, expected):
    async with running() as url:
        result = await edit(url, {"size": "auto"}, image_bytes(input_size))
    assert result.size == expected


async def test_a_transparent_background_gives_an_image_with_transparent_pixels():
    fields = {"model": "gpt-image-2", "size": "64x64", "background": "transparent"}
    async with running() as url:
        result = await edit(url, fields, image_bytes(), mask_bytes())
    assert result.mode == "RGBA"
    assert result.getchannel("A").getextrema()[0] == 0


async def test_the_same_request_gives_the_same_bytes_and_other_prompts_other_colours():
    fields = {"model": "gpt-image-2", "size": "64x64"}
    async with running() as url:
        first = await edit(
            url, {**fields, "prompt": "a quiet harbour"}, image_bytes(), mask_bytes()
        )
        again = await edit(
            url, {**fields, "prompt": "a quiet harbour"}, image_bytes(), mask_bytes()
        )
        other = await edit(url, {**fields, "prompt": "a busy market"}, image_bytes(), mask_bytes())
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


@pytest.mark.parametrize(
    ("prompt", "colour"),
    [
        ("Replace the background with a pure white studio backdrop", PALETTE["white"]),
        ("Put the SHOE on black velvet, then red", PALETTE["black"]),
        ("on marble", PALETTE["marble"]),
    ],
)
def test_the_first_colour_word_of_the_prompt_picks_the_fill(prompt, colour):
    assert prompt_colour(prompt) == colour


def test_a_prompt_without_colour_words_gets_a_stable_hashed_colour():
    assert prompt_colour("a calm scene") == prompt_colour("a calm scene")
    assert prompt_colour("a calm scene") not in PALETTE.values()
