"""The run against the simulator on loopback: retries, classes, limits, budgets, resume."""

from __future__ import annotations

import itertools

import pytest
from helpers import make_image, read_ledger_lines, simple_job, write_manifest

from pipeline.core.errors import ManifestError, UsageError
from pipeline.engine.runner import RunOptions, run
from pipeline.manifest.load import load_plan
from pipeline.simulator import SimConfig


def options(sim, **kw) -> RunOptions:
    kw.setdefault("backoff_base_s", 0.01)
    return RunOptions(base_url=sim.base_url, api_key="sk-test-key-123", **kw)


async def test_scripted_429_500_ok_succeeds_on_third_attempt_after_retry_after(
    tmp_path, sim_factory
):
    make_image(tmp_path / "a.png")
    manifest = write_manifest(
        tmp_path, [{"id": "a", "image": "a.png", "prompt": "red [sim:429:0.2,500,ok]"}]
    )
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), options(sim))
        stats = await sim.stats()
    assert summary.exit_code == 0
    lines = read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
    failed = [rec for rec in lines if rec["event"] == "attempt_failed"]
    assert [(rec["attempt"], rec["http_status"], rec["cause"]) for rec in failed] == [
        (1, 429, "rate_limit"),
        (2, 500, "server_error"),
    ]
    assert failed[0]["retry_in_s"] >= 0.2
    arrivals = stats["arrivals"]
    assert len(arrivals) == 3 and arrivals[1] - arrivals[0] >= 0.2
    done = [rec for rec in lines if rec["event"] == "succeeded"]
    assert done[0]["attempt"] == 3 and done[0]["outputs"][0]["path"] == "a.png"
    assert (tmp_path / "job-out" / "a.png").exists()


async def test_moderation_400_fails_the_item_after_one_request(tmp_path, sim_factory):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    manifest = write_manifest(
        tmp_path,
        [
            {"id": "a", "image": "a.png", "prompt": "bad [sim:moderation]"},
            {"id": "b", "image": "b.png", "prompt": "fine"},
        ],
    )
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), options(sim))
        stats = await sim.stats()
    assert summary.exit_code == 1
    assert stats["requests"] == 2
    failed = [rec for rec in read_ledger_lines(summary.ledger) if rec["event"] == "failed"]
    assert failed[0]["item"] == "a"
    assert failed[0]["error"]["class"] == "permanent"
    assert failed[0]["error"]["code"] == "moderation_blocked"


async def test_insufficient_quota_aborts_the_run_with_exit_4(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 6, prompt="x [sim:quota]", limits={"concurrency": 1})
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), options(sim))
        stats = await sim.stats()
    assert summary.exit_code == 4
    assert stats["requests"] == 1  # dispatch stopped at once
    assert any("quota" in m.lower() or "billing" in m.lower() for m in summary.messages)


async def test_a_stalled_request_times_out_and_is_retried(tmp_path, sim_factory):
    make_image(tmp_path / "a.png")
    manifest = write_manifest(
        tmp_path,
        [{"id": "a", "image": "a.png", "prompt": "p [sim:stall,ok]"}],
        limits={"timeout_s": 0.5},
    )
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), options(sim))
    assert summary.exit_code == 0
    causes = [
        rec["cause"]
        for rec in read_ledger_lines(summary.ledger)
        if rec["event"] == "attempt_failed"
    ]
    assert causes == ["timeout"]


async def test_requests_in_flight_never_exceed_concurrency(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 24, limits={"concurrency": 3})
    async with sim_factory(SimConfig(latency_s=0.05, jitter_s=0.02)) as sim:
        summary = await run(load_plan(manifest), options(sim))
        stats = await sim.stats()
    assert summary.exit_code == 0 and summary.stats.succeeded == 24
    assert stats["peak_in_flight"] == 3


async def test_requests_per_minute_is_held(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 8, limits={"concurrency": 8, "requests_per_minute": 600})
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), options(sim))
        stats = await sim.stats()
    assert summary.exit_code == 0
    arrivals = sorted(stats["arrivals"])
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # 600/min = one every 0.1 s, evenly spaced; allow scheduling noise
    assert min(gaps) >= 0.08
    assert (arrivals[-1] - arrivals[0]) >= 0.6  # 7 gaps of 0.1 s


async def test_budget_is_never_passed_and_a_later_run_completes_the_rest(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 30, limits={"concurrency": 8})
    plan = load_plan(manifest)
    async with sim_factory(SimConfig(latency_s=0.02)) as sim:
        first = await run(plan, options(sim, max_usd=0.05))
        assert first.exit_code == 3
        assert 0 < first.cost_usd <= 0.05
        billed = (await sim.stats())["usd"]
        assert billed == pytest.approx(first.cost_usd, abs=1e-9)
        second = await run(plan, options(sim, max_usd=5))
        stats = await sim.stats()
    assert second.exit_code == 0
    assert second.stats.done_before == first.stats.succeeded
    assert first.stats.succeeded + second.stats.succeeded == 30
    assert max(stats["ok_by_image"].values()) == 1  # nothing was paid for twice
    lines = read_ledger_lines(plan.ledger)
    recorded = sum(rec["cost_usd"] for rec in lines if rec["event"] == "succeeded")
    assert recorded == pytest.approx(stats["usd"], abs=1e-9)


