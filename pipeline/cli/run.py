"""`editbatch run`: options to RunOptions, signals to a graceful drain, the summary to the
terminal, stdout (--json) and files for the people on call (--summary-file, --metrics-file)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading

from pipeline import run
from pipeline.cli.metrics import prometheus_text
from pipeline.cli.progress import human_summary, make_progress
from pipeline.core.errors import UsageError
from pipeline.engine import advice
from pipeline.engine.runner import RunControl, RunOptions
from pipeline.ledger.shards import Shard
from pipeline.manifest.load import load_plan
from pipeline.outputs.files import write_text_atomic


def run_command(args: argparse.Namespace) -> int:
    # Input files are checked by the runner for the items still to run (see Plan.files_checked),
    # so a resume of a large finished job does not re-read every header.
    plan = load_plan(args.manifest, check_files=args.dry_run)
    shard = None
    if args.shard:
        try:
            shard = Shard.parse(args.shard)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    sim_config = None
    if args.simulate:
        sim_config = _sim_config(args)
    elif args.sim_faults or args.sim_latency is not None or args.sim_rpm or args.sim_outside_drift:
        raise UsageError(
            "--sim-latency, --sim-faults, --sim-rpm and --sim-outside-drift need --simulate"
        )
    control = RunControl()
    options = RunOptions(
        concurrency=args.concurrency,
        rpm=args.rpm,
        max_usd=args.max_usd,
        base_url=args.base_url,
        only=tuple(args.only or ()),
        retry_failed=args.retry_failed,
        dry_run=args.dry_run,
        simulate=args.simulate,
        sim_config=sim_config,
        grace_s=args.grace,
        shard=shard,
        observer=None if args.dry_run else make_progress(args.progress),
        control=control,
        seed=args.seed,
        batch=args.batch,
        wait=args.wait,
        cache=args.cache,
        no_cache=args.no_cache,
    )
    if args.wait and not (args.batch or plan.mode == "batch"):
        raise UsageError("--wait is for batch mode: add --batch, or set mode: batch")
    summary = asyncio.run(_run_with_signals(plan, options, control))
    HARD_STOP.code = summary.exit_code
    if summary.estimate is not None:
        return print_dry_run(summary, args.json)
    print(human_summary(summary, str(args.manifest)), file=sys.stderr, flush=True)
    data = summary.to_json() | advice.diagnosis(summary, str(args.manifest))
    if args.json:
        print(json.dumps(data, indent=2), flush=True)
    if args.summary_file:
        write_text_atomic(args.summary_file, json.dumps(data, indent=2) + "\n")
    if args.metrics_file:
        write_text_atomic(args.metrics_file, prometheus_text(summary, previous=args.metrics_file))
    return summary.exit_code


# After --grace, this long for the recording, run_finished and the summary; then the process
# ends whatever a thread is doing.
HARD_STOP_MARGIN_S = 2.0
_SIGNAL_CODES = {"SIGINT": 130, "SIGTERM": 143}


class HardStop:
    """Makes --grace a hard bound: once a stop signal came, the process ends within grace +
    HARD_STOP_MARGIN_S even if a thread is stuck (an executor thread blocked on a file would
    hold asyncio.run's shutdown and the interpreter's exit forever). Every ledger line is
    whole on disk when written, so ending with os._exit loses nothing recorded."""

    def __init__(self) -> None:
        self.code: int | None = None  # the run's own exit code, once it has one
        self._timer: threading.Timer | None = None

    def arm(self, seconds: float, code: int) -> None:
        if self._timer is None:
            self._timer = threading.Timer(seconds, self._fire, args=(code, seconds))
            self._timer.daemon = True  # a run that ends in time is not held by it
            self._timer.start()

    def _fire(self, code: int, seconds: float) -> None:
        print(
            f"editbatch: still stopping {seconds:g} s after the signal; exiting now (the "
            "ledger is consistent: a rerun resumes)",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(self.code if self.code is not None else code)


HARD_STOP = HardStop()


async def _run_with_signals(plan, options: RunOptions, control: RunControl):
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    def on_signal(name: str) -> None:
        if seen:  # a second signal: cancel requests in flight now
            control.request_cancel()
            return
        seen.append(name)
        HARD_STOP.arm(options.grace_s + HARD_STOP_MARGIN_S, _SIGNAL_CODES.get(name, 130))
        print(
            f"editbatch: {name}: finishing requests in flight (up to {options.grace_s:g} s); "
            "press Ctrl-C again to stop at once",
            file=sys.stderr,
            flush=True,
        )
        control.request_stop(name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        return await run(plan, options)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _sim_config(args: argparse.Namespace):
    from pipeline.simulator import SimConfig, parse_faults

    try:
        faults = parse_faults(args.sim_faults) if args.sim_faults else {}
    except ValueError as exc:
        raise UsageError(f"--sim-faults: {exc}") from None
    latency = 0.4 if args.sim_latency is None else args.sim_latency
    return SimConfig(
        rpm=args.sim_rpm,
        latency_s=latency,
        jitter_s=latency / 2,
        faults=faults,
        seed=args.seed or 0,
        outside_drift=args.sim_outside_drift,
    )


SHOWN_ITEMS = 10


def print_dry_run(summary, as_json: bool, title: str = "dry run") -> int:
    """A dry run's (or `estimate`'s) answer: what would be sent, what it would cost, where
    the budget would stop it, and whether the run could start."""
    if as_json:
        print(json.dumps(summary.to_json(), indent=2), flush=True)
        return summary.exit_code
    print(dry_run_text(summary, title), flush=True)
    return summary.exit_code


def dry_run_text(summary, title: str = "dry run") -> str:
    from pipeline.report.text import render_estimate

    s = summary.stats
    ids = [e.item_id for e in summary.estimate.items]
    lines = [
        f"{title}: {s.done_before} done, {s.failed_before} failed earlier, "
        f"{s.pending} would be sent; nothing was sent",
        render_estimate(summary.estimate).rstrip("\n"),
    ]
    if ids:
        more = f" and {len(ids) - SHOWN_ITEMS} more (all: --json)" if len(ids) > SHOWN_ITEMS else ""
        lines.append(f"to send ({len(ids)}): " + ", ".join(ids[:SHOWN_ITEMS]) + more)
    if summary.outlook is not None:
        lines.append(f"budget: {summary.outlook.sentence()}")
    if s.pending == 0:
        pass  # nothing to send: the key does not matter
    elif summary.key_set is True:
        lines.append(f"key: {summary.key_env} is set")
    elif summary.key_set is False:
        lines.append(
            f"key: {summary.key_env} is not set: `run` would refuse to start; export the key "
            "in it, or try the job with --simulate"
        )
    for message in summary.messages:
        lines.append(f"note: {message}")
    return "\n".join(lines)
