"""Streams: what the caller's thread appends to, and what the agent drains.

A :class:`RowStream` is an append-only JSON-lines stream (one metric, or the
logs). Its hot path is ``queue.append`` plus one length comparison: no lock,
no encoding, no I/O and no wake-up of the event loop. Every ``wake_every``
events, and for every event while the stream is not open, the caller takes
the slow path once (:meth:`RowStream.on_threshold`), which wakes the agent,
enforces the memory bound and refuses logging after the run ended.

Memory bound (in bytes, bounded wait, then counted drops): a row is counted
at the stream's per-row estimate (set from the width of its rows), or, when it
holds long strings or many fields, at its own size (a :class:`SizedRow`, which
the caller checks against the budget before appending it). Rows the agent has
taken but not yet written count too. When the total across the agent passes
``max_buffer_bytes`` the calling thread waits up to ``max_block_s`` for the
agent; if the buffer is still full it drops the row, counts it as
``buffer_full`` and keeps dropping (without waiting again) until the buffer is
below half the budget.

The bound this keeps (measured on CPython 3.11 with glibc's malloc, rows of 6
fields and rows of 900,000-character strings alike): a started run's peak RSS
stays within 1.5 x the budget plus :data:`LOCAL_OVERHEAD_MB` (the encoder's
buffers and the allocator's slack), and in remote mode plus
:data:`REMOTE_OVERHEAD_MB` (also the just-written rows kept for the upload, at
most half the budget or 32 MiB, and two request bodies being built and sent).

End of a run (every ``log()`` that returned is written): the SDK sets each
stream ``closed``, so every later call takes the slow path. The agent's final
drain takes everything queued and *seals* the run under the run's
:class:`Seal` lock. A call that reaches the slow path before the seal returns
normally (its row is in the queue, and the final drain takes it); after the
seal it takes its own row back and raises :class:`StreamClosedError`, unless
the final drain already took it, in which case it is written and the call
returns normally. The agent seals first, before it waits for a write in
progress, and the memory bound holds in the short time before the seal.

A :class:`DocumentSlot` is a latest-wins JSON document (parameters,
experiment.json, metric metadata) replaced atomically on disk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..format.jsonlines import ChunkEncoder
from .budget import BufferBudget
from .stats import StreamCounters

logger = logging.getLogger("ml_dash.agent")

#: Memory of one buffered metric row: a dict of n fields and their values (measured with
#: tracemalloc on CPython 3.11: 424 bytes at 6 fields, 736 at 11, 2,816 at 51; rounded up).
ROW_BASE_BYTES = 160
ROW_FIELD_BYTES = 56


LOCAL_OVERHEAD_MB = 32
REMOTE_OVERHEAD_MB = 128


def memory_bound_mb(buffer_mb: float, remote: bool) -> float:
    """The most a started run's peak RSS rises above its start, for a buffer budget of ``buffer_mb``."""
    return 1.5 * buffer_mb + (REMOTE_OVERHEAD_MB if remote else LOCAL_OVERHEAD_MB)


def metric_row_bytes(fields: int) -> int:
    """The estimated memory of a buffered metric row of ``fields`` fields (``_ts`` included)."""
    return ROW_BASE_BYTES + ROW_FIELD_BYTES * fields


class StreamClosedError(RuntimeError):
    """Raised at the call when logging to a stream (or a run) that has ended."""


class Seal:
    """One run's end: after :attr:`sealed` nothing more is admitted to any of its streams."""

    __slots__ = ("lock", "sealed")

    def __init__(self, sealed: bool = False) -> None:
        self.lock = threading.Lock()
        self.sealed = sealed


class SizedRow:
    """A buffered row counted at its own size (long strings or many fields)."""

    __slots__ = ("row", "size")

    def __init__(self, row: Any, size: int) -> None:
        self.row = row
        self.size = size


@dataclass(slots=True)
class Write:
    """Events taken for one append, in chunks, with the buffer bytes they hold until written."""

    chunks: list[list]
    rows: int
    bytes: int
    sized_bytes: int


