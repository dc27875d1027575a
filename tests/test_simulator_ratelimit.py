"""The rate limit: a token bucket on an injected clock, its 429 with retry-after, and the
x-ratelimit-* headers on every answer of the API's routes."""

from __future__ import annotations

import json

import aiohttp
import pytest
from simfixtures import edit_form, post_edit, sim_stats

from pipeline.simulator import SimConfig, running
from pipeline.simulator.ratelimit import TokenBucket, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_admits_its_burst_then_says_when_the_next_token_comes():
    clock = FakeClock()
    bucket = TokenBucket(rpm=60, burst=3, clock=clock)
    assert [bucket.try_take().admitted for _ in range(3)] == [True, True, True]
    refused = bucket.try_take()
    assert (refused.admitted, refused.retry_after_s) == (False, pytest.approx(1.0))
    clock.now += 0.5
    assert bucket.try_take().retry_after_s == pytest.approx(0.5)
    clock.now += 0.46  # 40 ms early: within the grace for loopback jitter
    assert bucket.try_take().admitted
    clock.now += 0.5
    assert not bucket.try_take().admitted


def test_the_bucket_refills_at_rpm_and_never_above_its_burst():
    clock = FakeClock()
    bucket = TokenBucket(rpm=120, burst=2, clock=clock)
    bucket.try_take(), bucket.try_take()
    clock.now += 3600
    assert [bucket.try_take().admitted for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(("rpm", "capacity"), [(5, 1.0), (60, 1.0), (600, 10.0)])
def test_the_default_burst_is_one_seconds_worth_and_at_least_one(rpm, capacity):
    assert TokenBucket(rpm=rpm, clock=FakeClock()).capacity == capacity


def test_the_window_reports_remaining_requests_of_the_minute_and_time_to_full():
    clock = FakeClock()
    bucket = TokenBucket(rpm=600, clock=clock)  # 10 tokens a second, 10 at most
    for _ in range(5):
        bucket.try_take()
    window = bucket.window()
    assert (window.limit, window.remaining, window.used) == (600, 300, 300)
    assert window.reset_s == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.012, "12ms"), (0.05, "50ms"), (0.9991, "1s"), (1, "1s"), (1.5, "1.5s"),
        (12, "12s"), (360, "6m0s"), (361.25, "6m1.25s"), (3725, "1h2m5s"),
    ],
)  # fmt: skip
def test_durations_are_written_like_the_apis_headers(seconds, text):
    assert format_duration(seconds) == text


async def test_over_the_limit_a_429_says_when_to_retry_and_time_refills_the_bucket():
    clock = FakeClock()
    async with running(SimConfig(rpm=2), clock=clock) as url, aiohttp.ClientSession() as session:
        first = await post_edit(session, url, edit_form())
        second = await post_edit(session, url, edit_form())
        clock.now += 30
        third = await post_edit(session, url, edit_form())
        stats = await sim_stats(session, url)
    assert [first[0], second[0], third[0]] == [200, 429, 200]
    _, headers, body = second
    assert (headers["retry-after-ms"], headers["retry-after"]) == ("30000", "30")
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert error["message"].startswith(
        "Rate limit reached for gpt-image-1 in organization org-simulator on requests per min "
        "(RPM): Limit 2, Used 2, Requested 1. Please try again in 30s."
    )
    assert stats["by_outcome"] == {"ok": 2, "rate_limited": 1}


async def test_every_api_answer_carries_the_rate_limit_headers():
    clock = FakeClock()
    async with running(SimConfig(rpm=120), clock=clock) as url, aiohttp.ClientSession() as session:
        ok = await post_edit(session, url, edit_form())
        refused = await post_edit(session, url, edit_form({"size": "wrong"}))
        unauthorized = await post_edit(session, url, edit_form(), {"Authorization": ""})
    for status, headers, _ in (ok, refused, unauthorized):
        assert headers["x-ratelimit-limit-requests"] == "120", status
        assert headers["x-ratelimit-remaining-requests"] == "60"  # half the bucket left
        assert headers["x-ratelimit-reset-requests"] == "500ms"
        assert headers["x-request-id"].startswith("req_")
        assert int(headers["openai-processing-ms"]) >= 0
