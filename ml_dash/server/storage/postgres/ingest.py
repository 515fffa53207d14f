"""One ingest transaction in PostgreSQL: the same exactly-once rule as every backend (``..exactly_once``).

The run's row is the lock that serialises ingest of one run across every server instance on the
database: it is read ``FOR UPDATE`` first (inserted first when new: a concurrent insert of the same
new run waits on the unique key, then finds it), and every count and range the rule reads is read
after that, under it. So two requests for one run, from any instances, behave as if one ran after the
other; requests for different runs never wait on each other. Each transaction locks one run row, then
rows of that run only: one global order, so two ingests cannot deadlock each other (a deadlock or a
serialisation failure met anyway is retried whole by the caller, store.py).

The rest follows sqlite/ingest.py: per stream :func:`~..exactly_once.settle` decides, this module
reads its inputs and writes what it decides; the run's ``stream_count`` and ``stored_rows`` keep a
reply's cost that of its request. Unlike SQLite's function calls, each statement here is a round trip
to the server, so the inputs of every stream of a request are read in one statement per table and the
writes go as arrays (``unnest``): about 26 statements a request, whether it holds one stream or 1,000.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack

from ml_dash.format.layout import LOG_STREAM, metric_stream
from ml_dash.format.wire import LIMITS, pack, trim_blocks

from ..buckets import merge_into
from ..chunks import pack_summary, prepare_rows, unpack_summary
from ..document_order import newer
from ..errors import ConflictError, StreamLimitError, UnnamedReplyError
from ..exactly_once import Decision, Outcome, Settled, settle
from ..records import IngestBatch, LogEntry, MetricRows
from ..replies import Acknowledgement
from . import documents

#: As sqlite/ingest.py: an older client (no ``"reply": "named"``) gets every stream of a run of at most this many.
FULL_REPLY_STREAMS = LIMITS.max_streams

Conn = Any  # an asyncpg connection inside a transaction


@dataclass(slots=True)
class _Ask:
    """One stream of a request: indices ``start .. end-1`` of ``writer``, a void when ``void_reason`` is set;
    the metric's prepared rows or the log lines when it holds rows."""

    stream: str
    start: int
    end: int
    writer: str | None
    void_reason: str | None = None
    metric: str | None = None
    rows: MetricRows | None = None
    lines: list[LogEntry] | None = None


async def ingest(conn: Conn, batch: IngestBatch, max_metrics: int | None) -> Acknowledgement:
    """Store ``batch`` inside the caller's transaction; what the reply says.

    Set-based: the counts and ranges of every stream of the request are read in one statement each,
    each stream is decided by the rule in Python, and what the decisions say is written with one
    statement per table (arrays through ``unnest``), so a request of 1,000 streams costs about as
    many round trips to the database as a request of one."""
    exp_id = await upsert_experiment(conn, batch)
    if max_metrics is not None:
        await _check_new_metrics(conn, exp_id, batch, max_metrics)
    asks = [_Ask(metric_stream(metric), rows.start, rows.start + rows.count, batch.writer_of(metric_stream(metric)),
                 metric=metric, rows=rows) for metric, rows in batch.metrics.items()]
    if batch.logs is not None:
        start, lines = batch.logs
        asks.append(_Ask(LOG_STREAM, start, start + len(lines), batch.writer_of(LOG_STREAM), lines=lines))
    asks += [_Ask(stream, start, start + count, batch.writer_of(stream), void_reason=reason or "set aside")
             for stream, (start, count, reason) in batch.voids.items()]
    decided = await _settle_all(conn, exp_id, asks)
    await _record(conn, exp_id, decided)
    metrics: list[tuple[str, MetricRows]] = []
    for ask, decision in decided:
        if decision.outcome is not Outcome.STORE:
            continue
        if ask.rows is not None and ask.metric is not None:
            rows = ask.rows
            if decision.new_first != rows.start:  # a resend that overlaps the stored rows: only the rest is new
                rows = prepare_rows(decision.new_first, trim_blocks(rows.blocks(), decision.new_first - rows.start))
            metrics.append((ask.metric, rows))
        elif ask.lines is not None:
            await _store_logs(conn, exp_id, [line for line in ask.lines if line[0] >= decision.new_first])
    if metrics:
        await store_metrics(conn, exp_id, metrics)
    new_streams = sum(1 for _, d in decided if d.stored == 0)  # a stream_counts row exists once something is settled
    new_rows = sum(d.new_end - d.new_first for _, d in decided)
    streams = await conn.fetchval("UPDATE experiments SET stream_count = stream_count + $2, stored_rows = "
                                  "stored_rows + $3 WHERE id = $1 RETURNING stream_count", exp_id, new_streams, new_rows)
    if not batch.named_reply and streams > FULL_REPLY_STREAMS:
        raise UnnamedReplyError(streams, FULL_REPLY_STREAMS)
    return await acknowledgement(conn, exp_id, batch)


