"""The pure parts of the Batch API: validating a JSONL input file, checking a create body,
and paging the listing; tables of cases, no server."""

from __future__ import annotations

import json

import pytest

from pipeline.simulator.answer import InvalidRequest
from pipeline.simulator.batchbook import Batch, check_create, page, page_limit
from pipeline.simulator.batchinput import MAX_LINES, read_input

URL = "/v1/images/edits"


def entry(custom_id: str = "a", **changes) -> str:
    request = {"custom_id": custom_id, "method": "POST", "url": URL, "body": {"prompt": "x"}}
    return json.dumps({**request, **changes})


def errors_of(*texts: str) -> list[tuple[str, int | None]]:
    lines, errors = read_input("\n".join(texts).encode(), URL, "gpt-image-1")
    assert lines == [] or not errors
    return [(error["code"], error["line"]) for error in errors]


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([entry("a"), entry("b"), ""], []),  # a trailing newline is no request
        (["{oops"], [("invalid_json_line", 1)]),
        (["[1, 2]"], [("invalid_json_line", 1)]),
        ([entry("a"), entry("a")], [("duplicate_custom_id", 2)]),
        ([entry("")], [("missing_required_parameter", 1)]),
        ([entry("a", method="GET")], [("invalid_method", 1)]),
        ([entry("a", url="/v1/images/generations")], [("url_mismatch", 1)]),
        ([entry("a", body="x")], [("missing_required_parameter", 1)]),
        (
            [entry("a"), entry("b", body={"prompt": "x", "model": "gpt-image-2"})],
            [("model_mismatch", 2)],
        ),
        ([entry("a", body={"prompt": "x", "model": "gpt-image-1"})], []),  # the default's name
        (["", "  "], [("empty_file", None)]),
        ([entry("a"), "nope", entry("a")], [("invalid_json_line", 2), ("duplicate_custom_id", 3)]),
    ],
)
def test_input_files_are_validated_line_by_line(texts, expected):
    assert errors_of(*texts) == expected


def test_a_valid_file_gives_its_requests_in_order():
    lines, errors = read_input(f"{entry('a')}\n\n{entry('b')}\n".encode(), URL, "gpt-image-1")
    assert errors == []
    assert [(line.custom_id, line.line) for line in lines] == [("a", 1), ("b", 3)]


def test_more_than_50000_requests_fail_the_file():
    assert errors_of(*["{}"] * (MAX_LINES + 1)) == [("too_many_tasks", None)]


GOOD = {"input_file_id": "file-1", "endpoint": URL, "completion_window": "24h"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**GOOD, "endpoint": "/v1/embeddings"}, "endpoint"),
        ({k: v for k, v in GOOD.items() if k != "input_file_id"}, "input_file_id"),
        ({**GOOD, "completion_window": "1h"}, "completion_window"),
        ({**GOOD, "metadata": {"k" * 65: "v"}}, "metadata"),
        ({**GOOD, "metadata": {"k": "v" * 513}}, "metadata"),
        ({**GOOD, "metadata": {"sim_expire_after": "soon"}}, "metadata"),
        ({**GOOD, "colour": "red"}, "colour"),
    ],
)
def test_bad_create_bodies_name_their_field(body, param):
    with pytest.raises(InvalidRequest) as raised:
        check_create(body)
    assert raised.value.param == param


def test_a_create_body_gives_its_fields_and_the_expiry_of_its_metadata():
    metadata = {"editbatch_job": "j", "sim_expire_after": "3"}
    assert check_create({**GOOD, "metadata": metadata}) == ("file-1", URL, "24h", metadata, 3)
    assert check_create(GOOD) == ("file-1", URL, "24h", None, None)


def batches(count: int) -> list[Batch]:
    return [Batch(URL, "file-1", "24h", None, "http://x", id=f"batch_{i}") for i in range(count)]


@pytest.mark.parametrize(
    ("count", "limit", "after", "ids", "has_more"),
    [
        (5, 2, None, ["batch_0", "batch_1"], True),
        (5, 2, "batch_1", ["batch_2", "batch_3"], True),
        (5, 2, "batch_3", ["batch_4"], False),
        (5, 20, None, [f"batch_{i}" for i in range(5)], False),
        (0, 20, None, [], False),
        (3, 2, "batch_unknown", [], False),
    ],
)
def test_pages_follow_the_after_cursor(count, limit, after, ids, has_more):
    got = page(batches(count), limit, after)
    assert [batch["id"] for batch in got["data"]] == ids
    assert got["has_more"] is has_more
    assert (got["first_id"], got["last_id"]) == ((ids[0], ids[-1]) if ids else (None, None))


@pytest.mark.parametrize(("text", "limit"), [(None, 20), ("1", 1), ("100", 100)])
def test_page_limits(text, limit):
    assert page_limit(text) == limit


@pytest.mark.parametrize("text", ["0", "101", "-1", "x"])
def test_bad_page_limits_are_refused(text):
    with pytest.raises(InvalidRequest):
        page_limit(text)
