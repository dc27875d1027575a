"""What a log shows of a run, and the mechanism that bounds memory: an item's bytes live only
while it is being worked on, so at most `concurrency` items are held at once."""

from __future__ import annotations

import io
import re
import weakref

import pytest
from helpers import simple_job

from pipeline.cli.progress import PlainProgress, human_summary
from pipeline.engine import attempts as dispatch
from pipeline.engine.runner import RunOptions, run
from pipeline.manifest.load import load_plan
from pipeline.simulator import SimConfig


async def test_plain_progress_writes_log_lines_without_control_characters(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 6, budget={"run_usd": 1.0})
    stream = io.StringIO()
    async with sim_factory(SimConfig(latency_s=0.05)) as sim:
        summary = await run(
            load_plan(manifest),
            RunOptions(
                base_url=sim.base_url,
                api_key="sk-x",
                observer=PlainProgress(stream, interval_s=0.05),
            ),
        )
    text = stream.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert "6 item(s): 0 done before, 0 failed before, 6 to run" in lines[0]
    assert re.search(
        r"done 6/6, failed 0, pending 0, .* spent \$0\.\d+ \(left \$0\.\d+\)", lines[-1]
    )
    report = human_summary(summary)
    assert "every item is done (exit 0)" in report and "budget left $" in report


@pytest.mark.parametrize("faults", [{}, {"500": 0.15, "truncated": 0.05}])
async def test_at_most_concurrency_items_are_held_in_memory(
    tmp_path, sim_factory, monkeypatch, faults
):
    refs: list[weakref.ref] = []
    peak = 0

    class Tracking(dispatch.Preparer):
        async def prepare(self, item):
            nonlocal peak
            prepared = await super().prepare(item)
            refs.append(weakref.ref(prepared))
            peak = max(peak, sum(1 for ref in refs if ref() is not None))
            return prepared

    monkeypatch.setattr(dispatch, "Preparer", Tracking)
    manifest = simple_job(tmp_path, 40, limits={"concurrency": 3})
    async with sim_factory(SimConfig(latency_s=0.01, faults=faults, seed=3)) as sim:
        summary = await run(
            load_plan(manifest),
            RunOptions(base_url=sim.base_url, api_key="k", backoff_base_s=0.001),
        )
    assert summary.stats.succeeded == 40
    assert 1 <= peak <= 3


async def test_the_rich_bar_shows_done_in_flight_retries_and_spend(tmp_path, sim_factory):
    from rich.console import Console

    from pipeline.cli.progress import RichProgress

    manifest = simple_job(tmp_path, 4, prompt="p [sim:500,ok]", budget={"run_usd": 1.0})
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=160, color_system=None)
    async with sim_factory() as sim:
        await run(
            load_plan(manifest),
            RunOptions(
                base_url=sim.base_url,
                api_key="sk-x",
                observer=RichProgress(console),
                backoff_base_s=0.001,
            ),
        )
    screen = stream.getvalue()
    assert "4/4" in screen and "in flight" in screen and "retries 1" in screen
    assert re.search(r"\$0\.\d{4} \(left \$0\.\d\d\)", screen)
