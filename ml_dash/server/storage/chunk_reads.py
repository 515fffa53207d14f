"""Reading a metric's stored rows, whatever holds its chunks: pages of rows and downsampled buckets.

Every reader of metric rows (a page, the buckets of a chart) reads chunks and summaries (the format of
chunks.py) through one :class:`ChunkSource`, never from a table or a file itself. A backend
implements the source for its own place (``sqlite/metrics.py``: ``SQLiteChunks``, rows of
``metric_chunks``); a chunk may then live in the database, in an object store or in a file, and
:func:`page` and :func:`buckets` do not change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import msgpack

from ml_dash.format.wire import metric_rows, pack, trim_blocks

from .buckets import Buckets, aligned_summary, plan
from .chunks import unpack_summary


class ChunkSource(Protocol):
    """One metric's stored chunks and summaries, of one run."""

    def chunks(self, start: int, end: int | None = None) -> Iterable[tuple[int, int, bytes]]:
        """(first index, rows, msgpack blocks) of the stored chunks from the one holding index ``start``
        (or the first after it) up to those starting before ``end`` (None: all), in index order.
        Read lazily: a reader that stops early reads no further chunk."""
        ...

    def summaries(self, width: int, first_window: int, end_window: int) -> Iterable[tuple[int, bytes]]:
        """(window, stored summary: chunks.py) of the stored windows ``first_window .. end_window-1`` of
        ``width`` indices, in window order, from wherever the backend keeps them (the finest of archived
        windows: in the archive's index rows, archive.py). A window with none has no rows, or lost its
        summary: :func:`buckets` reads its rows, so a bucket never leaves rows out."""
        ...


# A page's budget in values (fields summed over its rows), besides its ``limit`` in rows: a page of
# 100,000 rows of 50 fields would otherwise build ~5M Python objects (~900 MiB across server and
# workers). 500,000 values keep a page in the tens of MB and still let 100,000 rows of up to 4 fields
# through in one page.
MAX_PAGE_VALUES = 500_000


def page(source: ChunkSource, start: int, limit: int,
         max_values: int = MAX_PAGE_VALUES) -> tuple[list[dict[str, Any]], int | None]:
    """(rows, next): up to ``limit`` rows from index ``start``, and no more than ``max_values`` field
    values in all (at least one row); ``next`` is the index of the first row left out by that value
    budget (None when the page is full or the series ends). From the chunk holding ``start`` onwards,
    and of each chunk only the page's rows become dicts."""
    out: list[dict[str, Any]] = []
    values = 0
    for first, count, blocks in source.chunks(start):
        if first + count <= start:  # the chunk before a set-aside range
            continue
        skip = max(0, start - first)
        for row in metric_rows(first + skip, trim_blocks(msgpack.unpackb(blocks), skip, limit - len(out))):
            width = max(1, len(row.get("data") or ()))  # rows may differ in width: counted as read
            if out and values + width > max_values:
                return out, row["index"]
            out.append(row)
            values += width
        if len(out) >= limit:
            break
    return out, None


#: What one :func:`chunk_range` call returns at most, in stored bytes (the columnar read streams a series
#: call by call: memory stays this, whatever the series).
MAX_RANGE_BYTES = 4 * 1024 * 1024


def chunk_range(source: ChunkSource, start: int, end: int | None,
                max_bytes: int = MAX_RANGE_BYTES) -> tuple[list[tuple[int, int, bytes]], int | None]:
    """(chunks, next): the stored chunks of indices ``start:end`` (None: to the end) as they are stored,
    but for the first and last, cut to the range; at most ``max_bytes`` of them (at least one chunk).
    ``next`` is the index to go on from when the budget ended the call, None when the range is done.
    Only the cut chunks are decoded: the columnar read sends the others as they are."""
    out: list[tuple[int, int, bytes]] = []
    size = 0
    for first, count, blob in source.chunks(start, end):
        stop = first + count if end is None else min(first + count, end)
        if stop <= start:  # the chunk before a set-aside range
            continue
        if out and size + len(blob) > max_bytes:
            return out, max(first, start)
        if first < start or stop < first + count:
            skip = max(0, start - first)
            blob = pack(trim_blocks(msgpack.unpackb(blob), skip, stop - first - skip))
            first, count = first + skip, stop - first - skip
        out.append((first, count, blob))
        size += len(blob)
    return out, None


def buckets(source: ChunkSource, start: int, end: int, stored: int, wanted: int,
            width: int | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(the bucket width, the buckets) over ``start:end`` (``end`` <= ``stored``, the stream's row
    count): at most ``wanted`` of them, or with ``width``, buckets of that many indices aligned to its
    multiples (a live chart extends the buckets it holds with the same width)."""
    fixed = width is not None
    if width is None:
        width, summary = plan(start, end, wanted)
    else:
        summary = aligned_summary(width)
    if summary is None:  # a short range or a width no summary divides: from its rows
        acc = Buckets(start, end, width, origin=0 if fixed else start)
        _add_rows(source, acc, start, end)
        return width, acc.result()
    acc = Buckets(start, end, width, origin=0)
    head_end = min(end, -(-start // summary) * summary)
    # the last window is summarised up to the stored rows, so a range to the end needs no rows
    tail_start = end if end == stored else max(head_end, end // summary * summary)
    if start < head_end:
        _add_rows(source, acc, start, head_end)
    if head_end < tail_start:
        _add_summaries(source, acc, summary, head_end // summary, -(-tail_start // summary))
    if tail_start < end:
        _add_rows(source, acc, tail_start, end)
    return width, acc.result()


def _add_summaries(source: ChunkSource, acc: Buckets, width: int, first_window: int, end_window: int) -> None:
    """The summaries of windows ``first_window .. end_window-1``; a window without one from its rows (none,
    in a range set aside; or those a summary should have held)."""
    expected = first_window
    for window, blob in source.summaries(width, first_window, end_window):
        if window > expected:
            _add_rows(source, acc, expected * width, window * width)
        acc.add(unpack_summary(blob))
        expected = window + 1
    if expected < end_window:
        _add_rows(source, acc, expected * width, end_window * width)


def _add_rows(source: ChunkSource, acc: Buckets, start: int, end: int) -> None:
    for first, _count, blocks in source.chunks(start, end):
        acc.add_blocks(first, msgpack.unpackb(blocks), start, end)
