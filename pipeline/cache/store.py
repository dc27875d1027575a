"""A folder of answers shared by jobs (`cache: DIR`), one entry per request key.

An entry is the model's images as they came (not the finished outputs: one answer serves a
guide and a strict job alike) with the answer's metadata, in `answers/<2 hex>/<key>/`. It is
written into a temporary folder and renamed into place, so a reader sees a whole entry or none,
and two jobs storing the same key at once keep one. A hit touches the entry, so `prune` removes
entries nobody has used for a while. Blocking: call it from a thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.outputs.files import fsync_dir

META = "answer.json"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    images: list[bytes]
    model: str | None
    usage: dict | None  # what the answer cost when it was paid for (for the record)
    created: str


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    images: int
    bytes: int
    oldest_use: float | None  # epoch seconds of the least recently used entry
    newest_use: float | None

    def to_json(self) -> dict:
        def when(t: float | None) -> str | None:
            return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

        return {
            "entries": self.entries,
            "images": self.images,
            "bytes": self.bytes,
            "oldest_use": when(self.oldest_use),
            "newest_use": when(self.newest_use),
        }


class AnswerCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.answers = self.root / "answers"

    def _entry(self, key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{16,128}", key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.answers / key[:2] / key

    def get(self, key: str) -> CachedAnswer | None:
        """The answer stored under key, or None (absent, being pruned, or damaged: a damaged
        entry is removed, and the item is simply sent)."""
        entry = self._entry(key)
        try:
            meta = json.loads((entry / META).read_text("utf-8"))
            images = []
            for image in meta["images"]:
                data = (entry / image["file"]).read_bytes()
                if hashlib.sha256(data).hexdigest() != image["sha256"]:
                    raise ValueError("an image does not match its recorded sha256")
                images.append(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(entry, ignore_errors=True)
            return None
        try:
            os.utime(entry / META)  # last used: what prune goes by
        except OSError:
            pass
        return CachedAnswer(images, meta.get("model"), meta.get("usage"), meta.get("created", ""))

    def put(self, key: str, images: list[bytes], *, model: str, usage: dict | None) -> bool:
        """Store an answer under key, whole or not at all; False when one was there already."""
        entry = self._entry(key)
        if (entry / META).exists():
            return False
        entry.parent.mkdir(parents=True, exist_ok=True)
        temp = self.root / "tmp" / f"{key}.{os.getpid()}.{secrets.token_hex(4)}"
        temp.mkdir(parents=True)
        try:
            records = []
            for number, data in enumerate(images, start=1):
                name = f"{number}.img"
                _write_synced(temp / name, data)
                digest = hashlib.sha256(data).hexdigest()
                records.append({"file": name, "sha256": digest, "bytes": len(data)})
            meta = {
                "v": 1,
                "key": key,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "model": model,
                "usage": usage,
                "images": records,
            }
            _write_synced(temp / META, json.dumps(meta).encode("utf-8"))
            try:
                os.rename(temp, entry)
            except OSError:  # another job stored the same key meanwhile: keep theirs
                return False
            fsync_dir(entry.parent)
            return True
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def _entries(self):
        if not self.answers.is_dir():
            return
        for shelf in self.answers.iterdir():
            if shelf.is_dir():
                yield from (e for e in shelf.iterdir() if (e / META).is_file())

    def stats(self) -> CacheStats:
        entries = images = size = 0
        uses: list[float] = []
        for entry in self._entries():
            try:
                files = [f for f in entry.iterdir() if f.is_file()]
                size += sum(f.stat().st_size for f in files)
                uses.append((entry / META).stat().st_mtime)
            except FileNotFoundError:
                continue  # pruned meanwhile
            entries += 1
            images += sum(1 for f in files if f.name != META)
        return CacheStats(entries, images, size, min(uses, default=None), max(uses, default=None))

    def prune(self, older_than_s: float, *, now: float | None = None) -> tuple[int, int]:
        """Remove entries not used (stored or hit) for older_than_s seconds; (entries, bytes)."""
        cutoff = (time.time() if now is None else now) - older_than_s
        removed = freed = 0
        for entry in list(self._entries()):
            try:
                if (entry / META).stat().st_mtime >= cutoff:
                    continue
                freed += sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
            except FileNotFoundError:
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        stale = self.root / "tmp"  # left by a job killed while storing
        if stale.is_dir():
            for temp in stale.iterdir():
                try:
                    if temp.stat().st_mtime < cutoff:
                        shutil.rmtree(temp, ignore_errors=True)
                except FileNotFoundError:
                    continue
        return removed, freed


def parse_age(text: str) -> float:
    """ "30d" -> seconds; units s, m, h, d, w. ValueError saying how to write it."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an age; write a number and a unit, e.g. 30d, 12h, 2w")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
