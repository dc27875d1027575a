"""Whole runs on each provider's shape, against a tiny two-route server on 127.0.0.1: a mixed
manifest of edits and generations, an extra header read from the environment and recorded
nowhere, the ledger's endpoint and provider, and a dated snapshot run under a budget."""

from __future__ import annotations

import base64
import io

import pytest
from aiohttp import web
from helpers import make_image, read_ledger_lines, write_manifest
from PIL import Image

from pipeline.engine.runner import RunOptions, run
from pipeline.manifest.load import load_plan
from pipeline.report.aggregate import summarize
from pipeline.report.html import write_html
from pipeline.report.text import render_text

GATEWAY_SECRET = "gw-SECRET-value-77"


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 90, 200)).save(buf, "PNG")
    return buf.getvalue()


class Server:
    def __init__(self):
        self.seen: list[tuple[str, str, dict]] = []

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append((request.path, request.content_type, dict(request.headers)))
        image = base64.b64encode(png()).decode()
        usage = {
            "input_tokens": 10,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
            "output_tokens": 272,
            "total_tokens": 282,
        }
        return web.json_response({"data": [{"b64_json": image}], "usage": usage})


@pytest.fixture
async def server():
    state = Server()
    app = web.Application()
    app.router.add_post("/v1/images/edits", state.handle)
    app.router.add_post("/v1/images/generations", state.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    state.base_url = f"http://{host}:{port}/v1"
    yield state
    await runner.cleanup()


def mixed_job(folder, hero_model="gpt-image-1.5", **blocks):
    make_image(folder / "images" / "shoe.png")
    items = [
        {"id": "shoe", "image": "images/shoe.png", "prompt": "white background"},
        {"id": "hero", "prompt": "a lamp on an oak table", "model": hero_model},
    ]
    return write_manifest(folder, items, **blocks)


async def test_a_mixed_manifest_sends_edits_and_generations_and_records_which(
    tmp_path, server, monkeypatch
):
    monkeypatch.setenv("GW_KEY", GATEWAY_SECRET)
    manifest = mixed_job(
        tmp_path, endpoint={"headers": {"X-Gateway-Key": "${GW_KEY}", "OpenAI-Project": "p1"}}
    )
    summary = await run(
        load_plan(manifest), RunOptions(base_url=server.base_url, api_key="sk-run-key")
    )
    assert summary.exit_code == 0
    paths = sorted((path, kind) for path, kind, _ in server.seen)
    assert paths == [
        ("/v1/images/edits", "multipart/form-data"),
        ("/v1/images/generations", "application/json"),
    ]
    for _, _, headers in server.seen:
        assert headers["X-Gateway-Key"] == GATEWAY_SECRET and headers["OpenAI-Project"] == "p1"
    lines = read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
    done = {line["item"]: line for line in lines if line["event"] == "succeeded"}
    assert (done["shoe"]["endpoint"], done["hero"]["endpoint"]) == ("edits", "generations")
    assert {line["provider"] for line in done.values()} == {"openai"}
    assert done["hero"]["inputs"] == [] and done["hero"]["cost_usd"] > 0
    ledger_text = (tmp_path / "job-out" / "ledger.jsonl").read_text()
    assert GATEWAY_SECRET not in ledger_text and "sk-run-key" not in ledger_text
    assert (tmp_path / "job-out" / "hero.png").exists()

    again = await run(load_plan(manifest), RunOptions(base_url=server.base_url, api_key="k"))
    assert again.exit_code == 0 and again.stats.done_before == 2 and len(server.seen) == 2

    plan = load_plan(manifest)
    records = read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
    report = summarize(records, plan)
    assert report.done_by_route == {"edits · openai": 1, "generations · openai": 1}
    assert "done by route" in render_text(report) and "generations · openai 1" in render_text(
        report
    )
    write_html(report, records, plan, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "generations · openai" in page and "edits · openai" in page


async def test_an_unset_header_variable_stops_before_sending(tmp_path, server, monkeypatch):
    monkeypatch.delenv("GW_KEY", raising=False)
    manifest = mixed_job(tmp_path, endpoint={"headers": {"X-Gateway-Key": "${GW_KEY}"}})
    with pytest.raises(Exception, match=r"reads \$\{GW_KEY\}, which is not set"):
        await run(load_plan(manifest), RunOptions(base_url=server.base_url, api_key="k"))
    assert server.seen == []


async def test_auth_none_sends_no_key_and_needs_none(tmp_path, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    manifest = mixed_job(tmp_path, endpoint={"auth": "none", "base_url": server.base_url})
    summary = await run(load_plan(manifest))
    assert summary.exit_code == 0
    assert all("Authorization" not in headers for _, _, headers in server.seen)


async def test_a_dated_snapshot_runs_under_a_budget_priced_as_its_base(tmp_path, server):
    manifest = mixed_job(
        tmp_path,
        hero_model="gpt-image-2-2026-04-21",
        budget={"run_usd": 1.0},
        defaults={"model": "gpt-image-2-2026-04-21", "size": "1536x864", "quality": "low"},
    )
    plan = load_plan(manifest)
    summary = await run(plan, RunOptions(base_url=server.base_url, api_key="k"))
    assert summary.exit_code == 0
    lines = read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
    costs = [line["cost_usd"] for line in lines if line["event"] == "succeeded"]
    assert len(costs) == 2 and all(cost > 0 for cost in costs)
