"""Log lines in SQLite: stored one per row, and their messages indexed for search over a whole run.

``log_text`` holds each line's message under the rowid ``exp_id * 2**40 + idx`` (a run's lines stay
contiguous, so a run is a rowid range). Where SQLite has FTS5 (nearly every build), it is an FTS5
table with the trigram tokenizer: a search for any substring of three characters or more is an
index lookup, case-insensitive, and 1,000,000 lines are searched in milliseconds instead of a scan.
Elsewhere, and for shorter searches, it is a LIKE over the messages alone (a narrow scan).

Limits of the rowid: 2**40 lines a run, 2**23 runs; past them a line is stored and read, not found
by a search.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Any

import msgpack

from ..log_archive import Line, archived_lines, merged_page
from ..pages import MAX_LOG_PAGE_BYTES, LogBudget, like_literal
from ..records import LogEntry

if TYPE_CHECKING:
    from ..archive_reads import ArchiveFetcher

_RUN_SPAN = 1 << 40
_MAX_RUN = 1 << 23

SCHEMA = """
CREATE TABLE IF NOT EXISTS log_rows (
    exp_id INTEGER NOT NULL, idx INTEGER NOT NULL, record BLOB NOT NULL, level TEXT,
    stored_at REAL NOT NULL DEFAULT 0, PRIMARY KEY (exp_id, idx)) WITHOUT ROWID;
-- the last lines of one level, however rare the level, without a scan of the run's logs
CREATE INDEX IF NOT EXISTS log_rows_level ON log_rows (exp_id, level, idx);
"""


def create_text_index(db: sqlite3.Connection) -> bool:
    """Create ``log_text``; True when it is a full-text (FTS5 trigram) index."""
    existing = db.execute("SELECT sql FROM sqlite_master WHERE name = 'log_text'").fetchone()
    if existing is not None:
        return "fts5" in (existing[0] or "").lower()
    try:
        db.execute("CREATE VIRTUAL TABLE log_text USING fts5(message, tokenize='trigram')")
        return True
    except sqlite3.OperationalError:  # no FTS5 (or no trigram tokenizer) in this SQLite
        db.execute("CREATE TABLE log_text (rowid INTEGER PRIMARY KEY, message TEXT NOT NULL)")
        return False


def _rowid(exp_id: int, idx: int) -> int | None:
    return exp_id * _RUN_SPAN + idx if exp_id < _MAX_RUN and 0 <= idx < _RUN_SPAN else None


def store(db: sqlite3.Connection, exp_id: int, rows: list[LogEntry], stored_at: float | None = None) -> None:
    """Append lines (already settled as new by the caller) with their messages to the text index, stored
    now (or at ``stored_at``: a migration keeps the time)."""
    now = time.time() if stored_at is None else stored_at  # the age log archival goes by (..log_archive)
    db.executemany("INSERT OR IGNORE INTO log_rows (exp_id, idx, record, level, stored_at) VALUES (?, ?, ?, ?, ?)",
                   [(exp_id, idx, blob, level, now) for idx, blob, level, _message in rows])
    texts = [(rowid, message) for idx, _blob, _level, message in rows if (rowid := _rowid(exp_id, idx)) is not None]
    db.executemany("INSERT INTO log_text (rowid, message) VALUES (?, ?)", texts)


MAX_PAGE_BYTES = MAX_LOG_PAGE_BYTES  # a page's budget in stored bytes (pages.py)


def read(db: sqlite3.Connection, full_text: bool, exp_id: int, start: int, limit: int, level: str | None,
         search: str | None, tail: bool, max_bytes: int = MAX_PAGE_BYTES,
         fetcher: ArchiveFetcher | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """(lines, next): lines from ``start`` (with ``tail``: the last ``limit`` of them) of ``level``,
    holding ``search``, no more than ``max_bytes`` of stored records in all (at least one line).
    ``next`` is the index of the first line left out by that byte budget (None when the page is full
    or the run ends; with ``tail`` the newest lines are kept and ``next`` is None). Archived lines (through
    ``fetcher``) are merged in (..log_archive), read in one snapshot with the database's."""
    from . import archive as sqlite_archive
    from .metrics import snapshot

    with snapshot(db):
        frames = sqlite_archive.archived_lines(db, exp_id, start, tail) if fetcher is not None else None
        cursor = _cursor(db, full_text, exp_id, start, limit, level, search, tail)
        if cursor is None:
            return [], None
        if frames is not None and fetcher is not None:
            return merged_page(cursor, archived_lines(frames, fetcher, start, level, search, tail), limit, tail,
                               max_bytes)
        budget = LogBudget(max_bytes, tail)
        for idx, record in cursor:  # row by row: the budget stops the read, not only the reply
            if not budget.take(idx, record):
                break
        return budget.page()


