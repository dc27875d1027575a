"""What the ledger says: items by state, retries by cause, tokens, USD per run and in total,
latency, throughput and the most common errors. `summarize` is pure over ledger records;
`report.text.render_text` draws it for a terminal and `Report.to_json` for machines.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.core.errors import UsageError
from pipeline.core.plan import EDITS, Item, Plan
from pipeline.cost.pricing import TokenCounts
from pipeline.cost.usage import counts_of
from pipeline.ledger.scan import spend_of
from pipeline.report.batches import BatchRow, batch_rows

__all__ = ["Report", "load_ledgers", "load_sources", "resolve_inputs", "summarize"]

FINAL_EVENTS = ("succeeded", "failed")
BILLED_EVENTS = ("succeeded", "attempt_failed", "failed")  # lines that may carry cost_usd
MANIFEST_SUFFIXES = (".yaml", ".yml")


def resolve_inputs(args: str | Path | Sequence[str | Path]) -> tuple[Plan | None, list[Path]]:
    """MANIFEST_OR_LEDGER arguments -> (the plan if a manifest was given, the ledgers to read).
    A manifest brings its ledger and the shard ledgers beside it; any other path is a ledger."""
    plan: Plan | None = None
    ledgers: list[Path] = []
    for arg in [args] if isinstance(args, str | Path) else args:
        path = Path(arg)
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            if plan is not None:
                raise UsageError(f"{path}: one manifest per report; give the others' ledgers")
            from pipeline.ledger.shards import job_ledgers
            from pipeline.manifest.load import load_plan

            plan = load_plan(path, check_files=False)
            ledgers += job_ledgers(plan.ledger)
        elif path.is_file():
            ledgers.append(path)
        else:
            raise UsageError(
                f"{path}: no such ledger; give a ledger (.jsonl) or a manifest (.yaml)"
            )
    return plan, list(dict.fromkeys(ledgers))


def load_ledgers(paths: Iterable[Path], warnings: list[str] | None = None) -> list[dict]:
    """Every record of several ledgers (shards of one job) in time order. A torn last line is
    skipped (a report never writes) and said in `warnings`."""
    from pipeline.ledger.reader import iter_ledger

    records: list[dict] = []
    for path in paths:
        records.extend(iter_ledger(path, warnings))
    # Each ledger is in order already; a stable sort by time interleaves shards.
    records.sort(key=lambda r: str(r.get("ts", "")))
    return records


def load_sources(
    args: str | Path | Sequence[str | Path], warnings: list[str] | None = None
) -> tuple[Plan | None, list[dict]]:
    """`report`'s arguments -> (the plan or None, every ledger record in time order)."""
    plan, ledgers = resolve_inputs(args)
    return plan, load_ledgers(ledgers, warnings)


def latest_by_item(records: Iterable[dict]) -> dict[str, dict]:
    """The last `succeeded` or `failed` record of every item id."""
    latest: dict[str, dict] = {}
    for rec in records:
        if rec.get("event") in FINAL_EVENTS and "item" in rec:
            latest[rec["item"]] = rec
    return latest


@dataclass(slots=True)
class RunSummary:
    run: str
    started: str
    finished: str | None
    reason: str | None
    exit_code: int | None
    simulated: bool
    succeeded: int
    failed: int
    cost_usd: float
    duration_s: float
    per_minute: float | None


@dataclass(slots=True)
class ErrorGroup:
    cls: str
    http_status: int | None
    type: str | None
    code: str | None
    message: str
    count: int
    examples: list[str]  # the first few ids
    more: int = 0  # ids of the group not in examples


