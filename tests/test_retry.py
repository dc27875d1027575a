"""Retry decisions by tables (no network, no clock, no sleep), and the tenacity wiring driven
by scripted coroutines with a sleep that only records what it was asked to wait."""

from __future__ import annotations

import email.utils
import random

import pytest

from pipeline.api.answers import (
    cause_of,
    classify,
    fix_hint,
    one_line,
    parse_retry_after,
    read_error,
)
from pipeline.core.errors import (
    AttemptError,
    FatalError,
    PermanentError,
    RateLimited,
    RetryableError,
)
from pipeline.engine.retry import Tally, backoff_s, retrying, worth_retrying

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (408, None, RetryableError),
        (409, None, RetryableError),
        (500, {"type": "server_error"}, RetryableError),
        (502, None, RetryableError),
        (503, None, RetryableError),
        (504, None, RetryableError),
        (429, {"type": "requests", "code": "rate_limit_exceeded"}, RateLimited),
        (429, {"type": "tokens", "code": "rate_limit_exceeded"}, RateLimited),
        (429, None, RateLimited),
        (429, {"type": "insufficient_quota", "code": "insufficient_quota"}, FatalError),
        (429, {"type": "requests", "code": "billing_hard_limit_reached"}, FatalError),
        (429, {"type": "invalid_request_error", "code": "billing_not_active"}, FatalError),
        (429, {"type": "Insufficient_Quota", "code": None}, FatalError),
        (429, {"type": "error", "code": "credit_balance_too_low"}, FatalError),
        (
            400,
            {"type": "image_generation_user_error", "code": "moderation_blocked"},
            PermanentError,
        ),
        (400, {"type": "invalid_request_error", "code": "invalid_value"}, PermanentError),
        (413, None, PermanentError),
        (422, None, PermanentError),
        (418, None, PermanentError),
        (401, {"code": "invalid_api_key"}, FatalError),
        (403, None, FatalError),
        (404, {"code": "model_not_found"}, FatalError),
        (302, None, FatalError),
    ],
)
def test_classify_follows_the_contract_table(status, error, expected):
    assert classify(status, error) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RateLimited("slow down", http_status=429), "rate_limit"),
        (RetryableError("stalled", transport="timeout"), "timeout"),
        (RetryableError("reset", transport="connection reset"), "connection"),
        (RetryableError("cut", transport="truncated body"), "connection"),
        (RetryableError("timeout", http_status=408), "conflict"),
        (RetryableError("conflict", http_status=409), "conflict"),
        (RetryableError("bad gateway", http_status=502), "server_error"),
        (RetryableError("unusable response: not JSON", http_status=200), "bad_response"),
        (PermanentError("moderation", http_status=400), "rejected"),
        (FatalError("bad key", http_status=401), "fatal"),
    ],
)
def test_cause_of_names_the_ledger_cause(exc, expected):
    assert cause_of(exc) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250.5"}, 0.2505),
        ({"retry-after-ms": "200", "retry-after": "30"}, 0.2),
        ({"retry-after-ms": "junk", "retry-after": "3"}, 3.0),
        ({"retry-after-ms": "-100", "retry-after": "4"}, 4.0),
        ({"retry-after": "12"}, 12.0),
        ({"Retry-After": " 0.75 "}, 0.75),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "172800"}, None),  # two days: garbage, not a plan
        ({"retry-after": "86400"}, 86400.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(NOW + 45)}, 45.0),  # "-0000" zone
        ({"retry-after": email.utils.formatdate(NOW - 60, usegmt=True)}, 0.0),
        ({"retry-after": email.utils.formatdate(NOW + 3 * 86400, usegmt=True)}, None),
    ],
)
def test_parse_retry_after_reads_ms_seconds_and_dates(headers, expected):
    got = parse_retry_after(headers, NOW)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("attempt", "floor", "rand", "expected"),
    [
        (1, None, 0.5, 0.5),
        (2, None, 0.5, 1.0),
        (3, None, 0.5, 2.0),
        (7, None, 0.5, 30.0),  # 64 s capped at 60
        (10_000, None, 0.999, 59.94),  # no overflow, still capped
        (1, None, 0.0, 0.0),
        (2, 5.0, 0.1, 5.0),  # the server's floor wins over a short draw
        (2, 0.1, 0.9, 1.8),  # a draw above the floor stands
        (1, 120.0, 0.5, 120.0),  # the floor may exceed the cap: the server knows best
    ],
)
def test_backoff_is_full_jitter_capped_and_floored(attempt, floor, rand, expected):
    got = backoff_s(attempt, base=1.0, cap=60.0, floor=floor, rand=rand)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(("attempt", "rand"), [(0, 0.5), (1, 1.0), (1, -0.1)])
