"""Reading a catalog export (`from:` items): a .csv, .jsonl or .json list of objects, as rows
of cells, each row with the line it starts on, so that a problem can say FILE:LINE.

Cells stay as they are (CSV: text; JSON: text, numbers, true/false, lists of text); the item
expansion in sources.py decides what they mean. A file that cannot be read at all is one
problem; a bad row is a problem of its own and the other rows are still read.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import Problem

MAX_BYTES = 512 * 2**20
SUFFIXES = (".csv", ".jsonl", ".json")
Cell = str | int | float | bool | list


@dataclass(slots=True)
class Export:
    """The rows of one export file: (line, {column: cell}) in file order."""

    shown: str  # the path as the manifest gives it, for messages
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[int, dict[str, Cell]]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, line: int, message: str, fix: str = "") -> None:
        self.problems.append(Problem(f"{self.shown}:{line}", message, fix))


def read_export(path: Path, shown: str, where: str) -> Export:
    """The export at `path`; `where` locates the `from:` entry for problems of the whole file."""
    export = Export(shown)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        fix = "export the rows as CSV (with a header line), JSON Lines, or a JSON list of objects"
        export.problems.append(Problem(where, f"{shown} is not a .csv, .jsonl or .json file", fix))
        return export
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_BYTES:
                export.problems.append(
                    Problem(
                        where,
                        f"{shown} is {size / 2**20:.0f} MB, over the {MAX_BYTES // 2**20} MB limit",
                        "split the export into several files, one from: entry each",
                    )
                )
                return export
            raw = f.read()
    except FileNotFoundError:
        fix = "check the path; a relative path starts at the manifest's folder"
        export.problems.append(Problem(where, f"no such file: {shown}", fix))
        return export
    except OSError as exc:
        export.problems.append(Problem(where, f"{shown} cannot be read: {exc.strerror or exc}"))
        return export
    try:
        text = raw.decode("utf-8-sig")  # spreadsheets often start their CSV with a BOM
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        export.problem(line, f"is not UTF-8 text (byte {exc.start})", "save the export as UTF-8")
        return export
    if suffix == ".csv":
        _read_csv(text, export)
    elif suffix == ".jsonl":
        _read_jsonl(text, export)
    else:
        _read_json_list(text, export, where)
    return export


def _read_csv(text: str, export: Export) -> None:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            export.problem(1, "is empty", "export the rows with a header line naming the columns")
            return
        header = [name.strip() for name in header]
        if not _good_header(header, export):
            return
        export.columns = header
        width = len(header)
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cells):
                continue  # blank lines, and a trailing newline's empty row
            if len(cells) > width:
                export.problem(
                    line,
                    f"has {len(cells)} cells, the header names {width} columns",
                    "quote cells that hold commas, or add the column to the header",
                )
                continue
            # A short row (trailing empty cells dropped by the exporter) is fine: zip stops.
            row = {name: cell for name, cell in zip(header, cells, strict=False) if cell}
            export.rows.append((line, row))
    except csv.Error as exc:
        export.problem(reader.line_num, f"is not valid CSV: {exc}", "check the quoting")


def _good_header(header: list[str], export: Export) -> bool:
    seen: set[str] = set()
    good = True
    for number, name in enumerate(header, start=1):
        if not name:
            export.problem(1, f"column {number} has no name", "name every column in the header")
            good = False
        elif name in seen:
            export.problem(1, f"the column {name!r} appears twice", "rename one of them")
            good = False
        seen.add(name)
    return good


def _read_jsonl(text: str, export: Export) -> None:
    columns: dict[str, None] = {}
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:
            export.problem(line, f"is not valid JSON: {exc}", "write one JSON object per line")
            continue
        _add_object(value, line, export, columns)
    export.columns = list(columns)


def _read_json_list(text: str, export: Export, where: str) -> None:
    """A JSON list of objects, each located by the line it starts on (the json module gives
    no positions, so the list is walked element by element)."""
    decoder = json.JSONDecoder()
    columns: dict[str, None] = {}
    at = _skip_space(text, 0)
    if at >= len(text) or text[at] != "[":
        fix = "write a list of objects: [{...}, {...}], or use .jsonl"
        export.problems.append(Problem(where, f"{export.shown} does not hold a JSON list", fix))
        return
    at = _skip_space(text, at + 1)
    line, counted = 1, 0
    while at < len(text) and text[at] != "]":
        line += text.count("\n", counted, at)
        counted = at
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError as exc:
            export.problem(line, f"is not valid JSON: {exc.msg}", "check the file with a JSON tool")
            return
        _add_object(value, line, export, columns)
        at = _skip_space(text, at)
        if at < len(text) and text[at] == ",":
            at = _skip_space(text, at + 1)
        elif at < len(text) and text[at] != "]":
            line += text.count("\n", counted, at)
            export.problem(line, "expected , or ] after an object", "check the file's syntax")
            return
    export.columns = list(columns)


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _add_object(value: object, line: int, export: Export, columns: dict[str, None]) -> None:
    if not isinstance(value, dict):
        export.problem(line, "is not a JSON object", 'write each row as {"column": value, ...}')
        return
    row: dict[str, Cell] = {}
    for name, cell in value.items():
        if cell is None or cell == "" or cell == []:
            continue
        if isinstance(cell, dict) or (
            isinstance(cell, list) and not all(isinstance(c, str) for c in cell)
        ):
            export.problem(
                line,
                f"column {name}: a nested value cannot fill an item",
                "use text, a number, true/false, or a list of image paths",
            )
            continue
        row[name] = cell
        columns.setdefault(name, None)
    export.rows.append((line, row))
