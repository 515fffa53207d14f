"""What the uploader sends next: unacknowledged rows of one stream, from memory or from disk.

The local files are the record. Rows past a stream's acknowledged cursor are
read back from its JSON-lines file (:func:`read_stream`), except when the
agent has just written them: then :class:`MemoryChunks` still holds them as
encoded columnar blocks and nothing is read or decoded (the live upload's
fast path). Either way rows leave here msgpack-encoded, so building a body
cannot fail on them.

A row that cannot be sent costs only itself: a gap in the indices (damaged or
missing lines), a line longer than :data:`MAX_READ_BYTES`, or a row msgpack
cannot carry ends the rows read before it, and the read that starts at it
returns a :class:`Void` for it instead; the uploader sets it aside (agent/upload/rejects.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import msgspec

from ml_dash.format.jsonlines import DecodeError, _decoder, loads, restore_metric_row
from ml_dash.format.layout import LOG_KEY, LOG_STREAM, identity_key
from ml_dash.format.wire import block_rows, blocks_from_fields, metric_blocks, pack

from .metric_lines import uniform_block

#: One read of a stream file, at most: a line longer than this is set aside (rows are at most 1 MiB
#: at the call, 6 MiB as JSON at worst).
MAX_READ_BYTES = 16 * 1024 * 1024
#: Packed bytes one request carries at most, whatever the rows' sizes (the server takes twice this:
#: ml_dash/format/wire.py BodyLimits).
BATCH_BYTES = 8 * 1024 * 1024
#: Metric files are decoded this much at a time (~25k rows of 4 scalars + step) and each piece
#: is packed at once: decoded rows cost ~300 bytes each, packed ones ~50, and a whole batch
#: decoded at once held ~60 MB.
PIECE_BYTES = 4 * 1024 * 1024
#: Encoded bytes :class:`MemoryChunks` holds at most (~50 bytes a row of 4 scalars + step);
#: past that the upload is behind and reads the disk when it gets there.
MEMORY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Void:
    """Why rows of a stream are set aside instead of sent; they stay in the stream's file at
    ``offset`` (``length`` bytes)."""

    reason: str  # missing | damaged | too_long | unencodable | rejected
    detail: str
    offset: int
    length: int
    status: int = 0  # the server's status, when it refused them


@dataclass(slots=True)
class PendingStream:
    """Rows ``start .. start + count - 1`` of one stream, ending at byte ``end_offset`` of its file;
    sent as msgpack-encoded blocks (metrics) or rows (logs), or set aside when ``void`` is given."""

    name: str
    start: int
    count: int
    end_offset: int
    blocks: list[msgspec.Raw] | None = None  # metric streams: packed columnar blocks (ml_dash/format/wire.py)
    rows: list[msgspec.Raw] | None = None  # logs: packed records, without their sequenceNumber
    void: Void | None = None
    writer: str | None = None  # the writer segment of these rows (ml_dash/format/segments.py), when known

    @property
    def size(self) -> int:
        """Packed bytes this stream adds to a body."""
        return sum(len(part) for part in (self.blocks or self.rows or ()))


@dataclass(slots=True)
class MemoryChunk:
    stream: str
    start: int
    count: int
    blocks: list[msgspec.Raw]  # columnar blocks, already msgpack-encoded
    end_offset: int
    size: int  # encoded bytes


class MemoryChunks:
    """Metric rows the agent has just written, kept encoded so they need not be read back.

    A chunk is packed when it is offered (columns, then msgpack: ~10 bytes a
    value), so holding it costs bytes, not Python objects, and sending it is
    a copy. Bounded by :data:`MEMORY_BYTES`: when the upload is behind new
    chunks are refused, and while the server is failing none are kept; the
    upload reads the disk instead. Chunks are kept per stream, in index order,
    so that planning a batch over a run of 20,000 metrics looks at each
    stream's own chunks only (it looked at every chunk for every stream). Used
    only on the agent's loop thread.
    """

    def __init__(self, limit_bytes: int = MEMORY_BYTES, suspended: bool = False) -> None:
        self.limit_bytes = limit_bytes
        self.bytes = 0
        self.suspended = suspended
        self._chunks: dict[str, deque[MemoryChunk]] = {}
        self._count = 0

    def suspend(self) -> None:
        """The server is not taking rows: drop the copies and take none until :meth:`resume`
        (the backlog waits on disk, and the upload reads it from there when the server is back)."""
        self.suspended = True
        self._chunks.clear()
        self.bytes = self._count = 0

    def resume(self) -> None:
        self.suspended = False

    def __len__(self) -> int:
        return self._count

    def offer(self, stream: str, start: int, fields: list[dict[str, Any]], created_at: str, end_offset: int) -> bool:
        """Keep rows ``start ..`` of ``stream`` (field dicts as logged); False when full."""
        if self.suspended or not fields or self.bytes >= self.limit_bytes:
            return False
        try:
            blocks = [msgspec.Raw(pack(block)) for block in blocks_from_fields(fields, created_at)]
        except Exception:  # noqa: BLE001  # a value msgpack cannot carry: the disk path finds it and sets it aside
            return False
        size = sum(len(block) for block in blocks)
        self._chunks.setdefault(stream, deque()).append(MemoryChunk(stream, start, len(fields), blocks, end_offset, size))
        self.bytes += size
        self._count += 1
        return True

    def forget_before(self, acked: dict[str, int]) -> None:
        """Drop chunks whose rows the server has all acknowledged (``acked``: stream -> rows stored)."""
        for stream in [name for name in self._chunks if acked.get(name, 0) > 0]:
            kept: deque[MemoryChunk] = deque()
            for chunk in self._chunks[stream]:
                if chunk.start + chunk.count <= acked[stream]:
                    self.bytes -= chunk.size
                    self._count -= 1
                else:
                    kept.append(chunk)
            if kept:
                self._chunks[stream] = kept
            else:
                del self._chunks[stream]

    def take(self, stream: str, start: int, budget: int, budget_bytes: int = BATCH_BYTES) -> PendingStream | None:
        """The chunk starting at row ``start`` and the whole chunks that follow it without a gap,
        up to ``budget`` rows and about ``budget_bytes``; None when no chunk starts there."""
        return joined(stream, fitting(self.chunks_from(stream, start), budget, budget_bytes))

    def chunks_from(self, stream: str, start: int) -> list[MemoryChunk]:
        """The chunks that follow one another without a gap from row ``start`` (none when no chunk starts
        there). Chunks are never changed once offered, so the list may be read on another thread."""
        out: list[MemoryChunk] = []
        position = start
        for chunk in self._chunks.get(stream, ()):  # in index order
            if chunk.start < position and not out:  # before ``start``: acknowledged, not yet forgotten
                continue
            if chunk.start != position:
                break
            out.append(chunk)
            position += chunk.count
        return out

    def next_start(self, stream: str, start: int) -> int | None:
        """Where the first chunk of ``stream`` after row ``start`` begins: a disk read should stop
        there, so that the batch after it is served from memory."""
        starts = [c.start for c in self._chunks.get(stream, ()) if c.start > start]
        return min(starts) if starts else None


def fitting(chunks: list[MemoryChunk], budget: int, budget_bytes: int = BATCH_BYTES) -> list[MemoryChunk]:
    """The first of ``chunks`` that together hold at most ``budget`` rows and ``budget_bytes`` bytes."""
    out: list[MemoryChunk] = []
    count = size = 0
    for chunk in chunks:
        if count + chunk.count > budget or size + chunk.size > budget_bytes:
            break
        out.append(chunk)
        count += chunk.count
        size += chunk.size
    return out


def joined(stream: str, chunks: list[MemoryChunk]) -> PendingStream | None:
    """Consecutive ``chunks`` of ``stream`` as one stream of a batch (None for none)."""
    if not chunks:
        return None
    blocks = [block for chunk in chunks for block in chunk.blocks]
    return PendingStream(stream, chunks[0].start, sum(c.count for c in chunks), chunks[-1].end_offset, blocks=blocks)


def read_stream(name: str, path: Path, start: int, offset: int, budget: int,
                budget_bytes: int = BATCH_BYTES) -> PendingStream | None:
    """Up to ``budget`` complete rows of ``path`` from byte ``offset`` on (the first should be row
    ``start``), about ``budget_bytes`` of them at most, packed; a :class:`Void` when row ``start`` itself
    cannot be sent; None when no complete row is there yet. Damaged lines without a gap and rows below
    ``start`` are skipped."""
    if name != LOG_STREAM:
        uniform = _read_uniform(name, path, start, offset, budget, budget_bytes)
        if uniform is not None:
            return uniform
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(MAX_READ_BYTES)
    end = data.rfind(b"\n", 0, max(budget_bytes, data.find(b"\n") + 1)) + 1
    if end == 0:
        if len(data) < MAX_READ_BYTES:
            return None  # nothing complete yet
        length = _line_length(path, offset)
        return _void(name, start, 1, Void("too_long", f"a line of {length:,} bytes", offset, length), offset + length)
    lines = data.count(b"\n", 0, end)
    if lines > budget:
        end = end_of_line(data, budget, end, lines)
    key = identity_key(name)
    records, used, gap = _decode_records(data[:end].split(b"\n")[:-1], key, start)
    if not records:
        if gap is None:
            return None
        found, skipped, damaged = gap
        reason = "damaged" if damaged else "missing"
        detail = f"rows {start}..{found - 1} are {'damaged' if damaged else 'not'} on disk"
        return _void(name, start, found - start, Void(reason, detail, offset, skipped), offset + skipped)
    return _packed(name, start, offset, records, used, data)


def _packed(name: str, start: int, offset: int, records: list[dict[str, Any]], used: int,
            data: bytes) -> PendingStream:
    """The records as a PendingStream, packed now: a row msgpack cannot carry ends the rows before it
    (or, when it is the first, becomes a Void of its own)."""
    if name == LOG_STREAM:
        rows: list[msgspec.Raw] = []
        for record in records:
            try:
                rows.append(msgspec.Raw(pack({k: v for k, v in record.items() if k != LOG_KEY})))
            except Exception as exc:  # noqa: BLE001  # any value msgpack cannot carry: cut the stream here
                return _cut(name, start, offset, data, len(rows), exc, rows=rows)
        return PendingStream(name, start, len(rows), offset + used, rows=rows)
    restored = [restore_metric_row(r) if "nonFinite" in r else r for r in records]
    try:
        blocks = [msgspec.Raw(pack(block)) for block in metric_blocks(restored)]
    except Exception:
        for good, record in enumerate(restored):  # the slow way, to find the row
            try:
                pack(metric_blocks([record]))
            except Exception as exc:  # noqa: BLE001  # the first row msgpack cannot carry
                kept = [msgspec.Raw(pack(b)) for b in metric_blocks(restored[:good])]
                return _cut(name, start, offset, data, good, exc, blocks=kept)
        raise
    return PendingStream(name, start, len(records), offset + used, blocks=blocks)


def _cut(name: str, start: int, offset: int, data: bytes, good: int, exc: Exception, **packed: Any) -> PendingStream:
    """The first ``good`` rows, or (none) a Void for row ``start``, which msgpack cannot carry."""
    position = _line_of(data, identity_key(name), start + good)
    if position is None:  # cannot happen for rows _decode_records returned; never fail the read for it
        position = end_of_line(data, good, len(data), data.count(b"\n")) if good else 0
    if good:
        return PendingStream(name, start, good, offset + position, **packed)
    length = data.index(b"\n", position) + 1 - position
    void = Void("unencodable", f"{type(exc).__name__}: {exc}", offset + position, length)
    return _void(name, start, 1, void, offset + position + length)


def _line_of(data: bytes, key: str, index: int) -> int | None:
    """Where in ``data`` the line of record ``index`` starts (a walk: only when a row failed to pack)."""
    position = 0
    while (newline := data.find(b"\n", position)) >= 0:
        try:
            record = loads(data[position:newline])
        except DecodeError:
            record = None
        if isinstance(record, dict) and record.get(key) == index:
            return position
        position = newline + 1
    return None


def _void(name: str, start: int, count: int, void: Void, end_offset: int) -> PendingStream:
    return PendingStream(name, start, count, end_offset, void=void)


def _line_length(path: Path, offset: int) -> int:
    """The length of the line starting at ``offset``, newline included (read in pieces)."""
    length = 0
    with open(path, "rb") as f:
        f.seek(offset)
        while piece := f.read(1 << 20):
            newline = piece.find(b"\n")
            if newline >= 0:
                return length + newline + 1
            length += len(piece)
    return length


def _read_uniform(name: str, path: Path, start: int, offset: int, budget: int,
                  budget_bytes: int) -> PendingStream | None:
    """The fast path of :func:`read_stream`: pieces of :data:`PIECE_BYTES`, each decoded with
    :func:`uniform_block` and packed at once, so only one piece's decoded rows are alive at a
    time. Stops before the first piece the fast path declines; None if that is the first."""
    blocks: list[msgspec.Raw] = []
    count = consumed = 0
    carry = b""
    with open(path, "rb") as f:
        f.seek(offset)
        while count < budget and consumed < budget_bytes:
            piece = f.read(PIECE_BYTES)
            if not piece:
                break
            data = carry + piece if carry else piece
            end = data.rfind(b"\n") + 1
            if end == 0:
                if len(data) >= MAX_READ_BYTES:
                    break  # no line end in sight: the general path sorts it out
                carry = data
                continue
            lines = data.count(b"\n", 0, end)
            if lines > budget - count:
                end = end_of_line(data, budget - count, end, lines)
            block = uniform_block(data, end, start + count)
            if block is None:
                break
            try:
                blocks.append(msgspec.Raw(pack(block)))
            except Exception:  # noqa: BLE001  # a value msgpack cannot carry: the general path finds the row
                break
            count += block_rows(block)
            consumed += end
            carry = data[end:]
    if not count:
        return None
    return PendingStream(name, start, count, offset + consumed, blocks=blocks)


def end_of_line(data: bytes, lines: int, end: int, total: int) -> int:
    """The offset just past the ``lines``-th newline of ``data[:end]``, which holds ``total`` of them.

    Starts from a proportional guess and walks line by line: lines of one
    stream are of similar length, so the walk is short (and bounded by ``total``).
    """
    position = data.rfind(b"\n", 0, end * lines // total) + 1
    seen = data.count(b"\n", 0, position)
    while seen < lines:
        position = data.index(b"\n", position) + 1
        seen += 1
    while seen > lines:
        position = data.rfind(b"\n", 0, position - 1) + 1
        seen -= 1
    return position


def _decode_records(lines: list[bytes], key: str, first: int) -> tuple[list[dict[str, Any]], int, tuple | None]:
    """Records ``first, first + 1, ...`` from ``lines``, the bytes they span, and the gap that ended them
    (None, or the index found, the bytes before its line, and whether damaged lines were skipped): all
    lines at once (one msgspec call) when they are intact and consecutive, else one by one."""
    if not lines:
        return [], 0, None
    try:
        rows = _decoder.decode_lines(b"\n".join(lines))
    except DecodeError:
        rows = None
    if rows is not None and len(rows) == len(lines) and _consecutive(rows, key, first):
        return rows, sum(map(len, lines)) + len(lines), None
    return _decode_one_by_one(lines, key, first)


def _consecutive(rows: list[Any], key: str, first: int) -> bool:
    """Whether every row is a record and their keys run ``first, first + 1, ...`` (rows are placed by
    position: checking the ends only would store swapped or repeated lines under the wrong index)."""
    try:
        return list(map(itemgetter(key), rows)) == list(range(first, first + len(rows)))
    except (KeyError, TypeError, IndexError):  # a line that is not a record, or has no key
        return False


def _decode_one_by_one(lines: list[bytes], key: str, first: int) -> tuple[list[dict[str, Any]], int, tuple | None]:
    """The slow path: skip damaged lines and rows already acknowledged; stop at a gap. The bytes used
    end with the last row taken, so lines after it (damaged ones before a gap) are read again next
    time, where they start the gap and are set aside with it."""
    rows: list[dict[str, Any]] = []
    position = used = 0
    damaged = False
    for line in lines:
        position += len(line) + 1
        try:
            record = loads(line)
        except DecodeError:  # a torn line ended by a later writer: skipped, like the readers do
            damaged = True
            continue
        if not isinstance(record, dict) or not isinstance(record.get(key), int):
            damaged = True
            continue
        if record[key] < first + len(rows):
            continue  # a row below the cursor: already sent
        if record[key] != first + len(rows):
            if rows:
                return rows, used, None  # what is contiguous; the next read starts at the gap
            return rows, 0, (record[key], position - len(line) - 1, damaged)
        rows.append(record)
        used = position
        damaged = False
    return rows, used, None