class RowStream:
    """An append-only JSON-lines stream with contiguous indices from 0."""

    __slots__ = (
        "_full_after_close",
        "_sized_lock",
        "_warned_fork",
        "budget",
        "counters",
        "drained",
        "encode",
        "file_size",
        "first_key",
        "has_tensors",
        "in_flight_bytes",
        "in_flight_sized",
        "latest",
        "latest_bytes",
        "name",
        "next_index",
        "path",
        "queue",
        "row_bytes",
        "seal",
        "size_rows",
        "sized_bytes",
        "sized_count",
        "state",
        "waits",
        "wake_at",
        "wake_every",
    )

    def __init__(self, budget: BufferBudget, name: str, path: Path, first_key: str, encode: ChunkEncoder,
                 row_bytes: int, wake_every: int, size_rows: bool = False, keep_latest: bool = False) -> None:
        # the agent's memory budget, shared by every stream, not the agent: a stream may wake the agent
        # and wait for room, nothing more (agent/budget.py)
        self.budget = budget
        self.name = name
        self.path = path
        self.first_key = first_key  # the identity key every record starts with
        self.encode = encode
        self.queue: deque = deque()
        self.wake_every = wake_every
        self.wake_at = wake_every
        self.row_bytes = row_bytes  # estimated memory of one buffered row
        self.size_rows = size_rows  # rows are dicts: re-estimate row_bytes from their width
        self.next_index = 0  # assigned by the agent when the row is written
        self.drained = 0  # events taken off the queue by the agent
        self.counters = StreamCounters()
        self.has_tensors = False
        # each field's latest written value (metric streams; agent thread only): ml_dash/format/latest.py
        self.latest: dict[str, Any] | None = {} if keep_latest else None
        self.latest_bytes = 0  # the file's size when ``latest`` was last merged (the bytes it covers)
        self.state = "open"  # open | dropping | closed | forked
        self.file_size = 0
        self.seal = Seal()
        self.sized_bytes = 0  # SizedRow bytes in the queue (updated under _sized_lock)
        self.sized_count = 0
        self.in_flight_bytes = 0  # taken by the agent, not yet written (agent thread only)
        self.in_flight_sized = 0  # the SizedRow part of it
        self.waits = 0  # times a caller waited on a full buffer
        self._sized_lock = threading.Lock()
        self._warned_fork = False
        self._full_after_close = False  # closed, not sealed yet, and the buffer's wait ran out

    # -- caller's thread -------------------------------------------------
    def on_threshold(self, row: Any) -> None:
        """Slow path, taken once per ``wake_every`` events, and for every event while not 'open'.
        ``row`` is what this call appended."""
        state = self.state
        if state == "closed":
            self._after_close(row)
            return
        if state == "forked":
            self._in_forked_child(row)
            return
        if state == "dropping":
            self._drop_or_reopen()
            return
        if self.size_rows and type(row) is dict:
            self.row_bytes = metric_row_bytes(len(row))
        self.budget.wake()
        if not self._wait_for_room(0):
            self._start_dropping()
            self._drop_last()
            return
        self._rearm()

    def admit_sized(self, row: Any, size: int) -> SizedRow | None:
        """Count a big row at its own ``size`` before it is appended; None when it is dropped
        (the buffer stayed full: counted as ``buffer_full``). Closed and forked streams admit it:
        :meth:`on_threshold` refuses it right after the append."""
        if self.state in ("open", "dropping") and not self._wait_for_room(size):
            self._start_dropping()
            self.counters.drop(1, "buffer_full", self.name)
            return None
        with self._sized_lock:
            self.sized_bytes += size
            self.sized_count += 1
        return SizedRow(row, size)

    def _wait_for_room(self, extra: int) -> bool:
        """Whether the agent's buffer has room for ``extra`` more bytes, waiting up to ``max_block_s``
        (not at all while dropping, which lasts until the buffer is below half the budget)."""
        budget = self.budget
        capacity = budget.capacity_bytes
        if self.state == "dropping":
            if budget.buffered_bytes() + extra > capacity // 2:
                return False
            self._transition("open")
        if budget.buffered_bytes() + extra <= capacity:
            return True
        self.waits += 1
        deadline = time.monotonic() + budget.max_block_s
        while budget.buffered_bytes() + extra > capacity:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            budget.wait_for_space(min(remaining, 0.05))
        return True

    def _start_dropping(self) -> None:
        """The bounded wait ran out: drop without waiting (every call takes the slow path) until the
        buffer is below half the budget."""
        self._transition("dropping")
        self.wake_at = 0

    def _transition(self, state: str) -> bool:
        """Move between open and dropping; never out of closed or forked, which are for good (under the
        run's seal lock, which :meth:`close` takes too)."""
        with self.seal.lock:
            if self.state in ("closed", "forked"):
                return False
            self.state = state
            return True

    def _rearm(self) -> None:
        """Set the next wake threshold; zero (every call to the slow path) unless the stream is open.
        The state is read after the write: whoever closes the stream sets the state, then zero, so a
        threshold written here around a close ends as zero either way."""
        self.wake_at = len(self.queue) + self.wake_every
        if self.state != "open":
            self.wake_at = 0

    def close(self) -> None:
        """No more rows: every later call takes the slow path, which refuses it (after the seal)."""
        with self.seal.lock:
            self.state = "closed"
            self.wake_at = 0

    def forget(self) -> None:
        """In a forked child: the parent writes this stream; calls here are no-ops (warned once)."""
        self.queue.clear()
        self.sized_bytes = self.sized_count = self.in_flight_bytes = self.in_flight_sized = 0
        self.state = "forked"
        self.wake_at = 0

    def _drop_or_reopen(self) -> None:
        if self._wait_for_room(0):
            self._rearm()
            return
        self._drop_last()
        self.budget.wake()

    def _drop_last(self) -> None:
        """Drop the newest buffered row, counted. (Not necessarily this call's own row when other
        threads log too: the agent takes from the other end concurrently, so only an atomic pop is
        safe here. The count is exact either way.)"""
        try:
            item = self.queue.pop()
        except IndexError:
            return
        self._release(item)
        self.counters.drop(1, "buffer_full", self.name)

    def _after_close(self, row: Any) -> None:
        seal = self.seal
        with seal.lock:
            if seal.sealed:
                if self._take_back(row):
                    raise StreamClosedError(f"stream {self.name!r} is closed: its run has ended")
                return  # the final drain took the row: it is written, so the call stands
        # Not sealed yet: the final drain is still to come and takes this row. The memory bound holds
        # meanwhile, as in an open stream: a bounded wait, then counted drops without waiting until
        # the buffer is below half the budget.
        if self._full_after_close:
            self._full_after_close = self.budget.buffered_bytes() > self.budget.capacity_bytes // 2
        if not self._full_after_close and self._wait_for_room(0):
            return
        self._full_after_close = True
        with seal.lock:  # the agent may still be taking from the left: only an atomic pop is safe
            if not seal.sealed:
                self._drop_last()

    def _in_forked_child(self, row: Any) -> None:
        """A forked child logging into its parent's run: the parent owns the files, so this is a
        no-op (warned once)."""
        self._take_back(row)
        if not self._warned_fork:
            self._warned_fork = True
            logger.warning("ml-dash: process %d logged to %s of a run its parent process writes; that is "
                           "a no-op in a forked child (create an Experiment in the child to log from it)",
                           os.getpid(), self.name)

    def _take_back(self, row: Any) -> bool:
        """Remove this call's own row from the queue, if it is still there.

        Only for closed and forked streams, whose queues nobody but callers touch: a sealed stream
        is never drained again, and other callers only append at the right, so an index found in a
        snapshot still points at the same row when it is deleted.
        """
        snapshot = list(self.queue)
        for position in range(len(snapshot) - 1, -1, -1):
            item = snapshot[position]
            if item is row or (type(item) is SizedRow and item.row is row):
                del self.queue[position]
                self._release(item)
                return True
        return False

    def _release(self, item: Any) -> None:
        if type(item) is SizedRow:
            with self._sized_lock:
                self.sized_bytes -= item.size
                self.sized_count -= 1

    def buffered_bytes(self) -> int:
        unsized = len(self.queue) - self.sized_count
        return max(0, unsized) * self.row_bytes + self.sized_bytes + self.in_flight_bytes

    # -- agent's thread --------------------------------------------------
    def take(self, limit: int, limit_sized_bytes: int) -> list:
        """Pop up to ``limit`` buffered events, oldest first, and rows counted at their own size up to about
        ``limit_sized_bytes`` of them (their encoding is as big as they are); they count as in flight
        until :meth:`written`."""
        queue = self.queue
        pop = queue.popleft
        if not self.sized_count:
            n = min(len(queue), limit)
            items = [pop() for _ in range(n)]
            self.in_flight_bytes += n * self.row_bytes
        else:
            items, sized = [], 0
            while queue and len(items) < limit and sized < limit_sized_bytes:
                item = pop()
                if type(item) is SizedRow:
                    self._release(item)
                    sized += item.size
                    self.in_flight_bytes += item.size
                    item = item.row
                else:
                    self.in_flight_bytes += self.row_bytes
                items.append(item)
            self.in_flight_sized += sized
        self.drained += len(items)
        if self.state == "open":
            self._rearm()
        return items

    def take_write(self, chunk_rows: int, rows: int, sized_bytes: int) -> Write:
        """Take one write's worth: up to ``rows`` events in chunks of ``chunk_rows``, and rows counted at
        their own size up to about ``sized_bytes`` of them (at least one event when any is queued)."""
        bytes_before, sized_before = self.in_flight_bytes, self.in_flight_sized
        chunks: list[list] = []
        taken = 0
        while taken < rows and self.queue and self.in_flight_sized - sized_before < sized_bytes:
            chunk = self.take(min(chunk_rows, rows - taken), sized_bytes - (self.in_flight_sized - sized_before))
            taken += len(chunk)
            chunks.append(chunk)
        return Write(chunks, taken, self.in_flight_bytes - bytes_before, self.in_flight_sized - sized_before)

    def written(self, write: Write) -> None:
        """The rows of ``write`` are written (or counted as dropped): their memory is free."""
        self.in_flight_bytes = max(0, self.in_flight_bytes - write.bytes)
        self.in_flight_sized = max(0, self.in_flight_sized - write.sized_bytes)

    def seal_and_take_all(self, chunk_rows: int, rows: int, sized_bytes: int) -> list[Write]:
        """Under the run's seal lock (held by the caller): everything still queued, as writes bounded like
        a pass's (so the final drain encodes no more at once than a periodic write); nothing is admitted
        afterwards."""
        self.state = "closed"
        self.wake_at = 0
        writes = []
        while self.queue:
            writes.append(self.take_write(chunk_rows, rows, sized_bytes))
        return writes

    def accepted(self) -> int:
        """Events accepted so far (exact when read on the agent's thread)."""
        return self.drained + len(self.queue) + self.counters.dropped.get("buffer_full", 0)