_RUN_BY_NAME = ("SELECT id, doc, run_id, docs_writer, docs_rev FROM experiments "
                "WHERE owner = $1 AND project = $2 AND name = $3")


async def upsert_experiment(conn: Conn, batch: IngestBatch) -> int:
    """The run's row, locked for the transaction (created on first sight), with the batch's run fields
    and params merged in unless it holds newer ones (..document_order). A run id other than the one
    stored is a :class:`ConflictError`."""
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
    # a body older than the documents held still has its rows stored: only its documents are late
    if (batch.run or batch.params is not None) and newer(row["docs_writer"], row["docs_rev"], batch.writer_id,
                                                         batch.docs_rev):
        values += [batch.writer_id, batch.docs_rev]
        sets += [f"docs_writer = ${len(values) - 1}", f"docs_rev = ${len(values)}"]
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


_RANGES = """
SELECT w.stream, w.first_idx, w.end_idx, w.writer, w.void_reason
  FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS q(stream, lo, hi)
  JOIN stream_writers w ON w.exp_id = $1 AND w.stream = q.stream COLLATE "C" AND w.end_idx > q.lo AND w.first_idx < q.hi
UNION
SELECT last.* FROM unnest($2::text[]) AS q(stream) CROSS JOIN LATERAL (
  SELECT stream, first_idx, end_idx, writer, void_reason FROM stream_writers
   WHERE exp_id = $1 AND stream = q.stream COLLATE "C" ORDER BY first_idx DESC LIMIT 1) AS last"""


async def _settle_all(conn: Conn, exp_id: int, asks: list[_Ask]) -> list[tuple[_Ask, Decision]]:
    """Each stream of the request decided by the exactly-once rule (``..exactly_once.settle``) from its
    stored count and the ranges it needs (those under the batch's stored indices, and the last), read
    for every stream at once. Those that settle something new, with their decisions; the first refusal
    (in the request's order: metrics, logs, voids) raises GapError or ConflictError."""
    if not asks:
        return []
    names = [a.stream for a in asks]
    stored = {r[0]: r[1] for r in await conn.fetch(
        "SELECT stream, stored FROM stream_counts WHERE exp_id = $1 AND stream = ANY($2::text[])", exp_id, names)}
    ranges: dict[str, list[Settled]] = {}
    for stream, first, end, writer, void_reason in await conn.fetch(
            _RANGES, exp_id, names, [a.start for a in asks], [min(a.end, stored.get(a.stream, 0)) for a in asks]):
        ranges.setdefault(stream, []).append(Settled(first, end, writer, void_reason))
    decided = []
    for ask in asks:
        decision = settle(stored.get(ask.stream, 0), ranges.get(ask.stream, []), ask.start, ask.end, ask.writer,
                          ask.void_reason)
        decision.raise_refusal(ask.stream, ask.start, ask.end)
        if decision.outcome is not Outcome.REACK:
            decided.append((ask, decision))
    return decided


async def _record(conn: Conn, exp_id: int, decided: list[tuple[_Ask, Decision]]) -> None:
    """What the decisions settle: writers' ranges extended or added, and the streams' stored counts."""
    if not decided:
        return
    extended = [(a.stream, d.extends.first, d.new_end) for a, d in decided if d.extends is not None]
    added = [(a, d) for a, d in decided if d.extends is None]
    if extended:
        await conn.execute("UPDATE stream_writers w SET end_idx = q.e FROM unnest($2::text[], $3::bigint[], $4::bigint[]) "
                           "AS q(stream, f, e) WHERE w.exp_id = $1 AND w.stream = q.stream COLLATE \"C\" AND w.first_idx = q.f",
                           exp_id, *map(list, zip(*extended)))
    if added:
        await conn.execute("INSERT INTO stream_writers (exp_id, stream, first_idx, end_idx, writer, void_reason) "
                           "SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[])",
                           exp_id, [a.stream for a, _ in added], [d.new_first for _, d in added],
                           [d.new_end for _, d in added], [a.writer for a, _ in added],
                           [documents.text_copy(a.void_reason) for a, _ in added])
    await conn.execute("INSERT INTO stream_counts (exp_id, stream, stored) SELECT $1, * FROM unnest($2::text[], $3::bigint[]) "
                       "ON CONFLICT (exp_id, stream) DO UPDATE SET stored = excluded.stored",
                       exp_id, [a.stream for a, _ in decided], [d.new_end for _, d in decided])


