"""Reading an embedded deployment's SQLite database for a migration: in batches, never a whole table.

Every read pages by key (``WHERE key > last ORDER BY key LIMIT n``, an index range), so memory holds one
batch whatever the deployment's size. A run is read inside one read transaction (:meth:`SQLiteSource.run_snapshot`):
its rows are of one moment even if a server still writes to the database (which the guide advises
against: a run written after it was copied is then refused as different on the next migration).
Reads run on a thread of their own (``asyncio.to_thread``): the target's driver keeps the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from ml_dash.format.jsonlines import loads

from ..storage.records import RUN_COLUMNS
from ..storage.sqlite.logs import message_of
from .records import KeyRecord, ObjectRecord, Row, RunRecord, RunTable, SessionRecord

T = TypeVar("T")
#: Runs, keys, grants, sessions read at a time.
BATCH = 500
#: log_text's rowid of a run's line (sqlite/logs.py): ``exp_id * 2**40 + idx``.
_RUN_SPAN = 1 << 40

_RUN_COLUMNS = ("id, owner, project, name, " + ", ".join(RUN_COLUMNS) +
                ", params, run_id, last_seen, stream_count, stored_rows")


class SQLiteSource:
    """The database of ``ml-dash server --data DIR`` (opened read-only; ``open_storage`` brought its schema
    up to date first)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)

    def close(self) -> None:
        self._db.close()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def _all(self, sql: str, args: tuple = ()) -> list[Any]:
        return self._db.execute(sql, args).fetchall()

    # -- runs -------------------------------------------------------------------------------------
    async def runs(self) -> AsyncIterator[tuple[int, RunRecord]]:
        """Every run (source id, record), by owner, project, name."""
        after: tuple[str, str, str] = ("", "", "")
        while True:
            rows = await self._call(self._all, f"SELECT {_RUN_COLUMNS} FROM experiments WHERE (owner, project, name) > "
                                    "(?, ?, ?) ORDER BY owner, project, name LIMIT ?", (*after, BATCH))
            for row in rows:
                yield row[0], _run_record(row)
            if len(rows) < BATCH:
                return
            after = (rows[-1][1], rows[-1][2], rows[-1][3])

    async def count_runs(self) -> int:
        return int((await self._call(self._all, "SELECT COUNT(*) FROM experiments"))[0][0])

    @asynccontextmanager
    async def run_snapshot(self) -> AsyncIterator[None]:
        """One read transaction: what is read inside it is of one moment."""
        await self._call(self._db.execute, "BEGIN")
        try:
            yield
        finally:
            await self._call(self._db.execute, "COMMIT")

    async def rows(self, exp_id: int, table: RunTable) -> AsyncIterator[list[Row]]:
        """The run's rows of ``table`` in key order, a batch (``table.batch`` rows) at a time."""
        read = self._log_batch if table.name == "log_rows" else self._table_batch
        after: tuple | None = None
        while True:
            batch = await self._call(read, exp_id, table, after)
            if batch:
                yield batch
            if len(batch) < table.batch:
                return
            after = batch[-1][:len(table.key)]

    def _table_batch(self, exp_id: int, table: RunTable, after: tuple | None) -> list[Row]:
        columns = ", ".join(f'"{c}"' for c in table.columns)
        key = ", ".join(f'"{c}"' for c in table.key)
        sql = f"SELECT {columns} FROM {table.name} WHERE exp_id = ?"
        args: tuple = (exp_id,)
        if after is not None:
            sql += f" AND ({key}) > ({', '.join('?' * len(after))})"
            args += tuple(after)
        return [tuple(r) for r in self._all(sql + f" ORDER BY {key} LIMIT ?", (*args, table.batch))]

    def _log_batch(self, exp_id: int, table: RunTable, after: tuple | None) -> list[Row]:
        # the message as search reads it: log_text's (by its rowid), else the record's own
        start = -1 if after is None else after[0]
        rows = self._all("SELECT r.idx, r.record, r.level, t.message, r.stored_at FROM log_rows r LEFT JOIN log_text t "
                         "ON t.rowid = ? + r.idx WHERE r.exp_id = ? AND r.idx > ? ORDER BY r.idx LIMIT ?",
                         (exp_id * _RUN_SPAN, exp_id, start, table.batch))
        return [(idx, record, level, message if message is not None else message_of(record), stored_at)
                for idx, record, level, message, stored_at in rows]

    async def blob_names(self, exp_id: int) -> AsyncIterator[list[str]]:
        """The blobs the run's rows name (its files' content, its metric and log archive objects), a batch at
        a time (an object may come twice: once per table naming it)."""
        for sql in ("SELECT DISTINCT sha256 FROM files WHERE exp_id = ? AND sha256 > ? ORDER BY sha256 LIMIT ?",
                    "SELECT DISTINCT object FROM metric_archive WHERE exp_id = ? AND object > ? ORDER BY object LIMIT ?",
                    "SELECT DISTINCT object FROM log_archive WHERE exp_id = ? AND object > ? ORDER BY object LIMIT ?"):
            after = ""
            while True:
                names = [r[0] for r in await self._call(self._all, sql, (exp_id, after, BATCH))]
                if names:
                    yield names
                if len(names) < BATCH:
                    break
                after = names[-1]

    async def objects(self, names: list[str]) -> list[ObjectRecord]:
        """The archive notes of ``names`` that are ``live``."""
        marks = ", ".join("?" * len(names))
        rows = await self._call(self._all, f"SELECT sha256, state, noted_at FROM archive_objects WHERE state = 'live' "
                                f"AND sha256 IN ({marks})", tuple(names))
        return [ObjectRecord(*r) for r in rows]

    # -- keys, grants, sessions -------------------------------------------------------------------
    async def keys(self) -> AsyncIterator[list[KeyRecord]]:
        async for rows in self._paged("SELECT key_id, owner, secret_sha256, created_at, revoked_at FROM api_keys "
                                      "WHERE key_id > ? ORDER BY key_id LIMIT ?", ("",)):
            yield [KeyRecord(*r) for r in rows]

    async def grants(self) -> AsyncIterator[list[tuple[str, str]]]:
        async for rows in self._paged("SELECT owner, member FROM members WHERE (owner, member) > (?, ?) "
                                      "ORDER BY owner, member LIMIT ?", ("", "")):
            yield [(r[0], r[1]) for r in rows]

    async def sessions(self, now: float) -> AsyncIterator[list[SessionRecord]]:
        """Sessions not yet expired at ``now``."""
        async for rows in self._paged("SELECT token_sha256, owner, key_id, created_at, expires_at FROM sessions "
                                      f"WHERE expires_at >= {float(now)!r} AND token_sha256 > ? ORDER BY token_sha256 "
                                      "LIMIT ?", ("",)):
            yield [SessionRecord(*r) for r in rows]

    async def _paged(self, sql: str, start: tuple) -> AsyncIterator[list[tuple]]:
        after = start
        while True:
            rows = [tuple(r) for r in await self._call(self._all, sql, (*after, BATCH))]
            if rows:
                yield rows
            if len(rows) < BATCH:
                return
            after = rows[-1][:len(start)]


def _run_record(row: tuple) -> RunRecord:
    _id, owner, project, name, *rest = row
    fields = dict(zip(RUN_COLUMNS, rest[:len(RUN_COLUMNS)]))
    for key in ("tags", "metadata"):
        fields[key] = loads(fields[key]) if fields[key] else None
    params_text, run_id, last_seen, stream_count, stored_rows = rest[len(RUN_COLUMNS):]
    return RunRecord(owner, project, name, fields, loads(params_text) if params_text else {}, run_id, last_seen,
                     stream_count, stored_rows)

