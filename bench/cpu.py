"""Scenario 4 of issue 5: the client's CPU per item against the floor of the stack, a raw aiohttp
loop making the same requests and writes. No latency and no rate limit, so both are CPU-bound;
each client's own process CPU (threads included) is measured, never the simulator's.
"""

from __future__ import annotations

from bench.figures import Result, at_most
from bench.measure import client_run, sim_cpu_note
from bench.simproc import SimProcess
from bench.workload import Job, input_images, opaque_mask

# Two body sizes: a tiny image shows the per-request overhead; a ~1 MB image under an opaque
# mask (so the ~1 MB output is the input's pixels) adds the per-byte work of real images.
VARIANTS = {
    "small": "64x64 input, ~16 KB output",
    "photo": "1024x1024 ~1 MB input + mask, ~1 MB output",
}


def _job(kind: str, n: int, concurrency: int) -> Job:
    params = {"model": "gpt-image-1", "quality": "low", "size": "1024x1024"}
    mask = opaque_mask(kind) if kind == "photo" else None
    return Job(
        f"cpu-{kind}", input_images(kind, 8, n), mask=mask, params=params, concurrency=concurrency
    )


def cpu_per_item(
    n: int = 300,
    concurrency: int = 8,
    variants: tuple[str, ...] = ("small", "photo"),
    repeats: int = 3,
) -> Result:
    """Per variant: one unmeasured warm-up (the simulator renders and caches its 8 outputs, the
    inputs enter the page cache), then `repeats` alternating runs of each client; the least
    CPU of each client is kept (noise only ever adds)."""
    result = Result("4 client CPU")
    with SimProcess({"seed": 4}) as sim:
        for kind in variants:
            job = _job(kind, n, concurrency)
            client_run("raw", job, sim, f"s4-{kind}-warmup")
            runs: dict[str, list[dict]] = {"raw": [], "editbatch": []}
            for number in range(repeats):
                for client in runs:
                    runs[client].append(
                        client_run(client, job, sim, f"s4-{kind}-{client}-{number}")
                    )
            raw = min(runs["raw"], key=lambda fig: fig["cpu_s"])
            eb = min(runs["editbatch"], key=lambda fig: fig["cpu_s"])
            per_item, floor = 1000 * eb["cpu_s"] / n, 1000 * raw["cpu_s"] / n
            slower = per_item / floor
            result.add(
                f"CPU ms/item, {VARIANTS[kind]}",
                f"{per_item:.2f}",
                reference=f"{floor:.2f} (raw loop)",
                ratio=f"{slower:.2f}",
                target="<= 1.30x",
                verdict=at_most(slower, 1.3),
            )
            done = f"{eb['done']}/{n} and {raw['done']}/{n} done"
            result.notes += [
                f"{kind}: {n} items, {concurrency} in flight, latency 0, no rate limit; {done}; "
                f"editbatch's planning (load_plan) {1000 * eb['plan_cpu_s'] / n:.2f} ms/item "
                f"of its {per_item:.2f}; wall {eb['wall_s']:.2f} s vs {raw['wall_s']:.2f} s; "
                f"all runs' CPU s: editbatch "
                + ", ".join(f"{fig['cpu_s']:.2f}" for fig in runs["editbatch"])
                + "; raw "
                + ", ".join(f"{fig['cpu_s']:.2f}" for fig in runs["raw"]),
                f"{kind}: " + sim_cpu_note({"editbatch": eb, "raw": raw}),
            ]
            result.raw[kind] = runs
    return result