class DocumentSlot:
    """A latest-wins JSON document: the caller sets a snapshot, the agent writes it.

    A *derived* document (a metric's metadata.json: counts the stream file
    already holds) may wait a few passes when a run has thousands of them, and
    is rendered only when it is written (:meth:`set_lazy`): see
    ``RunWriter._write_documents``.
    """

    __slots__ = ("derived", "path", "render", "value", "version", "written_pass", "written_version")

    def __init__(self, path: Path, value: Any = None, derived: bool = False) -> None:
        self.path = path
        self.value = value
        self.derived = derived
        self.render: Callable[[Any], Any] | None = None  # the next value, from the last one, when written
        self.version = 0 if value is None else 1
        self.written_version = 0
        self.written_pass = 0  # the writer's pass that last wrote it (the longest waiting go first)

    def set(self, value: Any) -> None:
        """Replace the document; the agent writes it on its next pass."""
        self.value = value
        self.render = None
        self.version += 1

    def set_lazy(self, render: Callable[[Any], Any]) -> None:
        """Replace the document by ``render(current value)``, called when the agent writes it (on its loop):
        a document that waits is never built more than once."""
        self.render = render
        self.version += 1

    def current(self) -> Any:
        """The value to write now (rendering a lazy one)."""
        if self.render is not None:
            self.value, self.render = self.render(self.value), None
        return self.value

    @property
    def dirty(self) -> bool:
        return self.written_version != self.version

