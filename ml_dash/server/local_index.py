"""``ml-dash ui DIR``: the server's read API and the web UI over local run directories, read-only.

The runs under DIR are indexed into a private SQLite database (a temporary file, gone when the UI
stops) through the very path a server's ingest takes: each run's new lines become wire-format
bodies, checked by :func:`~.ingest.build_batch` and stored by the same storage. So every read
endpoint, and so the UI, behaves as it does on a server, chunks and summaries included.

The index follows the directories as runs write them: before a read, at most once per
:data:`REFRESH_S`, each stream is read on from where the last pass stopped (complete lines only),
and run documents, params and file lists are read again when they changed. A pass reads at most
:data:`PIECE_BYTES` of a file at a time, for :data:`PASS_S` at most, so a huge backlog is indexed
over several passes and reads answer meanwhile. Source files are only ever opened for reading; a damaged line becomes a void of its
index, as the uploader would send it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agent import layout
from ..agent.jsonlines import DecodeError, loads, read_json, restore_metric_row
from ..agent.wire import metric_blocks
from ..naming import validate_prefix
from ..reading import find_runs, written_here
from ..runlock import is_held
from .errors import RequestError
from .ingest import build_batch
from .records import ConflictError, GapError, IngestBatch
from .storage import SQLiteStorage

logger = logging.getLogger("ml_dash.server")

REFRESH_S = 1.0
PIECE_BYTES = 8 * 1024 * 1024  # read of a stream at a time: its rows in memory stay about 100 MB at most
PASS_S = 2.0  # a pass (before a read) goes on with further pieces for this long
BATCH_ROWS = 100_000
WRITER = "local-index"


@dataclass
class _Stream:
    offset: int = 0  # where the next unread line starts
    next_index: int = 0


@dataclass
class _Run:
    owner: str
    project: str
    name: str
    run_id: str
    streams: dict[str, _Stream] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)  # document -> mtime when last read


class LocalIndex:
    """Keeps ``storage`` (a private database) up to date with the runs under ``root``."""

    def __init__(self, root: Path, storage: SQLiteStorage) -> None:
        self.root = Path(root)
        self.storage = storage
        self._runs: dict[Path, _Run] = {}
        self._files: dict[str, Path] = {}  # sha256 -> a local file with that content
        self._skipped: dict[Path, str] = {}
        self._lock = asyncio.Lock()
        self._last = float("-inf")

    def _skip(self, directory: Path, reason: str) -> None:
        """Warn once per run and reason; the run is tried again on the next pass."""
        if self._skipped.get(directory) != reason:
            self._skipped[directory] = reason
            logger.warning("ml-dash ui: skipping %s: %s", directory, reason)

    def file_path(self, sha256: str) -> Path | None:
        return self._files.get(sha256)

    async def refresh(self, force: bool = False) -> None:
        """Index what is new, unless a pass ran less than REFRESH_S ago (concurrent callers share one)."""
        async with self._lock:
            if not force and time.monotonic() - self._last < REFRESH_S:
                return
            deadline = time.monotonic() + PASS_S
            for directory in await asyncio.to_thread(lambda: list(find_runs(self.root))):
                try:
                    await self._index_run(directory, deadline)
                except (OSError, RequestError, ConflictError, GapError) as exc:  # one bad run hides no other
                    self._skip(directory, str(exc))
                except Exception:  # a bug, found by one run's files: that run waits, the others are shown
                    logger.exception("ml-dash ui: cannot index %s", directory)
                    self._skip(directory, "internal error")
            self._last = time.monotonic()

    async def _index_run(self, directory: Path, deadline: float) -> None:
        run = self._runs.get(directory)
        if run is None:
            run = await asyncio.to_thread(self._identify, directory)
            if run is None:
                return
            self._runs[directory] = run
        head = await asyncio.to_thread(self._head, directory, run)
        if head:
            await self.storage.ingest(await asyncio.to_thread(self._batch, run, head))
        for stream, path in await asyncio.to_thread(layout.discover_streams, directory):
            # a piece at a time (memory stays a piece's rows), until caught up or the pass's time is up
            while await self._index_piece(directory, run, stream, path) and time.monotonic() < deadline:
                pass
        for entry, local in await asyncio.to_thread(self._new_files, directory, run):
            await self.storage.put_file(run.owner, run.project, run.name, entry["path"], entry["checksum"],
                                        int(entry.get("sizeBytes") or local.stat().st_size), entry)
            self._files[entry["checksum"]] = local

    async def _index_piece(self, directory: Path, run: _Run, stream: str, path: Path) -> bool:
        """Index the next piece of ``stream``; whether more of it may be waiting."""
        state = run.streams.setdefault(stream, _Stream())
        payloads, after, more = await asyncio.to_thread(_read_on, stream, path, state)
        for payload in payloads:
            try:  # building a batch decodes and summarises: off the event loop
                batch = await asyncio.to_thread(self._batch, run, {"streams": {stream: payload}})
            except RequestError as exc:  # rows the SDK would not have written: set aside, as sync does
                logger.warning("ml-dash ui: %s %s from index %s: %s", directory, stream, payload["start"], exc)
                count = len(payload.get("rows") or []) or sum(n for b in payload.get("blocks", [])
                                                             for _, n in b["created"])
                batch = self._batch(run, {"streams": {stream: {"start": payload["start"], "void": count,
                                                               "reason": str(exc)[:200]}}})
            await self.storage.ingest(batch)
        run.streams[stream] = after  # only once every batch of the piece is stored
        return more

    @staticmethod
    def _identify(directory: Path) -> _Run | None:
        doc = read_json(directory / layout.EXPERIMENT)
        if not isinstance(doc, dict):
            return None
        try:
            owner, project, name = validate_prefix(str(doc.get("prefix", "")))
        except (TypeError, ValueError) as exc:
            logger.warning("ml-dash ui: skipping %s: %s", directory, exc)
            return None
        run_id = doc.get("run_id") if isinstance(doc.get("run_id"), str) else None
        return _Run(owner, project, name, run_id or f"local-{abs(hash(str(directory))) % 10**12}")

    def _head(self, directory: Path, run: _Run) -> dict[str, Any]:
        """The run's fields and params, when their documents changed since the last pass."""
        head: dict[str, Any] = {}
        doc = self._changed(directory / layout.EXPERIMENT, run)
        if isinstance(doc, dict):
            if doc.get("status") == "RUNNING" and written_here(doc) and is_held(directory) is False:
                doc = {**doc, "status": "CRASHED"}  # no writer holds it: its process is gone
            head["run"] = {k: doc[k] for k in layout.RUN_FIELDS if k in doc}
        params = self._changed(directory / layout.PARAMS, run)
        if isinstance(params, dict) and isinstance(params.get("data"), dict):
            head["params"] = params["data"]
        return head

    def _changed(self, path: Path, run: _Run) -> Any:
        """The JSON document at ``path`` if it changed since it was last read, else None."""
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        if run.seen.get(str(path)) == mtime:
            return None
        run.seen[str(path)] = mtime
        return read_json(path)

    def _batch(self, run: _Run, body: dict[str, Any]) -> IngestBatch:
        body = {**body, "identity": {"run_id": run.run_id, "writer_id": WRITER}}
        return build_batch(run.owner, run.project, run.name, body, max_events=10 * BATCH_ROWS)

    def _new_files(self, directory: Path, run: _Run) -> list[tuple[dict[str, Any], Path]]:
        doc = self._changed(directory / layout.FILES_DIR / layout.FILES_METADATA, run)
        entries = doc.get("files") if isinstance(doc, dict) else None
        out = []
        base = (directory / layout.FILES_DIR).resolve()
        for entry in entries if isinstance(entries, list) else []:
            if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                    and isinstance(entry.get("checksum"), str)):
                continue
            local = (base / entry["path"]).resolve()
            if base in local.parents and local.is_file():  # a name that leaves the run is never served
                out.append((entry, local))
        return out


