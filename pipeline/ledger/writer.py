"""The JSONL ledger (CONTRACT section 4): the run's checkpoint, appended by one locked writer.

Durability: each line reaches the OS in one write() the moment it is made, so a killed process
(SIGKILL included) loses nothing it wrote. `run_started`, `succeeded`, `failed` and
`run_finished` lines (and batch mode's) are also fsynced, by a group commit in a thread that
nobody waits for, so a power loss can lose only `attempt_failed` lines and the durable lines
of the last instant, which no waiting would have saved. `attempt_failed` lines explain retries
but decide nothing on resume, and an fsync per retry would buy nothing. Reading the ledger
back is `reader.py`.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import math
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from pipeline.core.errors import LedgerLocked, LedgerUnwritable
from pipeline.ledger.reader import VERSION, LedgerScan, read_ledger
from pipeline.outputs.files import fsync_dir

EVENTS = frozenset(
    {
        "run_started",
        "attempt_failed",
        "succeeded",
        "failed",
        "run_finished",
        # batch mode (CONTRACT section 8)
        "file_uploaded",
        "batch_submitted",
        "batch_collected",
    }
)
# Every line but a retry's is fsynced. Batch lines too: a lost `file_uploaded` or
# `batch_submitted` would send or pay for something again, a lost `batch_collected` would
# collect a batch twice.
DURABLE = EVENTS - {"attempt_failed"}
_RESERVED = frozenset({"v", "ts", "run", "event"})


def timestamp(when: datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-26T13:40:00.123Z."""
    if when is None:  # every line: time.gmtime is half the cost of a datetime
        now = time.time()
        seconds = int(now)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return f"{stamp}.{int((now - seconds) * 1000):03d}Z"
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class LedgerWriter:
    """The one writer of a ledger, holding its lock from open() to close().

    Call write()/awrite() from one thread only (the event loop's).
    """

    def __init__(
        self, path: Path, run_id: str, extra: dict, fd: int, lock_fd: int | None, scan: LedgerScan
    ):
        self.path = path
        self.run_id = run_id
        self.scan = scan  # the ledger as it was when the lock was taken, torn tail repaired
        self._extra = extra
        self._fd: int | None = fd
        self._appended = 0  # lines appended by this writer
        self._wanted = 0  # ... up to the last durable one, which an fsync must cover
        self._durable = 0  # ... of which an fsync that has ended covers this many
        self._syncing: asyncio.Future | None = None  # the group commit running, if any
        self._failed: LedgerUnwritable | None = None  # an fsync of it failed
        self._lock_fd = lock_fd

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        run_id: str,
        extra_fields: dict | None = None,
        locked: bool = False,
    ) -> LedgerWriter:
        """Lock the ledger (LedgerLocked if another process holds it), repair a torn last line,
        read it into `self.scan`, and open it for appending. Blocking: call it in a thread.
        `locked`: the caller holds the job's lock (`ledger.joblock`), which covers this file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = None if locked else _lock(path)
        try:
            # Repair only under the lock: an unlocked "torn" line may be one still being written.
            scan = read_ledger(path, repair=True)
            created = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if created:
                fsync_dir(path.parent)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(path, run_id, dict(extra_fields or {}), fd, lock_fd, scan)

    def write(self, event: str, **fields) -> dict:
        """Append one line; fsync it when the event is one resume depends on."""
        record = self._append(event, fields)
        if event in DURABLE:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise self._unwritable(exc) from exc
        return record

    async def awrite(self, event: str, **fields) -> dict:
        """write() for the event loop: the line is appended at once; a durable one is fsynced
        in a thread without waiting for it (a group commit, below). Raises LedgerUnwritable
        when an earlier fsync failed."""
        if self._failed is not None:
            raise self._failed
        record = self._append(event, fields)
        if event in DURABLE:
            self._wanted = self._appended
            if self._syncing is None:
                self._syncing = asyncio.ensure_future(self._sync())
        return record

    async def _sync(self) -> None:
        """Group commit: one fsync makes every line appended before it began durable, and the
        lines appended while it runs share the next one. Nobody waits for it: a line is at the
        same risk (a power loss before its fsync ends) whether its writer waits or not, and
        not waiting lets the lines of many items share an fsync and its thread hand-off.
        close() (after idle()) makes the rest durable."""
        try:
            while self._durable < self._wanted and self._fd is not None:
                upto = self._appended
                try:
                    await asyncio.to_thread(os.fsync, self._fd)
                except OSError as exc:
                    self._failed = self._unwritable(exc)
                    return
                self._durable = upto
        finally:
            self._syncing = None

    async def idle(self) -> None:
        """Wait for the fsync running, if any (its failure is raised by the next awrite or by
        close, not here)."""
        while self._syncing is not None:
            await asyncio.shield(self._syncing)

    @property
    def synced_lines(self) -> int:
        """Lines made durable by the group commit so far (for tests and the curious)."""
        return self._durable

    def _unwritable(self, exc: OSError) -> LedgerUnwritable:
        return LedgerUnwritable(
            f"cannot append to the ledger {self.path}: {exc.strerror or exc}; free space on "
            "its disk (or fix the file's permissions), then run again: every line written is "
            "whole, so the run resumes where it stopped"
        )

    def _append(self, event: str, fields: dict) -> dict:
        if self._fd is None:
            raise ValueError(f"{self.path}: the ledger writer is closed")
        if event not in EVENTS:
            raise ValueError(f"unknown ledger event {event!r}; one of {sorted(EVENTS)}")
        if clash := _RESERVED & fields.keys():
            raise ValueError(f"ledger fields {sorted(clash)} are set by the writer itself")
        record = {"v": VERSION, "ts": timestamp(), "run": self.run_id, "event": event}
        record.update(self._extra)
        record.update(fields)
        line = memoryview(_encode(record))
        written = 0
        try:
            while written < len(line):
                written += os.write(self._fd, line[written:])
        except OSError as exc:
            # Take back a partial line (disk full), so later lines do not glue onto it and
            # turn a repairable tail into corruption in the middle.
            if written:
                os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
            raise self._unwritable(exc) from exc
        self._appended += 1
        return record

    def close(self) -> None:
        """fsync what is written and release the lock. Await every awrite(), then idle(),
        first. Raises LedgerUnwritable when an fsync failed, this one or one before."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
            if self._failed is not None:
                raise self._failed
        except OSError as exc:  # the lock is released all the same
            raise self._unwritable(exc) from exc
        finally:
            os.close(fd)
            if self._lock_fd is not None:
                os.ftruncate(self._lock_fd, 0)
                os.close(self._lock_fd)

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encode(record: dict) -> bytes:
    """One line: orjson (a few times faster than json, once per line of every item) for the
    usual record; what orjson refuses (an integer past 64 bits, a key that is not a string, a
    lone surrogate) and a float that is not finite (json keeps it as NaN or Infinity, which
    the scan reads back) go through json, as every line did before."""
    try:
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except (TypeError, orjson.JSONEncodeError):
        pass
    else:
        if b"null" not in line or not _has_nonfinite(record):
            return line
    try:
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    except UnicodeEncodeError:
        # A lone surrogate (say, in a server's message) is not UTF-8; \u-escape everything.
        return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def _has_nonfinite(value: object) -> bool:
    """Whether a NaN or an infinity is anywhere in `value` (orjson writes them as null)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_nonfinite(v) for v in value)
    return False


def _lock(ledger: Path) -> int:
    """Take the sidecar lock without waiting. flock dies with its process, so a killed run
    never leaves a stale lock behind; the file only names the holder for the message."""
    lock = ledger.with_name(ledger.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(os.pread(fd, 4096, 0))
        os.close(fd)
        raise LedgerLocked(
            f"{ledger}: another run is using this ledger ({holder}; lock file {lock}); "
            "wait for it to finish or stop that process, then run again"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
    return fd


def _holder(raw: bytes) -> str:
    try:
        info = json.loads(raw)
        return f"pid {int(info['pid'])} on host {info['host']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet written its pid"
