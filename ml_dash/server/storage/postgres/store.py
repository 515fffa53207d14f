"""The PostgreSQL implementation of :class:`~..protocol.Storage` (the protocol states the obligations).

For a deployment of several server instances on one database: the server keeps nothing of its own,
so any instance answers any request (keys, grants and browser sessions are rows here too). Every
write is one transaction (synchronous commit: a 2xx means committed); ingest of a run is serialised
across instances by its run row, locked ``FOR UPDATE`` (ingest.py). A transaction that meets a
deadlock or a serialisation failure ran nothing durable and is run again, up to :data:`ATTEMPTS`
times. Driver failures leave as the storage's errors (failures.py): a lost database is
:class:`~..errors.StorageUnavailable` (503 with Retry-After), never a 500.

Connections: a pool of at most ``pool_size`` per instance (the URL's ``pool_size``, default
:data:`POOL_SIZE`). Size it as (the server's ``max_connections`` - a reserve) / instances.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import asyncpg
import msgpack

from ml_dash.agent.pool import WorkerPool
from ml_dash.format.jsonlines import dumps, loads
from ml_dash.format.layout import metric_name, metric_stream

from .. import chunk_reads
from ..archive import ArchiveTier
from ..archive_reads import ArchiveFetcher
from ..errors import GapError, StorageError, StorageOpenError
from ..log_archive import ArchivedLines, archived_lines_async, merged_page_async
from ..pages import (
    FILTER_SCAN,
    LIST_LATEST_METRICS,
    MAX_LIST_VALUES,
    MAX_LOG_PAGE_BYTES,
    MAX_NAMED_METRICS,
    LogBudget,
    filtered_page,
    key_page,
    like_literal,
    within_budget,
)
from ..protocol import LIST_ORDERS, ExperimentRow, FileRow, KeyRow, OwnerRow, ProjectRow
from ..records import IngestBatch
from ..replies import Acknowledgement
from . import documents, schema
from .archive import PgArchive
from .failures import RETRIED, mapped
from .ingest import acknowledgement, ingest, upsert_experiment
from .migration import PgMigrationTarget
from .reads import PgChunks

if TYPE_CHECKING:
    from ...blobs.protocol import BlobStore
    from ...migrate.target import MigrationTarget

T = TypeVar("T")

#: Connections per instance, unless the URL says ``?pool_size=N``.
POOL_SIZE = 10
#: A transaction that met a deadlock or a serialisation failure is run again, at most this many times in all.
ATTEMPTS = 5
#: How long a write waits for a row lock (another instance ingesting the same run) or for a pooled
#: connection, before it gives up with StorageBusy (503): as SQLite's LOCK_WAIT_S.
LOCK_WAIT_S = 30.0
#: How long opening waits for the database to answer.
CONNECT_TIMEOUT_S = 10.0
#: Threads that decode metric chunks for reads (chunk_reads runs there, as on SQLite).
READ_THREADS = 2


class PostgresStorage:
    """Metadata in PostgreSQL (asyncpg), for one or many server instances."""

    def __init__(self, dsn: str, shown_url: str, pool_size: int = POOL_SIZE) -> None:
        self._dsn = dsn
        self._shown = shown_url  # the URL with its password hidden: what errors name
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._readers = WorkerPool(READ_THREADS, "ml-dash-pg-read")
        self._blobs: BlobStore | None = None  # where archived chunks are read from (..archive)

    # -- life ----------------------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._pool_size, timeout=CONNECT_TIMEOUT_S,
                server_settings={"application_name": "ml-dash", "lock_timeout": f"{int(LOCK_WAIT_S * 1000)}"})
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as exc:
            raise StorageOpenError(f"cannot open the database {self._shown}: {_reason(exc)}") from exc
        try:
            async with self._pool.acquire() as conn:
                await schema.migrate(conn)
        except asyncpg.PostgresError as exc:  # no permission to create the schema, a broken one
            await self.close()
            raise StorageOpenError(f"cannot set up the schema in {self._shown}: {_reason(exc)}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), LOCK_WAIT_S)
            except (asyncio.TimeoutError, asyncpg.InterfaceError, OSError):
                pool.terminate()
        self._readers.shutdown(wait=True)

    async def ping(self) -> None:
        """One ``SELECT 1`` on a pooled connection (``/ready``): a lost database raises StorageUnavailable."""
        await self._read(lambda conn: conn.fetchval("SELECT 1"))

    # -- archive (..archive) ---------------------------------------------------------------------------
    def read_archive_from(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def archive_tier(self) -> ArchiveTier:
        return PgArchive(self._write, self._read)

    def migration_target(self) -> MigrationTarget:
        return PgMigrationTarget(self._write, self._read, lambda: self._pool_or_fail().acquire(timeout=LOCK_WAIT_S))

    def _fetcher(self, loop: asyncio.AbstractEventLoop, exp_id: int, metric: str) -> ArchiveFetcher:
        return ArchiveFetcher(loop, self._blobs, f"metric {metric!r} of run {exp_id}")

    # -- running statements ----------------------------------------------------------------------------
    def _pool_or_fail(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError(f"the storage {self._shown} is not open")
        return self._pool

    async def _write(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(conn)`` in one transaction, run again after a deadlock or serialisation failure (rolled
        back: nothing of it stored), after a short random pause so that the two parties part."""
        pool = self._pool_or_fail()
        for attempt in range(ATTEMPTS):
            try:
                async with pool.acquire(timeout=LOCK_WAIT_S) as conn, conn.transaction():
                    return await fn(conn)
            except asyncpg.PostgresError as exc:
                if exc.sqlstate in RETRIED and attempt + 1 < ATTEMPTS:
                    await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                    continue
                _raise_mapped(exc)
                raise
            except (asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as exc:
                _raise_mapped(exc)
                raise
        raise AssertionError("unreachable")

    async def _read(self, fn: Callable[[Any], Awaitable[T]], snapshot: bool = False) -> T:
        """``fn(conn)`` on a pooled connection (with ``snapshot``: in one read-only repeatable-read
        transaction, so that its statements see one state of the database)."""
        pool = self._pool_or_fail()
        try:
            async with pool.acquire(timeout=LOCK_WAIT_S) as conn:
                if not snapshot:
                    return await fn(conn)
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    return await fn(conn)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as exc:
            _raise_mapped(exc)
            raise

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        return await self._read(lambda conn: conn.fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._read(lambda conn: conn.fetchrow(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> str:
        return await self._write(lambda conn: conn.execute(sql, *args))

    # -- ingest --------------------------------------------------------------------------------------
    async def ingest(self, batch: IngestBatch, max_metrics: int | None = None) -> Acknowledgement:
        try:
            return await self._write(lambda conn: ingest(conn, batch, max_metrics))
        except GapError as exc:  # rolled back: tell the client the counts of its streams to go by
            async def counts(conn: Any) -> Acknowledgement:
                exp_id = await conn.fetchval("SELECT id FROM experiments WHERE owner = $1 AND project = $2 AND "
                                             "name = $3", batch.owner, batch.project, batch.name)
                return await acknowledgement(conn, exp_id, batch)
            exc.reply = await self._read(counts, snapshot=True)
            raise

    # -- files ---------------------------------------------------------------------------------------
    async def put_file(self, owner: str, project: str, name: str, path: str, sha256: str, size: int,
                       entry: dict[str, Any]) -> None:
        async def put(conn: Any) -> None:
            exp_id = await upsert_experiment(conn, IngestBatch(owner, project, name))
            await conn.execute("INSERT INTO files (exp_id, path, sha256, size, entry) VALUES ($1, $2, $3, $4, $5) "
                               "ON CONFLICT (exp_id, path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, "
                               "entry = excluded.entry", exp_id, path, sha256, size, dumps(entry).decode())
        await self._write(put)

    async def files(self, exp_id: int) -> list[FileRow]:
        rows = await self._fetch("SELECT path, sha256, size, entry FROM files WHERE exp_id = $1 ORDER BY path", exp_id)
        return [{**loads(entry), "path": path, "checksum": sha, "sizeBytes": size} for path, sha, size, entry in rows]

    # -- keys, grants, sessions ----------------------------------------------------------------------
    async def add_key(self, key_id: str, owner: str, secret_sha256: str) -> None:
        await self._execute("INSERT INTO api_keys (key_id, owner, secret_sha256, created_at) VALUES ($1, $2, $3, $4)",
                            key_id, owner, secret_sha256, time.time())

    async def key_owner(self, key_id: str, secret_sha256: str) -> str | None:
        row = await self._fetchrow("SELECT owner, secret_sha256, revoked_at FROM api_keys WHERE key_id = $1", key_id)
        if row is None or row["revoked_at"] is not None:
            return None
        return str(row["owner"]) if hmac.compare_digest(row["secret_sha256"], secret_sha256) else None

    async def revoke_key(self, key_id: str) -> bool:
        async def revoke(conn: Any) -> bool:
            known = await conn.fetchval("SELECT true FROM api_keys WHERE key_id = $1 FOR UPDATE", key_id)
            await conn.execute("UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
                               key_id, time.time())
            await conn.execute("DELETE FROM sessions WHERE key_id = $1", key_id)  # signed in with it: signed out
            return bool(known)
        return await self._write(revoke)

    async def keys(self, owner: str) -> list[KeyRow]:
        rows = await self._fetch("SELECT key_id, created_at, revoked_at FROM api_keys WHERE owner = $1 "
                                 "ORDER BY created_at", owner)
        return [{"key_id": k, "created_at": c, "revoked_at": r} for k, c, r in rows]

    async def grant(self, owner: str, member: str) -> None:
        await self._execute("INSERT INTO members (owner, member) VALUES ($1, $2) ON CONFLICT DO NOTHING", owner, member)

    async def can_read(self, reader: str, owner: str) -> bool:
        if reader == owner:
            return True
        return await self._fetchrow("SELECT 1 FROM members WHERE owner = $1 AND member = $2", owner, reader) is not None

    async def add_session(self, token_sha256: str, owner: str, expires_at: float, key_id: str | None) -> None:
        async def add(conn: Any) -> None:
            now = time.time()
            await conn.execute("DELETE FROM sessions WHERE expires_at < $1", now)
            await conn.execute("INSERT INTO sessions (token_sha256, owner, key_id, created_at, expires_at) "
                               "VALUES ($1, $2, $3, $4, $5)", token_sha256, owner, key_id, now, expires_at)
        await self._write(add)

    async def session_owner(self, token_sha256: str) -> str | None:
        row = await self._fetchrow("SELECT owner FROM sessions WHERE token_sha256 = $1 AND expires_at >= $2",
                                   token_sha256, time.time())
        return None if row is None else str(row[0])

    async def drop_session(self, token_sha256: str) -> None:
        await self._execute("DELETE FROM sessions WHERE token_sha256 = $1", token_sha256)

    # -- reads ---------------------------------------------------------------------------------------
    async def list_experiments(self, owner: str | None, project: str | None, status: str | None,
                               tag: str | None, limit: int, offset: int, name_prefix: str | None = None,
                               silent_since: float | None = None, order: str = "name") -> list[ExperimentRow]:
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        for column, value in (("owner", owner), ("project", project)):
            if value is not None:
                where.append(f"{column} = {arg(value)}")
        if status is not None:
            if silent_since is not None and status == "CRASHED":
                where.append(f"(status = 'CRASHED' OR (status = 'RUNNING' AND last_seen < {arg(silent_since)}))")
            elif silent_since is not None and status == "RUNNING":
                where.append(f"status = 'RUNNING' AND last_seen >= {arg(silent_since)}")
            else:
                where.append(f"status = {arg(status)}")
        if name_prefix:  # a plain prefix of the run name: LIKE's wildcards are escaped
            where.append(f"name LIKE {arg(like_literal(name_prefix) + '%')}")
        if tag is not None:  # the GIN index on tags answers @>
            where.append(f"tags @> {arg(documents.query_copy([tag]))}::jsonb")
        sql = f"SELECT {_EXP_COLUMNS} FROM experiments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {LIST_ORDERS[order]} LIMIT {arg(limit)} OFFSET {arg(offset)}"
        found = [_experiment_dict(r) for r in await self._fetch(sql, *args)]
        if tag is not None and ("\x00" in tag or "\ufffd" in tag):
            # the query copy reads NUL as U+FFFD: keep the runs whose exact tags hold it (such a page may
            # come short of ``limit``; tags with NUL or U+FFFD are rare enough)
            found = [e for e in found if tag in e["tags"]]
        return found

    async def owners(self, reader: str) -> list[OwnerRow]:
        rows = await self._fetch(
            "SELECT o.owner, (SELECT COUNT(*) FROM experiments e WHERE e.owner = o.owner) FROM "
            "(SELECT $1::text COLLATE \"C\" AS owner UNION SELECT owner FROM members WHERE member = $1) o "
            "ORDER BY o.owner", reader)
        return [{"owner": owner, "experiments": count} for owner, count in rows]

    async def all_owners(self) -> list[OwnerRow]:
        rows = await self._fetch("SELECT owner, COUNT(*) FROM experiments GROUP BY owner ORDER BY owner")
        return [{"owner": owner, "experiments": count} for owner, count in rows]

    async def projects(self, owner: str) -> list[ProjectRow]:
        rows = await self._fetch("SELECT project, COUNT(*), MAX(last_seen) FROM experiments WHERE owner = $1 "
                                 "GROUP BY project ORDER BY project", owner)
        return [{"project": p, "experiments": n, "last_seen": t} for p, n, t in rows]

    async def experiment(self, owner: str, project: str, name: str) -> ExperimentRow | None:
        row = await self._fetchrow(f"SELECT {_EXP_COLUMNS} FROM experiments WHERE owner = $1 AND project = $2 "
                                   "AND name = $3", owner, project, name)
        return None if row is None else _experiment_dict(row)

    async def stream_page(self, exp_id: int, after: str, limit: int, contains: str | None = None
                          ) -> tuple[dict[str, int], dict[str, dict[str, Any]], str | None]:
        """A page of the run's streams in name order (a range of the primary key), with the latest values
        of its metrics: the same paging as sqlite/streams.py."""
        async def read(conn: Any) -> tuple[dict[str, int], dict[str, dict[str, Any]], str | None]:
            streams, cut = await _stream_page(conn, exp_id, after, limit, contains)
            metrics = [m for m in map(metric_name, streams) if m is not None]
            latest: dict[str, dict[str, Any]] = {}
            if metrics:
                for metric, blob in await conn.fetch("SELECT metric, latest FROM metric_latest WHERE exp_id = $1 "
                                                     "AND metric = ANY($2::text[])", exp_id, metrics):
                    latest[metric] = msgpack.unpackb(blob)
            return streams, latest, cut
        return await self._read(read, snapshot=True)

    async def list_latest(self, exp_ids: list[int],
                          named: list[str]) -> dict[int, tuple[dict[str, dict[str, Any]], bool]]:
        named = named[:MAX_NAMED_METRICS]

        async def read(conn: Any) -> dict[int, tuple[dict[str, dict[str, Any]], bool]]:
            # two statements for the whole page of runs (a round trip each), key lookups and short ranges
            by_run: dict[int, list[tuple[str, bytes]]] = {}
            if named:
                for exp_id, metric, blob in await conn.fetch(
                        "SELECT exp_id, metric, latest FROM metric_latest WHERE exp_id = ANY($1::bigint[]) AND "
                        "metric = ANY($2::text[]) ORDER BY exp_id, metric", exp_ids, named):
                    by_run.setdefault(exp_id, []).append((metric, blob))
            first: dict[int, list[tuple[str, bytes]]] = {}
            for exp_id, metric, blob in await conn.fetch(
                    "SELECT q.id, l.metric, l.latest FROM unnest($1::bigint[]) AS q(id) CROSS JOIN LATERAL "
                    "(SELECT metric, latest FROM metric_latest WHERE exp_id = q.id ORDER BY metric LIMIT $2) AS l "
                    "ORDER BY q.id, l.metric", exp_ids, LIST_LATEST_METRICS + 1):
                first.setdefault(exp_id, []).append((metric, blob))
            out: dict[int, tuple[dict[str, dict[str, Any]], bool]] = {}
            for exp_id in exp_ids:
                leading = first.get(exp_id, [])
                more = len(leading) > LIST_LATEST_METRICS
                latest, cut = within_budget(by_run.get(exp_id, []) + leading[:LIST_LATEST_METRICS], MAX_LIST_VALUES)
                if latest:
                    out[exp_id] = (latest, more or cut)
            return out
        return await self._read(read, snapshot=True)

    async def metric_rows(self, exp_id: int, metric: str, start: int,
                          limit: int) -> tuple[list[dict[str, Any]], int | None]:
        loop = asyncio.get_running_loop()

        async def read(conn: Any) -> tuple[list[dict[str, Any]], int | None]:
            source = PgChunks(loop, conn, exp_id, metric, self._fetcher(loop, exp_id, metric))
            return await loop.run_in_executor(self._readers, chunk_reads.page, source, start, limit)
        return await self._read(read, snapshot=True)

    async def metric_chunks(self, exp_id: int, metric: str, start: int, end: int | None,
                            max_bytes: int) -> tuple[list[tuple[int, int, bytes]], int | None]:
        loop = asyncio.get_running_loop()

        async def read(conn: Any) -> tuple[list[tuple[int, int, bytes]], int | None]:
            source = PgChunks(loop, conn, exp_id, metric, self._fetcher(loop, exp_id, metric))
            return await loop.run_in_executor(self._readers, chunk_reads.chunk_range, source, start, end, max_bytes)
        return await self._read(read, snapshot=True)

    async def metric_buckets(self, exp_id: int, metric: str, start: int, end: int | None, buckets: int,
                             width: int | None = None) -> tuple[int, list[dict[str, Any]]]:
        loop = asyncio.get_running_loop()

        async def read(conn: Any) -> tuple[int, list[dict[str, Any]]]:
            stored = await conn.fetchval("SELECT stored FROM stream_counts WHERE exp_id = $1 AND stream = $2",
                                         exp_id, metric_stream(metric)) or 0
            stop = stored if end is None else min(end, stored)
            if stop <= start:
                return width or 1, []
            source = PgChunks(loop, conn, exp_id, metric, self._fetcher(loop, exp_id, metric))
            return await loop.run_in_executor(self._readers, chunk_reads.buckets, source, start, stop, stored,
                                              buckets, width)
        return await self._read(read, snapshot=True)  # the stored count and the summaries of one moment

    async def log_rows(self, exp_id: int, start: int, limit: int, level: str | None, search: str | None = None,
                       tail: bool = False, max_bytes: int = MAX_LOG_PAGE_BYTES) -> tuple[list[dict[str, Any]], int | None]:
        """Lines from ``start`` (with ``tail``: the last ``limit``), of ``level``, holding ``search``
        (ILIKE, answered by the trigram index), at most ``max_bytes`` of records (at least one line)."""
        args: list[Any] = [exp_id, start]
        sql = "SELECT idx, record FROM log_rows WHERE exp_id = $1 AND idx >= $2"
        if level is not None:
            args.append(level)
            sql += f" AND level = ${len(args)}"
        if search:
            args.append("%" + like_literal(documents.text_copy(search) or "") + "%")
            sql += f" AND message ILIKE ${len(args)}"
        args.append(limit)
        sql += f" ORDER BY idx {'DESC' if tail else 'ASC'} LIMIT ${len(args)}"

        async def read(conn: Any) -> tuple[list[dict[str, Any]], int | None]:
            frames = [ArchivedLines(*row) for row in await conn.fetch(
                "SELECT first_idx, last_idx, object, frame_offset, frame_length FROM log_archive WHERE exp_id = $1 "
                f"AND last_idx >= $2 ORDER BY first_idx {'DESC' if tail else 'ASC'}", exp_id, start)]
            stored = ((idx, record) async for idx, record in conn.cursor(sql, *args, prefetch=100))
            if frames:  # both tiers (..log_archive), in this one snapshot
                fetcher = ArchiveFetcher(asyncio.get_running_loop(), self._blobs, f"the logs of run {exp_id}")
                return await merged_page_async(stored, archived_lines_async(frames, fetcher, start, level, search, tail),
                                               limit, tail, max_bytes)
            budget = LogBudget(max_bytes, tail)
            async for idx, record in stored:  # the budget stops the read
                if not budget.take(idx, record):
                    break
            return budget.page()
        return await self._read(read, snapshot=True)  # a cursor lives in a transaction


async def _stream_page(conn: Any, exp_id: int, after: str, limit: int,
                       contains: str | None) -> tuple[dict[str, int], str | None]:
    """As sqlite/streams.py's ``stream_page``: a range of the key, or with ``contains`` at most
    :data:`FILTER_SCAN` streams examined."""
    sql = "SELECT stream, stored FROM stream_counts WHERE exp_id = $1 AND stream > $2 ORDER BY stream LIMIT $3"
    if contains is None:
        return key_page([tuple(r) for r in await conn.fetch(sql, exp_id, after, limit + 1)], limit)
    scanned = [tuple(r) for r in await conn.fetch(sql, exp_id, after, FILTER_SCAN + 1)]
    return filtered_page(scanned, contains, limit, after)


_EXP_COLUMNS = "id, owner, project, name, doc, status, last_seen, run_id"


def _experiment_dict(row: Any) -> ExperimentRow:
    doc = loads(row["doc"]) if row["doc"] else {}
    exp = {"id": row["id"], "owner": row["owner"], "project": row["project"], "name": row["name"],
           "prefix": f"{row['owner']}/{row['project']}/{row['name']}",
           "description": doc.get("description"), "tags": doc.get("tags") or [], "metadata": doc.get("metadata"),
           "status": doc.get("status", row["status"]), "status_reason": doc.get("status_reason"),
           "created_at": doc.get("created_at"), "started_at": doc.get("started_at"), "ended_at": doc.get("ended_at"),
           "last_seen": row["last_seen"], "params": doc.get("params") or {}, "run_id": row["run_id"],
           "hostname": doc.get("hostname")}
    return cast(ExperimentRow, exp)


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line, without anything secret (asyncpg's messages carry no password)."""
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT_S:.0f} s"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "connection refused (is PostgreSQL running and listening there?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _raise_mapped(exc: BaseException) -> None:
    found = mapped(exc)
    if found is not None:
        raise found from exc
