"""What the uploader sends next: unacknowledged rows of one stream, from memory or from disk.

The local files are the record. Rows past a stream's acknowledged cursor are
read back from its JSON-lines file (:func:`read_stream`), except when the
agent has just written them: then :class:`MemoryChunks` still holds them as
columnar blocks and nothing is read or decoded (the live upload's fast path).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .jsonlines import DecodeError, _decoder, loads, restore_metric_row
from .metric_lines import uniform_block
from .wire import block_rows, blocks_from_fields, metric_blocks, trim_blocks

MAX_READ_BYTES = 32 * 1024 * 1024
#: Rows :class:`MemoryChunks` holds at most (~130 bytes a row as columns); past that the
#: upload is behind and reads the disk when it gets there.
MEMORY_ROWS = 262_144


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
    blocks: list[dict[str, Any]] | None = None  # metric streams: columnar blocks (agent/wire.py)
    rows: list[dict[str, Any]] | None = None  # logs: the records


@dataclass(slots=True)
class MemoryChunk:
    stream: str
    start: int
    count: int
    blocks: list[dict[str, Any]]
    end_offset: int


class MemoryChunks:
    """Metric rows the agent has just written, kept as columnar blocks so they need not be read back.

    Bounded by :data:`MEMORY_ROWS`: when the upload is behind (or the server
    is down) new chunks are refused and the upload reads the disk instead.
    Used only on the agent's loop thread.
    """

    def __init__(self, limit_rows: int = MEMORY_ROWS) -> None:
        self.limit_rows = limit_rows
        self.rows = 0
        self._chunks: deque[MemoryChunk] = deque()

    def __len__(self) -> int:
        return len(self._chunks)

    def offer(self, stream: str, start: int, fields: list[dict[str, Any]], created_at: str, end_offset: int) -> bool:
        """Keep rows ``start ..`` of ``stream`` (field dicts as logged); False when full."""
        if not fields or self.rows + len(fields) > self.limit_rows:
            return False
        self._chunks.append(MemoryChunk(stream, start, len(fields), blocks_from_fields(fields, created_at), end_offset))
        self.rows += len(fields)
        return True

    def forget_before(self, acked: dict[str, int]) -> None:
        """Drop chunks whose rows the server has all acknowledged (``acked``: stream -> rows stored)."""
        kept: deque[MemoryChunk] = deque()
        for chunk in self._chunks:
            if chunk.start + chunk.count <= acked.get(chunk.stream, 0):
                self.rows -= chunk.count
            else:
                kept.append(chunk)
        self._chunks = kept

    def take(self, stream: str, start: int, budget: int) -> PendingStream | None:
        """Rows from ``start`` on, up to ``budget`` of them, if memory holds row ``start``: the chunk
        holding it (trimmed) and the whole chunks that follow it without a gap."""
        chunks = [c for c in self._chunks if c.stream == stream]
        for position, chunk in enumerate(chunks):
            if chunk.start <= start < chunk.start + chunk.count:
                break
        else:
            return None
        blocks = trim_blocks(chunk.blocks, start - chunk.start)
        count, end_offset = chunk.start + chunk.count - start, chunk.end_offset
        if count > budget:
            return None
        for following in chunks[position + 1:]:
            if following.start != start + count or count + following.count > budget:
                break
            blocks += following.blocks
            count += following.count
            end_offset = following.end_offset
        return PendingStream(stream, start, count, end_offset, blocks=blocks)


def read_stream(name: str, path: Path, start: int, offset: int, budget: int) -> PendingStream | None:
    """Up to ``budget`` complete rows of ``path`` from byte ``offset`` on (the first should be row
    ``start``); None when there is none yet. Damaged lines and rows below ``start`` are skipped;
    a gap in the indices ends the batch before it."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(MAX_READ_BYTES)
    end = data.rfind(b"\n") + 1
    if end == 0:
        return None
    lines = data.count(b"\n", 0, end)
    if lines > budget:
        end, lines = end_of_line(data, budget, end, lines), budget
    if name != "logs":
        block = uniform_block(data, end, start)
        if block is not None:
            return PendingStream(name, start, block_rows(block), offset + end, blocks=[block])
    records, used = _decode_records(data[:end].split(b"\n")[:-1], identity_key(name), start)
    if not records:
        return None
    if name == "logs":
        rows = [{k: v for k, v in r.items() if k != "sequenceNumber"} for r in records]
        return PendingStream(name, start, len(rows), offset + used, rows=rows)
    restored = [restore_metric_row(r) if "nonFinite" in r else r for r in records]
    return PendingStream(name, start, len(records), offset + used, blocks=metric_blocks(restored))


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