def _cursor(db: sqlite3.Connection, full_text: bool, exp_id: int, start: int, limit: int, level: str | None,
            search: str | None, tail: bool) -> Any:
    """The database's lines of the page, (idx, record) in read order; None when no line can match."""
    order = "DESC" if tail else "ASC"
    if not search:
        # a level's lines through its index: left to itself, SQLite walks the primary key in idx order
        # (the ORDER BY's) and, for a rare or absent level, reads the run's every line to find none
        table = "log_rows INDEXED BY log_rows_level" if level is not None else "log_rows"
        sql = f"SELECT idx, record FROM {table} WHERE exp_id = ? AND idx >= ?"
        args: list[Any] = [exp_id, start]
        if level is not None:
            sql += " AND level = ?"
            args.append(level)
        cursor = db.execute(sql + f" ORDER BY idx {order} LIMIT ?", (*args, limit))
    else:
        low, high = _rowid(exp_id, start), _rowid(exp_id, 0)
        if low is None or high is None:
            return None
        if full_text and len(search) >= 3:  # a phrase of trigrams: the index finds the substring
            match, text_args = "log_text MATCH ?", ['"' + search.replace('"', '""') + '"']
        else:  # a scan of the messages (LIKE's wildcards escaped: the search is a literal)
            match, text_args = "t.message LIKE ? ESCAPE '\\'", ["%" + like_literal(search) + "%"]
        sql = (f"SELECT r.idx, r.record FROM log_text t JOIN log_rows r ON r.exp_id = ? AND r.idx = t.rowid - ? "
               f"WHERE {match} AND t.rowid >= ? AND t.rowid < ?")
        args = [exp_id, exp_id * _RUN_SPAN, *text_args, low, high + _RUN_SPAN]
        if level is not None:
            sql += " AND r.level = ?"
            args.append(level)
        cursor = db.execute(sql + f" ORDER BY t.rowid {order} LIMIT ?", (*args, limit))
    return cursor


def lines_between(db: sqlite3.Connection, exp_id: int, first: int, last: int) -> list[Line]:
    """The run's lines ``first .. last`` with their search text (log archival's input, migration's too)."""
    rows = db.execute("SELECT r.idx, r.record, r.level, t.message FROM log_rows r LEFT JOIN log_text t ON "
                      "t.rowid = ? + r.idx WHERE r.exp_id = ? AND r.idx BETWEEN ? AND ? ORDER BY r.idx",
                      (exp_id * _RUN_SPAN, exp_id, first, last)).fetchall()
    return [(idx, record, level, message if message is not None else message_of(record))
            for idx, record, level, message in rows]


def message_of(record: bytes) -> str:
    """A line's message as ingest takes it (server/ingest/decode.py), for a line log_text lacks."""
    message = msgpack.unpackb(record).get("message")
    return message if isinstance(message, str) else str(message)


def forget_text(db: sqlite3.Connection, exp_id: int, first: int, last: int) -> None:
    """Drop the search text of the run's lines ``first .. last`` (archived: the object holds it now)."""
    low, high = _rowid(exp_id, first), _rowid(exp_id, min(last, _RUN_SPAN - 1))
    if low is not None and high is not None:
        db.execute("DELETE FROM log_text WHERE rowid BETWEEN ? AND ?", (low, high))


def index_existing(db: sqlite3.Connection) -> None:
    """Index the messages of lines stored before ``log_text`` existed (schema 3's migration)."""
    for exp_id, idx, record in db.execute("SELECT exp_id, idx, record FROM log_rows").fetchall():
        rowid = _rowid(exp_id, idx)
        if rowid is not None:
            message = msgpack.unpackb(record).get("message")
            db.execute("INSERT OR REPLACE INTO log_text (rowid, message) VALUES (?, ?)",
                       (rowid, message if isinstance(message, str) else str(message)))
