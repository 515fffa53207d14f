"""The embedded SQLite implementation of :class:`~..protocol.Storage` (the protocol states the obligations).

Every event identity (run, stream, index) is stored at most once, and
``ingest`` returns only after its transaction is committed with
``synchronous=FULL``, so a 2xx reply means the data is durable. Rows under
stored indices are acknowledged again only when the same writer sent them
(server/storage/sqlite/ingest.py). Metric rows are stored as chunks, one SQLite row
per acknowledged range holding the columnar blocks of the wire format, so a
million rows cost a few dozen inserts instead of a million. Log lines, which
are few, are stored one per row. SQLite runs on one dedicated thread: the
handlers await it. Every failure of the driver that means "no space" or "locked too long" leaves as
:class:`~..errors.StorageFull` or :class:`~..errors.StorageBusy` (:func:`_mapped`), so nothing above
this package reads sqlite3's exceptions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ml_dash.agent.pool import WorkerPool
from ml_dash.format.jsonlines import dumps, loads
from ml_dash.format.layout import metric_stream

from ..archive import ArchiveTier
from ..archive_reads import ArchiveFetcher
from ..chunk_reads import MAX_PAGE_VALUES
from ..errors import GapError, StorageBusy, StorageError, StorageFull
from ..protocol import LIST_ORDERS, ExperimentRow, FileRow, KeyRow, OwnerRow, ProjectRow
from ..records import IngestBatch
from ..replies import Acknowledgement
from . import archive as sqlite_archive
from . import logs as sqlite_logs
from . import metrics as sqlite_metrics
from . import streams as sqlite_streams
from .ingest import acknowledgement, ingest, upsert_experiment
from .migration import SQLiteMigrationTarget

if TYPE_CHECKING:
    from ...blobs.protocol import BlobStore
    from ...migrate.target import MigrationTarget

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, owner TEXT NOT NULL, secret_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL, revoked_at REAL);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY, owner TEXT NOT NULL, key_id TEXT, created_at REAL NOT NULL,
    expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS members (owner TEXT NOT NULL, member TEXT NOT NULL, PRIMARY KEY (owner, member));
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY, owner TEXT NOT NULL, project TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT, tags TEXT NOT NULL DEFAULT '[]', metadata TEXT, status TEXT NOT NULL DEFAULT 'RUNNING',
    status_reason TEXT, created_at TEXT, started_at TEXT, ended_at TEXT, last_seen REAL NOT NULL,
    params TEXT NOT NULL DEFAULT '{}', run_id TEXT, hostname TEXT, stream_count INTEGER NOT NULL DEFAULT 0,
    stored_rows INTEGER NOT NULL DEFAULT 0, docs_writer TEXT, docs_rev INTEGER, UNIQUE (owner, project, name));
CREATE TABLE IF NOT EXISTS stream_counts (
    exp_id INTEGER NOT NULL, stream TEXT NOT NULL, stored INTEGER NOT NULL, PRIMARY KEY (exp_id, stream)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    exp_id INTEGER NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    entry TEXT NOT NULL, PRIMARY KEY (exp_id, path));
CREATE TABLE IF NOT EXISTS stream_writers (
    exp_id INTEGER NOT NULL, stream TEXT NOT NULL, first_idx INTEGER NOT NULL, end_idx INTEGER NOT NULL,
    writer TEXT, void_reason TEXT, PRIMARY KEY (exp_id, stream, first_idx)) WITHOUT ROWID;
"""
#: ``PRAGMA user_version`` of the schema above; :func:`_migrate` brings an older database up to it.
SCHEMA_VERSION = 8
#: Threads (each with its connection) that serve reads.
READ_THREADS = 2
#: How long a write waits for the database's write lock, held by another process (another server, or
#: ``ml-dash keys``) on the same file, before it gives up with StorageBusy.
LOCK_WAIT_S = 30.0
#: SQLite's primary result codes that mean the disk is full: SQLITE_FULL, and SQLITE_IOERR, which a
#: write past the file size limit (EFBIG) or onto a full disk (ENOSPC) returns.
_FULL_CODES = {13, 10}
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED


