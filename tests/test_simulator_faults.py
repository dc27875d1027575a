"""Faults: each kind at its configured rate, in its documented form, reproducible under a
seed; the fault spec and script grammars; stalls that never block shutdown."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import math
from collections import Counter

import aiohttp
import pytest
from PIL import Image, UnidentifiedImageError
from simfixtures import AUTH, edit_form, post_edit, settled_stats, stats_when

from pipeline.simulator import SimConfig, parse_faults, running
from pipeline.simulator.outcomes import (
    FAULTS,
    RATED,
    Outcome,
    parse_script,
    pick_outcome,
    request_rng,
)

EVERY_FAULT = dict.fromkeys(FAULTS, 0.06)


def within(count: int, trials: int, rate: float) -> bool:
    """Inside five standard deviations of the binomial mean."""
    spread = 5 * math.sqrt(trials * rate * (1 - rate))
    return abs(count - trials * rate) <= spread


def test_draws_land_on_each_fault_at_its_rate():
    trials = 20_000
    drawn = Counter(
        pick_outcome(request_rng(7, i).random(), EVERY_FAULT).name for i in range(trials)
    )
    for name in FAULTS:
        assert within(drawn[name], trials, 0.06), (name, drawn[name])
    assert within(drawn["ok"], trials, 1 - 0.06 * len(FAULTS))


def test_the_same_seed_draws_the_same_sequence_and_another_seed_another():
    def sequence(seed: int) -> list[str]:
        return [pick_outcome(request_rng(seed, i).random(), {"500": 0.3}).name for i in range(200)]

    assert sequence(1) == sequence(1)
    assert sequence(1) != sequence(2)


def classify(status: int, headers: dict[str, str], body: bytes) -> str:
    """Which documented form an answer has."""
    if status == 502:
        assert headers["content-type"].startswith("text/html")
        return "502"
    if status != 200:
        error = json.loads(body)["error"]
        if status == 429:
            if error["type"] == "requests":
                assert {"retry-after-ms", "retry-after"} <= set(headers)
            return {"requests": "429", "insufficient_quota": "quota"}[error["type"]]
        if status == 400:
            assert error["moderation_details"]["moderation_stage"] in ("input", "output")
            assert error["type"] == "image_generation_user_error"
            return {"moderation_blocked": "moderation"}[error["code"]]
        assert error["type"] == "server_error"
        return str(status)
    try:
        answer = json.loads(body)
    except json.JSONDecodeError:
        return "truncated"
    try:
        Image.open(io.BytesIO(base64.b64decode(answer["data"][0]["b64_json"], validate=True)))
    except (UnidentifiedImageError, binascii.Error):
        return "corrupt"
    assert answer["usage"]["total_tokens"] > 0
    return "ok"


async def observe(session: aiohttp.ClientSession, url: str, gate: asyncio.Semaphore) -> str:
    async with gate:
        try:
            status, headers, body = await post_edit(session, url, edit_form({"quality": "low"}))
        except aiohttp.ClientPayloadError:
            return "reset"
        except TimeoutError:
            return "stall"
        return classify(status, headers, body)


async def test_every_fault_kind_comes_at_its_rate_in_its_documented_form():
    trials = 400
    # Long enough that only a stall runs into it, even on a loaded 2-core machine.
    timeout = aiohttp.ClientTimeout(total=3.0)
    async with (
        running(SimConfig(faults=EVERY_FAULT, seed=3)) as url,
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        gate = asyncio.Semaphore(40)
        seen = Counter(await asyncio.gather(*(observe(session, url, gate) for _ in range(trials))))
        stats = await settled_stats(session, url)
    assert seen == Counter(stats["by_outcome"])  # each answer had its outcome's form
    for name in FAULTS:
        assert within(seen[name], trials, 0.06), (name, seen)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", {}),
        ("500=0.05,429=0.1,reset=0.02", {"500": 0.05, "429": 0.1, "reset": 0.02}),
        (" stall = 0.5 , ", {"stall": 0.5}),
        ("nousage=1", {"nousage": 1.0}),
    ],
)
def test_fault_specs_parse_to_rates(spec, expected):
    assert parse_faults(spec) == expected


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("500", "is not NAME=RATE"),
        ("boom=0.1", "unknown fault 'boom'"),
        ("500=lots", "'lots' is not a number"),
        ("500=1.5", "is not a probability"),
        ("500=0.1,500=0.2", "given twice"),
        ("500=0.6,503=0.6", "add up to 1.2"),
        ("ok=0.1", "unknown fault 'ok'"),
    ],
)
def test_bad_fault_specs_say_what_is_wrong(spec, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse_faults(spec)


def test_a_config_with_bad_rates_is_refused_when_built():
    with pytest.raises(ValueError, match=r"SimConfig\.faults: unknown fault 'teapot'"):
        SimConfig(faults={"teapot": 0.1})
    with pytest.raises(ValueError, match=r"SimConfig\.rpm"):
        SimConfig(rpm=-1)


def test_scripts_parse_names_and_retry_afters():
    assert parse_script(" 429:0.05, 500 ,OK,stall") == (
        Outcome("429", 0.05), Outcome("500"), Outcome("ok"), Outcome("stall"),
    )  # fmt: skip
    for bad, complaint in [
        ("ok,nope", "unknown outcome 'nope'"),
        ("quota:1", "only 429"),
        ("429:-1", "seconds >= 0"),
        ("429:soon", "seconds >= 0"),
    ]:
        with pytest.raises(ValueError, match=complaint):
            parse_script(bad)
    assert set(RATED) >= set(FAULTS)


async def test_a_stalled_request_ends_when_its_client_gives_up():
    async with running() as url, aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                post_edit(session, url, edit_form({"prompt": "[sim:stall]"})), 0.2
            )
        stats = await settled_stats(session, url)
    assert stats["by_outcome"] == {"stall": 1}
    assert stats["by_status"] == {}


async def test_shutdown_closes_stalled_requests_instead_of_waiting_for_them():
    async with aiohttp.ClientSession() as session:
        async with running() as url:
            stalled = asyncio.create_task(
                post_edit(session, url, edit_form({"prompt": "[sim:stall]"}))
            )
            await stats_when(session, url, lambda stats: stats["in_flight"] == 1)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await stalled


async def test_a_reset_sends_headers_and_part_of_the_body_then_closes():
    async with running() as url, aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/images/edits", data=edit_form({"prompt": "[sim:reset]"}), headers=AUTH
        ) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError, match="Not enough data"):
                await response.read()