def _read_on(stream: str, path: Path, state: _Stream) -> tuple[list[dict[str, Any]], _Stream, bool]:
    """Wire payloads for the complete lines of the next piece after ``state`` (rows in batches, a
    void per gap), the state after them, and whether the piece was full (more may follow)."""
    key = layout.identity_key(stream)
    with open(path, "rb") as f:
        f.seek(state.offset)
        data = f.read(PIECE_BYTES)
    end = data.rfind(b"\n")
    if end < 0:
        return [], state, False
    payloads: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    expected = start = state.next_index
    for line in data[:end].split(b"\n"):
        try:
            record = loads(line)
        except DecodeError:
            continue  # damaged: its index becomes a void when the next line shows the gap
        index = record.get(key) if isinstance(record, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or index < expected:
            continue
        if index > expected or len(rows) >= BATCH_ROWS:
            if rows:
                payloads.append(_rows_payload(stream, start, rows))
                rows = []
            if index > expected:
                payloads.append({"start": expected, "void": index - expected, "reason": "damaged line"})
            start = index
        rows.append(record)
        expected = index + 1
    if rows:
        payloads.append(_rows_payload(stream, start, rows))
    return payloads, _Stream(state.offset + end + 1, expected), len(data) == PIECE_BYTES


def _rows_payload(stream: str, start: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    if stream == layout.LOG_STREAM:
        return {"start": start, "rows": records}
    return {"start": start, "blocks": metric_blocks(restore_metric_row(r) for r in records)}
