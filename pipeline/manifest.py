"""Reading a job manifest into the validated Plan, with every problem found at once.

`load_plan` reads the YAML (yamlfile), checks its shape (schema), expands the items (expand)
and checks their files (validate); a problem anywhere raises ManifestError with all of them,
each located (file:line:column, or the item) and saying how to fix it. `json_schema` is what
`editbatch schema` prints; `python -m pipeline.manifest` rewrites schema/manifest.schema.json.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections import Counter
from pathlib import Path
from types import MappingProxyType

from pydantic import ValidationError

from pipeline import plan
from pipeline.errors import ManifestError, Problem
from pipeline.expand import check_names, expand_items, request_params
from pipeline.schema import SECTIONS, GlobItem, ImageItem, Manifest
from pipeline.validate import check_files as check_input_files
from pipeline.yamlfile import locate, parse_yaml, read_limited

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema" / "manifest.schema.json"
_ITEM_INDEX = re.compile(r"items\[(\d+)\]")
_SAME_PROBLEM_SHOWN = 10  # beyond this, identical problems of many items become one line
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


def load_plan(path: str | Path, *, check_files: bool = True) -> plan.Plan:
    """The manifest at `path` as a frozen Plan (absolute paths, defaults applied, globs
    expanded). `check_files=False` skips reading the input files' headers."""
    shown = str(path)
    manifest_path = Path(os.path.abspath(path))
    base = manifest_path.parent
    raw = read_limited(manifest_path, shown)
    data, problems = parse_yaml(raw, shown)
    spec, specs, schema_problems = _validate(data, raw, shown)
    problems += schema_problems
    if spec is None:
        raise ManifestError(problems)
    defaults = request_params(spec.defaults, {})
    items, item_problems = expand_items(
        specs, base=base, defaults=defaults, default_prompt=spec.defaults.prompt
    )
    problems += item_problems
    if not spec.items and not schema_problems:
        line, column = locate(raw, {("items",)})[("items",)][1]
        problems.append(Problem(f"{shown}:{line}:{column}", "items: is empty", "add an item"))
    problems += check_names(items, spec.output.name)
    endpoint = _endpoint(spec, problems)
    if check_files:
        problems += check_input_files(items, base)
    if problems:
        raise ManifestError(_condense(_in_item_order(problems)))
    out_dir = base / (spec.output.dir or f"{manifest_path.stem}-out")
    return plan.Plan(
        manifest_path=manifest_path,
        name=spec.name or manifest_path.stem,
        endpoint=endpoint,
        limits=plan.Limits(**spec.limits.model_dump()),
        budget=plan.Budget(**spec.budget.model_dump()),
        output=plan.Output(dir=Path(os.path.normpath(out_dir)), name=spec.output.name),
        ledger=Path(os.path.normpath(base / spec.ledger))
        if spec.ledger
        else out_dir / "ledger.jsonl",
        items=tuple(items),
        pricing=MappingProxyType(
            {model: MappingProxyType(price.model_dump()) for model, price in spec.pricing.items()}
        ),
    )


def json_schema() -> dict:
    """The manifest's JSON Schema (draft 2020-12), for editors and `editbatch schema`."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Manifest.model_json_schema(),
    }


def write_schema(path: Path = SCHEMA_FILE) -> None:
    path.write_text(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n", "utf-8")


def _validate(data: object, raw: bytes, shown: str):
    """(manifest, [(index, item spec)], problems). On schema errors the manifest holds only
    the items without errors (so their files are still checked), or is None when something
    outside the items is wrong."""
    try:
        spec = Manifest.model_validate(data)
        return spec, list(enumerate(spec.items)), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    problems = _schema_problems(errors, data, raw, shown)
    if any(len(e["loc"]) < 2 or e["loc"][0] != "items" for e in errors):
        return None, [], problems  # an error outside the items: nothing to expand
    bad = {e["loc"][1] for e in errors}
    good = [(i, item) for i, item in enumerate(data["items"]) if i not in bad]
    spec = Manifest.model_validate({**data, "items": [item for _, item in good]})
    return spec, [(i, s) for (i, _), s in zip(good, spec.items, strict=True)], problems


def _schema_problems(errors: list[dict], data: object, raw: bytes, shown: str) -> list[Problem]:
    locs = [_without_tags(e["loc"]) for e in errors]
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


def _without_tags(loc: tuple) -> tuple:
    """The path in the YAML: without the union's tag after an item's index, or "[key]"."""
    if len(loc) > 2 and loc[0] == "items" and loc[2] in ("image", "glob"):
        loc = loc[:2] + loc[3:]
    return loc[:-1] if loc and loc[-1] == "[key]" else loc


def _explain(error: dict, loc: tuple, data: object) -> tuple[str, str]:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    field = loc[-1] if loc else "manifest"
    secret = "endpoint" in loc  # never echo what might be a key pasted in the wrong place
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], data)
        close = difflib.get_close_matches(str(field), allowed, n=1)
        fix = f"did you mean {close[0]}?" if close else "the keys here are " + ", ".join(allowed)
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
    if kind == "too_short":
        return "must not be empty", ""
    return error["msg"], str(ctx.get("fix", ""))


def _allowed_keys(parent: tuple, data: object) -> list[str]:
    if not parent:
        model = Manifest
    elif parent[0] == "items":
        raw = data["items"][parent[1]]  # type: ignore[index]
        model = GlobItem if isinstance(raw, dict) and "glob" in raw else ImageItem
    else:
        model = SECTIONS[parent[0]]
    return sorted(model.model_fields)


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


def _endpoint(spec: Manifest, problems: list[Problem]) -> plan.Endpoint:
    base_url = spec.endpoint.base_url
    if base_url is None:
        base_url = os.environ.get("OPENAI_BASE_URL") or plan.DEFAULT_BASE_URL
        if not base_url.startswith(("http://", "https://")):
            problems.append(
                Problem(
                    "$OPENAI_BASE_URL",
                    "is not an http:// or https:// URL",
                    "correct or unset it, or set endpoint.base_url in the manifest",
                )
            )
    return plan.Endpoint(base_url=base_url.rstrip("/"), api_key_env=spec.endpoint.api_key_env)


def _in_item_order(problems: list[Problem]) -> list[Problem]:
    """The YAML's own problems first (they are in line order), then item by item."""

    def position(problem: Problem) -> int:
        match = _ITEM_INDEX.match(problem.where)
        return int(match.group(1)) if match else -1

    return sorted(problems, key=position)


def _condense(problems: list[Problem]) -> list[Problem]:
    """Every problem, except that one told of thousands of items is shown a few times."""
    counts = Counter((p.message, p.fix) for p in problems)
    seen: Counter = Counter()
    kept = []
    for problem in problems:
        key = (problem.message, problem.fix)
        seen[key] += 1
        if seen[key] <= _SAME_PROBLEM_SHOWN:
            kept.append(problem)
        elif seen[key] == _SAME_PROBLEM_SHOWN + 1:
            more = counts[key] - _SAME_PROBLEM_SHOWN
            kept.append(
                Problem(
                    f"{more:,} more item{'s' if more > 1 else ''}", problem.message, problem.fix
                )
            )
    return kept


if __name__ == "__main__":
    write_schema()
