"""Fault storms and outages against loopback servers: every item done in one run, probes that
do not use up attempts, exit 75 after max_outage_s, long retry-afters, and items that never got
an answer left pending. Time is scaled down (probe caps of a fraction of a second)."""

from __future__ import annotations

import asyncio
import io
import random
import time
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from helpers import make_image, read_ledger_lines, write_manifest

from pipeline.cli.progress import PlainProgress, hold_text
from pipeline.engine.runner import RunOptions, run
from pipeline.engine.summary import RunStats
from pipeline.manifest.load import load_plan
from pipeline.simulator import SimConfig

TRANSIENT = ("429:0.05", "500", "502", "503", "504", "truncated", "corrupt", "reset")


def options(base_url: str, **kw) -> RunOptions:
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("probe_cap_s", 0.1)
    kw.setdefault("seed", 7)
    return RunOptions(base_url=base_url, api_key="sk-test", **kw)


def job(folder, count: int, prompts=None, **limits):
    items = []
    for i in range(count):
        make_image(folder / f"i{i:03d}.png", color=(i * 3 % 256, 60, 90))
        prompt = prompts[i] if prompts else f"item {i}"
        items.append({"id": f"i{i:03d}", "image": f"i{i:03d}.png", "prompt": prompt})
    return load_plan(write_manifest(folder, items, limits=limits))


async def test_a_fault_soup_is_all_done_in_one_run(tmp_path, sim_factory):
    rng = random.Random(11)
    prompts = []
    for i in range(80):
        faults = rng.sample(TRANSIENT, rng.randint(0, 3))
        prompts.append(f"item {i}" + (f" [sim:{','.join(faults)}]" if faults else ""))
    # A rate the client knows: the scripted 429s then pause the pool without steering the
    # adaptive rate controller (whose own behaviour the rate tests and the benchmark show).
    plan = job(tmp_path, 80, prompts, concurrency=16, max_attempts=5, requests_per_minute=6000)
    async with sim_factory() as sim:
        summary = await run(plan, options(sim.base_url))
        stats = await sim.stats()
    assert summary.exit_code == 0, summary.messages
    assert summary.stats.succeeded == 80 and summary.stats.pending == 0
    assert stats["requests"] >= 80 + sum(p.count(",") + 1 for p in prompts if "[sim:" in p)
    lines = read_ledger_lines(plan.ledger)
    assert not [line for line in lines if line["event"] == "failed"]


class Switch:
    """A proxy in front of the simulator that answers 503 to everything while `down`; it goes
    down when request number `down_at` arrives, for `down_s` seconds. It hangs up without a
    word on requests whose body holds `hang_up`."""

    def __init__(self, upstream: str, down_at: int, down_s: float, hang_up: bytes | None = None):
        self.upstream, self.down_at, self.down_s = upstream, down_at, down_s
        self.hang_up = hang_up
        self.down = False
        self.arrivals: list[tuple[float, bool]] = []
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hang_up is not None and self.hang_up in body:
            request.transport.close()  # no status, no body: the API never answered
            return web.Response(status=500)
        if len(self.arrivals) + 1 == self.down_at:
            self.down = True
            asyncio.get_running_loop().call_later(self.down_s, self._up)
        self.arrivals.append((time.monotonic(), self.down))
        if self.down:
            error = {"message": "The server is overloaded.", "type": "server_error"}
            return web.json_response({"error": error}, status=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED}
        async with self.session.post(
            f"{self.upstream}/images/edits", data=body, headers=headers
        ) as answer:
            data = await answer.read()
            return web.Response(body=data, status=answer.status, content_type="application/json")

    def _up(self) -> None:
        self.down = False

    def during_outage(self) -> int:
        return sum(1 for _, down in self.arrivals if down)


PASSED = {"content-type", "authorization"}


