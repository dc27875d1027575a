"""The report as one self-contained HTML page for reviewing a run in a browser: the summary,
then a grid of every item's inputs, mask and outputs with its prompt, cost and state, to filter
by state, sort by any numeric figure of its verdict (cost, latency, drift) and open in a
compare view. Thumbnails are embedded and link to the full files; the page needs no network
and names no absolute path of the machine that wrote it.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from PIL import Image, ImageOps, features

from pipeline.core.plan import Plan
from pipeline.report.aggregate import Report
from pipeline.report.items import ItemView, Picture, item_views
from pipeline.report.text import ERROR_HEADS, RUN_HEADS, error_rows, run_rows, summary_rows

THUMB_PX = 160
# Decoded whole, an image over this takes over 64 MB (RGBA): no preview rather than a report
# that needs gigabytes (the API's largest answer, 3840x3840, is just under it).
THUMB_MAX_PIXELS = 4096 * 4096
STATES = ("done", "failed", "pending")
# What the page can sort by: (key, label, the verdict line's field). A field that no item
# has is not offered; a new numeric field of `succeeded` lines needs only a row here.
SORT_FIELDS = (
    ("cost", "cost", "cost_usd"),
    ("latency", "latency", "latency_s"),
    ("drift", "drift", "drift"),
    ("attempt", "attempts", "attempt"),
)


@dataclass(frozen=True, slots=True)
class Thumb:
    uri: str  # a small WEBP (or JPEG) as a data: URI
    width: int  # the file's own size
    height: int


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
    views = item_views(records, plan, out_dir, inputs_dir)
    pictures = {(p.path, p.mask) for v in views for p in v.inputs + v.answers + v.outputs if p.path}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        keys = list(pictures)
        thumbs = dict(zip(keys, pool.map(lambda k: thumbnail(*k), keys), strict=True))
    files = resources.files("pipeline").joinpath("report")
    css = files.joinpath("report.css").read_text("utf-8")
    script = files.joinpath("report.js").read_text("utf-8")
    title = escape(plan.name if plan else "editbatch report")
    page_dir = path.resolve().parent
    parts = [
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{css}</style></head><body>",
        f"<h1>{title}</h1>",
        _summary(report),
        _controls(views),
        '<main class="items">',
        *(_item_html(v, thumbs, page_dir) for v in views),
        "</main>",
        _compare_dialog(),
        f"<script>{script}</script></body></html>\n",
    ]
    bases = [b for b in (inputs_dir, out_dir) if isinstance(b, Path)]
    page = _scrub("\n".join(parts), bases)
    # A file name that is not UTF-8 (a glob can match one) shows with a replacement mark.
    path.write_text(page, encoding="utf-8", errors="replace")


def thumbnail(path: Path, mask: bool = False) -> Thumb | None:
    """A small picture of the image and its own size, or None when it is missing, unreadable
    or too large to preview. A mask is drawn as what it means: white where the edit goes,
    black where pixels stay. A huge image is never decoded whole: a JPEG is decoded at a
    reduced scale (draft), and anything still over THUMB_MAX_PIXELS is not decoded at all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                im.draft("RGB", (THUMB_PX, THUMB_PX))  # JPEG: decode at 1/2, 1/4 or 1/8
                if im.width * im.height > THUMB_MAX_PIXELS:
                    return None
                if mask:
                    view = _mask_view(im)
                else:
                    view = im.convert("RGBA" if _has_alpha(im) else "RGB")
                view.thumbnail((THUMB_PX, THUMB_PX), reducing_gap=2.0)
                buf = io.BytesIO()
                if features.check("webp"):
                    view.save(buf, "WEBP", quality=60)
                    kind = "webp"
                else:
                    view.convert("RGB").save(buf, "JPEG", quality=70)
                    kind = "jpeg"
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None
    uri = f"data:image/{kind};base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return Thumb(uri, width, height)


def thumbnail_uri(path: Path, mask: bool = False) -> str | None:
    thumb = thumbnail(path, mask)
    return None if thumb is None else thumb.uri


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


def _link(path: Path, page_dir: Path) -> str | None:
    """The file as a link relative to the page, so it opens from disk wherever the page and
    the files move together; None when there is no file."""
    try:
        if not path.is_file():
            return None
        rel = os.path.relpath(path.resolve(), page_dir)
    except (OSError, ValueError):  # another drive (Windows), a loop of links
        return None
    return quote(os.fsencode(Path(rel).as_posix()))  # a name's own bytes, UTF-8 or not


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


