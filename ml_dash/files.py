"""``exp.files``: files saved under ``files/<prefix>/<name>`` of the run directory.

* ``exp.files("models").save(net, "model.pth")``: snapshot ``net`` now, write it soon;
* ``exp.files("model.pth", prefix="/models")``: copy an existing file to ``files/models/model.pth``.

Sizes and sha256 checksums go to ``files/.files_metadata.json`` (the upstream
shape). Source files are copied, never moved or deleted.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._run.snapshots import (
    FileCopy,
    _guess_type,
    bytes_writer,
    copy_writer,
    json_writer,
    pickle_writer,
    text_writer,
    torch_writer,
    writer_for,
)
from .agent import FileJob, file_entry
from .format.jsonlines import encode_checked, read_json
from .format.layout import FILES_DIR, FILES_METADATA
from .format.naming import clean_relative_path, safe_join
from .format.values import MAX_DOCUMENT_BYTES, MAX_TEXT_BYTES, check_text
from .format.vocabulary import check_tags

if TYPE_CHECKING:
    from ._run.session import RunSession


class FileScope:
    """The files under one prefix of the run (``exp.files("models")``)."""

    def __init__(self, session: RunSession, prefix: str, description: str | None = None,
                 tags: list[str] | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._session = session
        self._owner = session.holder()  # a handle keeps its Experiment referenced (session._end_orphan)
        self.prefix = clean_relative_path("file prefix", prefix, rooted_ok=True)
        self._fields = check_entry_fields(description=description, tags=tags, metadata=metadata)

    def _relpath(self, name: str) -> str:
        name = clean_relative_path("file name", name)
        if not name:
            raise ValueError("file name must not be empty")
        return f"{self.prefix}/{name}" if self.prefix else name

    def _enqueue(self, name: str, writer: Any, content_type: str, **fields: Any) -> dict[str, Any]:
        session = self._session
        session.require_running()
        relpath = self._relpath(name)
        dest = safe_join(session.directory / FILES_DIR, relpath)
        merged = {**self._fields, **check_entry_fields(**{k: v for k, v in fields.items() if v is not None})}
        entry = file_entry(relpath, content_type=content_type, **merged)
        job = FileJob(dest=dest, write=writer, entry=entry, discard=getattr(writer, "discard", None))
        if isinstance(writer, FileCopy) and session.in_owning_process():
            writer.stage(dest)
        try:
            session.add_file(job)
        except BaseException:
            job.discarded()
            raise
        return entry

    def save(self, obj: Any, name: str, **fields: Any) -> dict[str, Any]:
        """Save ``obj`` as ``name``: a torch module (its ``state_dict``) or tensor, bytes,
        str, dict/list (JSON), a numpy array, or a path to an existing file.
        The object is captured at the call; later changes do not reach the file."""
        writer, content_type = writer_for(obj)
        return self._enqueue(name, writer, _guess_type(name) if content_type == "application/octet-stream" else content_type, **fields)

    def upload(self, path: str | os.PathLike, to: str | None = None, **fields: Any) -> dict[str, Any]:
        """Copy the existing file ``path`` into this prefix (named ``to`` or its own name)."""
        source = Path(path)
        return self._enqueue(to or source.name, copy_writer(source), _guess_type(source.name), **fields)

    def save_torch(self, obj: Any, *, to: str, **fields: Any) -> dict[str, Any]:
        return self._enqueue(to, torch_writer(obj), "application/x-pytorch", **fields)

    def save_json(self, obj: Any, *, to: str, **fields: Any) -> dict[str, Any]:
        return self._enqueue(to, json_writer(obj), "application/json", **fields)

    def save_text(self, text: str, *, to: str, **fields: Any) -> dict[str, Any]:
        if not isinstance(text, str):
            raise TypeError(f"save_text() takes a str, not {type(text).__name__}")
        return self._enqueue(to, text_writer(text), "text/plain", **fields)

    def save_blob(self, data: bytes, *, to: str, **fields: Any) -> dict[str, Any]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"save_blob() takes bytes, not {type(data).__name__}")
        return self._enqueue(to, bytes_writer(data), "application/octet-stream", **fields)

    def save_pkl(self, obj: Any, *, to: str, **fields: Any) -> dict[str, Any]:
        return self._enqueue(to, pickle_writer(obj), "application/x-pickle", **fields)

    def list(self) -> list[dict[str, Any]]:
        """Metadata entries of the files saved under this prefix (after a flush); from the server
        in remote mode for a run this process has not started."""
        server = self._session.server_reads()
        if server is not None:
            entries = server.files()
        else:
            self._session.flush()
            entries = read_files_metadata(self._session.directory)
        if not self.prefix:
            return entries
        return [e for e in entries if e["path"] == self.prefix or e["path"].startswith(self.prefix + "/")]

    def download(self, name: str, to: str | os.PathLike) -> Path:
        """Copy the saved file ``name`` to the local path ``to``; return that path (streamed from
        the server in remote mode for a run this process has not started)."""
        server = self._session.server_reads()
        if server is not None:
            target = Path(to)
            if target.is_dir():
                target = target / Path(self._relpath(name)).name
            server.download(self._relpath(name), target)
            return target
        self._session.flush()
        source = safe_join(self._session.directory / FILES_DIR, self._relpath(name))
        if not source.is_file():
            raise FileNotFoundError(f"no saved file {self._relpath(name)!r} in {self._session.prefix}")
        target = Path(to)
        if target.is_dir():
            target = target / source.name
        shutil.copyfile(source, target)
        return target

    def path(self, name: str) -> Path:
        """Where ``name`` is (or will be) stored on disk."""
        return safe_join(self._session.directory / FILES_DIR, self._relpath(name))


def check_entry_fields(**fields: Any) -> dict[str, Any]:
    """A file entry's description, tags and metadata, checked against the value domain."""
    checked = dict(fields)
    if fields.get("description") is not None:
        checked["description"] = check_text("file description", fields["description"], MAX_TEXT_BYTES)
    if fields.get("tags") is not None:
        checked["tags"] = check_tags(fields["tags"])
    if fields.get("metadata") is not None:
        if not isinstance(fields["metadata"], dict):
            raise TypeError(f"file metadata must be a dict, not {type(fields['metadata']).__name__}")
        encode_checked("file metadata", fields["metadata"], MAX_DOCUMENT_BYTES)
        checked["metadata"] = copy.deepcopy(fields["metadata"])  # as it was at the call
    return checked