@dataclass(slots=True)
class Report:
    items: dict[str, int]
    failed_by_class: dict[str, int]
    retries_by_cause: dict[str, int]
    retries_by_status: dict[str, int]
    tokens: TokenCounts
    cost_usd: float  # every billed answer: succeeded, attempt_failed and failed lines
    cost_estimated: int
    cost_unpriced: int
    latency_s: dict[str, float | None]
    per_minute: float | None
    runs: list[RunSummary]
    errors: list[ErrorGroup]
    warnings: list[str] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)  # every failed item, manifest order
    # Answers billed but not kept (unusable 200s, outputs that could not be written): part of
    # cost_usd, shown apart so nobody wonders where the money went.
    cost_not_kept_usd: float = 0.0
    usage_suspect: int = 0  # lines whose usage is far above the item's worst case
    short_answers: list[str] = field(default_factory=list)  # done with fewer images than n
    batches: list[BatchRow] = field(default_factory=list)  # batch mode
    # done items by where they went: "edits · openai", "generations · azure"
    done_by_route: dict[str, int] = field(default_factory=dict)
    # Done items' drift (change outside the mask, 0..1): how many have one, median, max, and
    # the worst few as {item, drift}.
    drift: dict = field(default_factory=dict)
    cached: int = 0  # done items whose outputs came from the cross-run cache

    def to_json(self) -> dict:
        data = asdict(self)
        data["tokens"] = asdict(self.tokens)
        data["cost_usd"] = round(self.cost_usd, 6)
        for run in data["runs"]:
            run["cost_usd"] = round(run["cost_usd"], 6)
        for group in data["errors"]:
            group["class"] = group.pop("cls")
        for row, batch in zip(data["batches"], self.batches, strict=True):
            row["cost_usd"] = round(batch.cost_usd, 6)
            row["interactive_usd"] = round(batch.interactive_usd, 6)
            row["saving_usd"] = round(batch.saving_usd, 6)
        return data


def summarize(
    records: Sequence[dict], plan: Plan | None = None, warnings: Sequence[str] = ()
) -> Report:
    """Aggregate ledger records (of one or several ledgers) into a Report. With the plan,
    items it lists that have no final record count as pending."""
    latest = latest_by_item(records)
    attempted = {r["item"] for r in records if r.get("event") == "attempt_failed" and "item" in r}
    ids = [item.id for item in plan.items] if plan else list(dict.fromkeys([*latest, *attempted]))
    states = Counter(item_state(latest.get(i)) for i in ids)
    items = {"total": len(ids), **{s: states[s] for s in ("done", "failed", "pending")}}
    if plan:
        # Items the ledger knows but the manifest no longer lists (edited since).
        items["not_in_manifest"] = len(set(latest) - set(ids))
    failed = [latest[i] for i in ids if item_state(latest.get(i)) == "failed"]

    succeeded = [r for r in records if r.get("event") == "succeeded"]
    retried = [r for r in records if r.get("event") == "attempt_failed"]
    billed = [r for r in records if r.get("event") in BILLED_EVENTS and "cost_usd" in r]
    kinds: Counter[str] = Counter()
    for rec in billed:
        counts = counts_of(rec.get("usage"))
        if counts is not None:
            kinds.update(asdict(counts))
    not_kept = [r for r in billed if r.get("event") != "succeeded"]
    short = {r["item"]: r for r in succeeded if "returned" in r}
    latencies = sorted(float(r["latency_s"]) for r in succeeded if r.get("latency_s") is not None)
    runs = _runs(records)
    wall_s = _busy_seconds(runs)
    done = [latest[i] for i in ids if item_state(latest.get(i)) == "done"]
    return Report(
        items=items,
        failed_by_class=dict(Counter(str(_error(r).get("class")) for r in failed).most_common()),
        retries_by_cause=dict(Counter(str(r.get("cause")) for r in retried).most_common()),
        retries_by_status=dict(Counter(_status_label(r) for r in retried).most_common()),
        tokens=TokenCounts(**kinds),
        cost_usd=math.fsum(map(spend_of, billed)),
        cost_estimated=sum(1 for r in billed if r.get("cost_estimated")),
        cost_unpriced=sum(1 for r in billed if r.get("cost_usd") is None),
        latency_s={
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "max": latencies[-1] if latencies else None,
        },
        per_minute=len(succeeded) / (wall_s / 60) if wall_s > 0 else None,
        runs=runs,
        errors=_error_groups(failed),
        warnings=list(warnings),
        failed_ids=[r["item"] for r in failed],
        cost_not_kept_usd=math.fsum(map(spend_of, not_kept)),
        usage_suspect=sum(1 for r in billed if r.get("usage_suspect")),
        short_answers=[i for i, r in short.items() if latest.get(i) is r],
        batches=batch_rows(records),
        done_by_route=dict(
            Counter(
                item_route(latest.get(i), None, None)
                for i in ids
                if item_state(latest.get(i)) == "done"
            ).most_common()
        ),
        drift=_drift(done),
        cached=sum(1 for r in done if r.get("cached")),
    )


