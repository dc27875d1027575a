"""cost.usage: what a billed answer is recorded to cost, whatever `usage` the server sent."""

from __future__ import annotations

import math

import pytest

from pipeline.cost.pricing import Price, TokenCounts
from pipeline.cost.usage import charge, read_usage, recordable_usage

PRICE = Price(text_input=5, image_input=10, image_output=40)
EXPECTED = (0.011, TokenCounts(10, 80, 250))
WORST = (0.02, TokenCounts(20, 100, 400))
GOOD = {
    "input_tokens": 100,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 90},
    "output_tokens": 272,
    "total_tokens": 372,
}
GOOD_USD = (10 * 5 + 90 * 10 + 272 * 40) / 1e6


def usd(text_in=0, image_in=0, image_out=0) -> float:
    return (text_in * 5 + image_in * 10 + image_out * 40) / 1e6


# usage, usable -> (cost, estimated, suspect)
CASES = {
    "the image API's usage": (GOOD, True, (GOOD_USD, False, False)),
    "billed but unusable, usage read": (GOOD, False, (GOOD_USD, False, False)),
    "no usage on a kept answer: expected": (None, True, (0.011, True, False)),
    "no usage on an unusable answer: worst": (None, False, (0.02, True, False)),
    "chat-shaped: worst": (
        {"prompt_tokens": 100, "completion_tokens": 272},
        True,
        (0.02, True, False),
    ),
    "empty: worst": ({}, True, (0.02, True, False)),
    "not an object: worst": ([1, 2], True, (0.02, True, False)),
    "negative input: worst": ({**GOOD, "input_tokens": -7_700_000}, True, (0.02, True, False)),
    "string count: worst": ({**GOOD, "output_tokens": "272"}, True, (0.02, True, False)),
    "NaN count: worst": ({**GOOD, "output_tokens": math.nan}, True, (0.02, True, False)),
    "true as a count: worst": ({**GOOD, "output_tokens": True}, True, (0.02, True, False)),
    "no input details: unknown split at the image rate": (
        {"input_tokens": 100, "output_tokens": 272},
        True,
        (usd(image_in=100, image_out=272), True, False),
    ),
    "details not an object": (
        {**GOOD, "input_tokens_details": "text=10"},
        True,
        (usd(image_in=100, image_out=272), True, False),
    ),
    "negative detail": (
        {**GOOD, "input_tokens_details": {"text_tokens": -50, "image_tokens": 90}},
        True,
        (usd(image_in=100, image_out=272), True, False),
    ),
    "details short of the total: the rest at the image rate": (
        {**GOOD, "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}},
        True,
        (usd(text_in=10, image_in=90, image_out=272), True, False),
    ),
    "output details split": (
        {**GOOD, "output_tokens_details": {"image_tokens": 200, "text_tokens": 72}},
        True,
        (usd(text_in=10, image_in=90, image_out=272), False, False),
    ),
    "far above the worst case: counted, suspect": (
        {**GOOD, "output_tokens": 10**30},
        True,
        (usd(text_in=10, image_in=90) + 10**18 * 40 / 1e6, False, True),
    ),
    "integral float counts are counts": (
        {**GOOD, "output_tokens": 272.0},
        True,
        (GOOD_USD, False, False),
    ),
}


@pytest.mark.parametrize(("usage", "usable", "want"), CASES.values(), ids=CASES.keys())
def test_charge_of_each_kind_of_usage(usage, usable, want):
    got = charge(usage, PRICE, usable=usable, expected=EXPECTED, worst=WORST)
    cost, estimated, suspect = want
    assert got.cost_usd == pytest.approx(cost)
    assert (got.estimated, got.suspect) == (estimated, suspect)
    assert got.cost_usd >= 0
    assert all(getattr(got.counts, k) >= 0 for k in ("text_input", "image_input", "image_output"))


def test_an_unpriced_model_has_no_cost_but_its_tokens():
    got = charge(GOOD, None, usable=True, expected=(None, EXPECTED[1]), worst=(None, WORST[1]))
    assert got.cost_usd is None and got.counts == TokenCounts(10, 90, 272, 0)


def test_unknown_input_split_goes_to_the_dearer_input_rate():
    text_dearer = Price(text_input=20, image_input=10, image_output=40)
    reading = read_usage({"input_tokens": 100, "output_tokens": 0})
    assert reading.counts(text_dearer).text_input == 100
    assert reading.counts(PRICE).image_input == 100


def test_ledger_fields_flag_only_what_is_true():
    plain = charge(GOOD, PRICE, usable=True, expected=EXPECTED, worst=WORST)
    assert plain.ledger_fields() == {"cost_usd": round(GOOD_USD, 8)}
    flagged = charge({}, PRICE, usable=False, expected=EXPECTED, worst=WORST)
    assert flagged.ledger_fields() == {"cost_usd": 0.02, "cost_estimated": True}


@pytest.mark.parametrize(
    ("usage", "kept"),
    [
        (GOOD, GOOD),
        (None, None),
        (
            {"a": math.nan},
            {"unreadable": "the usage held values JSON cannot carry (NaN, infinity)"},
        ),
        ({"blob": "x" * 5000}, {"unreadable": "a usage of 5011 bytes, not copied"}),
    ],
)
def test_the_ledger_keeps_a_usage_only_when_small_and_plain(usage, kept):
    assert recordable_usage(usage) == kept
