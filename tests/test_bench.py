"""The benchmark's own code paths at tiny sizes: every scenario runs its clients against a
simulator process and returns the rows the table needs; the verdicts and the table are right.
No figure is asserted on: the figures come from `python -m bench.run`, not from the tests.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

# bench/ is not an installed package: it runs from the clone, as `python -m bench.run` does.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import measure
from bench.batchjob import batch_job
from bench.bigjob import big_job
from bench.cpu import cpu_per_item
from bench.figures import Result, all_done, at_least, at_most, markdown, text_table
from bench.memory import peak_memory
from bench.rawloop import drift, keep_of
from bench.run import main
from bench.scenarios import faults, rate_known, rate_unknown

# 100 requests a second with a 100-token burst: five items never meet the limit.
FAST = {"rpm": 6000, "latency": 0, "jitter": 0}


@pytest.fixture(autouse=True)
def bench_work(tmp_path, monkeypatch):
    """Every file the benchmark makes goes to tmp_path; no pause for the bucket to refill."""
    monkeypatch.setenv("EDITBATCH_BENCH_WORK", str(tmp_path / "work"))
    monkeypatch.setattr(measure, "BUCKET_SETTLE_S", 0.0)
    return tmp_path / "work"


def measures(result: Result) -> dict[str, str]:
    return {row.measure: row.editbatch for row in result.rows}


def test_the_diy_baseline_and_editbatch_each_complete_a_five_item_job():
    result = rate_unknown(n=5, concurrency=4, starved=None, **FAST)
    done = next(row for row in result.rows if row.measure == "items done")
    assert (done.editbatch, done.reference) == ("5/5", "5/5")
    assert {"goodput", "429s / requests"} <= set(measures(result))
    assert result.raw["diy"]["errors"] == {}


def test_rate_known_measures_editbatch_beside_the_paced_raw_loop():
    result = rate_known(n=5, **FAST)
    done = next(row for row in result.rows if row.measure == "items done")
    assert (done.editbatch, done.reference) == ("5/5", "5/5")
    assert "raw paced loop" in result.rows[0].reference
    assert result.raw["editbatch"]["outputs"] == 5


def test_faults_scenario_finishes_every_item_through_scripted_server_errors():
    result = faults(n=5, **FAST, fault_free_wall=1.0, rates={"500": 0.3}, timeout_s=5)
    assert measures(result)["items done"] == "5/5"
    assert result.raw["editbatch"]["sim"]["by_outcome"].get("500", 0) > 0
    assert "wall / fault-free wall" in measures(result)


def test_cpu_scenario_reports_both_clients_per_item():
    result = cpu_per_item(scale=0.01, concurrency=2, variants=("small",), repeats=1)
    (row,) = result.rows
    assert row.reference.endswith("(raw loop)") and row.ratio and row.verdict
    runs = result.raw["small"]
    assert [fig["done"] for fig in runs["editbatch"] + runs["raw"]] == [10, 10]


def test_the_raw_loops_drift_is_zero_for_the_same_pixels_and_grows_with_change():
    def png(colour) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(out, "PNG")
        return out.getvalue()

    mask = io.BytesIO()
    Image.new("RGBA", (16, 16), (0, 0, 0, 255)).save(mask, "PNG")
    keep, kept = keep_of(mask.getvalue())
    assert kept == 256
    assert drift(png((10, 20, 30)), png((10, 20, 30)), keep, kept) == 0
    assert drift(png((0, 0, 0)), png((255, 255, 255)), keep, kept) == 1


def test_big_job_plans_both_manifests_and_resumes_a_synthetic_ledger(bench_work):
    result = big_job(count=20)
    names = measures(result)
    assert names["resume to first request, 20 items done"].endswith(" s")
    assert names["start-up to first request, fresh 20-item job"].endswith(" s")
    assert len(result.rows) == 6
    assert result.raw["explicit list"]["plan"]["items"] == 20
    assert result.raw["glob"]["plan"]["items"] == 20
    # the resumed run sent exactly the one new item: its output appeared
    assert (bench_work / "big-20" / "out" / "sku-new.png").exists()


def test_peak_memory_scenario_runs_both_clients_on_large_bodies():
    result = peak_memory(n=2, concurrency=2, latency=0, distinct=1, repeats=1, kind="photo")
    assert measures(result)["items done"] == "2 of 2"
    assert result.raw["body_mb"] > 0.5  # the ~1 MB input came back as a ~1 MB output
    assert result.rows[0].target.startswith("<= ")


def test_batch_scenario_submits_then_collects_and_matches_the_bill():
    result = batch_job(n=6, distinct=3, batch_seconds=0.4)
    assert result.raw["submit"]["exit_code"] == 5 and result.raw["collect"]["exit_code"] == 0
    assert [row.verdict for row in result.rows][1:] == ["met", "met", "met"]


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (at_least(0.98, 0.97), "met"),
        (at_least(0.95, 0.97), "MISSED by 0.02"),
        (at_most(1.1, 1.2), "met"),
        (at_most(2.4, 1.2), "MISSED by 1.2 (2.00x the bound)"),
        (all_done(200, 200), "met"),
        (all_done(85, 200), "MISSED: 115 of 200 not done"),
    ],
)
def test_verdicts_say_met_or_by_how_much_a_target_is_missed(verdict, expected):
    assert verdict == expected


def test_table_and_results_page_show_every_row_and_list_the_misses():
    result = Result("1 rate known")
    result.add("goodput", "0.950", reference="0.990", target=">= 0.97", verdict="MISSED by 0.02")
    result.add("items done", "200/200", target="all", verdict="met")
    result.notes.append("200 items")
    table = text_table([result]).splitlines()
    assert table[0].split() == [
        "scenario", "measure", "editbatch", "reference", "ratio", "target", "verdict"
    ]  # fmt: skip
    assert len(table) == 4 and "MISSED by 0.02" in table[2]
    info = {"cpu": "Test CPU", "cores": 2, "ram_gb": 4.0, "python": "3.11", "os": "Linux",
            "date": "2026-01-01 00:00 UTC"}  # fmt: skip
    page = markdown([result], info, "python -m bench.run", 300)
    assert "Test CPU, 2 cores, 4.0 GB RAM" in page and "2026-01-01" in page
    assert "| 1 rate known | goodput | 0.950 |" in page
    assert page.split("## Targets missed")[1].strip() == "- 1 rate known: goodput: MISSED by 0.02"


def test_an_unknown_scenario_number_is_refused():
    with pytest.raises(SystemExit) as exc:
        main(["--only", "11"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("latencies", "schedule", "expected"),
    [
        ([1.0] * 11, [(-1e9, 10.0)], 2.0),  # 11 slots at 10/s: the last starts at 1 s
        ([1.0, 5.0, 1.0], [(-1e9, 1.0)], 6.0),  # a slow answer can be the last one in
        # 10/s for a second, then 4/s: slot 10 at 1 s, slot 14 at 2 s
        ([0.0] * 15, [(-1e9, 10.0), (1.0, 4.0)], 2.0),
        ([0.0] * 15, [(-1e9, 10.0), (1.0, 4.0), (1.5, 10.0)], 1.5 + 0.2),
    ],
)
def test_pace_ideal_follows_the_limits_schedule(latencies, schedule, expected):
    from bench.pacing import ideal_span

    assert ideal_span(0.0, latencies, schedule) == pytest.approx(expected)
