"""Small whole-or-nothing writes of text files (summaries, metrics, reports)."""

from __future__ import annotations

from pathlib import Path

from pipeline.outputs import write_atomic


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(Path(path), text.encode("utf-8"))
