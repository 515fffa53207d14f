"""One ingest transaction in PostgreSQL: the same exactly-once rule as every backend (``..exactly_once``).

The run's row is the lock that serialises ingest of one run across every server instance on the
database: it is read ``FOR UPDATE`` first (inserted first when new: a concurrent insert of the same
new run waits on the unique key, then finds it), and every count and range the rule reads is read
after that, under it. So two requests for one run, from any instances, behave as if one ran after the
other; requests for different runs never wait on each other. Each transaction locks one run row, then
rows of that run only: one global order, so two ingests cannot deadlock each other (a deadlock or a
serialisation failure met anyway is retried whole by the caller, store.py).

The rest mirrors sqlite/ingest.py: per stream :func:`~..exactly_once.settle` decides, this module
reads its inputs and writes what it decides; the run's ``stream_count`` and ``stored_rows`` keep a
reply's cost that of its request.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack

from ml_dash.format.layout import LOG_STREAM, metric_stream
from ml_dash.format.wire import LIMITS, pack, trim_blocks

from ..buckets import merge_into
from ..chunks import prepare_rows
from ..errors import ConflictError, StreamLimitError, UnnamedReplyError
from ..exactly_once import Outcome, Settled, settle
from ..records import IngestBatch, LogEntry, MetricRows
from ..replies import Acknowledgement
from . import documents

#: As sqlite/ingest.py: an older client (no ``"reply": "named"``) gets every stream of a run of at most this many.
FULL_REPLY_STREAMS = LIMITS.max_streams

Conn = Any  # an asyncpg connection inside a transaction


class _Totals:
    """The run's ``stream_count`` and ``stored_rows`` changes of one transaction, written once at its end."""

    def __init__(self) -> None:
        self.streams = 0
        self.rows = 0

    def settled(self, first: int, end: int) -> None:
        self.streams += int(first == 0)  # a stream_counts row exists once something is settled
        self.rows += end - first


async def ingest(conn: Conn, batch: IngestBatch, max_metrics: int | None) -> Acknowledgement:
    """Store ``batch`` inside the caller's transaction; what the reply says."""
    exp_id = await upsert_experiment(conn, batch)
    if max_metrics is not None:
        await _check_new_metrics(conn, exp_id, batch, max_metrics)
    totals = _Totals()
    for metric, rows in batch.metrics.items():
        await _store_metric(conn, exp_id, metric, rows, batch.writer_of(metric_stream(metric)), totals)
    if batch.logs is not None:
        await _store_logs(conn, exp_id, *batch.logs, batch.writer_of(LOG_STREAM), totals)
    for stream, (start, count, reason) in batch.voids.items():
        new = await _settle(conn, exp_id, stream, start, start + count, batch.writer_of(stream),
                            void_reason=reason or "set aside")
        if new is not None:
            await _set_stored(conn, exp_id, stream, *new, totals)
    streams = await conn.fetchval("UPDATE experiments SET stream_count = stream_count + $2, stored_rows = "
                                  "stored_rows + $3 WHERE id = $1 RETURNING stream_count",
                                  exp_id, totals.streams, totals.rows)
    if not batch.named_reply and streams > FULL_REPLY_STREAMS:
        raise UnnamedReplyError(streams, FULL_REPLY_STREAMS)
    return await acknowledgement(conn, exp_id, batch)


_RUN_BY_NAME = "SELECT id, doc, run_id FROM experiments WHERE owner = $1 AND project = $2 AND name = $3"


async def upsert_experiment(conn: Conn, batch: IngestBatch) -> int:
    """The run's row, locked for the transaction (created on first sight), with the batch's run fields
    and params merged in. A run id other than the one stored is a :class:`ConflictError`."""
    key = (batch.owner, batch.project, batch.name)
    now = time.time()
    row = await conn.fetchrow(_RUN_BY_NAME + " FOR UPDATE", *key)
    if row is None:
        await conn.execute("INSERT INTO experiments (owner, project, name, last_seen, run_id) VALUES ($1, $2, $3, $4, $5) "
                           "ON CONFLICT (owner, project, name) DO NOTHING", *key, now, batch.run_id)
        row = await conn.fetchrow(_RUN_BY_NAME + " FOR UPDATE", *key)
    exp_id, doc_text, run_id = row["id"], row["doc"], row["run_id"]
    if batch.run_id is not None and run_id is not None and run_id != batch.run_id:
        doc = documents.merged(doc_text, {}, None)
        created_at, hostname = doc.get("created_at"), doc.get("hostname")
        raise ConflictError(f"{batch.owner}/{batch.project}/{batch.name} holds another run (id {run_id}, "
                            f"created {created_at} on {hostname}); this request is of run {batch.run_id}",
                            {"kind": "run", "run_id": run_id, "created_at": created_at, "hostname": hostname})
    sets = ["last_seen = $2"]
    values: list[Any] = [exp_id, now]
    if run_id is None and batch.run_id is not None:
        values.append(batch.run_id)
        sets.append(f"run_id = ${len(values)}")
    if batch.run or batch.params is not None:
        doc = documents.merged(doc_text, batch.run, batch.params)
        values.append(documents.document_text(doc))
        sets.append(f"doc = ${len(values)}")
        if "status" in batch.run:
            values.append(documents.text_copy(batch.run["status"]) or "RUNNING")
            sets.append(f"status = ${len(values)}")
        for column in documents.JSONB_FIELDS:
            if column in batch.run or (column == "params" and batch.params is not None):
                copy = documents.query_copy(doc.get(column))
                if copy is None and column != "metadata":
                    copy = "[]" if column == "tags" else "{}"
                values.append(copy)
                sets.append(f"{column} = ${len(values)}::jsonb")
    await conn.execute(f"UPDATE experiments SET {', '.join(sets)} WHERE id = $1", *values)
    return int(exp_id)


