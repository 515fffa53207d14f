"""The next request of an upload: which rows of which streams, the run's documents, and the body.

Planning runs on the agent's loop (it only looks at the rows memory holds);
reading the files, packing and compressing run on a worker thread. Rows go
from local numbering to the server's through the cursor's ``base`` (a run
continued from another directory, see ml_dash/format/cursor.py).

A body stays within what the server takes (ml_dash/format/wire.py ``BodyLimits``): rows, bytes, and at most
``max_streams`` streams. A batch cut short by any of these makes the next one start with the streams
after its last, so a run of thousands of metrics sends each of them in turn, never the first ones only.
"""

from __future__ import annotations

import asyncio
import enum
import sys
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ml_dash.format.cursor import StreamCursor, UploadCursor
from ml_dash.format.jsonlines import read_json
from ml_dash.format.layout import EXPERIMENT, PARAMS, RUN_FIELDS, discover_streams, identity_key
from ml_dash.format.segments import segments_of, writer_at
from ml_dash.format.wire import LIMITS, NAMED_REPLY, WIRE_VERSION, wire_body

from ..backlog import file_size, offset_of_index
from .pending import BATCH_BYTES, MemoryChunk, MemoryChunks, PendingStream, Void, fitting, joined, read_stream

#: Rows per request while the server is failing or has not answered yet: each retry would read
#: and hold a full batch only to fail again.
PROBE_ROWS = 8_192


@dataclass(slots=True)
class Batch:
    """One request: the streams it carries (rows or voids), the run's documents, and the encoded body."""

    streams: list[PendingStream]
    documents: dict[str, Any]
    params_version: Any  # parameters.json's updatedAt when the body carries params
    payload: bytes
    encoding: str = "zstd"  # the payload's Content-Encoding (identity: rows that compress too well)

    @property
    def rows(self) -> int:
        """Rows sent (voids not included)."""
        return sum(s.count for s in self.streams if s.void is None)

    def positions_after(self) -> dict[str, StreamCursor]:
        """Where each stream's next batch starts once this one is acknowledged."""
        return {s.name: StreamCursor(s.start + s.count, s.end_offset) for s in self.streams}


class _Later(enum.Enum):
    LATER = "later"


#: What BatchBuilder._stream answers for a stream whose next rows wait for the next batch.
LATER = _Later.LATER


class PlannedStream(NamedTuple):
    """One stream of a batch being prepared: where it starts, and the rows memory already holds."""

    name: str
    path: Path
    at: StreamCursor
    in_memory: list[MemoryChunk]  # consecutive chunks from ``at``, at most the batch's rows (none: read the disk)
    read_limit: int  # rows to read from disk at most (up to where memory takes over, a bad row, a segment's end)
    rejected: Void | None  # the server refused the row at ``at``: set it aside
    writer: str | None  # the writer segment the rows from ``at`` belong to


