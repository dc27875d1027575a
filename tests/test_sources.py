"""`from:` items: one item per row of a CSV, JSONL or JSON export, columns as item keys and
template fields, and every bad row located as FILE:LINE with its column, all at once."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from helpers import make_image

from pipeline.core.errors import ManifestError
from pipeline.manifest.exports import read_export
from pipeline.manifest.load import load_plan

MANIFEST = """\
version: 1
defaults: {model: gpt-image-1, quality: low}
items:
  - from: exports/products.%s
    id: "{sku}"
    prompt: "Put the {title} in {colour} on white marble"
"""


@pytest.fixture
def catalog(tmp_path):
    for sku in ("a1", "b2", "c3"):
        make_image(tmp_path / "images" / f"{sku}.png")
    (tmp_path / "exports").mkdir()
    return tmp_path


def write(folder: Path, suffix: str, body: str, manifest: str = MANIFEST) -> Path:
    (folder / "exports" / f"products.{suffix}").write_text(textwrap.dedent(body))
    path = folder / "job.yaml"
    path.write_text(manifest % suffix if "%s" in manifest else manifest)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_plan(path)
    return [str(p) for p in caught.value.problems]


def test_csv_rows_become_items_with_columns_as_keys_and_template_fields(catalog):
    path = write(
        catalog,
        "csv",
        """\
        sku,title,colour,image,quality,n
        a1,Mug,red,images/a1.png,high,2
        b2,"Shoe, size 42",blue,images/b2.png|images/c3.png,,
        """,
    )
    plan = load_plan(path)
    first, second = plan.items
    assert first.id == "a1" and second.id == "b2"
    assert first.prompt == "Put the Mug in red on white marble"
    assert second.prompt == "Put the Shoe, size 42 in blue on white marble"
    assert first.images == (catalog / "images" / "a1.png",)
    assert second.images == (catalog / "images/b2.png", catalog / "images/c3.png")
    assert dict(first.params) == {"model": "gpt-image-1", "quality": "high", "n": 2}
    assert dict(second.params) == {"model": "gpt-image-1", "quality": "low"}


def test_jsonl_and_json_lists_give_the_same_items_as_csv(catalog):
    rows = [
        {"sku": "a1", "title": "Mug", "colour": "red", "image": "images/a1.png", "n": 2},
        {"sku": "b2", "title": "Shoe", "colour": "blue", "image": ["images/b2.png"]},
    ]
    jsonl = load_plan(write(catalog, "jsonl", "\n".join(map(json.dumps, rows)) + "\n"))
    listed = load_plan(write(catalog, "json", json.dumps(rows, indent=2)))
    for plan in (jsonl, listed):
        assert [i.id for i in plan.items] == ["a1", "b2"]
        assert (
            plan.items[0].n == 2 and plan.items[1].prompt == "Put the Shoe in blue on white marble"
        )


def test_entry_literals_override_the_row_and_templates_fill_from_it(catalog):
    (catalog / "masks").mkdir()
    from helpers import make_mask

    make_mask(catalog / "masks" / "a1.png")
    manifest = """\
    version: 1
    defaults: {model: gpt-image-1}
    items:
      - from: exports/products.csv
        image: "images/{sku}.png"
        mask: "masks/{sku}.png"
        prompt: White studio backdrop
        quality: high
    """
    path = write(
        catalog,
        "csv",
        """\
        sku,prompt,quality,id
        a1,ignored: the entry's literal wins,low,first
        """,
        textwrap.dedent(manifest),
    )
    (item,) = load_plan(path).items
    assert item.id == "first"  # the id column sets it
    assert item.images == (catalog / "images" / "a1.png",)
    assert item.mask == catalog / "masks" / "a1.png"
    assert item.prompt == "White studio backdrop"
    assert item.params["quality"] == "high"


def test_every_bad_row_is_located_by_line_and_column_at_once(catalog):
    path = write(
        catalog,
        "csv",
        """\
        sku,title,colour,image,n
        a1,Mug,red,images/a1.png,two
        b2,Shoe,,images/b2.png,1
        "c3","Lamp
        with a long title",green,,1
        d4,Vase,white,images/nope.png,1
        """,
    )
    found = problems_of(path)
    assert "exports/products.csv:2: column n: 'two' is not a whole number 1 or more" in found[0]
    assert any(p.startswith("exports/products.csv:3: column colour: is empty") for p in found)
    # a quoted cell over two lines: the row is located where it starts
    assert any(p.startswith("exports/products.csv:4: has no image") for p in found)
    assert any(
        p.startswith("exports/products.csv:6 (d4).image: no such file: images/nope.png")
        for p in found
    )
    assert len(found) == 4


@pytest.mark.parametrize(
    ("suffix", "body", "expected"),
    [
        ("csv", "sku,sku\na1,a1\n", "exports/products.csv:1: the column 'sku' appears twice"),
        ("csv", "sku,title\na1,Mug,extra\n", "exports/products.csv:2: has 3 cells, the header"),
        ("jsonl", '{"sku": "a1"}\n{"sku": \n', "exports/products.jsonl:2: is not valid JSON"),
        ("jsonl", '["a1"]\n', "exports/products.jsonl:1: is not a JSON object"),
        ("json", '{"sku": "a1"}', "items[0] (from exports/products.json): exports/products.json "),
        (
            "json",
            '[\n {"sku": "a1"},\n {"sku": {"x": 1}}\n]',
            "exports/products.json:3: column sku",
        ),
        ("txt", "sku\n", "is not a .csv, .jsonl or .json file"),
        ("csv", "sku,title,colour\n", "has no rows"),
    ],
)
def test_unreadable_exports_say_where_and_why(catalog, suffix, body, expected):
    path = write(catalog, suffix, body)
    found = problems_of(path)
    assert any(expected in p for p in found), found


def test_a_placeholder_that_names_no_column_is_one_problem_with_a_did_you_mean(catalog):
    path = write(catalog, "csv", "sku,title,color,image\na1,Mug,red,images/a1.png\n")
    found = problems_of(path)
    assert found == [
        "items[0] (from exports/products.csv).prompt: {colour} is not a column; "
        "did you mean {color}?"
    ]


def test_a_missing_export_is_located_at_its_entry(catalog):
    path = catalog / "job.yaml"
    path.write_text(MANIFEST % "csv")
    assert problems_of(path) == [
        "items[0] (from exports/products.csv): no such file: exports/products.csv; "
        "check the path; a relative path starts at the manifest's folder"
    ]


def test_duplicate_ids_across_rows_name_both_rows(catalog):
    path = write(
        catalog,
        "csv",
        "sku,title,colour,image\na1,Mug,red,images/a1.png\na1,Cup,red,images/b2.png\n",
    )
    (found,) = problems_of(path)
    assert found.startswith(
        "exports/products.csv:3 (a1): the id 'a1' is also the id of exports/products.csv:2"
    )


def test_a_utf8_bom_from_a_spreadsheet_is_not_part_of_the_first_column(tmp_path):
    export = tmp_path / "p.csv"
    export.write_bytes(b"\xef\xbb\xbfsku,image\na1,x.png\n")
    read = read_export(export, "p.csv", "items[0]")
    assert read.columns == ["sku", "image"] and read.rows == [(2, {"sku": "a1", "image": "x.png"})]


def test_the_schema_knows_from_items_and_refuses_unknown_keys_with_a_hint(catalog):
    manifest = MANIFEST.replace("    id:", "    idd:")
    path = write(catalog, "csv", "sku,title,colour,image\na1,Mug,red,images/a1.png\n", manifest)
    (found,) = problems_of(path)
    assert "items[0] (from exports/products.csv).idd: is not a known key; did you mean id?" in found


def test_an_export_without_an_image_column_makes_generations_that_need_ids(catalog):
    manifest = """\
    version: 1
    defaults: {model: gpt-image-2, size: 1536x864}
    items:
      - from: exports/products.csv
        id: "hero-{sku}"
        prompt: A {title} on an oak table, catalogue photo
    """
    path = write(catalog, "csv", "sku,title\na1,mug\nb2,lamp\n", textwrap.dedent(manifest))
    items = load_plan(path).items
    assert [(i.id, i.endpoint, i.images) for i in items] == [
        ("hero-a1", "generations", ()),
        ("hero-b2", "generations", ()),
    ]
    no_ids = textwrap.dedent(manifest).replace('    id: "hero-{sku}"\n', "")
    path = write(catalog, "csv", "sku,title\na1,mug\n", no_ids)
    (found,) = problems_of(path)
    assert found.startswith("exports/products.csv:2: has no image and no id")
