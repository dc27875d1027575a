"""Item fingerprints and input digests: what decides whether an item must run again.

An item's key hashes its inputs' bytes, its prompt and its parameters, never its id or paths.
Input digests are cached by (path, size, mtime_ns), seeded from the ledger, so a resume does
not re-read the bytes of inputs it has already hashed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.plan import Item, Location, Remote

CHUNK = 1024 * 1024
# Bumped when what goes into a key changes, so old ledgers simply re-run instead of matching
# keys that meant something else.
KEY_VERSION = "1"
# json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True), without building an
# encoder per call (a resume computes 100,000 keys).
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode
_string = json.encoder.encode_basestring_ascii  # one str as _canonical writes it (C)


@dataclass(frozen=True, slots=True)
class FileDigest:
    path: Path | str
    bytes: int
    mtime_ns: int
    sha256: str

    def record(self, role: str) -> dict:
        """The digest as a ledger `inputs` entry; role is "image" or "mask"."""
        return {
            "path": os.fspath(self.path),
            "bytes": self.bytes,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
            "role": role,
        }


class NotRegularFile(OSError):
    """An input that is a FIFO, a device or a folder: reading it could block forever."""


def open_regular(path: str | Path) -> int:
    """A read-only descriptor of `path`, which must be a regular file: opened without blocking
    (a FIFO would wait for a writer forever), then refused unless fstat says it is a file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device or socket"
            raise NotRegularFile(f"{path} is {kind}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | Path) -> tuple[bytes, os.stat_result]:
    """A regular file's bytes and its stat (taken before reading), read with plain os calls:
    no buffered file object, whose isatty and seek checks cost three system calls a file."""
    fd = open_regular(path)
    try:
        st = os.fstat(fd)
        parts = []
        while chunk := os.read(fd, max(st.st_size + 1, CHUNK)):  # +1: EOF in the same call
            parts.append(chunk)
    finally:
        os.close(fd)
    return (parts[0] if len(parts) == 1 else b"".join(parts)), st


def file_digest(path: Path) -> FileDigest:
    """Hash a file in 1 MiB chunks. Size and mtime are taken before reading: if the file
    changes while it is hashed, the next stat differs and the cache hashes it again."""
    with open(open_regular(path), "rb") as f:
        st = os.fstat(f.fileno())
        h = hashlib.sha256()
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return FileDigest(Path(path), st.st_size, st.st_mtime_ns, h.hexdigest())


class DigestCache:
    """Digests by path, trusted while the file's size and mtime_ns are unchanged.

    A file rewritten with the same size inside the same mtime tick goes unnoticed; that is the
    price of not re-reading every finished input on each start (git's index makes the same
    trade). Safe to call from several threads: a race only hashes a file twice.
    """

    def __init__(self, recorded: Iterable[Mapping] = (), *, base: Path | str = ""):
        self.base = os.fspath(base)  # where relative recorded paths start (the manifest's)
        self._known: dict[str, FileDigest] = {}
        # sha256 of remote inputs by URL, as the fetcher found them before a run classifies
        # its items (None: it could not have the object). None as a whole: no fetcher asked
        # (a dry run, estimate): the digest recorded in the ledger stands.
        self.remote: dict[str, str | None] | None = None
        self.hashed = 0  # files read in full by this cache, for progress and tests
        for entry in recorded:
            try:
                key = _cache_key(entry["path"])
                digest = FileDigest(
                    key, int(entry["bytes"]), int(entry["mtime_ns"]), entry["sha256"]
                )
            except (KeyError, TypeError, ValueError):
                continue  # a malformed entry only costs a re-hash
            self._known[key] = digest

    def sha256(self, location: Location, recorded: str | None = None) -> str:
        """The input's sha256. A remote one's: as the fetcher found it, else (when no fetcher
        asked) `recorded`, the ledger's; FileNotFoundError when neither is known. A file's:
        from its digest."""
        if isinstance(location, Remote):
            found = recorded if self.remote is None else self.remote.get(location.url)
            if found is None:
                raise FileNotFoundError(f"{location} could not be fetched")
            return found
        return self.digest(location).sha256

    def digest(self, path: Path) -> FileDigest:
        key = _cache_key(path)
        known = self._known.get(key)
        if known is not None:
            st = os.stat(path)
            if st.st_size == known.bytes and st.st_mtime_ns == known.mtime_ns:
                return known
        fresh = file_digest(path)
        self.hashed += 1
        self._known[key] = fresh
        return fresh


def _cache_key(path: Path | str) -> str:
    # "images/./a.png" and "images/a.png" recorded by different callers are one file.
    return os.path.normpath(os.fspath(path))


def item_key(
    item: Item,
    image_digests: list[str],
    mask_digest: str | None,
    *,
    with_finish: bool = True,
    memo: dict[int, tuple[object, str]] | None = None,
) -> str:
    """A hex fingerprint of what the API is asked: input bytes (in order), mask, prompt and
    every parameter, and what is done to the answer (strict compositing, resizing). The id and
    the file paths stay out, so moving or renaming changes nothing. `with_finish=False` gives
    the key of the request alone: the cross-run cache's key, under which one answer serves
    every way of finishing it. `memo`: a dict the caller keeps while it computes the keys of
    many items whose parameters cannot change meanwhile (resume's classify): items sharing
    one parameter mapping share its JSON."""
    if len(image_digests) != len(item.images):
        raise ValueError(
            f"{item.where or item.id}: {len(image_digests)} image digests for "
            f"{len(item.images)} images; pass one digest per image, in order"
        )
    if (mask_digest is None) != (item.mask is None):
        raise ValueError(
            f"{item.where or item.id}: the mask digest must be given exactly when the item "
            "has a mask"
        )
    finish = item.finish.key_part(item.mask is not None) if with_finish else None
    if memo is not None and _plain(image_digests, mask_digest, item.prompt):
        canonical = _canonical_of(item, image_digests, mask_digest, finish, memo)
    else:
        fields = {
            "images": list(image_digests),
            "mask": mask_digest,
            "prompt": item.prompt,
            "params": dict(item.params),
        }
        if finish is not None:  # absent by default: keys from before `output.mask_mode` hold
            fields["finish"] = finish
        canonical = _canonical(fields)
    return hashlib.sha256(f"editbatch-key:{KEY_VERSION}\n{canonical}".encode()).hexdigest()


def _plain(image_digests: list[str], mask_digest: str | None, prompt: object) -> bool:
    return (
        type(prompt) is str
        and (mask_digest is None or type(mask_digest) is str)
        and all(type(digest) is str for digest in image_digests)
    )


def _canonical_of(
    item: Item,
    image_digests: list[str],
    mask_digest: str | None,
    finish: dict | None,
    memo: dict[int, tuple[object, str]],
) -> str:
    """_canonical of item_key's fields, written piece by piece: the same bytes (keys in sorted
    order, each value as _canonical writes it), with the parameters' JSON taken from `memo`
    when an earlier item had the same mapping (a third of a 100,000-item resume's keys)."""
    params = item.params
    known = memo.get(id(params))
    if known is None or known[0] is not params:
        known = memo[id(params)] = (params, _canonical(dict(params)))
    images = ",".join(map(_string, image_digests))
    mask = "null" if mask_digest is None else _string(mask_digest)
    head = "{" if finish is None else '{"finish":' + _canonical(finish) + ","
    return (
        f'{head}"images":[{images}],"mask":{mask},"params":{known[1]},'
        f'"prompt":{_string(item.prompt)}}}'
    )
