"""Reading a job manifest into the validated Plan, with every problem found at once.

`load_plan` reads the YAML (yamlfile), checks its shape (schema), expands the items (expand)
and checks their files (validate); a problem anywhere raises ManifestError with all of them,
each located (file:line:column, or the item) and saying how to fix it. `json_schema` is what
`editbatch schema` prints; `python -m pipeline.manifest.load` rewrites schema/manifest.schema.json.
"""

from __future__ import annotations

import gc
import json
import os
import re
from collections import Counter
from pathlib import Path
from types import MappingProxyType

from pydantic import ValidationError

from pipeline.core import plan
from pipeline.core.errors import ManifestError, Problem
from pipeline.core.secrets import has_userinfo, scrub_url
from pipeline.cost.pricing import price_table
from pipeline.manifest.endpoint import build_endpoint, check_items
from pipeline.manifest.expand import absolute, check_names, expand_items, request_params
from pipeline.manifest.prices import unpriced_problems
from pipeline.manifest.problems import schema_problems
from pipeline.manifest.salvage import Salvage, told_already
from pipeline.manifest.schema import Manifest
from pipeline.manifest.validate import check_files as check_input_files
from pipeline.manifest.validate import check_remote_inputs
from pipeline.manifest.yamlfile import locate, parse_yaml, read_limited

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema" / "manifest.schema.json"
_ITEM_INDEX = re.compile(r"items\[(\d+)\]")
_SAME_PROBLEM_SHOWN = 10  # beyond this, identical problems of many items become one line


def load_plan(
    path: str | Path, *, check_files: bool = True, check_remote: bool = False
) -> plan.Plan:
    """The manifest at `path` as a frozen Plan (absolute paths, defaults applied, globs
    expanded). `check_files=False` skips reading the input files' headers; `check_remote`
    (with check_files) asks each remote input's store whether it exists (a HEAD each, not a
    download), as `editbatch validate` does."""
    # A large manifest makes a million small objects, none in a cycle: the cyclic collector
    # would run hundreds of times for nothing (a quarter of the time at 100,000 items).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _load(path, check_files, check_remote)
    finally:
        if paused:
            gc.enable()


def _load(path: str | Path, check_files: bool, check_remote: bool) -> plan.Plan:
    shown = str(path)
    manifest_path = Path(os.path.abspath(path))
    base = manifest_path.parent
    raw = read_limited(manifest_path, shown)
    data, problems = parse_yaml(raw, shown)
    spec, specs, schema_problems, dropped = _validate(data, raw, shown)
    problems += schema_problems
    if spec is None:
        raise ManifestError(problems)
    defaults = request_params(spec.defaults, {})
    finish = plan.Finish(
        mask_mode=spec.output.mask_mode,
        feather_px=spec.output.feather_px,
        size=spec.output.size,
        max_drift=spec.output.max_drift,
    )
    items, item_problems = expand_items(
        specs, base=base, defaults=defaults, default_prompt=spec.defaults.prompt, finish=finish
    )
    problems += told_already(item_problems, dropped)
    if not spec.items and not schema_problems:
        line, column = locate(raw, {("items",)})[("items",)][1]
        problems.append(Problem(f"{shown}:{line}:{column}", "items: is empty", "add an item"))
    problems += check_names(items, spec.output.name)
    if spec.budget.run_usd is not None or spec.budget.total_usd is not None:
        prices = price_table({m: p.model_dump() for m, p in spec.pricing.items()})
        problems += unpriced_problems(items, prices, data, raw, shown)
    endpoint = build_endpoint(spec.endpoint, problems)
    problems += check_items(items, endpoint)
    problems += _userinfo_problems(spec, endpoint, raw, shown)
    if spec.ledger and plan.is_url(spec.ledger):
        line, column = locate(raw, {("ledger",)})[("ledger",)][1]
        problems.append(
            Problem(
                f"{shown}:{line}:{column}",
                f"ledger: {plan.Remote(spec.ledger)} is not a local path: the ledger is "
                "appended line by line, fsynced and locked (flock) while a run holds it, "
                "which object stores cannot do",
                "give a path on a local disk or a mounted volume (outputs may still go to "
                "object storage through output.dir)",
            )
        )
    notes: list[Problem] = []
    if check_files:
        problems += check_input_files(items, base, notes)
        if check_remote:
            problems += check_remote_inputs(items)
    if problems:
        raise ManifestError(_condense(_in_item_order(problems, shown)))
    local_out = absolute(base, f"{manifest_path.stem}-out")
    out_dir = absolute(base, spec.output.dir) if spec.output.dir else local_out
    # With outputs on object storage, the ledger's default stays local: where the outputs
    # would be without output.dir.
    default_ledger = (local_out if isinstance(out_dir, plan.Remote) else out_dir) / "ledger.jsonl"
    return plan.Plan(
        manifest_path=manifest_path,
        name=spec.name or manifest_path.stem,
        endpoint=endpoint,
        limits=plan.Limits(**spec.limits.model_dump()),
        budget=plan.Budget(**spec.budget.model_dump()),
        output=plan.Output(dir=out_dir, name=spec.output.name, finish=finish),
        ledger=absolute(base, spec.ledger) if spec.ledger else default_ledger,
        items=tuple(items),
        pricing=MappingProxyType({model: _price(price) for model, price in spec.pricing.items()}),
        files_checked=check_files,
        mode=spec.mode,
        batch=plan.BatchSettings(**spec.batch.model_dump()),
        cache=absolute(base, spec.cache) if spec.cache else None,
        notes=tuple((note.where, note.message) for note in notes),
    )


