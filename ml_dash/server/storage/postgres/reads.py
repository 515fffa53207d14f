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

#: Chunks fetched by the first query of a read; each next query fetches twice as many, up to the last.
FIRST_FETCH, LAST_FETCH = 4, 64
#: A hung query must not hold a reader thread for ever (the connection's own timeouts end it sooner).
QUERY_WAIT_S = 600.0


class PgChunks:
    """One metric's chunks and summaries of one run (``..chunk_reads.ChunkSource``), read on a worker
    thread through ``conn``, which belongs to the coroutine awaiting that thread on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: Any, exp_id: int, metric: str) -> None:
        self.loop, self.conn, self.exp_id, self.metric = loop, conn, exp_id, metric

    def _fetch(self, sql: str, *args: Any) -> list[Any]:
        return asyncio.run_coroutine_threadsafe(self.conn.fetch(sql, *args), self.loop).result(QUERY_WAIT_S)

    def chunks(self, start: int, end: int | None = None) -> Iterator[tuple[int, int, bytes]]:
        floor = self._fetch("SELECT MAX(first_idx) FROM metric_chunks WHERE exp_id = $1 AND metric = $2 "
                            "AND first_idx <= $3", self.exp_id, self.metric, start)[0][0]
        position = floor if floor is not None else start
        stop = end if end is not None else 2**62
        batch = FIRST_FETCH
        while True:
            rows = self._fetch("SELECT first_idx, count, blocks FROM metric_chunks WHERE exp_id = $1 AND metric = $2 "
                               "AND first_idx >= $3 AND first_idx < $4 ORDER BY first_idx LIMIT $5",
                               self.exp_id, self.metric, position, stop, batch)
            yield from ((first, count, blocks) for first, count, blocks in rows)
            if len(rows) < batch:
                return
            position = rows[-1][0] + 1
            batch = min(2 * batch, LAST_FETCH)

    def summaries(self, width: int, first_window: int, end_window: int) -> Iterator[bytes]:
        rows = self._fetch("SELECT summary FROM metric_summaries WHERE exp_id = $1 AND metric = $2 AND width = $3 "
                           "AND win >= $4 AND win < $5 ORDER BY win",
                           self.exp_id, self.metric, width, first_window, end_window)
        return (row[0] for row in rows)
