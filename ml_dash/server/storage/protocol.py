"""The :class:`Storage` protocol: everything the server (its handlers, ``serve``, ``ml-dash keys``,
``ml-dash ui``'s index) asks of a metadata store, and the rows it answers with.

A backend is opened by URL (:func:`~.factory.open_storage`) and implements every method here; the
contract tests (tests/test_storage_contract.py) hold each backend to the obligations written below.
Common to all of them:

* Every method is a coroutine; a backend never blocks the event loop (SQLite runs on its own threads).
* A write is durable when it returns: a 2xx reply is sent only after it.
* A backend maps its driver's failures to :mod:`.errors`: :class:`~.errors.StorageFull` when space ran
  out (nothing of the operation stored), :class:`~.errors.StorageBusy` when another writer held the
  database too long; anything else it raises is a bug.
* Identities: a run is ``(owner, project, name)``; ``exp_id`` is the backend's id of it, as returned
  in :class:`ExperimentRow`, and is only passed back to the same backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from .records import IngestBatch
from .replies import Acknowledgement

if TYPE_CHECKING:
    from ..blobs.protocol import BlobStore
    from ..migrate.target import MigrationTarget
    from .archive import ArchiveTier


class ExperimentRow(TypedDict):
    """One run as stored. ``tags``, ``metadata``, ``params``: decoded JSON; times of the run itself
    (``created_at`` ...) as the client sent them (ISO text); ``last_seen``: unix seconds of the last
    write. ``streams`` (stream -> rows stored) only from :meth:`Storage.experiment`."""

    id: int
    owner: str
    project: str
    name: str
    prefix: str  # owner/project/name
    description: str | None
    tags: list[str]
    metadata: Any
    status: str
    status_reason: str | None
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    last_seen: float
    params: dict[str, Any]
    run_id: str | None
    hostname: str | None


class KeyRow(TypedDict):
    """An API key as listed: never its secret or the secret's hash. Times in unix seconds."""

    key_id: str
    created_at: float
    revoked_at: float | None


class OwnerRow(TypedDict):
    owner: str
    experiments: int  # runs stored under the owner


class ProjectRow(TypedDict):
    project: str
    experiments: int
    last_seen: float  # the latest write to any of its runs, unix seconds


#: A metric row as read: ``{"index", "data": {field: value}, "createdAt"}`` (ml_dash.format.wire).
MetricRow = dict[str, Any]
#: A log line as read: the record the client sent, with its index as ``sequenceNumber``.
LogRow = dict[str, Any]
#: A bucket of a downsampled series: ``{"first", "last", "count", "fields": {field: {"min", "max",
#: "first", "last"}}}`` (storage/buckets.py).
Bucket = dict[str, Any]
#: A file as listed: the client's entry (file metadata) with ``path``, ``checksum`` (sha256 hex) and
#: ``sizeBytes`` set by the server.
FileRow = dict[str, Any]
#: The orders of a run list (``list_experiments(order=)``, the API's ``order=``), as SQL: by name, or
#: the runs last written to first (a start page's "recent runs"); the id breaks ties, so pages never overlap.
LIST_ORDERS = {"name": "owner, project, name", "recent": "last_seen DESC, id DESC"}

#: Per run id: per metric: each field's latest value.
LatestMetrics = dict[int, dict[str, dict[str, Any]]]


