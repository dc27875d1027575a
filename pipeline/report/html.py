"""The report as one self-contained HTML page for reviewing a run in a browser: the summary,
then every item's inputs, mask and outputs side by side with its prompt, cost and state.
Thumbnails are made from the files and embedded; the page needs no network and names no
absolute path of the machine that wrote it.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path

from PIL import Image, ImageOps, features

from pipeline.core.plan import Item, Plan
from pipeline.report.aggregate import Report, item_state, latest_by_item
from pipeline.report.text import ERROR_HEADS, RUN_HEADS, error_rows, run_rows, summary_rows

THUMB_PX = 160
STATES = ("done", "failed", "pending")


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
    inputs: list[Picture] = field(default_factory=list)
    outputs: list[Picture] = field(default_factory=list)


def write_html(
    report: Report,
    records: Sequence[dict],
    plan: Plan | None,
    path: Path,
    *,
    out_dir: Path | None = None,
    inputs_dir: Path | None = None,
) -> None:
    """Write the page to `path`. Outputs are looked up under `out_dir` (default: the plan's
    output folder), inputs by the plan or else by the ledger's paths under `inputs_dir` (the
    manifest's folder). A file not found shows as a "missing" box."""
    out_dir = out_dir or (plan.output.dir if plan else None)
    inputs_dir = inputs_dir or (plan.manifest_path.parent if plan else None)
    views = _item_views(records, plan, out_dir, inputs_dir)
    pictures = {(p.path, p.mask) for v in views for p in v.inputs + v.outputs if p.path}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        keys = list(pictures)
        thumbs = dict(zip(keys, pool.map(lambda k: thumbnail_uri(*k), keys), strict=True))
    css = resources.files("pipeline").joinpath("report/report.css").read_text("utf-8")
    title = escape(plan.name if plan else "editbatch report")
    parts = [
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{css}</style></head><body>",
        f"<h1>{title}</h1>",
        _summary(report),
        _filters(views),
        '<main class="items">',
        *(_item_html(v, thumbs) for v in views),
        "</main></body></html>\n",
    ]
    page = _scrub("\n".join(parts), [b for b in (inputs_dir, out_dir) if b is not None])
    path.write_text(page, encoding="utf-8")


def thumbnail_uri(path: Path, mask: bool = False) -> str | None:
    """A small WEBP of the image as a data: URI, or None when it is missing or unreadable.
    A mask is drawn as what it means: white where the edit goes, black where pixels stay."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (THUMB_PX, THUMB_PX))  # JPEG: decode at a reduced scale
            if mask:
                view = _mask_view(im)
            else:
                view = im.convert("RGBA" if _has_alpha(im) else "RGB")
            view.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            if features.check("webp"):
                view.save(buf, "WEBP", quality=60)
                kind = "webp"
            else:
                view.convert("RGB").save(buf, "JPEG", quality=70)
                kind = "jpeg"
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return f"data:image/{kind};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _scrub(page: str, bases: list[Path]) -> str:
    """Make relative any absolute path that server or OS messages carried into the page."""
    swaps = [(f"{base}{os.sep}", "") for base in bases] + [(f"{Path.home()}{os.sep}", "~/")]
    for old, new in sorted(swaps, key=lambda s: -len(s[0])):  # the deepest folder first
        page = page.replace(old, new).replace(escape(old), new)
    return page


def _has_alpha(im: Image.Image) -> bool:
    return "A" in im.getbands() or "transparency" in im.info


def _mask_view(im: Image.Image) -> Image.Image:
    if _has_alpha(im):
        return ImageOps.invert(im.convert("RGBA").getchannel("A"))
    return im.convert("L")  # black and white masks already read white = edit


def _shown(path: Path, base: Path | None) -> str:
    """A path as the page may show it: relative to its folder, else its name alone."""
    if base is not None and path.is_absolute():
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            pass
    return path.name if path.is_absolute() or ".." in path.parts else path.as_posix()


def _placed(recorded: str, base: Path | None) -> Path | None:
    """A ledger's relative path on this machine, refusing any that leaves its folder."""
    rel = Path(recorded)
    if base is None or rel.is_absolute() or ".." in rel.parts:
        return None
    return base / rel


