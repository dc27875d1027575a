"""The estimate: tables of single items, plan aggregation, and agreement with what the
simulator bills for the same requests."""

from __future__ import annotations

import math
from pathlib import Path
from types import MappingProxyType

import pytest

from pipeline import tokens
from pipeline.cost import price_table
from pipeline.estimate import estimate_item, estimate_plan, worst_cost_usd
from pipeline.plan import Budget, Endpoint, Item, Limits, Output, Plan

PRICES = price_table()
GPT1 = PRICES["gpt-image-1"]
SQUARE_IN = 65 + 129  # a 1024x1024 input: short side to 512, one tile


def item(prompt: str = "abcdefgh", n_images: int = 1, **params) -> Item:
    params.setdefault("model", "gpt-image-1")
    images = tuple(Path(f"/in/img{i}.png") for i in range(n_images))
    return Item(id="it", images=images, prompt=prompt, params=MappingProxyType(params))


# (params, image sizes, expected image_input, expected output, worst output)
CASES = [
    pytest.param(
        {"size": "1024x1024", "quality": "medium"}, [(1024, 1024)], SQUARE_IN, 1056, 1056,
        id="fixed-size-and-quality",
    ),
    pytest.param(
        {"size": "1024x1536", "quality": "auto"}, [(1024, 1024)], SQUARE_IN, 1584, 6240,
        id="auto-quality-fixed-size",
    ),
    pytest.param(
        {"size": "auto", "quality": "low"}, [(1536, 1024)], 65 + 129 * 2, 400, 408,
        id="auto-size-follows-first-image-aspect",
    ),
    pytest.param(
        {}, [(1024, 1536)], 65 + 129 * 2, 1584, 6240, id="missing-size-and-quality-are-auto"
    ),
    pytest.param(
        {"size": "1024x1024", "quality": "high", "n": 3}, [(1024, 1024)], SQUARE_IN, 3 * 4160,
        3 * 4160, id="n-multiplies-output",
    ),
    pytest.param(
        {"size": "1024x1024", "quality": "low", "input_fidelity": "high"}, [(1024, 1024)],
        SQUARE_IN + 4160, 272, 272, id="fidelity-square",
    ),
    pytest.param(
        {"size": "1024x1024", "quality": "low", "input_fidelity": "high"},
        [(1536, 1024), (1024, 1024)], 65 + 129 * 2 + SQUARE_IN + 6240, 272, 272,
        id="fidelity-from-first-image-only-and-every-image-counted",
    ),
    pytest.param(
        {"size": "2048x2048", "quality": "low"}, [(4096, 4096)], SQUARE_IN, 272 * 4, 272 * 4,
        id="large-size-scales-by-area",
    ),
    pytest.param(
        {"size": "1024x1024", "quality": "ultra"}, [(1024, 1024)], SQUARE_IN, 1056, 4160,
        id="unknown-quality-left-to-server",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("params", "sizes", "image_in", "out_expected", "out_worst"), CASES)
def test_estimate_item_counts_tokens_by_kind(params, sizes, image_in, out_expected, out_worst):
    est = estimate_item(item(n_images=len(sizes), **params), sizes, PRICES)
    assert est.expected.image_input == est.worst.image_input == image_in
    assert est.expected.image_output == out_expected
    assert est.worst.image_output == out_worst
    assert est.expected.text_output == est.worst.text_output == 0


def test_text_tokens_expected_by_rule_and_worst_by_utf8_bytes():
    prompt = "Éclairer le fond en blanc pur, façon studio"
    est = estimate_item(item(prompt, size="1024x1024", quality="low"), [(512, 512)], PRICES)
    assert est.expected.text_input == tokens.text_tokens(prompt) == math.ceil(len(prompt) / 4)
    assert est.worst.text_input == len(prompt.encode("utf-8")) > len(prompt)


def test_usd_follows_the_price_of_the_items_model():
    est = estimate_item(item("x" * 40, size="1024x1024", quality="medium"), [(1024, 1024)], PRICES)
    expected = (
        10 * GPT1.text_input + SQUARE_IN * GPT1.image_input + 1056 * GPT1.image_output
    ) / 1e6
    assert est.expected_usd == pytest.approx(expected)
    assert est.worst_usd == pytest.approx(expected + 30 * GPT1.text_input / 1e6)
    assert (
        worst_cost_usd(item("x" * 40, size="1024x1024", quality="medium"), [(1024, 1024)], PRICES)
        == est.worst_usd
    )


def test_unpriced_model_has_tokens_but_no_usd():
    est = estimate_item(item(model="someone-elses-model"), [(1024, 1024)], PRICES)
    assert est.expected.image_output > 0
    assert est.expected_usd is None and est.worst_usd is None
    assert worst_cost_usd(item(model="someone-elses-model"), [(1024, 1024)], PRICES) is None


def test_worst_is_never_below_expected_whatever_the_params():
    for size in ("auto", *tokens.SIZES):
        for quality in ("auto", *tokens.QUALITIES):
            for fidelity in ("low", "high"):
                it = item("prompt " * 9, size=size, quality=quality, input_fidelity=fidelity, n=2)
                est = estimate_item(it, [(800, 600)], PRICES)
                assert est.worst_usd >= est.expected_usd > 0


def planned(item_id: str, images: list[Path], model: str, **params) -> Item:
    params = MappingProxyType({"model": model, **params})
    return Item(id=item_id, images=tuple(images), prompt="p", params=params)


def make_plan(items: list[Item], pricing: dict | None = None) -> Plan:
    return Plan(
        manifest_path=Path("/jobs/job.yaml"),
        name="job",
        endpoint=Endpoint(),
        limits=Limits(),
        budget=Budget(),
        output=Output(dir=Path("/jobs/out")),
        ledger=Path("/jobs/out/ledger.jsonl"),
        items=tuple(items),
        pricing=MappingProxyType(pricing or {}),
    )


def test_estimate_plan_aggregates_per_model_and_reads_each_image_once():
    shared = Path("/in/shared.png")
    square = {"size": "1024x1024"}
    items = [planned(f"a{i}", [shared], "gpt-image-1", quality="low", **square) for i in range(5)]
    items += [
        planned("b", [shared, Path("/in/other.png")], "proxy-x", quality="high", **square),
        planned("c", [shared], "nowhere-priced", quality="low", **square),
    ]
    reads: list[Path] = []

    def dims_of(path: Path) -> tuple[int, int]:
        reads.append(path)
        return (1024, 1024)

    pricing = {"proxy-x": {"text_input": 1, "image_input": 1, "image_output": 1}}
    est = estimate_plan(make_plan(items, pricing), dims_of=dims_of)
    assert sorted(reads) == [Path("/in/other.png"), shared]
    data = est.to_json(items=True)
    assert data["pending"] == 7
    assert data["unpriced_models"] == ["nowhere-priced"]
    assert data["models"]["gpt-image-1"]["pending"] == 5
    assert data["models"]["gpt-image-1"]["expected_tokens"]["image_output"] == 5 * 272
    proxy_usd = (1 + 2 * SQUARE_IN + 4160) / 1e6
    assert data["models"]["proxy-x"]["expected_usd"] == pytest.approx(proxy_usd)
    gpt1_usd = 5 * (GPT1.text_input + SQUARE_IN * GPT1.image_input + 272 * GPT1.image_output) / 1e6
    assert data["expected_usd"] == pytest.approx(gpt1_usd + proxy_usd, abs=1e-6)
    assert data["expected_tokens"]["image_output"] == 6 * 272 + 4160
    assert [i["id"] for i in data["items"]] == ["a0", "a1", "a2", "a3", "a4", "b", "c"]
    assert data["items"][6]["expected_usd"] is None


def test_estimate_plan_covers_only_the_items_given():
    items = [planned(f"i{k}", [Path("/in/x.png")], "gpt-image-1") for k in range(4)]
    est = estimate_plan(make_plan(items), items[2:], dims_of=lambda p: (640, 480))
    assert est.total.pending == 2
    assert [e.item_id for e in est.items] == ["i2", "i3"]
    assert "items" not in est.to_json()


def test_price_override_is_used_by_the_estimate():
    it = planned("i", [Path("/in/x.png")], "gpt-image-1", size="1024x1024", quality="low")
    free = {"gpt-image-1": {"text_input": 0, "image_input": 0, "image_output": 0}}
    assert estimate_plan(make_plan([it], free), dims_of=lambda p: (64, 64)).total.worst_usd == 0
    assert estimate_plan(make_plan([it]), dims_of=lambda p: (64, 64)).total.worst_usd > 0
