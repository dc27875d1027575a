"""The circuit breaker's decisions, by tables: when it opens, how probes are spaced, how it
ramps back up, when an outage ends the run, and which failures count against an item."""

from __future__ import annotations

import math

import pytest

from pipeline.engine.breaker import (
    OPEN_AFTER,
    Breaker,
    BreakerSettings,
    Mode,
    after_failure,
    after_neutral,
    after_success,
    counts_against_item,
    decide,
    probe_ceiling_s,
)

SETTINGS = BreakerSettings(concurrency=4, base_s=1.0, cap_s=60.0, max_outage_s=100.0)


def play(events: str, *, rand: float = 0.5, start: float = 0.0, step: float = 1.0) -> Breaker:
    """Apply events one second apart: s = success, f = failure, p = failed probe."""
    state, now = Breaker(), start
    for event in events:
        if event == "s":
            state = after_success(state, SETTINGS)
        else:
            state = after_failure(
                state,
                now,
                SETTINGS,
                probe=event == "p",
                retry_after_s=None,
                cause="503: down",
                rand=rand,
            )
        now += step
    return state


@pytest.mark.parametrize(
    ("events", "mode"),
    [
        ("", Mode.CLOSED),
        ("ffff", Mode.CLOSED),  # fewer than OPEN_AFTER failures
        ("fffff", Mode.OPEN),  # five in a row
        ("sssssfffff", Mode.CLOSED),  # five of ten: failures do not outrun successes
        ("ssssffffff", Mode.OPEN),  # six of ten
        ("sfsfsfsfsf", Mode.CLOSED),  # as many failures as successes does not open it
        ("fsfsfsfsf", Mode.OPEN),  # five to four does
        ("ffsffsff", Mode.OPEN),  # six failures to two successes
        ("fffffs", Mode.RAMP),  # the first success closes it, into slow start
        ("fffffsss", Mode.RAMP),  # allowed 3 of 4
        ("fffffssss", Mode.CLOSED),  # ramped up to the concurrency
    ],
)
def test_failures_that_outrun_successes_open_the_circuit(events, mode):
    assert OPEN_AFTER == 5
    assert play(events).mode is mode


@pytest.mark.parametrize(
    ("failed", "ceiling"), [(0, 1.0), (1, 2.0), (3, 8.0), (5, 32.0), (6, 60.0), (200, 60.0)]
)
def test_probes_back_off_exponentially_up_to_the_cap(failed, ceiling):
    assert probe_ceiling_s(failed, SETTINGS) == ceiling


def test_one_probe_at_a_time_spaced_by_full_jitter_backoff():
    state = play("fffff", rand=0.5)  # opened at t=4: first probe within 0.5 x 1 s
    assert state.mode is Mode.OPEN and state.next_probe_at == 4.5
    assert decide(state, 4.0, 0, SETTINGS).wait_s == pytest.approx(0.5)
    turn = decide(state, 4.5, 0, SETTINGS)
    assert turn.go and turn.probe
    from dataclasses import replace

    out = replace(state, probing=True)
    assert not decide(out, 10.0, 1, SETTINGS).go  # a probe is out: nobody else goes
    failed = after_failure(
        out, 5.0, SETTINGS, probe=True, retry_after_s=None, cause="503", rand=0.5
    )
    assert failed.probes_failed == 1 and failed.next_probe_at == 5.0 + 0.5 * 2.0
    assert not failed.probing


def test_a_retry_after_is_a_floor_for_the_next_probe():
    state = play("fffff")
    state = after_failure(
        state, 10.0, SETTINGS, probe=True, retry_after_s=30.0, cause="503", rand=0.0
    )
    assert state.next_probe_at == 40.0
    # a 429 on the probe: neutral for the breaker, but its retry-after still holds
    state = after_neutral(state, 41.0, probe=True, retry_after_s=5.0)
    assert state.next_probe_at == 46.0 and state.probes_failed == 1


def test_a_failure_sent_before_the_circuit_opened_does_not_advance_the_probes():
    state = play("fffff")
    late = after_failure(
        state, 4.2, SETTINGS, probe=False, retry_after_s=None, cause="503", rand=0.9
    )
    assert late.probes_failed == 0 and late.next_probe_at == state.next_probe_at


def test_slow_start_lets_one_more_in_flight_per_success():
    state = play("fffffs")
    assert state.allowed == 1 and state.failing_since is None
    assert decide(state, 99.0, 0, SETTINGS).go and not decide(state, 99.0, 1, SETTINGS).probe
    assert not decide(state, 99.0, 1, SETTINGS).go
    state = after_success(state, SETTINGS)
    assert state.allowed == 2 and decide(state, 99.0, 1, SETTINGS).go
    state = after_success(state, SETTINGS)
    state = after_failure(state, 9.0, SETTINGS, probe=False, retry_after_s=None, cause="x", rand=0)
    assert state.mode is Mode.RAMP and state.allowed == 3  # a failure alone does not shrink it


@pytest.mark.parametrize(
    ("max_outage_s", "now", "outage"),
    [(100.0, 99.0, False), (100.0, 100.0, True), (0.0, 1e9, False)],
)
def test_nothing_but_failures_for_max_outage_s_ends_the_run(max_outage_s, now, outage):
    settings = BreakerSettings(concurrency=4, max_outage_s=max_outage_s)
    state = play("fffff")  # failing since t=0
    assert decide(state, now, 0, settings).outage is outage


def test_waiting_for_a_probe_never_sleeps_past_the_outage_deadline():
    state = play("fffff" + "p" * 8, rand=0.99)  # the last probe at t=12, the next at 71.4
    assert state.next_probe_at == pytest.approx(71.4)
    settings = BreakerSettings(concurrency=4, max_outage_s=50.0)  # failing since t=0
    turn = decide(state, 40.0, 0, settings)
    assert not turn.go and turn.wait_s == pytest.approx(10.0)
    assert decide(Breaker(), 0.0, 0, SETTINGS).wait_s == 0.0
    assert math.isinf(decide(Breaker(mode=Mode.RAMP, allowed=1), 0, 1, SETTINGS).wait_s)


def test_a_success_clears_the_outage_clock():
    state = play("ffff")
    assert state.failing_since == 0.0
    assert after_success(state, SETTINGS).failing_since is None


@pytest.mark.parametrize(
    ("events", "probe", "counts"),
    [
        ("", False, True),  # a failure while the provider answers uses up an attempt
        ("ffff", False, False),  # the fifth failure opens the circuit: the outage's, not the item's
        ("fffff", True, False),  # a probe never counts
        ("fffff", False, False),  # nor a failure sent before the circuit opened
        ("fffffs", False, True),  # ramping: the provider answers again
    ],
)
def test_only_failures_while_the_provider_answers_count_against_an_item(events, probe, counts):
    state = play(events)
    state = after_failure(
        state, 50.0, SETTINGS, probe=probe, retry_after_s=None, cause="503", rand=0.5
    )
    assert counts_against_item(state, probe=probe) is counts
