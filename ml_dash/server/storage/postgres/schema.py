"""The PostgreSQL schema, as versioned migrations applied once under an advisory lock.

Several server instances (and ``ml-dash keys``) may start at once on one database: each takes the
transaction-level advisory lock :data:`MIGRATION_LOCK` before it reads the schema's version, so one of
them applies the missing migrations and the others, waiting on the lock, find them applied. Every
migration of a start runs in that one transaction with its version row (``ml_dash_schema``): a
migration that fails leaves the schema as it was. A database of a newer schema than this ml-dash knows
is refused, never written.

The tables follow the SQLite backend's (sqlite/store.py), with three differences:

* a run's fields and params are kept exactly as the client sent them, as JSON text in ``doc``
  (PostgreSQL's text and JSONB cannot hold the character NUL, which a description or a param may);
  beside it the *query copies* (``status``, ``tags``, ``params``, ``metadata`` as JSONB, NUL read as
  U+FFFD) are what filters and indexes use, never what a read returns;
* metric chunks, summaries and log records are ``bytea`` with ``COMPRESSION lz4`` where the server
  has lz4 (measured here: pglz took 4-5x longer and saved nothing on msgpack blocks);
* log messages are searched through a trigram index (``pg_trgm``), any substring of a whole run.

Names that are ordered (owners, projects, runs, streams, metrics, paths) use the "C" collation: code
point order, the order SQLite gives and the paging of ``stream_page`` relies on.
"""

from __future__ import annotations

from typing import Any

from ..errors import StorageError

#: pg_advisory_xact_lock's key for migrations ("ml-dash" in ASCII).
MIGRATION_LOCK = 0x6D6C2D64617368

_BYTEA = "bytea {compression} NOT NULL"

