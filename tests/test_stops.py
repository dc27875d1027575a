"""Stops.race: a wait that a stop cuts short (StopDispatch), without a task per wait, and
without turning a cancellation from anywhere else into a stop."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.engine.stops import StopDispatch, Stops


async def test_a_ready_wait_returns_its_result_without_a_task():
    stops = Stops()
    before = len(asyncio.all_tasks())

    async def ready() -> str:
        assert len(asyncio.all_tasks()) == before  # awaited in place, not wrapped
        return "turn"

    assert await stops.race(ready) == "turn"


async def test_a_stop_cuts_a_wait_short_and_the_racer_goes_on_after_it():
    stops = Stops()
    never = asyncio.Event()

    async def racer() -> str:
        with pytest.raises(StopDispatch):
            await stops.race(never.wait)
        await asyncio.sleep(0)  # no cancellation left pending in this task
        return "went on"

    task = asyncio.create_task(racer())
    await asyncio.sleep(0.01)
    stops.stop("budget")
    assert await task == "went on"
    assert task.cancelling() == 0


async def test_a_stopped_run_refuses_a_new_wait_at_once():
    stops = Stops()
    stops.stop("fatal", "aborted")
    with pytest.raises(StopDispatch):
        await stops.race(asyncio.Event().wait)


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    stops = Stops()
    task = asyncio.create_task(stops.race(asyncio.Event().wait))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_stop_and_a_cancellation_together_stay_a_cancellation():
    stops = Stops()
    task = asyncio.create_task(stops.race(asyncio.Event().wait))
    await asyncio.sleep(0.01)
    task.cancel()
    stops.stop("interrupted")
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_task_that_stops_the_run_keeps_what_it_got():
    stops = Stops()

    async def stopping() -> str:
        stops.stop("outage", "provider down")
        await asyncio.sleep(0)
        return "place"

    assert await stops.race(stopping) == "place"  # its caller meets the stop at its next check
    with pytest.raises(StopDispatch):
        stops.check()


async def test_a_wait_that_swallows_the_stop_returns_and_leaves_no_cancellation_behind():
    stops = Stops()

    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "swallowed"  # what a wait_for that lost the race to its result does
        return "unreachable"

    async def racer() -> str:
        got = await stops.race(stubborn)
        await asyncio.sleep(0)  # would raise if the stop's cancellation were still pending
        return got

    task = asyncio.create_task(racer())
    await asyncio.sleep(0.01)
    stops.stop("budget")
    assert await task == "swallowed"
