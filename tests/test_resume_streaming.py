"""A resume with new items sends them while the items with ledger history are classified, then
the ones of those still to run; nothing twice, the counts as if everything had been classified
first, and every check made before an item is sent."""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.request

import pytest
from helpers import make_image, read_ledger_lines, simple_job, write_manifest

from pipeline.cli.progress import PlainProgress
from pipeline.core.errors import ManifestError
from pipeline.core.plan import Item
from pipeline.engine import session
from pipeline.engine.pool import Feed
from pipeline.engine.runner import RunControl, RunOptions, run
from pipeline.ledger.resume import triage
from pipeline.ledger.scan import ResumeState
from pipeline.manifest.load import load_plan
from pipeline.simulator import SimConfig


def options(sim, **kw) -> RunOptions:
    return RunOptions(base_url=sim.base_url, api_key="sk-test-key-123", backoff_base_s=0.01, **kw)


def requests_seen(sim) -> int:
    """The simulator's request count, from a thread (the simulator runs on the test's loop)."""
    with urllib.request.urlopen(f"{sim.root}/_sim/stats", timeout=5) as response:
        return json.load(response)["requests"]


def add_items(tmp_path, count: int, new: int) -> None:
    """The job of simple_job(tmp_path, count) with `new` items appended to its manifest."""
    items = [
        {"id": f"sku-{i:03d}", "image": f"images/img{i:03d}.png", "prompt": "white background"}
        for i in range(count)
    ]
    for i in range(new):
        make_image(tmp_path / "new" / f"n{i}.png", color=(9, i, 9))
        items.append({"id": f"new-{i}", "image": f"new/n{i}.png", "prompt": "white background"})
    write_manifest(tmp_path, items)


async def test_new_items_are_sent_while_the_items_with_history_are_classified(
    tmp_path, sim_factory, monkeypatch
):
    manifest = simple_job(tmp_path, 5)
    async with sim_factory() as sim:
        assert (await run(load_plan(manifest), options(sim))).exit_code == 0
        add_items(tmp_path, 5, new=2)
        make_image(tmp_path / "images" / "img001.png", color=(1, 2, 3))  # sku-001 runs again
        (tmp_path / "job-out" / "sku-003.png").unlink()  # and so does sku-003
        seen_while_classifying: list[int] = []
        real_classify = session.classify

        def classify_after_a_request(items, *args, **kwargs):
            # Classification waits (up to 5 s) for a request: one comes only if the new items
            # are sent without waiting for it.
            deadline = time.monotonic() + 5
            while requests_seen(sim) == 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            seen_while_classifying.append(requests_seen(sim) - 5)
            return real_classify(items, *args, **kwargs)

        monkeypatch.setattr(session, "classify", classify_after_a_request)
        log = io.StringIO()
        summary = await run(
            load_plan(manifest, check_files=False),
            options(sim, concurrency=2, observer=PlainProgress(log)),
        )
        total = (await sim.stats())["requests"]
    assert seen_while_classifying and seen_while_classifying[0] >= 1
    assert summary.exit_code == 0
    stats = summary.stats
    assert (stats.total, stats.done_before, stats.succeeded, stats.pending) == (7, 3, 4, 0)
    assert total == 5 + 4  # the two new items and the two to run again, each once
    lines = read_ledger_lines(summary.ledger)
    this_run = [rec for rec in lines if rec.get("run") == summary.run_id]
    sent = sorted(rec["item"] for rec in this_run if rec["event"] == "succeeded")
    assert sent == ["new-0", "new-1", "sku-001", "sku-003"]
    finished = this_run[-1]
    assert finished["event"] == "run_finished" and finished["counts"]["done"] == 7
    said = log.getvalue()  # first what is sent at once, then the counts once they are known
    assert "7 item(s): 2 new, sent now; 5 with ledger history being checked" in said
    assert said.index("sent now") < said.index("3 done before, 0 failed before")


