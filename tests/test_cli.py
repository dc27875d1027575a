"""The command line end to end: validate, estimate, dry run, run on the built-in simulator,
report, schema, and the files left for monitoring."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import make_image, read_ledger_lines, simple_job, write_manifest

from pipeline.cli.main import main

DEMO = Path(__file__).resolve().parent.parent / "examples" / "manifests"


@pytest.fixture
def demo(tmp_path) -> Path:
    """A copy of the demo manifest and its pictures, so runs write into tmp_path."""
    shutil.copytree(DEMO / "demo", tmp_path / "demo")
    shutil.copy(DEMO / "demo.yaml", tmp_path / "demo.yaml")
    return tmp_path / "demo.yaml"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_reports_a_valid_manifest(demo, capsys):
    code, out, _ = run_cli(capsys, "validate", demo, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["valid"] is True and data["items"] >= 4


def test_validate_lists_every_problem_with_exit_2(tmp_path, capsys):
    make_image(tmp_path / "a.png")
    manifest = write_manifest(
        tmp_path,
        [
            {"id": "a", "image": "a.png", "prompt": "x", "qualty": "high"},
            {"id": "a", "image": "missing.png", "prompt": "y"},
        ],
    )
    code, out, _ = run_cli(capsys, "validate", manifest, "--json")
    assert code == 2
    problems = json.loads(out)["problems"]
    text = json.dumps(problems)
    assert "qualty" in text and "quality" in text  # did-you-mean
    assert "missing.png" in text
    assert len(problems) >= 3  # unknown key, duplicate id, missing file: all at once


def test_demo_runs_on_the_simulator_then_resumes_with_nothing_to_do(demo, capsys):
    code, out, err = run_cli(capsys, "run", demo, "--simulate", "--progress", "none", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["simulated"] is True and summary["items"]["pending"] == 0
    lines = read_ledger_lines(demo.parent / "demo-out" / "ledger.jsonl")
    assert all(rec.get("simulated") is True for rec in lines)
    code, out, _ = run_cli(capsys, "run", demo, "--simulate", "--progress", "none", "--json")
    assert code == 0 and json.loads(out)["requests"] == 0


def test_estimate_then_dry_run_send_nothing_and_agree(demo, capsys):
    code, out, _ = run_cli(capsys, "estimate", demo, "--json")
    assert code == 0
    estimate = json.loads(out)
    assert estimate["pending"] >= 4
    assert 0 < estimate["expected_usd"] <= estimate["worst_usd"]
    code, out, _ = run_cli(capsys, "run", demo, "--dry-run", "--json")
    assert code == 0
    dry = json.loads(out)
    assert dry["pending"] == estimate["pending"] and dry["dry_run"] is True
    assert not (demo.parent / "demo-out" / "ledger.jsonl").exists()


def test_estimate_matches_what_the_simulator_billed_for_the_demo(demo, capsys):
    _, out, _ = run_cli(capsys, "estimate", demo, "--json")
    estimate = json.loads(out)
    _, out, _ = run_cli(capsys, "run", demo, "--simulate", "--progress", "none", "--json")
    billed = json.loads(out)["cost_usd"]
    assert estimate["expected_usd"] == pytest.approx(billed, rel=0.10)
    assert estimate["worst_usd"] >= billed
    _, out, _ = run_cli(capsys, "estimate", demo, "--json")
    assert json.loads(out)["pending"] == 0


def test_budget_stop_exits_3_and_a_larger_budget_finishes(demo, capsys):
    code, out, err = run_cli(
        capsys, "run", demo, "--simulate", "--max-usd", "0.012", "--progress", "none", "--json"
    )
    assert code == 3, err
    first = json.loads(out)
    assert first["cost_usd"] <= 0.012 and first["items"]["pending"] > 0
    assert "budget" in err
    code, out, _ = run_cli(capsys, "run", demo, "--simulate", "--progress", "none", "--json")
    assert code == 0


def test_report_json_text_and_html(demo, capsys, tmp_path):
    run_cli(capsys, "run", demo, "--simulate", "--progress", "none")
    code, out, _ = run_cli(capsys, "report", demo, "--json")
    assert code == 0
    report = json.loads(out)
    ledger = demo.parent / "demo-out" / "ledger.jsonl"
    recorded = sum(
        rec["cost_usd"] for rec in read_ledger_lines(ledger) if rec["event"] == "succeeded"
    )
    assert report["cost_usd"] == pytest.approx(recorded, abs=1e-6)
    assert report["items"]["done"] == report["items"]["total"]
    code, out, _ = run_cli(capsys, "report", ledger)
    assert code == 0 and "USD" in out.upper()
    page = tmp_path / "report.html"
    code, out, err = run_cli(capsys, "report", demo, "--html", page)
    assert code == 0 and out == "" and f"wrote {page}" in err  # the page, not the text too
    html = page.read_text()
    images = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                images.append(dict(attrs))

    Collect().feed(html)
    assert len(images) >= 2 * report["items"]["done"]
    assert str(tmp_path) not in html


def test_summary_and_metrics_files(tmp_path, capsys, sim_factory):
    manifest = simple_job(tmp_path, 2)
    summary_file = tmp_path / "state" / "summary.json"
    metrics_file = tmp_path / "state" / "editbatch.prom"
    (tmp_path / "state").mkdir()
    code, _, err = run_cli(
        capsys,
        "run",
        manifest,
        "--simulate",
        "--progress",
        "plain",
        "--summary-file",
        summary_file,
        "--metrics-file",
        metrics_file,
    )
    assert code == 0, err
    assert json.loads(summary_file.read_text())["exit_code"] == 0
    metrics = metrics_file.read_text()
    assert 'editbatch_items{manifest="job",state="done"} 2' in metrics
    assert "editbatch_last_success_timestamp_seconds" in metrics
    assert "# TYPE editbatch_run_cost_usd gauge" in metrics
    assert 'editbatch_run_simulated{manifest="job"} 1' in metrics  # nothing was billed


def test_schema_prints_the_committed_schema(capsys):
    code, out, _ = run_cli(capsys, "schema")
    committed = json.loads((DEMO.parent.parent / "schema" / "manifest.schema.json").read_text())
    assert code == 0 and json.loads(out) == committed


def test_only_names_unknown_items_with_exit_2(demo, capsys):
    code, _, err = run_cli(capsys, "run", demo, "--simulate", "--only", "nope")
    assert code == 2 and "nope" in err


def test_sim_options_need_simulate(demo, capsys):
    code, _, err = run_cli(capsys, "run", demo, "--sim-faults", "500=0.1")
    assert code == 2 and "--simulate" in err
