"""From the validated manifest to plan items: globs expanded, defaults laid under each item's
own parameters, placeholders filled; then the rules that need every item at once (unique ids,
names that stay inside the output folder, no two items writing the same file).
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType

from pipeline.core.errors import Problem
from pipeline.core.plan import DEFAULT_FINISH, Finish, Item, Location, ParamValue, Remote, is_url
from pipeline.cost.models import size_problem
from pipeline.manifest.schema import FromItem, GlobItem, ImageItem, Params
from pipeline.manifest.sources import expand_rows
from pipeline.outputs.files import render_stem

_PARAM_ORDER = tuple(Params.model_fields)  # the form fields' order, whatever the YAML's
_PARAM_FIELDS = frozenset(_PARAM_ORDER)
_SEPARATORS = re.compile(r"[/\\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GLOB_FIELD = re.compile(r"\{(stem|name|parent)\}")
_MAX_NAME_BYTES = 200  # file names stop at 255 bytes; leave room for "-10.jpeg" and temp names


def request_params(spec: Params, under: dict[str, ParamValue]) -> dict[str, ParamValue]:
    """`under` (the defaults) with the keys `spec` sets laid over it; null removes a key and
    `extra:` fields join the others."""
    params = dict(under)
    given = spec.model_fields_set
    for name in _PARAM_ORDER:
        if name not in given:
            continue
        value = getattr(spec, name)
        if name == "extra":
            params.update(value or {})
        elif value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return params


def expand_items(
    specs: Iterable[tuple[int, ImageItem | GlobItem | FromItem]],
    *,
    base: Path,
    defaults: dict[str, ParamValue],
    default_prompt: str | None,
    finish: Finish = DEFAULT_FINISH,
) -> tuple[list[Item], list[Problem]]:
    """Plan items in manifest order (a glob's matches sorted), and what is wrong with them."""
    items: list[Item] = []
    problems: list[Problem] = []
    shared = MappingProxyType(defaults)  # one mapping for every item that sets no parameter
    root = str(base).rstrip("/")
    known: dict[str, Location] = {}  # a mask or image named by many items becomes one Path
    folders: dict[str, Path] = {}  # parsed once for all the files in them (see _as_path)
    refused: dict[tuple[str, str], tuple[str, str] | None] = {}  # size_problem by model, size

    def absolute(path: str) -> Location:
        if path not in known:
            known[path] = _absolute(root, path, folders)
        return known[path]

    for index, spec in specs:
        own = spec.model_fields_set & _PARAM_FIELDS
        params = MappingProxyType(request_params(spec, defaults)) if own else shared
        prompt = spec.prompt or default_prompt
        if isinstance(spec, ImageItem):
            images = tuple(map(absolute, spec.image or ()))
            if not images:
                problems += _generation_problems(spec, index)
            item = Item(
                id=spec.id or (images[0].stem if images else f"item-{index}"),
                images=images,
                prompt=prompt or "",
                params=params,
                mask=absolute(spec.mask) if spec.mask else None,
                where=f"items[{index}]",
                finish=finish,
            )
            problems += _item_problems(item, prompt, refused)
            items.append(item)
            continue
        if isinstance(spec, FromItem):
            if is_url(spec.source):
                fix = "download the export beside the manifest; its images may be URLs"
                problems.append(Problem(f"items[{index}]", "from: must be a local file", fix))
                continue
            rows, row_problems = expand_rows(
                spec,
                index,
                export_path=_absolute(root, spec.source),
                params=dict(params),
                overrides=frozenset(own),
                default_prompt=default_prompt,
                absolute=absolute,
                finish=finish,
            )
            items += rows
            problems += row_problems
            continue
        where = f"items[{index}] (glob {spec.glob})"
        matches = _glob(base, spec.glob)
        if not matches:
            problems.append(
                Problem(
                    where,
                    "matches no file",
                    f"check the pattern; it is relative to the manifest's folder {base}",
                )
            )
        for match in matches:
            path = _absolute(root, match, folders)
            folder, name = os.path.split(str(path))
            fields = {
                "stem": os.path.splitext(name)[0],
                "name": name,
                "parent": os.path.basename(folder),
            }
            item = Item(
                id=_fill(spec.id, fields) if spec.id else fields["stem"],
                images=(path,),
                prompt=_fill(prompt, fields) if prompt else "",
                params=params,
                mask=absolute(_fill(spec.mask, fields)) if spec.mask else None,
                where=where,
                finish=finish,
            )
            problems += _item_problems(item, prompt, refused)
            items.append(item)
    return items, problems


def label(item: Item) -> str:
    """How problems name an item: "items[3] (sku-1004)", "items[2] (shoe, glob shoes/*.jpg)"."""
    head, glob_part, pattern = item.where.partition(" (glob ")
    return f"{head} ({item.id}, glob {pattern}" if glob_part else f"{head} ({item.id})"


def check_names(items: list[Item], template: str) -> list[Problem]:
    """Unique ids, and output names that are plain, distinct and inside the output folder."""
    problems: list[Problem] = []
    ids: dict[str, Item] = {}
    names: dict[str, Item] = {}
    for item in items:
        reason = unsafe_name(item.id)
        if reason:
            problems.append(
                Problem(
                    item.where,
                    f"id {item.id!r} {reason}",
                    "use a plain name (letters, digits, - and _), or set id: on the item",
                )
            )
            continue
        first = ids.setdefault(item.id, item)
        if first is not item:
            problems.append(
                Problem(
                    label(item),
                    f"the id {item.id!r} is also the id of {first.where}",
                    "ids must be unique: set a different id: on one of them"
                    + (
                        " (a glob item takes id: templates such as '{parent}-{stem}')"
                        if " (glob " in item.where
                        else ""
                    ),
                )
            )
            continue
        if template == "{id}":
            stem, reason = item.id, None  # the id is checked already
        else:
            try:
                stem = render_stem(template, item)
            except ValueError as exc:
                problems.append(Problem(label(item), str(exc), ""))
                continue
            reason = next(filter(None, map(unsafe_name, stem.split("/"))), None)
        if reason:
            problems.append(
                Problem(label(item), f"its output name {stem!r} {reason}", "change output.name")
            )
            continue
        # Folded case: on macOS and Windows "A.png" and "a.png" are the same file.
        other = names.setdefault(stem.casefold(), item)
        if other is not item:
            problems.append(
                Problem(
                    label(item),
                    f"its output name {stem!r} is also the output name of {label(other)}"
                    + (" (case aside)" if stem != render_stem(template, other) else ""),
                    "give each item its own name: include {id} in output.name, or change an id",
                )
            )
    return problems


def unsafe_name(name: str) -> str | None:
    """Why `name` cannot be a single file name inside the output folder, or None."""
    if not name:
        return "is empty"
    if name in (".", "..") or _SEPARATORS.search(name):
        return "would write outside the output folder"
    if name[0] == ".":
        return "would make a hidden file (it starts with a dot)"
    if _CONTROL.search(name):
        return "holds control characters"
    if len(name) > _MAX_NAME_BYTES // 4 and len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        return f"is longer than {_MAX_NAME_BYTES} bytes, too long for a file name"
    return None


def _generation_problems(spec: ImageItem, index: int) -> list[Problem]:
    """An item without an image is a generation: it needs its own id and takes no mask."""
    where = f"items[{index}]" + (f" ({spec.id})" if spec.id else "")
    problems = []
    if spec.id is None:
        problems.append(
            Problem(
                where,
                "has no image and no id: a generation's id cannot come from a file name",
                "set id: on the item (or add image: to make it an edit)",
            )
        )
    if spec.mask is not None:
        problems.append(
            Problem(
                f"{where}.mask",
                "a mask needs an image: an item without image is a generation",
                "add image: (the mask marks where to edit it), or remove mask",
            )
        )
    return problems


def _item_problems(
    item: Item, prompt: str | None, sizes: dict[tuple[str, str], tuple[str, str] | None]
) -> list[Problem]:
    problems = []
    size = item.params.get("size")
    refused = None
    if isinstance(size, str):
        model = item.model
        if (model, size) not in sizes:  # most items share one model and size
            sizes[model, size] = size_problem(model, size)
        refused = sizes[model, size]
    if refused:
        problems.append(Problem(f"{label(item)}.size", *refused))
    if not prompt:
        problems.append(
            Problem(
                label(item), "has no prompt", "add prompt: to the item, or a prompt under defaults:"
            )
        )
    if not item.model:
        problems.append(
            Problem(
                label(item),
                "has no model",
                "set model: under defaults: (for example gpt-image-1) or on the item",
            )
        )
    return problems


def _glob(base: Path, pattern: str) -> list[str]:
    """Matching files (not folders), sorted, as the pattern gives them (relative or absolute)."""
    pattern = os.path.expanduser(pattern)
    matches = glob.glob(pattern, root_dir=base, recursive=True)
    return sorted(m for m in matches if os.path.isfile(os.path.join(base, m)))


def _fill(template: str, fields: dict[str, str]) -> str:
    if "{" not in template:
        return template
    return _GLOB_FIELD.sub(lambda m: fields[m.group(1)], template)


def absolute(base: Path, path: str) -> Location:
    """`path` from the manifest (relative to its folder `base`, or absolute, or ~/...), or the
    URL it is (http(s)://, s3://, gs://, az://, ...)."""
    return _absolute(str(base).rstrip("/"), path)


def _absolute(base: str, path: str, folders: dict[str, Path] | None = None) -> Location:
    """base/path as an absolute, normalized Path; the plain case without os.path's overhead.
    `folders`: Paths of folders already made, to make their files' Paths from."""
    if is_url(path):
        return Remote(path)
    if path[0] == "~":
        path = os.path.expanduser(path)
    joined = path if path[0] == "/" else f"{base}/{path}"
    if "/." in joined or "//" in joined or joined[-1] == "/":
        joined = os.path.normpath(joined)
    return Path(joined) if folders is None else _as_path(joined, folders)


# Python 3.11's Path() parses every component of its string (a third of the expansion of a
# 100,000-item manifest); a file's Path made from its folder's, parsed once, costs a list
# append. 3.12 parses lazily: Path() is as cheap there.
_CHILD = getattr(Path, "_make_child_relpath", None) if sys.version_info < (3, 12) else None


def _as_path(normalized: str, folders: dict[str, Path]) -> Path:
    """Path(normalized) for an absolute path in normal form (no //, /./, /../ or trailing /),
    so that its last part is a plain file name."""
    if _CHILD is None:
        return Path(normalized)
    folder, _, name = normalized.rpartition("/")
    parent = folders.get(folder)
    if parent is None:
        parent = folders[folder] = Path(folder or "/")
    return _CHILD(parent, name)
