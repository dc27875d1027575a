"""Whole runs against the simulator in each provider's shape: Azure's classic and v1 routes with
the right and the wrong key header, a mixed manifest of edits and generations, a gpt-image-2
free size end to end, the JSON edit body, Azure's content filter, and a LiteLLM gateway's
rewritten answers."""

from __future__ import annotations

import pytest
from helpers import make_image, make_mask, read_ledger_lines, write_manifest
from PIL import Image

from pipeline.engine.runner import RunOptions, run
from pipeline.manifest.load import load_plan
from pipeline.simulator import SimConfig

RIGHT = "sk-azure-right-1"
VERSION = "2025-04-01-preview"


def azure_endpoint(root: str, route: str, auth: str) -> dict:
    if route == "classic":
        return {
            "provider": "azure",
            "base_url": root,
            "deployment": "catalog-edits",
            "api_version": VERSION,
            "auth": auth,
        }
    return {"provider": "azure", "base_url": f"{root}/openai/v1", "auth": auth}


def one_edit(folder, **blocks):
    make_image(folder / "images" / "a.png")
    items = [{"id": "a", "image": "images/a.png", "prompt": "white background"}]
    return write_manifest(folder, items, **blocks)


def ledger(folder) -> list[dict]:
    return read_ledger_lines(folder / "job-out" / "ledger.jsonl")


@pytest.mark.parametrize("route", ["classic", "v1"])
@pytest.mark.parametrize(
    ("auth", "key", "exit_code"),
    [("api-key", RIGHT, 0), ("api-key", "sk-wrong", 4), ("bearer", RIGHT, 4)],
    ids=["right-header", "wrong-key", "bearer-header"],
)
async def test_azure_routes_take_the_key_in_api_key_only(
    tmp_path, sim_factory, route, auth, key, exit_code
):
    config = SimConfig(api_key=RIGHT, azure_deployments={"catalog-edits": "gpt-image-1.5"})
    async with sim_factory(config) as sim:
        root = sim.base_url.removesuffix("/v1")
        manifest = one_edit(
            tmp_path,
            endpoint=azure_endpoint(root, route, auth),
            # the v1 route names the deployment in `model`
            defaults={"model": "catalog-edits", "size": "1024x1024", "quality": "low"},
            pricing={"catalog-edits": {"text_input": 5, "image_input": 8, "image_output": 32}},
        )
        summary = await run(load_plan(manifest), RunOptions(api_key=key))
    assert summary.exit_code == exit_code
    lines = ledger(tmp_path)
    if exit_code == 0:
        (done,) = [line for line in lines if line["event"] == "succeeded"]
        assert (done["provider"], done["endpoint"]) == ("azure", "edits")
        assert done["request_id"] and done["cost_usd"] > 0
    else:
        assert "AZURE_OPENAI_API_KEY" in " ".join(summary.messages)
    assert RIGHT not in (tmp_path / "job-out" / "ledger.jsonl").read_text()


async def test_a_mixed_job_with_a_free_size_runs_end_to_end_under_simulate(tmp_path):
    make_image(tmp_path / "images" / "shoe.png", size=(96, 54))
    items = [
        {"id": "shoe", "image": "images/shoe.png", "prompt": "white background"},
        {"id": "hero", "prompt": "a lamp on an oak table"},
        {"id": "wide", "prompt": "a banner of shoes", "size": "1536x864"},
    ]
    defaults = {"model": "gpt-image-2", "size": "1536x864", "quality": "low"}
    manifest = write_manifest(tmp_path, items, defaults=defaults, budget={"run_usd": 1})
    plan = load_plan(manifest)
    dry = await run(plan, RunOptions(dry_run=True, simulate=True))
    assert dry.estimate.approximate_items == 3 and dry.estimate.endpoints == {
        "edits": 1,
        "generations": 2,
    }
    summary = await run(plan, RunOptions(simulate=True, sim_config=SimConfig()))
    assert summary.exit_code == 0
    done = {line["item"]: line for line in ledger(tmp_path) if line["event"] == "succeeded"}
    assert {k: v["endpoint"] for k, v in done.items()} == {
        "shoe": "edits",
        "hero": "generations",
        "wide": "generations",
    }
    for item_id in done:
        with Image.open(tmp_path / "job-out" / f"{item_id}.png") as image:
            assert image.size == (1536, 864)
    assert done["hero"]["usage"]["input_tokens_details"]["image_tokens"] == 0
    expected = {e.item_id: e for e in dry.estimate.items}
    for item_id, line in done.items():
        # the provider's usage replaced the approximate estimate: the same area rule here
        assert line["usage"]["output_tokens"] == expected[item_id].expected.image_output
        assert line["cost_usd"] <= expected[item_id].worst_usd


