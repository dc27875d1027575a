"""Batch mode end to end against the simulator's Files and Batches APIs on loopback: submit,
in flight (exit 5), collect, failures resubmitted, expiry, budgets, kills at each step, and
the ledger's USD against the simulator's half-price bill."""

from __future__ import annotations

import math

import aiohttp
import pytest
from aiohttp import web
from helpers import make_image, read_ledger_lines, simple_job, write_manifest

from pipeline import run
from pipeline.engine.runner import RunOptions
from pipeline.manifest.load import load_plan
from pipeline.simulator import SimConfig

FAST = SimConfig(batch_seconds=0.2)


def options(base_url: str, **kw) -> RunOptions:
    kw.setdefault("poll_s", 0.05)
    return RunOptions(base_url=base_url, api_key="sk-test-key-123", batch=True, **kw)


def ledger_of(folder) -> list[dict]:
    return read_ledger_lines(folder / "job-out" / "ledger.jsonl")


def events(lines: list[dict], name: str) -> list[dict]:
    return [rec for rec in lines if rec["event"] == name]


def spent(lines: list[dict]) -> float:
    return math.fsum(
        rec.get("cost_usd") or 0.0
        for rec in lines
        if rec["event"] in ("succeeded", "attempt_failed", "failed")
    )


async def test_submit_returns_5_while_in_flight_and_a_later_run_collects(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 4)
    async with sim_factory(FAST) as sim:
        first = await run(load_plan(manifest), options(sim.base_url))
        assert (first.exit_code, first.stats.in_batch, first.stats.pending) == (5, 4, 0)
        from pipeline.cli.metrics import prometheus_text

        assert 'state="in_batch"} 4' in prometheus_text(first)
        lines = ledger_of(tmp_path)
        [submitted] = events(lines, "batch_submitted")
        assert len(submitted["items"]) == 4 and submitted["input_file"].startswith("file-")
        assert {e["item"] for e in submitted["items"]} == {f"sku-{i:03d}" for i in range(4)}
        assert len(events(lines, "file_uploaded")) == 5  # 4 images + the JSONL

        second = await run(load_plan(manifest), options(sim.base_url, wait=True))
        stats = await sim.stats()
    assert second.exit_code == 0 and second.stats.succeeded == 4
    lines = ledger_of(tmp_path)
    assert len(events(lines, "batch_submitted")) == 1  # nothing submitted twice
    [collected] = events(lines, "batch_collected")
    assert collected["status"] == "completed" and collected["batch"] == submitted["batch"]
    done = events(lines, "succeeded")
    assert {rec["batch"] for rec in done} == {submitted["batch"]}
    for rec in done:
        assert (tmp_path / "job-out" / rec["outputs"][0]["path"]).is_file()
        assert rec["cost_usd"] == pytest.approx(rec["interactive_usd"] / 2)
        assert (rec["endpoint"], rec["provider"]) == ("edits", "openai")
    assert spent(lines) == pytest.approx(stats["usd"], rel=1e-6)
    assert stats["usd_batch"] == pytest.approx(stats["usd"], rel=1e-6)
    third = await _rerun(manifest)
    assert third.exit_code == 0 and third.stats.done_before == 4


async def _rerun(manifest):
    # A finished job needs no provider: nothing is open, nothing pending.
    return await run(load_plan(manifest), options("http://127.0.0.1:9/v1"))