async def test_total_budget_counts_spend_of_earlier_runs(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 10, budget={"total_usd": 0.04}, limits={"concurrency": 4})
    plan = load_plan(manifest)
    async with sim_factory() as sim:
        first = await run(plan, options(sim))
        second = await run(plan, options(sim))
    assert first.exit_code == 3 and second.exit_code == 3
    assert second.stats.succeeded == 0
    assert first.spent_total_usd <= 0.04


async def test_an_edited_input_runs_again_and_nothing_else_does(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 4)
    plan = load_plan(manifest)
    async with sim_factory() as sim:
        assert (await run(plan, options(sim))).exit_code == 0
        make_image(tmp_path / "images" / "img002.png", color=(1, 2, 3))
        again = await run(load_plan(manifest), options(sim))
        stats = await sim.stats()
    assert again.stats.succeeded == 1 and again.stats.done_before == 3
    assert stats["requests"] == 5


async def test_a_deleted_output_runs_again(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 3)
    plan = load_plan(manifest)
    async with sim_factory() as sim:
        await run(plan, options(sim))
        (plan.output.dir / "sku-001.png").unlink()
        again = await run(plan, options(sim))
    assert again.stats.succeeded == 1 and again.exit_code == 0


async def test_failed_items_are_skipped_unless_retry_failed(tmp_path, sim_factory):
    make_image(tmp_path / "a.png")
    manifest = write_manifest(
        tmp_path, [{"id": "a", "image": "a.png", "prompt": "p [sim:moderation,ok]"}]
    )
    plan = load_plan(manifest)
    async with sim_factory() as sim:
        assert (await run(plan, options(sim))).exit_code == 1
        skipped = await run(plan, options(sim))
        assert skipped.stats.requests == 0 and skipped.exit_code == 1
        retried = await run(plan, options(sim, retry_failed=True))
    assert retried.exit_code == 0 and retried.stats.succeeded == 1


async def test_a_torn_last_ledger_line_is_repaired_with_a_warning(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 2)
    plan = load_plan(manifest)
    async with sim_factory() as sim:
        await run(plan, options(sim))
        torn = plan.ledger.read_text() + '{"v": 1, "event": "succ'
        plan.ledger.write_text(torn)
        again = await run(plan, options(sim))
    assert again.exit_code == 0 and again.stats.requests == 0
    assert any("torn" in m or "incomplete" in m for m in again.messages)
    read_ledger_lines(plan.ledger)  # every line parses again


async def test_no_usage_records_the_estimate_and_marks_it(tmp_path, sim_factory):
    make_image(tmp_path / "a.png")
    manifest = write_manifest(
        tmp_path, [{"id": "a", "image": "a.png", "prompt": "p [sim:nousage]"}]
    )
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), options(sim))
    line = next(rec for rec in read_ledger_lines(summary.ledger) if rec["event"] == "succeeded")
    assert line["cost_estimated"] is True and line["cost_usd"] > 0


async def test_url_and_data_uri_responses_are_stored(tmp_path, sim_factory):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    manifest = write_manifest(
        tmp_path,
        [
            {"id": "a", "image": "a.png", "prompt": "p [sim:url]"},
            {"id": "b", "image": "b.png", "prompt": "p [sim:datauri]"},
        ],
    )
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), options(sim))
    assert summary.exit_code == 0
    assert (tmp_path / "job-out" / "a.png").read_bytes()[:4] == b"\x89PNG"


async def test_corrupt_and_truncated_bodies_are_retried(tmp_path, sim_factory):
    make_image(tmp_path / "a.png")
    manifest = write_manifest(
        tmp_path, [{"id": "a", "image": "a.png", "prompt": "p [sim:corrupt,truncated,ok]"}]
    )
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), options(sim))
    assert summary.exit_code == 0
    causes = [
        rec["cause"]
        for rec in read_ledger_lines(summary.ledger)
        if rec["event"] == "attempt_failed"
    ]
    assert causes == ["bad_response", "bad_response"]


async def test_attempts_exhausted_fail_the_item_as_exhausted(tmp_path, sim_factory):
    make_image(tmp_path / "a.png")
    manifest = write_manifest(
        tmp_path,
        [{"id": "a", "image": "a.png", "prompt": "p [sim:503,503,503]"}],
        limits={"max_attempts": 3},
    )
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), options(sim))
    failed = next(rec for rec in read_ledger_lines(summary.ledger) if rec["event"] == "failed")
    assert failed["error"]["class"] == "exhausted" and failed["attempts"] == 3
    assert summary.exit_code == 1


