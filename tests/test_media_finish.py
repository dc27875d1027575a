"""Strict compositing, drift and `size: input` on synthetic images: the pure image functions
of media/composite.py, media/drift.py and media/finish.py."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageChops

from pipeline.core.plan import Finish
from pipeline.media.composite import cover, edit_weight, keep_region
from pipeline.media.drift import drift
from pipeline.media.finish import TooMuchDrift, finish


def noise(size, seed, mode="RGB") -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * len(mode)))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def mask_png(size, box) -> bytes:
    """As sent: RGBA, transparent (edit) inside box, opaque (keep) elsewhere."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), box)
    return encoded(mask, "PNG")


def decoded(data: bytes, mode="RGB") -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert(mode)


def pixels_where(image: Image.Image, region) -> list:
    width = image.width
    data = image.get_flattened_data()
    return [data[y * width + x] for x, y in region]


SIZE = (96, 64)
BOX = (24, 16, 72, 48)  # the region to edit
FEATHER = 3


def inside(box, margin):
    left, top, right, bottom = box
    return [
        (x, y)
        for y in range(top + margin, bottom - margin)
        for x in range(left + margin, right - margin)
    ]


def outside(size, box):
    left, top, right, bottom = box
    return [
        (x, y)
        for y in range(size[1])
        for x in range(size[0])
        if not (left <= x < right and top <= y < bottom)
    ]


@pytest.mark.parametrize("answer_size", [SIZE, (64, 64), (192, 128)])
def test_strict_output_keeps_every_kept_pixel_and_takes_the_answer_inside(answer_size):
    source = noise(SIZE, 1)
    answer = noise(answer_size, 2)  # a model that repainted everything
    result = finish(
        Finish(mask_mode="strict", feather_px=FEATHER),
        encoded(source, "PNG"),
        mask_png(SIZE, BOX),
        [encoded(answer, "PNG")],
    )
    out = decoded(result.images[0])
    assert out.size == SIZE  # strict outputs have the input's size
    kept = outside(SIZE, BOX)
    assert pixels_where(out, kept) == pixels_where(source, kept)  # exactly, up to the edge
    scaled = answer.resize(SIZE, Image.Resampling.LANCZOS)
    deep = inside(BOX, FEATHER + 1)
    assert pixels_where(out, deep) == pixels_where(scaled, deep)
    assert result.drift is not None and result.drift > 0.2  # noise against noise: ~0.33


def test_the_feather_ramps_inside_the_mask_from_its_edge():
    keep = keep_region(decoded(mask_png(SIZE, BOX), "RGBA"))
    weight = edit_weight(keep, 4)
    row = [weight.getpixel((x, 32)) for x in range(20, 34)]
    assert row[:4] == [0, 0, 0, 0]  # kept pixels (x < 24) take nothing of the answer
    assert 0 < row[4] < row[6] < 255  # then a ramp...
    assert row[-1] == 255  # ...complete a feather's width in
    assert edit_weight(keep, 0).getpixel((24, 32)) == 255  # feather 0: a hard edge


def test_a_kept_pixel_in_a_concave_corner_is_never_blended():
    mask = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # all edit...
    mask.putpixel((10, 10), (0, 0, 0, 255))  # ...but one kept pixel
    weight = edit_weight(keep_region(mask), 3)
    assert weight.getpixel((10, 10)) == 0


@pytest.mark.parametrize(
    ("fmt", "options", "exact"),
    [("PNG", {}, True), ("WEBP", {"lossless": True}, True), ("JPEG", {"quality": 90}, False)],
)
def test_strict_works_for_each_output_format_and_several_images(fmt, options, exact):
    source = noise(SIZE, 3)
    answers = [encoded(noise(SIZE, seed), fmt, **options) for seed in (4, 5)]
    compression = None if exact else 90
    result = finish(
        Finish(mask_mode="strict"),
        encoded(source, "PNG"),
        mask_png(SIZE, BOX),
        answers,
        compression,
    )
    assert len(result.images) == 2
    kept = outside(SIZE, BOX)
    for data in result.images:
        assert data[:4] == answers[0][:4]  # the answer's format
        got = pixels_where(decoded(data), kept)
        want = pixels_where(source, kept)
        if exact:
            assert got == want
        else:  # JPEG: the composite is saved lossy, at full colour resolution
            error = sum(
                abs(a - b)
                for p, q in zip(got, want, strict=True)
                for a, b in zip(p, q, strict=True)
            )
            assert error / (3 * len(kept)) < 30


def test_strict_keeps_the_answers_transparency_and_the_inputs_pixels():
    source = noise(SIZE, 6)
    answer = Image.new("RGBA", SIZE, (10, 200, 10, 0))  # a transparent background
    result = finish(
        Finish(mask_mode="strict", feather_px=0),
        encoded(source, "PNG"),
        mask_png(SIZE, BOX),
        [encoded(answer, "PNG")],
    )
    out = decoded(result.images[0], "RGBA")
    assert out.getpixel((0, 0)) == (*source.getpixel((0, 0)), 255)
    assert out.getpixel((40, 30))[3] == 0


def test_drift_is_the_mean_absolute_difference_over_kept_pixels():
    source = Image.new("RGB", SIZE, (100, 100, 100))
    answer = Image.new("RGB", SIZE, (110, 100, 100))  # +10 in red everywhere...
    answer.paste((0, 0, 0), BOX)  # ...and the masked region repainted (does not count)
    keep = keep_region(decoded(mask_png(SIZE, BOX), "RGBA"))
    assert drift(source, answer, keep) == pytest.approx(10 / (3 * 255))
    assert drift(source, source, keep) == 0
    nothing_kept = Image.new("L", SIZE, 0)
    assert drift(source, answer, nothing_kept) is None


def test_max_drift_refuses_an_answer_that_changed_the_kept_region():
    source = noise(SIZE, 7)
    repainted = encoded(noise(SIZE, 8), "PNG")
    with pytest.raises(TooMuchDrift, match=r"drift\), more than output.max_drift 0.08"):
        finish(Finish(max_drift=0.08), encoded(source, "PNG"), mask_png(SIZE, BOX), [repainted])
    faithful = finish(
        Finish(max_drift=0.08),
        encoded(source, "PNG"),
        mask_png(SIZE, BOX),
        [encoded(source, "PNG")],
    )
    assert faithful.drift == 0
    assert faithful.images == [encoded(source, "PNG")]  # guide: the answer's bytes as they came


def test_without_a_mask_or_resizing_the_answer_is_untouched():
    answer = encoded(noise((16, 16), 9), "PNG")
    result = finish(Finish(mask_mode="strict"), encoded(noise(SIZE, 1), "PNG"), None, [answer])
    assert result.images == [answer] and result.drift is None


def test_size_input_covers_then_crops_the_centre():
    wide = Image.new("RGB", (200, 100), (255, 0, 0))
    wide.paste((0, 0, 255), (50, 0, 150, 100))  # a blue centre square
    covered = cover(wide, (50, 50))
    assert covered.size == (50, 50)
    assert all(blue > 200 and red < 50 for red, _, blue in covered.get_flattened_data())
    source = encoded(Image.new("RGB", (60, 30)), "PNG")
    answer = encoded(Image.new("RGB", (64, 64), (9, 9, 9)), "JPEG")
    out = finish(Finish(size="input"), source, None, [answer])
    image = decoded(out.images[0])
    assert image.size == (60, 30) and out.images[0][:3] == b"\xff\xd8\xff"
    assert ImageChops.difference(image, Image.new("RGB", (60, 30), (9, 9, 9))).getbbox() is None
