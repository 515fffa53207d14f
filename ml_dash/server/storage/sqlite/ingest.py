"""One ingest transaction in SQLite: rows stored once per identity, and never someone else's acknowledged.

Per (run, stream) the server keeps ``stream_counts.stored`` (rows 0 .. stored-1
are settled) and ``stream_writers``: which writer settled which index range,
and whether the range is a *void* (rows the client set aside). A batch from
``start``:

* ``start > stored``: a gap, :class:`GapError` (409 with the counts; the client rewinds);
* indices below ``stored`` must have been settled by the same writer (a resend:
  nothing is stored again), else :class:`ConflictError` (409 ``conflict``);
* the rest is appended, and the writer's range extended.

The run's row keeps ``stream_count`` and ``stored_rows`` (the sum of ``stored``) up to date, so a
reply says what the run holds in two numbers however many streams it has (ml_dash/format/wire.py, "Replies").
The rule is ``..exactly_once.settle`` (plain Python, the same for every backend); this module reads
its inputs and writes what it decides, inside the transaction (``BEGIN IMMEDIATE``: SQLite's write
lock, so ingest of a run is serialised across every process on the database file).

A run holds at most ``max_metrics`` metric streams: a batch that would start more is refused whole
(:class:`StreamLimitError`, naming the streams that do not fit). Everything of one request commits
together or not at all.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ml_dash.format.jsonlines import dumps, loads
from ml_dash.format.layout import LOG_STREAM, metric_stream
from ml_dash.format.wire import LIMITS, trim_blocks

from ..chunks import prepare_rows
from ..document_order import newer
from ..errors import ConflictError, StreamLimitError, UnnamedReplyError
from ..exactly_once import Outcome, Settled, settle
from ..records import RUN_COLUMNS, IngestBatch, LogEntry, MetricRows
from ..replies import Acknowledgement
from . import logs as sqlite_logs
from .metrics import store_rows

#: An older client (no ``"reply": "named"``) reads a stream missing from a reply as "none stored": it gets every
#: stream of a run of at most this many (a request's worth); a body of it that would leave the run with more
#: is refused whole (:class:`UnnamedReplyError`, 426), since it would rewind and resend the rest (ml_dash/format/wire.py).
FULL_REPLY_STREAMS = LIMITS.max_streams


def ingest(db: sqlite3.Connection, batch: IngestBatch, max_metrics: int | None = None) -> Acknowledgement:
    """Store ``batch`` in one transaction; what the reply says (the counts of its streams, the run's totals)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        exp_id = upsert_experiment(db, batch)
        if max_metrics is not None:
            _check_new_metrics(db, exp_id, batch, max_metrics)
        for metric, rows in batch.metrics.items():
            _store_metric(db, exp_id, metric, rows, batch.writer_of(metric_stream(metric)))
        if batch.logs is not None:
            _store_logs(db, exp_id, *batch.logs, batch.writer_of(LOG_STREAM))
        for stream, (start, count, reason) in batch.voids.items():
            new = _settle(db, exp_id, stream, start, start + count, batch.writer_of(stream),
                          void_reason=reason or "set aside")
            if new is not None:
                _set_stored(db, exp_id, stream, *new)
        if not batch.named_reply:
            streams = db.execute("SELECT stream_count FROM experiments WHERE id = ?", (exp_id,)).fetchone()[0]
            if streams > FULL_REPLY_STREAMS:
                raise UnnamedReplyError(streams, FULL_REPLY_STREAMS)
        acked = acknowledgement(db, exp_id, batch)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # a failed COMMIT (disk full) has rolled back already
            db.execute("ROLLBACK")
        raise
    return acked


def upsert_experiment(db: sqlite3.Connection, batch: IngestBatch) -> int:
    """The run's row (created on first sight), with the batch's run fields and params merged in unless it
    holds newer ones (..document_order). A run id other than the one the server holds is a :class:`ConflictError`."""
    now = time.time()
    row = db.execute("SELECT id, params, run_id, hostname, created_at, docs_writer, docs_rev FROM experiments "
                     "WHERE owner=? AND project=? AND name=?", (batch.owner, batch.project, batch.name)).fetchone()
    if row is None:
        cursor = db.execute("INSERT INTO experiments (owner, project, name, last_seen, run_id) VALUES (?, ?, ?, ?, ?)",
                            (batch.owner, batch.project, batch.name, now, batch.run_id))
        exp_id, params, run_id, docs_writer, docs_rev = int(cursor.lastrowid or 0), "{}", batch.run_id, None, None
    else:
        exp_id, params, run_id, hostname, created_at, docs_writer, docs_rev = row
        if batch.run_id is not None and run_id is not None and run_id != batch.run_id:
            raise ConflictError(f"{batch.owner}/{batch.project}/{batch.name} holds another run (id {run_id}, "
                                f"created {created_at} on {hostname}); this request is of run {batch.run_id}",
                                {"kind": "run", "run_id": run_id, "created_at": created_at, "hostname": hostname})
    sets: list[str] = ["last_seen = ?"]
    values: list[Any] = [now]
    if run_id is None and batch.run_id is not None:
        sets.append("run_id = ?")
        values.append(batch.run_id)
    # a body older than the documents held still has its rows stored: only its documents are late
    if (batch.run or batch.params is not None) and newer(docs_writer, docs_rev, batch.writer_id, batch.docs_rev):
        sets += ["docs_writer = ?", "docs_rev = ?"]
        values += [batch.writer_id, batch.docs_rev]
        for key in RUN_COLUMNS:
            if key in batch.run:
                value = batch.run[key]
                sets.append(f"{key} = ?")
                values.append(dumps(value).decode() if key in ("tags", "metadata") else value)
        if batch.params is not None:
            merged = loads(params) if params else {}
            merged.update(batch.params)
            sets.append("params = ?")
            values.append(dumps(merged).decode())
    db.execute(f"UPDATE experiments SET {', '.join(sets)} WHERE id = ?", (*values, exp_id))
    return int(exp_id)


def _check_new_metrics(db: sqlite3.Connection, exp_id: int, batch: IngestBatch, limit: int) -> None:
    """StreamLimitError when the batch's new metric streams (rows or voids) would take the run past
    ``limit``. The run's streams are counted only when the batch starts new ones (a key lookup each)."""
    named = [metric_stream(m) for m in batch.metrics] + [s for s in batch.voids if s != LOG_STREAM]
    new = [s for s in dict.fromkeys(named) if db.execute(
        "SELECT 1 FROM stream_counts WHERE exp_id=? AND stream=?", (exp_id, s)).fetchone() is None]
    if not new:
        return
    held = db.execute("SELECT COUNT(*) FROM stream_counts WHERE exp_id=? AND stream != ?",
                      (exp_id, LOG_STREAM)).fetchone()[0]
    if held + len(new) > limit:
        raise StreamLimitError(new[max(0, limit - held):], limit, held)


def acknowledgement(db: sqlite3.Connection, exp_id: int | None, batch: IngestBatch) -> Acknowledgement:
    """The counts of ``batch``'s streams (every stream, for an older client on a small run) and the run's
    totals: a key lookup per stream of the request, never a scan of the run (``exp_id`` None: no such run)."""
    if exp_id is None:
        return Acknowledgement(dict.fromkeys(batch.streams(), 0), 0, 0)
    streams, rows = db.execute("SELECT stream_count, stored_rows FROM experiments WHERE id = ?", (exp_id,)).fetchone()
    if not batch.named_reply and streams <= FULL_REPLY_STREAMS:
        acked = stored_counts(db, exp_id)
        acked.update((stream, 0) for stream in batch.streams() if stream not in acked)
    else:
        acked = {stream: _stored(db, exp_id, stream) for stream in batch.streams()}
    return Acknowledgement(acked, streams, rows)


def stored_counts(db: sqlite3.Connection, exp_id: int) -> dict[str, int]:
    return {stream: stored for stream, stored in
            db.execute("SELECT stream, stored FROM stream_counts WHERE exp_id = ?", (exp_id,))}


def _stored(db: sqlite3.Connection, exp_id: int, stream: str) -> int:
    found = db.execute("SELECT stored FROM stream_counts WHERE exp_id=? AND stream=?", (exp_id, stream)).fetchone()
    return found[0] if found else 0


def _set_stored(db: sqlite3.Connection, exp_id: int, stream: str, first: int, end: int) -> None:
    """Rows ``first .. end-1`` of ``stream`` are settled now (``first``: what was stored before)."""
    db.execute("INSERT INTO stream_counts (exp_id, stream, stored) VALUES (?, ?, ?) "
               "ON CONFLICT (exp_id, stream) DO UPDATE SET stored = excluded.stored", (exp_id, stream, end))
    # a stream_counts row exists only once something is settled (stored >= 1): first == 0 is a new stream
    db.execute("UPDATE experiments SET stream_count = stream_count + ?, stored_rows = stored_rows + ? WHERE id = ?",
               (int(first == 0), end - first, exp_id))


def _settle(db: sqlite3.Connection, exp_id: int, stream: str, start: int, end: int, writer: str | None,
            void_reason: str | None = None) -> tuple[int, int] | None:
    """Decide rows ``start .. end-1`` of ``writer`` by the exactly-once rule (``..exactly_once.settle``)
    and record what it says. Returns the new range (from the stored count to ``end``), or None when
    all of it was settled already; raises GapError or ConflictError for a refused batch."""
    stored = _stored(db, exp_id, stream)
    # the ranges the rule looks at: those under the batch's stored indices, and the last one
    ranges = [Settled(*row) for row in db.execute(
        "SELECT first_idx, end_idx, writer, void_reason FROM stream_writers WHERE exp_id=? AND stream=? "
        "AND end_idx > ? AND first_idx < ? UNION SELECT * FROM (SELECT first_idx, end_idx, writer, void_reason "
        "FROM stream_writers WHERE exp_id=? AND stream=? ORDER BY first_idx DESC LIMIT 1)",
        (exp_id, stream, start, min(end, stored), exp_id, stream))]
    decision = settle(stored, ranges, start, end, writer, void_reason)
    decision.raise_refusal(stream, start, end)
    if decision.outcome is Outcome.REACK:
        return None
    if decision.extends is not None:
        db.execute("UPDATE stream_writers SET end_idx = ? WHERE exp_id=? AND stream=? AND first_idx=?",
                   (decision.new_end, exp_id, stream, decision.extends.first))
    else:
        db.execute("INSERT INTO stream_writers (exp_id, stream, first_idx, end_idx, writer, void_reason) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (exp_id, stream, decision.new_first, decision.new_end, writer, void_reason))
    return decision.new_first, decision.new_end


def _store_metric(db: sqlite3.Connection, exp_id: int, metric: str, rows: MetricRows, writer: str | None) -> None:
    """A batch's new metric rows, as chunks with their summaries (sqlite_metrics.py)."""
    stream = metric_stream(metric)
    new = _settle(db, exp_id, stream, rows.start, rows.start + rows.count, writer)
    if new is None:
        return
    first, end = new
    if first != rows.start:  # a resend that overlaps the stored rows: only the rest is new
        rows = prepare_rows(first, trim_blocks(rows.blocks(), first - rows.start))
    store_rows(db, exp_id, metric, rows)
    _set_stored(db, exp_id, stream, first, end)


def _store_logs(db: sqlite3.Connection, exp_id: int, start: int, rows: list[LogEntry], writer: str | None) -> None:
    new = _settle(db, exp_id, LOG_STREAM, start, start + len(rows), writer)
    if new is None:
        return
    first, end = new
    sqlite_logs.store(db, exp_id, [row for row in rows if row[0] >= first])
    _set_stored(db, exp_id, LOG_STREAM, first, end)
