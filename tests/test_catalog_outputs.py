"""Catalog outputs end to end (CONTRACT section 9), against a small provider on loopback that
misbehaves the way users report: it repaints every pixel, the kept ones too.

Strict outputs keep the input's pixels, drift is recorded and `max_drift` fails the item after
its attempts, photos with an EXIF rotation are sent upright, masks that mark nothing are refused
before anything is sent, and the cross-run cache answers a second job for free.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import re
import time
from dataclasses import replace

import pytest
from aiohttp import web
from helpers import read_ledger_lines, write_manifest
from PIL import Image

from pipeline.cache.store import AnswerCache
from pipeline.cli.main import main
from pipeline.core.errors import ManifestError
from pipeline.core.fingerprint import item_key
from pipeline.core.plan import Item
from pipeline.engine.runner import RunOptions, run
from pipeline.manifest.load import load_plan
from pipeline.report.aggregate import load_sources, summarize
from pipeline.report.html import write_html
from pipeline.report.text import render_text
from pipeline.simulator import SimConfig

USAGE = {
    "input_tokens": 300,
    "input_tokens_details": {"text_tokens": 20, "image_tokens": 280},
    "output_tokens": 272,
    "total_tokens": 572,
}
PAINT = (20, 180, 60)
SIZE = (96, 64)
BOX = (24, 16, 72, 48)  # where the mask says to edit


class Repainter:
    """A provider that returns a 1024x1024 image of one colour, whatever it was asked: the
    mask's kept region is repainted too. Keeps what it received."""

    def __init__(self) -> None:
        self.images: list[bytes] = []
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        form = await request.post()
        part = form.get("image") or form.get("image[]")
        self.images.append(part.file.read())
        n = int(form.get("n", 1))
        out = io.BytesIO()
        Image.new("RGB", (1024, 1024), PAINT).save(out, "PNG")
        data = [{"b64_json": base64.b64encode(out.getvalue()).decode()}] * n
        return web.json_response({"created": 1, "data": data, "usage": USAGE})


@pytest.fixture
async def provider():
    repainter = Repainter()
    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/v1/images/edits", repainter.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    repainter.base_url = f"http://{host}:{port}/v1"
    yield repainter
    await runner.cleanup()


def options(provider, **more) -> RunOptions:  # the repainting provider, or the simulator
    return RunOptions(
        base_url=provider.base_url, api_key="sk-test", backoff_base_s=0.001, seed=1, **more
    )


def photo(path, size=SIZE, seed=1, fmt="PNG", **save):
    rng = random.Random(seed)
    image = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **save)
    return image


def mask(path, size=SIZE, box=BOX, keep_all=False):
    image = Image.new("L", size, 0)  # black: keep
    if not keep_all:
        image.paste(255, box)  # white: edit
    image.save(path)


def strict_job(folder, output=None, **blocks):
    source = photo(folder / "sku.png")
    mask(folder / "sku-mask.png")
    manifest = write_manifest(
        folder,
        [{"id": "sku", "image": "sku.png", "mask": "sku-mask.png", "prompt": "green backdrop"}],
        output={"mask_mode": "strict", "feather_px": 2, **(output or {})},
        **blocks,
    )
    return manifest, source


def kept_pixels(image, box=BOX):
    left, top, right, bottom = box
    pixels = image.get_flattened_data()
    return [
        pixels[y * image.width + x]
        for y in range(image.height)
        for x in range(image.width)
        if not (left <= x < right and top <= y < bottom)
    ]


async def test_strict_output_keeps_the_inputs_pixels_where_the_model_repainted_them(
    tmp_path, provider
):
    manifest, source = strict_job(tmp_path)
    summary = await run(load_plan(manifest), options(provider))
    assert summary.exit_code == 0
    with Image.open(tmp_path / "job-out" / "sku.png") as opened:
        out = opened.convert("RGB")
    assert out.size == SIZE  # a strict output has the input's size
    assert kept_pixels(out) == kept_pixels(source)  # every kept pixel, exactly
    assert out.getpixel((48, 32)) == PAINT  # the masked region is the answer's
    (done,) = [
        r
        for r in read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
        if r["event"] == "succeeded"
    ]
    assert 0.2 < done["drift"] < 0.6  # repainted: the kept region changed a lot
    assert done["cost_usd"] > 0 and "cached" not in done