def test_backoff_rejects_out_of_range_inputs(attempt, rand):
    with pytest.raises(ValueError):
        backoff_s(attempt, floor=None, rand=rand)


@pytest.mark.parametrize(
    ("body", "content_type", "error", "message"),
    [
        (
            b'{"error": {"message": "Bad size", "type": "invalid_request_error", '
            b'"param": "size", "code": "invalid_value"}}',
            "application/json",
            {
                "message": "Bad size",
                "type": "invalid_request_error",
                "param": "size",
                "code": "invalid_value",
            },
            "HTTP 400: Bad size",
        ),
        (
            b'{"error": "upstream said no"}',
            "application/json",
            {"message": "upstream said no"},
            "HTTP 400: upstream said no",
        ),
        (
            b"<html><body>" + b"x" * 5000 + b"</body></html>",
            "text/html",
            None,
            "HTTP 400 from server (HTML body)",
        ),
        (b"  <!DOCTYPE html><p>oops</p>", "", None, "HTTP 400 from server (HTML body)"),
        (b"", "", None, "HTTP 400: empty body"),
        (b"plain\n\n  words", "text/plain", None, "HTTP 400: plain words"),
    ],
)
def test_read_error_extracts_the_error_object_and_one_line(body, content_type, error, message):
    assert read_error(400, body, content_type) == (error, message)


def test_read_error_cuts_a_long_text_body():
    _, message = read_error(500, b"y" * 10_000, "text/plain")
    assert len(message) < 220 and message.endswith("…")


def test_one_line_keeps_short_text_whole():
    assert one_line("a\n b\tc") == "a b c"


HINT_CONTEXT = {"model": "gpt-image-9", "key_env": "MY_PROXY_KEY", "base_url": "http://h/v1"}


@pytest.mark.parametrize(
    ("cls", "status", "error", "needles"),
    [
        (FatalError, 401, {"code": "invalid_api_key"}, ["$MY_PROXY_KEY", "api_key_env"]),
        (FatalError, 403, None, ["'gpt-image-9'", "access"]),
        (FatalError, 404, {"code": "model_not_found"}, ["'gpt-image-9'", "http://h/v1"]),
        (FatalError, 429, {"code": "insufficient_quota"}, ["billing", "credit"]),
        (FatalError, 307, None, ["endpoint.base_url"]),
        (PermanentError, 400, {"code": "moderation_blocked"}, ["prompt or images"]),
        (PermanentError, 400, {"param": "size"}, ["'size'", "defaults.size"]),
        (PermanentError, 413, None, ["smaller"]),
        (PermanentError, 422, None, ["parameters or inputs"]),
    ],
)
def test_fix_hint_says_what_to_change(cls, status, error, needles):
    hint = fix_hint(cls, status, error, **HINT_CONTEXT)
    for needle in needles:
        assert needle in hint


@pytest.mark.parametrize("cls", [RetryableError, RateLimited])
def test_fix_hint_is_empty_for_retryable_errors(cls):
    assert fix_hint(cls, 503, None, **HINT_CONTEXT) == ""


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RetryableError("502", http_status=502), True),
        (RetryableError("stalled", transport="timeout"), True),
        (RateLimited("429", http_status=429), True),
        (PermanentError("400", http_status=400), False),
        (FatalError("401", http_status=401), False),
        (RuntimeError("a bug"), False),
    ],
)
def test_worth_retrying_only_retryable_errors(exc, expected):
    assert worth_retrying(exc) is expected


