"""The simulator's knobs for pacing benchmarks: a rate limit changed while it runs, and a
heavy-tailed (lognormal) latency."""

from __future__ import annotations

import statistics

import aiohttp
import pytest

from pipeline.simulator import SimConfig
from pipeline.simulator.outcomes import latency_s
from pipeline.simulator.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_changed_limit_refills_at_the_new_rate_and_keeps_what_the_bucket_holds():
    clock = Clock()
    bucket = TokenBucket(600, clock=clock)  # 10/s, holds 10
    for _ in range(10):
        assert bucket.try_take().admitted
    assert not bucket.try_take().admitted
    bucket.change(240)  # 4/s, holds 4
    clock.now = 0.5
    admitted = sum(bucket.try_take().admitted for _ in range(10))
    assert admitted == 2  # half a second at 4/s
    assert bucket.window().limit == 240
    clock.now = 10.0
    assert sum(bucket.try_take().admitted for _ in range(10)) == 4  # capacity now 4
    with pytest.raises(ValueError):
        bucket.change(0)


def test_lognormal_latency_has_the_median_given_and_a_heavy_tail():
    draws = [(i + 0.5) / 1000 for i in range(1000)]
    waits = [latency_s(d, 3.0, 0.0, 1.0, sigma=0.8) for d in draws]
    assert statistics.median(waits) == pytest.approx(3.0, rel=0.01)
    assert max(waits) > 6 * 3.0 and min(waits) > 0
    assert latency_s(0.0, 3.0, 0.0, 1.0, sigma=0.8) > 0  # the edge draw stays finite
    assert latency_s(0.5, 1.0, 0.5, 2.0) == 2.0  # uniform jitter as before
    with pytest.raises(ValueError, match="latency_sigma"):
        SimConfig(latency_sigma=-1)


async def test_the_rate_limit_can_be_changed_while_the_simulator_runs(sim_factory):
    async with sim_factory(SimConfig(rpm=60)) as sim, aiohttp.ClientSession() as session:
        for body, status in (({"rpm": 240}, 200), ({"rpm": 0}, 200), ({"rpm": -1}, 400)):
            async with session.post(f"{sim.root}/_sim/rate", json=body) as response:
                assert response.status == status
        async with session.post(f"{sim.root}/_sim/rate", json={"rpm": 120}) as response:
            assert (await response.json()) == {"rpm": 120.0}
