"""``ml-dash ui DIR``: the server's read API and the web UI over local run directories, read-only.

The runs under DIR are indexed into a private SQLite database (a temporary file, gone when the UI
stops) through the very path a server's ingest takes: each run's new lines become wire-format
bodies, checked by :func:`~.ingest.build_batch` and stored by the same storage. So every read
endpoint, and so the UI, behaves as it does on a server, chunks and summaries included.

The index follows the directories as runs write them: before a read, at most once per
:data:`REFRESH_S`, each stream whose file grew is read on from where the last pass stopped
(complete lines only), and run documents, params and file lists are read again when they changed.
A pass reads at most :data:`PIECE_BYTES` of a file at a time, for :data:`PASS_S` at most, so a
huge backlog is indexed over several passes and reads answer meanwhile. Source files are only ever
opened for reading; a damaged line becomes a void of its index, as the uploader would send it.

A run may have 20,000 metrics: a pass costs one stat per stream (off the event loop) and opens
only the files that grew; the streams read in one worker call, and stored in one transaction, are
many small ones together (up to :data:`PIECE_BYTES` read, :data:`BATCH_ROWS` rows); and the streams
that waited longest go first, so a pass cut short by :data:`PASS_S` starves none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._run.reading import find_runs, written_here
from .._run.runlock import writer_alive
from ..format import layout
from ..format.jsonlines import DecodeError, loads, read_json, restore_metric_row
from ..format.naming import validate_prefix
from ..format.wire import LIMITS, NAMED_REPLY, metric_blocks
from .errors import RequestError
from .ingest.decode import build_batch
from .storage.records import ConflictError, GapError, IngestBatch
from .storage.sqlite.store import SQLiteStorage

logger = logging.getLogger("ml_dash.server")

REFRESH_S = 1.0
#: Streams read in one worker call at most (many small streams: one round trip, not one each).
MAX_STREAMS_PER_READ = 4096
PIECE_BYTES = 8 * 1024 * 1024  # read of a stream at a time: its rows in memory stay about 100 MB at most
PASS_S = 2.0  # a pass (before a read) goes on with further pieces for this long
BATCH_ROWS = 100_000
WRITER = "local-index"
#: Statuses after which a run's files do not change (a resumed run rewrites experiment.json first).
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


@dataclass
class _Stream:
    offset: int = 0  # where the next unread line starts
    next_index: int = 0
    visited: int = 0  # the pass that last read it (the longest waiting are read first)


@dataclass
class _Piece:
    """What one read of a stream gave: its payloads, the state after them, and whether more may wait."""

    stream: str
    payloads: list[dict[str, Any]]
    after: _Stream
    more: bool


@dataclass
class _Run:
    owner: str
    project: str
    name: str
    run_id: str
    streams: dict[str, _Stream] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)  # document -> mtime when last read
    status: str | None = None  # as its experiment.json said when last read
    #: the version of experiment.json an ended run had when a pass read every stream to its end: while
    #: it is still there, nothing is written to the run, and a pass looks at none of its streams
    settled: tuple[int, int] | None = None


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
        self._passes = 0

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
            self._passes += 1
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
        # taken before the streams are read: an ended run's document is written after its last rows
        version = await asyncio.to_thread(_version, directory / layout.EXPERIMENT)
        head = await asyncio.to_thread(self._head, directory, run)
        if head:
            await self.storage.ingest(await asyncio.to_thread(self._batch, run, head))
        if version is None or version != run.settled:
            caught_up = await self._index_streams(directory, run, deadline)
            run.settled = version if caught_up and run.status in ENDED else None
        for entry, local in await asyncio.to_thread(self._new_files, directory, run):
            await self.storage.put_file(run.owner, run.project, run.name, entry["path"], entry["checksum"],
                                        int(entry.get("sizeBytes") or local.stat().st_size), entry)
            self._files[entry["checksum"]] = local

    async def _index_streams(self, directory: Path, run: _Run, deadline: float) -> bool:
        """Read on every stream whose file grew, the longest waiting first, until caught up (True) or the
        pass's time is up: many streams per worker call, one piece of a file at a time (memory stays a
        piece's rows)."""
        grown = await asyncio.to_thread(_grown_streams, directory, run.streams)
        grown.sort(key=lambda item: run.streams.get(item[0], _Stream()).visited)
        work = [(stream, path, run.streams.get(stream, _Stream())) for stream, path in grown]
        while work:
            pieces = await asyncio.to_thread(_read_pieces, work[:MAX_STREAMS_PER_READ], PIECE_BYTES)
            work = work[len(pieces):]
            await self._store(directory, run, pieces)
            for piece in pieces:
                piece.after.visited = self._passes
                run.streams[piece.stream] = piece.after  # only once every batch of the piece is stored
                if piece.more:
                    work.append((piece.stream, layout.stream_path(directory, piece.stream), piece.after))
            if work and time.monotonic() >= deadline:
                return False
        return True

    async def _store(self, directory: Path, run: _Run, pieces: list[_Piece]) -> None:
        """Store the pieces' payloads: a stream's only payload together with other streams' (one transaction
        for many small streams), the rest one at a time."""
        together: dict[str, dict[str, Any]] = {}
        rows = 0
        for piece in pieces:
            alone = len(piece.payloads) > 1 or (piece.payloads and "void" in piece.payloads[0])
            for payload in piece.payloads if alone else ():
                await self._store_one(directory, run, piece.stream, payload)
            if piece.payloads and not alone:
                count = _payload_rows(piece.payloads[0])
                # a batch within the server's own limits (rows, and streams a request may name: past those,
                # build_batch refuses it and every stream would be stored alone, a transaction each)
                if together and (rows + count > BATCH_ROWS or len(together) >= LIMITS.max_streams):
                    await self._store_together(directory, run, together)
                    together, rows = {}, 0
                together[piece.stream] = piece.payloads[0]
                rows += count
        if together:
            await self._store_together(directory, run, together)

    async def _store_together(self, directory: Path, run: _Run, payloads: dict[str, dict[str, Any]]) -> None:
        try:  # building a batch decodes and summarises: off the event loop
            batch = await asyncio.to_thread(self._batch, run, {"streams": payloads})
        except RequestError:  # one stream's rows the SDK would not have written: each on its own, to set it aside
            for stream, payload in payloads.items():
                await self._store_one(directory, run, stream, payload)
            return
        await self.storage.ingest(batch)

    async def _store_one(self, directory: Path, run: _Run, stream: str, payload: dict[str, Any]) -> None:
        try:
            batch = await asyncio.to_thread(self._batch, run, {"streams": {stream: payload}})
        except RequestError as exc:  # rows the SDK would not have written: set aside, as sync does
            logger.warning("ml-dash ui: %s %s from index %s: %s", directory, stream, payload["start"], exc)
            batch = self._batch(run, {"streams": {stream: {"start": payload["start"], "void": _payload_rows(payload),
                                                           "reason": str(exc)[:200]}}})
        await self.storage.ingest(batch)

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
            if doc.get("status") == "RUNNING" and written_here(doc) and writer_alive(directory, doc) is False:
                doc = {**doc, "status": "CRASHED"}  # no writer holds it: its process is gone
            run.status = doc.get("status") if isinstance(doc.get("status"), str) else None
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
        body = {**body, "identity": {"run_id": run.run_id, "writer_id": WRITER}, **NAMED_REPLY}
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


