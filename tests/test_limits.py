"""The dispatch gate, the rate controller's arithmetic and Little's law.

Pure functions are tested by tables; the gate runs on a fake clock whose sleeps resolve only
when the test moves time forward, so hours of pacing take milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

import pytest

from pipeline.engine.pacing import (
    DEFAULT_429_PAUSE_S,
    RateGate,
    littles_law_warning,
)
from pipeline.engine.ratecontrol import (
    FLOOR_PER_S,
    Headers,
    RateState,
    ServerError,
    Success,
    Throttled,
    dispatch_rate,
    earliest_start,
    headers_event,
    next_rate,
    parse_duration,
    probe_spacing_s,
    window_s,
)


class FakeTime:
    """A monotonic clock and a sleep whose timers fire when `run` moves time forward."""

    def __init__(self, overshoot: float = 0.0) -> None:
        self.now = 0.0
        self.overshoot = overshoot  # how late every sleep wakes up, as a busy loop would
        self._timers: list[tuple[float, int, asyncio.Future]] = []
        self._order = itertools.count()
        self.sleeps = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the gate must not sleep for nothing (a busy loop)"
        self.sleeps += 1
        future = asyncio.get_running_loop().create_future()
        wake = self.now + seconds + self.overshoot
        heapq.heappush(self._timers, (wake, next(self._order), future))
        await future

    async def run(self, until: float = math.inf) -> None:
        """Let every task run; when all wait on timers, jump to the earliest, up to `until`."""
        while True:
            for _ in range(20):
                await asyncio.sleep(0)
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)  # the sleeper was cancelled
            if not self._timers or self._timers[0][0] > until:
                if until != math.inf:
                    self.now = max(self.now, until)
                return
            deadline, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, deadline)
            future.set_result(None)


def start_waiters(gate: RateGate, fake: FakeTime, count: int) -> tuple[list, dict]:
    starts: dict[int, float] = {}

    async def waiter(index: int) -> None:
        await gate.wait_turn()
        starts[index] = fake.now

    return [asyncio.create_task(waiter(i)) for i in range(count)], starts


def gate_on(fake: FakeTime, **kwargs) -> RateGate:
    return RateGate(clock=fake.clock, sleep=fake.sleep, **kwargs)


LIMIT_60 = {"x-ratelimit-limit-requests": "60"}


def replay(state: RateState, events: list[tuple[float, object]]) -> RateState:
    for now, event in events:
        state = next_rate(state, event, now)
    return state


# --- next_rate: (start, events) -> rate ----------------------------------------------------

SEEDED = Headers(limit=60)  # 1 request/s; window at 1/s is 10 s, at 0.7/s 14.3 s

NEXT_RATE_CASES = [
    ("headers seed an unpaced pool", RateState(), [(0, Headers(limit=120))], 2.0),
    ("the user's cap bounds the seed", RateState(rate=1, cap=1), [(0, Headers(limit=120))], 1),
    ("remaining and reset alone do not seed", RateState(), [(0, Headers(None, 5, 2))], None),
    ("a rate-limit 429 cuts by 0.7", RateState(rate=1), [(0, Throttled())], 0.7),
    (
        "a burst of 429s cuts once",
        RateState(rate=1),
        [(0, Throttled()), (0.1, Throttled()), (0.5, Throttled())],
        0.7,
    ),
    (
        "a 429 after the quiet window cuts again",
        RateState(rate=1),
        [(0, Throttled()), (15, Throttled())],
        0.49,
    ),
    (
        "retry-after lengthens the quiet window",
        RateState(rate=1),
        [(0, Throttled(retry_after_s=30)), (20, Throttled())],
        0.7,
    ),
    ("unpaced: the cut starts from the observed rate", RateState(), [(0, Throttled(None, 10))], 7),
    ("unpaced with nothing observed: the floor", RateState(), [(0, Throttled())], FLOOR_PER_S),
    ("never below the floor", RateState(rate=0.02), [(0, Throttled())], FLOOR_PER_S),
    ("a cut stays under the ceiling", RateState(limit=1), [(0, Throttled(None, 5))], 1),
    (
        "the same limit again does not undo a cut",
        RateState(),
        [(0, SEEDED), (1, Throttled()), (2, SEEDED)],
        0.7,
    ),
    (
        "a changed limit re-seeds",
        RateState(),
        [(0, SEEDED), (1, Throttled()), (2, Headers(limit=300))],
        5,
    ),
    (
        "no increase before a clean window",
        RateState(),
        [(0, SEEDED), (1, Throttled()), (15, Success())],
        0.7,
    ),
    (
        "one step of a tenth of the ceiling per clean window",
        RateState(),
        [(0, SEEDED), (1, Throttled()), (16, Success()), (16.5, Success())],
        0.8,
    ),
    (
        "a 429 inside the quiet window still restarts the trial",
        RateState(),
        [(0, SEEDED), (1, Throttled()), (10, Throttled()), (16, Success())],
        0.7,
    ),
    (
        "increases stop at the ceiling",
        RateState(rate=0.95, limit=1),
        [(100, Success()), (200, Success())],
        1,
    ),
    (
        "without a ceiling the step is a tenth of the rate that drew the 429",
        RateState(rate=2),
        [(0, Throttled()), (100, Success())],
        1.6,
    ),
    ("a 5xx never speeds up", RateState(rate=0.7, limit=1), [(100, ServerError())], 0.7),
    ("an unpaced pool stays unpaced on success", RateState(), [(100, Success())], None),
]


@pytest.mark.parametrize(
    ("start", "events", "rate"),
    [case[1:] for case in NEXT_RATE_CASES],
    ids=[case[0] for case in NEXT_RATE_CASES],
)
def test_next_rate_follows_headers_and_429s(start, events, rate):
    assert replay(start, events).rate == pytest.approx(rate)


def test_next_rate_rises_at_most_once_per_window_and_never_above_the_limit():
    state = replay(RateState(), [(0, SEEDED), (0, Throttled())])
    changes = []
    for tick in range(1, 1201):  # a success every 0.1 s for two minutes
        before = state.rate
        state = next_rate(state, Success(), tick / 10)
        if state.rate != before:
            changes.append((tick / 10, state.rate - before))
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(changes)]
    assert state.rate == pytest.approx(1.0)
    assert all(step <= 0.1 + 1e-9 for _, step in changes)
    assert all(gap >= window_s(1.0) for gap in gaps)


# --- remaining and reset: a window that cannot last is spread until it resets ---------------

HOLD_CASES = [
    # (remaining, reset_s, rate at 10 s, rate at 25 s)
    (5, 20, 0.25, 1),  # a fixed window resetting in 20 s: 5 left, spread over 20 s
    (5, 55, 1, 1),  # a token bucket (refills 55 in 55 s): pacing at the limit is right
    (0, 60, 1, 1),  # an empty bucket refills one a second: pacing at the limit again
    (0, 57, 1, 1),  # the same bucket, its reset read a few seconds early
    (50, 10, 1, 1),  # plenty left: nothing to hold
]


@pytest.mark.parametrize(("remaining", "reset_s", "during", "after"), HOLD_CASES)
def test_low_remaining_is_spread_until_the_window_resets(remaining, reset_s, during, after):
    state = next_rate(RateState(), Headers(limit=60, remaining=remaining, reset_s=reset_s), 0)
    assert dispatch_rate(state, 10) == pytest.approx(during)
    assert dispatch_rate(state, 25) == pytest.approx(after)


def test_an_exhausted_window_holds_dispatch_until_it_resets():
    state = next_rate(RateState(), Headers(limit=60, remaining=0, reset_s=3), 0)
    assert earliest_start(state, now=0.5, last_start=0, paused_until=0) == 3
    assert earliest_start(state, now=4, last_start=3, paused_until=0) == 4


HELD = next_rate(RateState(), Headers(limit=60, remaining=5, reset_s=20), 0)

EARLIEST_START_CASES = [
    # (state, now, last_start, paused_until, expected)
    (RateState(), 5, 4.9, 0, 5),  # unpaced: at once
    (RateState(rate=1), 0, -math.inf, -math.inf, 0),  # the first one: at once
    (RateState(rate=1), 5, 4.5, 0, 5.5),  # evenly spaced after the last
    (RateState(rate=1), 5, 1, 0, 5),  # after an idle spell: now, not a burst of catch-up
    (RateState(rate=1), 5, 4.5, 8, 8),  # a pause outlasts the spacing
    (RateState(), 5, 4.9, 8, 8),  # a pause holds an unpaced pool too
    (HELD, 10, 9, 0, 13),  # a window hold: 5 left for 20 s, one every 4 s
    (HELD, 18.5, 18, 0, 20),  # the next held slot would be after the reset: at the reset
    (HELD, 25, 24.5, 0, 25.5),  # after the reset: the limit's spacing again
]


@pytest.mark.parametrize(("state", "now", "last", "paused", "expected"), EARLIEST_START_CASES)
def test_earliest_start_spaces_attempts_and_honours_pauses(state, now, last, paused, expected):
    assert earliest_start(state, now=now, last_start=last, paused_until=paused) == expected


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("6m0s", 360),
        ("20ms", 0.02),
        ("1m30.5s", 90.5),
        ("2h", 7200),
        ("0s", 0),
        ("500us", 0.0005),
        ("250ns", 2.5e-7),
        (".5s", 0.5),
        (" 12s ", 12),
        ("1.5", 1.5),
        ("60", 60),
    ],
)
def test_parse_duration_reads_go_style_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "abc", "1x", "1s2", "1m-2s", "-1s", "-3", "inf", "1 s"])
def test_parse_duration_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError, match=r"duration .* is not understood"):
        parse_duration(text)


def test_headers_event_reads_rate_limit_headers_in_any_case():
    headers = {
        "X-RateLimit-Limit-Requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "100000",
    }
    assert headers_event(headers) == Headers(limit=60, remaining=59, reset_s=1)


def test_headers_event_leaves_out_what_does_not_parse():
    headers = {"x-ratelimit-limit-requests": "lots", "x-ratelimit-reset-requests": "6m0s"}
    assert headers_event(headers) == Headers(limit=None, remaining=None, reset_s=360)
    assert headers_event({"content-type": "application/json"}) is None


# --- RateGate on a fake clock ------------------------------------------------------------


async def test_waiters_start_evenly_spaced_in_arrival_order():
    fake = FakeTime()
    gate = gate_on(fake, rpm=60)
    _, starts = start_waiters(gate, fake, 5)
    await fake.run()
    assert starts == {0: 0, 1: 1, 2: 2, 3: 3, 4: 4}


async def test_only_the_head_waiter_sleeps():
    fake = FakeTime()
    gate = gate_on(fake, rpm=60)
    _, starts = start_waiters(gate, fake, 50)
    await fake.run()
    assert starts[49] == 49
    assert fake.sleeps == 49  # one timer per slot, no herd of sleepers waking together


async def test_a_rate_raised_during_a_long_wait_takes_effect_within_a_second():
    fake = FakeTime()
    gate = gate_on(fake, rpm=0)
    gate.on_rate_limited(None, {})  # nothing dispatched yet: the floor, one a minute
    assert gate.rate_per_s == FLOOR_PER_S
    _, starts = start_waiters(gate, fake, 2)
    await fake.run(until=1.5)
    assert starts == {0: DEFAULT_429_PAUSE_S}
    gate.on_success(LIMIT_60)  # the provider's limit: one a second
    await fake.run()
    assert starts[1] == 2.0  # not at 61


async def test_a_late_wake_up_does_not_push_the_schedule_back():
    fake = FakeTime(overshoot=0.2)
    gate = gate_on(fake, rpm=60)
    _, starts = start_waiters(gate, fake, 3)
    await fake.run()
    assert starts == {0: 0, 1: pytest.approx(1.2), 2: pytest.approx(2.2)}


async def test_after_an_idle_spell_the_next_attempt_starts_at_once_then_spaced():
    fake = FakeTime()
    gate = gate_on(fake, rpm=60)
    await gate.wait_turn()
    fake.now = 30
    _, starts = start_waiters(gate, fake, 2)
    await fake.run()
    assert starts == {0: 30, 1: 31}


async def test_a_user_rate_is_kept_through_headers_and_429s():
    fake = FakeTime()
    gate = gate_on(fake, rpm=120)
    gate.on_success(LIMIT_60)
    gate.on_rate_limited(2.0, {})
    assert gate.rate_per_s == 2.0
    assert gate.paused_until == 2.0
    assert gate_on(fake, rpm=0, adaptive=False).rate_per_s is None


@pytest.mark.parametrize(
    ("rpm", "starts_after_pause"),
    [(60, {0: 5, 1: 6, 2: 7}), (0, {0: 5, 1: 5, 2: 5})],
    ids=["paced: resume evenly spaced", "unpaced: resume together"],
)
async def test_a_pause_holds_every_waiter(rpm, starts_after_pause):
    fake = FakeTime()
    gate = gate_on(fake, rpm=rpm, adaptive=False)
    gate.pause_for(5)
    _, starts = start_waiters(gate, fake, 3)
    await fake.run()
    assert starts == starts_after_pause


async def test_a_longer_pause_extends_and_a_shorter_one_does_not_shorten():
    fake = FakeTime()
    gate = gate_on(fake, rpm=60)
    gate.pause_for(5)
    _, starts = start_waiters(gate, fake, 2)
    await fake.run(until=2)
    gate.pause_for(10)  # a later 429 asks for longer: until 12
    await fake.run(until=3)
    gate.pause_for(1)  # a shorter one: until 4, ignored
    await fake.run()
    assert gate.paused_until == 12
    assert starts == {0: 12, 1: 13}


async def test_a_rate_limited_response_pauses_the_pool_for_its_retry_after():
    fake = FakeTime()
    gate = gate_on(fake, rpm=0, adaptive=False)
    gate.on_rate_limited(7.5, {})
    assert gate.paused_until == 7.5
    gate.on_rate_limited(None, {})
    assert gate.paused_until == 7.5  # the default pause is shorter: no change
    fake.now = 10
    gate.on_rate_limited(None, {})
    assert gate.paused_until == 10 + DEFAULT_429_PAUSE_S


async def test_a_cancelled_head_waiter_gives_its_slot_to_the_next():
    fake = FakeTime()
    gate = gate_on(fake, rpm=60)
    tasks, starts = start_waiters(gate, fake, 3)
    await fake.run(until=0.5)
    tasks[1].cancel()  # it is sleeping towards its slot at 1
    await fake.run()
    assert starts == {0: 0, 2: 1}
    assert tasks[1].cancelled()
    _, later = start_waiters(gate, fake, 1)
    await fake.run()
    assert later == {0: 2}


async def test_a_cancelled_queued_waiter_does_not_disturb_the_others():
    fake = FakeTime()
    gate = gate_on(fake, rpm=60)
    tasks, starts = start_waiters(gate, fake, 4)
    await fake.run(until=0.5)
    tasks[2].cancel()  # queued behind the head
    await fake.run()
    assert starts == {0: 0, 1: 1, 3: 2}


async def test_the_gate_works_with_the_real_clock():
    gate = RateGate(rpm=60_000)  # 1 ms apart
    await asyncio.wait_for(asyncio.gather(*(gate.wait_turn() for _ in range(5))), timeout=5)
    assert gate.state.rate == 1000


async def test_adaptive_gate_is_seeded_by_rate_limit_headers():
    fake = FakeTime()
    gate = gate_on(fake, rpm=0)
    assert gate.rate_per_s is None
    gate.on_success({"x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "119"})
    assert gate.rate_per_s == 2.0
    _, starts = start_waiters(gate, fake, 3)
    await fake.run()
    assert starts == {0: 0, 1: 0.5, 2: 1}


async def test_adaptive_gate_cuts_once_for_a_burst_of_429s():
    fake = FakeTime()
    gate = gate_on(fake, rpm=0)
    gate.on_success(LIMIT_60)
    for _ in range(8):  # the requests that were in flight come back 429 together
        gate.on_rate_limited(2.0, LIMIT_60)
    assert gate.rate_per_s == pytest.approx(0.7)
    assert gate.paused_until == 2.0
    fake.now = 20
    gate.on_rate_limited(2.0, LIMIT_60)
    assert gate.rate_per_s == pytest.approx(0.49)


async def test_a_first_429_that_carries_the_limit_seeds_the_rate():
    fake = FakeTime()
    gate = gate_on(fake, rpm=0)
    _, starts = start_waiters(gate, fake, 30)
    await fake.run()
    assert len(starts) == 30
    gate.on_rate_limited(1.0, LIMIT_60)  # the cut judges the unpaced burst; the limit is news
    assert gate.rate_per_s == 1.0


async def test_adaptive_gate_first_cut_starts_from_what_it_dispatched():
    fake = FakeTime()
    gate = gate_on(fake, rpm=0)
    _, starts = start_waiters(gate, fake, 20)  # unpaced: all at once
    await fake.run()
    assert set(starts.values()) == {0}
    fake.now = 0.5
    gate.on_rate_limited(1.0, {})
    assert gate.rate_per_s == pytest.approx(20 * 0.7)  # 20 in the first second, cut by 0.7


async def test_adaptive_gate_rises_slowly_without_429s_and_never_on_errors():
    fake = FakeTime()
    gate = gate_on(fake, rpm=0)
    gate.on_success(LIMIT_60)
    gate.on_rate_limited(None, {})
    for second in range(1, 120):
        fake.now = second
        gate.on_error({})
    assert gate.rate_per_s == pytest.approx(0.7)
    rates = []
    for second in range(120, 180):
        fake.now = second
        gate.on_success(LIMIT_60)
        rates.append(gate.rate_per_s)
    steps = [b - a for a, b in itertools.pairwise(rates) if b != a]
    assert rates[0] == pytest.approx(0.8)
    assert steps and all(0 < step <= 0.1 + 1e-9 for step in steps)
    assert len(steps) <= 60 / window_s(1.0) + 1
    assert rates[-1] == pytest.approx(1.0)


async def test_adaptive_below_a_user_rate_never_exceeds_it():
    fake = FakeTime()
    gate = gate_on(fake, rpm=30, adaptive=True)
    gate.on_success({"x-ratelimit-limit-requests": "600"})
    assert gate.rate_per_s == 0.5
    gate.on_rate_limited(1.0, {})
    assert gate.rate_per_s == pytest.approx(0.35)


def test_a_negative_rate_is_refused_with_a_fix():
    with pytest.raises(ValueError, match="requests_per_minute"):
        RateGate(rpm=-1)


# --- Little's law -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("concurrency", "rate", "latency", "advised"),
    [
        (8, 10, 2, "22"),  # 600/min at 2 s needs 20 in flight, 22 with headroom
        (4, 50 / 60, 30, "28"),  # tier 3 images at 30 s: 25 needed
        (1, 1, 1.5, "2"),
        (8, 5, 10, "55"),  # 50 x 1.1 is 55.00000000000001 in floating point: still 55
    ],
)
def test_littles_law_warns_with_the_concurrency_to_set(concurrency, rate, latency, advised):
    message = littles_law_warning(concurrency, rate, latency)
    assert message is not None
    assert f"to {advised} or more" in message
    assert f"limits.concurrency {concurrency} cannot reach" in message


@pytest.mark.parametrize(
    ("concurrency", "rate", "latency"),
    [(32, 10, 1), (20, 10, 2), (4, 0, 30), (4, 1, 0)],
)
def test_littles_law_is_quiet_when_concurrency_suffices(concurrency, rate, latency):
    assert littles_law_warning(concurrency, rate, latency) is None


def test_littles_law_message_names_the_reachable_rate():
    message = littles_law_warning(8, 10, 2)
    assert "at most 240 requests/min" in message
    assert "cannot reach 600 requests/min" in message


async def test_a_probing_gate_trickles_until_the_first_answer_tells_the_rate():
    fake = FakeTime()
    gate = RateGate(rpm=0, clock=fake.clock, sleep=fake.sleep, probe=True)
    _, starts = start_waiters(gate, fake, 6)
    await fake.run(until=0.4)
    # one request out, then four a second, doubling every quarter second, while no answer came
    assert sorted(starts.values()) == pytest.approx([0, 0.25, 0.375])
    gate.on_success(LIMIT_60)  # the answer says: one a second
    gate.on_answer()
    await fake.run()
    assert sorted(starts.values()) == pytest.approx([0, 0.25, 0.375, 1.375, 2.375, 3.375])


@pytest.mark.parametrize(
    ("elapsed", "gap"), [(0.0, 0.25), (0.25, 0.125), (1.0, 1 / 64), (-1.0, 0.25)]
)
def test_before_the_first_answer_the_rate_doubles_every_quarter_second(elapsed, gap):
    assert probe_spacing_s(elapsed) == pytest.approx(gap)


async def test_a_gate_with_a_known_rate_does_not_probe():
    fake = FakeTime()
    gate = RateGate(rpm=600, clock=fake.clock, sleep=fake.sleep, probe=True)
    _, starts = start_waiters(gate, fake, 3)
    await fake.run()
    assert sorted(starts.values()) == pytest.approx([0, 0.1, 0.2])
