"""What a finished run tells a person: a headline that says what happened, the top causes of
its failed attempts (with an example message each), the failed ids worth showing, and the
next command to type. Pure functions over a RunSummary, shared by the terminal summary and
the JSON one, each tested by a table.
"""

from __future__ import annotations

import shlex

from pipeline.engine.summary import Cause, RunStats, RunSummary

# Causes that mean no answer came back from the API at all: the address or the network.
TRANSPORT_CAUSES = frozenset({"connection", "timeout"})
# Causes of items that a rerun with the same inputs will fail again.
INPUT_CAUSES = frozenset({"rejected", "input", "output"})
SHOWN_IDS = 5


def headline(summary: RunSummary) -> str:
    """One line: what the run's exit status means for this run's counts."""
    s = summary.stats
    code = summary.exit_code
    if summary.reason == "dry_run":
        return f"dry run: {s.pending} item(s) would be sent; nothing was sent"
    if code == 0:
        return "every item is done"
    if code == 3:
        return f"the budget stopped the run; {s.pending} item(s) pending, a later run resumes them"
    if code == 4:
        return "aborted on an error no retry can fix"
    if code == 5:
        return f"{s.in_batch} item(s) in batches at the provider; a later run collects them"
    if code == 75:
        return (
            f"the provider was failing (an outage); {s.pending} item(s) pending, a later run "
            "resumes them"
        )
    if code in (130, 143):
        name = "SIGINT" if code == 130 else "SIGTERM"
        return f"interrupted ({name}); {s.pending} item(s) pending, run again to resume"
    if code == 1:
        parts = []
        if s.failed:
            parts.append(f"{s.failed} item(s) failed")
        if s.failed_before:
            parts.append(f"{s.failed_before} failed in an earlier run")
        if s.pending:
            parts.append(f"{s.pending} still pending")
        return "the run ended: " + ", ".join(parts or ["not every item is done"])
    return f"the run ended ({summary.reason})"


def top_causes(stats: RunStats, limit: int = 3) -> list[Cause]:
    """The causes that ended the most attempts, most first (ties by name, for stable output)."""
    return sorted(stats.causes.values(), key=lambda c: (-c.count, c.name))[:limit]


def shown_ids(ids: list[str], limit: int = SHOWN_IDS) -> str:
    """The first few ids and how many more: `a, b, c and 7 more`."""
    text = ", ".join(ids[:limit])
    return text + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def next_steps(summary: RunSummary, manifest: str) -> list[str]:
    """What to do next, most useful first; empty when every item is done."""
    s = summary.stats
    run = f"editbatch run {shlex.quote(manifest)}"
    code = summary.exit_code
    if code == 0 or summary.reason == "dry_run":
        return []
    if code == 4:
        return [f"fix what the abort message above says, then `{run}` resumes"]
    if code == 3:
        return [f"raise budget.run_usd (or `{run} --max-usd X`) or budget.total_usd to resume"]
    if code == 5:
        return [f"`{run} --batch` collects the batches once they have ended (--wait polls)"]
    steps: list[str] = []
    causes = {c.name for c in top_causes(s, limit=len(s.causes))}
    if (
        s.succeeded == 0
        and causes
        and causes <= TRANSPORT_CAUSES
        and not summary.simulated
        and summary.base_url
    ):
        steps.append(
            f"no answer came back from {summary.base_url}: check endpoint.base_url (or "
            "--base-url) and the network or proxy"
        )
    if code == 75:
        when = "once the provider answers again (the message above says when)"
        return [*steps, f"`{run}` resumes the {s.pending} pending item(s) {when}"]
    if s.pending:
        steps.append(f"`{run}` resumes the {s.pending} pending item(s)")
    failed = s.failed + s.failed_before
    if failed:
        first = (
            "fix the prompts, parameters or inputs of the failed items, then "
            if causes & INPUT_CAUSES
            else ""
        )
        steps.append(f"{first}`{run} --retry-failed` tries the {failed} failed item(s) again")
    if code in (130, 143) and not steps:
        steps.append(f"`{run}` resumes")
    return steps


def diagnosis(summary: RunSummary, manifest: str) -> dict:
    """The JSON summary's part for people on call: the headline, the top causes, every failed
    id (this run's and earlier ones') and the next commands."""
    return {
        "headline": headline(summary),
        "causes": [cause.to_json() for cause in top_causes(summary.stats, limit=10)],
        "failed_ids": list(summary.stats.failed_ids),
        "failed_before_ids": list(summary.stats.failed_before_ids),
        "next": next_steps(summary, manifest),
    }
