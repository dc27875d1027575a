"""Output names, atomic writes, intactness checks and stale temporary files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.core.plan import Item
from pipeline.outputs.files import (
    OutputFile,
    extension,
    output_intact,
    output_relpaths,
    remove_stale_temps,
    render_stem,
    safe_join,
    write_atomic,
)


def make_item(item_id="sku-1", image="/in/photo.jpg", **params) -> Item:
    return Item(
        id=item_id,
        images=(Path(image),),
        prompt="p",
        params={"model": "gpt-image-1", **params},
    )


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{id}", "sku-1"),
        ("{stem}", "photo"),
        ("{model}/{id}", "gpt-image-1/sku-1"),
        ("edited-{stem}-{id}", "edited-photo-sku-1"),
        ("{{literal}}-{id}", "{literal}-sku-1"),
    ],
)
def test_render_stem_fills_the_fields(template, expected):
    assert render_stem(template, make_item()) == expected


@pytest.mark.parametrize(
    "template, message",
    [
        ("{name}", "unknown field {name}"),
        ("{id.__class__}", "unknown field"),
        ("{id!r}", r"unknown field \{id!r\}"),
        ("{id:d}", "Unknown format code"),
        ("{id", "literal braces"),
        ("../{id}", "not a path inside the output folder"),
        ("/abs/{id}", "not a path inside the output folder"),
        ("{id}/", "not a path inside the output folder"),
        ("", "not a path inside the output folder"),
    ],
)
def test_render_stem_refuses_bad_templates_saying_why(template, message):
    with pytest.raises(ValueError, match=message) as info:
        render_stem(template, make_item())
    assert "sku-1" in str(info.value)


def test_render_stem_refuses_an_id_that_climbs_out():
    with pytest.raises(ValueError, match="inside the output folder"):
        render_stem("{id}", make_item(item_id=".."))


def test_output_relpaths_number_several_images():
    assert output_relpaths(make_item(), "{id}") == ["sku-1.png"]
    assert output_relpaths(make_item(n=3, output_format="jpeg"), "{id}") == [
        "sku-1-1.jpg",
        "sku-1-2.jpg",
        "sku-1-3.jpg",
    ]
    assert output_relpaths(make_item(output_format="webp"), "{stem}") == ["photo.webp"]


def test_extension_passes_plain_unknown_formats_and_refuses_others():
    assert extension("avif") == "avif"
    with pytest.raises(ValueError, match="png, jpeg or webp"):
        extension("../x")


def test_safe_join_keeps_paths_inside(tmp_path):
    assert safe_join(tmp_path, "a/b.png") == tmp_path / "a" / "b.png"


@pytest.mark.parametrize("relpath", ["../x.png", "a/../../x.png", "/etc/passwd", "", "a\0b"])
def test_safe_join_refuses_escapes(tmp_path, relpath):
    with pytest.raises(ValueError, match="leaves the output folder"):
        safe_join(tmp_path / "out", relpath)


def test_safe_join_refuses_a_symlink_that_leads_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="remove the symlink"):
        safe_join(out, "link/x.png")


def test_write_atomic_writes_the_bytes_as_given(tmp_path):
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(1000)
    path = tmp_path / "sub" / "a.png"
    written = write_atomic(path, data)
    assert path.read_bytes() == data
    st = path.stat()
    assert written == OutputFile(path, hashlib.sha256(data).hexdigest(), len(data), st.st_mtime_ns)
    assert written.entry("sub/a.png") == {
        "path": "sub/a.png",
        "sha256": written.sha256,
        "bytes": len(data),
        "mtime_ns": st.st_mtime_ns,
    }
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.png"]


def test_write_atomic_leaves_nothing_when_the_rename_fails(tmp_path):
    target = tmp_path / "a.png"
    (target / "occupied").mkdir(parents=True)  # a non-empty folder where the file should go
    with pytest.raises(OSError):
        write_atomic(target, b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    assert target.is_dir()


def test_write_atomic_keeps_the_old_file_whole_when_a_write_fails_midway(tmp_path):
    # A real short write: the file size limit makes the kernel refuse bytes past 64 KiB.
    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from pipeline.outputs.files import write_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        try:
            write_atomic(Path({str(target)!r}), b"n" * 1_000_000)
        except OSError as exc:
            print("refused", exc.errno)
            sys.exit(0)
        sys.exit("the write should have failed")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    assert target.read_bytes() == b"old"


def test_output_intact_accepts_the_recorded_file(tmp_path):
    recorded = write_atomic(tmp_path / "a.png", b"image").entry("a.png")
    assert output_intact(tmp_path, recorded)


def test_output_intact_detects_a_deleted_output(tmp_path):
    recorded = write_atomic(tmp_path / "a.png", b"image").entry("a.png")
    (tmp_path / "a.png").unlink()
    assert not output_intact(tmp_path, recorded)


def test_output_intact_detects_changed_bytes_of_the_same_size(tmp_path):
    recorded = write_atomic(tmp_path / "a.png", b"image").entry("a.png")
    path = tmp_path / "a.png"
    path.write_bytes(b"IMAGE")
    os.utime(path, ns=(0, recorded["mtime_ns"] + 5_000_000))
    assert not output_intact(tmp_path, recorded)


def test_output_intact_rehashes_when_only_the_mtime_moved(tmp_path):
    recorded = write_atomic(tmp_path / "a.png", b"image").entry("a.png")
    os.utime(tmp_path / "a.png", ns=(0, recorded["mtime_ns"] + 5_000_000))  # touched, same bytes
    assert output_intact(tmp_path, recorded)


def test_output_intact_trusts_size_and_mtime_without_reading(tmp_path):
    # The fast path: a recorded sha256 that no longer matches goes unread when stat agrees.
    recorded = write_atomic(tmp_path / "a.png", b"image").entry("a.png")
    assert output_intact(tmp_path, {**recorded, "sha256": "0" * 64})
    assert not output_intact(tmp_path, {**recorded, "sha256": "0" * 64, "mtime_ns": 1})


def test_output_intact_refuses_recorded_paths_outside_or_not_files(tmp_path):
    (tmp_path / "dir.png").mkdir()
    assert not output_intact(tmp_path, {"path": "../a.png", "sha256": "x", "bytes": 1})
    assert not output_intact(tmp_path, {"path": "dir.png", "sha256": "x", "bytes": 4096})


def test_remove_stale_temps_removes_only_dead_writers_temps(tmp_path):
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(child.stdout)
    (tmp_path / "sub").mkdir()
    stale = tmp_path / "sub" / f".a.png.{dead_pid}.0123abcd.tmp"
    mine = tmp_path / f".b.png.{os.getpid()}.0123abcd.tmp"
    unrelated = [tmp_path / "notes.tmp", tmp_path / ".c.png.tmp", tmp_path / "a.png"]
    for path in [stale, mine, *unrelated]:
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [stale]
    assert not stale.exists()
    assert mine.exists() and all(p.exists() for p in unrelated)
