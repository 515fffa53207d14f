"""A level filter on SQLite reads that level's lines through its index (server/storage/sqlite/logs.py):
the last lines of a rare or absent level ("error" among a million "info") are found without walking
the run's every line. The plan is checked, not a time (machines are noisy)."""

from __future__ import annotations

import sqlite3

import msgpack

from ml_dash.server.storage.sqlite import logs as sqlite_logs


def _plans(level: str | None, search: str | None = None) -> list[str]:
    """The query plans of the statements ``read`` runs for ``level`` (the tail of a run's lines)."""
    db = sqlite3.connect(":memory:")
    db.executescript(sqlite_logs.SCHEMA)
    level_of = lambda i: "warn" if i % 100 == 0 else "info"
    db.executemany("INSERT INTO log_rows (exp_id, idx, record, level) VALUES (1, ?, ?, ?)",
                   [(i, msgpack.packb({"level": level_of(i), "message": "m"}), level_of(i)) for i in range(2000)])
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    sqlite_logs.read(db, False, 1, 0, 1000, level, search, tail=True)
    db.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert reads, statements
    return [" ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + s)) for s in reads]


def test_a_level_filter_reads_through_the_level_index() -> None:
    for level in ("error", "warn", "info"):
        plans = _plans(level)
        assert all("log_rows_level" in p for p in plans), (level, plans)


def test_the_whole_runs_tail_reads_the_primary_key_in_order() -> None:
    assert all("PRIMARY KEY" in p for p in _plans(None))