class BatchBuilder:
    """Builds the bodies of one run directory's upload."""

    def __init__(self, directory: Path, memory: MemoryChunks, executor: Executor | None = None,
                 batch_bytes: int = BATCH_BYTES, max_streams: int = LIMITS.max_streams) -> None:
        self.directory = Path(directory)
        self.memory = memory
        self.executor = executor  # where files are read and bodies encoded (None: the loop's default)
        self.batch_bytes = batch_bytes
        self.max_streams = max_streams
        #: the last stream of a batch that was cut short: the next batch starts after it
        self.resume_after: str | None = None
        #: streams not sent for now (the server refused to start them: agent/upload/uploader.py)
        self.held_back: set[str] = set()
        self.identity: dict[str, str] = {}
        self.segments: list[dict[str, Any]] = []
        self.adopter = False  # this directory continues a run another directory started
        #: the server refused a body for its documents (run fields, params): send rows without them
        self.without_documents = False
        #: rows the server refused by index (stream -> local index, why): set aside when reached
        self.refused: dict[str, tuple[int, Void]] = {}
        self._docs_rev = 0  # the stamp of the documents read last (ml_dash/format/wire.py "docs_rev")
        self._docs_lock = threading.Lock()

    async def next(self, cursor: UploadCursor, positions: dict[str, StreamCursor], sent_params: Any,
                   budget: int) -> Batch:
        """The batch from ``positions`` (default: the cursor's), at most ``budget`` rows."""
        self.memory.forget_before({name: c.acked for name, c in cursor.streams.items()})
        loop = asyncio.get_running_loop()
        streams = await loop.run_in_executor(self.executor, discover_streams, self.directory)
        plan = [self._plan(name, path, positions.get(name) or cursor.at(name), budget)
                for name, path in self._in_turn(streams) if name not in self.held_back]
        return await loop.run_in_executor(self.executor, self._build, plan, budget, sent_params, cursor)

    def _in_turn(self, streams: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
        """The streams (by name) from the one after :attr:`resume_after`, wrapping around."""
        if self.resume_after is None:
            return streams
        after = [entry for entry in streams if entry[0] > self.resume_after]
        return after + [entry for entry in streams if entry[0] <= self.resume_after]

    def _plan(self, name: str, path: Path, at: StreamCursor, budget: int) -> PlannedStream:
        in_memory: list[MemoryChunk] = []
        read_limit = budget
        if len(self.memory):  # the chunks are taken here, on the loop's thread; _build trims them to what is left
            in_memory = fitting(self.memory.chunks_from(name, at.acked), budget, sys.maxsize)
            next_start = self.memory.next_start(name, at.acked)
            if next_start is not None:  # read up to it: the batch after this one comes from memory
                read_limit = min(budget, next_start - at.acked)
        end = None  # the first row this batch must not carry of the stream
        writer, segment_end = writer_at(self.segments, name, at.acked)
        if segment_end is not None:  # one request carries one writer's rows of a stream
            read_limit = min(read_limit, segment_end - at.acked)
            end = segment_end
        rejected = None
        refused = self.refused.get(name)
        if refused is not None:
            index, void = refused
            if index == at.acked:
                rejected, in_memory = void, []
            elif index > at.acked:  # the rows before it; the row itself goes as its void, never as data
                read_limit = min(read_limit, index - at.acked)
                end = index if end is None else min(end, index)
        if end is not None:
            in_memory = [chunk for chunk in in_memory if chunk.start + chunk.count <= end]
        return PlannedStream(name, path, at, in_memory, read_limit, rejected, writer)

    def _build(self, plan: list[PlannedStream], budget: int, sent_params: Any, cursor: UploadCursor) -> Batch:
        streams: list[PendingStream] = []
        budget_bytes = self.batch_bytes  # rows of any size: a body stays small enough to build, send and store
        self.resume_after = None
        for planned in plan:
            if budget <= 0 or budget_bytes <= 0 or len(streams) >= self.max_streams:
                self.resume_after = streams[-1].name if streams else None
                break
            stream = self._stream(planned, budget, budget_bytes, first=not streams)
            if stream is LATER:  # its next rows are in memory but do not fit what is left: the next batch starts
                self.resume_after = streams[-1].name  # with them, rather than reading part of a chunk from disk
                break
            if stream is not None:
                stream.writer = planned.writer
                streams.append(stream)
                budget -= stream.count if stream.void is None else 0
                budget_bytes -= stream.size
        documents, params_version = self.documents(sent_params)
        body: dict[str, Any] = {"v": WIRE_VERSION, "identity": self.identity_of(cursor), **NAMED_REPLY, **documents,
                                "streams": {}}
        for stream in streams:
            payload: dict[str, Any] = {"start": stream.start + cursor.base(stream.name)}
            if stream.writer is not None and stream.writer != body["identity"].get("writer_id"):
                payload["writer"] = stream.writer  # rows of an earlier start of this directory
            if stream.void is not None:
                payload.update(void=stream.count, reason=stream.void.reason)
            elif stream.rows is not None:
                payload["rows"] = stream.rows
            else:
                payload["blocks"] = stream.blocks
            body["streams"][stream.name] = payload
        payload_bytes, encoding = wire_body(body)
        for stream in streams:  # the body has them now; a batch may wait minutes on a retry
            stream.blocks = stream.rows = None
        return Batch(streams, documents, params_version, payload_bytes, encoding)

    def _stream(self, planned: PlannedStream, budget: int, budget_bytes: int,
                first: bool = True) -> PendingStream | None | _Later:
        """The rows of ``planned`` this batch carries (``budget`` rows and ``budget_bytes`` left): whole
        chunks from memory where they fit, else read from disk; LATER when the stream's next rows are in
        memory but not even one chunk fits what is left and the batch already holds other streams."""
        at = planned.at
        if planned.rejected is not None:
            end = offset_of_index(planned.path, identity_key(planned.name), at.acked + 1)
            void = Void(planned.rejected.reason, planned.rejected.detail, at.offset, end - at.offset,
                        planned.rejected.status)
            return PendingStream(planned.name, at.acked, 1, end, void=void)
        in_memory = joined(planned.name, fitting(planned.in_memory, budget, max(budget_bytes, 1 << 20)))
        if in_memory is not None:
            return in_memory
        if planned.in_memory and not first:
            return LATER
        limit = min(budget, planned.read_limit)
        if limit <= 0 or file_size(planned.path) <= at.offset:  # a stat, not an open, for a stream with nothing new
            return None
        return read_stream(planned.name, planned.path, at.acked, at.offset, limit, budget_bytes)

    def identity_of(self, cursor: UploadCursor) -> dict[str, str]:
        """The run and writer ids bodies carry (an adopted run's id instead of this directory's). Blocking
        the first time (reads experiment.json)."""
        if not self.identity:
            experiment = read_json(self.directory / EXPERIMENT)
            experiment = experiment if isinstance(experiment, dict) else {}
            self.identity = {k: experiment[k] for k in ("run_id", "writer_id") if isinstance(experiment.get(k), str)}
            self.segments = segments_of(experiment)
            self.adopter = isinstance(experiment.get("adopted"), dict) and bool(experiment["adopted"])
        adopted = cursor.adopted_run_id()
        return {**self.identity, "run_id": adopted} if adopted else dict(self.identity)

    def stamp_above(self, acknowledged: Any) -> None:
        """Stamp the next documents above ``acknowledged``, the highest stamp the server acknowledged from
        this directory (its upload cursor): an ``ml-dash sync`` later, on a machine whose clock is behind the
        one that ran the run, must not send documents the server would take for older ones."""
        if isinstance(acknowledged, int) and not isinstance(acknowledged, bool):
            with self._docs_lock:
                self._docs_rev = max(self._docs_rev, acknowledged)

    def documents(self, sent_params: Any) -> tuple[dict[str, Any], Any]:
        """experiment.json's run fields, and parameters.json's data when its version is not
        ``sent_params``; with that version (None when the body carries no params). Blocking. Each read
        is stamped (``docs_rev``, higher than any before it), by which the server keeps the newest."""
        body: dict[str, Any] = {}
        if self.without_documents:
            return body, None
        with self._docs_lock:  # stamped before the reads: a later stamp never carries an earlier snapshot
            # the wall clock orders the snapshots of this process and of a later ``ml-dash sync`` of the
            # same directory (the server compares stamps of one writer only: document_order.py), and never
            # below a stamp the server acknowledged (stamp_above)
            self._docs_rev = stamp = max(self._docs_rev + 1, time.time_ns())
            experiment = read_json(self.directory / EXPERIMENT)
            params = read_json(self.directory / PARAMS)
        if isinstance(experiment, dict):
            body["run"] = {k: experiment.get(k) for k in RUN_FIELDS}
        version = None
        if (isinstance(params, dict) and isinstance(params.get("data"), dict)
                and params.get("updatedAt") != sent_params):
            body["params"], version = params["data"], params.get("updatedAt")
        if body:
            body["docs_rev"] = stamp
        return body, version
