"""The ledger: its lines, its lock, torn-tail repair, corruption, and the resume state."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import pipeline.ledger.writer as module
from pipeline.core.errors import LedgerCorrupt, LedgerLocked, LedgerUnwritable
from pipeline.ledger.reader import iter_ledger, read_ledger
from pipeline.ledger.scan import ResumeState
from pipeline.ledger.writer import LedgerWriter

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_python(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def succeeded(item: str, key: str = "k1", cost: float | None = 0.25, ts: str = "") -> dict:
    return {
        "v": 1,
        "ts": ts or "2026-11-26T13:40:00.000Z",
        "run": "r1",
        "event": "succeeded",
        "item": item,
        "key": key,
        "cost_usd": cost,
        "outputs": [{"path": f"{item}.png", "sha256": "s", "bytes": 1, "mtime_ns": 1}],
        "inputs": [{"path": f"images/{item}.png", "bytes": 1, "mtime_ns": 1, "sha256": "i"}],
    }


def failed(item: str, key: str = "k1", ts: str = "") -> dict:
    error = {"class": "permanent", "http_status": 400, "type": "t", "code": "c", "message": "m"}
    return {
        "v": 1,
        "ts": ts or "2026-11-26T13:41:00.000Z",
        "run": "r1",
        "event": "failed",
        "item": item,
        "key": key,
        "attempts": 1,
        "error": error,
    }


def write_lines(path: Path, records: list[dict], tail: bytes = b"") -> None:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) + tail)


# -- writing ---------------------------------------------------------------------------------


def test_writer_appends_one_stamped_json_line_per_event(tmp_path):
    path = tmp_path / "out" / "ledger.jsonl"
    extra = {"simulated": True, "shard": "1/2"}
    with LedgerWriter.open(path, run_id="run-a", extra_fields=extra) as writer:
        writer.write("run_started", manifest="demo", pid=1)
        returned = writer.write("attempt_failed", item="a", key="k", attempt=1, retry_in_s=0.5)
    records = lines_of(path)
    assert [r["event"] for r in records] == ["run_started", "attempt_failed"]
    assert records[1] == returned
    for record in records:
        assert list(record)[:4] == ["v", "ts", "run", "event"]
        assert record["v"] == 1 and record["run"] == "run-a"
        assert TS.fullmatch(record["ts"])
        assert record["simulated"] is True and record["shard"] == "1/2"


async def test_awrite_appends_like_write(tmp_path):
    path = tmp_path / "ledger.jsonl"
    with LedgerWriter.open(path, run_id="r") as writer:
        await writer.awrite("succeeded", item="a", key="k", cost_usd=0.1, message="naïve ✓")
        await writer.awrite("attempt_failed", item="a", key="k", attempt=1)
    assert [r["event"] for r in lines_of(path)] == ["succeeded", "attempt_failed"]
    assert lines_of(path)[0]["message"] == "naïve ✓"


async def test_durable_lines_share_fsyncs_run_in_the_background(tmp_path, monkeypatch):
    """Group commit: a durable line is appended at once and fsynced in a thread; lines
    appended while an fsync runs share the next one; idle() waits for the last."""
    synced: list[int] = []  # how many lines each fsync covered (the file's line count then)
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        lines = (tmp_path / "ledger.jsonl").read_bytes().count(b"\n")
        time.sleep(0.02)
        real_fsync(fd)
        synced.append(lines)

    monkeypatch.setattr(module.os, "fsync", slow_fsync)
    with LedgerWriter.open(tmp_path / "ledger.jsonl", run_id="r") as writer:

        async def line(number: int) -> None:
            await asyncio.sleep(0.001 * number)
            await writer.awrite("succeeded", item=f"i{number}", key="k")

        await asyncio.gather(*(line(n) for n in range(20)))
        assert writer.synced_lines < 20  # nobody waited for the disk
        await writer.idle()
        assert writer.synced_lines == 20 and synced[-1] == 20
        background = len(synced)
        writer.write("attempt_failed", item="a", key="k", attempt=1)  # not durable: no fsync
        assert len(synced) == background
    assert 2 <= background < 10, synced
    assert len(lines_of(tmp_path / "ledger.jsonl")) == 21


async def test_a_failed_fsync_stops_the_next_append_and_the_close(tmp_path, monkeypatch):
    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    writer = LedgerWriter.open(tmp_path / "ledger.jsonl", run_id="r")
    monkeypatch.setattr(module.os, "fsync", full_disk)
    await writer.awrite("succeeded", item="a", key="k")
    await writer.idle()
    with pytest.raises(LedgerUnwritable, match="free space"):
        await writer.awrite("succeeded", item="b", key="k")
    monkeypatch.undo()
    with pytest.raises(LedgerUnwritable, match="No space left"):
        writer.close()  # the lock is released all the same
    LedgerWriter.open(tmp_path / "ledger.jsonl", run_id="r2").close()


def test_writer_refuses_unknown_events_reserved_fields_and_use_after_close(tmp_path):
    writer = LedgerWriter.open(tmp_path / "ledger.jsonl", run_id="r")
    with pytest.raises(ValueError, match="unknown ledger event"):
        writer.write("finished")
    with pytest.raises(ValueError, match="set by the writer"):
        writer.write("failed", item="a", run="other")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write("failed", item="a")


def test_a_line_that_is_not_utf8_safe_is_escaped_not_lost(tmp_path):
    path = tmp_path / "ledger.jsonl"
    with LedgerWriter.open(path, run_id="r") as writer:
        writer.write("attempt_failed", item="a", message="bad \udcff byte")
    assert lines_of(path)[0]["message"] == "bad \udcff byte"


def test_the_resume_scan_reads_every_line_as_the_json_module_does(tmp_path):
    """The scan parses with orjson and hands the lines it refuses to the json module (a NaN,
    which json.dumps writes; a lone surrogate escape; 1e400); an integer past 64 bits, which
    orjson reads as a float, keeps its value."""
    path = tmp_path / "ledger.jsonl"
    huge = {"path": "images/c.png", "bytes": 2**70, "mtime_ns": -(2**65), "sha256": "i"}
    records = [
        {**succeeded("a"), "latency_s": float("nan")},
        {**failed("b"), "error": {"class": "permanent", "message": "bad \udcff byte"}},
        {**succeeded("c", cost=10**21), "inputs": [huge]},
        {**succeeded("d"), "latency_s": "1e400"},
        failed("e"),
    ]
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    path.write_text(text.replace('"1e400"', "1e400"))
    state = read_ledger(path).state
    expected = ResumeState.from_records(json.loads(line) for line in path.read_text().splitlines())
    for item in "abcde":
        assert state.succeeded(item) == expected.succeeded(item)
        assert state.failed(item) == expected.failed(item)
    assert state.failed("b")["error"]["message"] == "bad \udcff byte"
    assert state.succeeded("c")["inputs"][0]["bytes"] == 2**70
    assert state.spent_usd == expected.spent_usd == pytest.approx(10**21 + 0.5)
    assert [r["item"] for r in iter_ledger(path)] == list("abcde")


def test_sigkill_right_after_writing_loses_no_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    done = run_python(
        """
        import os, signal, sys
        from pipeline.ledger.writer import LedgerWriter
        w = LedgerWriter.open(sys.argv[1], run_id="r")
        for i in range(50):
            w.write("attempt_failed", item=f"i{i}", key="k", attempt=1)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(path),
    )
    assert done.returncode == -signal.SIGKILL
    assert read_ledger(path).count == 50