def item_route(final: dict | None, item: Item | None, plan: Plan | None) -> str:
    """Where an item went, "edits · openai": from its `succeeded` line (a line from before
    endpoints were recorded was an edit to an OpenAI-compatible server), else from the plan."""
    if final is not None and final.get("event") == "succeeded":
        return f"{final.get('endpoint', EDITS)} · {final.get('provider', 'openai')}"
    if item is not None and plan is not None:
        return f"{item.endpoint} · {plan.endpoint.provider}"
    return ""


def _drift(done: list[dict], worst: int = 5) -> dict:
    """Median and max of the done items' drift, and the worst few (for the text report)."""
    values = sorted(
        ((float(r["drift"]), r["item"]) for r in done if isinstance(r.get("drift"), int | float)),
        reverse=True,
    )
    if not values:
        return {}
    ordered = sorted(v for v, _ in values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {
        "items": len(values),
        "median": round(median, 6),
        "max": values[0][0],
        "worst": [{"item": item, "drift": value} for value, item in values[:worst]],
    }


def item_state(final: dict | None) -> str:
    """done, failed or pending, by an item's last final record (None: it has none)."""
    if final is None:
        return "pending"
    return "done" if final["event"] == "succeeded" else "failed"


def _error(rec: dict) -> dict:
    return rec.get("error") or {}


def _status_label(rec: dict) -> str:
    return str(rec.get("http_status") or rec.get("transport") or "unknown")


def _percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return None
    return values[max(0, math.ceil(pct / 100 * len(values)) - 1)]


def _runs(records: Iterable[dict]) -> list[RunSummary]:
    by_run: dict[str, list[dict]] = {}
    for rec in records:
        by_run.setdefault(str(rec.get("run")), []).append(rec)
    runs = []
    for run_id, recs in by_run.items():
        start = next((r for r in recs if r.get("event") == "run_started"), recs[0])
        end = next((r for r in reversed(recs) if r.get("event") == "run_finished"), None)
        duration = (_when(recs[-1]) - _when(start)).total_seconds()
        done = [r for r in recs if r.get("event") == "succeeded"]
        runs.append(
            RunSummary(
                run=run_id,
                started=str(start.get("ts")),
                finished=None if end is None else str(end.get("ts")),
                reason=None if end is None else end.get("reason"),
                exit_code=None if end is None else end.get("exit_code"),
                simulated=any(r.get("simulated") for r in recs),
                succeeded=len(done),
                failed=sum(1 for r in recs if r.get("event") == "failed"),
                cost_usd=math.fsum(spend_of(r) for r in recs if r.get("event") in BILLED_EVENTS),
                duration_s=duration,
                per_minute=len(done) / (duration / 60) if duration > 0 else None,
            )
        )
    return sorted(runs, key=lambda r: r.started)


def _busy_seconds(runs: list[RunSummary]) -> float:
    """Wall time during which at least one run was going: shards running side by side count
    once, so throughput is the job's, not the sum of its shards' clocks."""
    busy, reach = 0.0, None
    for run in runs:  # sorted by start
        start = _when({"ts": run.started})
        end = start + timedelta(seconds=run.duration_s)
        if reach is None or start >= reach:
            busy += run.duration_s
            reach = end
        elif end > reach:
            busy += (end - reach).total_seconds()
            reach = end
    return busy


def _when(rec: dict) -> datetime:
    return datetime.fromisoformat(str(rec["ts"]))


def _error_groups(failed: Iterable[dict], top: int = 10) -> list[ErrorGroup]:
    groups: dict[tuple, ErrorGroup] = {}
    for rec in failed:
        err = _error(rec)
        key = (err.get("class"), err.get("http_status"), err.get("type"), err.get("code"))
        group = groups.get(key)
        if group is None:
            group = groups[key] = ErrorGroup(
                str(key[0]), key[1], key[2], key[3], str(err.get("message") or ""), 0, []
            )
        group.count += 1
        if len(group.examples) < 5:
            group.examples.append(rec["item"])
        else:
            group.more += 1
    return sorted(groups.values(), key=lambda g: -g.count)[:top]
