"""The columnar read of one metric stream: ``GET .../experiments/{prefix}/metrics/{metric}/columns``.

Pages of JSON rows cost a dict per row on both sides (a million rows: seconds); this reply sends the
stored chunks as they are, so the server decodes nothing but the two chunks cut to the range, and the
reader builds its arrays column by column.

Format version 1: ``Content-Type: application/vnd.ml-dash.columns+msgpack``, a sequence of msgpack
values, streamed::

    {"v": 1, "metric": "train"}                header
    [first, count, [block, ...]]               a chunk, any number of them, in index order: rows
                                               first .. first+count-1; blocks in the wire format's
                                               columnar shape {"keys", "cols", "created"} (wire.py)
    {"end": true, "next": null | int}          trailer: the range is complete; ``next``, where the
                                               request's row budget (``limit``) ended it
    {"error": "..."}                           instead of the trailer: a read failed after the reply began

A reply without a trailer was cut off: a reader fails rather than return part of a series. Indices
missing between chunks are rows their client set aside. Non-finite floats are plain msgpack floats.
Query: ``start`` (index, default 0), ``limit`` (indices from ``start``; at most :data:`MAX_COLUMN_ROWS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgpack
import msgspec

from .wire import pack

COLUMNS_VERSION = 1
CONTENT_TYPE = "application/vnd.ml-dash.columns+msgpack"
#: Indices one reply covers at most; a longer series takes a further request from the trailer's ``next``.
MAX_COLUMN_ROWS = 16 * 1024 * 1024
#: The largest msgpack value a reader buffers: a chunk of 4,096 rows of wide or long values.
MAX_FRAME_BYTES = 512 * 1024 * 1024


class ColumnsError(ValueError):
    """A columnar reply that is cut off, malformed, or ends in an error the server sent."""


def header(metric: str) -> bytes:
    return pack({"v": COLUMNS_VERSION, "metric": metric})


def chunk_frames(chunks: Iterable[tuple[int, int, bytes]]) -> bytes:
    """The chunks as stored (their blocks already msgpack) framed without decoding them."""
    return b"".join(pack([first, count, msgspec.Raw(blob)]) for first, count, blob in chunks)


def trailer(next_index: int | None) -> bytes:
    return pack({"end": True, "next": next_index})


def failure(message: str) -> bytes:
    return pack({"error": message})


Chunk = tuple[int, int, list[dict[str, Any]]]


class ColumnsReader:
    """Reads a reply fed piece by piece: :meth:`feed` yields its chunks (checked in shape), :meth:`close`
    says where a further request goes on, or raises :class:`ColumnsError` for a reply that did not end."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=MAX_FRAME_BYTES)
        self._state = "header"
        self._next: int | None = None
        self._last = -1

    def feed(self, data: bytes) -> Iterator[Chunk]:
        self._unpacker.feed(data)
        try:
            for value in self._unpacker:
                chunk = self._take(value)
                if chunk is not None:
                    yield chunk
        except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, msgpack.BufferFull, ValueError,
                TypeError) as exc:
            if isinstance(exc, ColumnsError):
                raise
            raise ColumnsError(f"the columns of {self.metric!r} are not valid msgpack: {exc}") from None

    def close(self) -> int | None:
        """``next`` from the trailer (None: the stream's rows are all read)."""
        if self._state != "ended":
            raise ColumnsError(f"the reply with the columns of {self.metric!r} was cut off before its end")
        return self._next

    def _take(self, value: Any) -> Chunk | None:
        if self._state == "header":
            if not isinstance(value, dict) or value.get("v") != COLUMNS_VERSION:
                raise ColumnsError(f"the columns of {self.metric!r} start with no version {COLUMNS_VERSION} header")
            self._state = "chunks"
            return None
        if self._state == "ended":
            raise ColumnsError(f"the columns of {self.metric!r} go on after their end")
        if isinstance(value, dict):
            if "error" in value:
                raise ColumnsError(f"the server failed reading {self.metric!r}: {str(value['error'])[:500]}")
            nxt = value.get("next")
            if value.get("end") is not True or not (nxt is None or (_is_index(nxt) and nxt > self._last)):
                raise ColumnsError(f"the columns of {self.metric!r} end with a malformed trailer")
            self._state, self._next = "ended", nxt
            return None
        return self._chunk(value)

    def _chunk(self, value: Any) -> Chunk:
        if not (isinstance(value, list) and len(value) == 3 and _is_index(value[0]) and _is_index(value[1])
                and isinstance(value[2], list)):
            raise ColumnsError(f"the columns of {self.metric!r} hold something that is no chunk")
        first, count, blocks = value
        if first <= self._last:
            raise ColumnsError(f"the columns of {self.metric!r} repeat or go back to index {first}")
        if sum(check_block(self.metric, b) for b in blocks) != count:
            raise ColumnsError(f"a chunk of {self.metric!r} at index {first} holds other than its {count} rows")
        self._last = first + count - 1
        return first, count, blocks


def check_block(metric: str, block: Any) -> int:
    """The rows of a columnar block, after checking its shape (keys, equal columns, run-length stamps)."""
    if not isinstance(block, dict):
        raise ColumnsError(f"a block of {metric!r} is not a map")
    keys, cols, created = block.get("keys"), block.get("cols"), block.get("created")
    if not (isinstance(keys, list) and isinstance(cols, list) and isinstance(created, list) and len(keys) == len(cols)
            and all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys)):
        raise ColumnsError(f"a block of {metric!r} has no matching keys and columns")
    if not all(isinstance(r, list) and len(r) == 2 and _is_index(r[1]) for r in created):
        raise ColumnsError(f"a block of {metric!r} has malformed creation times")
    rows = sum(r[1] for r in created)
    if not all(isinstance(c, list) and len(c) == rows for c in cols):
        raise ColumnsError(f"a block of {metric!r} has columns of other than its {rows} rows")
    return rows


def _is_index(value: Any) -> bool:
    return type(value) is int and value >= 0