def _mapped(exc: sqlite3.Error) -> StorageError | None:
    """The storage error a driver error means, by its result code (never by its message), or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    if code & 0xFF in _FULL_CODES:
        return StorageFull(f"the database's disk is full ({getattr(exc, 'sqlite_errorname', code)})")
    if code & 0xFF in _BUSY_CODES:
        return StorageBusy(f"the database was locked by another writer for over {LOCK_WAIT_S:.0f} s")
    return None


def _raise_mapped(exc: sqlite3.Error) -> None:
    mapped = _mapped(exc)
    if mapped is not None:
        raise mapped from exc

class SQLiteStorage:
    """The embedded default: one SQLite file in the data directory, WAL, fsync on commit.

    Writes run on one thread with one connection, in transactions; reads on two others, each with its
    own connection. WAL lets reads go on while a write commits, so a page never waits for another
    run's fsync, and a slow read never holds up ingest.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._pool = WorkerPool(1, "ml-dash-sqlite")  # sqlite3 connections stay on their thread
        self._readers = WorkerPool(READ_THREADS, "ml-dash-sqlite-read")
        self._reader_local = threading.local()
        self._reader_dbs: list[sqlite3.Connection] = []
        self._db: sqlite3.Connection | None = None
        self._full_text = False  # whether log search has an FTS5 index (sqlite_logs.py)
        self._blobs: BlobStore | None = None  # where archived chunks are read from (..archive)

    async def open(self) -> None:
        try:
            await self._run(self._open)
        except (OSError, sqlite3.Error) as exc:  # not a database, no permission: a StorageError that says so
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StorageError(f"cannot open the database {self.path}: {reason}") from exc

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=LOCK_WAIT_S)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA + sqlite_metrics.SCHEMA + sqlite_logs.SCHEMA)
        self._full_text = sqlite_logs.create_text_index(db)
        _migrate(db)
        self._db = db

    async def close(self) -> None:
        self._readers.shutdown(wait=True)
        for reader in self._reader_dbs:
            reader.close()
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    async def ping(self) -> None:
        await self._fetchone("SELECT 1", ())

    # -- archive (..archive) -------------------------------------------------
    def read_archive_from(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def archive_tier(self) -> ArchiveTier:
        return sqlite_archive.SQLiteArchive(self._with_writer, self._read)

    def migration_target(self) -> MigrationTarget:
        return SQLiteMigrationTarget(self._with_writer)

    async def _with_writer(self, fn: Any, *args: Any) -> Any:
        """``fn(the writer's connection, *args)`` on the writer's thread."""
        return await self._run(lambda: fn(self._db, *args))

    def _fetcher(self, exp_id: int, metric: str) -> ArchiveFetcher:
        return ArchiveFetcher(asyncio.get_running_loop(), self._blobs, f"metric {metric!r} of run {exp_id}")

    async def _run(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the writer's thread."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except sqlite3.Error as exc:
            _raise_mapped(exc)
            raise

    async def _read(self, fn: Any, *args: Any) -> Any:
        """``fn(connection, *args)`` on a reader's thread, with that thread's read-only connection."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(self._reader(), *args))
        except sqlite3.Error as exc:
            _raise_mapped(exc)
            raise

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._reader_local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA query_only = ON")
            self._reader_local.db = db
            self._reader_dbs.append(db)
        return db

    # -- ingest ------------------------------------------------------------
    async def ingest(self, batch: IngestBatch, max_metrics: int | None = None) -> Acknowledgement:
        return await self._run(self._ingest, batch, max_metrics)

    def _ingest(self, batch: IngestBatch, max_metrics: int | None) -> Acknowledgement:
        db = self._db
        assert db is not None
        try:
            return ingest(db, batch, max_metrics)
        except GapError as exc:  # rolled back: tell the client the counts of its streams to go by
            row = db.execute("SELECT id FROM experiments WHERE owner=? AND project=? AND name=?",
                             (batch.owner, batch.project, batch.name)).fetchone()
            exc.reply = acknowledgement(db, row[0] if row else None, batch)
            raise

    # -- files -------------------------------------------------------------
    async def put_file(self, owner: str, project: str, name: str, path: str, sha256: str, size: int,
                       entry: dict[str, Any]) -> None:
        await self._run(self._put_file, IngestBatch(owner, project, name), path, sha256, size, entry)

    def _put_file(self, batch: IngestBatch, path: str, sha256: str, size: int, entry: dict[str, Any]) -> None:
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            exp_id = upsert_experiment(db, batch)
            db.execute("INSERT INTO files (exp_id, path, sha256, size, entry) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (exp_id, path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, "
                       "entry = excluded.entry", (exp_id, path, sha256, size, dumps(entry).decode()))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT (disk full) has rolled back already
                db.execute("ROLLBACK")
            raise

    async def files(self, exp_id: int) -> list[FileRow]:
        rows = await self._fetchall("SELECT path, sha256, size, entry FROM files WHERE exp_id = ? ORDER BY path", (exp_id,))
        return [{**loads(entry), "path": path, "checksum": sha, "sizeBytes": size} for path, sha, size, entry in rows]

    # -- keys and grants ---------------------------------------------------
    async def add_key(self, key_id: str, owner: str, secret_sha256: str) -> None:
        await self._run(self._write, "INSERT INTO api_keys (key_id, owner, secret_sha256, created_at) VALUES (?, ?, ?, ?)",
                        (key_id, owner, secret_sha256, time.time()))

    async def revoke_key(self, key_id: str) -> bool:
        """Refuse ``key_id`` from now on (the server looks keys up on every request); False if unknown."""
        def revoke() -> int:
            assert self._db is not None
            cursor = self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                                      (time.time(), key_id))
            self._db.execute("DELETE FROM sessions WHERE key_id = ?", (key_id,))  # signed in with it: signed out
            return cursor.rowcount
        if await self._run(revoke):
            return True
        return await self._fetchone("SELECT 1 FROM api_keys WHERE key_id = ?", (key_id,)) is not None

    async def keys(self, owner: str) -> list[KeyRow]:
        """``owner``'s keys: id, created and revoked times (never the secret or its hash)."""
        rows = await self._fetchall("SELECT key_id, created_at, revoked_at FROM api_keys WHERE owner = ? "
                                    "ORDER BY created_at", (owner,))
        return [{"key_id": k, "created_at": c, "revoked_at": r} for k, c, r in rows]

    async def grant(self, owner: str, member: str) -> None:
        await self._run(self._write, "INSERT OR IGNORE INTO members (owner, member) VALUES (?, ?)", (owner, member))

    def _write(self, sql: str, args: tuple) -> None:
        assert self._db is not None
        self._db.execute(sql, args)

    async def key_owner(self, key_id: str, secret_sha256: str) -> str | None:
        row = await self._fetchone("SELECT owner, secret_sha256, revoked_at FROM api_keys WHERE key_id = ?", (key_id,))
        if row is None or row[2] is not None:
            return None
        import hmac

        return row[0] if hmac.compare_digest(row[1], secret_sha256) else None

    async def add_session(self, token_sha256: str, owner: str, expires_at: float, key_id: str | None) -> None:
        """A browser session (server/sessions.py) opened with ``key_id`` (None: a development server's
        user name); revoking the key ends it. Expired sessions are dropped on the way."""
        def add() -> None:
            assert self._db is not None
            now = time.time()
            self._db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            self._db.execute("INSERT INTO sessions (token_sha256, owner, key_id, created_at, expires_at) "
                             "VALUES (?, ?, ?, ?, ?)", (token_sha256, owner, key_id, now, expires_at))
        await self._run(add)

    async def session_owner(self, token_sha256: str) -> str | None:
        row = await self._fetchone("SELECT owner FROM sessions WHERE token_sha256 = ? AND expires_at >= ?",
                                   (token_sha256, time.time()))
        return None if row is None else str(row[0])

    async def drop_session(self, token_sha256: str) -> None:
        await self._run(self._write, "DELETE FROM sessions WHERE token_sha256 = ?", (token_sha256,))

    async def can_read(self, reader: str, owner: str) -> bool:
        if reader == owner:
            return True
        return await self._fetchone("SELECT 1 FROM members WHERE owner = ? AND member = ?", (owner, reader)) is not None

    # -- reads -------------------------------------------------------------
    async def _fetchone(self, sql: str, args: tuple) -> Any:
        return await self._read(lambda db: db.execute(sql, args).fetchone())

    async def _fetchall(self, sql: str, args: tuple) -> list:
        return await self._read(lambda db: db.execute(sql, args).fetchall())

    async def list_experiments(self, owner: str | None, project: str | None, status: str | None,
                               tag: str | None, limit: int, offset: int, name_prefix: str | None = None,
                               silent_since: float | None = None, order: str = "name") -> list[ExperimentRow]:
        """Runs by owner, project, status, tag and name prefix. With ``silent_since``, a RUNNING run last
        seen before it counts as CRASHED (as it is shown)."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("owner", owner), ("project", project)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if status is not None:
            if silent_since is not None and status == "CRASHED":
                where.append("(status = 'CRASHED' OR (status = 'RUNNING' AND last_seen < ?))")
                args.append(silent_since)
            elif silent_since is not None and status == "RUNNING":
                where.append("status = 'RUNNING' AND last_seen >= ?")
                args.append(silent_since)
            else:
                where.append("status = ?")
                args.append(status)
        if name_prefix:  # a plain prefix of the run name: LIKE's wildcards are escaped
            where.append("name LIKE ? ESCAPE '\\'")
            args.append(sqlite_logs.like_literal(name_prefix) + "%")
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(experiments.tags) WHERE value = ?)")
            args.append(tag)
        sql = f"SELECT {_EXP_COLUMNS} FROM experiments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {LIST_ORDERS[order]} LIMIT ? OFFSET ?"
        return [_experiment_dict(r) for r in await self._fetchall(sql, (*args, limit, offset))]

    async def owners(self, reader: str) -> list[OwnerRow]:
        """The owners ``reader`` may read (itself and who granted it), with their run counts."""
        rows = await self._fetchall(
            "SELECT o.owner, (SELECT COUNT(*) FROM experiments e WHERE e.owner = o.owner) FROM "
            "(SELECT ? AS owner UNION SELECT owner FROM members WHERE member = ?) o ORDER BY o.owner",
            (reader, reader))
        return [{"owner": owner, "experiments": count} for owner, count in rows]

    async def all_owners(self) -> list[OwnerRow]:
        """Every owner with runs, with their run counts (``ml-dash ui``, where anyone may read)."""
        rows = await self._fetchall("SELECT owner, COUNT(*) FROM experiments GROUP BY owner ORDER BY owner", ())
        return [{"owner": owner, "experiments": count} for owner, count in rows]

    async def projects(self, owner: str) -> list[ProjectRow]:
        """``owner``'s projects with their run counts and latest activity (unix seconds)."""
        rows = await self._fetchall("SELECT project, COUNT(*), MAX(last_seen) FROM experiments WHERE owner = ? "
                                    "GROUP BY project ORDER BY project", (owner,))
        return [{"project": p, "experiments": n, "last_seen": t} for p, n, t in rows]

    async def experiment(self, owner: str, project: str, name: str) -> ExperimentRow | None:
        """The run's row, without its streams (a run may hold 100,000: :meth:`stream_page` reads them)."""
        row = await self._fetchone(f"SELECT {_EXP_COLUMNS} FROM experiments WHERE owner=? AND project=? AND name=?",
                                   (owner, project, name))
        return None if row is None else _experiment_dict(row)

    async def stream_page(self, exp_id: int, after: str, limit: int, contains: str | None = None
                          ) -> tuple[dict[str, int], dict[str, dict[str, Any]], str | None]:
        """(stream -> stored rows, metric -> field -> latest value, next): a page of the run's streams
        after the name ``after`` (server/storage/sqlite/streams.py), with its metrics' latest values."""
        def read(db: sqlite3.Connection) -> tuple[dict[str, int], dict[str, dict[str, Any]], str | None]:
            streams, cut = sqlite_streams.stream_page(db, exp_id, after, limit, contains)
            return streams, sqlite_streams.page_latest(db, exp_id, streams), cut
        return await self._read(read)

    async def metric_rows(self, exp_id: int, metric: str, start: int,
                          limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """(rows, next): a page, bounded in rows and in values (``next``: where a cut page goes on)."""
        # on the database's thread, the decoding too: the event loop only awaits the page
        return await self._read(sqlite_metrics.page, exp_id, metric, start, limit, MAX_PAGE_VALUES,
                                self._fetcher(exp_id, metric))

    async def metric_chunks(self, exp_id: int, metric: str, start: int, end: int | None,
                            max_bytes: int) -> tuple[list[tuple[int, int, bytes]], int | None]:
        return await self._read(sqlite_metrics.chunk_range, exp_id, metric, start, end, max_bytes,
                                self._fetcher(exp_id, metric))

    async def list_latest(self, exp_ids: list[int],
                          named: list[str]) -> dict[int, tuple[dict[str, dict[str, Any]], bool]]:
        """Per run: a bounded part of each metric field's latest value, and whether any was left out (the
        run table's metric columns; server/storage/sqlite/streams.py says which)."""
        return await self._read(sqlite_streams.list_latest, exp_ids, named)

    async def metric_buckets(self, exp_id: int, metric: str, start: int, end: int | None,
                             buckets: int, width: int | None = None) -> tuple[int, list[dict[str, Any]]]:
        return await self._read(self._metric_buckets, exp_id, metric, start, end, buckets, width,
                                self._fetcher(exp_id, metric))

    @staticmethod
    def _metric_buckets(db: sqlite3.Connection, exp_id: int, metric: str, start: int, end: int | None,
                        buckets: int, width: int | None, fetcher: ArchiveFetcher) -> tuple[int, list[dict[str, Any]]]:
        """(width, buckets): between about ``buckets / 2`` and ``buckets`` buckets over indices
        ``start:end`` (``end`` None: the whole series), or buckets of ``width`` indices, from the
        stored summaries (sqlite_metrics.py)."""
        with sqlite_metrics.snapshot(db):  # the stored count and the summaries of one moment
            found = db.execute("SELECT stored FROM stream_counts WHERE exp_id = ? AND stream = ?",
                               (exp_id, metric_stream(metric))).fetchone()
            stored = found[0] if found else 0
            end = stored if end is None else min(end, stored)
            if end <= start:
                return width or 1, []
            return sqlite_metrics.buckets(db, exp_id, metric, start, end, stored, buckets, width, fetcher)

    async def log_rows(self, exp_id: int, start: int, limit: int, level: str | None,
                       search: str | None = None, tail: bool = False) -> tuple[list[dict[str, Any]], int | None]:
        """(lines, next): lines from index ``start`` (with ``tail``: the last ``limit`` of them), of ``level`` only,
        and holding ``search`` in their message (case-insensitive), over the whole run."""
        fetcher = ArchiveFetcher(asyncio.get_running_loop(), self._blobs, f"the logs of run {exp_id}")
        return await self._read(sqlite_logs.read, self._full_text, exp_id, start, limit, level, search, tail,
                                sqlite_logs.MAX_PAGE_BYTES, fetcher)


_EXP_COLUMNS = ("id, owner, project, name, description, tags, metadata, status, status_reason, "
                "created_at, started_at, ended_at, last_seen, params, run_id, hostname")


def _experiment_dict(row: tuple) -> ExperimentRow:
    keys = [c.strip() for c in _EXP_COLUMNS.split(",")]
    exp = dict(zip(keys, row))
    exp["tags"] = loads(exp["tags"]) if exp["tags"] else []
    exp["metadata"] = loads(exp["metadata"]) if exp["metadata"] else None
    exp["params"] = loads(exp["params"]) if exp["params"] else {}
    exp["prefix"] = f"{exp['owner']}/{exp['project']}/{exp['name']}"
    return cast(ExperimentRow, exp)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database of an earlier schema up to :data:`SCHEMA_VERSION` (a new one only gets the version).

    Version 2 identifies runs and writers. A run stored before it has rows but no identity: it gets a
    run id and its stored ranges a writer ("legacy"), so that no client can have different rows under
    those indices acknowledged as resends (a client continuing such a run passes resume=True).

    Version 3 splits metric chunks at :data:`~.sqlite_metrics.CHUNK_ROWS`, summarises them and keeps
    each metric's latest values, so that pages, downsampling and the run table of older runs are as
    fast as of new ones; and it keeps each log line's message as text, so that a search covers the
    whole run.

    Version 4 keeps each run's stream count and stored rows on its row (sqlite_ingest.py), so that an
    ingest reply costs what its request does.

    Version 5 keeps each metric chunk's storing time, by which old chunks are archived (sqlite/archive.py);
    it comes first, since version 3's rebuild stores chunks with it.

    Version 6 keeps each log line's storing time, by which old lines are archived (..log_archive).

    Version 7 keeps the finest summaries of an archived frame's windows in its index row (..archive_objects).

    Version 8 keeps, per run, the writer and stamp of the documents applied last (..document_order), so
    that a late, older body does not undo newer run fields and params.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return
    columns = {row[1] for row in db.execute("PRAGMA table_info(experiments)")}
    db.execute("BEGIN IMMEDIATE")
    try:
        if version < 5:
            sqlite_archive.add_stored_at(db)
        if version < 6:
            sqlite_archive.add_log_stored_at(db)
        if version < 7:
            sqlite_archive.add_archived_summaries(db)
        if version < 2:
            _identify_runs(db, columns)
        if version < 3:
            sqlite_metrics.rebuild(db)
            sqlite_logs.index_existing(db)
        if version < 4:
            _count_streams(db, columns)
        if version < 8:
            _stamp_documents(db, columns)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _stamp_documents(db: sqlite3.Connection, columns: set[str]) -> None:
    for column, kind in (("docs_writer", "TEXT"), ("docs_rev", "INTEGER")):
        if column not in columns:  # NULL: the next body's documents apply, as they did before
            db.execute(f"ALTER TABLE experiments ADD COLUMN {column} {kind}")


def _count_streams(db: sqlite3.Connection, columns: set[str]) -> None:
    for column in ("stream_count", "stored_rows"):
        if column not in columns:
            db.execute(f"ALTER TABLE experiments ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    db.execute("UPDATE experiments SET (stream_count, stored_rows) = (SELECT COUNT(*), COALESCE(SUM(stored), 0) "
               "FROM stream_counts c WHERE c.exp_id = experiments.id)")


def _identify_runs(db: sqlite3.Connection, columns: set[str]) -> None:
    for column in ("run_id", "hostname"):
        if column not in columns:
            db.execute(f"ALTER TABLE experiments ADD COLUMN {column} TEXT")
    db.execute("INSERT INTO stream_writers (exp_id, stream, first_idx, end_idx, writer) "
               "SELECT c.exp_id, c.stream, 0, c.stored, 'legacy' FROM stream_counts c WHERE c.stored > 0 "
               "AND NOT EXISTS (SELECT 1 FROM stream_writers w WHERE w.exp_id = c.exp_id AND w.stream = c.stream)")
    db.execute("UPDATE experiments SET run_id = 'legacy-' || id WHERE run_id IS NULL AND EXISTS "
               "(SELECT 1 FROM stream_counts c WHERE c.exp_id = experiments.id AND c.stored > 0)")
