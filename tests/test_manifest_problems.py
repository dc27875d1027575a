"""Every validation problem comes located, with a fix, and all of them at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import make_image, make_mask
from PIL import Image
from test_manifest import write_yaml

from pipeline.core.errors import ManifestError
from pipeline.manifest import validate, yamlfile
from pipeline.manifest.load import load_plan

HEAD = "version: 1\ndefaults: {model: gpt-image-1}\n"


def problems(path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_plan(path)
    return [str(problem) for problem in caught.value.problems]


def only(path) -> str:
    (problem,) = problems(path)
    return problem


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A folder with a.png and b.png (64x64), made the working directory; job(items, top) writes
    job.yaml: version (line 1), defaults (line 2), the `top` keys, then the items."""
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    monkeypatch.chdir(tmp_path)

    def write(items: str, top: str = "", head: str = HEAD) -> Path:
        write_yaml(tmp_path, head + top + "items:\n" + items)
        return Path("job.yaml")

    return write


def test_all_problems_come_at_once_in_file_then_item_order(job):
    path = job(
        "  - image: a.png\n"
        "    prompt: p\n"
        "  - id: a\n"
        "    image: missing.png\n"
        "    prompt: p\n"
        "  - image: gone.png\n"
        "    prompt: p\n"
        "    qualty: high\n"  # line 11: a typo hides nothing else of the item
        "  - id: ../x\n"
        "    image: b.png\n"
        "    prompt: p\n"
    )
    assert problems(path) == [
        "job.yaml:11:5: items[2] (gone).qualty: is not a known key; did you mean quality?",
        "items[1] (a): the id 'a' is also the id of items[0]; ids must be unique: set a "
        "different id: on one of them",
        "items[1] (a).image: no such file: missing.png; check the path; a relative path "
        "starts at the manifest's folder",
        "items[2] (gone).image: no such file: gone.png; check the path; a relative path "
        "starts at the manifest's folder",
        "items[3]: id '../x' would write outside the output folder; use a plain name (letters, "
        "digits, - and _), or set id: on the item",
    ]


def test_yaml_syntax_errors_give_file_line_and_column(job):
    message = only(job("  - image: a.png\n    prompt: [unclosed\n"))
    assert message.startswith("job.yaml:6:1: is not valid YAML:")


def test_a_tab_in_the_indentation_says_to_use_spaces(job):
    message = only(job("  - image: a.png\n\tprompt: p\n"))
    assert message.startswith("job.yaml:5:1: is not valid YAML") and "not tabs" in message


def test_unknown_keys_get_a_did_you_mean_at_every_level(job):
    path = job("  - image: a.png\n    prompt: p\n", top="limts: {concurrency: 2}\n")
    path.write_text(path.read_text().replace("defaults: {", "defaults: {sizee: auto, "))
    assert problems(path) == [
        "job.yaml:2:12: defaults.sizee: is not a known key; did you mean size?",
        "job.yaml:3:1: limts: is not a known key; did you mean limits?",
    ]


def test_an_unknown_key_without_a_close_match_lists_the_keys(job):
    message = only(job("  - image: a.png\n    prompt: p\n", top="budget: {dollars: 3}\n"))
    assert message == (
        "job.yaml:3:10: budget.dollars: is not a known key; the keys here are run_usd, total_usd"
    )


def test_wrong_types_say_what_was_expected(job):
    path = job(
        "  - id: 1001\n"
        "    image: a.png\n"
        "    prompt: p\n"
        "    n: '2'\n"
        "    output_compression: 101\n"
        "    extra: {style: [a, b]}\n"
    )
    assert problems(path) == [
        "job.yaml:4:9: items[0] (a).id: must be text, not 1001; put it in quotes",
        "job.yaml:7:8: items[0] (a).n: must be a whole number, not '2'",
        "job.yaml:8:25: items[0] (a).output_compression: must be at most 100, not 101",
        "job.yaml:9:20: items[0] (a).extra.style: expected a string, number or true/false",
    ]


def test_unsupported_or_missing_version_says_which_is_read(job):
    path = job("  - image: a.png\n    prompt: p\n", head=HEAD.replace("version: 1", "version: 2"))
    assert only(path) == (
        "job.yaml:1:10: version: 2 is not supported; this editbatch reads version: 1"
    )
    path.write_text(path.read_text().replace("version: 2\n", ""))
    assert only(path) == "job.yaml:1:1: version: is required; add version: 1 at the top"


def test_an_item_without_prompt_or_default_prompt_is_a_problem(job):
    assert only(job("  - image: a.png\n")) == (
        "items[0] (a): has no prompt; add prompt: to the item, or a prompt under defaults:"
    )


def test_an_item_without_a_model_is_a_problem(job):
    path = job("  - image: a.png\n    prompt: p\n", head="version: 1\n")
    assert only(path).startswith("items[0] (a): has no model; set model: under defaults:")