#: (version, what it does, statements); ``{compression}`` is ``COMPRESSION lz4`` where available.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "runs, streams, metric chunks, logs, files, keys, grants, sessions", [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        """CREATE TABLE api_keys (
            key_id text PRIMARY KEY, owner text COLLATE "C" NOT NULL, secret_sha256 text NOT NULL,
            created_at double precision NOT NULL, revoked_at double precision)""",
        "CREATE INDEX api_keys_by_owner ON api_keys (owner, created_at)",
        """CREATE TABLE sessions (
            token_sha256 text PRIMARY KEY, owner text COLLATE "C" NOT NULL, key_id text,
            created_at double precision NOT NULL, expires_at double precision NOT NULL)""",
        "CREATE INDEX sessions_by_key ON sessions (key_id) WHERE key_id IS NOT NULL",
        "CREATE INDEX sessions_by_expiry ON sessions (expires_at)",
        """CREATE TABLE members (owner text COLLATE "C" NOT NULL, member text COLLATE "C" NOT NULL,
            PRIMARY KEY (owner, member))""",
        "CREATE INDEX members_by_member ON members (member, owner)",
        """CREATE TABLE experiments (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            owner text COLLATE "C" NOT NULL, project text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL,
            doc text NOT NULL DEFAULT '{}',
            status text NOT NULL DEFAULT 'RUNNING', tags jsonb NOT NULL DEFAULT '[]', metadata jsonb,
            params jsonb NOT NULL DEFAULT '{}',
            last_seen double precision NOT NULL, run_id text,
            stream_count bigint NOT NULL DEFAULT 0, stored_rows bigint NOT NULL DEFAULT 0,
            UNIQUE (owner, project, name))""",
        # the run list's filters: an owner's runs of a status; a tag (tags @> '["t"]'); params for later
        "CREATE INDEX experiments_by_status ON experiments (owner, status, project, name)",
        "CREATE INDEX experiments_by_tag ON experiments USING gin (tags jsonb_path_ops)",
        "CREATE INDEX experiments_by_param ON experiments USING gin (params jsonb_path_ops)",
        """CREATE TABLE stream_counts (
            exp_id bigint NOT NULL, stream text COLLATE "C" NOT NULL, stored bigint NOT NULL,
            PRIMARY KEY (exp_id, stream))""",
        """CREATE TABLE stream_writers (
            exp_id bigint NOT NULL, stream text COLLATE "C" NOT NULL, first_idx bigint NOT NULL,
            end_idx bigint NOT NULL, writer text, void_reason text, PRIMARY KEY (exp_id, stream, first_idx))""",
        """CREATE TABLE files (
            exp_id bigint NOT NULL, path text COLLATE "C" NOT NULL, sha256 text NOT NULL, size bigint NOT NULL,
            entry text NOT NULL, PRIMARY KEY (exp_id, path))""",
        f"""CREATE TABLE metric_chunks (
            exp_id bigint NOT NULL, metric text COLLATE "C" NOT NULL, first_idx bigint NOT NULL,
            count integer NOT NULL, blocks {_BYTEA}, PRIMARY KEY (exp_id, metric, first_idx))""",
        """CREATE TABLE metric_latest (
            exp_id bigint NOT NULL, metric text COLLATE "C" NOT NULL, last_idx bigint NOT NULL,
            latest bytea NOT NULL, PRIMARY KEY (exp_id, metric))""",
        f"""CREATE TABLE metric_summaries (
            exp_id bigint NOT NULL, metric text COLLATE "C" NOT NULL, width integer NOT NULL, win bigint NOT NULL,
            summary {_BYTEA}, PRIMARY KEY (exp_id, metric, width, win))""",
        f"""CREATE TABLE log_rows (
            exp_id bigint NOT NULL, idx bigint NOT NULL, record {_BYTEA}, level text, message text NOT NULL,
            PRIMARY KEY (exp_id, idx))""",
        # the last lines of one level, however rare the level, without a scan of the run's logs
        "CREATE INDEX log_rows_by_level ON log_rows (exp_id, level, idx)",
        # a search for any substring (ILIKE) of 3 characters or more is an index lookup
        "CREATE INDEX log_rows_by_text ON log_rows USING gin (message gin_trgm_ops)",
    ]),
    (2, "archival: each chunk's storing time, the archive's index and its objects (archive.py)", [
        # now() is stable: existing chunks take the migration's time without a rewrite of the table, and
        # ingest's inserts (which leave the column out) their transaction's time
        "ALTER TABLE metric_chunks ADD COLUMN stored_at double precision NOT NULL DEFAULT extract(epoch FROM now())",
        "CREATE INDEX metric_chunks_by_age ON metric_chunks (stored_at)",
        """CREATE TABLE metric_archive (
            exp_id bigint NOT NULL, metric text COLLATE "C" NOT NULL, first_idx bigint NOT NULL,
            count integer NOT NULL, object text NOT NULL, frame_offset bigint NOT NULL, frame_length integer NOT NULL,
            PRIMARY KEY (exp_id, metric, first_idx))""",
        "CREATE INDEX metric_archive_by_object ON metric_archive (object)",
        """CREATE TABLE archive_objects (
            sha256 text PRIMARY KEY, state text NOT NULL, noted_at double precision NOT NULL)""",
        "CREATE INDEX archive_objects_by_state ON archive_objects (state, noted_at)",
    ]),
    (3, "log archival: each log line's storing time and the log archive's index (..log_archive)", [
        "ALTER TABLE log_rows ADD COLUMN stored_at double precision NOT NULL DEFAULT extract(epoch FROM now())",
        "CREATE INDEX log_rows_by_age ON log_rows (stored_at)",
        """CREATE TABLE log_archive (
            exp_id bigint NOT NULL, first_idx bigint NOT NULL, last_idx bigint NOT NULL, count integer NOT NULL,
            object text NOT NULL, frame_offset bigint NOT NULL, frame_length integer NOT NULL,
            PRIMARY KEY (exp_id, first_idx))""",
        "CREATE INDEX log_archive_by_object ON log_archive (object)",
    ]),
    (4, "an archived frame's index row holds the finest summaries of its windows (..archive_objects)", [
        "ALTER TABLE metric_archive ADD COLUMN summaries bytea",
    ]),
    (5, "the writer and stamp of the documents a run applied last, which a late, older body keeps (..document_order)", [
        "ALTER TABLE experiments ADD COLUMN docs_writer text, ADD COLUMN docs_rev bigint",
    ]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


async def migrate(conn: Any) -> None:
    """Bring the database to :data:`SCHEMA_VERSION` in one transaction, under :data:`MIGRATION_LOCK`."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS ml_dash_schema (version integer PRIMARY KEY, "
                           "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM ml_dash_schema")
        if current > SCHEMA_VERSION:
            raise StorageError(f"the database's schema is version {current}, newer than this ml-dash knows "
                               f"({SCHEMA_VERSION}): upgrade ml-dash")
        if current == SCHEMA_VERSION:
            return
        compression = "COMPRESSION lz4" if await _has_lz4(conn) else ""
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                await conn.execute(statement.replace("{compression}", compression))
            await conn.execute("INSERT INTO ml_dash_schema (version, description) VALUES ($1, $2)", version, description)


async def _has_lz4(conn: Any) -> bool:
    """Whether the server was built with lz4 (Debian's is): setting it is refused where it was not."""
    import asyncpg

    try:
        async with conn.transaction():  # a savepoint: a refusal leaves the migration's transaction usable
            await conn.execute("SET LOCAL default_toast_compression = 'lz4'")
        return True
    except asyncpg.PostgresError:
        return False