async def test_a_problem_in_an_item_with_history_stops_dispatch_and_refuses(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 3)
    async with sim_factory() as sim:
        assert (await run(load_plan(manifest), options(sim))).exit_code == 0
        add_items(tmp_path, 3, new=1)
        (tmp_path / "images" / "img002.png").unlink()  # sku-002 must run again, and cannot
        with pytest.raises(ManifestError) as caught:
            await run(load_plan(manifest, check_files=False), options(sim, concurrency=1))
        total = (await sim.stats())["requests"]
    assert caught.value.problems[0].where.startswith("items[2] (sku-002)")
    assert total <= 3 + 1  # sku-002 was never sent; new-0 may have been
    finished = read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")[-1]
    assert (finished["event"], finished["reason"], finished["exit_code"]) == (
        "run_finished",
        "invalid",
        2,
    )


async def test_a_resume_without_new_items_still_classifies_before_it_sends(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 3)
    async with sim_factory() as sim:
        assert (await run(load_plan(manifest), options(sim))).exit_code == 0
        (tmp_path / "images" / "img001.png").unlink()
        with pytest.raises(ManifestError):
            await run(load_plan(manifest, check_files=False), options(sim))
        assert (await sim.stats())["requests"] == 3  # refused before anything was sent


def item(name: str) -> Item:
    return Item(id=name, images=(), prompt="p", params={"model": "gpt-image-1"})


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], ("a b c", "", "")),
        ([{"event": "succeeded", "item": "b"}], ("a c", "b", "")),
        ([{"event": "failed", "item": "c"}], ("a b", "c", "")),
        (
            [{"event": "failed", "item": "a"}, {"event": "succeeded", "item": "a"}],
            ("b c", "a", ""),
        ),
        (
            [{"event": "batch_submitted", "batch": "b1", "items": [{"item": "c"}]}],
            ("a b", "", "c"),
        ),
    ],
)
def test_triage_sorts_items_by_ledger_history(lines, expected):
    state = ResumeState.from_records({"v": 1, "ts": "", "run": "r", **rec} for rec in lines)
    fresh, known, in_batch = triage([item("a"), item("b"), item("c")], state)
    got = tuple(" ".join(i.id for i in group) for group in (fresh, known, in_batch))
    assert got == expected


async def test_the_feed_gives_each_item_once_the_later_ones_after_the_first():
    later: asyncio.Future[list[Item]] = asyncio.get_running_loop().create_future()
    feed = Feed([item("a"), item("b")], later)
    taken: list[str] = []

    async def worker() -> None:
        while True:
            got = feed.next_now()
            if got is None:
                if not feed.waiting:
                    return
                await feed.wait()
                continue
            taken.append(got.id)
            await asyncio.sleep(0)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    await asyncio.sleep(0.01)
    assert sorted(taken) == ["a", "b"] and feed.waiting
    later.set_result([item("c"), item("d"), item("e")])
    await asyncio.gather(*workers)
    assert taken[:2] == ["a", "b"] and sorted(taken[2:]) == ["c", "d", "e"]


async def test_a_stop_while_the_history_is_checked_keeps_the_counts_right(
    tmp_path, sim_factory, monkeypatch
):
    manifest = simple_job(tmp_path, 4)
    async with sim_factory(SimConfig(latency_s=0.3)) as sim:
        assert (await run(load_plan(manifest), options(sim))).exit_code == 0
        add_items(tmp_path, 4, new=3)
        (tmp_path / "job-out" / "sku-000.png").unlink()  # would run again: the stop comes first
        loop = asyncio.get_running_loop()
        control = RunControl()
        real_classify = session.classify

        def stop_then_classify(items, *args, **kwargs):
            deadline = time.monotonic() + 5
            while requests_seen(sim) == 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            loop.call_soon_threadsafe(control.request_stop, "SIGTERM")
            time.sleep(0.05)  # the pool has stopped dispatching before this is done
            return real_classify(items, *args, **kwargs)

        monkeypatch.setattr(session, "classify", stop_then_classify)
        summary = await run(
            load_plan(manifest, check_files=False),
            options(sim, concurrency=1, control=control),
        )
        sent = (await sim.stats())["requests"] - 4
    stats = summary.stats
    assert summary.reason == "interrupted" and summary.exit_code == 143
    assert sent == 1 and stats.succeeded == 1  # the one in flight finished; nothing else went
    assert (stats.done_before, stats.pending, stats.checking) == (3, 3, 0)
    assert stats.done_before + stats.succeeded + stats.pending == stats.total == 7