def _item_views(
    records: Sequence[dict], plan: Plan | None, out_dir: Path | None, inputs_dir: Path | None
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
        views.append(view)
    return views


def _planned_inputs(item: Item, inputs_dir: Path | None) -> list[Picture]:
    pictures = [
        Picture("input" if len(item.images) == 1 else f"input {k + 1}", _shown(p, inputs_dir), p)
        for k, p in enumerate(item.images)
    ]
    if item.mask is not None:
        pictures.append(Picture("mask", _shown(item.mask, inputs_dir), item.mask, mask=True))
    return pictures


def _recorded_inputs(inputs: list[dict], inputs_dir: Path | None) -> list[Picture]:
    """Without the manifest: the input files as the succeeded line recorded them."""
    pictures = []
    for rec in inputs:
        mask = rec.get("role") == "mask"
        path = str(rec["path"])
        # The runner records inputs outside the manifest's folder by their absolute path.
        place = Path(path) if Path(path).is_absolute() else _placed(path, inputs_dir)
        shown = _shown(Path(path), inputs_dir)
        pictures.append(Picture("mask" if mask else "input", shown, place, mask))
    return pictures


def _summary(report: Report) -> str:
    html = '<section class="summary">' + _table(None, summary_rows(report))
    html += "<h2>Runs</h2>" + _table(RUN_HEADS, run_rows(report))
    if report.errors:
        html += "<h2>Most common errors</h2>" + _table(ERROR_HEADS, error_rows(report))
    return html + "</section>"


def _table(heads: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>" if heads else ""
    cell = "th" if heads is None else "td"  # a headless table is label/value pairs
    body = "".join(
        f"<tr><{cell}>{escape(row[0])}</{cell}>"
        + "".join(f"<td>{escape(c)}</td>" for c in row[1:])
        + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


def _filters(views: list[ItemView]) -> str:
    # Radio buttons placed before <main> filter it through CSS sibling selectors: no script.
    counts = {s: sum(1 for v in views if v.state == s) for s in STATES}
    radios = ['<input type="radio" name="show" id="show-all" checked>']
    labels = [f'<label for="show-all">all ({len(views)})</label>']
    for state in STATES:
        radios.append(f'<input type="radio" name="show" id="show-{state}">')
        labels.append(f'<label for="show-{state}">{state} ({counts[state]})</label>')
    return "".join(radios) + '<nav class="filters">show: ' + " ".join(labels) + "</nav>"


def _item_html(view: ItemView, thumbs: dict[tuple[Path, bool], str | None]) -> str:
    final = view.final or {}
    facts = [f'<span class="badge {view.state}">{view.state}</span>']
    if final.get("model"):
        facts.append(escape(str(final["model"])))
    if final.get("cost_usd") is not None:
        estimated = " (estimated)" if final.get("cost_estimated") else ""
        suspect = " (usage_suspect)" if final.get("usage_suspect") else ""
        facts.append(f"${float(final['cost_usd']):.4f}{estimated}{suspect}")
    if final.get("returned") is not None:
        facts.append(f"{escape(str(final['returned']))} image(s) returned, fewer than asked")
    attempts = final.get("attempt") or final.get("attempts")
    if attempts:
        facts.append(f"attempt {int(attempts)}")
    if final.get("latency_s") is not None:
        facts.append(f"{float(final['latency_s']):.1f}s")
    prompt = (
        f'<p class="prompt">{escape(view.prompt)}</p>'
        if view.prompt is not None
        else '<p class="prompt unknown">prompt not in the ledger: report on the manifest</p>'
    )
    reason = ""
    if view.state == "failed":
        err = final.get("error") or {}
        head = " ".join(
            escape(str(err[k])) for k in ("class", "http_status", "type", "code") if err.get(k)
        )
        reason = f'<p class="reason"><b>{head}</b> {escape(str(err.get("message") or ""))}</p>'
    figures = [_figure(p, thumbs) for p in view.inputs]
    figures += [_figure(p, thumbs, output=True) for p in view.outputs]
    return (
        f'<article class="item {view.state}" id="item-{escape(view.id)}">'
        f"<header><h3>{escape(view.id)}</h3> {' · '.join(facts)}</header>{prompt}{reason}"
        f'<div class="pictures">{"".join(figures)}</div></article>'
    )


def _figure(pic: Picture, thumbs: dict, output: bool = False) -> str:
    uri = thumbs.get((pic.path, pic.mask)) if pic.path else None
    role = "output" if output else "input"
    if uri is None:
        what = "missing" if pic.path is None or not pic.path.exists() else "unreadable"
        body = f'<div class="missing">{what}</div>'
    else:
        body = (
            f'<img src="{uri}" alt="{escape(pic.label)} {escape(pic.shown)}" '
            f'data-role="{role}" loading="lazy" decoding="async">'
        )
    return (
        f'<figure class="{role}">{body}<figcaption>{escape(pic.label)}<br>'
        f"<small>{escape(pic.shown)}</small></figcaption></figure>"
    )
