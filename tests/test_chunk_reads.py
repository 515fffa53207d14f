"""Metric reads through the one chunk reader interface (server/storage/chunk_reads.py): pages and
buckets read from a source that holds its chunks in memory, not in SQLite, are those SQLite gives,
so a backend that keeps chunks elsewhere changes no reader."""

from __future__ import annotations

import math
import random
import sqlite3
from collections.abc import Iterator
from typing import Any

from ml_dash.format.wire import metric_blocks
from ml_dash.server.storage import chunk_reads
from ml_dash.server.storage.chunks import prepare_rows
from ml_dash.server.storage.sqlite import metrics as sqlite_metrics

ROWS = 40_000


class MemoryChunks:
    """Chunks and summaries in dicts: what an object-store backend would fetch by key."""

    def __init__(self, prepared: Any) -> None:
        self.chunks_by_first = {first: (first, count, blob) for first, count, blob in prepared.chunks}
        self.windows = {(width, window): blob for width, parts in prepared.summaries.items() for window, blob in parts}

    def chunks(self, start: int, end: int | None = None) -> Iterator[tuple[int, int, bytes]]:
        firsts = sorted(self.chunks_by_first)
        floor = max((f for f in firsts if f <= start), default=start)
        return (self.chunks_by_first[f] for f in firsts if f >= floor and (end is None or f < end))

    def summaries(self, width: int, first_window: int, end_window: int) -> Iterator[tuple[int, bytes]]:
        return ((w, self.windows[(width, w)]) for w in range(first_window, end_window) if (width, w) in self.windows)


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def test_pages_and_buckets_read_from_any_chunk_source_are_those_of_sqlite() -> None:
    rng = random.Random(7)
    rows = [{"data": {"step": i, "loss": float("nan") if i % 97 == 0 else rng.random()},
             "createdAt": "2026-12-01T00:00:00Z"} for i in range(ROWS)]
    prepared = prepare_rows(0, metric_blocks(rows))
    db = sqlite3.connect(":memory:")
    db.executescript(sqlite_metrics.SCHEMA)
    sqlite_metrics.store_rows(db, 1, "train", prepared)
    memory, stored = MemoryChunks(prepared), sqlite_metrics.SQLiteChunks(db, 1, "train")
    for start, limit in [(0, 10), (4095, 3), (12_345, 5000), (ROWS - 2, 10), (ROWS, 10)]:
        assert _same(chunk_reads.page(memory, start, limit), chunk_reads.page(stored, start, limit))
        assert _same(chunk_reads.page(memory, start, limit), sqlite_metrics.page(db, 1, "train", start, limit))
    for start, end, wanted, width in [(0, ROWS, 1000, None), (0, ROWS, 10, None), (17, 31_000, 200, None),
                                      (1024, 30_720, 30, 1024), (5, 90, 100, None)]:
        assert _same(chunk_reads.buckets(memory, start, end, ROWS, wanted, width),
                     chunk_reads.buckets(stored, start, end, ROWS, wanted, width))
    width, found = chunk_reads.buckets(memory, 0, ROWS, ROWS, 100)
    assert sum(b["count"] for b in found) == ROWS and len(found) <= 100
