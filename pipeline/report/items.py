"""The items a report page shows: for every item of the plan (or of the ledger, without a
manifest) its state, prompt, last verdict, and the input, mask and output files placed on this
machine, with the paths the page may show (relative, never absolute).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.plan import Item, Location, Plan, Remote
from pipeline.report.aggregate import item_route, item_state, latest_by_item


@dataclass(slots=True)
class Picture:
    label: str
    shown: str  # the path as the page shows it: relative, never absolute
    path: Path | None  # None when the ledger's path cannot be placed on this machine
    mask: bool = False


@dataclass(slots=True)
class ItemView:
    id: str
    state: str
    prompt: str | None
    final: dict | None
    route: str = ""  # e.g. "generations · azure": the endpoint and provider it went to
    inputs: list[Picture] = field(default_factory=list)
    outputs: list[Picture] = field(default_factory=list)
    # strict items: the model's images as it returned them, before the input's pixels went
    # back outside the mask (shown between the mask and the final output)
    answers: list[Picture] = field(default_factory=list)


def _shown(path: Location, base: Location | None) -> str:
    """A path as the page may show it: relative to its folder, else its name alone; a remote
    input as its URL (as it may be shown)."""
    if isinstance(path, Remote):
        return str(path)
    if isinstance(base, Remote):
        return base.child(path.as_posix()).__str__()
    if base is not None and path.is_absolute():
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            pass
    return path.name if path.is_absolute() or ".." in path.parts else path.as_posix()


def _placed(recorded: str, base: Location | None) -> Path | None:
    """A ledger's relative path on this machine, refusing any that leaves its folder (and
    None for outputs on object storage: the page previews local files only)."""
    rel = Path(recorded)
    if base is None or isinstance(base, Remote) or rel.is_absolute() or ".." in rel.parts:
        return None
    return base / rel


def item_views(
    records: Sequence[dict], plan: Plan | None, out_dir: Location | None, inputs_dir: Path | None
) -> list[ItemView]:
    latest = latest_by_item(records)
    recorded_inputs = {
        r["item"]: r["inputs"] for r in records if r.get("event") == "succeeded" and r.get("inputs")
    }
    planned = {item.id: item for item in plan.items} if plan else {}
    views = []
    for item_id in dict.fromkeys([*planned, *latest]):
        final = latest.get(item_id)
        item = planned.get(item_id)
        view = ItemView(item_id, item_state(final), item.prompt if item else None, final)
        view.route = item_route(final, item, plan)
        if item is not None:
            view.inputs = _planned_inputs(item, inputs_dir)
        else:
            view.inputs = _recorded_inputs(recorded_inputs.get(item_id, []), inputs_dir)
        if final is not None and view.state == "done":
            outputs = final.get("outputs") or []
            for k, out in enumerate(outputs):
                label = "output" if len(outputs) == 1 else f"output {k + 1}"
                shown = _shown(Path(out["path"]), out_dir)
                view.outputs.append(Picture(label, shown, _placed(str(out["path"]), out_dir)))
            answers = final.get("answers") or []
            for k, out in enumerate(answers):
                label = "model's answer" if len(answers) == 1 else f"model's answer {k + 1}"
                shown = _shown(Path(out["path"]), out_dir)
                view.answers.append(Picture(label, shown, _placed(str(out["path"]), out_dir)))
        views.append(view)
    return views


def _planned_inputs(item: Item, inputs_dir: Path | None) -> list[Picture]:
    pictures = [
        Picture(
            "input" if len(item.images) == 1 else f"input {k + 1}",
            _shown(p, inputs_dir),
            None if isinstance(p, Remote) else p,
        )
        for k, p in enumerate(item.images)
    ]
    if item.mask is not None:
        mask = item.mask
        local = None if isinstance(mask, Remote) else mask
        pictures.append(Picture("mask", _shown(mask, inputs_dir), local, mask=True))
    return pictures


def _recorded_inputs(inputs: list[dict], inputs_dir: Path | None) -> list[Picture]:
    """Without the manifest: the input files as the succeeded line recorded them."""
    pictures = []
    for rec in inputs:
        mask = rec.get("role") == "mask"
        if not isinstance(rec.get("path"), str):  # a remote input: its URL, no preview
            shown = str(rec.get("url", "?"))
            pictures.append(Picture("mask" if mask else "input", shown, None, mask))
            continue
        path = str(rec["path"])
        # The runner records inputs outside the manifest's folder by their absolute path.
        place = Path(path) if Path(path).is_absolute() else _placed(path, inputs_dir)
        shown = _shown(Path(path), inputs_dir)
        pictures.append(Picture("mask" if mask else "input", shown, place, mask))
    return pictures
