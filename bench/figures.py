"""What a scenario reports, and how the figures are shown: rows of (measure, editbatch, reference,
ratio, target, verdict), the machine they ran on, a text table for the terminal and the
Markdown of bench/results.md.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

COLUMNS = ("scenario", "measure", "editbatch", "reference", "ratio", "target", "verdict")


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    measure: str
    editbatch: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""  # "met", "MISSED by ...", or "" for a figure without a target

    def cells(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)


@dataclass
class Result:
    """One scenario's rows, the notes that explain them, and every raw figure."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def add(self, measure: str, editbatch: str, **cells: str) -> None:
        self.rows.append(Row(self.title, measure, editbatch, **cells))


def at_least(value: float, bound: float, unit: str = "") -> str:
    return "met" if value >= bound else f"MISSED by {bound - value:.3g}{unit}"


def at_most(value: float, bound: float, unit: str = "") -> str:
    if value <= bound:
        return "met"
    return f"MISSED by {value - bound:.3g}{unit} ({value / bound:.2f}x the bound)"


def all_done(done: int, total: int) -> str:
    return "met" if done == total else f"MISSED: {total - done} of {total} not done"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def machine() -> dict:
    """CPU model, cores, RAM and Python of this machine."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gb": round(ram_gb, 1),
        "python": sys.version.split()[0],
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def text_table(results: list[Result]) -> str:
    """A fixed-width table of every row, for the terminal."""
    rows = [COLUMNS] + [row.cells() for result in results for row in result.rows]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(COLUMNS))]
    lines = []
    for number, cells in enumerate(rows):
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        lines.append("  ".join(padded).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown(results: list[Result], info: dict, command: str, took_s: float) -> str:
    """bench/results.md: the machine, the date, the table, and each scenario's notes."""
    out = [
        "# editbatch benchmark results",
        "",
        f"Written by `{command}` on {info['date']} in {took_s:.0f} s.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, "
        f"Python {info['python']}, {info['os']}. The simulator runs in its own process on "
        "the same cores as the client. Its CPU per request is in each scenario's notes: the "
        "first client against a simulator pays for its renders (about 11 ms for a 1024x1024 "
        "PNG, 270 ms for a 1536x1024 noise PNG), later clients hit its render cache.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for result in results:
        for row in result.rows:
            out.append("| " + " | ".join(cell.replace("|", "/") for cell in row.cells()) + " |")
    for result in results:
        out += ["", f"## {result.title}", ""]
        out += [f"- {note}" for note in result.notes]
    missed = [row for result in results for row in result.rows if row.verdict.startswith("MISS")]
    out += ["", "## Targets missed", ""]
    if missed:
        out += [f"- {row.scenario}: {row.measure}: {row.verdict}" for row in missed]
    else:
        out.append("- none")
    return "\n".join(out) + "\n"
