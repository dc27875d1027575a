"""How a run looks on stderr: a live rich bar on a terminal, one plain line every 30 s in a
log (cron, systemd, Kubernetes), or nothing; and the short human summary at the end."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from pipeline.cli.eta import Eta
from pipeline.engine import advice
from pipeline.engine.summary import RunStats, RunSummary

PLAIN_INTERVAL_S = 30.0
# A rate-limit pause is shown once it holds dispatch for longer than this.
PAUSE_SHOWN_S = 3.0


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 1 else f"{value:.1g}"


def finished(stats: RunStats) -> int:
    """Items this run has finished, done or failed: what the ETA's rate counts."""
    return stats.succeeded + stats.failed


def hold_text(stats: RunStats, now: float | None = None) -> str:
    """What holds dispatch back, if anything: an outage being probed, or a long pause."""
    now = time.time() if now is None else now
    if stats.outage_since is not None:
        since = time.strftime("%H:%M:%S", time.localtime(stats.outage_since))
        every = _seconds(stats.probe_every_s or 0.0)
        return f"provider failing since {since}, probing every {every} s"
    if stats.paused_until is not None and stats.paused_until - now > PAUSE_SHOWN_S:
        return f"waiting for the rate limit ({stats.paused_until - now:.0f} s)"
    return ""


def status_line(stats: RunStats, eta: Eta | None = None) -> str:
    usd = f"${stats.cost_usd:.4f}"
    if stats.budget_left_usd is not None:
        usd += f" (left ${stats.budget_left_usd:.4f})"
    retries = sum(stats.retries.values())
    hold = hold_text(stats)
    return (
        f"done {stats.done}/{stats.total}, failed {stats.failed + stats.failed_before}, "
        f"pending {stats.pending}, in flight {stats.in_flight}, requests {stats.requests}, "
        f"retries {retries}, spent {usd}"
        + batch_text(stats)
        + (f", {eta.text(stats.pending)}" if eta is not None and eta.text(stats.pending) else "")
        + (f"; {hold}" if hold else "")
    )


def batch_text(stats: RunStats) -> str:
    """Batch mode: the items at the provider and their batches' counts ("" otherwise)."""
    if not stats.in_batch:
        return ""
    counts = stats.batches
    return (
        f", in batches {stats.in_batch} (provider: {counts.get('completed', 0)} completed, "
        f"{counts.get('failed', 0)} failed of {counts.get('total', 0)})"
    )


class PlainProgress:
    """A line now and then, no control characters: what a log file should hold."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = PLAIN_INTERVAL_S):
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self._stats: RunStats | None = None
        self._task: asyncio.Task | None = None
        self._eta = Eta(time.monotonic())
        self._hold = ""  # what the log last said holds dispatch back
        self._checking = 0  # items with ledger history being judged, as the log last said

    def _print(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        print(f"{stamp} editbatch: {text}", file=self.stream, flush=True)

    def started(self, stats: RunStats) -> None:
        self._stats = stats
        self._eta = Eta(time.monotonic())
        self._checking = stats.checking
        if stats.checking:
            self._print(
                f"{stats.total} item(s): {stats.pending - stats.checking} new, sent now; "
                f"{stats.checking} with ledger history being checked"
            )
        else:
            self._print_counts(stats)
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def _print_counts(self, stats: RunStats) -> None:
        self._print(
            f"{stats.total} item(s): {stats.done_before} done before, "
            f"{stats.failed_before} failed before, {stats.pending} to run"
        )

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self._stats is not None:
                self._eta.observe(finished(self._stats), time.monotonic())
                self._print(status_line(self._stats, self._eta))

    def update(self, stats: RunStats) -> None:
        self._stats = stats
        if self._checking and not stats.checking:  # the items with history are judged
            self._checking = 0
            self._print_counts(stats)
        self._eta.observe(finished(stats), time.monotonic())
        self._log_hold(stats)

    def _log_hold(self, stats: RunStats) -> None:
        """A line when an outage or a long pause begins or ends, not only every 30 s."""
        hold = hold_text(stats)
        kind = hold.split(" (", 1)[0] if hold.startswith("waiting") else hold
        if kind == self._hold:
            return
        if hold:
            cause = f" (last: {stats.outage_cause})" if stats.outage_since else ""
            self._print(hold + cause)
        elif self._hold.startswith("provider failing"):
            self._print("provider answering again: dispatch ramps back up")
        self._hold = kind

    def warning(self, text: str) -> None:
        self._print(f"warning: {text}")

    def finished(self, summary: RunSummary) -> None:
        if self._task is not None:
            self._task.cancel()
        self._print(status_line(summary.stats))


class RichProgress:
    """A live bar: done/total, in flight, retries, USD so far, time left (smoothed)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]editbatch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=False,
        )
        self._task_id = None
        self._stats: RunStats | None = None
        self._tick: asyncio.Task | None = None
        self._eta = Eta(time.monotonic())

    def started(self, stats: RunStats) -> None:
        self._eta = Eta(time.monotonic())
        self._progress.start()
        self._task_id = self._progress.add_task(
            "run", total=stats.total, completed=stats.done, detail=""
        )
        self.update(stats)
        self._tick = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        """Redraw every second, so a pause counts down while nothing else happens."""
        while True:
            await asyncio.sleep(1.0)
            if self._stats is not None:
                self.update(self._stats)

    def update(self, stats: RunStats) -> None:
        self._stats = stats
        if self._task_id is None:
            return
        retries = sum(stats.retries.values())
        detail = f"in flight {stats.in_flight} · retries {retries} · ${stats.cost_usd:.4f}"
        if stats.budget_left_usd is not None:
            detail += f" (left ${stats.budget_left_usd:.2f})"
        if stats.failed:
            detail += f" · failed {stats.failed}"
        if stats.checking:
            detail += f" · checking {stats.checking} from the ledger"
        detail += batch_text(stats).replace(", in batches", " · in batches")
        hold = hold_text(stats)
        self._eta.observe(finished(stats), time.monotonic())
        if hold:
            detail += f" · [yellow]{hold}[/]"
        elif self._eta.text(stats.pending):
            detail += f" · {self._eta.text(stats.pending)}"
        self._progress.update(
            self._task_id, completed=stats.done + stats.failed + stats.failed_before, detail=detail
        )

    def warning(self, text: str) -> None:
        self._progress.console.print(f"[yellow]warning:[/] {text}", highlight=False)

    def finished(self, summary: RunSummary) -> None:
        if self._tick is not None:
            self._tick.cancel()
        self.update(summary.stats)
        self._progress.stop()


