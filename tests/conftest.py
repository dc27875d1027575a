"""Fixtures shared by the pipeline tests: the simulator on a free loopback port."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

import pytest
from helpers import Sim

from pipeline.simulator import SimConfig, running

os.environ.pop("OPENAI_BASE_URL", None)  # tests never talk to anything but loopback
os.environ.pop("AZURE_OPENAI_ENDPOINT", None)


@pytest.fixture
def sim_factory():
    """`async with sim_factory(SimConfig(...)) as sim:` — a simulator on a free loopback port."""

    @asynccontextmanager
    async def factory(config: SimConfig | None = None):
        async with running(config or SimConfig()) as base_url:
            yield Sim(base_url)

    return factory
