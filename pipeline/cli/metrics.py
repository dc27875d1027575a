"""The run's figures in the Prometheus text format, for node_exporter's textfile collector.

`editbatch_last_success_timestamp_seconds` carries over from the previous file when this run
did not finish every item, so an alert on its age keeps working across failed nights.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from pipeline.engine.summary import RunSummary

_LAST_SUCCESS = re.compile(r"^editbatch_last_success_timestamp_seconds\{[^}]*\} (\S+)$", re.M)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def previous_last_success(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        match = _LAST_SUCCESS.search(Path(path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return float(match.group(1)) if match else None
    except ValueError:
        return None


def prometheus_text(
    summary: RunSummary, *, previous: Path | None = None, now: float | None = None
) -> str:
    now = time.time() if now is None else now
    job = f'manifest="{_label(summary.manifest)}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            joined = ",".join(part for part in (job, labels) if part)
            lines.append(
                f"{name}{{{joined}}} {value:g}"
                if isinstance(value, int)
                else f"{name}{{{joined}}} {value!r}"
            )

    counts = summary.counts()
    s = summary.stats
    metric(
        "editbatch_items",
        "gauge",
        "Items of the job by state after the last run.",
        [
            ('state="done"', counts["done"]),
            ('state="failed"', counts["failed"] + counts["failed_before"]),
            ('state="pending"', counts["pending"]),
            ('state="in_batch"', counts["in_batch"]),
        ],
    )
    metric(
        "editbatch_run_cost_usd",
        "gauge",
        "USD recorded by the last run.",
        [("", float(summary.cost_usd))],
    )
    metric(
        "editbatch_spent_total_usd",
        "gauge",
        "USD recorded in the ledger, all runs.",
        [("", float(summary.spent_total_usd))],
    )
    metric(
        "editbatch_run_tokens",
        "gauge",
        "Tokens billed in the last run, by kind.",
        [(f'kind="{k}"', v) for k, v in sorted(summary.tokens.items())],
    )
    metric(
        "editbatch_run_requests",
        "gauge",
        "HTTP requests of the last run, by status.",
        [(f'status="{_label(k)}"', v) for k, v in sorted(s.by_status.items())]
        or [('status="none"', 0)],
    )
    metric(
        "editbatch_run_retries",
        "gauge",
        "Retried attempts of the last run, by cause.",
        [(f'cause="{k}"', v) for k, v in sorted(s.retries.items())] or [('cause="none"', 0)],
    )
    metric(
        "editbatch_run_duration_seconds",
        "gauge",
        "Wall time of the last run.",
        [("", float(summary.duration_s))],
    )
    metric(
        "editbatch_run_simulated",
        "gauge",
        "1 when the last run was served by the built-in simulator (nothing billed), else 0.",
        [("", int(summary.simulated))],
    )
    metric(
        "editbatch_run_exit_code",
        "gauge",
        "Exit status of the last run.",
        [("", summary.exit_code)],
    )
    metric(
        "editbatch_last_run_timestamp_seconds",
        "gauge",
        "When the last run ended (Unix time).",
        [("", float(now))],
    )
    last_success = now if summary.exit_code == 0 else previous_last_success(previous)
    if last_success is not None:
        metric(
            "editbatch_last_success_timestamp_seconds",
            "gauge",
            "When a run last ended with every item done (Unix time).",
            [("", float(last_success))],
        )
    return "\n".join(lines) + "\n"