def test_an_item_without_image_is_a_generation_that_needs_an_id(job):
    assert only(job("  - prompt: p\n")) == (
        "items[0]: has no image and no id: a generation's id cannot come from a file name; "
        "set id: on the item (or add image: to make it an edit)"
    )


def test_a_mask_without_an_image_is_a_problem(job):
    assert only(job("  - id: hero\n    prompt: p\n    mask: a.png\n")) == (
        "items[0] (hero).mask: a mask needs an image: an item without image is a generation; "
        "add image: (the mask marks where to edit it), or remove mask"
    )


def test_an_api_key_pasted_as_api_key_env_is_refused_without_echoing_it(job):
    key = "sk-proj-Abc123SecretSecret"
    path = job("  - image: a.png\n    prompt: p\n", top=f"endpoint: {{api_key_env: {key}}}\n")
    message = only(path)
    assert "must be the NAME of an environment variable" in message
    assert key not in message


@pytest.mark.parametrize(
    ("bad_id", "reason"),
    [
        ("../x", "would write outside the output folder"),
        ("a/b", "would write outside the output folder"),
        ("a\\\\b", "would write outside the output folder"),
        ("..", "would write outside the output folder"),
        (".hidden", "would make a hidden file (it starts with a dot)"),
        ("a\\tb", "holds control characters"),
    ],
)
def test_ids_that_would_leave_the_output_folder_are_refused(job, bad_id, reason):
    message = only(job(f'  - id: "{bad_id}"\n    image: a.png\n    prompt: p\n'))
    assert message.startswith("items[0]: id ") and f" {reason}; use a plain name" in message


def test_duplicate_ids_name_both_places(job):
    assert only(job("  - image: a.png\n    prompt: p\n  - image: a.png\n    prompt: q\n")) == (
        "items[1] (a): the id 'a' is also the id of items[0]; ids must be unique: "
        "set a different id: on one of them"
    )


def test_output_names_that_collide_are_refused(job):
    top = "output: {name: '{model}'}\n"
    message = only(job("  - image: a.png\n    prompt: p\n  - image: b.png\n    prompt: p\n", top))
    assert message.startswith(
        "items[1] (b): its output name 'gpt-image-1' is also the output name of items[0] (a)"
    )


def test_ids_differing_only_in_case_collide_on_case_insensitive_disks(job):
    message = only(
        job(
            "  - id: A\n    image: a.png\n    prompt: p\n"
            "  - id: a\n    image: b.png\n    prompt: p\n"
        )
    )
    assert "is also the output name of items[0] (A) (case aside)" in message


def test_output_name_templates_with_unknown_fields_or_bad_braces_are_located(job):
    path = job("  - image: a.png\n    prompt: p\n", top="output: {name: '{id}-{colour}'}\n")
    assert only(path).startswith(
        "job.yaml:3:16: output.name: {colour} is not a field of output names; use {id}, {stem}"
    )
    path.write_text(path.read_text().replace("{colour}", "{"))
    assert only(path).startswith("job.yaml:3:16: output.name: Single '{' encountered")


def test_a_glob_that_matches_nothing_is_a_problem(job):
    message = only(job("  - glob: shoes/*.jpg\n    prompt: p\n"))
    assert message.startswith("items[0] (glob shoes/*.jpg): matches no file; check the pattern")


def test_unknown_placeholders_in_a_glob_mask_are_located(job):
    message = only(job("  - glob: '*.png'\n    mask: 'masks/{id}.png'\n    prompt: p\n"))
    assert message == (
        "job.yaml:5:11: items[0] (glob *.png).mask: {id} is not a glob placeholder; "
        "use {stem}, {name} (with extension) or {parent}"
    )


def test_extra_fields_may_not_shadow_known_ones(job):
    message = only(job("  - image: a.png\n    prompt: p\n    extra: {size: auto}\n"))
    assert message == (
        "job.yaml:6:12: items[0] (a).extra: extra.size is not an extra field; set size: directly"
    )


def test_missing_and_unreadable_files_are_reported_per_item(job, tmp_path):
    (tmp_path / "folder").mkdir()
    path = job("  - image: [a.png, nope.png, folder]\n    mask: masks/{stem}.png\n    prompt: p\n")
    assert problems(path) == [
        "items[0] (a).image[1]: no such file: nope.png; check the path; a relative path starts "
        "at the manifest's folder",
        "items[0] (a).image[2]: folder is a folder, not an image file; name an image file",
        "items[0] (a).mask: no such file: masks/{stem}.png; {stem}, {name} and {parent} are "
        "filled in glob: items only; check the path; a relative path starts at the manifest's "
        "folder",
    ]


def test_files_are_judged_by_their_bytes_not_their_name(job, tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "really-a-jpeg.png", format="JPEG")
    (tmp_path / "notes.png").write_text("just text")
    path = job("  - image: really-a-jpeg.png\n    prompt: p\n  - image: notes.png\n    prompt: p\n")
    assert only(path) == (
        "items[1] (notes).image: notes.png is not a PNG, JPEG or WEBP image (judged by its "
        "first bytes, not its name); convert it to PNG, JPEG or WEBP"
    )


