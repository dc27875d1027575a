"""What a run reports while it goes (RunStats, read by progress displays) and when it ends
(RunSummary, returned by `pipeline.run` and printed by the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.cost.estimate import PlanEstimate
from pipeline.cost.outlook import BudgetOutlook
from pipeline.cost.pricing import TokenCounts


@dataclass(slots=True)
class Cause:
    """Why attempts failed: a cause (`connection`, `rate_limit`, `rejected`, ...; see
    `api.answers.cause_of`), how many attempts it ended, and the first message seen."""

    name: str
    count: int = 0
    example: str = ""

    def to_json(self) -> dict:
        return {"cause": self.name, "count": self.count, "example": self.example}


@dataclass(slots=True)
class RunStats:
    """Live counters of one run, updated by the runner on the event loop."""

    total: int = 0
    done_before: int = 0
    failed_before: int = 0  # failed in an earlier run, not retried (see --retry-failed)
    pending: int = 0
    # items with ledger history still being judged (counted in pending until then): a resume
    # sends its new items meanwhile
    checking: int = 0
    succeeded: int = 0
    failed: int = 0
    in_flight: int = 0
    in_batch: int = 0  # batch mode: items in batches still open at the provider
    # batch mode: the open batches' request counts as the provider last said them
    batches: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    retries: dict[str, int] = field(default_factory=dict)  # by cause
    causes: dict[str, Cause] = field(default_factory=dict)  # failed attempts by cause
    failed_ids: list[str] = field(default_factory=list)  # items that failed in this run
    failed_before_ids: list[str] = field(default_factory=list)  # ... in an earlier run
    by_status: dict[str, int] = field(default_factory=dict)  # "200", "429", "timeout", ...
    cost_usd: float = 0.0
    budget_left_usd: float | None = None
    # What holds dispatch back now, for the displays (wall-clock epoch seconds): the provider
    # failing since then (the circuit is open, one probe at a time), or a rate-limit pause.
    outage_since: float | None = None
    probe_every_s: float | None = None
    outage_cause: str = ""
    paused_until: float | None = None
    tokens: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("text_input", "image_input", "image_output", "text_output"), 0
        )
    )

    def note_cause(self, cause: str, message: str) -> None:
        """One failed attempt (or item verdict without an attempt) of this cause."""
        tally = self.causes.get(cause)
        if tally is None:
            tally = self.causes[cause] = Cause(cause)
        tally.count += 1
        if not tally.example:
            tally.example = message

    def add_tokens(self, counts: TokenCounts) -> None:
        for kind in self.tokens:
            self.tokens[kind] += getattr(counts, kind)

    @property
    def done(self) -> int:
        return self.done_before + self.succeeded


class Observer(Protocol):
    """Receives a run's progress; the CLI's progress display implements it."""

    def started(self, stats: RunStats) -> None: ...
    def update(self, stats: RunStats) -> None: ...
    def warning(self, text: str) -> None: ...
    def finished(self, summary: RunSummary) -> None: ...


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    manifest: str
    reason: str  # completed | budget | outage | fatal | interrupted | in_flight | dry_run
    exit_code: int
    stats: RunStats
    duration_s: float
    ledger: Path
    output_dir: Path
    budget_left_usd: float | None
    spent_total_usd: float
    messages: list[str]
    simulated: bool = False
    estimate: PlanEstimate | None = None  # a dry run's estimate of the pending items
    manifest_path: Path | None = None
    outlook: BudgetOutlook | None = None  # a dry run's: where the budget stops the items
    key_env: str = ""  # a dry run's: the variable that holds the key, and whether it is set
    key_set: bool | None = None  # None: no key needed (--simulate, endpoint.auth: none)
    base_url: str = ""  # where requests went (the simulator's loopback URL with --simulate)

    @property
    def requests(self) -> int:
        return self.stats.requests

    @property
    def cost_usd(self) -> float:
        return self.stats.cost_usd

    @property
    def tokens(self) -> dict[str, int]:
        return dict(self.stats.tokens)

    def counts(self) -> dict[str, int]:
        s = self.stats
        return {
            "total": s.total,
            "done": s.done,
            "done_before": s.done_before,
            "succeeded": s.succeeded,
            "failed": s.failed,
            "failed_before": s.failed_before,
            "pending": s.pending,
            "in_batch": s.in_batch,
        }

    def to_json(self) -> dict:
        if self.estimate is not None:  # a dry run: the estimate with the items' states
            data = self.estimate.to_json(items=True)
            data.update(
                done=self.stats.done_before,
                failed=self.stats.failed_before,
                failed_ids=list(self.stats.failed_before_ids),
                dry_run=True,
                budget=None if self.outlook is None else self.outlook.to_json(),
                key_env=self.key_env,
                key_set=self.key_set,
                messages=self.messages,
            )
            return data
        return {
            "run": self.run_id,
            "manifest": self.manifest,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "items": self.counts(),
            "requests": self.requests,
            "retries": dict(self.stats.retries),
            "responses": dict(self.stats.by_status),
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
            "spent_total_usd": round(self.spent_total_usd, 6),
            "budget_left_usd": None
            if self.budget_left_usd is None
            else round(self.budget_left_usd, 6),
            "duration_s": round(self.duration_s, 3),
            "ledger": str(self.ledger),
            "output_dir": str(self.output_dir),
            "messages": self.messages,
            "simulated": self.simulated,
        }


SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


def verdict(reasons: list[str], stats: RunStats, signal_name: str | None) -> tuple[str, int]:
    """A finished run's reason and exit code (CONTRACT section 2), from why dispatch stopped
    and what is left: fatal beats a signal, which beats an outage (exit 75, EX_TEMPFAIL: try
    again later), which beats a budget stop with items pending."""
    if "fatal" in reasons:
        return "fatal", 4
    if "invalid" in reasons:  # items classified while others were sent failed the checks
        return "invalid", 2
    if "interrupted" in reasons:
        return "interrupted", SIGNAL_EXIT.get(signal_name or "", 130)
    if "outage" in reasons:
        return "outage", 75
    if "budget" in reasons and stats.pending > 0:
        return "budget", 3
    if stats.in_batch > 0:  # batch mode: answers still on their way; a later run collects
        return "in_flight", 5
    if stats.failed + stats.failed_before > 0 or stats.pending > 0:
        return "completed", 1
    return "completed", 0
