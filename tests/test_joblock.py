"""The job's lock: runs of one job never overlap whatever their shard options, shards of one
count run side by side, and the lock files are gone when the runs end."""

from __future__ import annotations

import os

import pytest
from helpers import simple_job

from pipeline.core.errors import LedgerLocked
from pipeline.engine.runner import RunOptions, run
from pipeline.ledger.joblock import JobLock
from pipeline.ledger.shards import Shard
from pipeline.manifest.load import load_plan


def shard(text: str) -> Shard:
    return Shard.parse(text)


def test_a_plain_run_and_a_shard_run_of_one_job_exclude_each_other(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    plain = JobLock.acquire(ledger)
    with pytest.raises(LedgerLocked, match=rf"a run of the whole job \(pid {os.getpid()}"):
        JobLock.acquire(ledger, shard("0/2"))
    plain.release()
    part = JobLock.acquire(ledger, shard("0/2"))
    with pytest.raises(LedgerLocked, match=r"shard 0/2 \(pid \d+ on host .*\) of this job"):
        JobLock.acquire(ledger)
    part.release()


def test_shards_of_one_count_run_side_by_side_but_each_once(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    held = [JobLock.acquire(ledger, shard(f"{k}/3")) for k in range(3)]
    with pytest.raises(LedgerLocked, match="shard 1/3 is already running"):
        JobLock.acquire(ledger, shard("1/3"))
    with pytest.raises(LedgerLocked, match="shards of another count share items"):
        JobLock.acquire(ledger, shard("0/2"))
    for lock in held:
        lock.release()
    assert not list(tmp_path.glob("*.lock"))  # the last one out removes the job's lock too
    JobLock.acquire(ledger, shard("0/2")).release()
    JobLock.acquire(ledger).release()
    assert not list(tmp_path.glob("*.lock"))


def test_the_shared_lock_file_stays_while_another_shard_holds_it(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    first, second = JobLock.acquire(ledger, shard("0/2")), JobLock.acquire(ledger, shard("1/2"))
    first.release()
    assert (tmp_path / "ledger.jsonl.lock").exists()
    with pytest.raises(LedgerLocked):
        JobLock.acquire(ledger)  # shard 1/2 still runs
    second.release()
    assert not list(tmp_path.glob("*.lock"))


def test_a_lock_file_left_by_a_killed_run_means_nothing(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    (tmp_path / "ledger.jsonl.lock").write_text('{"pid": 999999, "host": "gone"}')
    (tmp_path / "ledger.shard-0-of-2.jsonl.lock").write_text("")
    JobLock.acquire(ledger, shard("1/2")).release()
    JobLock.acquire(ledger).release()


async def test_a_run_is_refused_while_a_shard_of_its_job_runs_and_leaves_no_lock_file(
    tmp_path, sim_factory
):
    plan = load_plan(simple_job(tmp_path, 2))
    async with sim_factory() as sim:
        options = RunOptions(base_url=sim.base_url, api_key="sk-test")
        held = JobLock.acquire(plan.ledger, shard("0/2"))
        try:
            with pytest.raises(LedgerLocked, match="shard 0/2"):
                await run(plan, options)
        finally:
            held.release()
        assert (await sim.stats())["requests"] == 0
        summary = await run(plan, options)
    assert summary.exit_code == 0
    assert not list(plan.ledger.parent.glob("*.lock"))
