"""Poison inputs and a hostile environment (issue 11, part 6): one item's bug fails that item,
not the run; a ledger that cannot be appended to (disk full) stops the run with exit 4; output
folders are checked before anything is paid for; a FIFO or a folder as an input is refused;
a file name that is not UTF-8 does not stop the job; --grace bounds a stop whatever a thread
is doing."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys

import pytest
from helpers import make_image, read_ledger_lines, simple_job, write_manifest

from pipeline.cli.main import main
from pipeline.core.errors import UsageError
from pipeline.engine.runner import RunOptions, run
from pipeline.manifest.load import load_plan
from pipeline.simulator import SimConfig

KEY = "sk-poison-test-key-99"


def options(sim, **kw) -> RunOptions:
    return RunOptions(base_url=sim.base_url, api_key=KEY, backoff_base_s=0.01, **kw)


async def test_a_bug_met_by_one_item_fails_that_item_and_the_run_goes_on(
    tmp_path, sim_factory, monkeypatch
):
    from pipeline.engine import prepare

    real = prepare.estimate_item

    def broken_for_one(item, *args, **kwargs):
        if item.id == "sku-001":
            raise ZeroDivisionError("a bug that only this item meets")
        return real(item, *args, **kwargs)

    monkeypatch.setattr(prepare, "estimate_item", broken_for_one)
    plan = load_plan(simple_job(tmp_path, 3))
    async with sim_factory() as sim:
        summary = await run(plan, options(sim))
    assert summary.exit_code == 1 and summary.stats.succeeded == 2
    failed = next(r for r in read_ledger_lines(plan.ledger) if r["event"] == "failed")
    error = failed["error"]
    assert failed["item"] == "sku-001" and error["class"] == "internal"
    assert error["type"] == "ZeroDivisionError" and len(error["traceback"]) == 12
    assert "a bug that only this item meets" in error["message"]
    assert error["where"].endswith(" in broken_for_one")


def _full_disk_after(limit: int):
    def limit_file_size() -> None:  # in the child: writes past `limit` bytes fail (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_file_size


async def test_a_ledger_append_that_fails_exits_4_saying_why(tmp_path, sim_factory):
    plan = load_plan(simple_job(tmp_path, 3))
    plan.ledger.parent.mkdir(parents=True)
    # A ledger near the file size limit: its next lines cannot be written, as on a full disk.
    filler = {"v": 1, "ts": "2026-01-01T00:00:00.000Z", "run": "old", "event": "run_finished"}
    line = json.dumps(filler) + "\n"
    limit = 64 * 1024
    plan.ledger.write_text(line * (limit // len(line)))
    async with sim_factory() as sim:
        env = dict(os.environ, OPENAI_API_KEY=KEY)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "pipeline", "run", str(plan.manifest_path), "--base-url", sim.base_url),
            *("--progress", "none"),
            env=env,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_full_disk_after(limit),
        )
        _, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 4, text
    assert "cannot append to the ledger" in text and "free space" in text
    assert "bug" not in text
    read_ledger_lines(plan.ledger)  # every line still whole


def test_validate_names_the_item_whose_output_folder_is_a_file(tmp_path, capsys):
    manifest = simple_job(tmp_path, 3, output={"dir": "out", "name": "{id}/edit"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sku-001").write_text("not a folder")
    assert main(["validate", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "items[1] (sku-001)" in err and "is a file" in err


async def test_a_glob_match_whose_name_is_not_utf8_runs_and_reports(tmp_path, sim_factory, capsys):
    folder = tmp_path / "images"
    make_image(folder / "fine.png")
    odd = os.fsdecode(b"odd\xff\xfename.png")  # bytes no UTF-8 decoder accepts
    make_image(folder / odd)
    manifest = write_manifest(tmp_path, [{"glob": "images/*.png", "prompt": "white backdrop"}])
    assert main(["validate", str(manifest)]) == 0
    async with sim_factory() as sim:
        summary = await run(load_plan(manifest), options(sim))
    assert summary.exit_code == 0 and summary.stats.succeeded == 2
    html = tmp_path / "report.html"
    assert main(["report", str(manifest), "--html", str(html)]) == 0
    assert main(["report", str(manifest)]) == 0
    assert main(["report", str(manifest), "--json"]) == 0
    assert "odd" in html.read_text(encoding="utf-8")
    capsys.readouterr()


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_an_input_that_is_not_a_regular_file_is_refused_at_validation(tmp_path, capsys, kind):
    make_image(tmp_path / "a.png")
    odd = tmp_path / "odd.png"
    if kind == "fifo":
        os.mkfifo(odd)
    elif kind == "folder":
        odd.mkdir()
    else:
        odd = "/dev/zero"
    manifest = write_manifest(
        tmp_path,
        [
            {"id": "a", "image": "a.png", "prompt": "p", "mask": str(odd)},
            {"id": "b", "image": str(odd), "prompt": "p"},
        ],
    )
    assert main(["validate", str(manifest)]) == 2  # at once: nothing waits for a writer
    err = capsys.readouterr().err
    assert "items[0] (a).mask" in err and "items[1] (b).image" in err
    assert "not a regular file" in err or "is a folder" in err


async def test_an_input_replaced_by_a_fifo_after_validation_fails_its_item(tmp_path, sim_factory):
    plan = load_plan(simple_job(tmp_path, 2))
    first = plan.items[0].images[0]
    first.unlink()
    os.mkfifo(first)
    async with sim_factory() as sim:
        summary = await run(plan, options(sim))
    failed = next(r for r in read_ledger_lines(plan.ledger) if r["event"] == "failed")
    assert failed["item"] == "sku-000" and "FIFO" in failed["error"]["message"]
    assert summary.stats.succeeded == 1


async def test_grace_bounds_a_stop_even_when_a_thread_is_stuck_on_a_fifo(tmp_path, sim_factory):
    manifest = simple_job(tmp_path, 6, limits={"concurrency": 2})
    fifo = tmp_path / "nobody-writes-here"
    os.mkfifo(fifo)
    # One item's input read blocks its executor thread forever (a FIFO with no writer): the
    # grace period ends, and the process must still exit.
    script = f"""
