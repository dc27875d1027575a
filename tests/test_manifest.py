"""Loading a manifest into a Plan: defaults, paths, parameters, globs, the schema file, the demo."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers import make_image, make_mask, write_manifest

from pipeline.core.errors import ManifestError
from pipeline.core.plan import DEFAULT_BASE_URL
from pipeline.manifest.load import SCHEMA_FILE, json_schema, load_plan, write_schema

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "manifests" / "demo.yaml"


def write_yaml(folder: Path, text: str, name: str = "job.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_schema_file_is_the_generated_schema():
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), (
        "schema/manifest.schema.json is stale: run python -m pipeline.manifest.load"
    )


def test_write_schema_writes_what_json_schema_returns(tmp_path):
    target = tmp_path / "schema.json"
    write_schema(target)
    assert json.loads(target.read_text()) == json_schema()
    assert json_schema()["$schema"].startswith("https://json-schema.org/")


def test_demo_manifest_passes_the_json_schema_as_editors_apply_it():
    jsonschema = pytest.importorskip("jsonschema")
    data = yaml.safe_load(DEMO.read_text())
    jsonschema.Draft202012Validator(json_schema()).validate(data)
    data["items"][0]["qualty"] = "high"
    assert not jsonschema.Draft202012Validator(json_schema()).is_valid(data)


def test_demo_manifest_loads_cleanly():
    plan = load_plan(DEMO)
    assert DEMO.read_text().startswith(
        "# yaml-language-server: $schema=../../schema/manifest.schema.json"
    )
    assert [item.id for item in plan.items] == ["mug", "sneaker", "lamp", "cup", "vase"]
    assert plan.output.dir == DEMO.parent / "demo-out"
    assert plan.budget.run_usd == 1.0
    assert {item.model for item in plan.items} == {"gpt-image-1"}
    with_masks = [item.id for item in plan.items if item.mask is not None]
    assert with_masks == ["mug", "sneaker"]


def test_defaults_fill_every_field(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    make_image(tmp_path / "images" / "sku-1.png")
    path = write_yaml(
        tmp_path,
        """
        version: 1
        defaults: {model: gpt-image-1}
        items:
          - image: images/sku-1.png
            prompt: white backdrop
        """,
        name="spring.yaml",
    )
    plan = load_plan(path)
    assert plan.manifest_path == path
    assert plan.name == "spring"
    assert plan.endpoint.base_url == DEFAULT_BASE_URL
    assert plan.endpoint.api_key_env == "OPENAI_API_KEY"
    assert (plan.limits.concurrency, plan.limits.requests_per_minute) == (4, 0)
    assert (plan.limits.max_attempts, plan.limits.timeout_s) == (5, 300)
    assert (plan.budget.run_usd, plan.budget.total_usd) == (None, None)
    assert plan.output.dir == tmp_path / "spring-out"
    assert plan.output.name == "{id}"
    assert plan.ledger == tmp_path / "spring-out" / "ledger.jsonl"
    assert dict(plan.pricing) == {}
    (item,) = plan.items
    assert item.id == "sku-1"
    assert item.images == (tmp_path / "images" / "sku-1.png",)
    assert item.mask is None
    assert item.where == "items[0]"
    assert dict(item.params) == {"model": "gpt-image-1"}  # nothing invented


def test_base_url_comes_from_the_environment_when_the_manifest_has_none(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1/")
    make_image(tmp_path / "images" / "a.png")
    path = write_manifest(tmp_path, [{"image": "images/a.png", "prompt": "p"}])
    assert load_plan(path).endpoint.base_url == "http://127.0.0.1:9999/v1"
    path = write_manifest(
        tmp_path,
        [{"image": "images/a.png", "prompt": "p"}],
        endpoint={"base_url": "https://proxy.example/v1", "api_key_env": "PROXY_KEY"},
    )
    plan = load_plan(path)
    assert (plan.endpoint.base_url, plan.endpoint.api_key_env) == (
        "https://proxy.example/v1",
        "PROXY_KEY",
    )


def test_item_params_lay_defaults_under_the_items_own(tmp_path):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    path = write_yaml(
        tmp_path,
        """
        version: 1
        defaults:
          model: gpt-image-1
          size: 1024x1024
          quality: low
          extra: {partner_tag: low}
        items:
          - image: a.png
            prompt: p
            quality: high
            size: null
            n: 2
            extra: {style: vivid}
          - image: b.png
            prompt: p
        """,
    )
    first, second = load_plan(path).items
    assert dict(first.params) == {
        "model": "gpt-image-1",
        "quality": "high",
        "partner_tag": "low",
        "n": 2,
        "style": "vivid",
    }
    assert dict(second.params) == {
        "model": "gpt-image-1",
        "size": "1024x1024",
        "quality": "low",
        "partner_tag": "low",
    }
    with pytest.raises(TypeError):
        first.params["model"] = "other"  # type: ignore[index]


def test_paths_are_absolute_from_the_manifests_folder(tmp_path):
    make_image(tmp_path / "in" / "a.png")
    make_image(tmp_path / "in" / "b.jpg")
    make_mask(tmp_path / "masks" / "a.png")
    path = write_manifest(
        tmp_path,
        [
            {
                "id": "two",
                "image": ["in/a.png", "./in/../in/b.jpg"],
                "mask": "masks/a.png",
                "prompt": "p",
            }
        ],
        output={"dir": "../out", "name": "{model}-{id}"},
        ledger="state/ledger.jsonl",
    )
    plan = load_plan(path)
    (item,) = plan.items
    assert item.images == (tmp_path / "in" / "a.png", tmp_path / "in" / "b.jpg")
    assert item.mask == tmp_path / "masks" / "a.png"
    assert plan.output.dir == tmp_path.parent / "out"
    assert plan.output.name == "{model}-{id}"
    assert plan.ledger == tmp_path / "state" / "ledger.jsonl"


def test_id_defaults_to_the_first_images_stem(tmp_path):
    make_image(tmp_path / "shots" / "sku-77.front.png")
    make_image(tmp_path / "shots" / "sku-77.back.png")
    path = write_manifest(
        tmp_path,
        [{"image": ["shots/sku-77.front.png", "shots/sku-77.back.png"], "prompt": "p"}],
    )
    assert load_plan(path).items[0].id == "sku-77.front"


def test_glob_expands_in_sorted_order_and_fills_placeholders(tmp_path):
    for name in ("b-boot", "a-loafer", "c-sandal"):
        make_image(tmp_path / "shoes" / f"{name}.jpg", size=(32, 32))
        make_mask(tmp_path / "masks" / f"{name}.png", size=(32, 32))
    (tmp_path / "shoes" / "notes.txt").write_text("not matched")
    (tmp_path / "shoes" / "folder.jpg").mkdir()  # a folder is not an item
    path = write_manifest(
        tmp_path,
        [
            {
                "glob": "shoes/*.jpg",
                "mask": "masks/{stem}.png",
                "prompt": "Put the {stem} ({name}, from {parent}) on marble",
                "quality": "high",
            },
        ],
    )
    items = load_plan(path).items
    assert [item.id for item in items] == ["a-loafer", "b-boot", "c-sandal"]
    first = items[0]
    assert first.images == (tmp_path / "shoes" / "a-loafer.jpg",)
    assert first.mask == tmp_path / "masks" / "a-loafer.png"
    assert first.prompt == "Put the a-loafer (a-loafer.jpg, from shoes) on marble"
    assert first.where == "items[0] (glob shoes/*.jpg)"
    assert first.params["quality"] == "high"


def test_glob_items_take_an_id_template_and_recurse_with_two_stars(tmp_path):
    make_image(tmp_path / "photos" / "bags" / "red.png")
    make_image(tmp_path / "photos" / "shoes" / "red.png")
    path = write_manifest(
        tmp_path, [{"glob": "photos/**/*.png", "id": "{parent}-{stem}", "prompt": "p"}]
    )
    assert [item.id for item in load_plan(path).items] == ["bags-red", "shoes-red"]


def test_default_prompt_serves_items_without_one(tmp_path):
    make_image(tmp_path / "shelf" / "cup.png")
    path = write_yaml(
        tmp_path,
        """
        version: 1
        defaults: {model: m, prompt: "A {stem} on white"}
        items:
          - glob: shelf/*.png
        """,
    )
    assert load_plan(path).items[0].prompt == "A cup on white"


def test_limits_budget_and_pricing_reach_the_plan(tmp_path):
    make_image(tmp_path / "a.png")
    path = write_manifest(
        tmp_path,
        [{"image": "a.png", "prompt": "p"}],
        limits={"concurrency": 8, "requests_per_minute": 30, "max_attempts": 2, "timeout_s": 60},
        budget={"run_usd": 5, "total_usd": 50.5},
        pricing={"proxy-model": {"text_input": 5, "image_input": 10, "image_output": 40}},
    )
    plan = load_plan(path)
    assert (plan.limits.concurrency, plan.limits.requests_per_minute) == (8, 30)
    assert (plan.limits.max_attempts, plan.limits.timeout_s) == (2, 60)
    assert (plan.budget.run_usd, plan.budget.total_usd) == (5, 50.5)
    assert dict(plan.pricing["proxy-model"]) == {
        "text_input": 5,
        "image_input": 10,
        "image_output": 40,
        "text_output": None,
    }


def test_yaml_is_read_with_yaml_12_scalars(tmp_path):
    make_image(tmp_path / "a.png")
    path = write_yaml(
        tmp_path,
        """
        version: 1
        defaults: {model: m}
        items:
          - id: "2024-01-01"
            image: a.png
            prompt: p
            user: no
            background: off
            extra: {flag: true, ratio: 0.5, count: 0x10}
        """,
    )
    params = load_plan(path).items[0].params
    assert (params["user"], params["background"]) == ("no", "off")
    assert (params["flag"], params["ratio"], params["count"]) == (True, 0.5, 16)


def test_merge_keys_and_a_few_aliases_are_allowed(tmp_path):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    path = write_yaml(
        tmp_path,
        """
        version: 1
        defaults: {model: m}
        items:
          - &first {image: a.png, prompt: shared prompt, quality: high}
          - <<: *first
            image: b.png
        """,
    )
    first, second = load_plan(path).items
    assert (first.id, second.id) == ("a", "b")
    assert (second.prompt, second.params["quality"]) == ("shared prompt", "high")


def test_check_files_false_reads_no_input(tmp_path):
    path = write_manifest(tmp_path, [{"image": "missing.png", "prompt": "p"}])
    with pytest.raises(ManifestError):
        load_plan(path)
    assert load_plan(path, check_files=False).items[0].id == "missing"


@pytest.mark.parametrize(
    "path", ["/a/b.png", "/x.png", "/a/b c/d.e.png", "/a/b/c/sku-000001.png", "/a/b/.hidden"]
)
def test_a_path_made_from_its_folder_is_the_path_of_the_string(path):
    from pipeline.manifest.expand import _as_path

    folders: dict[str, Path] = {}
    made = [_as_path(path, folders), _as_path(path, folders)]  # the second from the cache
    for one in made:
        assert one == Path(path) and str(one) == path and one.parts == Path(path).parts
        assert one.name == Path(path).name and one.parent == Path(path).parent


def test_paths_in_a_large_manifest_are_absolute_and_normalized(tmp_path):
    items = [{"id": f"i{n}", "image": f"img/./sub/../i{n}.png", "prompt": "p"} for n in range(3)]
    items.append({"id": "j", "image": "img//j.png", "mask": "img/j.png", "prompt": "p"})
    plan = load_plan(write_manifest(tmp_path, items), check_files=False)
    assert [str(item.images[0]) for item in plan.items] == [
        f"{tmp_path}/img/i0.png",
        f"{tmp_path}/img/i1.png",
        f"{tmp_path}/img/i2.png",
        f"{tmp_path}/img/j.png",
    ]
    assert plan.items[3].mask == plan.items[3].images[0]