class QuietProgress:
    """--progress none: warnings only."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr

    def started(self, stats: RunStats) -> None:
        pass

    def update(self, stats: RunStats) -> None:
        pass

    def warning(self, text: str) -> None:
        print(f"editbatch: warning: {text}", file=self.stream, flush=True)

    def finished(self, summary: RunSummary) -> None:
        pass


def make_progress(mode: str, stream: TextIO | None = None):
    stream = stream or sys.stderr
    if mode == "auto":
        mode = "rich" if stream.isatty() else "plain"
    if mode == "rich":
        return RichProgress(Console(file=stream))
    if mode == "plain":
        return PlainProgress(stream)
    return QuietProgress(stream)


def human_summary(summary: RunSummary, manifest: str | None = None) -> str:
    """The end-of-run summary for a person: what happened, why attempts failed (the top
    causes, an example message each), which items failed, and what to type next."""
    s = summary.stats
    manifest = manifest or str(summary.manifest_path or summary.manifest)
    lines = [
        f"{summary.manifest}: {advice.headline(summary)} (exit {summary.exit_code})",
        f"  items: {s.total} — done {s.done} ({s.succeeded} now, {s.done_before} before), "
        f"failed {s.failed} now + {s.failed_before} before, pending {s.pending}",
        f"  requests: {s.requests}, retries: "
        + (", ".join(f"{k} {v}" for k, v in sorted(s.retries.items())) or "none"),
        f"  spent: ${s.cost_usd:.4f} this run, ${summary.spent_total_usd:.4f} in the ledger"
        + (
            f", budget left ${summary.budget_left_usd:.4f}"
            if summary.budget_left_usd is not None
            else ""
        ),
        f"  time: {summary.duration_s:.1f} s; ledger: {summary.ledger}; outputs: "
        f"{summary.output_dir}",
    ]
    if summary.simulated:
        lines.append("  (served by the built-in simulator: nothing was billed)")
    causes = advice.top_causes(s)
    if causes:
        lines.append("  failed attempts by cause:")
        for cause in causes:
            lines.append(f"    {cause.name} ×{cause.count}, e.g. {cause.example}")
    if s.failed_ids:
        lines.append(f"  failed now: {advice.shown_ids(s.failed_ids)}")
    if s.failed_before_ids:
        lines.append(f"  failed earlier: {advice.shown_ids(s.failed_before_ids)}")
    if s.failed_ids or s.failed_before_ids:
        lines.append(f"  every failed id: `editbatch report {manifest} --json` (failed_ids)")
    for message in summary.messages:
        lines.append(f"  note: {message}")
    for step in advice.next_steps(summary, manifest):
        lines.append(f"  next: {step}")
    return "\n".join(lines)