import sys
from pipeline.engine import prepare
real = prepare._read
def _read(path):
    if path.name == "img001.png":
        open({str(fifo)!r}, "rb").read()
    return real(path)
prepare._read = _read
from pipeline.cli.main import main
from pipeline.core.errors import UsageError
sys.exit(main(sys.argv[1:]))
"""
    ledger = tmp_path / "job-out" / "ledger.jsonl"
    async with sim_factory(SimConfig(latency_s=0.2)) as sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-c", script, "run", str(manifest), "--base-url", sim.base_url),
            *("--progress", "none", "--grace", "0.5"),
            env=dict(os.environ, OPENAI_API_KEY=KEY),
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(400):  # up to 20 s for the first success on a loaded machine
            if ledger.exists() and '"succeeded"' in ledger.read_text():
                break
            await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        signalled = loop.time()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
        took = loop.time() - signalled
    assert proc.returncode == 143, err.decode()
    assert took < 0.5 + 2.0 + 2.0  # grace + the margin + a loaded machine's slack
    assert "exiting now" in err.decode()
    read_ledger_lines(ledger)  # every line whole


@pytest.mark.parametrize(
    "foreign",
    [b"my notes, no newline", b"# a config file\nkey = value\n", b'{"name": "a json file"}\n'],
    ids=["one line", "text", "json"],
)
async def test_a_ledger_path_that_leads_to_a_foreign_file_is_refused_and_left_alone(
    tmp_path, sim_factory, foreign
):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(foreign)
    plan = load_plan(simple_job(tmp_path, 1, ledger="ledger.jsonl"))
    plan.ledger.symlink_to(notes)  # a symlink to someone else's file
    async with sim_factory() as sim:
        with pytest.raises(UsageError, match="not an editbatch ledger") as caught:
            await run(plan, options(sim))
        assert (await sim.stats())["requests"] == 0
    assert str(plan.ledger) in str(caught.value) and "point `ledger:`" in str(caught.value)
    assert notes.read_bytes() == foreign  # nothing cut, nothing appended


def test_only_a_torn_ledger_line_is_repaired(tmp_path):
    from pipeline.core.errors import LedgerCorrupt
    from pipeline.ledger.reader import read_ledger

    record = {"v": 1, "ts": "2026-01-01T00:00:00.000Z", "run": "r", "event": "run_started"}
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(json.dumps(record).encode() + b"\n" + b"not a ledger line")
    with pytest.raises(LedgerCorrupt, match="delete line 2"):
        read_ledger(path, repair=True)
    assert path.read_bytes().endswith(b"not a ledger line")
    path.write_bytes(json.dumps(record).encode() + b'\n{"v":1,"ts":"2026-01-0')
    assert "cut off" in read_ledger(path, repair=True).warnings[0]
