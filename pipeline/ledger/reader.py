"""Reading the JSONL ledger (CONTRACT section 4): every record in order for reports, or the
resume state in one pass (orjson) for a run, and the repair of a torn last line.

Only a last line can be torn (a run stopped while writing it); it is a prefix of a record, or
the NUL bytes a power loss can leave. Any other bad line is an error naming the line, and a
file that is not a ledger (a symlink to notes, a wrong path) is refused, never cut.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from pipeline.core.errors import LedgerCorrupt
from pipeline.ledger.scan import ResumeState

VERSION = 1
ITEM_EVENTS = frozenset({"attempt_failed", "succeeded", "failed"})
_decode = json.JSONDecoder().decode  # skips json.loads' per-call encoding sniffing


def _parse_fast(raw: bytes) -> object:
    """One line's JSON for the resume scan. orjson reads a 100,000-line ledger in a third of
    the json module's time. The lines it refuses that json accepts (NaN, a lone surrogate
    escape, 1e400) go to json; an integer past 64 bits it reads as the nearest float, which
    is the same to everything the scan keeps (a size or mtime no stat can match, a cost it
    counts as a float anyway). Reports read with json alone (`iter_ledger`)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _decode(raw.decode())


def _parse(raw: bytes) -> object:
    return _decode(raw.decode())


@dataclass
class LedgerScan:
    path: Path
    state: ResumeState
    count: int = 0  # records read
    warnings: list[str] = field(default_factory=list)

    @property
    def records(self) -> Iterator[dict]:
        """Every record again, read afresh from the file one at a time (the scan holds only
        the state, so a 100k-line ledger is not kept in memory)."""
        return iter_ledger(self.path)


@dataclass(frozen=True, slots=True)
class _Tail:
    lineno: int
    offset: int  # where the last complete line ends
    whole: bool  # a whole JSON object that lacks only its newline


def read_ledger(path: Path, *, repair: bool = False) -> LedgerScan:
    """Read a ledger into a ResumeState. A missing file is an empty ledger. A torn last line
    is left out with a warning, and with repair=True cut off the file (a whole last line that
    lacks only its newline is kept and given one). Only the lock holder may repair."""
    path = Path(path)
    scan = LedgerScan(path, ResumeState())
    reader = _Reader(path, _parse_fast)
    # The state keeps ~10^5 containers alive; cyclic collections while they pile up would
    # double the scan's time, and nothing here makes cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for record in reader:
            scan.state.add(record)
            scan.count += 1
    finally:
        if collecting:
            gc.enable()
    if reader.tail is not None:
        scan.warnings.append(_repair(path, reader.tail) if repair else _torn(path, reader.tail))
    return scan


def iter_ledger(path: Path, warnings: list[str] | None = None) -> Iterator[dict]:
    """Every record of a ledger in order, for reports; a torn last line is skipped and
    reported in `warnings`."""
    reader = _Reader(Path(path))
    yield from reader
    if reader.tail is not None and warnings is not None:
        warnings.append(_torn(Path(path), reader.tail))


# Every ledger line starts so; a line torn by a crash is a prefix of one (or NUL bytes, which a
# file system can leave after a power loss). Anything else was not written by editbatch.
_RECORD_START = b'{"v"'


def _torn_line(raw: bytes) -> bool:
    head = raw.strip(b"\x00\r\n \t")
    return not head or head.startswith(_RECORD_START) or _RECORD_START.startswith(head)


class _Reader:
    """Parses lines one at a time; only the last line may be torn, any other bad line raises."""

    def __init__(self, path: Path, parse: Callable[[bytes], object] = _parse):
        self.path = path
        self.parse = parse
        self.tail: _Tail | None = None

    def __iter__(self) -> Iterator[dict]:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            parse = self.parse
            offset, bad, seen = 0, None, 0
            for lineno, raw in enumerate(f, 1):
                if bad is not None:
                    raise self._corrupt(*bad)
                try:
                    record = parse(raw)
                    if not isinstance(record, dict):
                        raise ValueError("a JSON value that is not an object")
                except ValueError as exc:
                    if not raw.strip():  # a blank line, say from a hand edit
                        offset += len(raw)
                        continue
                    if not _torn_line(raw):
                        if not seen:
                            raise self._foreign(lineno, "a line no editbatch run wrote") from None
                        bad = (lineno, "a line no editbatch run wrote")
                        continue
                    bad = (lineno, f"not a JSON object ({exc})")
                    continue
                if not seen and not {"v", "event", "run"} <= record.keys():
                    raise self._foreign(lineno, "its first line is not a ledger record")
                seen += 1
                self._check(lineno, record)
                yield record
                if not raw.endswith(b"\n"):
                    self.tail = _Tail(lineno, offset, whole=True)
                    return
                offset += len(raw)
            if bad is not None:
                if bad[1] == "a line no editbatch run wrote":  # not a torn line: never cut
                    raise self._corrupt(*bad)
                self.tail = _Tail(bad[0], offset, whole=False)

    def _check(self, lineno: int, record: dict) -> None:
        if record.get("v") != VERSION:
            raise LedgerCorrupt(
                f"{self.path}:{lineno}: ledger version {record.get('v')!r} is not supported "
                f"(this editbatch reads version {VERSION}); upgrade editbatch, or move the "
                "ledger aside to start afresh"
            )
        event = record.get("event")
        if not isinstance(event, str) or (event in ITEM_EVENTS and "item" not in record):
            raise self._corrupt(lineno, "a line without its event, or an item line without item")

    def _foreign(self, lineno: int, what: str) -> LedgerCorrupt:
        # Never "repaired": cutting a line off a file that is not a ledger (a symlink to some
        # other file, a wrong path) would destroy someone's data.
        return LedgerCorrupt(
            f"{self.path}:{lineno}: this is not an editbatch ledger, or not only one ({what}); "
            "point `ledger:` at a new path, or move this file aside if it is a damaged ledger"
        )

    def _corrupt(self, lineno: int, what: str) -> LedgerCorrupt:
        return LedgerCorrupt(
            f"{self.path}:{lineno}: {what}; only a last line can be torn, so the ledger is "
            f"damaged: delete line {lineno} (its item runs again) or move the ledger aside "
            "(every item runs again)"
        )


def _torn(path: Path, tail: _Tail) -> str:
    if tail.whole:
        return f"{path}:{tail.lineno}: the last line lacks its newline; the next run adds it"
    return (
        f"{path}:{tail.lineno}: the last line is torn (a run stopped while writing it); "
        "ignored it, the next run cuts it off"
    )


def _repair(path: Path, tail: _Tail) -> str:
    if tail.whole:
        with open(path, "ab", buffering=0) as f:
            f.write(b"\n")
            os.fsync(f.fileno())
        return f"{path}:{tail.lineno}: the last line lacked its newline; added it"
    with open(path, "r+b") as f:
        cut = os.fstat(f.fileno()).st_size - tail.offset
        f.truncate(tail.offset)
        os.fsync(f.fileno())
    return (
        f"{path}:{tail.lineno}: the last line was torn (a run stopped while writing it); "
        f"cut off its {cut} bytes"
    )
