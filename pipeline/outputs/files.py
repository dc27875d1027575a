"""Output files: their names, their atomic writing, and whether a recorded one is still intact.

An output appears whole or not at all (temporary file in the same folder, fsync, rename), its
path never leaves the output folder, and its bytes are the API's bytes, never re-encoded.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import string
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.core.errors import Problem
from pipeline.core.fingerprint import file_digest
from pipeline.core.plan import Item

# "jpeg" is written as ".jpg": the extension most tools and people expect for JPEG files.
EXTENSIONS = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "webp": "webp"}
TEMPLATE_FIELDS = ("id", "stem", "model")
_TEMP = re.compile(r"\..+\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


@dataclass(frozen=True, slots=True)
class OutputFile:
    path: Path
    sha256: str
    bytes: int
    mtime_ns: int

    def entry(self, relpath: str) -> dict:
        """The ledger `outputs` entry of the file, known to be at `relpath` (posix style)."""
        return {
            "path": relpath,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "mtime_ns": self.mtime_ns,
        }


def extension(output_format: str) -> str:
    fmt = output_format.lower()
    if fmt in EXTENSIONS:
        return EXTENSIONS[fmt]
    # A format this version does not know is passed to the API as is; name the file after it
    # as long as it is a plain word.
    if re.fullmatch(r"[a-z0-9]{1,10}", fmt):
        return fmt
    raise ValueError(f"output_format {output_format!r} cannot name a file; use png, jpeg or webp")


def render_stem(template: str, item: Item) -> str:
    """Fill {id}, {stem} (the first image's stem) and {model}. A "/" in the template makes
    subfolders; the result may not be empty, absolute or climb out with "..".
    """
    values = {
        "id": item.id,
        "stem": item.images[0].stem if item.images else "",
        "model": item.model,
    }
    where = f"output.name {template!r} for item {item.id!r}"
    parts: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}; write literal braces as {{{{ and }}}}") from None
    for literal, field, spec, conversion in parsed:
        parts.append(literal)
        if field is None:
            continue
        try:
            if field not in values or conversion:
                raise ValueError(
                    f"unknown field {{{field}{'!' + conversion if conversion else ''}}}"
                )
            parts.append(format(values[field], spec or ""))
        except ValueError as exc:
            fields = ", ".join(f"{{{name}}}" for name in TEMPLATE_FIELDS)
            raise ValueError(f"{where}: {exc}; the fields are {fields}") from None
    stem = "".join(parts)
    if "\0" in stem or stem.startswith("/") or any(p in ("", ".", "..") for p in stem.split("/")):
        raise ValueError(
            f"{where}: gives {stem!r}, which is not a path inside the output folder; "
            'use a template such as "{id}" whose result is a plain relative name'
        )
    return stem


def output_relpaths(item: Item, template: str) -> list[str]:
    """Posix paths relative to the output folder: <stem>.<ext>, or <stem>-1.<ext> ... when n > 1."""
    stem = render_stem(template, item)
    ext = extension(item.output_format)
    if item.n == 1:
        return [f"{stem}.{ext}"]
    return [f"{stem}-{i}.{ext}" for i in range(1, item.n + 1)]


def safe_join(out_dir: Path, relpath: str) -> Path:
    """out_dir / relpath, refusing any path that would end up outside out_dir, symlinks
    included.

    Only the folders between out_dir and the file are resolved: the file itself is replaced
    by a rename, which replaces a symlink rather than writing through it. So a name directly
    in out_dir (the usual `{id}`) costs no filesystem call at all.
    """
    rel = PurePosixPath(relpath)
    if not relpath or rel.is_absolute() or ".." in rel.parts or "\0" in relpath:
        raise ValueError(f"output path {relpath!r} leaves the output folder {out_dir}")
    joined = Path(out_dir) / rel
    if len(rel.parts) > 1:
        base = Path(out_dir).resolve()
        folder = joined.parent.resolve()
        if not folder.is_relative_to(base):
            raise ValueError(
                f"output path {relpath!r} is in {folder}, outside the output folder {base}; "
                "remove the symlink that leads out of it"
            )
    return joined


def write_atomic(path: Path, data: bytes) -> OutputFile:
    """Write data to path whole or not at all; blocking, run it in a thread."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # O_EXCL: never write through a file (or symlink) someone else put there.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(temp, flags, 0o666)
        except FileNotFoundError:  # its folder is new (or was removed): made only then
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temp, flags, 0o666)
        try:
            view, written = memoryview(data), 0
            while written < len(view):
                written += os.write(fd, view[written:])
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return OutputFile(path, hashlib.sha256(data).hexdigest(), st.st_size, st.st_mtime_ns)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in folder survive a power loss."""
    # Some filesystems cannot fsync a folder; a rename is atomic there all the same.
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def output_intact(out_dir: Path | str, recorded: dict) -> bool:
    """True when the recorded output is on disk with its recorded size and sha256.

    When size and mtime_ns both match the record, the file is trusted without re-reading it, so
    resuming a large finished job costs a stat per output, not a read. The recorded path is
    checked lexically (it is ours, written through safe_join), not resolved: this runs once
    per output of a 100,000-item ledger.
    """
    relpath = recorded.get("path")
    if not isinstance(relpath, str) or not plain_relative(relpath):
        return False
    path = os.path.join(out_dir, relpath)
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != recorded.get("bytes"):
        return False
    if recorded.get("mtime_ns") == st.st_mtime_ns:
        return True
    try:
        return file_digest(Path(path)).sha256 == recorded.get("sha256")
    except OSError:
        return False


def plain_relative(relpath: str) -> bool:
    return (
        bool(relpath)
        and "\0" not in relpath
        and not relpath.startswith("/")
        and (".." not in relpath.split("/"))
    )


def remove_stale_temps(out_dir: Path) -> list[Path]:
    """Delete temporary files that a killed run left in out_dir (our naming only, and only
    those whose writing process is gone). Returns what was removed."""
    removed = []
    for folder, _dirs, files in os.walk(out_dir):
        for name in files:
            match = _TEMP.fullmatch(name)
            if match and not _alive(int(match["pid"])):
                path = Path(folder, name)
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OverflowError:
        return False
    return True


def write_text_atomic(path: Path, text: str) -> None:
    """A small text file (summary, metrics, report page), whole or not at all."""
    write_atomic(Path(path), text.encode("utf-8"))


def unwritable_reason(folder: Path) -> str | None:
    """Why outputs could not be written under `folder` ("" -> None: they can), checked before
    anything is sent: by a probe file in the folder, or, while it does not exist yet, in the
    nearest folder above it that does (where it would be created). The probe is removed."""
    probe_in = folder
    while not probe_in.exists():
        if probe_in.parent == probe_in:
            return "no folder on its path exists"
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        return f"{probe_in} is a file, not a folder"
    probe = probe_in / f".editbatch-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        return f"{probe_in} is not writable: {exc.strerror or exc}"
    os.close(fd)
    probe.unlink(missing_ok=True)
    return None


def output_problems(items: list[Item], out_dir: object, template: str) -> list[Problem]:
    """What would stop the items' outputs from being written to a local folder, found before
    anything is paid for: the folder not writable, a name whose folder leaves it (a symlink),
    or a file where one of its folders should be. Checked once per distinct folder, so a flat
    job of 100,000 items costs one probe. (A bucket is checked by its store's listing.)"""
    if not isinstance(out_dir, Path):
        return []
    problems: list[Problem] = []
    reason = unwritable_reason(out_dir)
    if reason:
        message = f"cannot write outputs to {out_dir}: {reason}"
        fix = "fix the path or its permissions, or choose another output.dir"
        return [Problem("output.dir", message, fix)]
    seen: dict[str, str | None] = {}
    for item in items:
        for relpath in output_relpaths(item, template):
            folder = PurePosixPath(relpath).parent.as_posix()
            if folder not in seen:
                seen[folder] = _folder_reason(out_dir, relpath)
            if seen[folder]:
                where = f"{item.where} ({item.id})" if item.where else item.id
                problems.append(Problem(where, seen[folder], "change output.name or the folder"))
                break
    return problems


def _folder_reason(out_dir: Path, relpath: str) -> str | None:
    try:
        path = safe_join(out_dir, relpath)
    except ValueError as exc:
        return str(exc)
    folder = path.parent
    while not folder.exists() and folder != out_dir:
        folder = folder.parent
    if folder == out_dir and not folder.exists():
        return None  # the run makes it (unwritable_reason checked where)
    if not folder.is_dir():
        return f"its output {relpath} needs {folder} to be a folder, and it is a file"
    if folder != out_dir and not os.access(folder, os.W_OK | os.X_OK):
        return f"its output folder {folder} is not writable"
    return None
