"""`editbatch run` as a scheduler starts it: a real process against the simulator served from
the test's event loop, killed, terminated, run twice at once, and run again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from helpers import read_ledger_lines, simple_job

from pipeline.simulator import SimConfig

KEY = "sk-process-test-key-77"


async def start(manifest, sim, *args, env_key=KEY):
    env = dict(os.environ, OPENAI_API_KEY=env_key, PYTHONUNBUFFERED="1")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline",
        "run",
        str(manifest),
        "--base-url",
        sim.base_url,
        "--progress",
        "plain",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_successes(ledger, count, within_s=20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if ledger.exists():
            lines = ledger.read_text().splitlines()
            if sum('"event":"succeeded"' in line.replace(" ", "") for line in lines) >= count:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} successes within {within_s} s")


async def test_killed_run_resumes_without_paying_twice_for_a_finished_item(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 30, limits={"concurrency": 4})
    ledger = tmp_path / "job-out" / "ledger.jsonl"
    async with sim_factory(SimConfig(latency_s=0.1, jitter_s=0.05)) as sim:
        proc = await start(manifest, sim)
        await wait_for_successes(ledger, 8)
        proc.kill()
        await proc.wait()
        done_first = {
            rec["item"] for rec in read_ledger_lines(ledger) if rec["event"] == "succeeded"
        }
        assert 8 <= len(done_first) < 30
        proc = await start(manifest, sim, "--json")
        out, err = await proc.communicate()
        stats = await sim.stats()
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["items"]["done"] == 30
    lines = read_ledger_lines(ledger)
    done = [rec["item"] for rec in lines if rec["event"] == "succeeded"]
    assert sorted(set(done)) == sorted(f"sku-{i:03d}" for i in range(30))
    assert len(done) == 30  # every item recorded once
    # the second run requested nothing that the first had finished: at most the requests in
    # flight at the kill (concurrency 4) were paid twice
    assert sum(stats["ok_by_image"].values()) <= 30 + 4
    second_run = {
        rec["item"] for rec in lines if rec["event"] == "succeeded" and rec["run"] == summary["run"]
    }
    assert not (second_run & done_first)
    for path in (tmp_path / "job-out").iterdir():
        assert not path.name.endswith(".tmp")


async def test_a_second_run_on_the_same_ledger_is_refused_naming_the_holder(tmp_path, sim_factory):
    # Enough items that the first run is still going when the second has started (a process
    # start takes seconds on a loaded machine).
    manifest = simple_job(tmp_path, 30, limits={"concurrency": 1})
    ledger = tmp_path / "job-out" / "ledger.jsonl"
    async with sim_factory(SimConfig(latency_s=0.3)) as sim:
        first = await start(manifest, sim)
        await wait_for_successes(ledger, 1)
        second = await start(manifest, sim)
        _, err = await second.communicate()
        first.terminate()
        await first.communicate()
    assert second.returncode == 2
    assert f"pid {first.pid}" in err.decode()


async def test_sigterm_drains_requests_in_flight_and_exits_143(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 20, limits={"concurrency": 3})
    ledger = tmp_path / "job-out" / "ledger.jsonl"
    async with sim_factory(SimConfig(latency_s=0.5)) as sim:
        proc = await start(manifest, sim)
        await wait_for_successes(ledger, 3)
        await asyncio.sleep(0.2)  # requests are in flight now
        proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
        stats = await sim.stats()
    assert proc.returncode == 143, err.decode()
    lines = read_ledger_lines(ledger)
    assert lines[-1]["event"] == "run_finished" and lines[-1]["reason"] == "interrupted"
    # every request the server answered 200 was recorded: the drain let them finish
    succeeded = sum(1 for rec in lines if rec["event"] == "succeeded")
    assert succeeded == stats["by_status"].get("200", 0)
    assert succeeded < 20


async def test_an_invalid_manifest_exits_2_and_sends_nothing(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 2)
    text = manifest.read_text().replace("prompt:", "promt:", 1)
    manifest.write_text(text)
    async with sim_factory() as sim:
        proc = await start(manifest, sim)
        _, err = await proc.communicate()
        stats = await sim.stats()
    assert proc.returncode == 2
    assert "promt" in err.decode() and "prompt" in err.decode()
    assert stats["requests"] == 0


async def test_a_missing_key_exits_2_and_says_which_variable(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 1)
    async with sim_factory() as sim:
        proc = await start(manifest, sim, env_key="")
        _, err = await proc.communicate()
        stats = await sim.stats()
    assert proc.returncode == 2
    assert "OPENAI_API_KEY" in err.decode()
    assert stats["requests"] == 0


async def test_the_key_is_not_in_the_logs(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 3, prompt="p [sim:500,ok]")
    async with sim_factory(SimConfig(api_key=KEY)) as sim:
        proc = await start(manifest, sim, "--json")
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert KEY not in out.decode() and KEY not in err.decode()


async def test_a_missing_input_file_exits_2_and_sends_nothing(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 3)
    (tmp_path / "images" / "img001.png").unlink()
    async with sim_factory() as sim:
        proc = await start(manifest, sim)
        _, err = await proc.communicate()
        stats = await sim.stats()
    assert proc.returncode == 2
    assert "img001.png" in err.decode() and "sku-001" in err.decode()
    assert stats["requests"] == 0