def test_a_failed_partial_write_is_taken_back(tmp_path):
    # The file size limit makes the kernel accept only part of a long line (as a full disk
    # would); the writer must not leave that half line for the next line to glue onto.
    path = tmp_path / "ledger.jsonl"
    done = run_python(
        """
        import os, resource, signal, sys
        from pipeline.core.errors import LedgerUnwritable
        from pipeline.ledger.writer import LedgerWriter
        w = LedgerWriter.open(sys.argv[1], run_id="r")
        w.write("attempt_failed", item="first")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = os.path.getsize(sys.argv[1]) + 300
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        try:
            w.write("attempt_failed", item="long", message="x" * 5000)
        except LedgerUnwritable:  # exit 4 in the CLI
            w.write("attempt_failed", item="after")
            print("refused")
        """,
        str(path),
    )
    assert done.stdout.strip() == "refused", done.stderr
    scan = read_ledger(path)
    assert [r["item"] for r in iter_ledger(path)] == ["first", "after"]
    assert scan.warnings == []


# -- the lock --------------------------------------------------------------------------------

HOLDER = """
import sys, time
from pipeline.ledger.writer import LedgerWriter
writer = LedgerWriter.open(sys.argv[1], run_id="holder")
print("ready", flush=True)
time.sleep(60)
"""


def test_a_second_process_is_refused_until_the_holder_dies(tmp_path):
    path = tmp_path / "ledger.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "ready\n"
        with pytest.raises(LedgerLocked) as info:
            LedgerWriter.open(path, run_id="second")
        message = str(info.value)
        assert f"pid {holder.pid} on host" in message
        assert str(path) in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    LedgerWriter.open(path, run_id="after").close()  # a dead holder leaves no stale lock