def _price(price) -> MappingProxyType:
    # batch_discount only where the manifest gives it: the price table's default is 0.5
    data = price.model_dump()
    if data.get("batch_discount") is None:
        data.pop("batch_discount", None)
    return MappingProxyType(data)


def json_schema() -> dict:
    """The manifest's JSON Schema (draft 2020-12), for editors and `editbatch schema`."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Manifest.model_json_schema(),
    }


def write_schema(path: Path = SCHEMA_FILE) -> None:
    path.write_text(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n", "utf-8")


def _validate(data: object, raw: bytes, shown: str):
    """(manifest, [(index, item spec)], problems, {index: keys set aside}). On schema errors
    the manifest is validated again without what was wrong (an unknown or misplaced key, a
    bad value, which then takes its default; an item that cannot be read at all), so one
    mistake hides no other: the items' ids and files are still checked. It is None only when
    the document is not a mapping at all."""
    try:
        spec = Manifest.model_validate(data)
        return spec, list(enumerate(spec.items)), [], {}
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    problems = schema_problems(errors, data, raw, shown)
    if not isinstance(data, dict):
        return None, [], problems, {}
    salvage = Salvage(data)
    for _ in range(3):  # each pass sets aside what the last one still found wrong
        salvage.set_aside(errors)
        try:
            spec = Manifest.model_validate(salvage.data())
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            continue
        kept = salvage.kept()
        return spec, list(zip(kept, spec.items, strict=True)), problems, salvage.dropped
    return None, [], problems, {}


def _userinfo_problems(
    spec: Manifest, endpoint: plan.Endpoint, raw: bytes, shown: str
) -> list[Problem]:
    """A base URL with `user:pass@`: aiohttp refuses it, and the password would be sent and
    recorded. Located at the manifest's line, or at the variable it came from."""
    if not has_userinfo(endpoint.base_url):
        return []
    if spec.endpoint.base_url is not None:
        path = ("endpoint", "base_url")
        line, column = locate(raw, {path})[path][1]
        where = f"{shown}:{line}:{column}"
    else:
        where = f"${plan.PROVIDERS[spec.endpoint.provider].base_url_env}"
    return [
        Problem(
            where,
            f"the base URL {scrub_url(endpoint.base_url)} holds a user name or password "
            "(user:pass@), which would be sent and recorded",
            "remove it; the key goes in the variable endpoint.api_key_env names",
        )
    ]


def _in_item_order(problems: list[Problem], shown: str) -> list[Problem]:
    """The manifest's located problems first, in line order, then item by item."""

    def position(problem: Problem) -> tuple[int, int]:
        match = _ITEM_INDEX.match(problem.where)
        if match:
            return int(match.group(1)), 0
        line = problem.where.removeprefix(f"{shown}:").split(":", 1)[0]
        return -1, int(line) if problem.where.startswith(f"{shown}:") and line.isdigit() else 0

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
