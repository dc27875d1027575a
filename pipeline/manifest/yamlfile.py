"""Reading the manifest's YAML safely and quickly, and finding a key's line and column again.

Plain values from libyaml's events (no node tree, no PyYAML constructors: five times faster on
a 100,000-item manifest) read as YAML 1.2 core scalars, the way editors and the JSON Schema see
them: `yes`, `no`, `on` and dates stay strings. Oversized files, alias bombs, several documents
and duplicate keys are refused with their line and column.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import NoReturn

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from pipeline.core.errors import ManifestError, Problem

MAX_BYTES = 64 * 1024 * 1024
MAX_ALIASES = 100
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it
_STR_TAGS = (None, "!", "tag:yaml.org,2002:str")
_MAP_TAGS = (None, "tag:yaml.org,2002:map")
_SEQ_TAGS = (None, "tag:yaml.org,2002:seq")
_INT = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_SPECIAL = {
    **dict.fromkeys(("~", "null", "Null", "NULL"), None),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), float("inf")),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), float("-inf")),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), float("nan")),
}
_MAYBE_TYPED = frozenset("-+.0123456789~nNtTfF")  # first letters of non-string plain scalars
_NO_KEY = object()


def read_limited(path: str | os.PathLike, shown: str) -> bytes:
    """The manifest file's bytes; refuses a missing file and one over MAX_BYTES."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_BYTES:
                _stop(
                    shown,
                    f"is {size / 2**20:.0f} MB, over the {MAX_BYTES // 2**20} MB limit",
                    "split the job into several manifests, or use glob: items",
                )
            return f.read()
    except FileNotFoundError:
        _stop(shown, "no such file", "check the manifest's path")
    except IsADirectoryError:
        _stop(shown, "is a folder", "give the path of the manifest's YAML file")
    except OSError as exc:
        _stop(shown, f"cannot be read: {exc.strerror or exc}", "check its permissions")


def parse_yaml(raw: bytes, shown: str) -> tuple[object, list[Problem]]:
    """The document as dicts, lists and scalars, and the duplicate keys found on the way.
    Raises ManifestError when the text cannot be read at all (`shown` names the file)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _stop(shown, f"is not UTF-8 text (byte {exc.start})", "save it as UTF-8")
    problems: list[Problem] = []
    anchors: dict[str, object] = {}
    aliases = 0
    documents = 0
    root: object = None
    # One frame per open mapping or sequence: [container, pending key, key mark, anchor, merges]
    stack: list[list] = []
    try:
        for event in _events(raw):
            kind = type(event)
            if kind is ScalarEvent:
                value = event.value
                plain = event.implicit[0] and event.tag is None
                if not (plain and value and value[0] not in _MAYBE_TYPED):
                    value = _scalar(event, shown)  # else a plain word no type claims, as it is
                if event.anchor:
                    anchors[event.anchor] = value
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                tags = _MAP_TAGS if kind is MappingStartEvent else _SEQ_TAGS
                if event.tag not in tags:
                    _stop(_at(shown, event), f"the tag {event.tag} is not supported", "remove it")
                container = {} if kind is MappingStartEvent else []
                stack.append([container, _NO_KEY, None, event.anchor, []])
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                value, _, _, anchor, merges = stack.pop()
                for merged in merges:  # explicit keys win over merged ones (YAML merge keys)
                    for key, item in merged.items():
                        value.setdefault(key, item)
                if anchor:
                    anchors[anchor] = value
            elif kind is AliasEvent:
                aliases += 1
                if aliases > MAX_ALIASES:
                    _stop(
                        _at(shown, event),
                        f"uses more than {MAX_ALIASES} aliases (*name)",
                        "put shared settings under defaults: instead of anchors and aliases",
                    )
                if event.anchor not in anchors:
                    _stop(
                        _at(shown, event),
                        f"the alias *{event.anchor} has no anchor before it",
                        f"define &{event.anchor} on an earlier value",
                    )
                value = anchors[event.anchor]
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    _stop(
                        _at(shown, event),
                        "holds more than one YAML document (---)",
                        "keep one document per manifest",
                    )
                continue
            else:
                continue
            if not stack:
                root = value
                continue
            frame = stack[-1]
            container = frame[0]
            if type(container) is list:
                container.append(value)
            elif frame[1] is _NO_KEY:
                if isinstance(value, dict | list):
                    _stop(
                        _at(shown, event),
                        "a key is a mapping or list",
                        "keys must be plain words such as image: or prompt:",
                    )
                frame[1], frame[2] = value, event.start_mark
            else:
                key = frame[1]
                if key == "<<" and _mergeable(value):
                    frame[4].extend(value if isinstance(value, list) else [value])
                else:
                    if key in container:
                        problems.append(
                            Problem(
                                _mark(shown, frame[2]),
                                f"the key {key!r} appears twice in the same mapping",
                                "keep only one of them",
                            )
                        )
                    container[key] = value
                frame[1] = _NO_KEY
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(p for p in (exc.context, exc.problem) if p)
        where = _mark(shown, mark) if mark else shown
        hint = yaml_hint(message, raw.decode("utf-8", "replace").splitlines(), mark)
        problems.append(Problem(where, f"is not valid YAML: {message}", hint))
        raise ManifestError(problems) from None
    except yaml.YAMLError as exc:
        fix = "remove control characters from the text"
        problems.append(Problem(shown, f"is not valid YAML: {exc}", fix))
        raise ManifestError(problems) from None
    except ManifestError as exc:  # keep the duplicate keys found before the stop
        raise ManifestError([*problems, *exc.problems]) from None
    return root, problems


def locate(raw: bytes, paths: set[tuple]) -> dict[tuple, tuple[tuple[int, int] | None, tuple]]:
    """(key line:col, value line:col) of each of `paths` (and every prefix of them) present in
    the document; a path like ("items", 3, "mask"). Used only when there is a problem to show."""
    wanted = {path[:n] for path in paths for n in range(len(path) + 1)}
    pending = set(paths)
    found: dict[tuple, tuple[tuple[int, int] | None, tuple]] = {}
    # One frame per open container: [path, next index or pending key, expecting a key?, key mark]
    stack: list[list] = []
    for event in _events(raw):
        kind = type(event)
        opens = kind is MappingStartEvent or kind is SequenceStartEvent
        if not (opens or kind is ScalarEvent or kind is AliasEvent):
            if kind is MappingEndEvent or kind is SequenceEndEvent:
                stack.pop()
            continue
        key_mark = None
        if not stack:
            path: tuple = ()
        elif stack[-1][2] is None:  # a sequence: the next index
            frame = stack[-1]
            path = (*frame[0], frame[1])
            frame[1] += 1
        elif stack[-1][2]:  # a mapping's key
            frame = stack[-1]
            frame[1] = _scalar(event, "") if kind is ScalarEvent else None
            frame[2], frame[3] = False, _line_col(event.start_mark)
            continue
        else:
            frame = stack[-1]
            path = (*frame[0], frame[1])
            frame[2], key_mark = True, frame[3]
        if path in wanted:
            found[path] = (key_mark, _line_col(event.start_mark))
            if path in pending:
                pending.discard(path)
                if not pending:  # every path is placed: the rest of the file cannot matter
                    break
        if opens:
            stack.append([path, 0, True if kind is MappingStartEvent else None, None])
    return found


def _events(raw: bytes) -> Iterator:
    """libyaml's events; `iter(get_event, None)` spares a Python generator step per event."""
    return iter(_Loader(raw).get_event, None)


