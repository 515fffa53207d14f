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
from typing import Any

import msgpack

from ..pages import MAX_LOG_PAGE_BYTES, LogBudget, like_literal
from ..records import LogEntry

_RUN_SPAN = 1 << 40
_MAX_RUN = 1 << 23

SCHEMA = """
CREATE TABLE IF NOT EXISTS log_rows (
    exp_id INTEGER NOT NULL, idx INTEGER NOT NULL, record BLOB NOT NULL, level TEXT,
    PRIMARY KEY (exp_id, idx)) WITHOUT ROWID;
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


def store(db: sqlite3.Connection, exp_id: int, rows: list[LogEntry]) -> None:
    """Append lines (already settled as new by the caller) with their messages to the text index."""
    db.executemany("INSERT OR IGNORE INTO log_rows (exp_id, idx, record, level) VALUES (?, ?, ?, ?)",
                   [(exp_id, idx, blob, level) for idx, blob, level, _message in rows])
    texts = [(rowid, message) for idx, _blob, _level, message in rows if (rowid := _rowid(exp_id, idx)) is not None]
    db.executemany("INSERT INTO log_text (rowid, message) VALUES (?, ?)", texts)


MAX_PAGE_BYTES = MAX_LOG_PAGE_BYTES  # a page's budget in stored bytes (pages.py)


def read(db: sqlite3.Connection, full_text: bool, exp_id: int, start: int, limit: int, level: str | None,
         search: str | None, tail: bool, max_bytes: int = MAX_PAGE_BYTES) -> tuple[list[dict[str, Any]], int | None]:
    """(lines, next): lines from ``start`` (with ``tail``: the last ``limit`` of them) of ``level``,
    holding ``search``, no more than ``max_bytes`` of stored records in all (at least one line).
    ``next`` is the index of the first line left out by that byte budget (None when the page is full
    or the run ends; with ``tail`` the newest lines are kept and ``next`` is None)."""
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
            return [], None
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
    budget = LogBudget(max_bytes, tail)
    for idx, record in cursor:  # row by row: the budget stops the read, not only the reply
        if not budget.take(idx, record):
            break
    return budget.page()


def index_existing(db: sqlite3.Connection) -> None:
    """Index the messages of lines stored before ``log_text`` existed (schema 3's migration)."""
    for exp_id, idx, record in db.execute("SELECT exp_id, idx, record FROM log_rows").fetchall():
        rowid = _rowid(exp_id, idx)
        if rowid is not None:
            message = msgpack.unpackb(record).get("message")
            db.execute("INSERT OR REPLACE INTO log_text (rowid, message) VALUES (?, ?)",
                       (rowid, message if isinstance(message, str) else str(message)))