async def test_max_drift_retries_a_repainted_answer_then_fails_the_item_with_every_cost(
    tmp_path, provider
):
    manifest, _ = strict_job(tmp_path, {"max_drift": 0.05}, limits={"max_attempts": 3})
    summary = await run(load_plan(manifest), options(provider))
    assert summary.exit_code == 1 and provider.requests == 3
    lines = read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
    retried = [r for r in lines if r["event"] == "attempt_failed"]
    (failed,) = [r for r in lines if r["event"] == "failed"]
    assert [r["cause"] for r in retried] == ["drift", "drift"]
    assert failed["error"]["class"] == "exhausted"
    assert "more than output.max_drift 0.05" in failed["error"]["message"]
    billed = [r["cost_usd"] for r in [*retried, failed]]
    assert len(billed) == 3 and all(cost > 0 for cost in billed)  # each answer was paid
    assert all(r["drift"] > 0.05 and r["usage"] == USAGE for r in [*retried, failed])
    assert summary.stats.cost_usd == pytest.approx(sum(billed))
    assert not (tmp_path / "job-out" / "sku.png").exists()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
async def test_a_photo_with_an_exif_rotation_is_sent_upright(tmp_path, provider, fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90° right
    ext = fmt.lower().replace("jpeg", "jpg")
    options_ = {"lossless": True} if fmt == "WEBP" else {}
    stored = photo(tmp_path / f"phone.{ext}", size=(80, 48), fmt=fmt, exif=exif, **options_)
    mask(tmp_path / "mask.png", size=(48, 80), box=(0, 0, 48, 20))  # drawn on the upright photo
    manifest = write_manifest(
        tmp_path,
        [{"id": "phone", "image": f"phone.{ext}", "mask": "mask.png", "prompt": "p"}],
    )
    plan = load_plan(manifest)
    assert plan.notes == (
        (
            "items[0] (phone).image",
            f"phone.{ext} has EXIF Orientation 6: it is sent turned 90° right, upright, as 48x80",
        ),
    )
    summary = await run(plan, options(provider))
    assert summary.exit_code == 0
    with Image.open(io.BytesIO(provider.images[0])) as sent:
        assert sent.format == fmt
        assert sent.size == (48, 80)
        assert sent.getexif().get(0x0112, 1) == 1
        if fmt != "JPEG":  # lossless: the very pixels, turned
            upright = stored.transpose(Image.Transpose.ROTATE_270)
            assert sent.convert("RGB").tobytes() == upright.tobytes()


def test_a_mask_of_the_unturned_size_is_refused_with_the_upright_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 8
    photo(tmp_path / "phone.jpg", size=(80, 48), fmt="JPEG", exif=exif)
    mask(tmp_path / "mask.png", size=(80, 48))
    manifest = write_manifest(
        tmp_path, [{"id": "phone", "image": "phone.jpg", "mask": "mask.png", "prompt": "p"}]
    )
    with pytest.raises(ManifestError) as caught:
        load_plan(manifest)
    assert str(caught.value.problems[0]) == (
        "items[0] (phone).mask: 80x48 does not match the image's 48x80 upright (as its EXIF "
        "Orientation says); a mask must have the image's size: resize it to 48x80"
    )


async def test_a_mask_that_marks_nothing_is_refused_before_anything_is_sent(tmp_path, provider):
    photo(tmp_path / "sku.png")
    mask(tmp_path / "keep-all.png", keep_all=True)
    Image.new("RGBA", SIZE, (0, 0, 0, 0)).save(tmp_path / "edit-all.png")
    manifest = write_manifest(
        tmp_path,
        [
            {"id": "a", "image": "sku.png", "mask": "keep-all.png", "prompt": "p"},
            {"id": "b", "image": "sku.png", "mask": "edit-all.png", "prompt": "p"},
        ],
    )
    with pytest.raises(ManifestError) as caught:
        load_plan(manifest)
    (problem,) = caught.value.problems
    assert problem.where == "items[0] (a).mask"
    assert problem.message == "keep-all.png marks no pixel to edit"
    assert problem.fix.startswith("white or transparent marks where to edit")
    # `run` loads without reading files and checks the pending items' before sending any
    with pytest.raises(ManifestError):
        await run(load_plan(manifest, check_files=False), options(provider))
    assert provider.requests == 0


def test_a_mask_that_marks_everything_is_a_note_not_a_problem(tmp_path):
    photo(tmp_path / "sku.png")
    Image.new("L", SIZE, 255).save(tmp_path / "edit-all.png")
    manifest = write_manifest(
        tmp_path, [{"id": "b", "image": "sku.png", "mask": "edit-all.png", "prompt": "p"}]
    )
    ((where, message),) = load_plan(manifest).notes
    assert where == "items[0] (b).mask" and "marks every pixel to edit" in message


async def test_a_second_job_with_the_same_item_and_cache_sends_nothing_and_costs_nothing(
    tmp_path, provider
):
    cache = tmp_path / "shared-cache"
    first, _ = strict_job(tmp_path / "monday", cache=str(cache))
    await run(load_plan(first), options(provider))
    assert provider.requests == 1
    second, _ = strict_job(tmp_path / "tuesday", cache=str(cache))  # the same files, elsewhere
    summary = await run(load_plan(second), options(provider))
    assert summary.exit_code == 0 and provider.requests == 1  # nothing sent
    (done,) = [
        r
        for r in read_ledger_lines(tmp_path / "tuesday" / "job-out" / "ledger.jsonl")
        if r["event"] == "succeeded"
    ]
    assert done["cached"] is True and done["cost_usd"] == 0 and done["attempt"] == 0
    assert done["drift"] > 0.2  # measured again, from the cached answer
    assert summary.stats.cost_usd == 0 and summary.stats.requests == 0
    monday = (tmp_path / "monday" / "job-out" / "sku.png").read_bytes()
    assert (tmp_path / "tuesday" / "job-out" / "sku.png").read_bytes() == monday


async def test_the_cache_serves_a_guide_job_the_answer_a_strict_job_paid_for(tmp_path, provider):
    cache = tmp_path / "cache"
    strict_manifest, _ = strict_job(tmp_path / "strict", cache=str(cache))
    await run(load_plan(strict_manifest), options(provider))
    guide, _ = strict_job(tmp_path / "guide", {"mask_mode": "guide"}, cache=str(cache))
    summary = await run(load_plan(guide), options(provider))
    assert provider.requests == 1 and summary.exit_code == 0
    with Image.open(tmp_path / "guide" / "job-out" / "sku.png") as out:
        assert out.size == (1024, 1024)  # guide: the answer as it came


async def test_no_cache_and_a_cache_option_override_the_manifest(tmp_path, provider):
    manifest, _ = strict_job(tmp_path / "a", cache=str(tmp_path / "manifest-cache"))
    await run(load_plan(manifest), options(provider, no_cache=True))
    assert not (tmp_path / "manifest-cache").exists()
    again, _ = strict_job(tmp_path / "b")
    await run(load_plan(again), options(provider, cache=tmp_path / "option-cache"))
    assert (tmp_path / "option-cache" / "answers").is_dir() and provider.requests == 2


async def test_changing_the_mask_mode_runs_the_item_again(tmp_path, provider):
    manifest, _ = strict_job(tmp_path)
    await run(load_plan(manifest), options(provider))
    again, _ = strict_job(tmp_path, {"mask_mode": "guide"})
    summary = await run(load_plan(again), options(provider))
    assert provider.requests == 2 and summary.stats.succeeded == 1


async def test_strict_items_keep_the_models_answer_and_the_report_shows_it(tmp_path, provider):
    manifest, _ = strict_job(tmp_path)
    await run(load_plan(manifest), options(provider))
    (done,) = [
        r
        for r in read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
        if r["event"] == "succeeded"
    ]
    assert [a["path"] for a in done["answers"]] == ["answers/sku.png"]
    with Image.open(tmp_path / "job-out" / "answers" / "sku.png") as answer:
        assert answer.size == (1024, 1024)  # as the model returned it
    warnings: list[str] = []
    plan, records = load_sources([manifest], warnings)
    report = summarize(records, plan, warnings)
    assert report.drift["items"] == 1 and report.drift["max"] == done["drift"]
    assert report.drift["median"] == done["drift"]
    assert "drift" in render_text(report)
    page = tmp_path / "report.html"
    write_html(report, records, plan, page)
    html = page.read_text()
    article = html[html.index('id="item-sku"') :]
    roles = re.findall(r'<figure class="(\w+)"', article)
    assert roles == ["input", "mask", "answer", "output"]  # side by side, in that order
    assert 'data-sort-drift="' in html


def test_cache_stats_and_prune_on_the_command_line(tmp_path, capsys):
    cache = AnswerCache(tmp_path / "cache")
    key_old, key_new = "a" * 64, "b" * 64
    assert cache.put(key_old, [b"\x89PNG old"], model="m", usage=None)
    assert not cache.put(key_old, [b"\x89PNG again"], model="m", usage=None)  # kept the first
    assert cache.put(key_new, [b"\x89PNG new", b"\x89PNG two"], model="m", usage=USAGE)
    meta = cache.answers / "aa" / key_old / "answer.json"
    long_ago = time.time() - 40 * 86400
    os.utime(meta, (long_ago, long_ago))
    assert main(["cache", "stats", str(tmp_path / "cache"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["entries"], stats["images"]) == (2, 3)
    assert main(["cache", "prune", str(tmp_path / "cache"), "--older-than", "30d"]) == 0
    assert "removed 1 answer(s)" in capsys.readouterr().out
    assert cache.get(key_old) is None
    assert cache.get(key_new).images == [b"\x89PNG new", b"\x89PNG two"]
    assert main(["cache", "prune", str(tmp_path / "cache"), "--older-than", "soon"]) == 2
    assert "--older-than: 'soon' is not an age" in capsys.readouterr().err


def test_a_damaged_cache_entry_is_a_miss_and_is_removed(tmp_path):
    cache = AnswerCache(tmp_path)
    key = "c" * 64
    cache.put(key, [b"\x89PNG data"], model="m", usage=None)
    (cache.answers / "cc" / key / "1.img").write_bytes(b"tampered")
    assert cache.get(key) is None
    assert not (cache.answers / "cc" / key).exists()


@pytest.mark.parametrize("drift_by", ["config", "script"])
async def test_against_the_simulator_that_repaints_everything(tmp_path, sim_factory, drift_by):
    manifest, source = strict_job(tmp_path)
    if drift_by == "script":  # one request repainted by the prompt's directive
        text = manifest.read_text().replace("green backdrop", "green backdrop [sim:repaint]")
        manifest.write_text(text)
    config = SimConfig(outside_drift=1.0 if drift_by == "config" else 0.0)
    async with sim_factory(config) as sim:
        summary = await run(load_plan(manifest), options(sim))
    assert summary.exit_code == 0
    with Image.open(tmp_path / "job-out" / "sku.png") as opened:
        out = opened.convert("RGB")
    assert kept_pixels(out) == kept_pixels(source)
    with Image.open(tmp_path / "job-out" / "answers" / "sku.png") as opened:
        answer = opened.convert("RGB").resize(SIZE, Image.Resampling.LANCZOS)
    deep = [(x, y) for x in range(BOX[0] + 3, BOX[2] - 3) for y in range(BOX[1] + 3, BOX[3] - 3)]
    assert [out.getpixel(p) for p in deep] == [answer.getpixel(p) for p in deep]
    assert kept_pixels(answer) != kept_pixels(source)  # the model did change them
    (done,) = [
        r
        for r in read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
        if r["event"] == "succeeded"
    ]
    assert done["drift"] > 0.1


async def test_max_drift_against_the_simulator_fails_the_item_after_its_attempts(
    tmp_path, sim_factory
):
    manifest, _ = strict_job(tmp_path, {"max_drift": 0.05}, limits={"max_attempts": 2})
    async with sim_factory(SimConfig(outside_drift=1.0)) as sim:
        summary = await run(load_plan(manifest), options(sim))
        stats = await sim.stats()
    assert summary.exit_code == 1 and stats["requests"] == 2
    lines = read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
    (failed,) = [r for r in lines if r["event"] == "failed"]
    assert failed["error"]["class"] == "exhausted" and failed["cost_usd"] > 0


async def test_a_well_behaved_model_has_almost_no_drift(tmp_path, sim_factory):
    manifest, _ = strict_job(tmp_path, {"max_drift": 0.02})
    gradient = Image.linear_gradient("L").resize(SIZE).convert("RGB")  # a photo, not noise
    gradient.save(tmp_path / "sku.png")
    async with sim_factory(SimConfig()) as sim:
        summary = await run(load_plan(manifest), options(sim))
    assert summary.exit_code == 0
    (done,) = [
        r
        for r in read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
        if r["event"] == "succeeded"
    ]
    assert done["drift"] < 0.02 and done["attempt"] == 1  # resampling there and back only


async def test_batch_mode_finishes_answers_as_an_interactive_run_does(tmp_path, sim_factory):
    manifest, source = strict_job(tmp_path, limits={"max_attempts": 2})
    async with sim_factory(SimConfig(batch_seconds=0.2, outside_drift=1.0)) as sim:
        batch = RunOptions(base_url=sim.base_url, api_key="sk-test", batch=True, poll_s=0.05)
        summary = await run(load_plan(manifest), replace(batch, wait=True))
    assert summary.exit_code == 0
    with Image.open(tmp_path / "job-out" / "sku.png") as opened:
        assert kept_pixels(opened.convert("RGB")) == kept_pixels(source)
    (done,) = [
        r
        for r in read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
        if r["event"] == "succeeded"
    ]
    assert done["drift"] > 0.1 and done["answers"][0]["path"] == "answers/sku.png"


async def test_batch_mode_resubmits_an_answer_over_max_drift_then_fails_it(tmp_path, sim_factory):
    manifest, _ = strict_job(tmp_path, {"max_drift": 0.05}, limits={"max_attempts": 2})
    async with sim_factory(SimConfig(batch_seconds=0.2, outside_drift=1.0)) as sim:
        batch = RunOptions(base_url=sim.base_url, api_key="sk-test", batch=True, poll_s=0.05)
        summary = await run(load_plan(manifest), replace(batch, wait=True))
    assert summary.exit_code == 1
    lines = read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
    retried = [r for r in lines if r["event"] == "attempt_failed"]
    (failed,) = [r for r in lines if r["event"] == "failed"]
    assert [r["cause"] for r in retried] == ["drift"] and retried[0]["cost_usd"] > 0
    assert failed["error"]["class"] == "exhausted" and failed["drift"] > 0.05


def test_writing_out_the_default_feather_keeps_the_items_key(tmp_path):
    photo(tmp_path / "sku.png")
    mask(tmp_path / "m.png")
    keys = []
    for output in ({"mask_mode": "strict"}, {"mask_mode": "strict", "feather_px": 2}):
        manifest = write_manifest(
            tmp_path,
            [{"id": "a", "image": "sku.png", "mask": "m.png", "prompt": "p"}],
            output=output,
        )
        (item,) = load_plan(manifest).items
        keys.append(item_key(item, ["0" * 64], "1" * 64))
    assert keys[0] == keys[1]
    guide = Item(
        id="a", images=(tmp_path / "sku.png",), prompt="p", params={}, mask=tmp_path / "m.png"
    )
    assert item_key(guide, ["0" * 64], "1" * 64) != keys[0]  # strict is another output