def _scalar(event: ScalarEvent, shown: str) -> object:
    text = event.value
    if event.tag is None and event.implicit[0]:  # plain, untagged: resolve like YAML 1.2 core
        if not text:
            return None
        if text in _SPECIAL:
            return _SPECIAL[text]
        if text[0] in "-+.0123456789":
            if _INT.match(text):
                return int(text)
            if _FLOAT.match(text):
                return float(text)
        if text[:2] in ("0x", "0o") and len(text) > 2:
            try:
                return int(text, 16 if text[1] == "x" else 8)
            except ValueError:
                return text
        return text
    if event.tag in _STR_TAGS:
        return text
    _stop(
        _at(shown, event), f"the tag {event.tag} is not supported", "remove it, or quote the value"
    )


def _mergeable(value: object) -> bool:
    """What a merge key (<<) takes: a mapping or a list of them. Anything else stays a plain
    "<<" key, which the schema then refuses."""
    if isinstance(value, list):
        return all(isinstance(v, dict) for v in value)
    return isinstance(value, dict)


def yaml_hint(message: str, lines: list[str], mark) -> str:
    """How to fix a YAML syntax error, judged from the line it was found on: a value holding
    ": " after its key wants quotes; a key indented unlike the key above it wants lining up."""
    tabbed = mark is not None and 0 <= mark.line < len(lines) and "\t" in lines[mark.line]
    if "\\t" in message or "tab" in message or tabbed:
        return "indent with spaces, not tabs"
    if mark is None or not 0 <= mark.line < len(lines):
        return "check the indentation and quoting at that place"
    line = lines[mark.line]
    if "mapping values are not allowed" in message and ": " in line[: mark.column]:
        return 'quote the value: it contains ": " (prompt: "Style: minimal")'
    indent = _indent(line)
    above = next(
        (t for t in reversed(lines[: mark.line]) if t.strip() and not t.lstrip().startswith("#")),
        None,
    )
    if above is not None and _indent(above) != indent and line.strip():
        return (
            f"line {mark.line + 1} is indented {indent} space(s), the line above it "
            f"{_indent(above)}: keys of one mapping line up, a nested mapping is indented "
            "under its key"
        )
    return "check the indentation and quoting at that place"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _line_col(mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _mark(shown: str, mark) -> str:
    line, column = _line_col(mark)
    return f"{shown}:{line}:{column}"


def _at(shown: str, event) -> str:
    return _mark(shown, event.start_mark)


def _stop(where: str, message: str, fix: str) -> NoReturn:
    raise ManifestError([Problem(where, message, fix)])
