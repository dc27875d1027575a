"""What the end of a run says on screen and in --json: a headline true to the counts, the top
causes of failed attempts with an example message, the failed ids, and the next command."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from helpers import simple_job

from pipeline.cli.main import main
from pipeline.engine import advice
from pipeline.engine.summary import RunStats, RunSummary


def summary_of(code: int, reason: str = "completed", **counts) -> RunSummary:
    causes = counts.pop("causes", {})
    stats = RunStats(**counts)
    for name, (count, example) in causes.items():
        for _ in range(count):
            stats.note_cause(name, example)
    return RunSummary(
        run_id="r",
        manifest="job",
        reason=reason,
        exit_code=code,
        stats=stats,
        duration_s=1.0,
        ledger=Path("l.jsonl"),
        output_dir=Path("out"),
        budget_left_usd=None,
        spent_total_usd=0.0,
        messages=[],
        base_url="https://api.example.test/v1",
    )


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        (summary_of(0, total=3, succeeded=3), "every item is done"),
        (summary_of(1, total=3, pending=3), "the run ended: 3 still pending"),
        (summary_of(1, total=3, failed=1, pending=2), "the run ended: 1 item(s) failed, 2 still"),
        (summary_of(1, total=2, failed_before=2), "the run ended: 2 failed in an earlier run"),
        (summary_of(3, "budget", total=5, pending=3), "the budget stopped the run; 3 item(s)"),
        (summary_of(4, "fatal"), "aborted on an error no retry can fix"),
        (summary_of(75, "outage", pending=4), "the provider was failing (an outage); 4 item(s)"),
        (summary_of(130, "interrupted", pending=1), "interrupted (SIGINT); 1 item(s) pending"),
    ],
)
def test_the_headline_says_failed_only_when_items_failed(summary, expected):
    text = advice.headline(summary)
    assert text.startswith(expected)
    if not summary.stats.failed and not summary.stats.failed_before:
        assert "failed" not in text


CONNECT = "POST https://api.example.test/v1/images/edits: Cannot connect to host"


@pytest.mark.parametrize(
    ("summary", "wanted", "unwanted"),
    [
        (summary_of(0, total=1, succeeded=1), [], ["editbatch run"]),
        (
            summary_of(1, pending=4, causes={"connection": (8, CONNECT)}),
            ["no answer came back from https://api.example.test/v1", "`editbatch run m.yaml`"],
            ["--retry-failed"],
        ),
        (
            summary_of(1, succeeded=2, failed=1, causes={"rejected": (1, "HTTP 400: no")}),
            ["fix the prompts, parameters or inputs", "`editbatch run m.yaml --retry-failed`"],
            ["no answer came back"],
        ),
        (
            summary_of(1, failed=1, causes={"server_error": (5, "HTTP 500: oops")}),
            ["`editbatch run m.yaml --retry-failed` tries the 1 failed"],
            ["fix the prompts", "no answer came back"],
        ),
        (summary_of(3, "budget", pending=2), ["--max-usd"], ["--retry-failed"]),
        (
            summary_of(75, "outage", pending=3, causes={"connection": (6, CONNECT)}),
            ["no answer came back from https://api.example.test/v1", "resumes the 3 pending"],
            ["--retry-failed"],
        ),
        (
            summary_of(75, "outage", succeeded=1, pending=3, causes={"server_error": (6, "")}),
            ["resumes the 3 pending item(s) once the provider answers again"],
            ["no answer came back"],
        ),
        (summary_of(4, "fatal"), ["fix what the abort message above says"], ["--retry-failed"]),
    ],
)
def test_next_steps_name_the_command_that_helps(summary, wanted, unwanted):
    text = "\n".join(advice.next_steps(summary, "m.yaml"))
    for part in wanted:
        assert part in text
    for part in unwanted:
        assert part not in text


def test_top_causes_are_ranked_with_their_first_example():
    summary = summary_of(
        1, causes={"timeout": (2, "t"), "connection": (5, "c1"), "rate_limit": (2, "r")}
    )
    summary.stats.note_cause("connection", "c2")
    causes = advice.top_causes(summary.stats, limit=2)
    assert [(c.name, c.count, c.example) for c in causes] == [
        ("connection", 6, "c1"),
        ("rate_limit", 2, "r"),
    ]
    assert advice.shown_ids([f"i{n}" for n in range(8)], limit=3) == "i0, i1, i2 and 5 more"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_wrong_port_shows_the_cause_and_the_fix_on_screen(tmp_path, capsys, monkeypatch):
    manifest = simple_job(tmp_path, 2, limits={"max_attempts": 2})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    argv = ["run", str(manifest), "--base-url", base_url, "--progress", "none", "--json"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 1
    assert "failed attempts by cause:" in err
    assert "connection ×" in err and "Cannot connect to host 127.0.0.1" in err
    assert f"next: no answer came back from {base_url}" in err
    data = json.loads(out)
    assert data["causes"][0]["cause"] == "connection"
    assert "Cannot connect" in data["causes"][0]["example"]
    assert any(base_url in step for step in data["next"])
    assert sorted(data["failed_ids"] + data["failed_before_ids"]) == sorted(
        data["failed_ids"]
    )  # nothing failed before this run


def test_failed_ids_are_listed_with_where_the_full_list_is(tmp_path, capsys):
    manifest = simple_job(tmp_path, 3)
    text = manifest.read_text()
    for n in range(3):  # a script per prompt: each item's own is refused by moderation
        text = text.replace("prompt: white background", f"prompt: p{n} [sim:moderation]", 1)
    manifest.write_text(text)
    code = main(["run", str(manifest), "--simulate", "--progress", "none", "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "the run ended: 3 item(s) failed" in err
    shown = next(line for line in err.splitlines() if "failed now:" in line)
    assert sorted(shown.split(": ")[1].split(", ")) == ["sku-000", "sku-001", "sku-002"]
    assert f"every failed id: `editbatch report {manifest} --json` (failed_ids)" in err
    assert "--retry-failed" in err
    assert sorted(json.loads(out)["failed_ids"]) == ["sku-000", "sku-001", "sku-002"]
    code = main(["run", str(manifest), "--simulate", "--progress", "none"])
    _, err = capsys.readouterr()
    assert "failed earlier: sku-000, sku-001, sku-002" in err  # in the manifest's order