async def test_retryable_lines_are_resubmitted_and_moderated_ones_fail(tmp_path, sim_factory):
    for name in ("a", "b", "c"):
        make_image(tmp_path / f"{name}.png", color=(ord(name), 10, 10))
    manifest = write_manifest(
        tmp_path,
        [
            {"id": "a", "image": "a.png", "prompt": "white [sim:500,ok]"},
            {"id": "b", "image": "b.png", "prompt": "grey [sim:moderation]"},
            {"id": "c", "image": "c.png", "prompt": "plain backdrop"},
        ],
    )
    async with sim_factory(FAST) as sim:
        summary = await run(load_plan(manifest), options(sim.base_url, wait=True))
        stats = await sim.stats()
    assert summary.exit_code == 1 and summary.stats.succeeded == 2 and summary.stats.failed == 1
    lines = ledger_of(tmp_path)
    assert len(events(lines, "batch_submitted")) == 2
    [retried] = events(lines, "attempt_failed")
    assert (retried["item"], retried["http_status"], retried["cause"]) == ("a", 500, "server_error")
    [failed] = events(lines, "failed")
    assert failed["item"] == "b" and failed["error"]["class"] == "permanent"
    assert failed["error"]["code"] == "moderation_blocked"
    second = events(lines, "batch_submitted")[1]
    assert [e["item"] for e in second["items"]] == ["a"]
    assert {r["item"]: r["attempt"] for r in events(lines, "succeeded")} == {"a": 2, "c": 1}
    assert spent(lines) == pytest.approx(stats["usd"], rel=1e-6)
    # the image of `a` went up once, though it was in two batches
    images = [r for r in events(lines, "file_uploaded") if r["purpose"] != "batch"]
    assert len({r["sha256"] for r in images}) == len(images) == 3


async def test_an_expired_batch_returns_what_finished_and_the_rest_is_resubmitted(
    tmp_path, sim_factory
):
    manifest = simple_job(tmp_path, 5)
    async with sim_factory(SimConfig(batch_seconds=0.2, batch_expire_after=2)) as sim:
        summary = await run(load_plan(manifest), options(sim.base_url, wait=True))
        stats = await sim.stats()
    assert summary.exit_code == 0 and summary.stats.succeeded == 5
    lines = ledger_of(tmp_path)
    statuses = [rec["status"] for rec in events(lines, "batch_collected")]
    assert statuses == ["expired", "expired", "completed"]
    causes = {rec["cause"] for rec in events(lines, "attempt_failed")}
    assert causes == {"batch_expired"}
    assert {r["attempt"] for r in events(lines, "succeeded")} == {1}  # expiry is no attempt
    assert len(events(lines, "succeeded")) == 5
    assert spent(lines) == pytest.approx(stats["usd"], rel=1e-6)


async def test_the_budget_reserves_the_batch_price_and_submits_what_fits(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 5)
    plan = load_plan(manifest)
    from pipeline.cost.estimate import estimate_plan

    worst = estimate_plan(plan).items[0].worst_usd
    budget = worst * 0.5 * 2.5  # two items at the batch price fit, the third does not
    async with sim_factory(FAST) as sim:
        summary = await run(plan, options(sim.base_url, max_usd=budget))
    assert summary.exit_code == 3 and summary.stats.in_batch == 2 and summary.stats.pending == 3
    [submitted] = events(ledger_of(tmp_path), "batch_submitted")
    assert submitted["worst_usd"] == pytest.approx(2 * worst * 0.5)
    assert any("budget reached" in m for m in summary.messages)


def _cut_before(path, predicate) -> None:
    """Leave the ledger as a kill just before the first line matching predicate would."""
    lines = path.read_text().splitlines(keepends=True)
    import json

    index = next(i for i, line in enumerate(lines) if predicate(json.loads(line)))
    path.write_text("".join(lines[:index]))


async def test_a_batch_created_but_not_recorded_is_adopted_not_resubmitted(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 3)
    ledger = tmp_path / "job-out" / "ledger.jsonl"
    async with sim_factory(FAST) as sim:
        first = await run(load_plan(manifest), options(sim.base_url))
        assert first.exit_code == 5
        _cut_before(ledger, lambda rec: rec["event"] == "batch_submitted")
        second = await run(load_plan(manifest), options(sim.base_url, wait=True))
        stats = await sim.stats()
    assert second.exit_code == 0
    lines = ledger_of(tmp_path)
    [adopted] = events(lines, "batch_submitted")
    assert adopted["adopted"] is True
    assert stats["batches"]["by_status"] == {"completed": 1}  # one batch, not two
    assert len(events(lines, "succeeded")) == 3
    assert spent(lines) == pytest.approx(stats["usd"], rel=1e-6)
    assert any("recorded it now" in m for m in second.messages)


