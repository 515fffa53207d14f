"""Metric rows in SQLite: chunks small enough that a page costs the page, and summaries for charts.

Rows are stored as *chunks*: one SQLite row per range of at most :data:`CHUNK_ROWS` indices (split at
multiples of it), holding the columnar blocks of the wire format, so a million rows cost a few
hundred inserts and a page of 1,000 rows decodes at most two small chunks, wherever it starts.

Next to them, per aligned window of each of :data:`~.buckets.SUMMARY_WIDTHS` indices, a *summary*
(min, max, first and last per numeric field, first and last index, row count; buckets.py). Rows only
ever append to a stream, so a window is summarised once its rows arrive, and the one window a batch
continues is merged with what it held. Downsampling a whole series then reads summaries, not rows.

The chunks and summaries are cut where a request body is decoded (``..chunks.prepare_rows``, the same
for every backend), and read only through :class:`SQLiteChunks`, this backend's
``..chunk_reads.ChunkSource`` (pages and buckets are computed there, for every backend); every
function here runs inside the caller's transaction, on the database's thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack

from ml_dash.format.wire import pack

from .. import chunk_reads
from ..archive_reads import ArchiveFetcher, merged, with_archived_summaries
from ..buckets import SUMMARY_WIDTHS, merge_into
from ..chunk_reads import MAX_PAGE_VALUES
from ..chunks import pack_summary, prepare_rows, unpack_summary
from ..records import MetricRows
from . import archive as sqlite_archive

#: Rows per stored chunk: decoding one takes well under a millisecond.

SCHEMA = """
CREATE TABLE IF NOT EXISTS metric_chunks (
    exp_id INTEGER NOT NULL, metric TEXT NOT NULL, first_idx INTEGER NOT NULL, count INTEGER NOT NULL,
    blocks BLOB NOT NULL, stored_at REAL NOT NULL DEFAULT 0, PRIMARY KEY (exp_id, metric, first_idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metric_latest (
    exp_id INTEGER NOT NULL, metric TEXT NOT NULL, last_idx INTEGER NOT NULL, latest BLOB NOT NULL,
    PRIMARY KEY (exp_id, metric)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metric_summaries (
    exp_id INTEGER NOT NULL, metric TEXT NOT NULL, width INTEGER NOT NULL, window INTEGER NOT NULL,
    summary BLOB NOT NULL, PRIMARY KEY (exp_id, metric, width, window)) WITHOUT ROWID;
""" + sqlite_archive.SCHEMA  # the archived chunks: sqlite/archive.py


def store_rows(db: sqlite3.Connection, exp_id: int, metric: str, rows: MetricRows) -> None:
    """Append prepared rows: their chunks, and their summaries merged into the one window per width
    that earlier rows began (rows only ever append, so no other window holds anything yet)."""
    now = time.time()  # the archive's age of these chunks (sqlite/archive.py)
    db.executemany("INSERT INTO metric_chunks (exp_id, metric, first_idx, count, blocks, stored_at) VALUES (?, ?, ?, ?, ?, ?)",
                   [(exp_id, metric, first, count, blob, now) for first, count, blob in rows.chunks])
    if rows.latest:
        held = db.execute("SELECT latest FROM metric_latest WHERE exp_id=? AND metric=?", (exp_id, metric)).fetchone()
        latest = {**msgpack.unpackb(held[0]), **rows.latest} if held else rows.latest
        db.execute("INSERT OR REPLACE INTO metric_latest (exp_id, metric, last_idx, latest) VALUES (?, ?, ?, ?)",
                   (exp_id, metric, rows.start + rows.count - 1, pack(latest)))
    for width, parts in rows.summaries.items():
        if rows.start % width and parts:
            held = db.execute("SELECT summary FROM metric_summaries WHERE exp_id=? AND metric=? AND width=? "
                              "AND window=?", (exp_id, metric, width, parts[0][0])).fetchone()
            if held is not None:
                merged = unpack_summary(held[0])
                merge_into(merged, unpack_summary(parts[0][1]))
                parts = [(parts[0][0], pack_summary(merged)), *parts[1:]]
        db.executemany("INSERT OR REPLACE INTO metric_summaries (exp_id, metric, width, window, summary) "
                       "VALUES (?, ?, ?, ?, ?)", [(exp_id, metric, width, window, blob) for window, blob in parts])


def latest(db: sqlite3.Connection, exp_ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Per run of ``exp_ids``: per metric, each field's latest value."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for first in range(0, len(exp_ids), 500):  # SQLite caps the parameters of one statement
        ids = exp_ids[first:first + 500]
        for exp_id, metric, blob in db.execute("SELECT exp_id, metric, latest FROM metric_latest WHERE exp_id IN "
                                               f"({','.join('?' * len(ids))})", ids):
            out.setdefault(exp_id, {})[metric] = msgpack.unpackb(blob)
    return out


class SQLiteChunks:
    """The one place metric chunks and summaries are read from SQLite (``..chunk_reads.ChunkSource``):
    pages and buckets read through it. Chunks come from both tiers (``..archive_reads``): the rows of
    ``metric_chunks``, and those archived to the blob store, fetched through ``fetcher``."""

    def __init__(self, db: sqlite3.Connection, exp_id: int, metric: str, fetcher: ArchiveFetcher | None = None) -> None:
        self.db, self.exp_id, self.metric, self.fetcher = db, exp_id, metric, fetcher

    def chunks(self, start: int, end: int | None = None) -> Iterator[tuple[int, int, bytes]]:
        found = sqlite_archive.floor(self.db, self.exp_id, self.metric, start)
        first = found if found is not None else start
        sql = "SELECT first_idx, count, blocks FROM metric_chunks WHERE exp_id=? AND metric=? AND first_idx >= ?"
        args: list[Any] = [self.exp_id, self.metric, first]
        if end is not None:
            sql += " AND first_idx < ?"
            args.append(end)
        stored = self.db.execute(sql + " ORDER BY first_idx", args)  # cursors: chunks are read as they are needed
        return merged(stored, sqlite_archive.archived(self.db, self.exp_id, self.metric, first, end), self.fetcher)

    def summaries(self, width: int, first_window: int, end_window: int) -> Iterator[tuple[int, bytes]]:
        stored = self.db.execute("SELECT window, summary FROM metric_summaries WHERE exp_id=? AND metric=? AND width=? "
                                 "AND window >= ? AND window < ? ORDER BY window",
                                 (self.exp_id, self.metric, width, first_window, end_window))
        if width != SUMMARY_WIDTHS[0]:  # only the finest move into the archive's index rows
            return iter(stored)
        bundles = sqlite_archive.summary_bundles(self.db, self.exp_id, self.metric, first_window * width, end_window * width)
        return with_archived_summaries(stored, bundles, first_window, end_window)


def page(db: sqlite3.Connection, exp_id: int, metric: str, start: int, limit: int,
         max_values: int = MAX_PAGE_VALUES, fetcher: ArchiveFetcher | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """A page of rows (``..chunk_reads.page``), on the caller's connection, in one snapshot."""
    with snapshot(db):
        return chunk_reads.page(SQLiteChunks(db, exp_id, metric, fetcher), start, limit, max_values)


def chunk_range(db: sqlite3.Connection, exp_id: int, metric: str, start: int, end: int | None, max_bytes: int,
                fetcher: ArchiveFetcher | None = None) -> tuple[list[tuple[int, int, bytes]], int | None]:
    """Stored chunks of a range (``..chunk_reads.chunk_range``), on the caller's connection, in one snapshot."""
    with snapshot(db):
        return chunk_reads.chunk_range(SQLiteChunks(db, exp_id, metric, fetcher), start, end, max_bytes)


def buckets(db: sqlite3.Connection, exp_id: int, metric: str, start: int, end: int, stored: int, wanted: int,
            width: int | None = None, fetcher: ArchiveFetcher | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Buckets over ``start:end`` (``..chunk_reads.buckets``), on the caller's connection, in one snapshot."""
    with snapshot(db):
        return chunk_reads.buckets(SQLiteChunks(db, exp_id, metric, fetcher), start, end, stored, wanted, width)


@contextmanager
def snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """The statements inside see one state of the database (a read transaction, unless the caller holds
    one): an archive pass that commits between a read's queries (the chunk holding ``start``, then the
    chunks of both tiers) would otherwise show a chunk in neither tier, or in both."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")  # a read transaction: nothing to keep or undo


def rebuild(db: sqlite3.Connection) -> None:
    """Re-store every metric of a database written before chunks were split and summarised (schema
    version 3), one old chunk at a time in index order, so memory stays bounded by one old chunk."""
    db.execute("DELETE FROM metric_summaries")
    db.execute("DELETE FROM metric_latest")
    for exp_id, metric, first in db.execute("SELECT exp_id, metric, first_idx FROM metric_chunks "
                                            "ORDER BY exp_id, metric, first_idx").fetchall():
        blob = db.execute("SELECT blocks FROM metric_chunks WHERE exp_id=? AND metric=? AND first_idx=?",
                          (exp_id, metric, first)).fetchone()[0]
        # the old chunk goes first: its pieces start at its own first index
        db.execute("DELETE FROM metric_chunks WHERE exp_id=? AND metric=? AND first_idx=?", (exp_id, metric, first))
        store_rows(db, exp_id, metric, prepare_rows(first, msgpack.unpackb(blob)))
