"""The job's lock: every run of one job takes it, whatever its shard options, so that two runs
never pay for the same items at once.

The rule, with `flock` on files beside the job's ledger (`ledger.jsonl`):
- an unsharded run holds `ledger.jsonl.lock` exclusively: no other run of the job at all;
- a `--shard K/N` run holds `ledger.jsonl.lock` shared (shards of one job run in parallel,
  never beside an unsharded run), its own `ledger.shard-K-of-N.jsonl.lock` exclusively (one
  run per shard), and checks that no shard of another N is running (their items overlap).
A lock file names its holder (pid, host) for the message of a refused run, and is removed when
the run ends (unlinked while still locked; a run that finds its file replaced takes the new
one). A killed run's flock dies with it; its file may stay behind, empty or naming a dead
process, and means nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pipeline.core.errors import LedgerLocked
from pipeline.ledger.shards import Shard

SHARD_LOCK = re.compile(r"\.shard-(\d+)-of-(\d+)")
ATTEMPTS = 5  # a lock file replaced under us this many times in a row: give up


def lock_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".lock")


class JobLock:
    """Held from `acquire` to `release` by one run of the job."""

    def __init__(self, held: list[tuple[Path, int, bool]]):
        self._held = held  # (path, fd, exclusive), the job's lock first

    @classmethod
    def acquire(cls, job_ledger: Path, shard: Shard | None = None) -> JobLock:
        """Take the job's locks without waiting, or raise LedgerLocked naming the holder.
        Blocking (file system): call it in a thread."""
        job_ledger = Path(job_ledger)
        job_ledger.parent.mkdir(parents=True, exist_ok=True)
        job = lock_path(job_ledger)
        if shard is None:
            fd = _take(job, exclusive=True, refused=partial(_refused_plain, job_ledger))
            return cls([(job, fd, True)])
        fd = _take(job, exclusive=False, refused=partial(_refused_shard, job_ledger))
        held = [(job, fd, False)]
        try:
            own = lock_path(shard.ledger_path(job_ledger))
            refused = partial(_refused_same, job_ledger, shard, own)
            held.append((own, _take(own, exclusive=True, refused=refused), True))
            _check_other_counts(job_ledger, shard)
        except BaseException:
            cls(held).release()
            raise
        return cls(held)

    def release(self) -> None:
        """Remove the lock files no other run holds, then let go of them."""
        for path, fd, exclusive in reversed(self._held):
            try:
                if not exclusive:  # shared: remove only when no other shard holds it too
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        os.unlink(path)
            finally:
                os.close(fd)
        self._held = []


def _take(path: Path, *, exclusive: bool, refused: Callable[[], LedgerLocked]) -> int:
    for _ in range(ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise refused() from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the last holder removed it between our open and our lock: again
            os.close(fd)
            continue
        if exclusive:
            os.ftruncate(fd, 0)
            holder = {"pid": os.getpid(), "host": socket.gethostname()}
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        return fd
    raise LedgerLocked(f"{path}: the lock file keeps being replaced; run again")


def _holder(path: Path) -> str | None:
    try:
        info = json.loads(path.read_bytes())
        return f"pid {int(info['pid'])} on host {info['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _shard_locks(job_ledger: Path) -> list[tuple[Path, int, int]]:
    """The shard lock files beside the job's ledger: (path, K, N)."""
    found = []
    pattern = f"{job_ledger.stem}.shard-*-of-*{job_ledger.suffix}.lock"
    for path in sorted(job_ledger.parent.glob(pattern)):
        match = SHARD_LOCK.search(path.name)
        if match:
            found.append((path, int(match.group(1)), int(match.group(2))))
    return found


def _held(path: Path) -> bool:
    """Whether some run holds this lock file now (probed without keeping it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _running_shards(job_ledger: Path, skip: Path | None = None) -> list[str]:
    return [
        f"shard {k}/{n} ({_holder(path) or 'holder unknown'})"
        for path, k, n in _shard_locks(job_ledger)
        if path != skip and _held(path)
    ]


def _fix(job_ledger: Path) -> str:
    return (
        f"runs of one job (ledger {job_ledger}) may not overlap, whatever their --shard: wait "
        "for it to finish or stop that process, then run again"
    )


def _refused_plain(job_ledger: Path) -> LedgerLocked:
    holder = _holder(lock_path(job_ledger))
    shards = _running_shards(job_ledger)
    what = ", ".join(shards) if shards else f"another run ({holder or 'holder unknown'})"
    return LedgerLocked(f"{job_ledger}: {what} of this job is running; {_fix(job_ledger)}")


def _refused_shard(job_ledger: Path) -> LedgerLocked:
    holder = _holder(lock_path(job_ledger)) or "holder unknown"
    return LedgerLocked(
        f"{job_ledger}: a run of the whole job ({holder}) is running; {_fix(job_ledger)}"
    )


def _refused_same(job_ledger: Path, shard: Shard, own: Path) -> LedgerLocked:
    holder = _holder(own) or "holder unknown"
    return LedgerLocked(
        f"{job_ledger}: shard {shard} is already running ({holder}; lock file {own}); "
        f"{_fix(job_ledger)}"
    )


def _check_other_counts(job_ledger: Path, shard: Shard) -> None:
    """Shards of another N own other sets of items, which overlap this shard's."""
    others = [
        f"shard {k}/{n} ({_holder(path) or 'holder unknown'})"
        for path, k, n in _shard_locks(job_ledger)
        if n != shard.count and _held(path)
    ]
    if others:
        raise LedgerLocked(
            f"{job_ledger}: {', '.join(others)} of this job is running, and shards of another "
            f"count share items with shard {shard}; use the same N, or {_fix(job_ledger)}"
        )