@asynccontextmanager
async def switch(upstream: str, down_at: int, down_s: float, hang_up: bytes | None = None):
    proxy = Switch(upstream, down_at, down_s, hang_up)
    app = web.Application()
    app.router.add_post("/v1/images/edits", proxy.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        proxy.session = session
        try:
            yield proxy, f"http://127.0.0.1:{port}/v1"
        finally:
            await runner.cleanup()


async def test_an_outage_mid_run_is_waited_out_with_few_requests(tmp_path, sim_factory):
    # 40 items, 8 in flight; at the 12th request every answer is a 503 for 1.5 s. Probes are
    # at most 0.1 s apart here (60 s in production): the 1.5 s stand for 15 probe caps, as a
    # 60 s outage does... for 15 s caps. Items have 3 attempts: many more probes than that fail.
    plan = job(tmp_path, 40, concurrency=8, max_attempts=3)
    async with (
        sim_factory(SimConfig(latency_s=0.02)) as sim,
        switch(sim.base_url, 12, 1.5) as (
            proxy,
            url,
        ),
    ):
        summary = await run(plan, options(url))
    assert summary.exit_code == 0, summary.messages
    assert summary.stats.succeeded == 40
    during = proxy.during_outage()
    # the requests in flight when it began, then about one probe per 0.05 s (half the cap)
    assert 8 < during <= 8 + 45, during
    lines = read_ledger_lines(plan.ledger)
    assert not [line for line in lines if line["event"] == "failed"]
    assert max(line["attempt"] for line in lines if line["event"] == "succeeded") > 3


async def test_an_outage_longer_than_max_outage_s_exits_75_and_a_rerun_finishes(
    tmp_path, sim_factory
):
    plan = job(tmp_path, 20, concurrency=4, max_attempts=3, max_outage_s=0.4)
    log = io.StringIO()
    async with sim_factory(SimConfig(latency_s=0.01)) as sim:
        async with switch(sim.base_url, 6, 30.0) as (proxy, url):
            first = await run(plan, options(url, observer=PlainProgress(log)))
            assert proxy.during_outage() < 4 + 20
        second = await run(plan, options(sim.base_url))  # the provider is back
    assert first.exit_code == 75 and first.reason == "outage"
    assert 0 < first.stats.pending < 20 and first.stats.failed == 0
    assert any("max_outage_s" in m and "503" in m for m in first.messages)
    finished = [line for line in read_ledger_lines(plan.ledger) if line["event"] == "run_finished"]
    assert finished[0]["exit_code"] == 75
    assert second.exit_code == 0 and second.stats.succeeded == first.stats.pending
    said = [line for line in log.getvalue().splitlines() if "provider failing since" in line]
    assert said and "probing every" in said[0] and "503" in said[0]


async def test_a_retry_after_longer_than_max_outage_s_stops_and_says_when(tmp_path, sim_factory):
    prompts = ["come back tomorrow [sim:429:80000]"] + [f"item {i}" for i in range(1, 6)]
    plan = job(tmp_path, 6, prompts, concurrency=1, max_outage_s=60)
    async with sim_factory() as sim:
        started = time.monotonic()
        summary = await run(plan, options(sim.base_url))
    assert time.monotonic() - started < 5
    assert summary.exit_code == 75 and summary.stats.pending == 6
    said = next(m for m in summary.messages if "called again" in m)
    assert "80000 s" in said and "max_outage_s (60 s)" in said


async def test_items_that_never_got_an_answer_stay_pending_for_the_next_run(tmp_path, sim_factory):
    prompts = ["fine", "hang up", "fine too", "fine three"]
    plan = job(tmp_path, 4, prompts, concurrency=1, max_attempts=2)
    async with sim_factory() as sim:
        async with switch(sim.base_url, 0, 0, hang_up=b"hang up") as (_, url):
            first = await run(plan, options(url))
        second = await run(plan, options(sim.base_url))
    assert first.exit_code == 1 and first.stats.succeeded == 3 and first.stats.failed == 0
    assert first.stats.pending == 1
    said = next(m for m in first.messages if "got no answer from the API" in m)
    assert "connection reset" in said and "stay pending" in said
    lines = read_ledger_lines(plan.ledger)
    assert not [line for line in lines if line["event"] == "failed"]
    assert [line["attempt"] for line in lines if line["event"] == "attempt_failed"] == [1, 2]
    assert second.exit_code == 0 and second.stats.succeeded == 1


def test_the_display_says_what_holds_dispatch_back():
    stats = RunStats()
    assert hold_text(stats, now=1000.0) == ""
    stats.paused_until = 1002.0  # a short pause is not worth a word
    assert hold_text(stats, now=1000.0) == ""
    stats.paused_until = 1012.0
    assert hold_text(stats, now=1000.0) == "waiting for the rate limit (12 s)"
    stats.outage_since, stats.probe_every_s = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1)), 16.0
    assert hold_text(stats, now=1000.0) == "provider failing since 03:04:05, probing every 16 s"


def test_the_plain_log_says_when_a_long_pause_or_an_outage_begins_and_ends():
    log = io.StringIO()
    progress = PlainProgress(log)
    stats = RunStats()
    stats.paused_until = time.time() + 80000  # a retry-after of most of a day
    progress.update(stats)
    progress.update(stats)  # said once, not at every update
    stats.paused_until = None
    stats.outage_since, stats.probe_every_s, stats.outage_cause = time.time(), 4.0, "503: down"
    progress.update(stats)
    stats.outage_since = None
    progress.update(stats)
    lines = [line.split("editbatch: ", 1)[1] for line in log.getvalue().splitlines()]
    assert len(lines) == 3
    assert lines[0].startswith("waiting for the rate limit (8000")
    assert "probing every 4 s (last: 503: down)" in lines[1]
    assert lines[2] == "provider answering again: dispatch ramps back up"
