"""One round of errors: every mistake of a manifest is told at once (schema, expansion, files,
prices), each located with the fix that fits its cause; and `validate` makes every check that
`run` makes before sending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import make_image, make_mask

from pipeline.cli.main import main
from pipeline.cost.pricing import closest_model, price_table
from pipeline.manifest.yamlfile import yaml_hint

MISTAKES = """\
version: 1
concurrency: 4
defaults:
  model: gpt-image-l
  size: 1024x1024
budget:
  run_usd: 1.0
items:
  - id: mug
    image: images/mug.png
    mask: masks/small.png
    prompt: Put it on marble
  - id: mug
    image: images/cup.png
    prompt: ""
  - id: lamp
    image: images/lamp.png
    qualty: high
    prompt: a lamp
  - id: lamp
    image: images/lamp.png
    prompt: another lamp
"""


def test_every_mistake_of_a_manifest_is_told_in_one_round(tmp_path, capsys):
    for name in ("mug", "cup", "lamp"):
        make_image(tmp_path / "images" / f"{name}.png", size=(64, 64))
    make_mask(tmp_path / "masks" / "small.png", size=(32, 32), box=(0, 0, 16, 32))
    manifest = tmp_path / "job.yaml"
    manifest.write_text(MISTAKES)
    code = main(["validate", str(manifest), "--json"])
    problems = json.loads(capsys.readouterr()[0])["problems"]
    assert code == 2
    told = {(p["where"].rsplit("/", 1)[-1], p["message"], p["fix"]) for p in problems}

    def has(where: str, message: str, fix: str) -> bool:
        return any(w.startswith(where) and message in m and fix in f for w, m, f in told)

    assert has("job.yaml:2:1", "concurrency: is not a known key", "it belongs under limits:")
    assert has("job.yaml:4:10", "defaults.model: no known price for 'gpt-image-l'",
               "did you mean gpt-image-1? fix the model name")  # fmt: skip
    assert has("job.yaml:15:13", "items[1] (mug).prompt: is empty", "write the prompt")
    assert has("job.yaml:18:5", "items[2] (lamp).qualty: is not a known key", "quality?")
    # What the schema's problems used to hide until they were fixed:
    assert has("items[0] (mug).mask", "32x32 does not match the image's 64x64", "resize")
    assert has("items[1] (mug)", "the id 'mug' is also the id of items[0]", "")
    assert has("items[3] (lamp)", "the id 'lamp' is also the id of items[2]", "")
    assert len(problems) == 7  # and nothing told twice (the empty prompt is not "no prompt")
    assert not any("String should" in p["message"] for p in problems)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("defaults:\n  model: m\n   size: 1024x1024\n", "line 4 is indented 3 space(s), the line"),
        ("defaults:\n  model: m\n size: s\n", "line 4 is indented 1 space(s), the line above it 2"),
        ("items:\n  - image: a.png\n    prompt: x\n     mask: m.png\n", "line 5 is indented 5"),
        ("defaults:\n  prompt: Style: minimal\n", 'quote the value: it contains ": "'),
        ("defaults:\n\tmodel: m\n", "indent with spaces, not tabs"),
    ],
)
def test_a_yaml_error_gets_the_hint_of_its_cause(tmp_path, capsys, text, hint):
    manifest = tmp_path / "job.yaml"
    manifest.write_text("version: 1\n" + text)
    assert main(["validate", str(manifest)]) == 2
    err = capsys.readouterr()[1]
    assert "is not valid YAML" in err and hint in err
    if "quote" not in hint:
        assert "quote" not in err


def test_the_hint_function_needs_a_line_to_judge():
    assert yaml_hint("tab found", [], None) == "indent with spaces, not tabs"
    assert yaml_hint("odd", [], None) == "check the indentation and quoting at that place"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("gpt-image-l", "gpt-image-1"),
        ("GPT-Image-1", "gpt-image-1"),
        ("gpt-imag-1", "gpt-image-1"),
        ("gpt-image-1-mlni", "gpt-image-1-mini"),
        ("my-proxy-model", None),
        ("dall-e-2", None),
    ],
)
def test_a_model_typo_finds_the_priced_model_it_was_meant_to_be(typed, meant):
    assert closest_model(typed, price_table()) == meant


def write(tmp_path, **blocks) -> str:
    make_image(tmp_path / "a.png")
    data = {"version": 1, "defaults": {"model": "gpt-image-1", "prompt": "p"}, **blocks}
    data["items"] = [{"image": "a.png"}]
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(data))
    return str(tmp_path / "job.yaml")


def test_validate_refuses_an_output_folder_that_cannot_be_written(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file where the output folder should be")
    manifest = write(tmp_path, output={"dir": "taken/out"})
    assert main(["validate", manifest]) == 2
    err = capsys.readouterr()[1]
    assert "output.dir: cannot write outputs to" in err and "taken is a file" in err
    assert list(tmp_path.glob("**/.editbatch-probe-*")) == []


def test_validate_warns_when_the_key_variable_is_not_set(tmp_path, capsys, monkeypatch):
    manifest = write(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["validate", manifest]) == 0
    out, err = capsys.readouterr()
    assert "valid, 1 item(s)" in out
    assert "warning: OPENAI_API_KEY is not set: `editbatch run` would refuse to start" in err
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert main(["validate", manifest, "--json"]) == 0
    data = json.loads(capsys.readouterr()[0])
    assert data["key_set"] is True and data["warnings"] == []
    assert list(tmp_path.glob("**/.editbatch-probe-*")) == []


def test_a_run_budget_from_the_command_line_names_the_typo_first(tmp_path, capsys):
    manifest = Path(write(tmp_path))
    manifest.write_text(manifest.read_text().replace("gpt-image-1", "gpt-image-l"))
    assert main(["validate", str(manifest)]) == 0  # no budget in the manifest: no price needed
    capsys.readouterr()
    assert main(["run", str(manifest), "--simulate", "--max-usd", "1", "--progress", "none"]) == 2
    err = capsys.readouterr()[1]
    assert "gpt-image-l: did you mean gpt-image-1? fix the model name" in err


README = Path(__file__).resolve().parent.parent / "README.md"
DEMO = Path(__file__).resolve().parent.parent / "examples" / "manifests"
README_JOB = """\
version: 1
concurrency: 4
defaults:
  model: gpt-image-l
budget:
  run_usd: 5
items:
  - id: mug
    image: demo/images/mug.png
    mask: demo/masks/small.png
    prompt: Put the mug on marble
  - id: mug
    image: demo/images/sneaker.jpg
    prompt: ""
  - image: demo/images/lamp.webp
    qualty: high
    prompt: Put the lamp on a table
"""


def test_the_readme_shows_what_validate_really_prints(tmp_path, capsys, monkeypatch):
    import shutil

    from PIL import Image

    shutil.copytree(DEMO / "demo", tmp_path / "demo")
    Image.new("RGBA", (256, 256)).save(tmp_path / "demo" / "masks" / "small.png")
    (tmp_path / "job.yaml").write_text(README_JOB)
    (tmp_path / "indent.yaml").write_text(
        "version: 1\ndefaults:\n  model: gpt-image-1\n   size: 1024x1024\nitems:\n"
        "  - image: demo/images/mug.png\n    prompt: Style: minimal\n"
    )
    monkeypatch.chdir(tmp_path)
    readme = README.read_text("utf-8")
    for name in ("job.yaml", "indent.yaml"):
        assert main(["validate", name]) == 2
        for line in capsys.readouterr()[1].splitlines():
            assert line in readme, line