async def test_results_half_written_are_completed_without_writing_or_paying_twice(
    tmp_path, sim_factory
):
    manifest = simple_job(tmp_path, 4)
    ledger = tmp_path / "job-out" / "ledger.jsonl"
    async with sim_factory(FAST) as sim:
        assert (await run(load_plan(manifest), options(sim.base_url, wait=True))).exit_code == 0
        seen = []

        def third_success(rec: dict) -> bool:
            if rec["event"] == "succeeded":
                seen.append(rec)
            return len(seen) == 3

        _cut_before(ledger, third_success)
        kept = {rec["item"] for rec in seen[:2]}
        again = await run(load_plan(manifest), options(sim.base_url, wait=True))
        stats = await sim.stats()
    assert again.exit_code == 0
    lines = ledger_of(tmp_path)
    done = events(lines, "succeeded")
    assert len(done) == 4 and len({rec["item"] for rec in done}) == 4
    assert {rec["item"] for rec in done if rec["run"] == again.run_id}.isdisjoint(kept)
    assert len(events(lines, "batch_collected")) == 1
    assert stats["batches"]["lines_billed"] == 4
    assert spent(lines) == pytest.approx(stats["usd"], rel=1e-6)


async def test_a_kill_halfway_through_the_uploads_uploads_nothing_twice(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 4)
    async with sim_factory(FAST) as sim, refusing_uploads_after(sim.base_url, 2) as flaky:
        first = await run(load_plan(manifest), options(flaky))
        assert first.exit_code == 4  # the provider refused the third upload for good
        lines = ledger_of(tmp_path)
        assert len(events(lines, "file_uploaded")) == 2 and not events(lines, "batch_submitted")
        second = await run(load_plan(manifest), options(sim.base_url, wait=True))
        stats = await sim.stats()
    assert second.exit_code == 0
    lines = ledger_of(tmp_path)
    uploads = [r for r in events(lines, "file_uploaded") if r["purpose"] != "batch"]
    assert len(uploads) == len({r["sha256"] for r in uploads}) == 4
    assert len(events(lines, "succeeded")) == 4
    assert spent(lines) == pytest.approx(stats["usd"], rel=1e-6)


class refusing_uploads_after:
    """A loopback proxy in front of the simulator that answers 401 to every `POST /files`
    after the first `count`, as a provider revoking the key mid-submission would; and, with
    `lose_creates`, forwards that many `POST /batches` but answers them 500, as a connection
    lost after the provider created the batch would."""

    def __init__(self, base_url: str, count: int, lose_creates: int = 0):
        self.target = base_url.rsplit("/v1", 1)[0]
        self.left = count
        self.lose_creates = lose_creates

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "POST" and request.path == "/v1/files":
            if self.left == 0:
                return web.json_response(
                    {"error": {"message": "revoked", "type": "invalid_request_error"}}, status=401
                )
            self.left -= 1
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self.session.request(
            request.method,
            self.target + request.path_qs,
            data=await request.read(),
            headers=headers,
        ) as resp:
            body = await resp.read()
        if request.method == "POST" and request.path == "/v1/batches" and self.lose_creates:
            self.lose_creates -= 1
            return web.json_response(
                {"error": {"message": "lost", "type": "server_error"}}, status=500
            )
        return web.Response(body=body, status=resp.status, content_type=resp.content_type)

    async def __aenter__(self) -> str:
        self.session = aiohttp.ClientSession()
        app = web.Application(client_max_size=2**26)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()
        await self.session.close()


async def test_batch_status_and_cancel_then_a_run_collects_and_resubmits(
    tmp_path, sim_factory, monkeypatch, capsys
):
    import asyncio
    import json

    from pipeline.cli.main import main

    manifest = simple_job(tmp_path, 3)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-123")
    async with sim_factory(SimConfig(batch_seconds=1.2)) as sim:
        assert (await run(load_plan(manifest), options(sim.base_url))).exit_code == 5
        capsys.readouterr()
        args = [str(manifest), "--base-url", sim.base_url, "--json"]
        assert await asyncio.to_thread(main, ["batch", "status", *args]) == 0
        status = json.loads(capsys.readouterr().out)
        assert [b["status"] for b in status["open"]] in (["validating"], ["in_progress"])
        assert status["open"][0]["items"] == 3 and status["collected"] == 0
        assert await asyncio.to_thread(main, ["batch", "cancel", *args]) == 0
        cancelled = json.loads(capsys.readouterr().out)["open"][0]
        assert cancelled["status"] in ("cancelling", "cancelled")
        # the cancelled batch is collected, what it did not run goes into a new batch
        last = await run(load_plan(manifest), options(sim.base_url, wait=True))
    lines = ledger_of(tmp_path)
    assert [r["status"] for r in events(lines, "batch_collected")] == ["cancelled", "completed"]
    assert {r["cause"] for r in events(lines, "attempt_failed")} == {"batch_cancelled"}
    assert last.exit_code == 0 and len(events(lines, "batch_submitted")) == 2
    assert sorted(r["item"] for r in events(lines, "succeeded")) == [
        "sku-000",
        "sku-001",
        "sku-002",
    ]


