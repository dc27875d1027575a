"""A misbehaving edit for the "strict mask" feature: `outside_drift` changes the pixels the
mask keeps by a measured amount, and the `repaint` token repaints everything."""

from __future__ import annotations

import base64
import io
import json
import random

import aiohttp
import pytest
from PIL import Image
from simfixtures import decode, edit_form, mask_bytes, post_edit

from pipeline.simulator import SimConfig, running
from pipeline.simulator.render import drift_table

SIDE = 64
KEPT = (SIDE // 2, 0, SIDE, SIDE)  # the mask's opaque right half
HOLE = (0, 0, SIDE // 2, SIDE)


def random_png(seed: int = 0) -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", (SIDE, SIDE))
    image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(SIDE * SIDE)])
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


SOURCE = random_png()


async def edited(config: SimConfig, prompt: str = "a white wall") -> Image.Image:
    fields = {"model": "gpt-image-2", "size": f"{SIDE}x{SIDE}", "prompt": prompt}
    form = edit_form(fields, [SOURCE], mask=mask_bytes((SIDE, SIDE), HOLE))
    async with running(config) as url, aiohttp.ClientSession() as session:
        status, _, body = await post_edit(session, url, form)
    assert status == 200, body
    return decode(base64.b64decode(json.loads(body)["data"][0]["b64_json"])).convert("RGB")


def mean_abs_diff(a: Image.Image, b: Image.Image, box) -> float:
    left, right = a.crop(box).tobytes(), b.crop(box).tobytes()
    return sum(abs(x - y) for x, y in zip(left, right, strict=True)) / (255 * len(left))


@pytest.mark.parametrize("drift", [0.0, 0.02, 0.05, 0.2, 0.5])
async def test_the_kept_pixels_drift_by_about_the_configured_amount(drift):
    result = await edited(SimConfig(outside_drift=drift))
    measured = mean_abs_diff(result, decode(SOURCE).convert("RGB"), KEPT)
    assert measured == pytest.approx(drift, abs=0.5 / 255 + 1e-9)


async def test_a_large_drift_moves_the_kept_pixels_as_far_as_the_range_allows():
    measured = mean_abs_diff(
        await edited(SimConfig(outside_drift=0.8)), decode(SOURCE).convert("RGB"), KEPT
    )
    assert 0.6 < measured <= 0.8 + 1 / 255


async def test_a_full_drift_and_the_repaint_token_repaint_everything():
    for result in (
        await edited(SimConfig(outside_drift=1.0)),
        await edited(SimConfig(), prompt="a white wall [sim:repaint]"),
    ):
        colours = set(result.get_flattened_data())
        assert len(colours) == 2  # the stripes of the prompt's colour, kept half included
        assert result.crop(KEPT).tobytes() != decode(SOURCE).convert("RGB").crop(KEPT).tobytes()


async def test_the_hole_is_repainted_as_without_drift():
    plain, drifted = await edited(SimConfig()), await edited(SimConfig(outside_drift=0.3))
    assert plain.crop(HOLE).tobytes() == drifted.crop(HOLE).tobytes()


@pytest.mark.parametrize("drift", [0.01, 0.05, 0.25, 0.5])
def test_the_drift_table_moves_every_value_by_the_same_step(drift):
    table = drift_table(drift)
    step = round(drift * 255)
    assert all(abs(table[v] - v) == step for v in range(256))
    assert all(0 <= value <= 255 for value in table)


def test_the_outside_drift_is_a_fraction():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="outside_drift"):
            SimConfig(outside_drift=bad)