def read_files_metadata(directory: Path) -> list[dict[str, Any]]:
    """The entries of ``files/.files_metadata.json`` ([] when absent or unreadable)."""
    document = read_json(directory / FILES_DIR / FILES_METADATA)
    files = document.get("files") if isinstance(document, dict) else None
    return [e for e in files if isinstance(e, dict)] if isinstance(files, list) else []


class Files:
    """``exp.files``: ``exp.files("models")`` is a scope; with ``prefix=`` the first
    argument is an existing file to upload (``exp.files("model.pth", prefix="/models")``)."""

    def __init__(self, session: RunSession) -> None:
        self._session = session
        self._owner = session.holder()  # a handle keeps its Experiment referenced (session._end_orphan)

    def __call__(self, path: str | os.PathLike | None = None, *, prefix: str | None = None,
                 description: str | None = None, tags: list[str] | None = None,
                 metadata: dict[str, Any] | None = None) -> Any:
        if prefix is not None:
            if path is None:
                raise TypeError("exp.files(path, prefix=...) needs the path of the file to upload")
            return FileScope(self._session, prefix, description, tags, metadata).upload(path)
        return FileScope(self._session, "" if path is None else os.fspath(path), description, tags, metadata)

    def upload(self, path: str | os.PathLike, to: str | None = None, **fields: Any) -> dict[str, Any]:
        return FileScope(self._session, "").upload(path, to=to, **fields)

    def list(self) -> list[dict[str, Any]]:
        return FileScope(self._session, "").list()
