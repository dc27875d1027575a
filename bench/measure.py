"""Running one client against a simulator process and collecting both sides' figures: the
client's own (wall, CPU, peak RSS, items done) and the simulator's (requests by status, peak
in flight, CPU seconds) over exactly that client's run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from bench.simproc import SimProcess
from bench.worker import launch
from bench.workload import (
    KEY,
    Job,
    dump,
    largest_output,
    outputs_in,
    run_dir,
    write_item_list,
    write_manifest,
)

# The simulator's bucket holds one second's worth of requests; a client starts after it refilled.
BUCKET_SETTLE_S = 1.1


def concurrency_for(rate_per_s: float, slowest_s: float, headroom: float = 1.5) -> int:
    """Little's law with headroom: in flight = rate x latency, sized on the slowest answer."""
    return max(1, math.ceil(rate_per_s * slowest_s * headroom))


def client_run(
    kind: str,
    job: Job,
    sim: SimProcess,
    label: str,
    *,
    seed: int = 0,
    on_start: Callable[[], None] | None = None,
) -> dict:
    """Run `kind` ("editbatch", "diy" or "raw") on `job` in a fresh process and folder.

    Before it starts, the simulator's counters are zeroed and, when it has a rate limit, its
    bucket is given time to refill, so every client starts from the same provider state.
    `on_start` is called just before the client process starts.
    """
    folder = run_dir(label)
    if kind == "editbatch":
        spec: dict = {"manifest": str(write_manifest(job, folder))}
    else:
        spec = write_item_list(job, folder)
    spec.update(base_url=sim.base_url, api_key=KEY, seed=seed)
    if sim.config.get("rpm"):
        time.sleep(BUCKET_SETTLE_S)
    sim.reset()
    if on_start is not None:
        on_start()
    cpu_before = sim.cpu_s()
    figures = launch(kind, dump(spec, folder))
    stats = sim.stats()
    requests = stats["requests"]
    figures["outputs"] = outputs_in(folder)
    figures["largest_output_bytes"] = largest_output(folder)
    figures["sim"] = {
        "requests": requests,
        "by_status": stats["by_status"],
        "by_outcome": stats["by_outcome"],
        "peak_in_flight": stats["peak_in_flight"],
        "cpu_s": sim.cpu_s() - cpu_before,
        "first_arrival_s": stats["arrivals"][0] if stats["arrivals"] else None,
    }
    figures["sim_429"] = stats["by_status"].get("429", 0)
    figures["sim_cpu_ms_per_request"] = 1000 * figures["sim"]["cpu_s"] / max(1, requests)
    return figures


def sim_cpu_note(runs: dict[str, dict]) -> str:
    """One line: the simulator's CPU per request during each client's run."""
    parts = [
        f"{name} {fig['sim_cpu_ms_per_request']:.2f} ms/request ({fig['sim']['requests']} requests)"
        for name, fig in runs.items()
    ]
    return "simulator CPU: " + "; ".join(parts)
