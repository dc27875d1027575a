"""Scenario 6 of issue 5: peak RSS at a high concurrency with ~4 MB inputs and outputs, against
the bound 200 MB + 2 x concurrency x body size, and against the raw loop at the same settings.
The simulator returns ~4 MB images because the input is incompressible noise under a mask that
keeps every pixel: the simulated edit gives back the input's pixels, re-encoded.
"""

from __future__ import annotations

from PIL import Image

from bench.figures import Result, at_most, ratio
from bench.measure import client_run
from bench.simproc import SimProcess
from bench.workload import Job, input_images, opaque_mask

MB = 2**20


def peak_memory(
    n: int = 384,
    concurrency: int = 256,
    latency: float = 3.0,
    distinct: int = 16,
    repeats: int = 2,
    kind: str = "big",
) -> Result:
    """`n` items over `distinct` images of `kind` (the simulator renders each once and caches it),
    with `latency` long enough for `concurrency` requests to be in flight together. The peak
    depends on how the answers bunch up, so each client runs `repeats` times; the highest
    peak is reported."""
    result = Result("6 peak memory")
    images = input_images(kind, distinct, n)
    with Image.open(images[0]) as first:
        width, height = first.size
    params = {"model": "gpt-image-1", "quality": "low", "size": f"{width}x{height}"}
    job = Job("memory", images, mask=opaque_mask(kind), params=params, concurrency=concurrency)
    warmup = Job(
        "memory-warmup", images[:distinct], mask=job.mask, params=params, concurrency=distinct
    )
    runs: dict[str, list[dict]] = {"raw": [], "editbatch": []}
    with SimProcess({"latency_s": latency, "seed": 6}) as sim:
        client_run("raw", warmup, sim, "s6-warmup")  # the simulator renders each image once
        for number in range(repeats):
            for client, figures in runs.items():
                figures.append(client_run(client, job, sim, f"s6-{client}-{number}"))
        sim_peak = sim.peak_rss_mb()
    raw = max(runs["raw"], key=lambda fig: fig["peak_rss_mb"])
    eb = max(runs["editbatch"], key=lambda fig: fig["peak_rss_mb"])
    largest_input = max(path.stat().st_size for path in set(images))
    body_mb = max(largest_input, eb["largest_output_bytes"]) / MB
    bound = 200 + 2 * concurrency * body_mb
    # What travels is larger than the image: the answer carries it in base64 (4/3).
    http_bound = 200 + 2 * concurrency * body_mb * 4 / 3
    result.add(
        f"peak RSS, {concurrency} in flight, {body_mb:.1f} MB images",
        f"{eb['peak_rss_mb']:.0f} MB",
        reference=f"{raw['peak_rss_mb']:.0f} MB (raw loop)",
        ratio=ratio(eb["peak_rss_mb"], raw["peak_rss_mb"]),
        target=f"<= {bound:.0f} MB",
        verdict=at_most(eb["peak_rss_mb"], bound, " MB"),
    )
    done = [fig["done"] for fig in runs["editbatch"]]
    result.add(
        "items done",
        "/".join(map(str, done)) + f" of {n}",
        reference="/".join(str(fig["done"]) for fig in runs["raw"]) + f" of {n}",
    )
    in_flight = eb["sim"]["peak_in_flight"]
    per_request = eb["peak_rss_mb"] / max(1, in_flight)
    result.notes += [
        f"{n} items over {distinct} distinct {width}x{height} {kind} PNGs (inputs up to "
        f"{largest_input / MB:.2f} MB, outputs up to {eb['largest_output_bytes'] / MB:.2f} MB), "
        f"latency {latency:g} s, no rate limit; bound = 200 + 2 x {concurrency} x "
        f"{body_mb:.2f} MB; counting the answers' base64 bodies instead ({body_mb * 4 / 3:.2f} "
        f"MB) it would be {http_bound:.0f} MB",
        "peaks of every run (MB): editbatch "
        + ", ".join(f"{fig['peak_rss_mb']:.0f}" for fig in runs["editbatch"])
        + "; raw "
        + ", ".join(f"{fig['peak_rss_mb']:.0f}" for fig in runs["raw"]),
        f"requests in flight at the simulator at most: editbatch {in_flight}, raw "
        f"{raw['sim']['peak_in_flight']}; editbatch's peak is {per_request:.1f} MB per request "
        f"in flight ({per_request / body_mb:.1f} images)",
        f"wall: editbatch {eb['wall_s']:.1f} s, raw {raw['wall_s']:.1f} s; CPU: editbatch "
        f"{eb['cpu_s']:.1f} s, raw {raw['cpu_s']:.1f} s; simulator peak RSS {sim_peak:.0f} MB",
    ]
    result.raw = {"runs": runs, "body_mb": body_mb, "bound_mb": bound}
    return result
