"""Reads of metric chunks and summaries from PostgreSQL, for the shared readers (``..chunk_reads``).

``chunk_reads.page`` and ``chunk_reads.buckets`` are plain functions over a synchronous
``ChunkSource``, which read chunks lazily and decode them (the CPU-heavy part of a read). They run on a
reader thread here, as on SQLite, so a page of 100,000 rows never holds up the event loop; the source
(:class:`PgChunks`) fetches through the request's asyncpg connection by handing each query to the
event loop and waiting for it. Chunks are fetched a few at a time, then more as the reader asks, so a
page reads about the chunks it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from ..archive_reads import ArchivedChunk, ArchiveFetcher, merged, with_archived_summaries
from ..buckets import SUMMARY_WIDTHS
from ..chunks import CHUNK_ROWS
from .archive import BOTH_TIERS, FLOOR, SUMMARY_BUNDLES, chunk_of

#: Chunks fetched by the first query of a read; each next query fetches twice as many, up to the last.
FIRST_FETCH, LAST_FETCH = 4, 64
#: A hung query must not hold a reader thread for ever (the connection's own timeouts end it sooner).
QUERY_WAIT_S = 600.0


class PgChunks:
    """One metric's chunks and summaries of one run (``..chunk_reads.ChunkSource``), read on a worker
    thread through ``conn``, which belongs to the coroutine awaiting that thread on ``loop``. Chunks come
    from both tiers (``..archive_reads``): archived ones are fetched through ``fetcher``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: Any, exp_id: int, metric: str,
                 fetcher: ArchiveFetcher | None = None) -> None:
        self.loop, self.conn, self.exp_id, self.metric, self.fetcher = loop, conn, exp_id, metric, fetcher

    def _fetch(self, sql: str, *args: Any) -> list[Any]:
        return asyncio.run_coroutine_threadsafe(self.conn.fetch(sql, *args), self.loop).result(QUERY_WAIT_S)

    def chunks(self, start: int, end: int | None = None) -> Iterator[tuple[int, int, bytes]]:
        return merged(self._both_tiers(start, end), (), self.fetcher)

    def _both_tiers(self, start: int, end: int | None) -> Iterator[tuple[int, int, bytes | ArchivedChunk]]:
        floor = self._fetch(FLOOR, self.exp_id, self.metric, start)[0][0]
        position = floor if floor is not None else start
        stop = end if end is not None else 2**62
        batch = FIRST_FETCH
        while True:
            rows = self._fetch(BOTH_TIERS, self.exp_id, self.metric, position, stop, batch)
            yield from map(chunk_of, rows)
            if len(rows) < batch:
                return
            position = rows[-1][0] + 1
            batch = min(2 * batch, LAST_FETCH)

    def summaries(self, width: int, first_window: int, end_window: int) -> Iterator[tuple[int, bytes]]:
        rows = self._fetch("SELECT win, summary FROM metric_summaries WHERE exp_id = $1 AND metric = $2 AND width = $3 "
                           "AND win >= $4 AND win < $5 ORDER BY win",
                           self.exp_id, self.metric, width, first_window, end_window)
        stored = ((row[0], row[1]) for row in rows)
        if width != SUMMARY_WIDTHS[0]:  # only the finest move into the archive's index rows
            return stored
        bundles = self._fetch(SUMMARY_BUNDLES, self.exp_id, self.metric, first_window * width - CHUNK_ROWS, end_window * width)
        return with_archived_summaries(stored, (row[0] for row in bundles), first_window, end_window)
