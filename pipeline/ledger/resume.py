"""Which items of a plan are done, failed earlier, or still to run, according to the ledger.

An item is done when its current key has a `succeeded` line and every recorded output is on
disk with its recorded sha256. Input digests come from the ledger's stat cache, so deciding
this for a large finished job does not re-read its images.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.fingerprint import DigestCache, item_key
from pipeline.core.plan import Item, Location, Remote
from pipeline.outputs.store import OutputStore, as_store


@dataclass(slots=True)
class Classified:
    done: list[Item] = field(default_factory=list)
    failed: list[Item] = field(default_factory=list)
    pending: list[Item] = field(default_factory=list)
    in_batch: list[Item] = field(default_factory=list)  # in an open batch at the provider
    # keys computed while classifying (items with ledger history), so the runner needn't rehash
    keys: dict[str, str] = field(default_factory=dict)


def current_key(
    item: Item, cache: DigestCache, recorded: list[dict] | None = None, memo: dict | None = None
) -> str:
    """The item's key now. `recorded` are the `inputs` of its last success: an input whose
    size and mtime are unchanged since keeps its recorded digest, so no file is re-read.
    `memo`: see fingerprint.item_key."""
    known = _by_path(cache.base, recorded) if recorded else None
    images = [_sha256(path, known, cache) for path in item.images]
    mask = _sha256(item.mask, known, cache) if item.mask is not None else None
    return item_key(item, images, mask, memo=memo)


def _by_path(base: str, recorded: list[dict]) -> dict[str, dict]:
    """Recorded inputs by absolute path (files) or by URL as shown (remote inputs)."""
    known = {}
    for entry in recorded:
        path = entry.get("path")
        if isinstance(path, str):
            known[_normal(_join(base, path))] = entry
        elif isinstance(entry.get("url"), str):
            known[entry["url"]] = entry
    return known


def _normal(path: str) -> str:
    """os.path.normpath(path), skipped for a path already in normal form (the usual case: the
    plan's paths are, and so are the ones it recorded): no //, no . or .. part, no / at the
    end. Twice per item of a 100,000-item resume."""
    if "/." in path or "//" in path or path.endswith("/") or path.startswith("."):
        return os.path.normpath(path)
    return path


def _join(base: str, path: str) -> str:
    """os.path.join(base, path) for two strings, without its generality (once per item)."""
    if not base or path.startswith("/"):
        return path
    return base + path if base.endswith("/") else f"{base}/{path}"


def _sha256(path: Location, known: dict[str, dict] | None, cache: DigestCache) -> str:
    """The recorded digest while the file's size and mtime match the record, else the
    cache's (which reads the file only if it has not hashed it at this size and mtime). A
    remote input's is the one the fetcher found before classifying."""
    if isinstance(path, Remote):
        entry = (known or {}).get(str(path))
        return cache.sha256(path, entry.get("sha256") if entry else None)
    if known:
        name = os.fspath(path)
        entry = known.get(_normal(name))
        if entry is not None:
            try:
                st = os.stat(name)
            except OSError:
                pass
            else:
                if st.st_size == entry.get("bytes") and st.st_mtime_ns == entry.get("mtime_ns"):
                    return entry["sha256"]
    return cache.digest(path).sha256


def triage(items: Iterable[Item], state) -> tuple[list[Item], list[Item], list[Item]]:
    """(fresh, known, in_batch): items the ledger has never seen (pending without a key:
    `classify` would put them there too), items with ledger history (`classify` decides
    them), and items in a batch still open at the provider. One dict lookup or two an item,
    so a run can send the fresh ones while the known ones are being classified."""
    fresh: list[Item] = []
    known: list[Item] = []
    in_batch_items: list[Item] = []
    in_batch = state.batches.item_batch
    succeeded, failed = state.succeeded, state.failed
    for item in items:
        if item.id in in_batch:
            in_batch_items.append(item)
        elif succeeded(item.id) is None and failed(item.id) is None:
            fresh.append(item)
        else:
            known.append(item)
    return fresh, known, in_batch_items


def classify(
    items: Iterable[Item],
    state,  # pipeline.ledger.scan.ResumeState (or a merge of several)
    cache: DigestCache,
    out_dir: Path | OutputStore,
    *,
    retry_failed: bool = False,
) -> Classified:
    """Sort items into done / failed / pending. Blocking (stat, maybe hashing): run in a thread.

    An item with no ledger history is pending without hashing anything. A `failed` line of
    class `fatal` never makes an item failed: it was the run that stopped, not the item. An
    item in a batch still open at the provider is neither: its answer is on its way, and
    sending it again would pay twice.
    """
    result = Classified()
    memo: dict = {}  # parameter JSON shared by items (see item_key)
    in_batch = state.batches.item_batch
    intact = as_store(out_dir).intact
    for item in items:
        if item.id in in_batch:
            result.in_batch.append(item)
            continue
        succeeded = state.succeeded(item.id)
        failed = state.failed(item.id)
        if succeeded is None and failed is None:
            result.pending.append(item)
            continue
        try:
            key = current_key(item, cache, (succeeded or {}).get("inputs"), memo)
        except OSError:
            result.pending.append(item)  # the runner reports the unreadable input
            continue
        result.keys[item.id] = key
        if (
            succeeded is not None
            and succeeded.get("key") == key
            and _all_intact(intact, succeeded.get("outputs", []))
        ):
            result.done.append(item)
        elif (
            not retry_failed
            and failed is not None
            and failed.get("key") == key
            and (failed.get("error") or {}).get("class") != "fatal"
        ):
            result.failed.append(item)
        else:
            result.pending.append(item)
    return result


def _all_intact(intact, outputs: list[dict]) -> bool:
    # A loop, not all() over a generator: once per item of a 100,000-item resume.
    for recorded in outputs:
        if not intact(recorded):
            return False
    return True
