"""The estimate: tables of single items, plan aggregation, and agreement with what the
simulator bills for the same requests."""

from __future__ import annotations

import math
from pathlib import Path
from types import MappingProxyType

import pytest
from helpers import make_image, make_mask

from pipeline.core.plan import Budget, Endpoint, Item, Limits, Output, Plan
from pipeline.cost import tokens
from pipeline.cost.estimate import estimate_item, estimate_plan, worst_cost_usd
from pipeline.cost.pricing import cost_of_usage, price_table

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


def test_estimate_plan_reads_real_image_headers(tmp_path):
    jpeg = make_image(tmp_path / "wide.jpg", (1536, 1024))
    webp = make_image(tmp_path / "small.webp", (300, 200))
    it = planned("i", [jpeg, webp], "gpt-image-1", size="1024x1024", quality="low")
    est = estimate_plan(make_plan([it]))
    assert est.items[0].expected.image_input == (65 + 129 * 2) + (65 + 129)  # small: no upscale


def sim_cases(folder: Path) -> list[Item]:
    square = make_image(folder / "square.png", (1024, 1024))
    wide = make_image(folder / "wide.jpg", (1536, 1024))
    small = make_image(folder / "small.webp", (300, 200))
    mask = make_mask(folder / "mask.png", (1024, 1024), box=(0, 0, 512, 1024))
    unicode_prompt = "Fond blanc pur, lumière douce, ombre légère sous l'article — style catalogue"
    items = [
        planned("fixed-low", [square], "gpt-image-1", size="1024x1024", quality="low"),
        planned(
            "fixed-high-multi", [wide, small], "gpt-image-1", size="1536x1024", quality="high",
            n=2, input_fidelity="high",
        ),
        planned("fixed-mask", [square], "gpt-image-1-mini", size="1024x1536", quality="medium"),
        planned("auto-both", [wide], "gpt-image-1", size="auto", quality="auto"),
        planned("missing-both", [small], "gpt-image-1"),
    ]  # fmt: skip
    prompts = {"fixed-high-multi": unicode_prompt, "fixed-mask": "Put the shoe on marble " * 20}
    return [
        Item(it.id, it.images, prompts.get(it.id, "White studio backdrop"), it.params,
             mask=mask if it.id == "fixed-mask" else None)
        for it in items
    ]  # fmt: skip


async def test_estimate_agrees_with_what_the_simulator_bills(tmp_path, sim_factory):
    from openai import AsyncOpenAI

    plan = make_plan(sim_cases(tmp_path))
    estimate = estimate_plan(plan)
    by_id = {e.item_id: e for e in estimate.items}
    async with sim_factory() as sim:
        client = AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
        async with client:
            for it in plan.items:
                fields = {k: v for k, v in it.params.items()}
                image = list(it.images) if len(it.images) > 1 else it.images[0]
                if it.mask is not None:
                    fields["mask"] = it.mask
                response = await client.images.edit(image=image, prompt=it.prompt, **fields)
                usage = response.usage.model_dump()
                est = by_id[it.id]
                billed = cost_of_usage(usage, PRICES[it.model])
                if not it.id.startswith(("auto", "missing")):
                    # Fixed size and quality: the output and image parts match exactly.
                    assert (
                        usage["output_tokens"]
                        == est.expected.image_output
                        == est.worst.image_output
                    )
                    details = usage["input_tokens_details"]
                    assert details["image_tokens"] == est.expected.image_input
                    margin = (
                        (est.worst.text_input - est.expected.text_input)
                        * PRICES[it.model].text_input
                        / 1e6
                    )
                    assert abs(est.expected_usd - billed) <= margin
                assert est.expected_usd == pytest.approx(billed, rel=0.10)
                assert est.worst_usd >= billed
        stats = await sim.stats()
    assert estimate.total.expected_usd == pytest.approx(stats["usd"], rel=0.10)
    assert estimate.total.worst_usd >= stats["usd"]
    assert estimate.to_json()["pending"] == len(plan.items)


def test_a_generation_has_text_input_only_and_auto_expected_square():
    gen = Item(
        id="g", images=(), prompt="a lamp", params=MappingProxyType({"model": "gpt-image-1.5"})
    )
    est = estimate_item(gen, [], PRICES)
    assert est.endpoint == "generations"
    assert est.expected.image_input == est.worst.image_input == 0
    assert est.expected.image_output == 1056  # auto size and quality: 1024x1024 medium
    assert est.worst.image_output == 6240  # the largest size at high
    assert est.expected_usd > 0


def test_a_free_size_scales_the_nearest_sizes_tokens_by_area_and_is_flagged():
    est = estimate_item(
        item(model="gpt-image-2", size="1536x864", quality="medium"), [(1024, 1024)], PRICES
    )
    assert est.expected.image_output == math.ceil(1568 * 864 / 1024) == 1323
    assert est.worst.image_output >= est.expected.image_output
    assert est.approximate and est.to_json()["approximate"] is True
    fixed = estimate_item(item(model="gpt-image-2", size="1536x1024"), [(1024, 1024)], PRICES)
    assert not fixed.approximate and "approximate" not in fixed.to_json()


def test_a_dated_snapshot_is_priced_as_its_base_model_and_says_so():
    snap = estimate_item(item(model="gpt-image-2-2026-04-21", size="1024x1024"), [(64, 64)], PRICES)
    base = estimate_item(item(model="gpt-image-2", size="1024x1024"), [(64, 64)], PRICES)
    assert snap.expected_usd == base.expected_usd and snap.priced_as == "gpt-image-2"
    own = price_table(
        {"gpt-image-2-2026-04-21": {"text_input": 1, "image_input": 1, "image_output": 1}}
    )
    mine = estimate_item(item(model="gpt-image-2-2026-04-21", size="1024x1024"), [(64, 64)], own)
    assert mine.priced_as is None and mine.expected_usd < base.expected_usd


def test_todays_models_are_in_the_price_table():
    for model in ("gpt-image-1.5", "gpt-image-2", "gpt-image-1-mini", "chatgpt-image-latest"):
        assert model in PRICES
    assert PRICES["gpt-image-2"].image_output == 30


def test_the_estimate_says_what_is_approximate_priced_as_a_base_and_generated():
    from pipeline.report.text import render_estimate

    items = [
        planned("e", [Path("/in/a.png")], "gpt-image-2-2026-04-21", size="1536x864"),
        Item(id="g", images=(), prompt="p", params=MappingProxyType({"model": "gpt-image-1.5"})),
    ]
    estimate = estimate_plan(make_plan(items), dims_of=lambda path: (1024, 1024))
    data = estimate.to_json(items=True)
    assert data["priced_as"] == {"gpt-image-2-2026-04-21": "gpt-image-2"}
    assert data["approximate_items"] == 1 and data["endpoints"] == {"edits": 1, "generations": 1}
    assert [i["endpoint"] for i in data["items"]] == ["edits", "generations"]
    text = " ".join(render_estimate(estimate, width=200).split())
    assert "gpt-image-2-2026-04-21: priced as gpt-image-2 (a dated snapshot of it)" in text
    assert "1 item(s) ask for a free size: their output tokens are approximate" in text
    assert "1 edit(s), 1 generation(s) (text input only)" in text