def test_a_process_is_refused_while_this_one_holds_the_ledger(tmp_path):
    path = tmp_path / "ledger.jsonl"
    with LedgerWriter.open(path, run_id="first"):
        done = run_python(
            """
            import sys
            from pipeline.core.errors import LedgerLocked
            from pipeline.ledger.writer import LedgerWriter
            try:
                LedgerWriter.open(sys.argv[1], run_id="second")
            except LedgerLocked as exc:
                print(exc)
            """,
            str(path),
        )
    assert f"pid {os.getpid()} on host" in done.stdout, done.stderr


def test_a_second_open_in_the_same_process_is_refused_and_close_releases(tmp_path):
    path = tmp_path / "ledger.jsonl"
    first = LedgerWriter.open(path, run_id="first")
    with pytest.raises(LedgerLocked, match="another run is using this ledger"):
        LedgerWriter.open(path, run_id="second")
    first.close()
    first.close()  # twice is harmless
    with LedgerWriter.open(path, run_id="third") as third:
        third.write("run_started")
    assert lines_of(path)[0]["run"] == "third"


# -- reading and repair ----------------------------------------------------------------------


def test_missing_ledger_reads_as_empty(tmp_path):
    scan = read_ledger(tmp_path / "none.jsonl")
    assert scan.count == 0 and scan.warnings == [] and scan.state.spent_usd == 0


def test_torn_last_line_is_cut_off_with_a_warning_on_repair(tmp_path):
    path = tmp_path / "ledger.jsonl"
    write_lines(path, [succeeded("a")], tail=b'{"v":1,"ts":"2026-11-26T1')
    whole = len(path.read_bytes()) - len(b'{"v":1,"ts":"2026-11-26T1')

    looked = read_ledger(path)  # a reader never writes
    assert looked.count == 1 and "torn" in looked.warnings[0]
    assert len(path.read_bytes()) > whole

    scan = read_ledger(path, repair=True)
    assert scan.count == 1
    assert scan.warnings == [
        f"{path}:2: the last line was torn (a run stopped while writing it); cut off its 25 bytes"
    ]
    assert len(path.read_bytes()) == whole
    assert read_ledger(path).warnings == []


def test_garbage_last_line_with_newline_counts_as_torn(tmp_path):
    path = tmp_path / "ledger.jsonl"
    write_lines(path, [succeeded("a")], tail=b"\x00\x00\x00\n")
    scan = read_ledger(path, repair=True)
    assert scan.count == 1 and "torn" in scan.warnings[0]
    assert path.read_bytes().endswith(b"}\n")


