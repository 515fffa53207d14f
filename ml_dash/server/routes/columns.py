"""``GET /api/v1/experiments/{owner}/{project}/{name}/metrics/{metric}/columns?start=&limit=``: a whole
metric stream as its stored chunks (the format is ml_dash/format/columns.py), for ``ml_dash.history``.

The reply is streamed: the storage is asked for :data:`~..storage.chunk_reads.MAX_RANGE_BYTES` of chunks
at a time, each written before the next is read, so the server holds one such slice whatever the series.
The first slice is read before the status line goes out, so a bad request, a missing run or an
unreadable store is an ordinary 4xx/5xx; a read that fails later ends the body with an ``error`` value
instead of the trailer (the reader then fails: it never takes part of a series for all of it).
"""

from __future__ import annotations

import logging

from aiohttp import web

from ml_dash.format.columns import CONTENT_TYPE, MAX_COLUMN_ROWS, chunk_frames, failure, header, trailer

from ..access import STORAGE, experiment_of, int_query, metric_of
from ..storage.chunk_reads import MAX_RANGE_BYTES
from ..storage.errors import StorageError

logger = logging.getLogger("ml_dash.server")


async def get_metric_columns(request: web.Request) -> web.StreamResponse:
    exp = await experiment_of(request)
    metric = metric_of(request)
    start = int_query(request, "start", 0, 0, 2**62)
    end = start + int_query(request, "limit", MAX_COLUMN_ROWS, 1, MAX_COLUMN_ROWS)
    storage = request.app[STORAGE]
    chunks, cut = await storage.metric_chunks(exp["id"], metric, start, end, MAX_RANGE_BYTES)
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
    await response.prepare(request)
    await response.write(header(metric))
    last = start - 1
    try:
        for _ in range(MAX_COLUMN_ROWS):  # bounded: each slice moves on by at least one chunk
            await response.write(chunk_frames(chunks))
            if chunks:
                last = chunks[-1][0] + chunks[-1][1] - 1
            if cut is None:
                break
            chunks, cut = await storage.metric_chunks(exp["id"], metric, cut, end, MAX_RANGE_BYTES)
    except StorageError as exc:  # the status line is out: the reader learns it from the body's end
        logger.error("%s %s: %s", request.method, request.path, exc)
        await response.write(failure(f"stored rows cannot be read: {exc}"))
        await response.write_eof()
        return response
    # rows may follow the budget's end: the reader asks again from there (a stream's end gives None)
    await response.write(trailer(end if last == end - 1 else None))
    await response.write_eof()
    return response
