"""One measured client in a fresh process: `python -m bench.worker KIND SPEC_JSON` runs editbatch,
the DIY baseline, the raw loop, or a manifest's planning alone, and prints one JSON line: what
it did, its wall time, its own CPU seconds (threads included) and its peak RSS.
`launch` is the parent's side.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.procstat import process_peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent


class WorkerFailed(RuntimeError):
    """A client process ended without its figures."""


def launch(kind: str, spec_path: Path, timeout_s: float = 900) -> dict:
    """Run one client process to its end and return its figures."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker", kind, str(spec_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise WorkerFailed(
            f"bench worker {kind} ({spec_path}) exited {done.returncode}: "
            f"{done.stderr.strip()[-2000:]}"
        )
    return json.loads(lines[-1])


async def _editbatch(spec: dict) -> dict:
    from pipeline.engine.runner import RunOptions, run
    from pipeline.manifest.load import load_plan

    cpu, wall = time.process_time(), time.perf_counter()
    plan = load_plan(spec["manifest"])
    plan_cpu, plan_wall = time.process_time() - cpu, time.perf_counter() - wall
    options = RunOptions(base_url=spec["base_url"], api_key=spec["api_key"], seed=spec["seed"])
    summary = await run(plan, options)
    stats = summary.stats
    return {
        "done": stats.done,
        "failed": stats.failed,
        "requests": stats.requests,
        "by_status": dict(stats.by_status),
        "retries": dict(stats.retries),
        "exit_code": summary.exit_code,
        "messages": summary.messages,
        "plan_cpu_s": plan_cpu,
        "plan_wall_s": plan_wall,
        "run_wall_s": summary.duration_s,
    }


async def _batch(spec: dict) -> dict:
    """One batch-mode run (submit, or collect once the batch has ended): `pipeline.run`."""
    from pipeline import run
    from pipeline.engine.runner import RunOptions
    from pipeline.manifest.load import load_plan

    plan = load_plan(spec["manifest"])
    options = RunOptions(base_url=spec["base_url"], api_key=spec["api_key"], batch=True)
    summary = await run(plan, options)
    stats = summary.stats
    return {
        "done": stats.done,
        "failed": stats.failed,
        "in_batch": stats.in_batch,
        "exit_code": summary.exit_code,
        "messages": summary.messages,
        "outputs_bytes": sum(
            p.stat().st_size for p in (Path(spec["manifest"]).parent / "out").glob("*.png")
        ),
    }


async def _diy(spec: dict) -> dict:
    from bench.diy import diy

    return await diy(spec, spec["base_url"], spec["api_key"])


async def _raw(spec: dict) -> dict:
    from bench.rawloop import raw_loop

    return await raw_loop(spec, spec["base_url"], spec["api_key"])


async def _raw_drift(spec: dict) -> dict:
    """The raw loop measuring each masked answer's drift, as the contract asks of a client."""
    return await _raw({**spec, "drift": True})


def _plan(spec: dict) -> dict:
    from pipeline.manifest.load import load_plan

    plan = load_plan(spec["manifest"])
    return {"items": len(plan.items)}


def _plan_floor(spec: dict) -> dict:
    """The least any planner must do: parse the YAML with libyaml (or list the glob's folder)
    and stat every input."""
    import glob
    import os

    import yaml

    manifest = Path(spec["manifest"])
    data = yaml.load(manifest.read_bytes(), Loader=yaml.CSafeLoader)
    paths = []
    for entry in data["items"]:
        if "glob" in entry:
            paths += sorted(glob.glob(str(manifest.parent / entry["glob"])))
        else:
            paths.append(str(manifest.parent / entry["image"]))
    for path in paths:
        os.stat(path)
    return {"items": len(paths)}


def _cli(spec: dict) -> dict:
    """The `editbatch` command itself (it runs its own event loop)."""
    import os

    from pipeline.cli.main import main as editbatch

    os.environ.update(spec.get("env", {}))
    return {"exit_code": editbatch(spec["argv"])}


KINDS = {
    "editbatch": _editbatch,
    "batch": _batch,
    "diy": _diy,
    "raw": _raw,
    "raw-drift": _raw_drift,
    "plan": _plan,
    "plan-floor": _plan_floor,
    "cli": _cli,
}
# Imported before the clocks start: a client's figures are its work, not its imports.
IMPORTS = {
    "editbatch": ("pipeline.manifest.load", "pipeline.engine.runner"),
    "batch": ("pipeline.manifest.load", "pipeline.batch.mode"),
    "diy": ("bench.diy",),
    "raw": ("bench.rawloop",),
    "raw-drift": ("bench.rawloop",),
    "plan": ("pipeline.manifest.load",),
    "plan-floor": ("yaml",),
    "cli": ("pipeline.cli.main",),
}


def main(kind: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    for module in IMPORTS[kind]:
        importlib.import_module(module)
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu, wall = time.process_time(), time.perf_counter()
    work = KINDS[kind]
    figures = asyncio.run(work(spec)) if inspect.iscoroutinefunction(work) else work(spec)
    figures["wall_s"] = time.perf_counter() - wall
    figures["cpu_s"] = time.process_time() - cpu
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["user_s"], figures["sys_s"] = (
        usage.ru_utime - before.ru_utime,
        usage.ru_stime - before.ru_stime,
    )
    figures["peak_rss_mb"] = process_peak_rss_mb(os.getpid())
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