def _grown_streams(directory: Path, streams: dict[str, _Stream]) -> list[tuple[str, Path]]:
    """The streams of a run directory whose file holds bytes past where the index stopped (a stat each)."""
    grown = []
    for stream, path, size in layout.stream_sizes(directory):
        state = streams.get(stream)
        if state is None or size > state.offset:
            grown.append((stream, Path(path)))
    return grown


def _version(path: Path) -> tuple[int, int] | None:
    """Which write of a document is there (it is replaced by a rename: a new inode each time)."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def _read_pieces(work: list[tuple[str, Path, _Stream]], budget_bytes: int) -> list[_Piece]:
    """The next piece of each stream of ``work`` in order, until ``budget_bytes`` were read (one at least)."""
    pieces: list[_Piece] = []
    used = 0
    for stream, path, state in work:
        if pieces and used >= budget_bytes:
            break
        try:
            payloads, after, more = _read_on(stream, path, state)
        except FileNotFoundError:  # removed since it was listed: nothing to read
            payloads, after, more = [], state, False
        pieces.append(_Piece(stream, payloads, _Stream(after.offset, after.next_index, state.visited), more))
        used += after.offset - state.offset
    return pieces


def _payload_rows(payload: dict[str, Any]) -> int:
    if "void" in payload:
        return int(payload["void"])
    return len(payload.get("rows") or []) or sum(n for b in payload.get("blocks", []) for _, n in b["created"])


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
