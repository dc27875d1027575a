"""Every answer the provider billed is counted (CONTRACT sections 3-5): unusable 200s, usage
in the wrong shape, hostile usage, short answers and outputs that cannot be written. Runs
against the hostile-answer fake (tests/hostile.py), which keeps the real bill."""

from __future__ import annotations

import math

import hostile
from helpers import make_image, read_ledger_lines, write_manifest

from pipeline.engine.runner import RunOptions, run
from pipeline.manifest.load import load_plan
from pipeline.report.aggregate import load_sources, summarize

BILLED_EVENTS = ("succeeded", "attempt_failed", "failed")


def job(folder, scripts: dict[str, str], **blocks):
    items = []
    for name, script in scripts.items():
        make_image(folder / f"{name}.png")
        items.append({"id": name, "image": f"{name}.png", "prompt": f"p [hostile:{script}]"})
    return load_plan(write_manifest(folder, items, **blocks))


def options(base_url: str, **kw) -> RunOptions:
    return RunOptions(base_url=base_url, api_key="sk-test-key-123", backoff_base_s=0.001, **kw)


def ledger_spend(lines: list[dict]) -> float:
    return math.fsum(r.get("cost_usd") or 0.0 for r in lines if r["event"] in BILLED_EVENTS)


async def test_every_billed_answer_is_counted_in_ledger_summary_and_report(tmp_path):
    scripts = {
        "corrupt": "corrupt,ok",
        "truncated": "truncated,ok",
        "chat": "chatusage",
        "empty": "emptyusage",
        "nodetails": "nodetails",
        "negative": "negative",
        "strings": "strings",
        "nan": "nan",
        "baddetails": "baddetails",
        "nousage": "nousage",
        "plain": "ok",
    }
    plan = job(tmp_path, scripts)
    async with hostile.serving() as (base_url, fake):
        summary = await run(plan, options(base_url))
    assert summary.exit_code == 0, summary.messages
    lines = read_ledger_lines(plan.ledger)
    spend = ledger_spend(lines)
    # Recorded spend never falls below the bill (flagged worst-case charges only over-count).
    assert spend >= fake.billed_usd - 1e-9
    assert all((r.get("cost_usd") or 0) >= 0 for r in lines)
    finished = next(r for r in lines if r["event"] == "run_finished")
    assert finished["cost_usd"] == round(spend, 6) == round(summary.cost_usd, 6)
    report = summarize(load_sources(plan.ledger)[1])
    assert round(report.cost_usd, 6) == round(spend, 6)
    assert report.cost_not_kept_usd > 0

    billed_failures = [r for r in lines if r["event"] == "attempt_failed"]
    assert {r["item"] for r in billed_failures} == {"corrupt", "truncated"}
    corrupt = next(r for r in billed_failures if r["item"] == "corrupt")
    assert corrupt["usage"] == hostile.BILLED_USAGE and "cost_estimated" not in corrupt
    assert corrupt["cost_usd"] == round(hostile.BILLED_USD, 8)
    cut = next(r for r in billed_failures if r["item"] == "truncated")
    assert cut["cost_estimated"] is True and cut["cost_usd"] >= hostile.BILLED_USD

    done = {r["item"]: r for r in lines if r["event"] == "succeeded"}
    for name in ("chat", "empty", "negative", "strings", "nan", "nodetails", "baddetails"):
        assert done[name]["cost_estimated"] is True, name
        assert done[name]["cost_usd"] >= hostile.BILLED_USD, name
    assert "cost_estimated" not in done["plain"]
    assert done["nan"]["usage"] == {
        "unreadable": "the usage held values JSON cannot carry (NaN, infinity)"
    }


async def test_corrupt_billed_answers_cannot_take_the_bill_past_the_budget(tmp_path):
    scripts = {f"i{n}": "corrupt,corrupt,corrupt,corrupt,corrupt,ok" for n in range(6)}
    plan = job(tmp_path, scripts, budget={"run_usd": 0.05}, limits={"max_attempts": 8})
    async with hostile.serving() as (base_url, fake):
        summary = await run(plan, options(base_url, concurrency=3))
    spend = ledger_spend(read_ledger_lines(plan.ledger))
    assert summary.exit_code == 3  # the budget stopped it, items pending
    assert fake.billed_usd <= 0.05 + 1e-9
    assert fake.billed_usd - 1e-9 <= spend <= 0.05 + 1e-9


async def test_a_usage_far_above_the_worst_case_is_counted_and_flagged(tmp_path):
    plan = job(tmp_path, {"huge": "huge", "later": "ok"}, budget={"run_usd": 1.0})
    async with hostile.serving() as (base_url, _):
        summary = await run(plan, options(base_url, concurrency=1))
    lines = read_ledger_lines(plan.ledger)
    huge = next(r for r in lines if r["event"] == "succeeded")
    assert huge["usage_suspect"] is True and huge["cost_usd"] > 1e6
    assert summary.exit_code == 3  # counted: nothing else fits the budget
    report = summarize(load_sources(plan.ledger)[1])
    assert report.usage_suspect == 1


async def test_an_answer_with_fewer_images_than_n_is_kept_and_said(tmp_path):
    plan = job(tmp_path, {"short": "fewer"}, defaults={"model": "gpt-image-1", "n": 3})
    async with hostile.serving() as (base_url, fake):
        summary = await run(plan, options(base_url))
    assert summary.exit_code == 0 and fake.requests == 1
    done = next(r for r in read_ledger_lines(plan.ledger) if r["event"] == "succeeded")
    assert done["returned"] == 1 and len(done["outputs"]) == 1
    report = summarize(load_sources(plan.ledger)[1])
    assert report.short_answers == ["short"]
