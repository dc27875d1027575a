"""The job's state as its ledgers record it, for the runner, `estimate` and `run --dry-run`.

A job's ledgers are its main ledger and every shard ledger beside it: an item done in any of
them is done, whatever number of shards ran it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.fingerprint import DigestCache
from pipeline.ledger import ResumeState, read_ledger
from pipeline.plan import Item, Plan
from pipeline.resume import Classified, classify
from pipeline.shards import job_ledgers


def read_job_state(
    plan: Plan, own_ledger: Path | None = None, *, repair: bool = False
) -> tuple[ResumeState, list[str]]:
    """Merge every ledger of the job. Only `own_ledger` (the one this process holds the lock
    of) is repaired; the others are read as they are."""
    records: list[dict] = []
    warnings: list[str] = []
    paths = job_ledgers(plan.ledger)
    if own_ledger is not None and own_ledger not in paths:
        paths.append(own_ledger)
    for path in paths:
        scan = read_ledger(path, repair=repair and path == own_ledger)
        warnings.extend(scan.warnings)
        records.extend(scan.records)
    return ResumeState.from_records(records), warnings


def classify_plan(
    plan: Plan, items: list[Item] | None = None, *, retry_failed: bool = False
) -> Classified:
    state, _ = read_job_state(plan)
    cache = DigestCache(state.recorded_inputs(plan.manifest_path.parent))
    return classify(
        plan.items if items is None else items,
        state,
        cache,
        plan.output.dir,
        retry_failed=retry_failed,
    )


def pending_items(plan: Plan, *, retry_failed: bool = False) -> list[Item]:
    return classify_plan(plan, retry_failed=retry_failed).pending
