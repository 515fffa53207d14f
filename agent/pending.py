"""What the uploader sends next: unacknowledged rows of one stream, from memory or from disk.

The local files are the record. Rows past a stream's acknowledged cursor are
read back from its JSON-lines file (:func:`read_stream`), except when the
agent has just written them: then :class:`MemoryChunks` still holds them as
encoded columnar blocks and nothing is read or decoded (the live upload's
fast path).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from .jsonlines import DecodeError, _decoder, loads, restore_metric_row
from .metric_lines import uniform_block
from .wire import block_rows, blocks_from_fields, metric_blocks, pack

MAX_READ_BYTES = 32 * 1024 * 1024
#: Metric files are decoded this much at a time (~25k rows of 4 scalars + step) and each piece
#: is packed at once: decoded rows cost ~300 bytes each, packed ones ~50, and a whole batch
#: decoded at once held ~60 MB.
PIECE_BYTES = 4 * 1024 * 1024
#: Encoded bytes :class:`MemoryChunks` holds at most (~50 bytes a row of 4 scalars + step);
#: past that the upload is behind and reads the disk when it gets there.
MEMORY_BYTES = 32 * 1024 * 1024


def identity_key(stream: str) -> str:
    """The key every record of ``stream`` starts with (as the local writer puts it)."""
    return "sequenceNumber" if stream == "logs" else "index"


@dataclass(slots=True)
class PendingStream:
    """Rows ``start .. start + count - 1`` of one stream, ending at byte ``end_offset`` of its file."""

    name: str
    start: int
    count: int
    end_offset: int
    blocks: list[Any] | None = None  # metric streams: columnar blocks (agent/wire.py), maybe msgspec.Raw
    rows: list[dict[str, Any]] | None = None  # logs: the records


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
    upload reads the disk instead. Used only on the agent's loop thread.
    """

    def __init__(self, limit_bytes: int = MEMORY_BYTES, suspended: bool = False) -> None:
        self.limit_bytes = limit_bytes
        self.bytes = 0
        self.suspended = suspended
        self._chunks: deque[MemoryChunk] = deque()

    def suspend(self) -> None:
        """The server is not taking rows: drop the copies and take none until :meth:`resume`
        (the backlog waits on disk, and the upload reads it from there when the server is back)."""
        self.suspended = True
        self._chunks.clear()
        self.bytes = 0

    def resume(self) -> None:
        self.suspended = False

    def __len__(self) -> int:
        return len(self._chunks)

    def offer(self, stream: str, start: int, fields: list[dict[str, Any]], created_at: str, end_offset: int) -> bool:
        """Keep rows ``start ..`` of ``stream`` (field dicts as logged); False when full."""
        if self.suspended or not fields or self.bytes >= self.limit_bytes:
            return False
        blocks = [msgspec.Raw(pack(block)) for block in blocks_from_fields(fields, created_at)]
        size = sum(len(block) for block in blocks)
        self._chunks.append(MemoryChunk(stream, start, len(fields), blocks, end_offset, size))
        self.bytes += size
        return True

    def forget_before(self, acked: dict[str, int]) -> None:
        """Drop chunks whose rows the server has all acknowledged (``acked``: stream -> rows stored)."""
        kept: deque[MemoryChunk] = deque()
        for chunk in self._chunks:
            if chunk.start + chunk.count <= acked.get(chunk.stream, 0):
                self.bytes -= chunk.size
            else:
                kept.append(chunk)
        self._chunks = kept

    def take(self, stream: str, start: int, budget: int) -> PendingStream | None:
        """The chunk starting at row ``start`` and the whole chunks that follow it without a gap,
        up to ``budget`` rows; None when no chunk starts there."""
        chunks = [c for c in self._chunks if c.stream == stream and c.start >= start]
        if not chunks or chunks[0].start != start or chunks[0].count > budget:
            return None
        blocks: list[Any] = []
        count, end_offset = 0, 0
        for chunk in chunks:
            if chunk.start != start + count or count + chunk.count > budget:
                break
            blocks += chunk.blocks
            count += chunk.count
            end_offset = chunk.end_offset
        return PendingStream(stream, start, count, end_offset, blocks=blocks)

    def next_start(self, stream: str, start: int) -> int | None:
        """Where the first chunk of ``stream`` after row ``start`` begins: a disk read should stop
        there, so that the batch after it is served from memory."""
        starts = [c.start for c in self._chunks if c.stream == stream and c.start > start]
        return min(starts) if starts else None


