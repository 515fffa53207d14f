"""SQLite's tables for archival (``..archive``: what moves, when, and why in this order).

``metric_archive`` holds an index row per archived frame; ``archive_objects`` notes every object a
pass wrote (``pending``, then ``live`` in the transaction that moves its chunks, or ``doomed`` by the
garbage collector). Writes run on the store's writer thread, each one transaction (``BEGIN
IMMEDIATE``: two processes on one file take turns); reads on a reader thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..archive import ChunkKey
from ..archive_objects import Frame, StoredChunk, bundle_summaries
from ..archive_reads import ArchivedChunk
from ..buckets import SUMMARY_WIDTHS
from ..chunks import CHUNK_ROWS
from ..log_archive import ArchivedLines, Line, LogFrame, LogKey
from . import logs as sqlite_logs

SCHEMA = """
CREATE TABLE IF NOT EXISTS metric_archive (
    exp_id INTEGER NOT NULL, metric TEXT NOT NULL, first_idx INTEGER NOT NULL, count INTEGER NOT NULL,
    object TEXT NOT NULL, frame_offset INTEGER NOT NULL, frame_length INTEGER NOT NULL, summaries BLOB,
    PRIMARY KEY (exp_id, metric, first_idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metric_archive_by_object ON metric_archive (object);
CREATE TABLE IF NOT EXISTS log_archive (
    exp_id INTEGER NOT NULL, first_idx INTEGER NOT NULL, last_idx INTEGER NOT NULL, count INTEGER NOT NULL,
    object TEXT NOT NULL, frame_offset INTEGER NOT NULL, frame_length INTEGER NOT NULL,
    PRIMARY KEY (exp_id, first_idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS log_archive_by_object ON log_archive (object);
CREATE TABLE IF NOT EXISTS archive_objects (
    sha256 TEXT PRIMARY KEY, state TEXT NOT NULL, noted_at REAL NOT NULL) WITHOUT ROWID;
"""


def add_stored_at(db: sqlite3.Connection) -> None:
    """Schema version 5: each chunk's storing time (unix seconds), the archive's age; chunks stored
    before it count from now (their age is unknown: they are not archived before the policy's time)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(metric_chunks)")}
    if "stored_at" not in columns:
        db.execute("ALTER TABLE metric_chunks ADD COLUMN stored_at REAL NOT NULL DEFAULT 0")
        db.execute("UPDATE metric_chunks SET stored_at = ?", (time.time(),))
    db.execute("CREATE INDEX IF NOT EXISTS metric_chunks_by_age ON metric_chunks (stored_at)")


def add_log_stored_at(db: sqlite3.Connection) -> None:
    """Schema version 6: each log line's storing time, the age log archival goes by (..log_archive);
    lines stored before it count from now, as chunks did in version 5."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(log_rows)")}
    if "stored_at" not in columns:
        db.execute("ALTER TABLE log_rows ADD COLUMN stored_at REAL NOT NULL DEFAULT 0")
        db.execute("UPDATE log_rows SET stored_at = ?", (time.time(),))
    db.execute("CREATE INDEX IF NOT EXISTS log_rows_by_age ON log_rows (stored_at)")


def add_archived_summaries(db: sqlite3.Connection) -> None:
    """Schema version 7: a frame's index row holds the finest summaries of its windows (..archive_objects)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(metric_archive)")}
    if "summaries" not in columns:
        db.execute("ALTER TABLE metric_archive ADD COLUMN summaries BLOB")


def summary_bundles(db: sqlite3.Connection, exp_id: int, metric: str, start: int, end: int) -> Any:
    """A cursor of the summary bundles of the archived frames of ``metric`` holding rows in ``start:end``
    (a frame never crosses a multiple of CHUNK_ROWS, so none starting a whole CHUNK_ROWS before ``start``)."""
    return (row[0] for row in db.execute(
        "SELECT summaries FROM metric_archive WHERE exp_id=? AND metric=? AND first_idx > ? AND first_idx < ? "
        "AND summaries IS NOT NULL ORDER BY first_idx", (exp_id, metric, start - CHUNK_ROWS, end)))


def archived_lines(db: sqlite3.Connection, exp_id: int, start: int, tail: bool) -> list[ArchivedLines] | None:
    """The run's archived log frames holding lines from ``start`` on (descending for ``tail``); None when
    there are none (a read of the database alone)."""
    rows = db.execute("SELECT first_idx, last_idx, object, frame_offset, frame_length FROM log_archive WHERE "
                      f"exp_id = ? AND last_idx >= ? ORDER BY first_idx {'DESC' if tail else 'ASC'}",
                      (exp_id, start)).fetchall()
    return [ArchivedLines(*row) for row in rows] or None


def archived(db: sqlite3.Connection, exp_id: int, metric: str, start: int, end: int | None) -> Any:
    """A cursor of the archived chunks of ``metric`` from ``start`` (its first index) up to ``end``."""
    sql = ("SELECT first_idx, count, object, frame_offset, frame_length FROM metric_archive "
           "WHERE exp_id=? AND metric=? AND first_idx >= ?")
    args: list[Any] = [exp_id, metric, start]
    if end is not None:
        sql += " AND first_idx < ?"
        args.append(end)
    return (ArchivedChunk(*row) for row in db.execute(sql + " ORDER BY first_idx", args))


def floor(db: sqlite3.Connection, exp_id: int, metric: str, start: int) -> int | None:
    """The first index of the chunk (of either tier) holding ``start``, or of the last before it."""
    return db.execute("SELECT MAX(f) FROM (SELECT MAX(first_idx) AS f FROM metric_chunks WHERE exp_id=? AND metric=? "
                      "AND first_idx <= ? UNION ALL SELECT MAX(first_idx) FROM metric_archive WHERE exp_id=? "
                      "AND metric=? AND first_idx <= ?)", (exp_id, metric, start, exp_id, metric, start)).fetchone()[0]


class SQLiteArchive:
    """:class:`~..archive.ArchiveTier` over SQLite: ``write`` runs a function of the writer's connection
    on its thread, ``read`` one of a reader's connection on a reader thread."""

    def __init__(self, write: Callable[..., Awaitable[Any]], read: Callable[..., Awaitable[Any]]) -> None:
        self._write, self._read = write, read

    async def candidates(self, stored_before: float, limit: int) -> list[ChunkKey]:
        def find(db: sqlite3.Connection) -> list[ChunkKey]:
            # the age index, then each chunk's key; length() of a blob reads no blob
            return [ChunkKey(*row) for row in db.execute(
                "SELECT exp_id, metric, first_idx, count, length(blocks) FROM metric_chunks WHERE stored_at < ? "
                "ORDER BY stored_at LIMIT ?", (stored_before, limit))]
        return await self._read(find)

    async def stored_chunks(self, exp_id: int, keys: list[ChunkKey]) -> list[StoredChunk]:
        def fetch(db: sqlite3.Connection) -> list[StoredChunk]:
            out = []
            for key in sorted(keys, key=lambda k: (k.metric, k.first)):
                row = db.execute("SELECT blocks FROM metric_chunks WHERE exp_id=? AND metric=? AND first_idx=? "
                                 "AND count=?", (exp_id, key.metric, key.first, key.count)).fetchone()
                if row is not None:
                    out.append(StoredChunk(key.metric, key.first, key.count, row[0]))
            return out
        return await self._read(fetch)

    async def note_object(self, sha256: str, noted_at: float) -> None:
        await self._write(lambda db: db.execute("INSERT OR IGNORE INTO archive_objects (sha256, state, noted_at) "
                                                "VALUES (?, 'pending', ?)", (sha256, noted_at)))

    async def commit_object(self, sha256: str, exp_id: int, frames: list[Frame]) -> bool:
        try:
            await self._write(_in_transaction, _commit, sha256, exp_id, frames)
        except _Moved:  # rolled back: nothing changed
            return False
        return True

    async def doom_orphans(self, noted_before: float, limit: int) -> list[str]:
        def doom(db: sqlite3.Connection) -> list[str]:
            db.execute("UPDATE archive_objects SET state = 'doomed' WHERE sha256 IN (SELECT sha256 FROM archive_objects o "
                       "WHERE state = 'pending' AND noted_at < ? AND NOT EXISTS (SELECT 1 FROM metric_archive a "
                       "WHERE a.object = o.sha256) LIMIT ?)", (noted_before, limit))
            return [row[0] for row in db.execute("SELECT sha256 FROM archive_objects WHERE state = 'doomed'")]
        return await self._write(_in_transaction, doom)

    async def file_named(self, sha256: str) -> bool:
        return bool(await self._read(lambda db: db.execute("SELECT 1 FROM files WHERE sha256 = ? LIMIT 1",
                                                           (sha256,)).fetchone()))

    async def forget_object(self, sha256: str) -> None:
        await self._write(lambda db: db.execute("DELETE FROM archive_objects WHERE sha256 = ? AND state = 'doomed'",
                                                (sha256,)))

    async def log_candidates(self, stored_before: float, limit: int) -> list[LogKey]:
        def find(db: sqlite3.Connection) -> list[LogKey]:
            # the age index; then (run, index) order, which objects and frames follow
            return sorted((LogKey(*row) for row in db.execute(
                "SELECT exp_id, idx, length(record) FROM log_rows WHERE stored_at < ? ORDER BY stored_at LIMIT ?",
                (stored_before, limit))), key=lambda k: (k.exp_id, k.idx))
        return await self._read(find)

    async def stored_lines(self, exp_id: int, first: int, last: int) -> list[Line]:
        return await self._read(sqlite_logs.lines_between, exp_id, first, last)

    async def commit_log_object(self, sha256: str, exp_id: int, frames: list[LogFrame]) -> bool:
        try:
            await self._write(_in_transaction, _commit_lines, sha256, exp_id, frames)
        except _Moved:
            return False
        return True

    async def live_objects(self, limit: int) -> list[str]:
        rows = await self._read(lambda db: db.execute("SELECT sha256 FROM archive_objects WHERE state = 'live' "
                                                      "ORDER BY sha256 LIMIT ?", (limit,)).fetchall())
        return [row[0] for row in rows]


def _in_transaction(db: sqlite3.Connection, body: Callable[..., Any], *args: Any) -> Any:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = body(db, *args)
        db.execute("COMMIT")
        return result
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class _Moved(Exception):
    """The object is doomed or a source chunk is gone: roll back."""


def _commit(db: sqlite3.Connection, sha256: str, exp_id: int, frames: list[Frame]) -> None:
    state = db.execute("SELECT state FROM archive_objects WHERE sha256 = ?", (sha256,)).fetchone()
    if state is None or state[0] == "doomed":
        raise _Moved
    sources = [(exp_id, f.metric, first, count) for f in frames for first, count in f.sources]
    deleted = db.executemany("DELETE FROM metric_chunks WHERE exp_id=? AND metric=? AND first_idx=? AND count=?",
                             sources).rowcount
    if deleted != len(sources):  # another archiver moved some first: this object moves nothing
        raise _Moved
    db.executemany("INSERT INTO metric_archive (exp_id, metric, first_idx, count, object, frame_offset, frame_length, "
                   "summaries) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   [(exp_id, f.metric, f.first, f.count, sha256, f.offset, f.length, _take_summaries(db, exp_id, f))
                    for f in frames])
    db.execute("UPDATE archive_objects SET state = 'live' WHERE sha256 = ?", (sha256,))


def _take_summaries(db: sqlite3.Connection, exp_id: int, frame: Frame) -> bytes | None:
    """The frame's finest summaries out of ``metric_summaries``, bundled for its index row."""
    where = ("FROM metric_summaries WHERE exp_id=? AND metric=? AND width=? AND window >= ? AND window < ?",
             (exp_id, frame.metric, SUMMARY_WIDTHS[0], *frame.summarised_windows()))
    held = db.execute(f"SELECT window, summary {where[0]} ORDER BY window", where[1]).fetchall()
    db.execute(f"DELETE {where[0]}", where[1])
    return bundle_summaries(held)


def _commit_lines(db: sqlite3.Connection, sha256: str, exp_id: int, frames: list[LogFrame]) -> None:
    state = db.execute("SELECT state FROM archive_objects WHERE sha256 = ?", (sha256,)).fetchone()
    if state is None or state[0] == "doomed":
        raise _Moved
    for frame in frames:
        deleted = db.execute("DELETE FROM log_rows WHERE exp_id = ? AND idx BETWEEN ? AND ?",
                             (exp_id, frame.first, frame.last)).rowcount
        if deleted != frame.count:  # another archiver moved some first: this object moves nothing
            raise _Moved
        sqlite_logs.forget_text(db, exp_id, frame.first, frame.last)
    db.executemany("INSERT INTO log_archive (exp_id, first_idx, last_idx, count, object, frame_offset, frame_length) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(exp_id, f.first, f.last, f.count, sha256, f.offset, f.length) for f in frames])
    db.execute("UPDATE archive_objects SET state = 'live' WHERE sha256 = ?", (sha256,))
