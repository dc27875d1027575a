"""Item keys and the input digest cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline.core.fingerprint import DigestCache, file_digest, item_key
from pipeline.core.plan import Finish, Item


def make_item(tmp_path: Path, **changes) -> Item:
    fields = {
        "id": "sku-1",
        "images": (tmp_path / "a.png",),
        "prompt": "white backdrop",
        "params": {"model": "gpt-image-1", "size": "1024x1024", "quality": "medium", "n": 1},
        "mask": None,
    }
    fields.update(changes)
    return Item(**fields)


def test_file_digest_streams_large_files_to_the_right_sha256(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks and a ragged end
    path = tmp_path / "big.png"
    path.write_bytes(data)
    digest = file_digest(path)
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.bytes == len(data)
    assert digest.mtime_ns == path.stat().st_mtime_ns


def test_digest_record_is_a_ledger_inputs_entry(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"abc")
    entry = file_digest(path).record("mask")
    assert entry == {
        "path": str(path),
        "bytes": 3,
        "mtime_ns": path.stat().st_mtime_ns,
        "sha256": hashlib.sha256(b"abc").hexdigest(),
        "role": "mask",
    }


def test_cache_seeded_from_ledger_does_not_rehash_an_unchanged_file(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"original")
    recorded = file_digest(path).record("image")
    cache = DigestCache([recorded])
    assert cache.digest(path).sha256 == recorded["sha256"]
    assert cache.hashed == 0


def test_cache_rehashes_a_file_whose_size_or_mtime_changed(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"original")
    cache = DigestCache([file_digest(path).record("image")])
    path.write_bytes(b"changed!")  # same size: only the mtime tells
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert cache.digest(path).sha256 == hashlib.sha256(b"changed!").hexdigest()
    assert cache.hashed == 1
    cache.digest(path)  # now cached under the new stat
    assert cache.hashed == 1


def test_cache_trusts_a_recorded_digest_under_an_equivalent_path_spelling(tmp_path):
    (tmp_path / "images").mkdir()
    path = tmp_path / "images" / "a.png"
    path.write_bytes(b"x")
    entry = file_digest(path).record("image")
    entry["path"] = f"{tmp_path}/images/./a.png"
    cache = DigestCache([entry])
    cache.digest(path)
    assert cache.hashed == 0


def test_cache_skips_malformed_recorded_entries(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"x")
    cache = DigestCache([{"path": str(path)}, {"path": str(path), "bytes": None}])
    assert cache.digest(path).bytes == 1
    assert cache.hashed == 1


def test_cache_hashes_an_unknown_file_once(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"x")
    cache = DigestCache()
    first = cache.digest(path)
    assert cache.digest(path) == first
    assert cache.hashed == 1


BASE_KEY_ARGS = (["d1"], None)


@pytest.mark.parametrize(
    "changes, digests, mask_digest",
    [
        ({}, ["d2"], None),  # image bytes
        ({"prompt": "black backdrop"}, ["d1"], None),
        (
            {"params": {"model": "gpt-image-1", "size": "1024x1024", "quality": "high", "n": 1}},
            ["d1"],
            None,
        ),
        (
            {"params": {"model": "gpt-image-1", "size": "1024x1024", "quality": "medium", "n": 2}},
            ["d1"],
            None,
        ),
        (
            {
                "params": {
                    "model": "gpt-image-1",
                    "size": "1024x1024",
                    "quality": "medium",
                    "n": 1,
                    "user": "u",
                }
            },
            ["d1"],
            None,
        ),
        ({"mask": Path("/m.png")}, ["d1"], "m1"),
        ({"images": (Path("/a.png"), Path("/b.png"))}, ["d1", "d3"], None),
    ],
    ids=["image-bytes", "prompt", "quality", "n", "added-param", "mask", "second-image"],
)
def test_key_changes_with_what_the_api_is_asked(tmp_path, changes, digests, mask_digest):
    base = item_key(make_item(tmp_path), *BASE_KEY_ARGS)
    assert item_key(make_item(tmp_path, **changes), digests, mask_digest) != base


def test_key_ignores_id_paths_and_param_order(tmp_path):
    base = item_key(make_item(tmp_path), *BASE_KEY_ARGS)
    moved = make_item(
        tmp_path,
        id="renamed",
        images=(Path("/elsewhere/other-name.png"),),
        params={"n": 1, "quality": "medium", "size": "1024x1024", "model": "gpt-image-1"},
        where="items[7]",
    )
    assert item_key(moved, *BASE_KEY_ARGS) == base


def test_key_depends_on_image_order(tmp_path):
    item = make_item(tmp_path, images=(Path("/a.png"), Path("/b.png")))
    assert item_key(item, ["d1", "d2"], None) != item_key(item, ["d2", "d1"], None)


def test_key_is_stable_hex(tmp_path):
    key = item_key(make_item(tmp_path), *BASE_KEY_ARGS)
    assert key == item_key(make_item(tmp_path), *BASE_KEY_ARGS)
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize(
    ("item", "digests", "mask_digest", "key"),
    [
        (
            Item(
                id="a",
                images=(Path("/x/a.png"),),
                prompt="Put it on white",
                params={"model": "gpt-image-1", "size": "1024x1024"},
            ),
            ["ab" * 32],
            None,
            "2f97987f5bbd6795103c294499fe1eac4da7ca45c54934286268a6610439edf5",
        ),
        (
            Item(
                id="b",
                images=(Path("/x/a.png"), Path("/x/b.png")),
                prompt='Crème brûlée on a plate, "quoted" \n\t',
                params={
                    "model": "gpt-image-1",
                    "n": 2,
                    "output_compression": 80,
                    "background": "transparent",
                    "moderation": True,
                },
                mask=Path("/m.png"),
            ),
            ["01" * 32, "02" * 32],
            "03" * 32,
            "5e333362ca6ef193acd76da48a5df33771dd12a5214a692325f367ecc9fd58b1",
        ),
        (
            Item(
                id="c",
                images=(Path("/x/c.png"),),
                prompt="😀 日本",
                params={"model": "m", "quality": 0.5, "user": "u"},
            ),
            ["ff" * 32],
            None,
            "39c2b89311c1cfd299513293243ef3a99d6ac33573be01c6ae1f0cd96ea40202",
        ),
    ],
    ids=["plain", "mask-two-images-escapes", "non-ascii-float"],
)
def test_keys_stay_the_keys_ledgers_hold(item, digests, mask_digest, key):
    """Pinned values: a change to how a key is computed must bump KEY_VERSION (every item of
    every ledger then runs again), never happen by accident. Resume's classify writes the
    same JSON piece by piece, with a memo of parameter JSON: the same keys, hit or miss."""
    assert item_key(item, digests, mask_digest) == key
    memo: dict = {}
    assert item_key(item, digests, mask_digest, memo=memo) == key
    assert item_key(item, digests, mask_digest, memo=memo) == key  # from the memo


@pytest.mark.parametrize(
    ("finish", "mask", "images", "params"),
    [
        (Finish(mask_mode="strict", feather_px=3), Path("/m.png"), 1, {"model": "m"}),
        (Finish(size="input"), None, 2, {"model": "m", "extra": {"z": [1, 2.5], "a": None}}),
        (Finish(), None, 0, {"size": "1024x1024", "model": "gpt-image-1"}),
    ],
    ids=["strict-mask", "size-input-nested", "generation"],
)
def test_the_memo_gives_the_keys_of_the_general_path(finish, mask, images, params):
    item = Item(
        id="x",
        images=tuple(Path(f"/i{n}.png") for n in range(images)),
        prompt="p \u00e9",
        params=params,
        mask=mask,
        finish=finish,
    )
    digests = [f"{n:02d}" * 32 for n in range(images)]
    mask_digest = "0f" * 32 if mask else None
    memo: dict = {}
    for with_finish in (True, False):
        plain = item_key(item, digests, mask_digest, with_finish=with_finish)
        assert item_key(item, digests, mask_digest, with_finish=with_finish, memo=memo) == plain


def test_key_refuses_digests_that_do_not_match_the_item(tmp_path):
    with pytest.raises(ValueError, match="one digest per image"):
        item_key(make_item(tmp_path), ["d1", "d2"], None)
    with pytest.raises(ValueError, match="mask digest"):
        item_key(make_item(tmp_path), ["d1"], "m1")
