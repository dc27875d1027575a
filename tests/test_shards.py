"""Sharded runs (`run --shard K/N`): every item exactly once, whatever N, and one report."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from helpers import read_ledger_lines, simple_job

from pipeline.engine.runner import RunOptions, run
from pipeline.ledger.shards import Shard, job_ledgers, select_shard
from pipeline.manifest.load import load_plan
from pipeline.report.aggregate import load_sources, summarize
from pipeline.simulator import SimConfig


@pytest.mark.parametrize(
    ("text", "shard"), [("0/3", Shard(0, 3)), ("2/3", Shard(2, 3)), ("0/1", Shard(0, 1))]
)
def test_shard_parse(text, shard):
    assert Shard.parse(text) == shard


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "-1/2", "0/0", "1/0"])
def test_shard_parse_refuses_nonsense(text):
    with pytest.raises(ValueError, match="K/N"):
        Shard.parse(text)


def test_shards_partition_the_items_whatever_their_order(tmp_path):
    plan = load_plan(simple_job(tmp_path, 40), check_files=False)
    items = list(plan.items)
    parts = [select_shard(items, Shard(k, 3)) for k in range(3)]
    ids = sorted(i.id for part in parts for i in part)
    assert ids == sorted(i.id for i in items)  # each item in exactly one shard
    assert all(parts)  # 40 items: every shard gets some
    reordered = [select_shard(list(reversed(items)), Shard(k, 3)) for k in range(3)]
    assert [{i.id for i in p} for p in reordered] == [{i.id for i in p} for p in parts]


def test_a_shard_takes_its_share_of_rate_and_budgets():
    shard = Shard(1, 4)
    assert shard.share(600, 8.0, 100.0, explicit_rpm=False, explicit_run_usd=False) == (
        150,
        2.0,
        100.0,
    )
    assert shard.share(600, 8.0, None, explicit_rpm=True, explicit_run_usd=True) == (600, 8.0, None)
    assert shard.total_share(100.0, 20.0) == pytest.approx(40.0)  # 20 spent + 80/4


async def _shard_process(manifest, sim, shard, *extra):
    env = dict(os.environ, OPENAI_API_KEY="sk-shard")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline", "run", str(manifest), "--base-url", sim.base_url,
        "--shard", shard, "--progress", "none", "--json", *extra,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode, out, err


async def test_three_shard_processes_in_parallel_finish_every_item_exactly_once(
    tmp_path, sim_factory
):
    manifest = simple_job(tmp_path, 24, limits={"concurrency": 2})
    async with sim_factory(SimConfig(latency_s=0.05)) as sim:
        results = await asyncio.gather(*(_shard_process(manifest, sim, f"{k}/3") for k in range(3)))
        stats = await sim.stats()
    for code, _, err in results:
        assert code == 0, err.decode()
    assert stats["requests"] == 24
    assert len(stats["ok_by_image"]) == 24 and set(stats["ok_by_image"].values()) == {1}
    plan = load_plan(manifest)
    ledgers = job_ledgers(plan.ledger)
    assert len(ledgers) == 3
    done = [
        rec["item"]
        for path in ledgers
        for rec in read_ledger_lines(path)
        if rec["event"] == "succeeded"
    ]
    assert sorted(done) == sorted(item.id for item in plan.items)
    # the job's report reads every shard's ledger and its totals are their sums
    _, records = load_sources([manifest])
    report = summarize(records, plan).to_json()
    assert report["items"]["done"] == 24
    billed = sum(json.loads(out)["cost_usd"] for _, out, _ in results)
    assert report["cost_usd"] == pytest.approx(billed, abs=1e-6)
    assert report["cost_usd"] == pytest.approx(stats["usd"], abs=1e-6)


async def test_three_shards_then_two_redo_nothing_that_is_done(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 18, limits={"concurrency": 2})
    plan = load_plan(manifest)
    key = "sk-shard"
    async with sim_factory() as sim:
        # tonight: only shards 0 and 1 of 3 ran
        for k in (0, 1):
            summary = await run(
                plan, RunOptions(base_url=sim.base_url, api_key=key, shard=Shard(k, 3))
            )
            assert summary.exit_code == 0
        first = (await sim.stats())["requests"]
        # tomorrow: two shards
        results = [
            await run(plan, RunOptions(base_url=sim.base_url, api_key=key, shard=Shard(k, 2)))
            for k in (0, 1)
        ]
        stats = await sim.stats()
    assert all(r.exit_code == 0 for r in results)
    assert 0 < first < 18
    assert stats["requests"] == 18  # the second night sent only what was left
    assert set(stats["ok_by_image"].values()) == {1}
    assert sum(r.stats.done_before for r in results) == first


async def test_shards_split_the_run_budget(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 12, budget={"run_usd": 0.02})
    plan = load_plan(manifest)
    async with sim_factory() as sim:
        summary = await run(
            plan, RunOptions(base_url=sim.base_url, api_key="sk-x", shard=Shard(0, 2))
        )
    assert summary.cost_usd <= 0.01 + 1e-9


def test_a_sharded_dry_run_estimates_only_the_shard_items(tmp_path, capsys):
    from pipeline.cli.main import main

    manifest = simple_job(tmp_path, 30)
    plan = load_plan(manifest)
    code = main(["run", str(manifest), "--dry-run", "--json", "--shard", "1/3"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["pending"] == len(select_shard(list(plan.items), Shard(1, 3)))
