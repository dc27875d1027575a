"""BatchState: what a ledger says about batch mode (CONTRACT section 8), folded line by line.

The uploads already made (sha256 -> file id, so no input goes up twice), the input JSONL files
uploaded but named by no `batch_submitted` yet (a batch may have been created from one before
a kill: the next run looks for it at the provider), the batches still open with their items
and which results of theirs are already recorded, and each item's batch attempts so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# attempt_failed causes of a request its batch never ran: resubmitted, not counted as attempts
# (a batch that failed as a whole, say its input was refused, counts: it would fail again)
NOT_ATTEMPTS = frozenset({"batch_expired", "batch_cancelled"})


@dataclass(slots=True)
class OpenBatch:
    id: str
    input_file: str | None
    endpoint: str
    items: dict[str, tuple[str, str]]  # item id -> (key, custom_id)
    inputs: dict[str, list] = field(default_factory=dict)  # item id -> its `inputs` entries
    worst: dict[str, float] = field(default_factory=dict)  # item id -> worst USD at batch price
    cache_keys: dict[str, str] = field(default_factory=dict)  # item id -> its answer cache key
    worst_usd: float = 0.0  # reserved against budget.total_usd until collected
    run: str | None = None
    ts: str = ""
    recorded: set[str] = field(default_factory=set)  # items whose result line is written


class BatchState:
    def __init__(self) -> None:
        self.uploads: dict[str, str] = {}  # sha256 of the bytes sent -> file id
        self.inputs: dict[str, dict] = {}  # JSONL file id -> its file_uploaded line, unused yet
        self.open: dict[str, OpenBatch] = {}
        self.item_batch: dict[str, str] = {}  # item id -> its open batch
        self.attempts: dict[str, tuple[str | None, int]] = {}  # item -> (key, batch attempts)
        self.collected = 0  # batches collected so far

    def add(self, event: str, record: dict) -> None:
        if event == "file_uploaded":
            file_id = record.get("file_id")
            if not isinstance(file_id, str):
                return
            if record.get("purpose") == "batch":
                self.inputs[file_id] = record
            elif isinstance(record.get("sha256"), str):
                self.uploads[record["sha256"]] = file_id
        elif event == "batch_submitted":
            self._submitted(record)
        elif event == "batch_collected":
            batch = self.open.pop(str(record.get("batch")), None)
            self.collected += 1
            if batch is not None:
                for item in batch.items:
                    if self.item_batch.get(item) == batch.id:
                        del self.item_batch[item]
        elif (batch_id := record.get("batch")) is not None:
            self._result(event, str(batch_id), record)

    def _submitted(self, record: dict) -> None:
        batch_id = str(record.get("batch"))
        entries = [e for e in record.get("items") or () if isinstance(e, dict) and "item" in e]
        items = {str(e["item"]): (str(e.get("key")), str(e.get("custom_id"))) for e in entries}
        inputs = {str(e["item"]): list(e.get("inputs") or ()) for e in entries}
        worst = {str(e["item"]): float(e.get("worst_usd") or 0.0) for e in entries}
        cache_keys = {str(e["item"]): str(e["cache_key"]) for e in entries if e.get("cache_key")}
        self.inputs.pop(str(record.get("input_file")), None)
        self.open[batch_id] = OpenBatch(
            id=batch_id,
            input_file=record.get("input_file"),
            endpoint=str(record.get("endpoint") or "edits"),
            items=items,
            inputs=inputs,
            worst=worst,
            cache_keys=cache_keys,
            worst_usd=float(record.get("worst_usd") or 0.0),
            run=record.get("run"),
            ts=str(record.get("ts") or ""),
        )
        for item in items:
            self.item_batch[item] = batch_id

    def _result(self, event: str, batch_id: str, record: dict) -> None:
        item = str(record.get("item"))
        batch = self.open.get(batch_id)
        if batch is not None:
            batch.recorded.add(item)
        if event == "attempt_failed" and record.get("cause") not in NOT_ATTEMPTS:
            key = record.get("key")
            before_key, count = self.attempts.get(item, (None, 0))
            self.attempts[item] = (key, count + 1 if before_key == key else 1)

    def attempts_of(self, item: str, key: str) -> int:
        """Batch attempts of the item's current key that failed so far."""
        recorded_key, count = self.attempts.get(item, (None, 0))
        return count if recorded_key == key else 0

    def reserved_usd(self) -> float:
        """Worst-case USD of the open batches' items whose result is not recorded yet."""
        total = 0.0
        for batch in self.open.values():
            share = batch.worst_usd / len(batch.items) if batch.items else 0.0
            for item in batch.items.keys() - batch.recorded:
                total += batch.worst.get(item, share)
        return total

    def merge(self, other: BatchState) -> None:
        self.uploads.update(other.uploads)
        self.inputs.update(other.inputs)
        self.open.update(other.open)
        self.item_batch.update(other.item_batch)
        self.attempts.update(other.attempts)
        self.collected += other.collected
