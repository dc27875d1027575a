"""The report's views for people: the rows of its summary, runs and errors tables (shared with
the HTML page) and the plain-text rendering for a terminal.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.cost.estimate import PlanEstimate, Totals
from pipeline.report.aggregate import Report

RUN_HEADS = ("run", "started", "end", "done", "failed", "USD", "wall", "done/min")
ERROR_HEADS = ("count", "class", "status", "type / code", "message", "examples")


def summary_rows(report: Report) -> list[tuple[str, str]]:
    """The headline figures as (label, text) rows, shared by the terminal and HTML views."""
    t, lat = report.tokens, report.latency_s
    cost = f"${report.cost_usd:,.4f}"
    if report.cost_not_kept_usd:
        cost += f" (${report.cost_not_kept_usd:,.4f} of it on answers billed but not kept)"
    if report.cost_estimated:
        cost += f" ({report.cost_estimated} estimated: no usable usage returned)"
    if report.cost_unpriced:
        cost += f" (+{report.cost_unpriced} unpriced: add the model to `pricing:`)"
    if report.usage_suspect:
        cost += f" ({report.usage_suspect} usage_suspect: far above the worst case; counted)"
    simulated = sum(1 for r in report.runs if r.simulated)
    if simulated:
        runs = "every run" if simulated == len(report.runs) else f"{simulated} of the runs"
        cost += f" — simulated ({runs}: the built-in simulator, nothing billed)"
    rows = [
        ("items", _pairs(report.items)),
        ("done by route", _pairs(report.done_by_route)),
        ("failed by class", _pairs(report.failed_by_class)),
        ("retried by cause", _pairs(report.retries_by_cause)),
        ("retried by status", _pairs(report.retries_by_status)),
        ("tokens", f"text in {t.text_input:,}, image in {t.image_input:,}, "
                   f"image out {t.image_output:,}, text out {t.text_output:,}"),
        ("cost", cost),
        ("latency", f"p50 {_secs(lat['p50'])}, p95 {_secs(lat['p95'])}, max {_secs(lat['max'])}"),
        ("throughput", _rate(report.per_minute) + " items/min"),
    ]  # fmt: skip
    if report.drift:
        d = report.drift
        worst = ", ".join(f"{w['item']} {w['drift']:.3f}" for w in d["worst"])
        rows.append(
            (
                "drift",
                f"median {d['median']:.3f}, max {d['max']:.3f} over {d['items']} masked "
                f"item(s) (change outside the mask, 0-1); worst: {worst}",
            )
        )
    if report.cached:
        rows.append(("from the cache", f"{report.cached} item(s), nothing sent or paid"))
    if report.short_answers:
        shown = ", ".join(report.short_answers[:10])
        more = len(report.short_answers) - 10
        rows.append(
            (
                "fewer images than n",
                f"{len(report.short_answers)} item(s), kept as returned: {shown}"
                + (f" and {more} more" if more > 0 else ""),
            )
        )
    return rows


def run_rows(report: Report) -> list[tuple[str, ...]]:
    return [
        (
            r.run + (" (sim)" if r.simulated else ""),
            r.started[:19].replace("T", " "),
            f"{r.reason or 'finished'} ({r.exit_code})" if r.finished else "no run_finished",
            str(r.succeeded),
            str(r.failed),
            f"{r.cost_usd:.4f}",
            _secs(r.duration_s),
            _rate(r.per_minute),
        )
        for r in report.runs
    ]


def error_rows(report: Report) -> list[tuple[str, ...]]:
    return [
        (
            str(g.count),
            g.cls,
            str(g.http_status or "-"),
            f"{g.type or '-'} / {g.code or '-'}",
            g.message,
            ", ".join(g.examples) + (f" and {g.more} more" if g.more else ""),
        )
        for g in report.errors
    ]


BATCH_HEADS = ("batch", "status", "items", "succeeded", "provider counts", "USD", "saving")


def batch_table_rows(report: Report) -> list[tuple[str, ...]]:
    return [
        (
            b.id,
            b.status,
            str(b.items),
            str(b.succeeded),
            _pairs(b.counts),
            f"{b.cost_usd:.4f}",
            f"{b.saving_usd:.4f}",
        )
        for b in report.batches
    ]


def render_text(report: Report, width: int | None = None) -> str:
    """The report as plain-text tables for a terminal (colour is the caller's concern)."""
    tables = [
        text_table("editbatch report", None, summary_rows(report)),
        text_table("runs", RUN_HEADS, run_rows(report)),
    ]
    if report.errors:
        tables.append(text_table("most common errors", ERROR_HEADS, error_rows(report)))
    if report.batches:
        tables.append(text_table("batches", BATCH_HEADS, batch_table_rows(report)))
    return plain_text(tables, [f"warning: {w}" for w in report.warnings], width)


def plain_text(tables: Iterable[Table], notes: Iterable[str] = (), width: int | None = None) -> str:
    """Tables, then lines of notes, as text without colour or markup; `width` defaults to the
    terminal's, or 120 columns when there is none (a cron log)."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True)
    for table in tables:
        console.print(table)
    for note in notes:
        console.print(Text(note))
    # rich pads every line to the full width; trailing blanks only clutter logs.
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def text_table(title: str, heads: Sequence[str] | None, rows: Iterable[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=heads is not None)
    for head in heads or ("", ""):
        table.add_column(head, overflow="fold")
    for row in rows:
        # Text cells: ids and server messages may hold [brackets] that rich would read as markup.
        table.add_row(*(Text(cell) for cell in row))
    return table


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_estimate(estimate: PlanEstimate, width: int | None = None) -> str:
    """The estimate as a plain-text table per model with a total, for a terminal."""
    heads = (
        "model",
        "pending",
        "text in",
        "image in",
        "image out",
        "expected USD",
        "worst USD",
        "batch USD",
    )
    groups = [*sorted(estimate.by_model.items()), ("total", estimate.total)]
    rows = [
        (
            model,
            f"{t.pending:,}",
            f"{t.expected.text_input:,}",
            f"{t.expected.image_input:,}",
            f"{t.expected.image_output:,}",
            _usd_text(t.expected_usd, t),
            _usd_text(t.worst_usd, t),
            _usd_text(t.batch_expected_usd, t),
        )
        for model, t in groups
    ]
    notes = [
        "tokens as expected; expected USD: what the provider most likely bills; worst USD: the "
        "most it can bill (auto size and quality at their most expensive, a token per byte).",
        "batch USD: expected through the Batch API (`run --batch`, answers within 24 h) at its "
        f"price, half unless `pricing:` sets batch_discount; its worst case: "
        f"{estimate.total.batch_worst_usd:,.4f}.",
    ]
    notes += [
        f"{model}: no price known, its USD is left out; add it to the manifest's `pricing:` "
        "(USD per 1M tokens: text_input, image_input, image_output)"
        for model in estimate.unpriced_models
    ]
    notes += [
        f"{model}: priced as {base} (a dated snapshot of it); add {model} to `pricing:` if "
        "its price differs"
        for model, base in sorted(estimate.priced_as.items())
    ]
    if estimate.approximate_items:
        notes.append(
            f"{estimate.approximate_items:,} item(s) ask for a free size: their output tokens are "
            "approximate (the nearest listed size's, scaled by area) until the provider's usage "
            "replaces them"
        )
    endpoints = estimate.endpoints
    if endpoints.get("generations"):
        notes.append(
            f"{endpoints.get('edits', 0):,} edit(s), {endpoints['generations']:,} generation(s) "
            "(text input only)"
        )
    return plain_text([text_table("estimate of the pending items", heads, rows)], notes, width)


def _usd_text(usd: float, totals: Totals) -> str:
    if totals.pending and totals.unpriced_items == totals.pending:
        return "no price"
    return f"{usd:,.4f}" + (" + unpriced" if totals.unpriced_items else "")
