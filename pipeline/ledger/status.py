"""The job's state as its ledgers record it, for the runner, `estimate` and `run --dry-run`.

A job's ledgers are its main ledger and every shard ledger beside it: an item done in any of
them is done, whatever number of shards ran it.
"""

from __future__ import annotations

from pipeline.core.fingerprint import DigestCache
from pipeline.core.plan import Item, Plan
from pipeline.ledger.reader import LedgerScan, read_ledger
from pipeline.ledger.resume import Classified, classify
from pipeline.ledger.scan import ResumeState
from pipeline.ledger.shards import job_ledgers


def read_job_state(plan: Plan, own: LedgerScan | None = None) -> tuple[ResumeState, list[str]]:
    """Merge every ledger of the job. `own` is the scan of the ledger this process holds the
    lock of (already repaired by the writer); the others are read as they are, never repaired:
    a line another process is still writing would look torn."""
    scans = [own] if own is not None else []
    for path in job_ledgers(plan.ledger):
        if own is None or path != own.path:
            scans.append(read_ledger(path))
    warnings = [w for scan in scans for w in scan.warnings]
    if len(scans) == 1:  # the usual job: one ledger, nothing to merge (a copy of 10^5 items)
        return scans[0].state, warnings
    return ResumeState.merge(scan.state for scan in scans), warnings


def classify_plan(
    plan: Plan, items: list[Item] | None = None, *, retry_failed: bool = False
) -> Classified:
    state, _ = read_job_state(plan)
    cache = DigestCache(base=plan.manifest_path.parent)
    return classify(
        plan.items if items is None else items,
        state,
        cache,
        plan.output.dir,
        retry_failed=retry_failed,
    )


def pending_items(plan: Plan, *, retry_failed: bool = False) -> list[Item]:
    return classify_plan(plan, retry_failed=retry_failed).pending
