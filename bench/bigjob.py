"""Scenario 5 of issue 5: a 100,000-item job. Validate-and-plan time and peak RSS of an explicit
list and of a glob over 100,000 files, each in a fresh process; and a resume whose ledger holds
100,000 succeeded items: time from process start to the simulator's first request; and the
same for a fresh 500-item job (start-up).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench import bigledger
from bench.figures import Result, at_most, ratio
from bench.simproc import SimProcess
from bench.worker import launch
from bench.workload import KEY, dump


def _plan_figures(manifest: Path, folder: Path) -> tuple[dict, dict]:
    spec = dump({"manifest": str(manifest)}, folder)
    return launch("plan", spec), launch("plan-floor", spec)


STARTUP_ITEMS = 500


def big_job(count: int = 100_000) -> Result:
    """Scenario 5 at `count` items (100,000 by default; fewer for --quick and the tests)."""
    scale = f"{count:,} items"
    startup = min(count, STARTUP_ITEMS)
    result = Result("5 big job")
    job = bigledger.ensure(count)
    folder = job.folder / "measure"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name, manifest in (("explicit list", job.explicit), ("glob", job.globbed)):
        plan, floor = _plan_figures(manifest, folder)
        result.add(
            f"validate+plan time, {name}, {scale}",
            f"{plan['wall_s']:.2f} s",
            reference=f"{floor['wall_s']:.2f} s (libyaml + stat)",
            ratio=ratio(plan["wall_s"], floor["wall_s"]),
            target="<= 10 s",
            verdict=at_most(plan["wall_s"], 10, " s"),
        )
        result.add(
            f"validate+plan peak RSS, {name}, {scale}",
            f"{plan['peak_rss_mb']:.0f} MB",
            reference=f"{floor['peak_rss_mb']:.0f} MB (libyaml + stat)",
            target="<= 300 MB",
            verdict=at_most(plan["peak_rss_mb"], 300, " MB"),
        )
        result.raw[name] = {"plan": plan, "floor": floor}
    with SimProcess({"seed": 5}) as sim:
        fresh = _timed_run(sim, bigledger.single(job))
        resumed = _timed_run(sim, bigledger.reset_resume(job))
        started = _timed_run(sim, bigledger.fresh(job, startup), requests=startup)
    result.add(
        f"resume to first request, {scale} done",
        f"{resumed['first_request_s']:.2f} s",
        reference=f"{fresh['first_request_s']:.2f} s (1-item job)",
        ratio=ratio(resumed["first_request_s"], fresh["first_request_s"]),
        target="<= 3 s",
        verdict=at_most(resumed["first_request_s"], 3, " s"),
    )
    result.add(
        f"start-up to first request, fresh {startup}-item job",
        f"{started['first_request_s']:.2f} s",
        reference=f"{fresh['first_request_s']:.2f} s (1-item job)",
        ratio=ratio(started["first_request_s"], fresh["first_request_s"]),
        target="<= 1 s",
        verdict=at_most(started["first_request_s"], 1, " s"),
    )
    result.notes += [
        f"inputs: {count:,} 8x8 PNGs made once under {job.folder}; "
        "plan figures: `load_plan` (files checked) in a fresh process, its time without the "
        "imports, its peak RSS (VmHWM, see procstat.py) with them (about 40 MB); reference: "
        "loading the same YAML with PyYAML's libyaml loader and stat-ing every input",
        f"resume: a synthetic ledger of {count:,} `succeeded` lines whose keys, inputs and "
        "outputs the runner's own resume code accepts (checked when it is written; tiny real "
        f"output files on disk), and {count + 1:,} items, one new; `editbatch run` took "
        f"{resumed['process_s']:.2f} s in all, peak RSS {resumed['peak_rss_mb']:.0f} MB "
        f"(the 1-item job: {fresh['process_s']:.2f} s, {fresh['peak_rss_mb']:.0f} MB)",
        f"start-up: `editbatch run` of a new {startup}-item job (no ledger; the first "
        f"{startup} of those inputs, no rate set, so the gate's first request is sent "
        "at once), from process start to the simulator's first request",
    ]
    result.raw["resume"] = {"resumed": resumed, "fresh": fresh}
    result.raw["startup"] = started
    return result


def _timed_run(sim: SimProcess, manifest: Path, *, requests: int = 1) -> dict:
    """`editbatch run` in a fresh process that should send `requests` requests: from its
    start to the simulator's first request, then to its end, and its peak RSS."""
    argv = ["run", str(manifest), "--base-url", sim.base_url, "--progress", "none"]
    spec = dump({"argv": argv, "env": {"OPENAI_API_KEY": KEY}}, manifest.parent)
    sim.reset()
    reset_at = time.monotonic()
    started = time.monotonic()
    figures = launch("cli", spec)
    ended = time.monotonic()
    arrivals = sim.stats()["arrivals"]
    if figures["exit_code"] != 0 or len(arrivals) != requests:
        raise RuntimeError(
            f"editbatch run {manifest} exited {figures['exit_code']} after "
            f"{len(arrivals)} request(s), where {requests} new item(s) should have made as "
            f"many; if the runner's keys changed, delete {manifest.parent} to make the job again"
        )
    # The simulator counts arrivals from its reset, which came just before the start.
    figures["first_request_s"] = arrivals[0] - (started - reset_at)
    figures["process_s"] = ended - started
    return figures
