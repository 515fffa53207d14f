"""Server settings (the ``ml-dash server`` flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..format.wire import BodyLimits


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything :func:`ml_dash.server.create_app` needs."""

    data_dir: Path
    allow_user_name: bool = False  # development mode: trust an X-ML-Dash-User header
    body_limits: BodyLimits = field(default_factory=BodyLimits)
    max_events_per_request: int = 1_000_000
    crashed_after_s: float = 120.0  # a RUNNING run silent this long is shown as CRASHED
    max_file_bytes: int = 64 * 1024 * 1024 * 1024  # 64 GiB per uploaded file
    head_timeout_s: float = 10.0  # a request head must be complete this long after its first byte
    body_idle_timeout_s: float = 30.0  # the longest wait for the next piece of a request body
    # processes that decode ingest bodies (server/ingest/prepare.py); 0 decodes on the event loop's process
    ingest_workers: int = 2
    # What ingest may cost the server at once (server/http/admission.py, docs/server.md "What one request and one key may cost"):
    # request bodies held in memory (their bytes on the wire), held as they arrive and a step ahead; a
    # caller (a key) holds at most half of it
    body_memory_bytes: int = 64 * 1024 * 1024
    # a request that finds no room waits in a queue this long at most, for this long at most; then 503
    body_queue: int = 64
    body_wait_s: float = 5.0
    # request bodies (ingest and file uploads) one caller (a key's owner) may have under way at once; one
    # more gets 429 with Retry-After. An SDK run has one at a time: 64 runs of one user at once
    max_bodies_per_key: int = 64
    # an ingest body holding more than its first step of that memory arrives at least this fast on
    # average, with body_idle_timeout_s of slack (server/http/bodies.py Pace), or gets 408; 0: no bound
    body_min_bytes_per_s: int = 64 * 1024
    # memory an ingest worker may take beyond what it holds at start (Linux): a body that decodes to
    # more is a 413
    worker_memory_bytes: int = 192 * 1024 * 1024
    # metric streams one run may hold (the log is one more)
    max_metrics_per_run: int = 100_000
    keepalive_timeout_s: float = 75.0  # an idle connection between requests is closed after this
    # connections held at once (server/http/connections.py); None: what the process's descriptor limit
    # leaves room for, at most 4,096
    max_connections: int | None = None
    # Host header names answered (lower case, no port); None answers any. A server bound to loopback
    # answers only loopback names unless told otherwise, so a web page cannot reach it by DNS rebinding.
    allowed_hosts: frozenset[str] | None = None
    # ``ml-dash ui``: reads need no credentials and may read every owner; no route writes
    open_reads: bool = False
    read_only: bool = False
    # ``ml-dash ui``: every request but /health must carry this token (server/http/ui_token.py); None asks
    # for none. Kept out of repr: a config printed in a log must not carry it
    ui_token: str | None = field(default=None, repr=False)
    # where the metadata and the files' content live (storage/factory.py, blobs/factory.py): URLs, or
    # None for SQLite and a directory under data_dir. Kept out of repr: a database URL may hold a password
    db: str | None = field(default=None, repr=False)
    blobs: str | None = field(default=None, repr=False)
    # archival (storage/archive.py): metric chunks stored longer ago than this move to the blob store, a
    # bounded pass every archive_every_s; None: no archiving by this server (``ml-dash server`` says 30 days)
    archive_after_s: float | None = None
    archive_every_s: float = 600.0
    # the sha256 of the token ``/metrics`` asks for (routes/operations.py); None: no /metrics route
    metrics_token_sha256: str | None = field(default=None, repr=False)

    @property
    def ingest_slots(self) -> int:
        """Bodies decoded or being stored at once: one per worker, and two whose batches wait for the
        database while the workers decode the next ones."""
        return max(self.ingest_workers, 1) + 2

    @property
    def database(self) -> Path:
        return self.data_dir / "ml-dash.sqlite3"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def storage_url(self) -> str:
        """The metadata store to open (``open_storage``): ``db``, else the SQLite file under ``data_dir``."""
        return self.db if self.db is not None else str(self.database)

    @property
    def blob_url(self) -> str:
        """The blob store to open (``open_blobs``): ``blobs``, else the directory under ``data_dir``."""
        return self.blobs if self.blobs is not None else str(self.blob_dir)

