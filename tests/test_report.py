"""The report over hand-built ledgers: totals equal the sums of the lines, shard ledgers merge,
the terminal table, and the self-contained HTML page."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path
from types import MappingProxyType

import pytest
from helpers import make_image, make_mask, simple_job
from PIL import Image

from pipeline.core.errors import UsageError
from pipeline.core.plan import Budget, Endpoint, Item, Limits, Output, Plan
from pipeline.report.aggregate import load_ledgers, load_sources, resolve_inputs, summarize
from pipeline.report.html import thumbnail_uri, write_html
from pipeline.report.text import render_text


def ts(second: int) -> str:
    return f"2026-11-26T10:{second // 60:02d}:{second % 60:02d}.000Z"


def line(event: str, second: int, run: str = "r1", **fields) -> dict:
    return {"v": 1, "ts": ts(second), "run": run, "event": event, **fields}


def usage(text: int, image_in: int, image_out: int) -> dict:
    return {
        "input_tokens": text + image_in,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
        "output_tokens": image_out,
        "total_tokens": text + image_in + image_out,
    }


def done(item: str, second: int, cost: float | None, latency: float, run: str = "r1", **extra):
    extra.setdefault("usage", usage(10, 194, 1056))
    extra.setdefault("outputs", [{"path": f"{item}.png", "sha256": "0" * 64, "bytes": 1}])
    return line(
        "succeeded", second, run, item=item, key="k-" + item, attempt=1, model="gpt-image-1",
        latency_s=latency, cost_usd=cost, **extra,
    )  # fmt: skip


def failed(item: str, second: int, run: str = "r1", **error) -> dict:
    error = {
        "class": "permanent",
        "http_status": 400,
        "type": "image_generation_user_error",
        "code": "moderation_blocked",
        "message": "rejected by the safety system",
        **error,
    }
    return line("failed", second, run, item=item, key="k-" + item, attempts=1, error=error)


def retry(item: str, second: int, cause: str, status: int | None, run: str = "r1") -> dict:
    transport = None if status else "timeout"
    return line(
        "attempt_failed", second, run, item=item, key="k-" + item, attempt=1, http_status=status,
        transport=transport, cause=cause, retry_in_s=1.0,
    )  # fmt: skip


def one_run() -> list[dict]:
    return [
        line("run_started", 0, manifest="job.yaml"),
        retry("a", 5, "rate_limit", 429),
        retry("a", 10, "server_error", 500),
        retry("b", 12, "timeout", None),
        done("a", 20, 0.05, 10.0),
        done("b", 30, None, 20.0),  # unpriced model
        done("c", 40, 0.02, 30.0, usage=None, cost_estimated=True),  # proxy without usage
        failed("d", 50),
        failed("e", 55),
        line("run_finished", 60, reason="completed", exit_code=1),
    ]


def test_totals_equal_the_sums_over_the_ledger():
    report = summarize(one_run())
    data = report.to_json()
    assert data["items"] == {"total": 5, "done": 3, "failed": 2, "pending": 0}
    assert data["cost_usd"] == pytest.approx(0.07)
    assert data["cost_estimated"] == 1 and data["cost_unpriced"] == 1
    assert data["tokens"] == {
        "text_input": 20, "image_input": 388, "image_output": 2112, "text_output": 0
    }  # fmt: skip
    assert data["failed_by_class"] == {"permanent": 2}
    assert data["retries_by_cause"] == {"rate_limit": 1, "server_error": 1, "timeout": 1}
    assert data["retries_by_status"] == {"429": 1, "500": 1, "timeout": 1}
    assert data["latency_s"] == {"p50": 20.0, "p95": 30.0, "max": 30.0}
    (run,) = data["runs"]
    assert run["succeeded"] == 3 and run["failed"] == 2 and run["duration_s"] == 60
    assert run["per_minute"] == pytest.approx(3.0) and data["per_minute"] == pytest.approx(3.0)
    assert run["cost_usd"] == pytest.approx(0.07) and run["exit_code"] == 1
    (group,) = data["errors"]
    assert group["class"] == "permanent" and group["code"] == "moderation_blocked"
    assert group["count"] == 2 and group["examples"] == ["d", "e"] and group["more"] == 0
    assert data["failed_ids"] == ["d", "e"]
    json.dumps(data)  # machine-readable as is


def test_error_groups_sort_by_count_and_keep_five_examples_the_json_every_id():
    records = [failed(f"q{i}", i, **{"class": "fatal", "http_status": 401}) for i in range(7)]
    records.append(failed("m", 9))
    report = summarize(records)
    groups = report.errors
    assert [(g.cls, g.count) for g in groups] == [("fatal", 7), ("permanent", 1)]
    assert groups[0].examples == ["q0", "q1", "q2", "q3", "q4"] and groups[0].more == 2
    assert report.to_json()["failed_ids"] == [*(f"q{i}" for i in range(7)), "m"]
    assert "q0, q1, q2, q3, q4 and 2 more" in render_text(report, width=200)


def test_render_text_keeps_long_messages_whole_and_wraps_them_at_words():
    message = " ".join(f"word{i:03d}" for i in range(60))  # 479 characters
    report = summarize([failed("a", 1, message=message)])
    text = render_text(report, width=100)
    words = text.replace("│", " ").split()
    for i in range(60):
        assert f"word{i:03d}" in words  # every word, none cut in two


def test_last_final_record_of_an_item_wins_across_runs():
    records = [
        line("run_started", 0, "r1"),
        failed("a", 10, "r1", **{"class": "exhausted", "http_status": 503}),
        line("run_finished", 20, "r1", reason="completed", exit_code=1),
        line("run_started", 100, "r2"),
        done("a", 130, 0.04, 25.0, "r2"),
    ]
    report = summarize(records)
    assert report.items == {"total": 1, "done": 1, "failed": 0, "pending": 0}
    assert [(r.run, r.succeeded, r.failed) for r in report.runs] == [("r1", 0, 1), ("r2", 1, 0)]
    # A run without run_finished (killed) lasts until its last line.
    assert report.runs[1].duration_s == 30 and report.runs[1].finished is None


def test_several_ledgers_merge_in_time_order(tmp_path):
    shard0 = [line("run_started", 0, "s0"), failed("x", 5, "s0"), done("y", 8, 0.01, 4.0, "s0")]
    shard1 = [line("run_started", 1, "s1"), done("x", 7, 0.03, 6.0, "s1")]
    paths = []
    for k, records in enumerate([shard0, shard1]):
        path = tmp_path / f"ledger.shard-{k}-of-2.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        paths.append(path)
    records = load_ledgers(paths)
    assert [r["ts"] for r in records] == sorted(r["ts"] for r in records)
    report = summarize(records)
    assert report.items["done"] == 2 and report.items["failed"] == 0  # x failed, then succeeded
    assert report.cost_usd == pytest.approx(0.04)
    assert {r.run for r in report.runs} == {"s0", "s1"}
    # Shards ran side by side from 0 s to 8 s: 2 items in 8 s of the job's wall time.
    assert report.per_minute == pytest.approx(2 / (8 / 60))


def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps(done("a", 1, 0.01, 1.0)) + "\n" + '{"v": 1, "ts": "2026-')
    warnings: list[str] = []
    records = load_ledgers([path], warnings)
    assert len(records) == 1 and len(warnings) == 1
    assert "torn" in render_text(summarize(records, warnings=warnings))


def make_plan(root: Path, items: list[Item]) -> Plan:
    return Plan(
        manifest_path=root / "job.yaml",
        name="job",
        endpoint=Endpoint(),
        limits=Limits(),
        budget=Budget(),
        output=Output(dir=root / "out"),
        ledger=root / "out" / "ledger.jsonl",
        items=tuple(items),
    )


def plan_item(root: Path, item_id: str, prompt: str = "make it white", mask: bool = False):
    images = (root / "images" / f"{item_id}.png",)
    mask_path = root / "masks" / f"{item_id}.png" if mask else None
    params = MappingProxyType({"model": "gpt-image-1"})
    return Item(id=item_id, images=images, prompt=prompt, params=params, mask=mask_path)


def test_with_the_plan_unrecorded_items_are_pending_and_dropped_ones_counted(tmp_path):
    plan = make_plan(tmp_path, [plan_item(tmp_path, i) for i in ("a", "b", "new")])
    records = [done("a", 1, 0.01, 1.0), failed("b", 2), done("gone", 3, 0.02, 1.0)]
    report = summarize(records, plan)
    assert report.items == {"total": 3, "done": 1, "failed": 1, "pending": 1, "not_in_manifest": 1}
    assert report.cost_usd == pytest.approx(0.03)  # the ledger's total, whatever the manifest


def test_render_text_shows_the_figures_and_keeps_brackets_literal():
    records = [*one_run(), failed("z", 58, message="bad [bold]size[/bold] value", code="bad")]
    text = render_text(summarize(records), width=240)
    for expected in ("done 3", "failed 3", "$0.0700", "rate_limit 1", "p95 30.0s", "r1"):
        assert expected in text
    assert "bad [bold]size[/bold] value" in text
    assert "\x1b[" not in text


def test_resolve_inputs_takes_ledgers_and_refuses_missing_paths(tmp_path):
    ledger = tmp_path / "a.jsonl"
    ledger.write_text("")
    assert resolve_inputs([ledger, str(ledger)]) == (None, [ledger])
    with pytest.raises(UsageError, match="no such ledger"):
        resolve_inputs(tmp_path / "nope.jsonl")


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs: list[dict] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs)
        self.classes += (attrs.get("class") or "").split()


def test_html_page_shows_every_output_and_names_no_absolute_path(tmp_path):
    root = tmp_path / "job"
    items = [
        plan_item(root, "a", mask=True),
        plan_item(root, "b", prompt="<script>alert(1)</script>"),
        plan_item(root, "c"),
        plan_item(root, "gone"),
    ]
    for it in items[:3]:
        make_image(it.images[0])
    make_mask(root / "masks" / "a.png")
    two = [{"path": "a-1.png", "sha256": "0", "bytes": 1}, {"path": "a-2.jpg", "sha256": "0"}]
    make_image(root / "out" / "a-1.png", size=(300, 200))
    make_image(root / "out" / "a-2.jpg", size=(40, 40))
    make_image(root / "out" / "b.png")
    make_image(root / "out" / "gone.png")
    records = [
        line("run_started", 0, manifest="job"),
        done("a", 10, 0.05, 9.0, outputs=two),
        done("b", 12, 0.05, 9.0),
        failed("b", 20, message=f"seen at {root}/x"),  # b's last word is a failure
        done("c", 22, 0.05, 9.0),  # its output file was deleted since
        done("gone", 30, 0.01, 1.0),  # its input file was deleted since
    ]
    plan = make_plan(root, items)
    page = tmp_path / "report.html"
    write_html(summarize(records, plan), records, plan, page)
    html = page.read_text("utf-8")

    parser = Collect()
    parser.feed(html)
    outputs = [i for i in parser.imgs if i.get("data-role") == "output"]
    assert len(outputs) == 3  # a's two and gone's one; b failed last, c's file was deleted
    pictures = [i for i in parser.imgs if "data-role" in i]  # not the compare view's two
    assert all(i["src"].startswith("data:image/") for i in pictures)
    assert parser.classes.count("missing") == 2  # c's output, gone's input
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "images/a.png" in html and "masks/a.png" in html
    assert "moderation_blocked" in html
    assert '<label for="show-failed">failed (1)</label>' in html  # the filter by state
    assert str(tmp_path) not in html
    assert "http://" not in html and "https://" not in html


def decode(uri: str) -> Image.Image:
    head, _, data = uri.partition(",")
    assert head == "data:image/webp;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_thumbnails_are_small_and_masks_show_white_where_the_edit_goes(tmp_path):
    photo = make_image(tmp_path / "photo.jpg", size=(1600, 1200))
    thumb = decode(thumbnail_uri(photo))
    assert max(thumb.size) == 160 and thumb.size[0] > thumb.size[1]

    make_mask(tmp_path / "mask.png", (100, 100), box=(0, 0, 50, 100))  # edit the left half
    view = decode(thumbnail_uri(tmp_path / "mask.png", mask=True)).convert("L")
    assert view.getpixel((10, 50)) > 200 and view.getpixel((90, 50)) < 50


def test_thumbnail_of_a_missing_or_broken_file_is_none(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert thumbnail_uri(tmp_path / "broken.png") is None
    assert thumbnail_uri(tmp_path / "absent.png") is None


def test_html_from_a_ledger_alone_places_recorded_inputs_and_outputs(tmp_path):
    root = tmp_path / "job"
    make_image(root / "images" / "a.png")
    make_mask(root / "masks" / "a.png")
    make_image(root / "out" / "a.png")
    inputs = [
        {"path": "images/a.png", "role": "image", "bytes": 1, "mtime_ns": 1, "sha256": "0"},
        {"path": "masks/a.png", "role": "mask", "bytes": 1, "mtime_ns": 1, "sha256": "0"},
        {"path": "../../etc/passwd", "role": "image", "bytes": 1, "mtime_ns": 1, "sha256": "0"},
        {"path": str(tmp_path / "elsewhere.png"), "role": "image", "sha256": "0"},
    ]
    make_image(tmp_path / "elsewhere.png")
    records = [
        line("run_started", 0, manifest="job"),
        done("a", 5, 0.01, 2.0, inputs=inputs),
    ]
    page = tmp_path / "page.html"
    write_html(summarize(records), records, None, page, out_dir=root / "out", inputs_dir=root)
    html = page.read_text("utf-8")
    parser = Collect()
    parser.feed(html)
    roles = [i["data-role"] for i in parser.imgs if "data-role" in i]
    assert roles == ["input", "input", "input", "output"]
    assert "elsewhere.png" in html
    assert parser.classes.count("missing") == 1  # the path that leaves the folder is not read
    assert "prompt not in the ledger" in html
    assert str(tmp_path) not in html


def test_resolve_inputs_brings_the_manifests_ledger_and_its_shards(tmp_path):
    manifest = simple_job(tmp_path, 2)
    out = tmp_path / "job-out"
    out.mkdir()
    for name in ("ledger.jsonl", "ledger.shard-1-of-2.jsonl", "other.jsonl"):
        (out / name).write_text("")
    plan, ledgers = resolve_inputs(manifest)
    assert [i.id for i in plan.items] == ["sku-000", "sku-001"]
    assert [p.name for p in ledgers] == ["ledger.jsonl", "ledger.shard-1-of-2.jsonl"]
    with pytest.raises(UsageError, match="one manifest"):
        resolve_inputs([manifest, manifest])


async def test_report_of_a_simulated_run_equals_what_the_simulator_billed(tmp_path, sim_factory):
    from pipeline.engine.runner import RunOptions, run
    from pipeline.manifest.load import load_plan

    manifest = simple_job(tmp_path, 6)
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), RunOptions(base_url=sim.base_url, api_key="sk-t"))
        stats = await sim.stats()
    assert summary.exit_code == 0
    plan, records = load_sources(manifest)
    report = summarize(records, plan)
    assert report.items["done"] == 6 and report.items["pending"] == 0
    assert report.cost_usd == pytest.approx(stats["usd"])
    assert report.tokens.image_output == stats["tokens"]["image_output"]
    assert report.tokens.image_input == stats["tokens"]["image_input"]

    page = tmp_path / "report.html"
    write_html(report, records, plan, page)
    html = page.read_text("utf-8")
    parser = Collect()
    parser.feed(html)
    assert len([i for i in parser.imgs if i.get("data-role") == "output"]) == 6
    assert "missing" not in parser.classes
    assert str(tmp_path) not in html


def test_thumbnails_never_decode_a_huge_image_whole(tmp_path, monkeypatch):
    from pipeline.report import html

    monkeypatch.setattr(html, "THUMB_MAX_PIXELS", 100_000)
    png = make_image(tmp_path / "huge.png", size=(2048, 2048))
    jpeg = make_image(tmp_path / "huge.jpg", size=(2048, 2048))
    assert thumbnail_uri(png) is None  # no reduced decode for PNG: not decoded at all
    # A JPEG is decoded at 1/8 (256x256, under the bound): a preview all the same.
    assert max(decode(thumbnail_uri(jpeg)).size) == html.THUMB_PX


def test_the_page_offers_sorting_by_each_numeric_figure_the_ledger_has(tmp_path):
    plain = [line("run_started", 0), done("a", 5, 0.02, 3.0), done("b", 6, 0.01, 9.0)]
    page = tmp_path / "page.html"
    write_html(summarize(plain), plain, None, page, out_dir=tmp_path, inputs_dir=tmp_path)
    html = page.read_text("utf-8")
    assert '<option value="cost:desc">' in html and '<option value="latency:asc">' in html
    assert "drift:" not in html  # no item has a drift: not offered
    assert 'data-sort-cost="0.02" data-sort-latency="3.0"' in html
    drifted = [*plain[:2], done("b", 6, 0.01, 9.0, drift=0.125)]
    write_html(summarize(drifted), drifted, None, page, out_dir=tmp_path, inputs_dir=tmp_path)
    html = page.read_text("utf-8")
    assert '<option value="drift:desc">drift, highest first</option>' in html
    assert 'data-sort-drift="0.125"' in html and "drift 0.125" in html
