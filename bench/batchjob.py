"""Scenario 7 of issue 14: a 2,000-item job through the simulator's Batch API. Each step in a
fresh process: the submit (read, upload each distinct input once, JSONL, create: exit 5), then,
once the simulator's batch has ended, the collect (download, decode, write every output, one
ledger line each: exit 0). Wall time and peak RSS of each, against the same job run
interactively in the same run (latency 0, so the client is the bottleneck); and the ledger's
USD against the simulator's bill (half price).
"""

from __future__ import annotations

import json
import math
import time

from bench.figures import Result, all_done, at_most, ratio
from bench.measure import client_run
from bench.simproc import SimProcess
from bench.worker import launch
from bench.workload import KEY, Job, dump, input_images, run_dir, write_manifest

MB = 2**20


def batch_job(n: int = 2000, distinct: int = 256, batch_seconds: float = 8.0) -> Result:
    result = Result("7 batch mode")
    images = input_images("small", distinct, n)
    params = {"model": "gpt-image-1", "quality": "low", "size": "1024x1024"}
    job = Job("batch", images, params=params, concurrency=16)
    with SimProcess({"seed": 7, "batch_seconds": batch_seconds}) as sim:
        interactive = client_run("editbatch", job, sim, "s7-interactive")
        interactive_usd = sim.stats()["usd"]
        folder = run_dir("s7-batch")
        manifest = write_manifest(job, folder)
        spec = dump({"manifest": str(manifest), "base_url": sim.base_url, "api_key": KEY}, folder)
        sim.reset()
        submit = launch("batch", spec)
        waited = _wait_for_batches(sim, timeout_s=max(120.0, 20 * batch_seconds))
        collect = launch("batch", spec)
        stats = sim.stats()
    ledger_text = (folder / "out" / "ledger.jsonl").read_text()
    ledger = [json.loads(line) for line in ledger_text.splitlines()]
    spent = math.fsum(
        r.get("cost_usd") or 0.0
        for r in ledger
        if r["event"] in ("succeeded", "attempt_failed", "failed")
    )
    uploads = sum(1 for r in ledger if r["event"] == "file_uploaded" and r["purpose"] != "batch")
    # The output file carries each image in base64: 4/3 of the images, plus the lines' JSON.
    out_file = collect.get("outputs_bytes", 0) * 4 / 3
    scale = f"{n:,} items"
    result.add(
        f"submit time, {scale} ({uploads} distinct inputs uploaded)",
        f"{submit['wall_s']:.2f} s",
        reference=f"{interactive['wall_s']:.2f} s (interactive run, latency 0)",
        ratio=ratio(submit["wall_s"], interactive["wall_s"]),
    )
    result.add(
        f"collect time, {scale}",
        f"{collect['wall_s']:.2f} s",
        reference=f"{interactive['wall_s']:.2f} s (interactive run, latency 0)",
        ratio=ratio(collect["wall_s"], interactive["wall_s"]),
        verdict=all_done(collect["done"], n),
    )
    peak = max(submit["peak_rss_mb"], collect["peak_rss_mb"])
    result.add(
        "peak RSS (submit / collect)",
        f"{submit['peak_rss_mb']:.0f} / {collect['peak_rss_mb']:.0f} MB",
        reference=f"{interactive['peak_rss_mb']:.0f} MB (interactive run)",
        ratio=ratio(peak, interactive["peak_rss_mb"]),
        target="<= 200 MB",
        verdict=at_most(peak, 200, " MB"),
    )
    result.add(
        "ledger USD vs the simulator's bill",
        f"${spent:.4f}",
        reference=f"${stats['usd']:.4f} (simulator, batch price)",
        ratio=ratio(spent, stats["usd"]),
        target="equal; half the interactive bill",
        verdict="met"
        if math.isclose(spent, stats["usd"], rel_tol=1e-6)
        and math.isclose(2 * spent, interactive_usd, rel_tol=1e-6)
        else f"MISSED: interactive bill ${interactive_usd:.4f}",
    )
    result.notes += [
        f"{n:,} items over {distinct} distinct 64x64 PNGs (each uploaded once), 1024x1024 "
        f"low-quality answers; the simulator's batch life {batch_seconds:g} s (validating, in "
        f"progress, finalizing), its end waited for {waited:.1f} s between the two runs; "
        f"exit codes: submit {submit['exit_code']} (5: in flight), collect "
        f"{collect['exit_code']}",
        "submit and collect each run `pipeline.run(plan, RunOptions(batch=True))` in a fresh "
        "process (bench/worker.py `batch`); their peak RSS is VmHWM, imports included; the "
        f"output file is downloaded to disk (here about {out_file / MB:.0f} MB of base64) and "
        "read one line at a time, so the collect's memory does not grow with it",
    ]
    result.raw.update(submit=submit, collect=collect, interactive=interactive, sim=stats)
    return result


def _wait_for_batches(sim: SimProcess, timeout_s: float) -> float:
    """Seconds until the simulator has no batch left in flight."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        by_status = sim.stats().get("batches", {}).get("by_status", {})
        if by_status and set(by_status) <= {"completed", "failed", "expired", "cancelled"}:
            return time.perf_counter() - started
        time.sleep(0.5)
    raise RuntimeError(f"the simulator's batch did not end within {timeout_s:.0f} s")


def main() -> int:
    from bench.figures import text_table

    print(text_table([batch_job()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