def test_images_over_50_mb_are_refused(job, tmp_path):
    big = tmp_path / "big.png"
    make_image(big)
    with open(big, "r+b") as f:
        f.truncate(51 * 2**20)  # a sparse tail: the header is all that is read
    message = only(job("  - image: big.png\n    prompt: p\n"))
    assert message == (
        "items[0] (big).image: big.png is 51.0 MB; the API takes images up to 50 MB; "
        "shrink it, or save it as JPEG or WEBP"
    )


def test_more_than_16_images_are_refused(job):
    images = ", ".join(["a.png"] * 17)
    message = only(job(f"  - image: [{images}]\n    prompt: p\n"))
    assert message == "job.yaml:4:12: items[0] (a).image: has 17; at most 16 are allowed"


def test_a_mask_of_another_size_than_the_image_is_refused(job, tmp_path):
    make_mask(tmp_path / "masks" / "a.png", size=(32, 32))
    message = only(
        job("  - id: sku-1004\n    image: a.png\n    mask: masks/a.png\n    prompt: p\n")
    )
    assert message == (
        "items[0] (sku-1004).mask: 32x32 does not match the image's 64x64; a mask must have "
        "the image's size: resize it to 64x64"
    )


def test_a_mask_over_the_limit_after_conversion_is_refused(job, tmp_path, monkeypatch):
    monkeypatch.setattr(validate, "MASK_LIMIT", 4000)  # stands for 4 MB, at a test's scale
    make_image(tmp_path / "c.png", size=(256, 256))
    noise = Image.frombytes("L", (256, 256), os.urandom(256 * 256))
    noise.save(tmp_path / "noisy.png")  # no alpha: converted, then measured
    Image.merge("RGBA", [noise] * 4).save(tmp_path / "as-is.png")  # alpha: sent as it is
    Image.new("L", (256, 256), 255).save(tmp_path / "flat.png")
    path = job(
        "  - {id: noisy, image: c.png, mask: noisy.png, prompt: p}\n"
        "  - {id: as-is, image: c.png, mask: as-is.png, prompt: p}\n"
        "  - {id: flat, image: c.png, mask: flat.png, prompt: p}\n"
    )
    found = problems(path)
    assert [p.split(":")[0] for p in found] == ["items[0] (noisy).mask", "items[1] (as-is).mask"]
    assert all("MB as sent (a PNG with alpha); the API takes masks up to 0 MB" in p for p in found)


def test_decompression_bombs_are_reported_like_any_bad_file(job, tmp_path):
    header = Image.new("RGB", (1, 1))
    header.save(tmp_path / "bomb.png")
    data = bytearray((tmp_path / "bomb.png").read_bytes())
    data[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR says 100000x100000
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    message = only(job("  - image: bomb.png\n    prompt: p\n"))
    assert message.startswith("items[0] (bomb).image: bomb.png has 100000x100000 pixels, more than")


def test_alias_bombs_are_refused(job):
    items = "  - {image: a.png, prompt: &a p}\n" + "".join(
        "  - {image: a.png, prompt: *a}\n" for _ in range(101)
    )
    path = job(items)
    assert only(path).startswith("job.yaml:105:28: uses more than 100 aliases (*name); put shared")


def test_manifests_over_the_size_limit_are_refused(job, monkeypatch):
    monkeypatch.setattr(yamlfile, "MAX_BYTES", 100)
    path = job("  - image: a.png\n    prompt: " + "p" * 200 + "\n")
    assert only(path).startswith("job.yaml: is 0 MB, over the 0 MB limit; split the job")


def test_duplicate_keys_are_located(job):
    message = only(job("  - image: a.png\n    prompt: p\n    prompt: q\n"))
    assert message == (
        "job.yaml:6:5: the key 'prompt' appears twice in the same mapping; keep only one of them"
    )


def test_a_missing_manifest_is_a_problem(job):
    assert only("nope.yaml") == "nope.yaml: no such file; check the manifest's path"


def test_an_empty_manifest_or_item_list_says_what_to_add(job, tmp_path):
    write_yaml(tmp_path, "", name="empty.yaml")
    assert only("empty.yaml") == (
        "empty.yaml: the manifest: must be a mapping (key: value lines), not empty"
    )
    assert only(job("  []\n")) == "job.yaml:4:3: items: is empty; add an item"


def test_many_items_with_one_problem_are_told_briefly(job):
    items = "".join(f"  - {{id: i{n}, image: a.png}}\n" for n in range(25))
    found = problems(job(items))
    assert len(found) == 11
    assert found[-1] == (
        "15 more items: has no prompt; add prompt: to the item, or a prompt under defaults:"
    )