async def _check_new_metrics(conn: Conn, exp_id: int, batch: IngestBatch, limit: int) -> None:
    """StreamLimitError when the batch's new metric streams would take the run past ``limit``."""
    named = list(dict.fromkeys([metric_stream(m) for m in batch.metrics] + [s for s in batch.voids if s != LOG_STREAM]))
    if not named:
        return
    held_named = {r[0] for r in await conn.fetch("SELECT stream FROM stream_counts WHERE exp_id = $1 AND "
                                                   "stream = ANY($2::text[])", exp_id, named)}
    new = [s for s in named if s not in held_named]
    if not new:
        return
    held = await conn.fetchval("SELECT COUNT(*) FROM stream_counts WHERE exp_id = $1 AND stream <> $2",
                               exp_id, LOG_STREAM)
    if held + len(new) > limit:
        raise StreamLimitError(new[max(0, limit - held):], limit, held)


async def acknowledgement(conn: Conn, exp_id: int | None, batch: IngestBatch) -> Acknowledgement:
    """The counts of ``batch``'s streams (every stream, for an older client on a small run) and the run's
    totals: a key lookup per stream of the request, never a scan of the run."""
    if exp_id is None:
        return Acknowledgement(dict.fromkeys(batch.streams(), 0), 0, 0)
    streams, rows = await conn.fetchrow("SELECT stream_count, stored_rows FROM experiments WHERE id = $1", exp_id)
    named = batch.streams()
    if not batch.named_reply and streams <= FULL_REPLY_STREAMS:
        found = await conn.fetch("SELECT stream, stored FROM stream_counts WHERE exp_id = $1", exp_id)
        acked = {r[0]: r[1] for r in found}
        acked.update((stream, 0) for stream in named if stream not in acked)
    else:
        found = await conn.fetch("SELECT stream, stored FROM stream_counts WHERE exp_id = $1 AND "
                                 "stream = ANY($2::text[])", exp_id, named)
        held = {r[0]: r[1] for r in found}
        acked = {stream: held.get(stream, 0) for stream in named}
    return Acknowledgement(acked, streams, rows)


async def _set_stored(conn: Conn, exp_id: int, stream: str, first: int, end: int, totals: _Totals) -> None:
    """Rows ``first .. end-1`` of ``stream`` are settled now (``first``: what was stored before)."""
    await conn.execute("INSERT INTO stream_counts (exp_id, stream, stored) VALUES ($1, $2, $3) "
                       "ON CONFLICT (exp_id, stream) DO UPDATE SET stored = excluded.stored", exp_id, stream, end)
    totals.settled(first, end)


_RANGES = ("SELECT first_idx, end_idx, writer, void_reason FROM stream_writers WHERE exp_id = $1 AND stream = $2 "
           "AND end_idx > $3 AND first_idx < $4 UNION (SELECT first_idx, end_idx, writer, void_reason "
           "FROM stream_writers WHERE exp_id = $1 AND stream = $2 ORDER BY first_idx DESC LIMIT 1)")


async def _settle(conn: Conn, exp_id: int, stream: str, start: int, end: int, writer: str | None,
                  void_reason: str | None = None) -> tuple[int, int] | None:
    """Decide rows ``start .. end-1`` of ``writer`` by the exactly-once rule and record what it says: the
    new range, or None when all of it was settled already; GapError or ConflictError for a refusal."""
    stored = await conn.fetchval("SELECT stored FROM stream_counts WHERE exp_id = $1 AND stream = $2",
                                 exp_id, stream) or 0
    ranges = [Settled(*row) for row in await conn.fetch(_RANGES, exp_id, stream, start, min(end, stored))]
    decision = settle(stored, ranges, start, end, writer, void_reason)
    decision.raise_refusal(stream, start, end)
    if decision.outcome is Outcome.REACK:
        return None
    if decision.extends is not None:
        await conn.execute("UPDATE stream_writers SET end_idx = $4 WHERE exp_id = $1 AND stream = $2 AND first_idx = $3",
                           exp_id, stream, decision.extends.first, decision.new_end)
    else:
        await conn.execute("INSERT INTO stream_writers (exp_id, stream, first_idx, end_idx, writer, void_reason) "
                           "VALUES ($1, $2, $3, $4, $5, $6)", exp_id, stream, decision.new_first, decision.new_end,
                           writer, documents.text_copy(void_reason))
    return decision.new_first, decision.new_end


