"""Pydantic's validation errors told as located Problems: the manifest's file, line and column,
the key's path as the user wrote it ("items[3] (sku-1004).mask"), and how to fix it.

Keys are found again in the YAML (yamlfile.locate) only when there are errors, so a valid
manifest never pays for it.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from pipeline.core.errors import Problem
from pipeline.manifest.schema import SECTIONS, FromItem, GlobItem, ImageItem, Manifest
from pipeline.manifest.yamlfile import locate

_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "list_type": "a list",
}
_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}
_PATTERNS = {
    "base_url": ("must be an http:// or https:// URL", "for example https://api.openai.com/v1"),
    "api_key_env": (
        "must be the NAME of an environment variable, not the key itself",
        "write api_key_env: OPENAI_API_KEY and export the key in that variable",
    ),
    "output_format": ("must be a plain word", "use png, jpeg or webp"),
}
_REQUIRED = {
    "version": "add version: 1 at the top",
    "items": "add items: with at least one item",
    "image": "give image: (a path, or a list of paths), or glob: (a pattern)",
}


def schema_problems(errors: list[dict], data: object, raw: bytes, shown: str) -> list[Problem]:
    """One Problem per pydantic error, in the file's order; `data` is what the YAML held and
    `raw` its bytes, `shown` the manifest's path as the user gave it."""
    locs = [without_tags(e["loc"]) for e in errors]
    marks = locate(raw, set(locs))
    located = []
    for error, loc in zip(errors, locs, strict=True):
        line, column = 0, 0
        for n in range(len(loc), -1, -1):  # the deepest part of the path that is in the file
            if loc[:n] in marks:
                key_mark, value_mark = marks[loc[:n]]
                at_key = key_mark and n == len(loc) and _at_key(error)
                line, column = key_mark if at_key else value_mark
                break
        where = f"{shown}:{line}:{column}" if line else shown
        message, fix = _explain(error, loc, data)
        located.append(((line, column), Problem(where, f"{_dotted(loc, data)}: {message}", fix)))
    located.sort(key=lambda pair: pair[0])  # in the file's order, as the user reads it
    return [problem for _, problem in located]


def _at_key(error: dict) -> bool:
    return error["type"] == "extra_forbidden" or error["loc"][-1] == "[key]"


def without_tags(loc: tuple) -> tuple:
    """The path in the YAML: without the union's tag after an item's index, or "[key]"."""
    if len(loc) > 2 and loc[0] == "items" and loc[2] in ("image", "glob", "from"):
        loc = loc[:2] + loc[3:]
    return loc[:-1] if loc and loc[-1] == "[key]" else loc


def _explain(error: dict, loc: tuple, data: object) -> tuple[str, str]:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    field = loc[-1] if loc else "manifest"
    secret = "endpoint" in loc  # never echo what might be a key pasted in the wrong place
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], data)
        close = difflib.get_close_matches(str(field), allowed, n=1)
        home = _section_of(str(field), loc[:-1])
        if home:
            fix = f"it belongs under {home}: (indented below it)"
        elif close:
            fix = f"did you mean {close[0]}?"
        else:
            fix = "the keys here are " + ", ".join(allowed)
        return "is not a known key", fix
    if kind == "missing":
        return "is required", _REQUIRED.get(str(field), f"add {field}:")
    if kind == "literal_error":
        return f"{value!r} is not supported", "this editbatch reads version: 1"
    if kind in _EXPECTED:
        got = "" if secret else f", not {_describe(value)}"
        quote = kind == "string_type" and isinstance(value, int | float | bool)
        return f"must be {_EXPECTED[kind]}{got}", "put it in quotes" if quote else ""
    if kind == "string_pattern_mismatch" and field in _PATTERNS:
        return _PATTERNS[field]
    if kind in _BOUNDS:
        words, limit_key = _BOUNDS[kind]
        return f"must be {words} {ctx[limit_key]}, not {_describe(value)}", ""
    if kind == "too_long":
        return f"has {ctx.get('actual_length')}; at most {ctx.get('max_length')} are allowed", ""
    if kind == "string_too_short" and field == "prompt":
        if loc[0] == "defaults":
            return "is empty", "write the prompt, or leave it out and give each item a prompt:"
        return "is empty", "write the prompt, or leave prompt: out to use defaults.prompt"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty", "give a value, or leave the key out"
    return error["msg"], str(ctx.get("fix", ""))


def _section_of(key: str, parent: tuple) -> str | None:
    """The section a misplaced key belongs to (`concurrency` at the top: limits), if any."""
    here = parent[0] if parent and isinstance(parent[0], str) and len(parent) == 1 else None
    for name, model in SECTIONS.items():
        if name == "pricing" or name == here:
            continue
        if key in {field.alias or f for f, field in model.model_fields.items()}:
            return name
    return None


def _allowed_keys(parent: tuple, data: object) -> list[str]:
    if not parent:
        model = Manifest
    elif parent[0] == "items":
        raw = data["items"][parent[1]]  # type: ignore[index]
        model = ImageItem
        if isinstance(raw, dict):
            model = FromItem if "from" in raw else GlobItem if "glob" in raw else ImageItem
    else:
        model = SECTIONS[parent[0]]
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _dotted(loc: tuple, data: object) -> str:
    """("items", 3, "mask") -> "items[3] (sku-1004).mask"."""
    text = ""
    for n, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
            if loc[:n] == ("items",):
                text += _item_name(data["items"][part])  # type: ignore[index]
        else:
            text += f".{part}" if text else str(part)
    return text or "the manifest"


def _item_name(raw: object) -> str:
    if not isinstance(raw, dict):
        return ""
    if isinstance(raw.get("id"), str):
        return f" ({raw['id']})"
    if isinstance(raw.get("glob"), str):
        return f" (glob {raw['glob']})"
    if isinstance(raw.get("from"), str):
        return f" (from {raw['from']})"
    image = raw.get("image")
    image = image[0] if isinstance(image, list) and image else image
    return f" ({Path(image).stem})" if isinstance(image, str) else ""


def _describe(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
