"""The Files and Batch APIs with the official client: a batch's life from upload to output
file, per-line faults by script tokens, validation failures, expiry, cancel, listing with
metadata, and billing at half price."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import openai
import pytest
from simfixtures import KEY, decode, image_bytes, sim_stats

from pipeline.cost import pricing as cost
from pipeline.simulator import SimConfig, running

FAST = SimConfig(batch_seconds=0.2)
ENDED = ("completed", "failed", "expired", "cancelled")
PNG = image_bytes()
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode("ascii")


def client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0)


def line(custom_id: str, prompt: str, image: dict | None = None, **fields) -> dict:
    body = {"model": "gpt-image-1", "prompt": prompt, "size": "1024x1024", "quality": "low"}
    body["images"] = [image or {"image_url": DATA_URL}]
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/images/edits",
        "body": {**body, **fields},
    }


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(entry) + "\n" for entry in lines).encode("utf-8")


async def submit(api, lines: list[dict], endpoint="/v1/images/edits", metadata=None):
    uploaded = await api.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    return await api.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,
        completion_window="24h",
        metadata=metadata,
    )


async def until_ended(api, batch_id: str, seen: list[str] | None = None):
    for _ in range(500):
        batch = await api.batches.retrieve(batch_id)
        if seen is not None and (not seen or seen[-1] != batch.status):
            seen.append(batch.status)
        if batch.status in ENDED:
            return batch
        await asyncio.sleep(0.01)
    raise AssertionError(f"batch {batch_id} did not end in 5 s: {batch}")


async def records(api, file_id: str | None) -> dict[str, dict]:
    if file_id is None:
        return {}
    content = await api.files.content(file_id)
    entries = [json.loads(text) for text in content.text.splitlines()]
    return {entry["custom_id"]: entry for entry in entries}


async def stats_of(url: str) -> dict:
    async with aiohttp.ClientSession() as session:
        return await sim_stats(session, url)


async def until_started(api, batch_id: str) -> None:
    """Until the batch has answered a line."""
    for _ in range(500):
        if (await api.batches.retrieve(batch_id)).request_counts.completed >= 1:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"batch {batch_id} answered no line in 5 s")


async def test_a_batch_lives_from_validating_to_completed_with_per_line_faults():
    async with running(FAST) as url, client(url) as api:
        image = await api.files.create(file=("in.png", PNG, "image/png"), purpose="vision")
        batch = await submit(
            api,
            [
                line("by-file", "red", {"file_id": image.id}),
                line("by-url", "blue"),
                line("server", "green [sim:500]"),
                line("refused", "gold [sim:moderation]"),
                line("bad-size", "pink", size="999x999"),
            ],
        )
        assert (batch.status, batch.object, batch.endpoint) == (
            "validating",
            "batch",
            "/v1/images/edits",
        )
        seen: list[str] = []
        ended = await until_ended(api, batch.id, seen)
        done = await records(api, ended.output_file_id)
        failed = await records(api, ended.error_file_id)
        stats = await stats_of(url)
    assert seen[0] == "validating" and "in_progress" in seen and seen[-1] == "completed"
    assert ended.in_progress_at and ended.completed_at and ended.finalizing_at
    assert (ended.request_counts.total, ended.request_counts.completed) == (5, 2)
    assert ended.request_counts.failed == 3
    assert set(done) == {"by-file", "by-url"}
    for entry in done.values():
        assert entry["id"].startswith("batch_req_") and entry["error"] is None
        response = entry["response"]
        assert response["status_code"] == 200 and response["request_id"].startswith("req_")
        image_out = decode(base64.b64decode(response["body"]["data"][0]["b64_json"]))
        assert image_out.size == (1024, 1024)
        assert response["body"]["usage"]["output_tokens"] == 272
    statuses = {cid: entry["response"]["status_code"] for cid, entry in failed.items()}
    assert statuses == {"server": 500, "refused": 400, "bad-size": 400}
    assert failed["refused"]["response"]["body"]["error"]["code"] == "moderation_blocked"
    assert failed["bad-size"]["response"]["body"]["error"]["param"] == "size"
    # Half price: what a client's ledger computes from the usage it got, at the batch rate.
    price = cost.builtin_table()["gpt-image-1"]
    half = sum(cost.cost_of_usage(e["response"]["body"]["usage"], price) for e in done.values())
    assert stats["usd_batch"] == pytest.approx(half / 2)
    assert stats["usd"] == pytest.approx(half / 2)  # nothing interactive was billed
    assert stats["batches"]["by_status"] == {"completed": 1}
    assert stats["batches"]["lines"] == 5 and stats["batches"]["lines_billed"] == 2
    assert stats["requests"] == 0  # batch lines are not interactive requests


async def test_a_generations_batch_answers_like_the_generations_endpoint():
    lines = [
        {
            "custom_id": f"g{i}",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"model": "gpt-image-2", "prompt": f"teal {i}", "size": "64x64"},
        }
        for i in range(3)
    ]
    async with running(FAST) as url, client(url) as api:
        batch = await submit(api, lines, endpoint="/v1/images/generations")
        ended = await until_ended(api, batch.id)
        done = await records(api, ended.output_file_id)
    assert ended.status == "completed" and ended.error_file_id is None
    assert {cid: e["response"]["body"]["size"] for cid, e in done.items()} == {
        "g0": "64x64",
        "g1": "64x64",
        "g2": "64x64",
    }
    assert done["g0"]["response"]["body"]["usage"]["input_tokens_details"]["image_tokens"] == 0


async def test_an_invalid_input_file_fails_the_batch_with_line_errors():
    good = line("a", "x")
    wrong_url = {**line("b", "x"), "url": "/v1/images/generations"}
    async with running(FAST) as url, client(url) as api:
        uploaded = await api.files.create(
            file=("in.jsonl", jsonl([good, wrong_url, good]) + b"{not json\n"), purpose="batch"
        )
        batch = await api.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/images/edits", completion_window="24h"
        )
        ended = await until_ended(api, batch.id)
    assert ended.status == "failed" and ended.failed_at
    assert ended.output_file_id is None and ended.error_file_id is None
    found = [(error.code, error.line) for error in ended.errors.data]
    assert found == [("url_mismatch", 2), ("duplicate_custom_id", 3), ("invalid_json_line", 4)]


@pytest.mark.parametrize(
    ("config", "metadata"),
    [(FAST, {"sim_expire_after": "2"}), (SimConfig(batch_seconds=0.2, batch_expire_after=2), None)],
    ids=["by metadata", "by config"],
)
async def test_an_expired_batch_returns_only_the_lines_it_answered(config, metadata):
    lines = [line(f"item-{i}", f"prompt {i}") for i in range(5)]
    async with running(config) as url, client(url) as api:
        batch = await submit(api, lines, metadata=metadata)
        ended = await until_ended(api, batch.id)
        done = await records(api, ended.output_file_id)
        failed = await records(api, ended.error_file_id)
    assert ended.status == "expired" and ended.expired_at and ended.completed_at is None
    assert (ended.request_counts.total, ended.request_counts.completed) == (5, 2)
    assert set(done) == {"item-0", "item-1"}
    assert set(failed) == {"item-2", "item-3", "item-4"}
    for entry in failed.values():
        assert entry["response"] is None and entry["error"]["code"] == "batch_expired"


async def test_a_cancelled_batch_keeps_what_finished():
    lines = [line(f"item-{i}", f"prompt {i}") for i in range(20)]
    async with running(SimConfig(batch_seconds=2.0)) as url, client(url) as api:
        batch = await submit(api, lines)
        await until_started(api, batch.id)
        cancelling = await api.batches.cancel(batch.id)
        ended = await until_ended(api, batch.id)
        done = await records(api, ended.output_file_id)
        failed = await records(api, ended.error_file_id)
        with pytest.raises(openai.ConflictError):
            await api.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    assert ended.status == "cancelled" and ended.cancelled_at
    finished = ended.request_counts.completed
    assert 1 <= finished < 20 and len(done) == finished
    assert len(failed) == 20 - finished
    assert {entry["error"]["code"] for entry in failed.values()} == {"batch_cancelled"}


async def test_a_batch_cancelled_while_validating_ends_with_nothing():
    async with running(SimConfig(batch_seconds=2.0)) as url, client(url) as api:
        batch = await submit(api, [line("a", "x")])
        await api.batches.cancel(batch.id)
        ended = await until_ended(api, batch.id)
    assert ended.status == "cancelled"
    assert ended.output_file_id is None and ended.error_file_id is None
    assert ended.request_counts.completed == ended.request_counts.failed == 0


async def test_batches_list_newest_first_in_pages_with_their_metadata():
    async with running(FAST) as url, client(url) as api:
        made = [
            await submit(api, [line("a", "x")], metadata={"editbatch_job": "shoes", "n": str(i)})
            for i in range(3)
        ]
        first = await api.batches.list(limit=2)
        rest = await api.batches.list(limit=2, after=first.data[-1].id)
        everything = [batch async for batch in api.batches.list(limit=1)]
    assert [b.id for b in first.data] == [made[2].id, made[1].id]
    assert first.has_more is True
    assert [b.id for b in rest.data] == [made[0].id] and rest.has_more is False
    assert [b.metadata["n"] for b in everything] == ["2", "1", "0"]
    assert {b.metadata["editbatch_job"] for b in everything} == {"shoes"}


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"endpoint": "/v1/chat/completions"}, "endpoint"),
        ({"completion_window": "48h"}, "completion_window"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"input_file_id": "file-missing"}, "input_file_id"),
    ],
)
async def test_a_bad_batch_request_is_refused_naming_the_field(changes, param):
    async with running(FAST) as url, client(url) as api:
        uploaded = await api.files.create(
            file=("in.jsonl", jsonl([line("a", "x")])), purpose="batch"
        )
        arguments = {
            "input_file_id": uploaded.id,
            "endpoint": "/v1/images/edits",
            "completion_window": "24h",
            **changes,
        }
        with pytest.raises(openai.BadRequestError) as raised:
            await api.batches.create(**arguments)
    assert raised.value.param == param


async def test_files_are_stored_read_back_and_deleted():
    async with running() as url, client(url) as api:
        stored = await api.files.create(file=("in.png", PNG, "image/png"), purpose="vision")
        fetched = await api.files.retrieve(stored.id)
        content = await api.files.content(stored.id)
        deleted = await api.files.delete(stored.id)
        with pytest.raises(openai.NotFoundError):
            await api.files.retrieve(stored.id)
        with pytest.raises(openai.BadRequestError) as bad_purpose:
            await api.files.create(file=("in.png", PNG, "image/png"), purpose="fine-tune")
        with pytest.raises(openai.NotFoundError):
            await api.batches.retrieve("batch_nope")
    assert (stored.object, stored.bytes, stored.filename, stored.purpose) == (
        "file",
        len(PNG),
        "in.png",
        "vision",
    )
    assert stored.id.startswith("file-") and fetched.id == stored.id
    assert content.content == PNG
    assert deleted.deleted is True
    assert bad_purpose.value.param == "purpose"
