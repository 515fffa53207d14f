"""The server's log store (server/storage/sqlite/logs.py): search with and without FTS5 gives the same lines."""

from __future__ import annotations

import sqlite3

import msgpack
import pytest

from ml_dash.server.storage.sqlite import logs as sqlite_logs

MESSAGES = ['loss 0.5 at 100%', "a_b c", 'quote "x" here', "back\\slash", "ÉTÉ été", "plain", "10_000 rows", "ab"]


def _db(full_text: bool) -> tuple[sqlite3.Connection, bool]:
    db = sqlite3.connect(":memory:")
    db.executescript(sqlite_logs.SCHEMA)
    if not full_text:  # as a SQLite without FTS5 would have it
        db.execute("CREATE TABLE log_text (rowid INTEGER PRIMARY KEY, message TEXT NOT NULL)")
    made = sqlite_logs.create_text_index(db)
    assert made is full_text
    for exp_id in (1, 2):  # two runs: a search never crosses into the other's lines
        rows = [(i, msgpack.packb({"message": m, "level": "warn" if i % 3 == 0 else "info"}),
                 "warn" if i % 3 == 0 else "info", m) for i, m in enumerate(MESSAGES * 50)]
        sqlite_logs.store(db, exp_id, rows)
    return db, made


@pytest.mark.parametrize("search", ["100%", "a_b", '"x"', "back\\", "été", "ÉTÉ", "ab", "10_", "_", "%", "no such"])
def test_a_search_finds_exactly_the_lines_holding_it_with_and_without_fts(search: str) -> None:
    results = []
    for full_text in (True, False):
        db, made = _db(full_text)
        found, _ = sqlite_logs.read(db, made, 1, 0, 10_000, None, search, False)
        results.append([(r["sequenceNumber"], r["message"]) for r in found])
    expected = [(i, m) for i, m in enumerate(MESSAGES * 50) if search.lower() in m.lower()]
    if any(ord(c) > 127 for c in search):  # LIKE folds only ASCII case; the trigram index folds Unicode
        expected_like = [(i, m) for i, m in enumerate(MESSAGES * 50) if search in m]
        assert results[1] == expected_like
        assert results[0] in (expected, expected_like)
    else:
        assert results == [expected, expected]


def test_level_tail_and_start_combine_with_a_search() -> None:
    for full_text in (True, False):
        db, made = _db(full_text)
        found, _ = sqlite_logs.read(db, made, 2, 100, 3, "warn", "plain", True)
        expected = [i for i, m in enumerate(MESSAGES * 50) if i >= 100 and i % 3 == 0 and m == "plain"][-3:]
        assert [r["sequenceNumber"] for r in found] == expected
        assert sqlite_logs.read(db, made, 2, 0, 5, None, None, True)[0][-1]["sequenceNumber"] == len(MESSAGES) * 50 - 1
