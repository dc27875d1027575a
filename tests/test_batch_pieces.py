"""Batch mode's pure pieces, by tables: splitting lines into input files, custom ids, what a
result line means, the ledger's batch state, and the batch price."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from pipeline.api.batches import batch_hint
from pipeline.api.batchlines import custom_id, read_result, request_body, split_custom_id
from pipeline.batch.parts import split
from pipeline.core.errors import FatalError, PermanentError, RateLimited, RetryableError
from pipeline.cost.pricing import Price
from pipeline.ledger.scan import ResumeState


@pytest.mark.parametrize(
    ("sizes", "max_requests", "max_bytes", "parts"),
    [
        ([], 3, 100, []),
        ([10, 10, 10], 3, 100, [range(0, 3)]),
        ([10, 10, 10, 10], 3, 100, [range(0, 3), range(3, 4)]),
        ([60, 50, 40], 10, 100, [range(0, 1), range(1, 3)]),
        ([100, 1], 10, 100, [range(0, 1), range(1, 2)]),
        ([1] * 7, 2, 100, [range(0, 2), range(2, 4), range(4, 6), range(6, 7)]),
    ],
)
def test_lines_split_into_files_within_both_limits(sizes, max_requests, max_bytes, parts):
    assert split(sizes, max_requests=max_requests, max_bytes=max_bytes) == parts


def test_a_line_larger_than_a_file_may_be_is_refused():
    with pytest.raises(ValueError, match="line 1 has 101 bytes"):
        split([5, 101], max_requests=10, max_bytes=100)


@pytest.mark.parametrize("item_id", ["sku-1", "a b/c", "x" * 80, "-", "ünï"])
def test_a_custom_id_gives_back_its_key_prefix_and_item(item_id):
    key = "0123456789abcdef" * 4
    assert split_custom_id(custom_id(item_id, key)) == (key[:16], item_id)


@pytest.mark.parametrize("value", ["", "short", "0123456789abcdefX-a", "0123456789ABCDEF-a"])
def test_a_custom_id_of_another_shape_is_none(value):
    assert split_custom_id(value) is None


def test_the_request_body_refers_to_files_and_keeps_parameter_types():
    body = request_body(
        {"model": "m", "n": 2, "quality": "low"}, "p", ["file-a", "file-b"], "file-m"
    )
    assert body == {
        "model": "m",
        "prompt": "p",
        "n": 2,
        "quality": "low",
        "images": [{"file_id": "file-a"}, {"file_id": "file-b"}],
        "mask": {"file_id": "file-m"},
    }
    assert "images" not in request_body({"model": "m"}, "p", [], None)


def _png() -> str:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


USAGE = {"input_tokens": 10, "output_tokens": 272}


def _line(status=None, body=None, error=None) -> dict:
    response = None if status is None else {"status_code": status, "request_id": "r", "body": body}
    return {"id": "batch_req_1", "custom_id": "c", "response": response, "error": error}


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        (_line(200, {"data": [{"b64_json": _png()}], "usage": USAGE}), "images"),
        (_line(500, {"error": {"message": "boom", "type": "server_error"}}), RetryableError),
        (_line(429, {"error": {"message": "slow", "code": "rate_limit_exceeded"}}), RateLimited),
        (_line(400, {"error": {"message": "no", "code": "moderation_blocked"}}), PermanentError),
        (_line(404, {"error": {"message": "model", "code": "model_not_found"}}), PermanentError),
        (_line(200, {"data": [{"b64_json": "bm90IGFuIGltYWdl"}], "usage": USAGE}), "billed"),
        (_line(error={"code": "batch_expired", "message": "late"}), "unanswered"),
        (_line(error={"code": "batch_cancelled", "message": "stop"}), "unanswered"),
        (_line(error={"code": "server_error", "message": "?"}), RetryableError),
    ],
)
def test_what_a_result_line_means(line, expect):
    result = read_result(line, 1)
    if expect == "images":
        assert result.images and result.output_format == "png" and result.usage == USAGE
    elif expect == "billed":
        assert result.billed and isinstance(result.error, RetryableError)
        assert result.usage == USAGE
    elif expect == "unanswered":
        assert result.unanswered and result.images is None
    else:
        assert type(result.error) is expect and not result.unanswered and not result.billed


def test_fatal_statuses_on_a_line_fail_the_item_rather_than_the_run():
    result = read_result(_line(401, {"error": {"message": "key"}}), 1)
    assert isinstance(result.error, PermanentError) and result.permanent


def _fold(*records: dict) -> ResumeState:
    return ResumeState.from_records({"v": 1, "ts": f"t{i}", **r} for i, r in enumerate(records))


def test_the_ledger_knows_uploads_open_batches_and_their_recorded_results():
    items = [{"item": i, "key": f"k{i}", "custom_id": f"c{i}", "worst_usd": 0.5} for i in "ab"]
    state = _fold(
        {"event": "file_uploaded", "sha256": "s1", "file_id": "file-1", "purpose": "vision"},
        {"event": "file_uploaded", "sha256": "j", "file_id": "file-j", "purpose": "batch"},
        {"event": "batch_submitted", "batch": "B", "input_file": "file-j", "items": items},
        {"event": "succeeded", "item": "a", "key": "ka", "cost_usd": 0.1, "batch": "B"},
    )
    b = state.batches
    assert b.uploads == {"s1": "file-1"} and b.inputs == {}
    assert b.item_batch == {"a": "B", "b": "B"}
    assert b.open["B"].recorded == {"a"}
    assert b.reserved_usd() == pytest.approx(0.5)  # b's worst case is still out
    closed = _fold(
        {"event": "batch_submitted", "batch": "B", "input_file": "file-j", "items": items},
        {"event": "batch_collected", "batch": "B", "status": "completed"},
    )
    assert closed.batches.open == {} and closed.batches.item_batch == {}


def test_an_input_file_named_by_no_batch_is_an_orphan_to_look_for():
    state = _fold({"event": "file_uploaded", "file_id": "file-j", "purpose": "batch", "items": []})
    assert list(state.batches.inputs) == ["file-j"]


@pytest.mark.parametrize(
    ("records", "attempts"),
    [
        ([("attempt_failed", "k", "server_error")], 1),
        ([("attempt_failed", "k", "server_error")] * 2, 2),
        ([("attempt_failed", "k", "batch_expired")], 0),  # not the item's fault
        ([("attempt_failed", "old", "server_error"), ("attempt_failed", "k", "x")], 1),
        ([("attempt_failed", "old", "server_error")], 0),
    ],
)
def test_batch_attempts_count_for_the_current_key_only(records, attempts):
    state = _fold(
        *({"event": e, "item": "a", "key": k, "cause": c, "batch": "B"} for e, k, c in records)
    )
    assert state.batches.attempts_of("a", "k") == attempts


def test_the_batch_price_scales_every_rate_by_the_discount():
    price = Price(5, 10, 40, None, batch_discount=0.4)
    batch = price.at_batch()
    assert (batch.text_input, batch.image_input, batch.image_output) == (2, 4, 16)
    assert batch.text_output is None and Price(1, 1, 1).at_batch().image_output == 0.5


@pytest.mark.parametrize(
    ("status", "cls", "says"),
    [
        (401, FatalError, "API key"),
        (404, FatalError, "Batch API"),
        (429, RateLimited, "queue"),
        (500, RetryableError, ""),
        (400, PermanentError, "refused"),
    ],
)
def test_a_batch_call_that_fails_for_good_says_what_to_change(status, cls, says):
    hint = batch_hint(cls, status, None, key_env="K", base_url="http://x/v1")
    assert (says in hint) if says else hint == ""


@pytest.mark.parametrize(
    ("info", "text"),
    [
        ({"status": "failed"}, ""),
        ({"errors": {"data": [{"message": "bad line 3"}]}}, ": bad line 3"),
        ({"errors": {"data": [{"message": "a"}, {"message": "b"}]}}, ": a; b"),
        ({"errors": None}, ""),
    ],
)
def test_a_batch_failed_as_a_whole_says_why(info, text):
    from pipeline.batch.collect import refusal

    assert refusal(info) == text


@pytest.mark.parametrize(
    ("info", "seconds"),
    [
        ({"status": "completed", "created_at": 100, "completed_at": 160}, 60.0),
        ({"status": "expired", "created_at": 100, "expired_at": 190}, 90.0),
        ({"status": "completed", "created_at": 100}, None),
        ({"status": "completed", "created_at": 200, "completed_at": 100}, None),
    ],
)
def test_a_batch_turnaround_from_the_providers_timestamps(info, seconds):
    from pipeline.batch.collect import turnaround

    assert turnaround(info) == seconds