def _controls(views: list[ItemView]) -> str:
    # Radio buttons placed before <main> filter it through CSS sibling selectors; sorting is
    # the page's one script (report.js), over the items' data-sort-* attributes.
    counts = {s: sum(1 for v in views if v.state == s) for s in STATES}
    radios = ['<input type="radio" name="show" id="show-all" checked>']
    labels = [f'<label for="show-all">all ({len(views)})</label>']
    for state in STATES:
        radios.append(f'<input type="radio" name="show" id="show-{state}">')
        labels.append(f'<label for="show-{state}">{state} ({counts[state]})</label>')
    options = ['<option value="">manifest order</option>']
    for key, label, _ in _sort_fields(views):
        options.append(f'<option value="{key}:desc">{label}, highest first</option>')
        options.append(f'<option value="{key}:asc">{label}, lowest first</option>')
    return (
        "".join(radios)
        + '<nav class="filters">show: '
        + " ".join(labels)
        + ' <label class="sort">sort: <select id="sort">'
        + "".join(options)
        + "</select></label></nav>"
    )


def _sort_fields(views: list[ItemView]) -> list[tuple[str, str, str]]:
    return [row for row in SORT_FIELDS if any(_number(v.final, row[2]) is not None for v in views)]


def _number(final: dict | None, name: str) -> float | None:
    value = (final or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _item_html(view: ItemView, thumbs: dict, page_dir: Path) -> str:
    final = view.final or {}
    facts = [f'<span class="badge {view.state}">{view.state}</span>']
    if view.route:
        facts.append(escape(view.route))
    if final.get("model"):
        facts.append(escape(str(final["model"])))
    if final.get("cost_usd") is not None:
        notes = []
        if final.get("cost_estimated"):
            notes.append("estimated")
        if final.get("usage_suspect"):
            notes.append("usage_suspect")
        if final.get("simulated"):
            notes.append("simulated")
        note = f" ({', '.join(notes)})" if notes else ""
        facts.append(f'<span class="cost">${float(final["cost_usd"]):.4f}{note}</span>')
    if final.get("returned") is not None:
        facts.append(f"{escape(str(final['returned']))} image(s) returned, fewer than asked")
    attempts = final.get("attempt") or final.get("attempts")
    if attempts:
        facts.append(f"attempt {int(attempts)}")
    if final.get("latency_s") is not None:
        facts.append(f"{float(final['latency_s']):.1f}s")
    if _number(final, "drift") is not None:
        facts.append(f"drift {float(final['drift']):.3f}")
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
    figures = [_figure(p, thumbs, page_dir) for p in view.inputs]
    figures += [_figure(p, thumbs, page_dir, output=True, answer=True) for p in view.answers]
    figures += [_figure(p, thumbs, page_dir, output=True) for p in view.outputs]
    plain = [p for p in view.inputs if not p.mask]
    if plain and view.outputs and plain[0].path and view.outputs[0].path:
        facts.append('<button type="button" class="compare">compare</button>')
    sorts = "".join(
        f' data-sort-{key}="{_number(final, name)!r}"'
        for key, _, name in SORT_FIELDS
        if _number(final, name) is not None
    )
    return (
        f'<article class="item {view.state}" id="item-{escape(view.id)}"{sorts}>'
        f"<header><h3>{escape(view.id)}</h3> {' · '.join(facts)}</header>{prompt}{reason}"
        f'<div class="pictures">{"".join(figures)}</div></article>'
    )


def _figure(
    pic: Picture, thumbs: dict, page_dir: Path, output: bool = False, answer: bool = False
) -> str:
    thumb: Thumb | None = thumbs.get((pic.path, pic.mask)) if pic.path else None
    role = "answer" if answer else "output" if output else ("mask" if pic.mask else "input")
    size = ""
    if thumb is None:
        what = "missing" if pic.path is None or not pic.path.exists() else "unreadable"
        body = f'<div class="missing">{what}</div>'
    else:
        href = _link(pic.path, page_dir)
        size = f" · {thumb.width}×{thumb.height}"
        full = f' data-full="{escape(href)}"' if href else ""
        body = (
            f'<img src="{thumb.uri}" alt="{escape(pic.label)} {escape(pic.shown)}" '
            f'data-role="{"output" if output else "input"}"{full} '
            f'width="{_fit(thumb)[0]}" height="{_fit(thumb)[1]}" decoding="async">'
        )
        if href:
            body = f'<a href="{escape(href)}" target="_blank" title="open the file">{body}</a>'
    return (
        f'<figure class="{role}">{body}<figcaption>{escape(pic.label)}{size}<br>'
        f"<small>{escape(pic.shown)}</small></figcaption></figure>"
    )


def _fit(thumb: Thumb) -> tuple[int, int]:
    """The thumbnail's displayed size: the file's aspect within THUMB_PX (no layout shift)."""
    scale = THUMB_PX / max(thumb.width, thumb.height, 1)
    return max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))


def _compare_dialog() -> str:
    return (
        '<dialog id="compare"><form method="dialog" class="bar"><b id="cmp-title"></b> '
        '<label>input <input type="range" id="cmp-slider" min="0" max="100" value="50"> '
        'output</label> <button type="button" id="cmp-toggle">toggle</button> '
        '<button id="cmp-close">close</button></form>'
        '<div class="stage"><img id="cmp-in" alt="input"><img id="cmp-out" alt="output">'
        "</div></dialog>"
    )