def read_stream(name: str, path: Path, start: int, offset: int, budget: int) -> PendingStream | None:
    """Up to ``budget`` complete rows of ``path`` from byte ``offset`` on (the first should be row
    ``start``); None when there is none yet. Damaged lines and rows below ``start`` are skipped;
    a gap in the indices ends the batch before it."""
    if name != "logs":
        uniform = _read_uniform(name, path, start, offset, budget)
        if uniform is not None:
            return uniform
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(MAX_READ_BYTES)
    end = data.rfind(b"\n") + 1
    if end == 0:
        return None
    lines = data.count(b"\n", 0, end)
    if lines > budget:
        end = end_of_line(data, budget, end, lines)
    records, used = _decode_records(data[:end].split(b"\n")[:-1], identity_key(name), start)
    if not records:
        return None
    if name == "logs":
        rows = [{k: v for k, v in r.items() if k != "sequenceNumber"} for r in records]
        return PendingStream(name, start, len(rows), offset + used, rows=rows)
    restored = [restore_metric_row(r) if "nonFinite" in r else r for r in records]
    return PendingStream(name, start, len(records), offset + used, blocks=metric_blocks(restored))


def _read_uniform(name: str, path: Path, start: int, offset: int, budget: int) -> PendingStream | None:
    """The fast path of :func:`read_stream`: pieces of :data:`PIECE_BYTES`, each decoded with
    :func:`uniform_block` and packed at once, so only one piece's decoded rows are alive at a
    time. Stops before the first piece the fast path declines; None if that is the first."""
    blocks: list[msgspec.Raw] = []
    count = consumed = 0
    carry = b""
    with open(path, "rb") as f:
        f.seek(offset)
        while count < budget:
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
            blocks.append(msgspec.Raw(pack(block)))
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


def _decode_records(lines: list[bytes], key: str, first: int) -> tuple[list[dict[str, Any]], int]:
    """Records ``first, first + 1, ...`` from ``lines`` and the bytes they span; all lines at once
    (one msgspec call) when they are intact and consecutive, else one by one."""
    if not lines:
        return [], 0
    try:
        rows = _decoder.decode_lines(b"\n".join(lines))
    except DecodeError:
        rows = None
    if (rows is not None and len(rows) == len(lines) and isinstance(rows[0], dict) and isinstance(rows[-1], dict)
            and rows[0].get(key) == first and rows[-1].get(key) == first + len(rows) - 1):
        return rows, sum(map(len, lines)) + len(lines)
    return _decode_one_by_one(lines, key, first)


def _decode_one_by_one(lines: list[bytes], key: str, first: int) -> tuple[list[dict[str, Any]], int]:
    """The slow path: skip damaged lines and rows already acknowledged; stop at a gap."""
    rows: list[dict[str, Any]] = []
    used = 0
    for line in lines:
        try:
            record = loads(line)
        except DecodeError:  # a torn line ended by a later writer: skipped, like the readers do
            used += len(line) + 1
            continue
        if not isinstance(record, dict) or not isinstance(record.get(key), int) or record[key] < first:
            used += len(line) + 1
            continue
        if record[key] != first + len(rows):
            break  # a gap on disk: send what is contiguous, stop there
        rows.append(record)
        used += len(line) + 1
    return rows, used
