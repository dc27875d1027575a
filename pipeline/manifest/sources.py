"""`from:` items: one plan item per row of a catalog export.

A key of the item is taken, in this order, from: the entry's literal value (no {placeholder}:
it overrides every row), the row's column of that name (`id`, `image`, `mask`, `prompt`, and
any request parameter), the entry's template filled from the row's columns, the defaults.
Several images in one cell are separated by `|`. Every problem of a row is located as
FILE:LINE with its column, and all rows are checked before anything is reported.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from types import MappingProxyType

from pipeline.core.errors import Problem
from pipeline.core.plan import DEFAULT_FINISH, Finish, Item, Location, ParamValue
from pipeline.cost.models import size_problem
from pipeline.manifest.exports import Cell, Export, read_export
from pipeline.manifest.schema import MAX_IMAGES, FromItem, Params

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_WHOLE = re.compile(r"[0-9]+\Z")
# Request parameters a column may set, and how its text becomes the form field's value.
_INTEGERS = {"n": 1, "output_compression": 0}  # name: least value
PARAM_COLUMNS = tuple(name for name in Params.model_fields if name != "extra")
_TEMPLATE_KEYS = ("id", "image", "mask", "prompt")

Absolute = Callable[[str], Location]


def expand_rows(
    spec: FromItem,
    index: int,
    *,
    export_path: Location,
    params: dict[str, ParamValue],
    overrides: frozenset[str],
    default_prompt: str | None,
    absolute: Absolute,
    finish: Finish = DEFAULT_FINISH,
) -> tuple[list[Item], list[Problem]]:
    """The items of one `from:` entry. `params` are the defaults with the entry's own
    parameters laid over them; `overrides` names the parameters the entry set itself (a row
    cannot change those)."""
    where = f"items[{index}] (from {spec.source})"
    export = read_export(export_path, spec.source, where)
    problems = list(export.problems)
    templates = {key: getattr(spec, key) for key in _TEMPLATE_KEYS if getattr(spec, key)}
    bad = _unknown_placeholders(templates, export, where)
    if bad or (not export.rows and export.problems):
        return [], problems + bad
    if not export.rows:
        fix = "export at least one row below the header"
        return [], [*problems, Problem(where, f"{spec.source} has no rows", fix)]
    shared = MappingProxyType(params)
    items = []
    for line, row in export.rows:
        here = f"{export.shown}:{line}"
        fields = {name: _text(cell) for name, cell in row.items()}
        row_params, row_problems = _row_params(row, overrides, here)
        problems += row_problems
        fill = _Filler(fields, here)
        images, image_problems = _images(
            templates.get("image"), row, fill, here, absolute, "image" in export.columns
        )
        problems += image_problems
        prompt = _pick("prompt", templates, row, fill) or default_prompt
        mask = _pick("mask", templates, row, fill)
        ident = _pick("id", templates, row, fill)
        problems += fill.problems
        if image_problems:
            continue
        if not images:
            problems += _generation_problems(here, ident, mask)
            if not ident or mask:
                continue
        item = Item(
            id=ident or images[0].stem,
            images=tuple(images),
            prompt=prompt or "",
            params=MappingProxyType({**params, **row_params}) if row_params else shared,
            mask=absolute(mask) if mask else None,
            where=here,
            finish=finish,
        )
        if not prompt:
            problems.append(
                Problem(
                    here,
                    "has no prompt (the prompt column is empty)",
                    "fill the cell, or give prompt: on the from: entry or under defaults:",
                )
            )
        if not item.model:
            problems.append(
                Problem(here, "has no model", "set model: under defaults: or add a model column")
            )
        size = item.params.get("size")
        refused = size_problem(item.model, size) if isinstance(size, str) else None
        if refused:
            problems.append(Problem(here, *refused))
        items.append(item)
    return items, problems


def _generation_problems(here: str, ident: str | None, mask: str | None) -> list[Problem]:
    """A row without image is a generation: it needs an id and takes no mask."""
    problems = []
    if not ident:
        fix = "add an id column or id: (a template such as {sku}), or an image column"
        problems.append(Problem(here, "has no image and no id: a generation needs an id", fix))
    if mask:
        fix = "add an image column (the mask marks where to edit it), or remove mask"
        problems.append(Problem(here, "has a mask but no image", fix))
    return problems


class _Filler:
    """Fills one row's templates; a placeholder whose cell is empty is a problem of the row."""

    def __init__(self, fields: dict[str, str], here: str):
        self.fields = fields
        self.here = here
        self.problems: list[Problem] = []

    def __call__(self, template: str, key: str) -> str:
        if "{" not in template:
            return template
        return _PLACEHOLDER.sub(lambda m: self._cell(m.group(1), key), template)

    def _cell(self, name: str, key: str) -> str:
        value = self.fields.get(name)
        if value is None:
            self.problems.append(
                Problem(
                    self.here,
                    f"column {name}: is empty, and {key}: uses it",
                    "fill the cell, or change the template",
                )
            )
            return ""
        return value