class FixedRandom(random.Random):
    """Every draw is the same number, so waits are exact."""

    def __init__(self, value: float):
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


class Script:
    """A coroutine function that raises the scripted errors in turn, then returns "ok"."""

    def __init__(self, *outcomes: AttemptError | Exception):
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.outcomes:
            raise self.outcomes.pop(0)
        return "ok"


def recorder() -> tuple[list[float], object]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return waits, sleep


async def test_retrying_honours_retry_after_floors_and_succeeds():
    waits, sleep = recorder()
    script = Script(
        RateLimited("429", http_status=429, retry_after_s=7.0),
        RetryableError("500", http_status=500),
        RetryableError("reset", transport="connection reset", retry_after_s=0.25),
    )
    controller = retrying(max_attempts=5, sleep=sleep, rng=FixedRandom(0.5))
    assert await controller(script) == "ok"
    assert script.calls == 4
    # attempt 1: floor 7 beats 0.5; attempt 2: 0.5 * 2; attempt 3: 0.5 * 4 beats floor 0.25
    assert waits == [7.0, 1.0, 2.0]


async def test_retrying_stops_at_max_attempts_and_reraises_the_last_error():
    waits, sleep = recorder()
    last = RetryableError("third", http_status=503)
    script = Script(RetryableError("first", http_status=502), RateLimited("second"), last)
    controller = retrying(max_attempts=3, sleep=sleep, rng=FixedRandom(0.0))
    with pytest.raises(RetryableError) as caught:
        await controller(script)
    assert caught.value is last
    assert script.calls == 3
    assert len(waits) == 2


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("moderation", http_status=400, code="moderation_blocked"),
        FatalError("bad key", http_status=401),
        KeyError("a bug is not retried"),
    ],
)
async def test_retrying_does_not_retry_other_errors(error):
    waits, sleep = recorder()
    script = Script(error)
    controller = retrying(max_attempts=5, sleep=sleep, rng=FixedRandom(0.5))
    with pytest.raises(type(error)) as caught:
        await controller(script)
    assert caught.value is error
    assert script.calls == 1
    assert waits == []


async def test_retrying_with_a_tally_counts_only_the_failures_it_is_told_count():
    waits, sleep = recorder()
    tally = Tally()
    outcomes = iter([False, False, True, True])  # two probes in an outage, then two counted

    class Counted(Script):
        async def __call__(self):
            try:
                return await super().__call__()
            except RetryableError:
                tally.failed(next(outcomes))
                raise

    last = RetryableError("4", http_status=503, retry_after_s=0.25)
    script = Counted(*(RetryableError(str(n), http_status=503) for n in range(3)), last)
    controller = retrying(max_attempts=2, sleep=sleep, rng=FixedRandom(0.5), tally=tally)
    with pytest.raises(RetryableError) as caught:
        await controller(script)
    assert caught.value is last and script.calls == 4 and tally.used == 2
    # uncounted failures wait only for their floor (the circuit spaces probes); the counted
    # one backs off on the item's own count (0.5 x 1)
    assert waits == [0.0, 0.0, 0.5]


async def test_retrying_tells_before_sleep_how_long_it_will_wait():
    waits, sleep = recorder()
    told: list[tuple[int, float, str]] = []

    def before_sleep(state) -> None:
        exc = state.outcome.exception()
        told.append((state.attempt_number, state.next_action.sleep, cause_of(exc)))

    script = Script(RateLimited("429", http_status=429, retry_after_s=3.0))
    controller = retrying(
        max_attempts=2, sleep=sleep, rng=FixedRandom(0.5), before_sleep=before_sleep
    )
    assert await controller(script) == "ok"
    assert told == [(1, 3.0, "rate_limit")]
    assert waits == [3.0]


def test_retrying_refuses_zero_attempts():
    _, sleep = recorder()
    with pytest.raises(ValueError):
        retrying(max_attempts=0, sleep=sleep, rng=random.Random(1))
