"""Metric rows as every backend stores them: chunks and summaries, cut where a request is decoded.

A batch's rows become *chunks*: one per range of at most :data:`CHUNK_ROWS` indices, split at
multiples of it, each holding the wire format's columnar blocks (msgpack), so a page of 1,000 rows
decodes at most two small chunks wherever it starts. Next to them, per aligned window of each of
:data:`~.buckets.SUMMARY_WIDTHS` indices, this batch's part of the window's *summary* (buckets.py);
a backend merges it into what the window held. The format is the backend's contract, not SQLite's:
an ingest worker runs :func:`prepare_rows` without importing any backend.
"""

from __future__ import annotations

from typing import Any

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
        summaries[width] = [(p["first"] // width, pack(p)) for p in parts]
    latest: dict[str, Any] = {}
    for block in blocks:  # a later block's value of a field replaces an earlier one's
        latest.update((key, column[-1]) for key, column in zip(block["keys"], block["cols"]) if column)
    return MetricRows(start, count, chunks, summaries, latest)