async def test_the_api_key_appears_nowhere(tmp_path, sim_factory):
    key = "sk-secret-DO-NOT-LEAK-42"
    manifest = simple_job(tmp_path, 3, prompt="p [sim:500,ok]")
    async with sim_factory(SimConfig(api_key=key)) as sim:
        summary = await run(
            load_plan(manifest), RunOptions(base_url=sim.base_url, api_key=key, backoff_base_s=0.01)
        )
    assert summary.exit_code == 0
    for path in (tmp_path / "job-out").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    assert key not in str(summary.to_json())


async def test_a_wrong_key_aborts_with_exit_4_and_says_what_to_fix(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 3)
    async with sim_factory(SimConfig(api_key="sk-right")) as sim:
        summary = await run(
            load_plan(manifest), RunOptions(base_url=sim.base_url, api_key="sk-wrong")
        )
    assert summary.exit_code == 4
    assert any("OPENAI_API_KEY" in m for m in summary.messages)


async def test_an_input_gone_after_validation_fails_its_item_with_the_reason(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 3)
    plan = load_plan(manifest)
    (tmp_path / "images" / "img001.png").unlink()
    async with sim_factory() as sim:
        summary = await run(plan, options(sim))
        stats = await sim.stats()
    assert summary.exit_code == 1 and summary.stats.succeeded == 2
    assert stats["requests"] == 2
    failed = next(rec for rec in read_ledger_lines(plan.ledger) if rec["event"] == "failed")
    assert failed["item"] == "sku-001" and "cannot read the input" in failed["error"]["message"]


async def test_an_output_folder_that_cannot_be_made_is_a_usage_error(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 2, output={"dir": "out"}, ledger="state/ledger.jsonl")
    plan = load_plan(manifest)
    (tmp_path / "out").write_text("a file where the output folder should be")
    async with sim_factory() as sim:
        with pytest.raises(UsageError, match="output folder"):
            await run(plan, options(sim))
        assert (await sim.stats())["requests"] == 0


async def test_a_ledger_that_cannot_be_opened_is_a_usage_error(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 1, output={"dir": "out"})
    plan = load_plan(manifest)
    (tmp_path / "out").write_text("a file where the output folder should be")
    async with sim_factory() as sim:
        with pytest.raises(UsageError, match="ledger"):
            await run(plan, options(sim))


async def test_an_output_that_cannot_be_written_is_refused_before_anything_is_paid(
    tmp_path, sim_factory
):
    manifest = simple_job(tmp_path, 4, output={"dir": "out", "name": "{id}/edit"})
    plan = load_plan(manifest)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sku-002").write_text("a file where a folder should be")
    async with sim_factory() as sim:
        with pytest.raises(ManifestError) as caught:
            await run(plan, options(sim, concurrency=1))
        assert (await sim.stats())["requests"] == 0
    assert caught.value.problems[0].where == "items[2] (sku-002)"
    assert "is a file" in caught.value.problems[0].message
    with pytest.raises(ManifestError):  # the dry run says the same
        await run(plan, options(sim, dry_run=True))


async def test_an_output_that_fails_to_write_aborts_with_exit_4_and_keeps_its_cost(
    tmp_path, sim_factory
):
    manifest = simple_job(tmp_path, 4, output={"dir": "out", "name": "{id}/edit"})
    plan = load_plan(manifest)

    class BlockWhenStarted:  # after the run's checks, before sku-002's answer comes
        def started(self, stats) -> None:
            (tmp_path / "out" / "sku-002").write_text("a file where a folder should be")

        def update(self, stats) -> None: ...
        def warning(self, text) -> None: ...
        def finished(self, summary) -> None: ...

    async with sim_factory(SimConfig(latency_s=0.2)) as sim:
        summary = await run(plan, options(sim, concurrency=1, observer=BlockWhenStarted()))
    assert summary.exit_code == 4
    assert any("cannot write outputs" in m for m in summary.messages)
    lines = read_ledger_lines(plan.ledger)
    failed = next(rec for rec in lines if rec["event"] == "failed")
    assert failed["item"] == "sku-002" and failed["error"]["class"] == "fatal"
    # The answer was billed though its output could not be written: its cost is on the line.
    assert failed["cost_usd"] > 0 and failed["usage"]
    spend = sum(rec.get("cost_usd") or 0 for rec in lines if rec["event"] != "run_finished")
    assert round(summary.spent_total_usd, 6) == round(spend, 6)


async def test_resume_decides_done_items_without_rereading_their_inputs(tmp_path, sim_factory):
    from pipeline.core.fingerprint import DigestCache
    from pipeline.ledger.resume import classify
    from pipeline.ledger.status import read_job_state

    manifest = simple_job(tmp_path, 5)
    plan = load_plan(manifest)
    async with sim_factory() as sim:
        await run(plan, options(sim))
    state, _ = read_job_state(plan)
    cache = DigestCache(base=plan.manifest_path.parent)
    result = classify(plan.items, state, cache, plan.output.dir)
    assert len(result.done) == 5 and cache.hashed == 0
    make_image(tmp_path / "images" / "img003.png", color=(9, 9, 9))  # a real edit is noticed
    result = classify(plan.items, state, cache, plan.output.dir)
    assert [item.id for item in result.pending] == ["sku-003"] and cache.hashed == 1