def _pick(key: str, templates: dict, row: dict[str, Cell], fill: _Filler) -> str | None:
    template = templates.get(key)
    if template is not None and "{" not in template:
        return template  # a literal on the entry overrides every row
    if key in row:
        return fill.fields[key]
    return fill(template, key) if template is not None else None


def _images(
    template: list[str] | None,
    row: dict[str, Cell],
    fill: _Filler,
    here: str,
    absolute: Absolute,
    has_column: bool,
) -> tuple[list[Location], list[Problem]]:
    literal = template is not None and not any("{" in t for t in template)
    if literal:
        names = list(template)
    elif "image" in row:
        cell = row["image"]
        names = list(cell) if isinstance(cell, list) else str(cell).split("|")
    elif template is not None:
        names = [part for t in template for part in fill(t, "image").split("|")]
    elif not has_column:
        return [], []  # no image column and no image template: the rows are generations
    else:
        fix = "fill the image column, or give image: (a template such as images/{sku}.jpg)"
        return [], [Problem(here, "has no image (no image column, or it is empty)", fix)]
    names = [name.strip() for name in names if name.strip()]
    if not names:
        return [], [Problem(here, "column image: is empty", "name at least one image")]
    if len(names) > MAX_IMAGES:
        fix = "split the item, or keep the images that matter most"
        return [], [Problem(here, f"column image: has {len(names)} images; at most 16", fix)]
    return [absolute(name) for name in names], []


def _row_params(
    row: dict[str, Cell], overrides: frozenset[str], here: str
) -> tuple[dict[str, ParamValue], list[Problem]]:
    params: dict[str, ParamValue] = {}
    problems = []
    for name in PARAM_COLUMNS:
        if name not in row or name in overrides:
            continue
        cell = row[name]
        if name in _INTEGERS:
            value = _integer(cell)
            least = _INTEGERS[name]
            if value is None or value < least or (name == "output_compression" and value > 100):
                bounds = "from 0 to 100" if name == "output_compression" else f"{least} or more"
                problems.append(
                    Problem(
                        here,
                        f"column {name}: {cell!r} is not a whole number {bounds}",
                        "correct the cell, or leave it empty for the default",
                    )
                )
                continue
            params[name] = value
        elif isinstance(cell, list | bool):
            problems.append(
                Problem(here, f"column {name}: must be text, not {cell!r}", "correct the cell")
            )
        else:
            params[name] = _text(cell)
    return params, problems


def _integer(cell: Cell) -> int | None:
    if isinstance(cell, bool):
        return None
    if isinstance(cell, int):
        return cell
    if isinstance(cell, float):
        return int(cell) if cell.is_integer() else None
    text = str(cell).strip()
    return int(text) if _WHOLE.match(text) else None


def _unknown_placeholders(templates: dict, export: Export, where: str) -> list[Problem]:
    """Placeholders that name no column of the export: one problem per key, not per row."""
    if not export.columns:
        return []
    columns = set(export.columns)
    problems = []
    for key, template in templates.items():
        for text in template if isinstance(template, list) else [template]:
            for name in _PLACEHOLDER.findall(text):
                if name in columns:
                    continue
                close = difflib.get_close_matches(name, export.columns, n=1)
                fix = (
                    f"did you mean {{{close[0]}}}?"
                    if close
                    else "the columns are " + ", ".join(export.columns)
                )
                problems.append(Problem(f"{where}.{key}", f"{{{name}}} is not a column", fix))
    return problems


def _text(cell: Cell) -> str:
    if isinstance(cell, list):
        return "|".join(cell)
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)