async def _store_metric(conn: Conn, exp_id: int, metric: str, rows: MetricRows, writer: str | None,
                        totals: _Totals) -> None:
    stream = metric_stream(metric)
    new = await _settle(conn, exp_id, stream, rows.start, rows.start + rows.count, writer)
    if new is None:
        return
    first, end = new
    if first != rows.start:  # a resend that overlaps the stored rows: only the rest is new
        rows = prepare_rows(first, trim_blocks(rows.blocks(), first - rows.start))
    await store_rows(conn, exp_id, metric, rows)
    await _set_stored(conn, exp_id, stream, first, end, totals)


async def store_rows(conn: Conn, exp_id: int, metric: str, rows: MetricRows) -> None:
    """Append prepared rows: their chunks, the metric's latest values, and their summaries merged into
    the one window per width that earlier rows began (rows only ever append)."""
    # one statement per table, its rows as arrays (unnest): a batch of 100,000 rows is ~25 chunks and
    # ~1,700 summaries, which as one statement each cost 4x less than as a pipelined statement per row
    await conn.execute("INSERT INTO metric_chunks (exp_id, metric, first_idx, count, blocks) SELECT $1, $2, * FROM "
                       "unnest($3::bigint[], $4::integer[], $5::bytea[])", exp_id, metric,
                       [c[0] for c in rows.chunks], [c[1] for c in rows.chunks], [c[2] for c in rows.chunks])
    if rows.latest:
        held = await conn.fetchval("SELECT latest FROM metric_latest WHERE exp_id = $1 AND metric = $2", exp_id, metric)
        latest = {**msgpack.unpackb(held), **rows.latest} if held is not None else rows.latest
        await conn.execute("INSERT INTO metric_latest (exp_id, metric, last_idx, latest) VALUES ($1, $2, $3, $4) "
                           "ON CONFLICT (exp_id, metric) DO UPDATE SET last_idx = excluded.last_idx, latest = excluded.latest",
                           exp_id, metric, rows.start + rows.count - 1, pack(latest))
    continued = [(width, parts[0][0]) for width, parts in rows.summaries.items() if rows.start % width and parts]
    held_windows: dict[tuple[int, int], bytes] = {}
    if continued:  # one lookup for the window each width continues
        found = await conn.fetch("SELECT width, win, summary FROM metric_summaries WHERE exp_id = $1 AND metric = $2 "
                                 "AND (width, win) IN (SELECT * FROM unnest($3::integer[], $4::bigint[]))",
                                 exp_id, metric, [w for w, _ in continued], [n for _, n in continued])
        held_windows = {(r[0], r[1]): r[2] for r in found}
    widths: list[int] = []
    windows: list[int] = []
    blobs: list[bytes] = []
    for width, parts in rows.summaries.items():
        for position, (window, blob) in enumerate(parts):
            held_blob = held_windows.get((width, window)) if position == 0 else None
            if held_blob is not None:
                summary = msgpack.unpackb(held_blob)
                merge_into(summary, msgpack.unpackb(blob))
                blob = pack(summary)
            widths.append(width)
            windows.append(window)
            blobs.append(blob)
    if blobs:
        await conn.execute("INSERT INTO metric_summaries (exp_id, metric, width, win, summary) SELECT $1, $2, * FROM "
                           "unnest($3::integer[], $4::bigint[], $5::bytea[]) "
                           "ON CONFLICT (exp_id, metric, width, win) DO UPDATE SET summary = excluded.summary",
                           exp_id, metric, widths, windows, blobs)


async def _store_logs(conn: Conn, exp_id: int, start: int, rows: list[LogEntry], writer: str | None,
                      totals: _Totals) -> None:
    new = await _settle(conn, exp_id, LOG_STREAM, start, start + len(rows), writer)
    if new is None:
        return
    first, end = new
    await conn.executemany("INSERT INTO log_rows (exp_id, idx, record, level, message) VALUES ($1, $2, $3, $4, $5) "
                           "ON CONFLICT (exp_id, idx) DO NOTHING",
                           [(exp_id, idx, blob, level, documents.text_copy(message) or "")
                            for idx, blob, level, message in rows if idx >= first])
    await _set_stored(conn, exp_id, LOG_STREAM, first, end, totals)