async def test_estimate_shows_the_batch_price_and_report_the_batches_with_their_saving(
    tmp_path, sim_factory, capsys
):
    import asyncio
    import json

    from pipeline.cli.main import main

    manifest = simple_job(tmp_path, 2)
    assert await asyncio.to_thread(main, ["estimate", str(manifest), "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["batch_expected_usd"] == pytest.approx(estimate["expected_usd"] / 2, abs=1e-6)
    assert estimate["batch_worst_usd"] == pytest.approx(estimate["worst_usd"] / 2, abs=1e-6)
    assert await asyncio.to_thread(main, ["estimate", str(manifest)]) == 0
    assert "batch USD" in capsys.readouterr().out
    async with sim_factory(FAST) as sim:
        assert (await run(load_plan(manifest), options(sim.base_url, wait=True))).exit_code == 0
    assert main(["report", str(manifest), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["batches"]
    assert (row["status"], row["items"], row["succeeded"]) == ("completed", 2, 2)
    assert row["saving_usd"] == pytest.approx(row["cost_usd"], rel=1e-6)  # half price
    assert main(["report", str(manifest)]) == 0
    text = capsys.readouterr().out
    assert "batches" in text and "saving" in text and row["id"][:12] in text


async def test_mode_batch_in_the_manifest_and_a_pricing_batch_discount(tmp_path, sim_factory):
    manifest = simple_job(
        tmp_path,
        2,
        mode="batch",
        pricing={
            "gpt-image-1": {
                "text_input": 5,
                "image_input": 10,
                "image_output": 40,
                "batch_discount": 0.4,
            }
        },
    )
    plan = load_plan(manifest)
    assert plan.mode == "batch"
    async with sim_factory(FAST) as sim:
        summary = await run(
            plan, RunOptions(base_url=sim.base_url, api_key="sk-t", wait=True, poll_s=0.05)
        )
    assert summary.exit_code == 0
    for rec in events(ledger_of(tmp_path), "succeeded"):
        assert rec["cost_usd"] == pytest.approx(rec["interactive_usd"] * 0.4)


async def test_an_interactive_run_sends_nothing_that_is_in_an_open_batch(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 3)
    async with sim_factory(SimConfig(batch_seconds=30)) as sim:
        assert (await run(load_plan(manifest), options(sim.base_url))).exit_code == 5
        sim_before = (await sim.stats())["requests"]
        interactive = await run(
            load_plan(manifest), RunOptions(base_url=sim.base_url, api_key="sk-t")
        )
        stats = await sim.stats()
    assert interactive.exit_code == 5 and interactive.stats.in_batch == 3
    assert stats["requests"] == sim_before  # no image request went out
    assert any("batches still open" in m for m in interactive.messages)


async def test_a_signal_while_waiting_stops_the_polls_and_a_later_run_collects(
    tmp_path, sim_factory
):
    import asyncio

    from pipeline.engine.runner import RunControl

    class Submitted:
        """An observer that tells when the batch is at the provider."""

        def __init__(self) -> None:
            self.event = asyncio.Event()

        def started(self, stats) -> None:
            pass

        def update(self, stats) -> None:
            if stats.in_batch:
                self.event.set()

        def warning(self, text: str) -> None:
            pass

        def finished(self, summary) -> None:
            pass

    manifest = simple_job(tmp_path, 2)
    control, seen = RunControl(), Submitted()
    async with sim_factory(SimConfig(batch_seconds=30)) as sim:
        waiting = asyncio.ensure_future(
            run(
                load_plan(manifest),
                options(sim.base_url, wait=True, control=control, observer=seen),
            )
        )
        await asyncio.wait_for(seen.event.wait(), 5)
        control.request_stop("SIGTERM")
        summary = await asyncio.wait_for(waiting, 5)
    assert (summary.exit_code, summary.stats.in_batch) == (143, 2)
    assert events(ledger_of(tmp_path), "run_finished")[-1]["exit_code"] == 143


async def test_generations_and_edits_go_in_batches_of_their_own(tmp_path, sim_factory):
    make_image(tmp_path / "a.png")
    manifest = write_manifest(
        tmp_path,
        [
            {"id": "edit", "image": "a.png", "prompt": "white backdrop"},
            {"id": "new", "prompt": "a red mug on white"},
        ],
    )
    async with sim_factory(FAST) as sim:
        summary = await run(load_plan(manifest), options(sim.base_url, wait=True))
        stats = await sim.stats()
    assert summary.exit_code == 0
    lines = ledger_of(tmp_path)
    submitted = {
        r["endpoint"]: [e["item"] for e in r["items"]] for r in events(lines, "batch_submitted")
    }
    assert submitted == {"edits": ["edit"], "generations": ["new"]}
    assert {r["item"]: r["endpoint"] for r in events(lines, "succeeded")} == {
        "edit": "edits",
        "new": "generations",
    }
    assert spent(lines) == pytest.approx(stats["usd"], rel=1e-6)


async def test_azure_jobs_are_refused_in_batch_mode_with_a_way_out(tmp_path):
    from pipeline.core.errors import UsageError

    manifest = simple_job(
        tmp_path,
        1,
        endpoint={"provider": "azure", "base_url": "https://r.openai.azure.com/openai/v1"},
    )
    with pytest.raises(UsageError, match="without --batch"):
        await run(load_plan(manifest), options("http://127.0.0.1:9/v1"))


async def test_a_batch_dry_run_counts_what_the_budget_lets_through_at_the_batch_price(tmp_path):
    manifest = simple_job(tmp_path, 6)
    plan = load_plan(manifest)
    from pipeline.cost.estimate import estimate_plan

    worst = estimate_plan(plan).items[0].worst_usd
    budget = worst * 3.5  # 3 items interactively, 7 at half price: all 6 fit
    interactive = await run(plan, RunOptions(dry_run=True, max_usd=budget))
    batch = await run(plan, RunOptions(dry_run=True, max_usd=budget, batch=True))
    assert interactive.outlook.worst_items == 3
    assert batch.outlook.worst_items == 6
    assert batch.outlook.worst_usd == pytest.approx(interactive.outlook.worst_usd / 2)


async def test_a_create_whose_answer_was_lost_is_found_not_made_twice(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 2)
    async with (
        sim_factory(FAST) as sim,
        refusing_uploads_after(sim.base_url, 99, lose_creates=1) as lossy,
    ):
        first = await run(load_plan(manifest), options(lossy, wait=True))
        stats = await sim.stats()
    assert first.exit_code == 0
    assert stats["batches"]["by_status"] == {"completed": 1}  # the lost create was found
    lines = ledger_of(tmp_path)
    assert len(events(lines, "batch_submitted")) == 1 and len(events(lines, "succeeded")) == 2


async def test_a_billed_unusable_answer_is_paid_once_and_retried_in_the_next_batch(
    tmp_path, sim_factory
):
    make_image(tmp_path / "a.png")
    manifest = write_manifest(
        tmp_path, [{"id": "a", "image": "a.png", "prompt": "marble [sim:corrupt,ok]"}]
    )
    async with sim_factory(FAST) as sim:
        summary = await run(load_plan(manifest), options(sim.base_url, wait=True))
        stats = await sim.stats()
    assert summary.exit_code == 0
    lines = ledger_of(tmp_path)
    [retried] = events(lines, "attempt_failed")
    assert retried["cause"] == "bad_response" and retried["cost_usd"] > 0
    assert len(events(lines, "batch_submitted")) == 2
    assert spent(lines) == pytest.approx(stats["usd"], rel=1e-6)


async def test_strict_masks_and_drift_apply_to_batch_answers_as_to_interactive_ones(
    tmp_path, sim_factory
):
    from helpers import make_mask
    from PIL import Image

    make_image(tmp_path / "a.png", size=(64, 64))
    make_image(tmp_path / "b.png", size=(64, 64), color=(10, 200, 10))
    make_mask(tmp_path / "m.png", size=(64, 64))
    manifest = write_manifest(
        tmp_path,
        [
            {"id": "a", "image": "a.png", "mask": "m.png", "prompt": "red ball"},
            {"id": "b", "image": "b.png", "mask": "m.png", "prompt": "green [sim:repaint,ok]"},
        ],
        output={"mask_mode": "strict", "max_drift": 0.05},
    )
    async with sim_factory(FAST) as sim:
        summary = await run(load_plan(manifest), options(sim.base_url, wait=True))
        stats = await sim.stats()
    assert summary.exit_code == 0
    lines = ledger_of(tmp_path)
    done = {r["item"]: r for r in events(lines, "succeeded")}
    for rec in done.values():
        assert rec["drift"] <= 0.05 and rec["answers"][0]["path"].startswith("answers/")
        with Image.open(tmp_path / "job-out" / rec["outputs"][0]["path"]) as out:
            assert out.size == (64, 64)  # strict: the input's size, not the answer's 1024
    [rejected] = events(lines, "attempt_failed")
    assert (rejected["item"], rejected["cause"]) == ("b", "drift") and rejected["cost_usd"] > 0
    assert done["b"]["attempt"] == 2
    assert spent(lines) == pytest.approx(stats["usd"], rel=1e-6)


async def test_answers_paid_in_a_batch_fill_the_cache_and_a_later_job_sends_nothing(
    tmp_path, sim_factory
):
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    cache = str(tmp_path / "cache")
    first = simple_job(first_dir, 2, cache=cache)
    second = simple_job(second_dir, 2, cache=cache)
    async with sim_factory(FAST) as sim:
        assert (await run(load_plan(first), options(sim.base_url, wait=True))).exit_code == 0
        billed = (await sim.stats())["usd"]
        again = await run(load_plan(second), options(sim.base_url, wait=True))
        stats = await sim.stats()
    assert again.exit_code == 0 and again.stats.succeeded == 2
    lines = read_ledger_lines(second_dir / "job-out" / "ledger.jsonl")
    assert not events(lines, "batch_submitted") and not events(lines, "file_uploaded")
    assert {r["cached"] for r in events(lines, "succeeded")} == {True}
    assert spent(lines) == 0 and stats["usd"] == billed


async def test_an_input_by_url_goes_up_once_and_its_answer_comes_back(tmp_path, sim_factory):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 60, 90)).save(buffer, "PNG")
    served = buffer.getvalue()
    gets = []

    async def picture(request: web.Request) -> web.Response:
        if request.method == "GET":
            gets.append(request.path)
        return web.Response(body=served, content_type="image/png", headers={"ETag": '"v1"'})

    app = web.Application()
    app.router.add_route("*", "/p/hero.png", picture)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        manifest = write_manifest(
            tmp_path,
            [{"id": "hero", "image": f"http://127.0.0.1:{port}/p/hero.png", "prompt": "white"}],
        )
        async with sim_factory(FAST) as sim:
            summary = await run(load_plan(manifest), options(sim.base_url, wait=True))
    finally:
        await runner.cleanup()
    assert summary.exit_code == 0
    [done] = events(ledger_of(tmp_path), "succeeded")
    assert (tmp_path / "job-out" / done["outputs"][0]["path"]).is_file()
    assert gets == ["/p/hero.png"]  # fetched once, into the content cache


async def test_a_signal_before_submission_submits_nothing_and_says_interrupted(
    tmp_path, sim_factory
):
    from pipeline.engine.runner import RunControl

    manifest = simple_job(tmp_path, 2)
    control = RunControl()
    control.request_stop("SIGINT")
    async with sim_factory(FAST) as sim:
        summary = await run(load_plan(manifest), options(sim.base_url, control=control))
    assert (summary.exit_code, summary.stats.pending) == (130, 2)
    assert not events(ledger_of(tmp_path), "batch_submitted")