async def test_the_json_edit_body_with_a_mask_and_moderation(tmp_path, sim_factory):
    make_image(tmp_path / "images" / "a.png")
    make_mask(tmp_path / "masks" / "a.png")
    items = [{"id": "a", "image": "images/a.png", "mask": "masks/a.png", "prompt": "marble"}]
    manifest = write_manifest(
        tmp_path,
        items,
        endpoint={"body": "json"},
        defaults={"model": "gpt-image-1.5", "size": "1024x1024", "moderation": "low"},
    )
    async with sim_factory(SimConfig()) as sim:
        summary = await run(load_plan(manifest), RunOptions(base_url=sim.base_url, api_key="k"))
        stats = await sim.stats()
    assert summary.exit_code == 0
    (done,) = [line for line in ledger(tmp_path) if line["event"] == "succeeded"]
    assert done["endpoint"] == "edits" and done["cost_usd"] == pytest.approx(stats["usd"])


async def test_azures_content_filter_fails_the_item_and_the_run_goes_on(tmp_path, sim_factory):
    make_image(tmp_path / "images" / "a.png")
    make_image(tmp_path / "images" / "b.png")
    items = [
        {"id": "a", "image": "images/a.png", "prompt": "fine [sim:moderation]"},
        {"id": "b", "image": "images/b.png", "prompt": "fine"},
    ]
    async with sim_factory(SimConfig()) as sim:
        root = sim.base_url.removesuffix("/v1")
        manifest = write_manifest(
            tmp_path, items, endpoint=azure_endpoint(root, "classic", "api-key")
        )
        summary = await run(load_plan(manifest), RunOptions(api_key="k"))
    assert summary.exit_code == 1
    lines = ledger(tmp_path)
    (failed,) = [line for line in lines if line["event"] == "failed"]
    assert failed["item"] == "a" and failed["error"]["class"] == "permanent"
    assert failed["error"]["code"] == "content_filter"
    assert "safety system" in failed["error"]["message"]
    assert [line["item"] for line in lines if line["event"] == "succeeded"] == ["b"]


async def test_litellms_rewritten_answers_are_read_as_the_provider_meant(tmp_path, sim_factory):
    make_image(tmp_path / "images" / "a.png")
    make_image(tmp_path / "images" / "b.png")
    items = [
        {"id": "a", "image": "images/a.png", "prompt": "wait [sim:429:0.3,ok]"},
        {"id": "b", "image": "images/b.png", "prompt": "blocked [sim:moderation]"},
    ]
    manifest = write_manifest(tmp_path, items, limits={"concurrency": 1})
    async with sim_factory(SimConfig(gateway="litellm")) as sim:
        options = RunOptions(base_url=sim.base_url, api_key="k", backoff_base_s=0.01)
        summary = await run(load_plan(manifest), options)
    assert summary.exit_code == 1
    lines = ledger(tmp_path)
    (retry,) = [line for line in lines if line["event"] == "attempt_failed"]
    # the renamed llm_provider-retry-after-ms (300 ms) is honoured over a 10 ms backoff
    assert retry["cause"] == "rate_limit" and retry["retry_in_s"] >= 0.3
    assert retry["request_id"]
    (done,) = [line for line in lines if line["event"] == "succeeded"]
    assert done["item"] == "a" and done["request_id"]
    (failed,) = [line for line in lines if line["event"] == "failed"]
    assert failed["error"]["code"] == "400" and "safety system" in failed["error"]["message"]


async def test_a_spent_quota_behind_litellm_aborts_with_exit_4(tmp_path, sim_factory):
    manifest = one_edit(tmp_path)
    (tmp_path / "job.yaml").write_text(
        (tmp_path / "job.yaml").read_text().replace("white background", "x [sim:quota]")
    )
    async with sim_factory(SimConfig(gateway="litellm")) as sim:
        summary = await run(load_plan(manifest), RunOptions(base_url=sim.base_url, api_key="k"))
    assert summary.exit_code == 4
    assert "quota or credit is spent" in " ".join(summary.messages)