class Storage(Protocol):
    """What the server needs from a metadata store (runs, their streams, files' records, keys,
    grants and browser sessions). Blob content is not here: see ``..blobs.protocol.BlobStore``."""

    # -- life ------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, and create the schema or migrate an older one to the current version (in one
        transaction: a migration that fails leaves the old schema). Called once, before any other
        method; several processes may open one database at once (the server and ``ml-dash keys``).
        Raises :class:`~.errors.StorageError` when the database is unusable (not a database, no
        permission), naming it."""
        ...

    async def close(self) -> None:
        """Finish the operations in flight, then release every connection and thread. Nothing is
        called after it."""
        ...

    async def ping(self) -> None:
        """Return once the store answers a query now, or raise (a :mod:`.errors` class or the driver's
        own): what ``/ready`` asks before a load balancer sends this instance requests."""
        ...

    # -- archive (archive.py) ----------------------------------------------------------------------
    def read_archive_from(self, blobs: BlobStore) -> None:
        """Read metric chunks archived to ``blobs`` from now on (the server calls it once it opened both).
        Until then, a read that meets an archived chunk raises :class:`~.errors.ArchiveUnreadable`."""
        ...

    def archive_tier(self) -> ArchiveTier:
        """This backend's tables for archival (``archive.archive_pass`` runs over them)."""
        ...

    def migration_target(self) -> MigrationTarget:
        """This backend as the target of ``ml-dash migrate`` (``..migrate.target`` states the obligations)."""
        ...

    # -- ingest ----------------------------------------------------------------------------------
    async def ingest(self, batch: IngestBatch, max_metrics: int | None = None) -> Acknowledgement:
        """Store ``batch`` atomically: the run's row (created on first sight; its run fields and params
        merged in unless :func:`~.document_order.newer` says the run holds newer ones: a late body's rows
        are stored, its documents not), every stream's new rows and voids, all in one transaction, or nothing.

        Exactly once: per (run, stream) rows ``0 .. stored-1`` are settled, each index by one writer.
        Each stream of the batch is decided by :func:`~.exactly_once.settle` (store the new rows,
        acknowledge a resend of the same writer's rows again, refuse a gap or another writer's
        indices). Ingest of one run is serialised: two concurrent calls for one run, from this
        process or from another server process on the same database, behave as if one ran after
        the other (a backend takes the run's or the database's write lock before it reads a count).

        Returns the :class:`~.replies.Acknowledgement`: the stored count, after the batch, of each stream
        of the batch (of every stream of a run of at most ``LIMITS.max_streams`` when the client did not
        ask for named counts, ``batch.named_reply`` False) and the run's totals (streams, rows), at a
        cost that follows the request, not the run. Raises
        :class:`~.errors.GapError` (with ``reply`` set to the same acknowledgement of the batch's streams),
        :class:`~.errors.UnnamedReplyError` (a client that did not ask for named counts, on a wider run),
        :class:`~.errors.ConflictError` (another writer's indices, or another ``run_id`` under the
        name), :class:`~.errors.StreamLimitError` (the batch would start more than ``max_metrics``
        metric streams in the run), :class:`~.errors.StorageFull`, :class:`~.errors.StorageBusy`;
        after any of them nothing of the batch is stored."""
        ...

    # -- files -----------------------------------------------------------------------------------
    async def put_file(self, owner: str, project: str, name: str, path: str, sha256: str, size: int,
                       entry: dict[str, Any]) -> None:
        """Record (atomically) that the run's file ``path`` has the content ``sha256`` (already in the
        blob store) of ``size`` bytes, with the client's ``entry``; the run is created when new. A
        later record of the same path replaces it."""
        ...

    async def files(self, exp_id: int) -> list[FileRow]:
        """The run's files, by path."""
        ...

    # -- keys, grants, sessions --------------------------------------------------------------------
    async def add_key(self, key_id: str, owner: str, secret_sha256: str) -> None:
        """Store a new key of ``owner``: its id and the sha256 of its secret (never the secret)."""
        ...

    async def key_owner(self, key_id: str, secret_sha256: str) -> str | None:
        """The owner of the key when it exists, is not revoked and its secret's hash matches (compared
        in constant time); else None. Called on every request with a key: a revocation counts from
        the next request on."""
        ...

    async def revoke_key(self, key_id: str) -> bool:
        """Refuse ``key_id`` from now on, and end the browser sessions opened with it, atomically.
        True when the key exists (revoked now or before), False when there is no such key."""
        ...

    async def keys(self, owner: str) -> list[KeyRow]:
        """``owner``'s keys, oldest first, revoked ones included."""
        ...

    async def grant(self, owner: str, member: str) -> None:
        """Let ``member`` read ``owner``'s runs (granting twice is granting once)."""
        ...

    async def can_read(self, reader: str, owner: str) -> bool:
        """Whether ``reader`` may read ``owner``'s runs: itself, or granted."""
        ...

    async def add_session(self, token_sha256: str, owner: str, expires_at: float, key_id: str | None) -> None:
        """A browser session (server/sessions.py) of ``owner`` until ``expires_at`` (unix seconds),
        opened with ``key_id`` (None: a development server's user name); revoking the key ends it.
        Expired sessions may be dropped on the way."""
        ...

    async def session_owner(self, token_sha256: str) -> str | None:
        """The owner of the session, unless it has expired or was dropped (then None)."""
        ...

    async def drop_session(self, token_sha256: str) -> None:
        """End the session (nothing when there is none)."""
        ...

    # -- reads -----------------------------------------------------------------------------------
    async def list_experiments(self, owner: str | None, project: str | None, status: str | None,
                               tag: str | None, limit: int, offset: int, name_prefix: str | None = None,
                               silent_since: float | None = None, order: str = "name") -> list[ExperimentRow]:
        """Runs filtered by owner, project, status, tag (one of its tags) and a plain prefix of the name
        (no wildcards), ordered by owner, project, name (``order="recent"``: the last written to first, see
        LIST_ORDERS); ``limit`` of them from ``offset``. With
        ``silent_since`` (unix seconds), a RUNNING run last seen before it counts as CRASHED for the
        status filter (as it is shown)."""
        ...

    async def owners(self, reader: str) -> list[OwnerRow]:
        """The owners ``reader`` may read (itself, and who granted it), by name, with run counts."""
        ...

    async def all_owners(self) -> list[OwnerRow]:
        """Every owner with runs, by name, with run counts (``ml-dash ui``, where anyone may read)."""
        ...

    async def projects(self, owner: str) -> list[ProjectRow]:
        """``owner``'s projects, by name, with run counts and latest activity."""
        ...

    async def experiment(self, owner: str, project: str, name: str) -> ExperimentRow | None:
        """One run's row, without its streams (a run may hold 100,000: :meth:`stream_page` reads them a
        page at a time), or None when there is none."""
        ...

    async def metric_rows(self, exp_id: int, metric: str, start: int, limit: int) -> tuple[list[MetricRow], int | None]:
        """(rows, next): up to ``limit`` stored rows of ``metric`` from index ``start``, in index order
        (indices of voids are absent), and at most a budget of field values in all (at least one row);
        ``next`` is the index a page cut by that budget goes on from, None when the page is full or
        the series ends. Reads what was committed; never waits for a write."""
        ...

    async def metric_chunks(self, exp_id: int, metric: str, start: int, end: int | None,
                            max_bytes: int) -> tuple[list[tuple[int, int, bytes]], int | None]:
        """(chunks, next): the stored rows of ``metric`` with indices in ``start:end`` (``end`` None: to the
        stored end) as ``(first index, rows, msgpack blocks)`` in index order, each chunk's blocks in the
        wire format's columnar shape (``chunks.py``), the first and last cut to the range; about
        ``max_bytes`` of blocks at most (at least one chunk); ``next`` is the index to go on from when that
        budget ended the call, None when the range is done. Chunks of both tiers (archived ones fetched as
        :meth:`metric_rows` fetches them), read in one snapshot. The columnar read
        (``.../metrics/{metric}/columns``); ``chunk_reads.chunk_range`` does it over a ``ChunkSource``."""
        ...

    async def stream_page(self, exp_id: int, after: str, limit: int, contains: str | None = None
                          ) -> tuple[dict[str, int], dict[str, dict[str, Any]], str | None]:
        """(stream -> stored rows, metric -> field -> latest value, next): up to ``limit`` of the run's
        streams named after ``after``, in name order, with the latest values of their metrics, and the name
        to ask the rest after (None at the end). With ``contains``, only metric streams whose metric name
        holds it (case-insensitive), examining at most ``pages.FILTER_SCAN`` streams a call (a short or
        empty page may still carry ``next``). Cost: the page, never the run's streams."""
        ...

    async def list_latest(self, exp_ids: list[int],
                          named: list[str]) -> dict[int, tuple[dict[str, dict[str, Any]], bool]]:
        """Per run of ``exp_ids`` (absent: no metrics): the latest value of each field of its first
        ``pages.LIST_LATEST_METRICS`` metrics by name and of the metrics in ``named``, at most
        ``pages.MAX_LIST_VALUES`` values a run, and whether any was left out. Key lookups and short
        ranges only: the cost of a run of 100,000 metrics is that of a run of a few."""
        ...

    async def log_rows(self, exp_id: int, start: int, limit: int, level: str | None, search: str | None = None,
                       tail: bool = False) -> tuple[list[LogRow], int | None]:
        """(lines, next): log lines from index ``start`` (with ``tail``: the last ``limit`` of them), of
        ``level`` only, and holding ``search`` in their message (case-insensitive, over the whole run,
        not a page); ``next`` as in :meth:`metric_rows` (a page is also bounded in bytes)."""
        ...

    async def metric_buckets(self, exp_id: int, metric: str, start: int, end: int | None, buckets: int,
                             width: int | None = None) -> tuple[int, list[Bucket]]:
        """(width, buckets): ``metric`` over indices ``start:end`` (``end`` None: to the stored end)
        downsampled into at most ``buckets`` buckets of ``width`` indices each (min, max, first, last
        per numeric field; no spike hidden), or, with ``width``, buckets of that many indices aligned
        to its multiples. Empty buckets are left out."""
        ...
