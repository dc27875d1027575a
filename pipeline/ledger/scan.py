"""ResumeState: what a ledger's lines say about each item, as resume needs it.

A pure fold over ledger records (no I/O): the last success and the last failure of each item,
and the spend recorded so far. `pipeline.ledger.reader.read_ledger` builds one while it reads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.ledger.batches import BatchState


class ResumeState:
    """What the ledger says about each item, as resume needs it.

    `succeeded(item)` is the item's last success; `failed(item)` its last failure not followed
    by a success. The caller compares their `key` with the item's current key.
    """

    def __init__(self) -> None:
        self._succeeded: dict[str, dict] = {}
        self._failed: dict[str, dict] = {}
        self._spent = 0.0
        self._last_ts = ""
        self.last_run: str | None = None  # the run id of the latest line
        self.batches = BatchState()  # batch mode: uploads, open batches, batch attempts

    @classmethod
    def from_records(cls, records: Iterable[dict]) -> ResumeState:
        state = cls()
        for record in records:
            state.add(record)
        return state

    @classmethod
    def merge(cls, states: Iterable[ResumeState]) -> ResumeState:
        """One state over several ledgers (shards): the later line wins for an item."""
        merged = cls()
        for state in states:
            merged._spent += state._spent
            merged.batches.merge(state.batches)
            _keep_later(merged._succeeded, state._succeeded)
            _keep_later(merged._failed, state._failed)
            if state._last_ts >= merged._last_ts:
                merged._last_ts, merged.last_run = state._last_ts, state.last_run
        for item, rec in list(merged._failed.items()):
            if item in merged._succeeded and _ts(merged._succeeded[item]) > _ts(rec):
                del merged._failed[item]
        return merged

    def add(self, record: dict) -> None:
        get = record.get  # once per line of a 100,000-line ledger: kept lean
        ts = get("ts")
        self._last_ts = ts or self._last_ts
        run = get("run")
        if run is not None or "run" in record:
            self.last_run = run
        event = get("event")
        if event in _BATCH_EVENTS or "batch" in record:
            self.batches.add(event, record)
        if event == "succeeded":
            item = record["item"]
            # Only what resume needs, so a 100k-item ledger is not held in memory whole.
            self._succeeded[item] = {
                "item": item,
                "key": get("key"),
                "ts": ts,
                "run": run,
                "outputs": get("outputs"),
                "inputs": get("inputs"),
                "cost_usd": get("cost_usd"),
            }
            if self._failed:
                self._failed.pop(item, None)
            self._spent += spend_of(record)
        elif event == "attempt_failed":
            self._spent += spend_of(record)
        elif event == "failed":
            self._spent += spend_of(record)
            self._failed[record["item"]] = {
                "item": record["item"],
                "key": get("key"),
                "ts": ts,
                "run": run,
                "error": get("error"),
            }

    def succeeded(self, item_id: str) -> dict | None:
        return self._succeeded.get(item_id)

    def failed(self, item_id: str) -> dict | None:
        return self._failed.get(item_id)

    @property
    def spent_usd(self) -> float:
        """USD of every billed answer (`cost_usd` of succeeded, attempt_failed and failed
        lines): what budget.total_usd counts against."""
        return self._spent

    def recorded_inputs(self, base: Path | None = None) -> Iterator[dict]:
        """The `inputs` entries of every kept success, to seed fingerprint.DigestCache; a
        relative path (as recorded beside the manifest) is joined to base."""
        # os.path, not pathlib: this runs once per input of a 100,000-item ledger on resume.
        root = os.fspath(base) if base is not None else None
        for rec in self._succeeded.values():
            for entry in rec.get("inputs") or ():
                path = entry.get("path")
                if root is not None and isinstance(path, str) and not os.path.isabs(path):
                    entry = {**entry, "path": os.path.join(root, path)}
                yield entry


def spend_of(record: dict) -> float:
    """A line's `cost_usd` as spend: a number, or 0 (none, or a hand-edited oddity)."""
    cost = record.get("cost_usd")
    if isinstance(cost, int | float) and not isinstance(cost, bool) and math.isfinite(cost):
        return float(cost)
    return 0.0


_BATCH_EVENTS = frozenset({"file_uploaded", "batch_submitted", "batch_collected"})


def _ts(rec: dict) -> str:
    return rec.get("ts") or ""


def _keep_later(into: dict[str, dict], records: dict[str, dict]) -> None:
    for item, rec in records.items():
        if item not in into or _ts(into[item]) <= _ts(rec):
            into[item] = rec
