"""SQLite as a migration's target (``...migrate.target``): a run's rows in one ``BEGIN IMMEDIATE`` transaction.

Rows go in as the source holds them; a log line's message goes to ``log_text`` under the rowid of
the run's new id (sqlite/logs.py), so search finds it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from ml_dash.format.jsonlines import dumps

from ...migrate.records import KeyRecord, ObjectRecord, Row, RunMark, RunRecord, RunTable, SessionRecord
from ..records import RUN_COLUMNS
from . import logs as sqlite_logs

Runner = Callable[..., Awaitable[Any]]


class SQLiteMigrationTarget:
    """``write(fn, *args)`` runs ``fn(connection, *args)`` on the store's writer thread."""

    def __init__(self, write: Runner) -> None:
        self._write = write

    async def run_mark(self, owner: str, project: str, name: str) -> RunMark | None:
        row = await self._write(lambda db: db.execute(
            "SELECT run_id, last_seen, stream_count, stored_rows FROM experiments WHERE owner=? AND project=? AND name=?",
            (owner, project, name)).fetchone())
        return None if row is None else RunMark(*row)

    @asynccontextmanager
    async def run_writer(self) -> AsyncIterator[_RunWriter]:
        await self._write(lambda db: db.execute("BEGIN IMMEDIATE"))
        try:
            yield _RunWriter(self._write)
        except BaseException:
            await self._write(_rollback)
            raise
        await self._write(lambda db: db.execute("COMMIT"))

    async def key(self, key_id: str) -> KeyRecord | None:
        row = await self._write(lambda db: db.execute("SELECT key_id, owner, secret_sha256, created_at, revoked_at "
                                                      "FROM api_keys WHERE key_id = ?", (key_id,)).fetchone())
        return None if row is None else KeyRecord(*row)

    async def session_owner(self, token_sha256: str) -> str | None:
        row = await self._write(lambda db: db.execute("SELECT owner FROM sessions WHERE token_sha256 = ?",
                                                      (token_sha256,)).fetchone())
        return None if row is None else str(row[0])

    async def put_keys(self, keys: list[KeyRecord]) -> int:
        return await self._inserted("INSERT OR IGNORE INTO api_keys (key_id, owner, secret_sha256, created_at, revoked_at) "
                                    "VALUES (?, ?, ?, ?, ?)", [(k.key_id, k.owner, k.secret_sha256, k.created_at,
                                                                k.revoked_at) for k in keys])

    async def put_grants(self, grants: list[tuple[str, str]]) -> int:
        return await self._inserted("INSERT OR IGNORE INTO members (owner, member) VALUES (?, ?)", grants)

    async def put_sessions(self, sessions: list[SessionRecord]) -> int:
        return await self._inserted("INSERT OR IGNORE INTO sessions (token_sha256, owner, key_id, created_at, expires_at) "
                                    "VALUES (?, ?, ?, ?, ?)", [(s.token_sha256, s.owner, s.key_id, s.created_at,
                                                                s.expires_at) for s in sessions])

    async def _inserted(self, sql: str, rows: list[tuple]) -> int:
        def insert(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                count = sum(db.execute(sql, row).rowcount for row in rows)
                db.execute("COMMIT")
                return count
            except BaseException:
                _rollback(db)
                raise
        return await self._write(insert)


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")


class _RunWriter:
    def __init__(self, write: Runner) -> None:
        self._write = write

    async def create_run(self, run: RunRecord, source_id: int) -> int:
        fields = {key: run.fields.get(key) for key in RUN_COLUMNS}
        for key in ("tags", "metadata"):  # JSON text, as ingest stores them (sqlite/ingest.py)
            fields[key] = None if fields[key] is None else dumps(fields[key]).decode()
        if fields["tags"] is None:
            fields["tags"] = "[]"
        if fields["status"] is None:
            fields["status"] = "RUNNING"
        columns = ["id", "owner", "project", "name", *fields, "params", "run_id", "last_seen", "stream_count", "stored_rows"]
        values = [source_id, run.owner, run.project, run.name, *fields.values(), dumps(run.params).decode(), run.run_id,
                  run.last_seen, run.stream_count, run.stored_rows]
        sql = f"INSERT INTO experiments ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"

        def insert(db: sqlite3.Connection) -> int:
            if db.execute("SELECT 1 FROM experiments WHERE id = ?", (source_id,)).fetchone() is not None:
                values[0] = None  # taken: SQLite picks a new id
            return int(db.execute(sql, values).lastrowid or 0)
        return int(await self._write(insert))

    async def put_rows(self, exp_id: int, table: RunTable, rows: list[Row]) -> None:
        columns = ", ".join(f'"{c}"' for c in ("exp_id", *table.columns))
        if table.name == "log_rows":
            def put_logs(db: sqlite3.Connection) -> None:  # with their storing time: the archive's age goes on
                for stored_at in sorted({row[4] for row in rows}):
                    sqlite_logs.store(db, exp_id, [row[:4] for row in rows if row[4] == stored_at], stored_at)
            await self._write(put_logs)
            return
        sql = f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join('?' * (len(table.columns) + 1))})"
        await self._write(lambda db: db.executemany(sql, [(exp_id, *row) for row in rows]))

    async def put_objects(self, objects: list[ObjectRecord]) -> None:
        await self._write(lambda db: db.executemany(
            "INSERT OR IGNORE INTO archive_objects (sha256, state, noted_at) VALUES (?, ?, ?)",
            [(o.sha256, o.state, o.noted_at) for o in objects]))