def test_whole_last_line_missing_its_newline_is_kept(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(json.dumps(succeeded("a")).encode())
    scan = read_ledger(path, repair=True)
    assert scan.state.succeeded("a")["key"] == "k1"
    assert "added it" in scan.warnings[0]
    assert path.read_bytes().endswith(b"}\n")


def test_opening_the_writer_repairs_before_appending(tmp_path):
    path = tmp_path / "ledger.jsonl"
    write_lines(path, [succeeded("a")], tail=b'{"v":1,"ev')
    with LedgerWriter.open(path, run_id="r2") as writer:
        assert "torn" in writer.scan.warnings[0]
        assert writer.scan.state.succeeded("a") is not None
        writer.write("run_started")
    assert [r["event"] for r in lines_of(path)] == ["succeeded", "run_started"]


def test_corruption_before_the_last_line_names_the_line_and_the_fix(tmp_path):
    path = tmp_path / "ledger.jsonl"
    write_lines(
        path, [succeeded("a")], tail=b"{oops\n" + json.dumps(succeeded("b")).encode() + b"\n"
    )
    with pytest.raises(LedgerCorrupt) as info:
        read_ledger(path, repair=True)
    message = str(info.value)
    assert f"{path}:2:" in message
    assert "delete line 2" in message and "move the ledger aside" in message
    assert path.read_bytes().count(b"\n") == 3  # nothing was cut
    with pytest.raises(LedgerCorrupt):
        LedgerWriter.open(path, run_id="r2")
    write_lines(path, [succeeded("a")])
    LedgerWriter.open(path, run_id="r3").close()  # the failed open let go of the lock


@pytest.mark.parametrize("version", [2, None])
def test_unsupported_version_is_refused(tmp_path, version):
    path = tmp_path / "ledger.jsonl"
    record = {**succeeded("a"), "v": version}
    write_lines(path, [succeeded("b"), record])
    with pytest.raises(LedgerCorrupt, match=r"ledger\.jsonl:2: ledger version .* not supported"):
        read_ledger(path)


def test_item_line_without_item_is_corrupt(tmp_path):
    path = tmp_path / "ledger.jsonl"
    record = succeeded("a")
    del record["item"]
    write_lines(path, [record])
    with pytest.raises(LedgerCorrupt, match=":1: "):
        read_ledger(path)


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(
        json.dumps(succeeded("a")).encode() + b"\n\n" + json.dumps(failed("b")).encode() + b"\n"
    )
    scan = read_ledger(path)
    assert scan.count == 2 and scan.warnings == []


def test_scan_records_reads_the_file_again(tmp_path):
    path = tmp_path / "ledger.jsonl"
    write_lines(path, [succeeded("a"), failed("b")])
    scan = read_ledger(path)
    assert [r["item"] for r in scan.records] == ["a", "b"]
    assert [r["item"] for r in scan.records] == ["a", "b"]


# -- resume state ----------------------------------------------------------------------------


def test_state_keeps_each_items_last_success_and_last_unresolved_failure():
    state = ResumeState.from_records(
        [
            {"v": 1, "ts": "t0", "run": "r0", "event": "run_started"},
            succeeded("a", key="old", cost=0.5),
            succeeded("a", key="new", cost=None),
            failed("b", key="k1"),
            succeeded("b", key="k1", cost=0.25),
            succeeded("c", key="k1", cost=0.25),
            failed("c", key="k2"),
            {"v": 1, "ts": "t9", "run": "r9", "event": "run_finished", "cost_usd": 99},
        ]
    )
    assert state.succeeded("a")["key"] == "new"
    assert state.failed("b") is None  # a later success resolves it
    assert state.failed("c")["error"]["class"] == "permanent"
    assert state.succeeded("c")["key"] == "k1"
    assert state.succeeded("zzz") is None and state.failed("zzz") is None
    assert state.spent_usd == pytest.approx(1.0)
    assert state.last_run == "r9"


def test_recorded_inputs_are_joined_to_the_manifest_folder(tmp_path):
    state = ResumeState.from_records([succeeded("a")])
    assert [e["path"] for e in state.recorded_inputs(tmp_path)] == [str(tmp_path / "images/a.png")]
    assert [e["path"] for e in state.recorded_inputs()] == ["images/a.png"]


def test_merged_shards_take_the_later_line_and_sum_the_spend():
    one = ResumeState.from_records(
        [
            succeeded("a", key="k1", ts="2026-01-01T00:00:00.000Z"),
            failed("b", ts="2026-01-01T00:00:01.000Z"),
        ]
    )
    two = ResumeState.from_records(
        [
            succeeded("a", key="k2", ts="2026-01-02T00:00:00.000Z"),
            succeeded("b", ts="2026-01-02T00:00:01.000Z"),
        ]
    )
    merged = ResumeState.merge([two, one])
    assert merged.succeeded("a")["key"] == "k2"
    assert merged.failed("b") is None
    assert merged.spent_usd == pytest.approx(0.75)


def test_scanning_100k_lines_keeps_every_item(tmp_path):
    """The time is measured, not asserted: `pytest -s` shows it."""
    path = tmp_path / "ledger.jsonl"
    with open(path, "wb") as f:
        for i in range(100_000):
            f.write(json.dumps(succeeded(f"item-{i}", key=f"{i:064x}", cost=0.01)).encode() + b"\n")
    started = time.perf_counter()
    scan = read_ledger(path)
    print(f"read_ledger: 100,000 lines in {time.perf_counter() - started:.3f} s")
    assert scan.count == 100_000
    assert scan.state.spent_usd == pytest.approx(1000.0)
    assert scan.state.succeeded("item-99999")["key"] == f"{99_999:064x}"


def test_lines_orjson_cannot_write_exactly_go_through_json(tmp_path):
    """An integer past 64 bits, a NaN, a lone surrogate: each line still reads back as the
    record written (orjson would refuse the first and third, and write the NaN as null)."""
    path = tmp_path / "ledger.jsonl"
    with LedgerWriter.open(path, run_id="r") as writer:
        writer.write("attempt_failed", item="a", key="k", attempt=1, tokens=10**30)
        writer.write("attempt_failed", item="b", key="k", attempt=1, drift=float("nan"))
        writer.write("attempt_failed", item="c", key="k", attempt=1, message="bad \udc80 byte")
        writer.write("attempt_failed", item="d", key="k", attempt=1, message="naïve", x=None)
    lines = path.read_text(errors="strict").splitlines()
    assert json.loads(lines[0])["tokens"] == 10**30
    assert '"drift":NaN' in lines[1]
    assert json.loads(lines[2])["message"] == "bad \udc80 byte"
    assert json.loads(lines[3])["message"] == "naïve" and json.loads(lines[3])["x"] is None
    assert [r["item"] for r in iter_ledger(path)] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    "path",
    ["/a/b.png", "/a//b", "/a/./b", "/a/../b", "/a/b/", "a/b", "./a", "../a", "/a/.h", "/a/b..c"],
)
def test_resume_spells_a_path_as_normpath_does(path):
    import os

    from pipeline.ledger.resume import _normal

    assert _normal(path) == os.path.normpath(path)
