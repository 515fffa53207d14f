"""Writes one run directory: JSON-lines streams, atomic documents and files.

Everything here runs on the agent's event loop; blocking calls (write, fsync,
rename, torch.save) go to the agent's worker pool (``run_in_executor``). The
stream files open at a time are a few at most, whatever the number of streams
(agent/handles.py). One ``asyncio.Lock`` per run serialises the periodic
flush with flushes the user asks for.

Write rule: a chunk of rows is appended with one write. If that write fails
(disk full, I/O error) the file is truncated back to the end of the last whole
line it took (a nearly full disk takes what fits, then refuses): those rows are
written, the rest are counted as dropped (``disk_error``) and their indices are
reused by the next rows, so indices on disk stay contiguous and every row on
disk was counted as written exactly once.

End rule: :meth:`RunWriter.close` writes what is queued, then, under the run's
:class:`~.streams.Seal`, takes everything still queued (rows, files) and seals
the run; those are written before the final fsync. Nothing is admitted after
the seal (see agent/streams.py), so every call that returned is on disk.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import Any

from ..format.atomic import FileJob, place_file, write_documents
from ..format.jsonlines import dumps, last_record
from ..format.latest import merge_latest
from ..format.layout import METRIC_PREFIX
from ..format.vocabulary import utc_iso
from .budget import BufferBudget
from .final_documents import retry_unwritten
from .handles import FanOut, RunBlocking, StreamFiles
from .stats import StreamCounters
from .streams import DocumentSlot, RowStream, Seal, StreamClosedError, Write
from .tensors import TensorRead, is_tensor

logger = logging.getLogger("ml_dash.agent")

#: Rows encoded per encoder call: small enough to stay in CPU cache.
CHUNK_ROWS = 8192
#: Rows gathered into one write. Each await that blocks gives the GIL away, and
#: a training loop that never releases it hands it back only after the switch
#: interval (5 ms), so the agent encodes several chunks between two writes.
WRITE_ROWS = 8 * CHUNK_ROWS
#: Rows counted at their own size (long strings) that one write takes off the queue, at most: their
#: encoding is as large as they are, and the encoder's buffers about twice that, so a write holds
#: about 4x this in transient memory. A sixteenth of the buffer budget keeps the peak well within 1.5x it.
WRITE_SIZED_BYTES = 8 * 1024 * 1024
#: Encoded chunks up to this much are joined into one write.
JOIN_BYTES = 8 * 1024 * 1024
#: The longest the agent waits for logged GPU tensors to reach the host.
TENSOR_READ_TIMEOUT_S = 60.0
#: Derived documents (metric metadata) written per pass at most. Each costs about a millisecond (an
#: fsync): a run of 20,000 metrics refreshes them in turns, the longest waiting first, instead of
#: spending 20 s a pass on them; the end of the run writes every one.
DERIVED_DOCUMENTS_PER_PASS = 256


def whole_lines(blobs: list[bytes], done: int) -> tuple[int, int]:
    """Of ``blobs`` (whole lines each), written one after another up to byte ``done``: how many lines
    are complete on disk, and how many bytes they take."""
    lines = kept_bytes = 0
    for blob in blobs:
        end = blob.rfind(b"\n", 0, max(0, min(done, len(blob)))) + 1
        lines += blob.count(b"\n", 0, end)
        kept_bytes += end
        if end < len(blob):  # cut inside this blob: nothing after it was written
            break
        done -= len(blob)
    return lines, kept_bytes


class RunWriter:
    """The agent's side of one run: its streams, documents and pending files.

    It is given what it uses of the agent, not the agent (issue 15, no back-pointers): the shared
    memory ``budget`` (its capacity sizes a write; each write frees space in it), ``run_blocking`` and
    ``fan_out`` (the agent's worker threads), two settings, and a monotonic ``clock`` (when an fsync is
    due, how long a tensor read may take). ``Agent.new_writer`` wires them.
    """

    def __init__(self, directory: Path, budget: BufferBudget, *, run_blocking: RunBlocking, fan_out: FanOut,
                 fsync_interval_s: float, max_open_files: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.budget = budget
        self.run_blocking = run_blocking
        self.fan_out = fan_out
        self.fsync_interval_s = fsync_interval_s
        self.clock = clock
        self.streams: dict[str, RowStream] = {}
        self.documents: dict[str, DocumentSlot] = {}
        self.file_jobs: deque[FileJob] = deque()
        self.file_counters = StreamCounters()
        self.file_entries: dict[str, dict[str, Any]] = {}
        #: stream -> the first index new rows may take (rows the server holds that these files lack)
        self.index_floor: dict[str, int] = {}
        self.on_durable: list[Callable[[], None]] = []
        self.on_closed: list[Callable[[], None]] = []  # agent thread, once everything is durable
        #: called with each written chunk of metric rows (remote mode hands them to its uploader)
        self.on_written: Callable[[str, int, list, str, int], None] | None = None
        self.seal = Seal()  # shared by every stream: the run's end
        self.fsync: Callable[[int], None] = os.fsync
        #: the stream files open now, a few at most (agent/handles.py: descriptors are the user's)
        self.stream_files = StreamFiles(max_open_files, run_blocking, fan_out, lambda fd: self.fsync(fd))
        self._lock: asyncio.Lock | None = None
        self._last_fsync = clock()
        self._fsync_task: asyncio.Future | None = None  # a periodic fsync running beside the writes
        self._reported: set[str] = set()
        self._document_passes = 0
        self.closed = False
        #: when the close must be done (monotonic; set by the run's end), and the documents it could not
        #: write by then (agent/final_documents.py)
        self.close_deadline: float | None = None
        self.unwritten_documents: list[Path] = []

    # -- caller's thread ---------------------------------------------------
    def add_stream(self, stream: RowStream) -> RowStream:
        """Register a stream, resuming its index after what is already on disk (a stream added
        after the run's end stays closed: logging to it raises)."""
        last = last_record(stream.path, stream.first_key)
        if last is not None and isinstance(last.get(stream.first_key), int):
            stream.next_index = last[stream.first_key] + 1
        stream.next_index = max(stream.next_index, self.index_floor.get(stream.name, 0))
        stream.seal = self.seal
        with self.seal.lock:
            if not self.seal.sealed:
                self.streams[stream.name] = stream
                return stream
        stream.close()
        return stream

    def document(self, relpath: str, value: Any = None, derived: bool = False) -> DocumentSlot:
        """The document at ``relpath`` (set to ``value`` when given); ``derived``: see :class:`DocumentSlot`."""
        slot = self.documents.get(relpath)
        if slot is None:
            slot = self.documents[relpath] = DocumentSlot(self.directory / relpath, value, derived)
        elif value is not None:
            slot.set(value)
        return slot

    def set_document(self, relpath: str, value: Any) -> None:
        """Replace a document from the caller's thread; StreamClosedError once the run has ended."""
        with self.seal.lock:
            if self.seal.sealed:
                raise StreamClosedError(f"{relpath} cannot change: its run has ended")
            self.document(relpath).set(value)

    def add_file(self, job: FileJob) -> None:
        """Queue a file to place; StreamClosedError once the run has ended."""
        with self.seal.lock:
            if self.seal.sealed:
                raise StreamClosedError(f"{job.entry.get('path')} cannot be saved: its run has ended")
            self.file_jobs.append(job)

    def load_file_entries(self, entries: list[dict[str, Any]]) -> None:
        self.file_entries = {e["path"]: e for e in entries if isinstance(e, dict) and "path" in e}

    # -- agent's loop ----------------------------------------------------
    async def flush(self, durable: bool = False) -> None:
        """Write everything buffered now; fsync too when ``durable`` or a second has passed."""
        async with self._guard():
            if self.closed:
                return
            await self._write_queued()
            due = self.clock() - self._last_fsync >= self.fsync_interval_s
            # a periodic fsync runs beside the next writes (a slow disk must not hold them up); one
            # that was asked for is waited for
            await self._finish_pass(durable or due, wait=durable)

    async def close(self) -> None:
        """Write everything, seal the run (nothing is admitted afterwards), fsync, release the files;
        then call :attr:`on_closed` (whatever failed on the way: the run has ended either way)."""
        try:
            await self._close()
        finally:
            callbacks, self.on_closed = self.on_closed, []
            for callback in callbacks:
                callback()

    async def _close(self) -> None:
        # Sealed first, before waiting for a pass in progress: from here on a call that appends takes
        # its row back and raises, so nothing piles up behind a slow write. A pass in progress took
        # older rows than these and writes them first (it holds the guard).
        final, jobs = self._seal()
        async with self._guard():
            if self.closed:
                return
            for stream, writes in final:
                for write in writes:
                    await self._write_chunks(stream, write)
            for job in jobs:
                await self._place(job)
            try:
                await self._finish_pass(durable=True, final=True)
            finally:
                await self.stream_files.close()
                self.closed = True
                # documents the last pass could not write (a full disk; no descriptor left, which closing the
                # stream files just gave back) are tried again until the close deadline: the run's end must
                # be on disk, or said not to be
                self.unwritten_documents = await retry_unwritten(
                    self._unwritten_documents, lambda: self._write_documents(final=True), self.close_deadline,
                    self.clock)

    def _seal(self) -> tuple[list[tuple[RowStream, list[Write]]], list[FileJob]]:
        """Seal the run and take everything still queued (rows of every stream, files)."""
        rows, sized_bytes = self._write_rows_limit(), self._sized_limit()
        with self.seal.lock:
            if self.seal.sealed:
                return [], []
            final = [(stream, stream.seal_and_take_all(CHUNK_ROWS, rows, sized_bytes))
                     for stream in self.streams.values()]
            jobs = list(self.file_jobs)
            self.file_jobs.clear()
            self.seal.sealed = True
        return final, jobs

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _write_queued(self) -> None:
        for stream in list(self.streams.values()):
            # bounded by what is queued now, so a faster producer cannot keep
            # this pass from reaching the documents and the fsync below
            remaining = len(stream.queue)
            while remaining > 0:
                remaining -= await self._write_rows(stream, min(remaining, self._write_rows_limit()))
        while self.file_jobs:
            await self._place(self.file_jobs.popleft())

    async def _finish_pass(self, durable: bool, wait: bool = True, final: bool = False) -> None:
        if durable:
            for hook in self.on_durable:
                hook()
        await self._write_documents(final)
        if durable and wait:
            await self._fsync()
        elif durable and (self._fsync_task is None or self._fsync_task.done()):
            self._fsync_task = asyncio.ensure_future(self._fsync_handles())

    async def _write_rows(self, stream: RowStream, limit: int) -> int:
        """Take up to ``limit`` buffered events of ``stream`` (big rows up to :meth:`_sized_limit`),
        write them in one append; returns how many were taken (at least 1, so a caller's countdown ends)."""
        write = stream.take_write(CHUNK_ROWS, limit, self._sized_limit())
        await self._write_chunks(stream, write)
        return max(write.rows, 1)

    def _sized_limit(self) -> int:
        return max(1, min(WRITE_SIZED_BYTES, self.budget.capacity_bytes // 16))

    def _write_rows_limit(self) -> int:
        """Rows per write: :data:`WRITE_ROWS`, fewer under a small buffer budget (a write's encoding
        needs about 1 KiB of transient memory per row: the line, the encoder's buffers)."""
        return max(CHUNK_ROWS, min(WRITE_ROWS, self.budget.capacity_bytes // 1024))

    async def _write_chunks(self, stream: RowStream, write: Write) -> None:
        """Encode taken events and append them with one write. Each ends up written or counted as
        dropped with a reason, whatever fails: a value the encoder refuses costs only its own row."""
        created_at = utc_iso()
        start = stream.next_index
        blobs: list[bytes] = []
        written_items: list = []
        chunk_rows: list[int] = []  # rows of each blob (a chunk less the rows the encoder refused)
        count = 0
        try:
            for items in write.chunks:
                if stream.has_tensors:
                    items = await self._resolve_tensors(stream, items)
                items, blob = self._encode(stream, items, start + count, created_at)
                blobs.append(blob)
                written_items.extend(items)
                chunk_rows.append(len(items))
                count += len(items)
            kept = await self._append(stream, blobs, count) if count else 0
            if kept:
                written = written_items[:kept] if kept < count else written_items
                self._note_latest(stream, written)
                if kept < count:  # a write cut short: its rows end where the file now ends
                    self._offer(stream, start, written, created_at, stream.file_size)
                else:
                    self._offer_chunks(stream, start, written, chunk_rows, [len(blob) for blob in blobs], created_at)
        except Exception:  # a bug must not lose events silently: count them, report once per stream
            unaccounted = stream.accepted() - len(stream.queue) - stream.counters.written - stream.counters.dropped_total
            stream.counters.drop(unaccounted, "internal_error", stream.name)
            if stream.name not in self._reported:
                self._reported.add(stream.name)
                logger.exception("ml-dash agent failed writing %s (further failures are counted only)", stream.path)
        finally:
            stream.written(write)
            self.budget.space_freed()  # a caller may be waiting on a full buffer

    def _encode(self, stream: RowStream, items: list, start: int, created_at: str) -> tuple[list, bytes]:
        try:
            return items, stream.encode(items, start, created_at)
        except Exception:  # noqa: BLE001  # one value the encoder cannot carry: find it, keep the rest
            good = []
            for item in items:
                try:
                    stream.encode([item], 0, created_at)
                except Exception:  # noqa: BLE001  # this one row cannot be encoded: counted, not raised
                    stream.counters.drop(1, "unserializable", stream.name)
                    continue
                good.append(item)
            return good, stream.encode(good, start, created_at)

    def _note_latest(self, stream: RowStream, items: list) -> None:
        if stream.latest is None:
            return
        try:
            merge_latest(stream.latest, items)
            stream.latest_bytes = stream.file_size
        except Exception:  # noqa: BLE001  # the rows are on disk: only the run table's shortcut to them is lost
            self._report_once(f"{stream.name}:latest", "could not keep the latest values of %s", stream.name)

    def _offer_chunks(self, stream: RowStream, start: int, items: list, rows: list[int], sizes: list[int],
                      created_at: str) -> None:
        """Offer a whole write's rows one encoded chunk at a time (``rows`` and ``sizes``: each chunk's rows
        and bytes), each with the file offset where its lines end: the upload then takes whole chunks from
        memory for a batch of any size from one chunk (CHUNK_ROWS) up. Offered as one piece, a write of up
        to WRITE_ROWS rows was too big for a smaller batch, whose rows were read back from disk and parsed."""
        end = stream.file_size - sum(sizes)  # where this write's first line begins
        position = 0
        for count, size in zip(rows, sizes):
            end += size
            if count:
                self._offer(stream, start + position, items[position:position + count], created_at, end)
            position += count

    def _offer(self, stream: RowStream, start: int, items: list, created_at: str, end_offset: int) -> None:
        if self.on_written is None or not stream.name.startswith(METRIC_PREFIX):
            return
        try:
            self.on_written(stream.name, start, items, created_at, end_offset)
        except Exception:  # the rows are on disk: the upload reads them from there instead
            logger.debug("ml-dash: could not keep rows of %s for the upload", stream.name, exc_info=True)

    async def _append(self, stream: RowStream, blobs: list[bytes], count: int) -> int:
        """Append the chunks' lines with one write when they are small, else one after another (joining big
        ones would copy them all once more); returns how many rows are now on disk. When a write fails
        part way (a nearly full disk takes what fits, then refuses), the whole lines it took stay and the
        file is cut back to the end of the last of them; only the rows after it are dropped."""
        start = stream.next_index
        size = sum(map(len, blobs))
        if len(blobs) > 1 and size <= JOIN_BYTES:
            blobs = [b"".join(blobs)]  # one executor round trip instead of one per chunk
        try:
            opened_size = await self.stream_files.open(stream.name, stream.path)
            if opened_size is not None:  # its first open by this writer (a crash's torn line ended)
                stream.file_size = opened_size
            await self.stream_files.write(stream.name, blobs)
        except OSError as exc:
            on_disk = await self.stream_files.size(stream.name)  # how much of this append reached the file
            kept, kept_bytes = whole_lines(blobs, max(0, on_disk - stream.file_size) if on_disk is not None else 0)
            stream.file_size += kept_bytes
            await self._truncate_back(stream)  # the half line past them, if any
            stream.counters.drop(count - kept, "disk_error", stream.name)
            logger.debug("write to %s failed after %d of %d row(s): %s", stream.path, kept, count, exc)
        else:
            kept = count
            stream.file_size += size
        stream.next_index = start + kept
        stream.counters.written += kept
        return kept

    async def _resolve_tensors(self, stream: RowStream, items: list) -> list:
        """Replace tensor values by numbers: one stacked non-blocking copy per device, then poll. If the
        read fails, the rows are read one by one, so only those whose tensors fail are dropped (counted);
        a GPU that does not answer in time costs the whole chunk (one wait, not one per row)."""
        slots = [(fields, key) for fields in items for key, value in fields.items() if is_tensor(value)]
        if not slots:
            return items
        try:
            numbers = await self._read_tensors([fields[key] for fields, key in slots])
        except TimeoutError as exc:
            return self._drop_tensor_rows(stream, items, {id(fields) for fields, _ in slots}, exc)
        except Exception:  # noqa: BLE001  # one bad tensor: find it below, keep the others
            numbers = None
        if numbers is None:
            bad: set[int] = set()
            failure: Exception | None = None
            for fields in items:
                keys = [key for key, value in fields.items() if is_tensor(value)]
                if not keys:
                    continue
                try:
                    for key, number in zip(keys, await self._read_tensors([fields[key] for key in keys])):
                        fields[key] = number
                except Exception as exc:  # noqa: BLE001  # this row's tensors cannot be read: it alone goes
                    bad.add(id(fields))
                    failure = exc
                    if isinstance(exc, TimeoutError):
                        break
            if isinstance(failure, TimeoutError):
                bad |= {id(fields) for fields in items if any(is_tensor(v) for v in fields.values())}
            return self._drop_tensor_rows(stream, items, bad, failure) if bad else items
        for (fields, key), number in zip(slots, numbers):
            fields[key] = number
        return items

    async def _read_tensors(self, tensors: list) -> list:
        read = await self.run_blocking(TensorRead, tensors)
        deadline = self.clock() + TENSOR_READ_TIMEOUT_S
        delay = 0.0005
        while not read.ready():
            if self.clock() > deadline:
                raise TimeoutError(f"tensors not on the host after {TENSOR_READ_TIMEOUT_S} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)
        return read.finish()

    def _drop_tensor_rows(self, stream: RowStream, items: list, bad: set[int], exc: Exception | None) -> list:
        stream.counters.drop(len(bad), "tensor_read_failed", stream.name)
        logger.warning("ml-dash could not read logged tensors of %s (%d row(s) dropped): %s", stream.name,
                       len(bad), exc)
        return [fields for fields in items if id(fields) not in bad]

    async def _truncate_back(self, stream: RowStream) -> None:
        try:
            await self.stream_files.truncate(stream.name, stream.file_size)
        except OSError as exc:
            logger.debug("could not truncate %s back: %s", stream.path, exc)

    async def _place(self, job: FileJob) -> None:
        try:
            result = await self.run_blocking(place_file, job)
        except Exception as exc:  # noqa: BLE001  # the flusher must outlive a bad file: counted
            job.discarded()
            self.file_counters.drop(1, "disk_error", "files")
            logger.warning("ml-dash could not save file %s: %s", job.dest, exc)
            return
        now = utc_iso()
        entry = dict(job.entry, sizeBytes=result.size_bytes, checksum=result.sha256, updatedAt=now)
        previous = self.file_entries.get(entry["path"])
        entry["uploadedAt"] = previous["uploadedAt"] if previous else now
        self.file_entries[entry["path"]] = entry
        self.document("files/.files_metadata.json").set({"files": list(self.file_entries.values())})
        self.file_counters.written += 1

    async def _write_documents(self, final: bool = False) -> None:
        """Write the documents changed since their last write: the run's own (experiment.json, parameters,
        the files' list) on every pass, then derived ones (metric metadata), at most
        :data:`DERIVED_DOCUMENTS_PER_PASS` a pass, the longest waiting first; every one when ``final``."""
        self._document_passes += 1
        own: list[DocumentSlot] = []
        derived: list[DocumentSlot] = []
        for slot in list(self.documents.values()):  # the caller's thread may add one meanwhile
            if slot.dirty:
                (derived if slot.derived else own).append(slot)
        if not final and len(derived) > DERIVED_DOCUMENTS_PER_PASS:
            derived = heapq.nsmallest(DERIVED_DOCUMENTS_PER_PASS, derived, key=attrgetter("written_pass"))
        encoded = [job for slot in own + derived if (job := self._encode_document(slot)) is not None]
        if not encoded:
            return
        # each document costs an fsync: many go out on several threads at once
        errors = await self.fan_out(write_documents, [(slot.path, payload) for slot, _, payload in encoded])
        for (slot, version, _), error in zip(encoded, errors):
            self._document_written(slot, version, error)

    def _unwritten_documents(self) -> list[Path]:
        return [slot.path for slot in self.documents.values() if slot.dirty]

    def _encode_document(self, slot: DocumentSlot) -> tuple[DocumentSlot, int, bytes] | None:
        version = slot.version
        try:
            value = slot.current()
            payload = dumps(value) if not isinstance(value, bytes) else value
        except Exception as exc:  # noqa: BLE001  # checked at the call, so a bug: this version is skipped, said once
            slot.written_version = version
            self._report_once(str(slot.path), "could not encode %s: %s", slot.path, exc)
            return None
        return slot, version, payload

    def _document_written(self, slot: DocumentSlot, version: int, error: OSError | None) -> None:
        if error is not None:  # disk full or gone, or out of descriptors: the next pass writes it again
            # said once per kind of failure, not per document (a run may have 20,000 of them)
            self._report_once(f"document-{error.errno}", "could not write %s (%s; the same failure of other "
                              "documents is not logged): %s", slot.path, "retried until the run's close deadline"
                              if self.seal.sealed else "retried on the next pass", error)
            return
        slot.written_version = version
        slot.written_pass = self._document_passes

    def _report_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._reported:
            self._reported.add(key)
            logger.warning("ml-dash: " + message, *args)

    async def _fsync(self) -> None:
        """fsync everything written so far (after a periodic fsync still running, which covers less)."""
        if self._fsync_task is not None and not self._fsync_task.done():
            await self._fsync_task
        await self._fsync_handles()

    async def _fsync_handles(self) -> None:
        self._last_fsync = self.clock()
        await self.stream_files.sync()
