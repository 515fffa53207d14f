"""What a migration moves, backend-neutral: a run's row, the per-run tables, keys, grants, sessions.

A source reads these and a target writes them (``target.MigrationTarget``); both know only these shapes,
so a new backend is one more target, not one more pair.

Per-run tables (:data:`RUN_TABLES`) are copied row for row, in key order, a batch at a time: their rows
are tuples of the columns named here, without the run's id (the target's id is put in front). The
names are SQLite's; a target maps a name its schema spells otherwise (PostgreSQL's ``win`` for
``window``). Blobs are not rows: a run's files and archive objects are copied to the target's blob
store before the transaction that writes the rows naming them (``copy.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RunTable:
    """A table of per-run rows: ``columns`` as copied, ``key`` the leading columns that order and page
    them (a prefix of ``columns``), ``batch`` the rows read at a time (small where a row holds a chunk)."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    batch: int


#: Every per-run table, in the order a run is written (its stream counts first: nothing reads a run's
#: rows before the transaction commits, but the order keeps a reader of this list sane).
RUN_TABLES: tuple[RunTable, ...] = (
    RunTable("stream_counts", ("stream", "stored"), ("stream",), 2000),
    RunTable("stream_writers", ("stream", "first_idx", "end_idx", "writer", "void_reason"), ("stream", "first_idx"), 2000),
    RunTable("metric_latest", ("metric", "last_idx", "latest"), ("metric",), 500),
    RunTable("metric_summaries", ("metric", "width", "window", "summary"), ("metric", "width", "window"), 500),
    RunTable("metric_chunks", ("metric", "first_idx", "count", "blocks", "stored_at"), ("metric", "first_idx"), 64),
    RunTable("metric_archive", ("metric", "first_idx", "count", "object", "frame_offset", "frame_length", "summaries"),
             ("metric", "first_idx"), 200),  # a row holds up to 64 summaries (~7 KB)
    # the message is the text search reads (SQLite's log_text, PostgreSQL's message column)
    RunTable("log_rows", ("idx", "record", "level", "message", "stored_at"), ("idx",), 1000),
    RunTable("log_archive", ("first_idx", "last_idx", "count", "object", "frame_offset", "frame_length"),
             ("first_idx",), 2000),
    RunTable("files", ("path", "sha256", "size", "entry"), ("path",), 1000),
)
TABLES_BY_NAME = {table.name: table for table in RUN_TABLES}


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run's row: its name, its fields (``..storage.records.RUN_COLUMNS``) and params as decoded JSON, and
    what the server keeps beside them. ``last_seen`` changes with every write to the run, so with the
    run id and the counts it tells whether two stores hold the same run (:meth:`same_as`)."""

    owner: str
    project: str
    name: str
    fields: dict[str, Any]
    params: dict[str, Any]
    run_id: str | None
    last_seen: float
    stream_count: int
    stored_rows: int

    @property
    def prefix(self) -> str:
        return f"{self.owner}/{self.project}/{self.name}"

    def same_as(self, other: RunMark) -> bool:
        return (self.run_id, self.last_seen, self.stream_count, self.stored_rows) == \
            (other.run_id, other.last_seen, other.stream_count, other.stored_rows)


@dataclass(frozen=True, slots=True)
class RunMark:
    """What a target says of a run it holds: enough to tell it from the source's (:meth:`RunRecord.same_as`)."""

    run_id: str | None
    last_seen: float
    stream_count: int
    stored_rows: int

    def describe(self) -> str:
        return f"run id {self.run_id}, {self.stored_rows:,} rows in {self.stream_count:,} streams, last written at {self.last_seen:.3f}"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as stored: the sha256 of its secret, never the secret (so the same keys work after)."""

    key_id: str
    owner: str
    secret_sha256: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A browser session (server/sessions.py): the sha256 of its token, its owner and expiry."""

    token_sha256: str
    owner: str
    key_id: str | None
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """An archive object's note (``archive_objects``): only ``live`` ones are copied."""

    sha256: str
    state: str
    noted_at: float


Row = tuple[Any, ...]
