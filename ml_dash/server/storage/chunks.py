"""Metric rows as every backend stores them: chunks and summaries, cut where a request is decoded.

A batch's rows become *chunks*: one per range of at most :data:`CHUNK_ROWS` indices, split at
multiples of it, each holding the wire format's columnar blocks (msgpack), so a page of 1,000 rows
decodes at most two small chunks wherever it starts. Next to them, per aligned window of each of
:data:`~.buckets.SUMMARY_WIDTHS` indices, this batch's part of the window's *summary* (buckets.py);
a backend merges it into what the window held. The format is the backend's contract, not SQLite's:
an ingest worker runs :func:`prepare_rows` without importing any backend.

A summary is stored as one flat msgpack array (version 2, written by :func:`pack_summary`)::

    [first, last, count, key, min, max, first, last, key, min, max, first, last, ...]

the window's first and last index and row count, then five items per numeric field. Version 1 was the
bucket's map itself (``{"first", "last", "count", "fields": {key: {"min", ...}}}``); its key strings
were 40% of its bytes (203 bytes against 120 for three fields), and the width-64 summaries are about
an eighth of a run's metric bytes. :func:`unpack_summary` reads both (a map is version 1), so a
database written before keeps its summaries, and a window merged at ingest is rewritten as version 2.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ml_dash.format.wire import block_rows, pack, trim_blocks

from .buckets import SUMMARY_WIDTHS, Buckets
from .records import MetricRows

#: The most rows one chunk holds (chunks split at its multiples).
CHUNK_ROWS = 4096


def prepare_rows(start: int, blocks: list[dict[str, Any]]) -> MetricRows:
    """Rows ``start ..`` (their blocks) as they are stored: chunks split at multiples of
    :data:`CHUNK_ROWS`, and this batch's part of the summary of every window they touch."""
    count = sum(block_rows(b) for b in blocks)
    chunks = []
    position = start
    while position < start + count:
        end = min(start + count, (position // CHUNK_ROWS + 1) * CHUNK_ROWS)
        chunks.append((position, end - position, pack(trim_blocks(blocks, position - start, end - position))))
        position = end
    summaries: dict[int, list[tuple[int, bytes]]] = {}
    parts: list[dict[str, Any]] = []
    for level, width in enumerate(SUMMARY_WIDTHS):
        acc = Buckets(start, start + count, width, origin=0)
        if level == 0:  # the finest level from the rows, each coarser one from the level below
            acc.add_blocks(start, blocks)
        else:
            for part in parts:
                acc.add(part)
        parts = acc.result()
        summaries[width] = [(p["first"] // width, pack_summary(p)) for p in parts]
    latest: dict[str, Any] = {}
    for block in blocks:  # a later block's value of a field replaces an earlier one's
        latest.update((key, column[-1]) for key, column in zip(block["keys"], block["cols"]) if column)
    return MetricRows(start, count, chunks, summaries, latest)


def pack_summary(summary: dict[str, Any]) -> bytes:
    """A bucket-shaped ``summary`` (buckets.py) as it is stored: the flat array of version 2."""
    flat: list[Any] = [summary["first"], summary["last"], summary["count"]]
    for key, stats in summary["fields"].items():
        flat += (key, stats["min"], stats["max"], stats["first"], stats["last"])
    return pack(flat)


def unpack_summary(blob: bytes) -> dict[str, Any]:
    """A stored summary (version 2, or a map of version 1) as the bucket it describes."""
    held = msgpack.unpackb(blob)
    if isinstance(held, dict):  # version 1: the bucket itself
        return held
    fields = {held[at]: {"min": held[at + 1], "max": held[at + 2], "first": held[at + 3], "last": held[at + 4]}
              for at in range(3, len(held), 5)}
    return {"first": held[0], "last": held[1], "count": held[2], "fields": fields}
