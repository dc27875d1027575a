"""The content cache of remote inputs, beside the ledger: each fetched object once, named by
its sha256, and per URL what the store said of it when it was fetched (its validators).

Only a cache: deleting it costs downloads, never correctness (the sha256 of what is sent is
what goes into the item's key). Blocking; the fetcher calls it in a thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.plan import Remote
from pipeline.inputs.validators import Validators
from pipeline.media.images import sniff_format

_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


@dataclass(frozen=True, slots=True)
class Fetched:
    """A remote input's local copy: where it is, its sha256, what the store said of it."""

    path: Path
    sha256: str
    bytes: int
    validators: Validators

    def record(self, ref: Remote, role: str) -> dict:
        """The input as a ledger `inputs` entry (the URL as it may be shown)."""
        return {
            "url": str(ref),
            "sha256": self.sha256,
            **self.validators.record(),
            "bytes": self.bytes,
            "role": role,
        }


class ContentCache:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def lookup(self, ref: Remote) -> Fetched | None:
        try:
            meta = json.loads((self.folder / "urls" / f"{_name(ref)}.json").read_text("utf-8"))
            path = self.folder / "blobs" / meta["blob"]
            size = path.stat().st_size
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if size != meta.get("bytes"):
            return None
        return Fetched(path, meta["sha256"], size, Validators.of(meta.get("validators") or {}))

    def store(self, ref: Remote, data: bytes, validators: Validators) -> Fetched:
        sha = hashlib.sha256(data).hexdigest()
        blob = sha + _EXTENSIONS.get(sniff_format(data[:16]) or "", ref.suffix.lower()[:6])
        path = self.folder / "blobs" / blob
        if not (path.exists() and path.stat().st_size == len(data)):
            _write_whole(path, data)
        meta = {
            "url": str(ref),
            "blob": blob,
            "sha256": sha,
            "bytes": len(data),
            "validators": validators.record(),
        }
        _write_whole(self.folder / "urls" / f"{_name(ref)}.json", json.dumps(meta).encode())
        return Fetched(path, sha, len(data), validators)


def _name(ref: Remote) -> str:
    # The full URL (with its query) names the entry; only its digest is written down.
    return hashlib.sha256(ref.url.encode("utf-8")).hexdigest()


def _write_whole(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
