"""PostgreSQL as a migration's target (``...migrate.target``): a run's rows in one transaction, by COPY.

Rows go in with binary ``COPY`` (``copy_records_to_table``: about ten times the rows a second of
INSERTs), as the source holds them, with the columns this schema adds: a run's document and query
copies (documents.py), a log line's message as text (NUL as U+FFFD, which text cannot hold).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from ...migrate.records import KeyRecord, ObjectRecord, Row, RunMark, RunRecord, RunTable, SessionRecord
from . import documents
from .failures import mapped

#: ``fn(conn)`` in one transaction (store.py's ``_write``), or on a pooled connection (``_read``)
Runner = Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]
#: this schema's names for the source's columns where they differ
_COLUMN_NAMES = {"window": "win"}


class PgMigrationTarget:
    """``write`` runs ``fn(conn)`` in a transaction, ``read`` on a pooled connection; ``acquire`` gives a
    pooled connection for the length of a run's transaction."""

    def __init__(self, write: Runner, read: Runner, acquire: Callable[[], Any]) -> None:
        self._write, self._read, self._acquire = write, read, acquire

    async def run_mark(self, owner: str, project: str, name: str) -> RunMark | None:
        row = await self._read(lambda conn: conn.fetchrow(
            "SELECT run_id, last_seen, stream_count, stored_rows FROM experiments WHERE owner = $1 AND project = $2 "
            "AND name = $3", owner, project, name))
        return None if row is None else RunMark(*row)

    @asynccontextmanager
    async def run_writer(self) -> AsyncIterator[_RunWriter]:
        import asyncpg

        try:
            async with self._acquire() as conn, conn.transaction():
                yield _RunWriter(conn)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:  # the storage's errors (failures.py)
            found = mapped(exc)
            if found is not None:
                raise found from exc
            raise

    async def key(self, key_id: str) -> KeyRecord | None:
        row = await self._read(lambda conn: conn.fetchrow("SELECT key_id, owner, secret_sha256, created_at, revoked_at "
                                                          "FROM api_keys WHERE key_id = $1", key_id))
        return None if row is None else KeyRecord(*row)

    async def session_owner(self, token_sha256: str) -> str | None:
        return await self._read(lambda conn: conn.fetchval("SELECT owner FROM sessions WHERE token_sha256 = $1",
                                                           token_sha256))

    async def put_keys(self, keys: list[KeyRecord]) -> int:
        return await self._inserted(
            "INSERT INTO api_keys (key_id, owner, secret_sha256, created_at, revoked_at) SELECT * FROM unnest($1::text[], "
            "$2::text[], $3::text[], $4::float8[], $5::float8[]) ON CONFLICT DO NOTHING",
            [k.key_id for k in keys], [k.owner for k in keys], [k.secret_sha256 for k in keys],
            [k.created_at for k in keys], [k.revoked_at for k in keys])

    async def put_grants(self, grants: list[tuple[str, str]]) -> int:
        return await self._inserted("INSERT INTO members (owner, member) SELECT * FROM unnest($1::text[], $2::text[]) "
                                    "ON CONFLICT DO NOTHING", [g[0] for g in grants], [g[1] for g in grants])

    async def put_sessions(self, sessions: list[SessionRecord]) -> int:
        return await self._inserted(
            "INSERT INTO sessions (token_sha256, owner, key_id, created_at, expires_at) SELECT * FROM unnest($1::text[], "
            "$2::text[], $3::text[], $4::float8[], $5::float8[]) ON CONFLICT DO NOTHING",
            [s.token_sha256 for s in sessions], [s.owner for s in sessions], [s.key_id for s in sessions],
            [s.created_at for s in sessions], [s.expires_at for s in sessions])

    async def _inserted(self, sql: str, *args: Any) -> int:
        status = await self._write(lambda conn: conn.execute(sql, *args))
        return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 N"


class _RunWriter:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def create_run(self, run: RunRecord, source_id: int) -> int:
        doc = {key: value for key, value in run.fields.items() if value is not None}
        if run.params:
            doc["params"] = run.params
        tags = documents.query_copy(doc.get("tags")) or "[]"
        params = documents.query_copy(doc.get("params")) or "{}"
        taken = await self._conn.fetchval("SELECT true FROM experiments WHERE id = $1", source_id)
        # the source's id where it is free (OVERRIDING the identity), and the identity moved past it, so
        # that runs made later by ingest never ask for it
        made = int(await self._conn.fetchval(
            "INSERT INTO experiments (id, owner, project, name, doc, status, tags, metadata, params, last_seen, run_id, "
            "stream_count, stored_rows) OVERRIDING SYSTEM VALUE VALUES (COALESCE($13, nextval("
            "pg_get_serial_sequence('experiments', 'id'))), $1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9, "
            "$10, $11, $12) RETURNING id", run.owner, run.project, run.name, documents.document_text(doc),
            documents.text_copy(doc.get("status")) or "RUNNING", tags, documents.query_copy(doc.get("metadata")), params,
            run.last_seen, run.run_id, run.stream_count, run.stored_rows, None if taken else source_id))
        await self._conn.execute("SELECT setval(s, $1) FROM (SELECT pg_get_serial_sequence('experiments', 'id') AS s) q "
                                 "WHERE $1 > COALESCE(pg_sequence_last_value(s::regclass), 0)", made)
        return made

    async def put_rows(self, exp_id: int, table: RunTable, rows: list[Row]) -> None:
        columns = ["exp_id", *(_COLUMN_NAMES.get(c, c) for c in table.columns)]
        records: list[tuple[Any, ...]] = [(exp_id, *row) for row in rows]
        if table.name == "log_rows":
            records = [(exp_id, idx, record, level, documents.text_copy(message) or "", stored_at)
                       for idx, record, level, message, stored_at in rows]
        elif table.name == "stream_writers":  # as ingest writes them (postgres/ingest.py)
            records = [(exp_id, stream, first, end, writer, documents.text_copy(reason))
                       for stream, first, end, writer, reason in rows]
        await self._conn.copy_records_to_table(table.name, records=records, columns=columns)

    async def put_objects(self, objects: list[ObjectRecord]) -> None:
        await self._conn.execute(
            "INSERT INTO archive_objects (sha256, state, noted_at) SELECT * FROM unnest($1::text[], $2::text[], "
            "$3::float8[]) ON CONFLICT DO NOTHING", [o.sha256 for o in objects], [o.state for o in objects],
            [o.noted_at for o in objects])
