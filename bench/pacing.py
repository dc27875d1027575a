"""Scenarios 8-10 (issue 11, part 5): pacing when the client does not know the rate, under a
limit that changes mid-run, at a high rate with short latency, and with heavy-tailed latency.

pace = the time the same answers would take started at the limit's evenly spaced slots (the
slot of the i-th answer's start, plus its own latency), divided by the run's first request to
last answer. Both ends come from the ledger's wall-clock lines; the limit's schedule is what
the simulator was told, at the wall-clock instants it was told. 429s are the simulator's count.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from bench.figures import Result, all_done, at_least, at_most
from bench.measure import client_run
from bench.simproc import SimProcess
from bench.workload import Job, input_images, work_dir

PACE_TARGET = 0.95
SHARE_429_TARGET = 0.05


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def ledger_timeline(ledger: Path) -> tuple[float, float, list[tuple[float, float]]]:
    """(first request, last answer, [(start, latency) of each success in start order])."""
    starts, firsts, last = [], [], 0.0
    for line in ledger.read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "succeeded":
            end = _epoch(record["ts"])
            starts.append((end - record["latency_s"], record["latency_s"]))
            last = max(last, end)
        elif record["event"] == "attempt_failed":
            firsts.append(_epoch(record["ts"]))
    starts.sort()
    first = min([s for s, _ in starts] + firsts)
    return first, last, starts


def ideal_span(first: float, latencies: list[float], schedule: list[tuple[float, float]]) -> float:
    """When the same answers would all be in, started at the limit's evenly spaced slots from
    `first`: the i-th slot is where the limit's rate, integrated from `first`, reaches i.
    `schedule` is [(wall time from which, requests per second)], sorted, the first at or
    before `first`."""
    end, at, done = 0.0, first, 0.0
    for i, latency in enumerate(latencies):
        # walk the schedule until `i` requests' worth of slots have passed
        while True:
            rate, until = _rate_at(schedule, at)
            need = (i - done) / rate
            if at + need <= until:
                at, done = at + need, float(i)
                break
            done += (until - at) * rate
            at = until
        end = max(end, at + latency)
    return end - first


def _rate_at(schedule: list[tuple[float, float]], t: float) -> tuple[float, float]:
    """The rate in force at `t` and when it next changes (inf if never)."""
    rate, until = schedule[0][1], float("inf")
    for index, (since, value) in enumerate(schedule):
        if since <= t:
            rate = value
            until = schedule[index + 1][0] if index + 1 < len(schedule) else float("inf")
    return rate, until


def _set_rate(sim: SimProcess, rpm: float, told: list[tuple[float, float]]) -> None:
    request = urllib.request.Request(
        f"{sim.root}/_sim/rate",
        data=json.dumps({"rpm": rpm}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    told.append((time.time(), rpm / 60))


def pacing(
    title: str,
    *,
    n: int,
    rpm: float,
    concurrency: int,
    sim: dict,
    changes: tuple[tuple[float, float], ...] = (),
) -> Result:
    """One pacing scenario: `changes` are (seconds after the client starts, new rpm)."""
    result = Result(title)
    # 50 distinct inputs: the simulator renders each once and serves the rest from its cache,
    # so its own CPU (on the same two cores) does not stretch the latency being paced around.
    job = Job(title.split()[0], input_images("small", 50, n), concurrency=concurrency)
    told: list[tuple[float, float]] = []
    with SimProcess({"rpm": rpm, "seed": 5, **sim}) as server:
        timers = [threading.Timer(at, _set_rate, (server, new, told)) for at, new in changes]

        def start_timers() -> None:
            for timer in timers:
                timer.daemon = True
                timer.start()

        try:
            figures = client_run(
                "editbatch", job, server, f"pace-{job.name}", on_start=start_timers
            )
        finally:
            for timer in timers:
                timer.cancel()
    ledger = work_dir() / "runs" / f"pace-{job.name}" / "out" / "ledger.jsonl"
    first, last, starts = ledger_timeline(ledger)
    schedule = [(first - 1e9, rpm / 60), *sorted(told)]
    ideal = ideal_span(first, [latency for _, latency in starts], schedule)
    pace = ideal / (last - first)
    requests = figures["sim"]["requests"]
    share = figures["sim_429"] / max(1, requests)
    result.add(
        "pace",
        f"{pace:.3f}",
        reference=f"ideal {ideal:.1f} s / actual {last - first:.1f} s",
        target=f">= {PACE_TARGET}",
        verdict=at_least(pace, PACE_TARGET),
    )
    result.add(
        "429s / requests",
        f"{figures['sim_429']}/{requests} ({share:.1%})",
        target=f"<= {SHARE_429_TARGET:.0%}",
        verdict=at_most(share * 100, SHARE_429_TARGET * 100, " points"),
    )
    result.add(
        "items done",
        f"{figures['done']}/{n}",
        target="all",
        verdict=all_done(figures["done"], n),
    )
    changed = ", ".join(f"after {at:g} s to {new:g}/min" for at, new in changes)
    retries = figures["retries"] or "none"
    result.notes += [
        f"{n} items, rate unknown to the client (requests_per_minute 0), concurrency "
        f"{concurrency}; simulator {rpm:g}/min with x-ratelimit headers, {sim}"
        + (f"; the limit changed {changed}" if changes else ""),
        f"exit code {figures['exit_code']}; editbatch retries by cause {retries}",
        *(f"editbatch said: {m}" for m in figures["messages"]),
    ]
    result.raw = {"editbatch": figures, "pace": pace, "ideal_s": ideal, "span_s": last - first}
    return result


def limit_changes(n: int = 300) -> Result:
    """Scenario 8: 600 -> 240 -> 600 requests/min mid-run, latency 1 +- 0.2 s."""
    return pacing(
        "8 limit 600->240->600",
        n=n,
        rpm=600,
        concurrency=32,
        sim={"latency_s": 1.0, "jitter_s": 0.2},
        changes=((n / 30, 240), (n / 30 + n / 20, 600)),
    )


def fast_short(n: int = 600) -> Result:
    """Scenario 9: 3000 requests/min at 0.3 s latency."""
    return pacing(
        "9 3000/min at 0.3 s",
        n=n,
        rpm=3000,
        concurrency=64,
        sim={"latency_s": 0.3, "jitter_s": 0.05},
    )


def heavy_tail(n: int = 300) -> Result:
    """Scenario 10: 600 requests/min, lognormal latency with a 3 s median (sigma 0.8)."""
    return pacing(
        "10 heavy-tailed latency",
        n=n,
        rpm=600,
        concurrency=128,
        sim={"latency_s": 3.0, "latency_sigma": 0.8},
    )
