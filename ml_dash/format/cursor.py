"""What a server has acknowledged of a run directory: ``.ml-dash-upload.json`` (format version 2).

::

    {"version": 2, "servers": {"http://host:port": {"alice/proj/run": {
        "streams": {"metrics/train": {"acked": 1200, "offset": 98765}},
        "documents": {"params": "<updatedAt of the parameters.json the server has>",
                      "docs_rev": <the highest documents' stamp it acknowledged (wire.py)>},
        "files": {"models/model.pth": "<sha256 the server acknowledged>"},
        "refused": {"metrics/train": {"index": 1207, "reason": "422 ...", "status": 422}},
        "adopt": {"run_id": "...", "base": {"metrics/train": 500, "logs": 3}}}}}}

Per server and per prefix the directory is sent as (``ml-dash sync --prefix``
sends it under another name): ``acked`` local rows of each stream are on the
server (rows ``0 .. acked-1``, set-aside ones included) and ``offset`` is the
byte after them in the stream's file.

``refused`` holds, per stream, a row the server refused by its index and not yet set aside there (its
void not acknowledged yet): a later process sends the void, not the row again (the void may be stored
already, its answer lost: rows sent again over it would be acknowledged without being stored).

``adopt`` is present when this directory continues a run that another
directory started (``resume=True``): its rows are numbered from 0 here, and
the server's index of local row ``i`` is ``base[stream] + i``; bodies carry the
adopted ``run_id``. experiment.json keeps the same under ``adopted`` (per
server), so a lost cursor file does not lose it. ``"adopt": "pending"`` means the adoption waits for the
first answer of the server (the run was resumed while it was unreachable).

The server's counts win over this file: every reply carries those of the
streams it was sent and the run's stored rows, and the uploader rewinds a
stream whose server holds less than recorded here (all of them, after asking
for every count, when the run's rows are fewer than :meth:`UploadCursor.server_rows`).
Loading and saving are blocking: the uploader does both on a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_document
from .jsonlines import dumps, read_json
from .layout import EXPERIMENT, UPLOAD_CURSOR

VERSION = 2
PENDING = "pending"


@dataclass(slots=True)
class StreamCursor:
    acked: int = 0  # local rows the server holds (indices 0..acked-1)
    offset: int = 0  # byte offset of the first line not yet acknowledged


@dataclass
class UploadCursor:
    """One directory's upload state for one (server, prefix)."""

    directory: Path
    remote: str
    prefix: str
    streams: dict[str, StreamCursor] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    refused: dict[str, tuple[int, str, int]] = field(default_factory=dict)  # stream -> (local index, reason, status)
    adopt: Any = None  # None | "pending" | {"run_id": str, "base": {stream: int}}

    @classmethod
    def load(cls, directory: Path, remote: str, prefix: str) -> UploadCursor:
        """The directory's entry for ``remote`` and ``prefix`` (empty when there is none). Blocking."""
        cursor = cls(Path(directory), remote, prefix)
        entry = _entries(read_json(cursor.path)).get(remote, {}).get(prefix, {})
        for name, saved in _dict(entry.get("streams")).items():
            if isinstance(name, str) and isinstance(saved, dict):
                cursor.streams[name] = StreamCursor(_count(saved.get("acked")), _count(saved.get("offset")))
        cursor.documents = {k: v for k, v in _dict(entry.get("documents")).items() if isinstance(k, str)}
        if "docs_rev" in cursor.documents:  # a count, or none (a hand edit must not break the upload's max())
            cursor.documents["docs_rev"] = _count(cursor.documents["docs_rev"])
        cursor.files = {p: s for p, s in _dict(entry.get("files")).items() if isinstance(p, str) and isinstance(s, str)}
        for name, saved in _dict(entry.get("refused")).items():
            if isinstance(name, str) and isinstance(saved, dict) and isinstance(saved.get("reason"), str):
                cursor.refused[name] = (_count(saved.get("index")), saved["reason"], _count(saved.get("status")))
        adopt = entry.get("adopt")
        if not entry:  # no cursor: experiment.json says which server run this directory continues, if any
            recorded = read_json(cursor.directory / EXPERIMENT)
            adopted = recorded.get("adopted") if isinstance(recorded, dict) else None
            adopt = adopted.get(remote) if isinstance(adopted, dict) else None
            if isinstance(adopt, dict) and adopt.get("prefix") == prefix:
                adopt = {"run_id": adopt.get("run_id"), "base": adopt.get("base")}
        if isinstance(adopt, dict) and isinstance(adopt.get("run_id"), str):
            cursor.adopt = {"run_id": adopt["run_id"],
                            "base": {s: _count(n) for s, n in _dict(adopt.get("base")).items() if isinstance(s, str)}}
        elif adopt == PENDING:
            cursor.adopt = PENDING
        return cursor

    @property
    def path(self) -> Path:
        return self.directory / UPLOAD_CURSOR

    def save(self) -> None:
        """Write this entry (other servers' and prefixes' entries are kept), atomically."""
        servers = _entries(read_json(self.path))
        servers.setdefault(self.remote, {})[self.prefix] = {
            "streams": {n: {"acked": c.acked, "offset": c.offset} for n, c in self.streams.items()},
            "documents": self.documents,
            "files": self.files,
            **({"refused": {n: {"index": i, "reason": r, "status": c} for n, (i, r, c) in self.refused.items()}}
               if self.refused else {}),
            **({"adopt": self.adopt} if self.adopt is not None else {}),
        }
        write_document(self.path, dumps({"version": VERSION, "servers": servers}))

    def at(self, stream: str) -> StreamCursor:
        return self.streams.get(stream) or StreamCursor()

    # -- adoption (a run continued from another directory) -------------------
    @property
    def adoption_pending(self) -> bool:
        return self.adopt == PENDING

    def adopted_run_id(self) -> str | None:
        return self.adopt.get("run_id") if isinstance(self.adopt, dict) else None

    def base(self, stream: str) -> int:
        """The server index of this directory's row 0 of ``stream``."""
        if isinstance(self.adopt, dict):
            return _count((self.adopt.get("base") or {}).get(stream))
        return 0

    def server_rows(self) -> int:
        """The fewest rows the server holds of the run by this entry (the adopted base of each stream and
        its acknowledged rows): an ingest reply's ``run_rows`` below it means the server lost some."""
        base = _dict(self.adopt.get("base")) if isinstance(self.adopt, dict) else {}
        return sum(_count(n) for n in base.values()) + sum(at.acked for at in self.streams.values())

    def adopt_run(self, run_id: str, base: dict[str, int]) -> None:
        """Continue the server's run ``run_id``: local rows of each stream follow its ``base`` rows."""
        self.adopt = {"run_id": run_id, "base": {s: n for s, n in base.items() if isinstance(n, int) and n > 0}}
        self.streams.clear()  # nothing of this directory is on the server yet


def acknowledged_rows(directory: Path, prefix: str) -> dict[str, int]:
    """Per stream, the most rows of this directory (local numbering) any server acknowledged as ``prefix``."""
    most: dict[str, int] = {}
    for entries in _entries(read_json(Path(directory) / UPLOAD_CURSOR)).values():
        for name, saved in _dict(_dict(entries.get(prefix)).get("streams")).items():
            if isinstance(name, str) and isinstance(saved, dict):
                most[name] = max(most.get(name, 0), _count(saved.get("acked")))
    return most


def _entries(document: Any) -> dict[str, dict[str, Any]]:
    """server -> prefix -> entry. Another version (or a damaged file) reads as empty: the upload
    then starts from row 0, and the server acknowledges what it holds again without storing it twice."""
    if not isinstance(document, dict) or document.get("version") != VERSION:
        return {}
    servers = document.get("servers")
    if not isinstance(servers, dict):
        return {}
    return {remote: {p: e for p, e in value.items() if isinstance(e, dict)}
            for remote, value in servers.items() if isinstance(value, dict)}


def _count(value: Any) -> int:
    """A count or offset as saved, or 0 for anything else (a hand edit, a damaged file)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62 else 0


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