async def store_metrics(conn: Conn, exp_id: int, metrics: list[tuple[str, MetricRows]]) -> None:
    """Append prepared rows of several metrics: their chunks, each metric's latest values, and their
    summaries merged into the one window per width that earlier rows began (rows only ever append, so
    no later window holds anything yet). One statement per table, the rows as arrays (``unnest``): a
    batch of 100,000 rows is ~25 chunks and ~1,700 summaries, and a request may hold 1,000 metrics."""
    chunks = [(metric, first, count, blob) for metric, rows in metrics for first, count, blob in rows.chunks]
    if chunks:
        await conn.execute("INSERT INTO metric_chunks (exp_id, metric, first_idx, count, blocks) SELECT $1, * FROM "
                           "unnest($2::text[], $3::bigint[], $4::integer[], $5::bytea[])", exp_id, *map(list, zip(*chunks)))
    with_latest = [(metric, rows) for metric, rows in metrics if rows.latest]
    if with_latest:
        held = {r[0]: r[1] for r in await conn.fetch(
            "SELECT metric, latest FROM metric_latest WHERE exp_id = $1 AND metric = ANY($2::text[])",
            exp_id, [m for m, _ in with_latest])}
        latest = [(metric, rows.start + rows.count - 1,
                   pack({**msgpack.unpackb(held[metric]), **rows.latest} if metric in held else rows.latest))
                  for metric, rows in with_latest]
        await conn.execute("INSERT INTO metric_latest (exp_id, metric, last_idx, latest) SELECT $1, * FROM "
                           "unnest($2::text[], $3::bigint[], $4::bytea[]) ON CONFLICT (exp_id, metric) DO UPDATE "
                           "SET last_idx = excluded.last_idx, latest = excluded.latest", exp_id, *map(list, zip(*latest)))
    continued = [(metric, width, parts[0][0]) for metric, rows in metrics for width, parts in rows.summaries.items()
                 if rows.start % width and parts]
    held_windows: dict[tuple[str, int, int], bytes] = {}
    if continued:  # one lookup for the window each width of each metric continues
        held_windows = {(r[0], r[1], r[2]): r[3] for r in await conn.fetch(
            "SELECT s.metric, s.width, s.win, s.summary FROM unnest($2::text[], $3::integer[], $4::bigint[]) "
            "AS q(metric, width, win) JOIN metric_summaries s ON s.exp_id = $1 AND s.metric = q.metric COLLATE \"C\" "
            "AND s.width = q.width AND s.win = q.win", exp_id, *map(list, zip(*continued)))}
    summaries: list[tuple[str, int, int, bytes]] = []
    for metric, rows in metrics:
        for width, parts in rows.summaries.items():
            for position, (window, blob) in enumerate(parts):
                held_blob = held_windows.get((metric, width, window)) if position == 0 else None
                if held_blob is not None:
                    summary = unpack_summary(held_blob)
                    merge_into(summary, unpack_summary(blob))
                    blob = pack_summary(summary)
                summaries.append((metric, width, window, blob))
    if summaries:
        await conn.execute("INSERT INTO metric_summaries (exp_id, metric, width, win, summary) SELECT $1, * FROM "
                           "unnest($2::text[], $3::integer[], $4::bigint[], $5::bytea[]) "
                           "ON CONFLICT (exp_id, metric, width, win) DO UPDATE SET summary = excluded.summary",
                           exp_id, *map(list, zip(*summaries)))


async def _store_logs(conn: Conn, exp_id: int, lines: list[LogEntry]) -> None:
    """Append log lines (settled as new), their messages as text for the trigram index."""
    if not lines:
        return
    await conn.execute("INSERT INTO log_rows (exp_id, idx, record, level, message) SELECT $1, * FROM "
                       "unnest($2::bigint[], $3::bytea[], $4::text[], $5::text[]) ON CONFLICT (exp_id, idx) DO NOTHING",
                       exp_id, [line[0] for line in lines], [line[1] for line in lines], [line[2] for line in lines],
                       [documents.text_copy(line[3]) or "" for line in lines])
