"""Atomic placement on disk: documents replaced by rename, saved files written under a temporary name.

Both write to a temporary file next to the target, fsync it and rename it into
place, so a reader (or a crash) sees the old content or the new, never half.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: This module's temporary names (``.{name}.{pid}[.{n}].{kind}``), removed at the next start if a
#: crash left them.
LEFTOVER_NAME = re.compile(r"\..+\.[0-9]+(\.[0-9]+)?\.(partial|staged|tmp)")


@dataclass(slots=True)
class FileJob:
    """A file to place under the run directory; ``write`` runs on a worker thread. ``discard``
    frees what the job holds on disk (a staged copy) when it is never placed."""

    dest: Path
    write: Callable[[Path], None]
    entry: dict[str, Any]
    discard: Callable[[], None] | None = None

    def discarded(self) -> None:
        if self.discard is not None:
            self.discard()


@dataclass(slots=True)
class FileResult:
    size_bytes: int
    sha256: str


def place_file(job: FileJob) -> FileResult:
    """Write to a temporary name, checksum, then rename into place (worker thread)."""
    job.dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.dest.with_name(f".{job.dest.name}.{os.getpid()}.partial")
    try:
        os.close(fresh_temp(tmp))  # the writer opens it by name: a regular file of ours, not a planted link
        job.write(tmp)
        digest = hashlib.sha256()
        size = 0
        with open(tmp, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            os.fsync(f.fileno())
        os.replace(tmp, job.dest)
    finally:
        if tmp.exists():
            tmp.unlink()
        job.discarded()  # a staged copy left by a failed write
    return FileResult(size, digest.hexdigest())


def fresh_temp(tmp: Path) -> int:
    """Create ``tmp`` as a new regular file and return its descriptor. A temporary name is predictable
    (pid, thread): opened plainly, a symlink planted there by anyone who can write the run directory would
    have the write go to the link's target. O_EXCL never follows one; what is there (a leftover, a link)
    is removed (the name itself, never a target) and the file created again once."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(tmp, flags, 0o666)
    except FileExistsError:
        os.unlink(tmp)
        return os.open(tmp, flags, 0o666)


def remove_leftovers(directory: Path) -> int:
    """Remove the temporary files a crash left under a run directory (its writer holds the run's lock,
    so no other writer's are there); returns how many. Only this module's hidden names are touched."""
    removed = 0
    for path in directory.rglob(".*"):
        if LEFTOVER_NAME.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            try:
                path.unlink()
                removed += 1
            except OSError:
                continue
    return removed


def write_document(path: Path, payload: bytes) -> None:
    """Atomically replace ``path`` (worker thread): temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # unique per writer: two threads replacing one document (a cancelled pass's save still running on its
    # worker thread, and the next one's) must not share a temporary file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with os.fdopen(fresh_temp(tmp), "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():  # the write failed (disk full): the old document stays, and no stray temp file
            tmp.unlink()


def write_documents(documents: Sequence[tuple[Path, bytes]]) -> list[OSError | None]:
    """:func:`write_document` for each (path, payload), in one worker call; each one's error, or None."""
    errors: list[OSError | None] = []
    for path, payload in documents:
        try:
            write_document(path, payload)
        except OSError as exc:
            errors.append(exc)
        else:
            errors.append(None)
    return errors


def file_entry(relpath: str, **fields: Any) -> dict[str, Any]:
    """The metadata entry for a saved file, in the upstream shape (sizes filled in later)."""
    name = relpath.rsplit("/", 1)[-1]
    return {
        "id": hashlib.sha1(relpath.encode()).hexdigest()[:16],
        "path": relpath,
        "filename": name,
        "description": fields.get("description"),
        "tags": list(fields.get("tags") or []),
        "contentType": fields.get("content_type") or "application/octet-stream",
        "sizeBytes": None,
        "checksum": None,
        "metadata": fields.get("metadata"),
        "uploadedAt": None,
        "updatedAt": None,
        "deletedAt": None,
    }
