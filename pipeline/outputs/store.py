"""Where outputs are stored, behind one small interface: a local folder, or a folder of an
object store (s3://, gs://, az://, ... through fsspec), so the engine does not care which.

    prepare()         make the folder / list what is there; clear a killed run's temp files
    write(rel, data)  store the bytes whole under rel; the ledger's `outputs` entry
    intact(recorded)  whether a recorded output is still there as it was written

An object appears whole or not at all: it is uploaded in one PUT under its final key only
once its bytes are complete (S3, GCS and Azure Blob never show a partial object). On resume,
outputs are judged from one listing of the folder (size, and the ETag recorded at upload),
never by downloading them.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from pipeline.core.plan import Location, Remote
from pipeline.outputs.files import (
    output_intact,
    plain_relative,
    remove_stale_temps,
    safe_join,
    write_atomic,
)


class OutputStore(Protocol):
    def prepare(self) -> None: ...
    def write(self, relpath: str, data: bytes) -> dict: ...
    def intact(self, recorded: dict) -> bool: ...


class LocalStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._root = os.fspath(self.folder)  # intact() runs per output of a 100,000-item resume

    def prepare(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.folder)

    def write(self, relpath: str, data: bytes) -> dict:
        written = write_atomic(safe_join(self.folder, relpath), data)
        return written.entry(PurePosixPath(relpath).as_posix())

    def intact(self, recorded: dict) -> bool:
        return output_intact(self._root, recorded)


class ObjectStore:
    """A folder of an object store. Blocking (fsspec's sync calls): run it in a thread."""

    def __init__(self, root: Remote):
        self.root = root
        self._fs: Any = None
        self._listing: dict[str, dict] | None = None
        self._lock = threading.Lock()

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = _filesystem(self.root.scheme)
        return self._fs

    def prepare(self) -> None:
        self._list()

    def write(self, relpath: str, data: bytes) -> dict:
        if not plain_relative(relpath):
            raise ValueError(f"output path {relpath!r} leaves the output folder {self.root}")
        url = self.root.child(relpath).url
        self.fs.pipe_file(url, data)
        self.fs.invalidate_cache(url)
        info = self.fs.info(url)
        if info.get("size") != len(data):
            raise OSError(
                f"{self.root.child(relpath)} holds {info.get('size')} bytes after "
                f"an upload of {len(data)}"
            )
        with self._lock:
            if self._listing is not None:
                self._listing[relpath] = info
        return {
            "path": relpath,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "etag": _etag(info),
        }

    def intact(self, recorded: dict) -> bool:
        relpath = recorded.get("path")
        if not isinstance(relpath, str) or not plain_relative(relpath):
            return False
        info = self._list().get(relpath)
        if info is None or info.get("size") != recorded.get("bytes"):
            return False
        etag, now = recorded.get("etag"), _etag(info)
        return etag is None or now is None or etag == now

    def _list(self) -> dict[str, dict]:
        with self._lock:
            if self._listing is None:
                fs = self.fs
                root = fs._strip_protocol(self.root.url).rstrip("/")
                try:
                    found = fs.find(root, detail=True)
                except FileNotFoundError:
                    found = {}
                self._listing = {
                    path[len(root) + 1 :]: info
                    for path, info in found.items()
                    if path.startswith(root + "/")
                }
            return self._listing


def as_store(out_dir: Location | OutputStore) -> OutputStore:
    """The store of an output folder (a store is returned as it is)."""
    if isinstance(out_dir, Remote):
        return ObjectStore(out_dir)
    if isinstance(out_dir, Path | str):
        return LocalStore(Path(out_dir))
    return out_dir


def _etag(info: dict) -> str | None:
    etag = info.get("ETag") or info.get("etag")
    return str(etag).strip('"') if etag else None


def _filesystem(scheme: str) -> Any:
    extras = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}
    try:
        import fsspec

        fs = fsspec.filesystem(scheme)  # one per process: its client is costly to make
        fs.invalidate_cache()  # no listing cached by an earlier run hides a change
        return fs
    except (ImportError, ValueError) as exc:
        extra = extras.get(scheme)
        fix = f"pip install 'editbatch[{extra}]'" if extra else "use s3://, gs:// or az://"
        raise OSError(f"outputs to {scheme}:// cannot be written here ({exc}); {fix}") from None
