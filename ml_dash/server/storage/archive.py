"""Archival: old metric chunks move from the database to the blob store, and reads never notice.

What moves
    Metric chunks (chunks.py) stored more than a policy's age ago (``ml-dash server --archive-after``,
    ``ml-dash archive --older-than``), by the time the database stored them (``stored_at``, set at
    ingest; chunks of a database older than that column count from its migration). Age alone decides:
    rows only ever append, a stored chunk is never rewritten, so even the last chunk of a stream still
    being written may move (the next batch becomes a new chunk). The summaries of the finest width (64
    indices) of the windows wholly inside a frame (``Frame.summarised_windows``; no later row can fall
    in them) move from their own rows into the frame's index row, compressed (archive_objects.py): a
    row each was most of what archival left behind (14% of a run's metric bytes on SQLite, 18% on
    PostgreSQL, ``benchmarks/archive.py``). Every summary stays in the database, as do latest values,
    stream counts and writers' ranges: buckets, a whole series' or a zoomed chart's, never wait for the
    blob store, and ingest's exactly-once rule never reads chunks.

How it is packed (archive_objects.py)
    The chunks of one run, a pass's worth at a time, become objects of about :data:`OBJECT_BYTES`
    (several MiB: one object per chunk would cost a request each, ``services.md``), each chunk a zstd
    frame, the chunks of one window that follow each other merged into one frame. The object is
    content-addressed (its sha256) in the blob store. The database keeps an index row per frame
    (``metric_archive``: run, metric, first index, row count, object, offset, length).

The order that makes it crash-safe (:func:`archive_pass`)
    1. note the object (``archive_objects``: its sha256, ``pending``, the time) and commit;
    2. store the object; durable when ``put`` returns;
    3. ONE transaction: check the object's note is not ``doomed``, delete the frames' source chunks (all
       of them, or roll back) and their finest summaries, insert the index rows (with those summaries),
       mark the object ``live``; commit.
    A kill -9 before 3 commits leaves the chunks where they were (the next pass archives them again) and
    at worst an unreferenced object; after it, the chunks are archived. Nothing is lost or repeated at
    any moment. Two archivers at once: the second's delete finds fewer chunks than it packed and rolls
    back, so each chunk is archived once (its object is then unreferenced).

Unreferenced objects (:func:`collect_garbage`)
    An object noted ``pending`` longer than :data:`ORPHAN_GRACE_S` ago that no index row names is an
    orphan: a transaction first marks it ``doomed`` (only if still pending and unreferenced), which makes
    any late commit for it roll back; then the blob is deleted (unless a file record names the same
    content, or it does not start with the archive's magic), then the note. A crash in between leaves a
    ``doomed`` note, finished by the next collection. A young object is never touched: a pass may be
    between its steps 2 and 3.

Reads (archive_reads.py)
    A backend's ``ChunkSource`` reads both tables and merges them in index order; archived frames are
    fetched by byte range through the blob store. Finest summaries come from both tables too, merged in
    window order. A missing or damaged object fails the read with
    :class:`~.errors.ArchiveUnreadable`, never with other rows.

A backend implements :class:`ArchiveTier` (its tables); this module holds the rest, for every backend.
Any server instance may run passes (``ml-dash server`` runs one every ``--archive-every``), and so may
``ml-dash archive``, at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .archive_objects import MAGIC, Frame, StoredChunk, build_object
from .log_archive import LogArchiveTier, archive_logs

if TYPE_CHECKING:
    from ..blobs.protocol import BlobStore

logger = logging.getLogger("ml_dash.server.archive")

#: An object is closed once its chunks' database bytes pass this (msgpack blocks compress about 1.5-3x:
#: objects of a few MiB, what S3 serves at full speed).
OBJECT_BYTES = 16 * 1024 * 1024
#: Chunks one batch of a pass considers (keys only in memory; their bytes an object at a time).
BATCH_CHUNKS = 4096
#: A pending object younger than this is never collected: no pass lasts near it.
ORPHAN_GRACE_S = 3600.0
#: Orphans one collection deletes at most.
GARBAGE_BATCH = 256


@dataclass(frozen=True, slots=True)
class ChunkKey:
    """A stored chunk of run ``exp_id`` (the backend's id) and its size in the database."""

    exp_id: int
    metric: str
    first: int
    count: int
    size: int


class ArchiveTier(LogArchiveTier, Protocol):
    """A backend's tables for archival (its log lines': log_archive.py); every method is one transaction
    (or one read)."""

    async def candidates(self, stored_before: float, limit: int) -> list[ChunkKey]:
        """Up to ``limit`` database chunks stored before ``stored_before`` (unix seconds), oldest first."""
        ...

    async def stored_chunks(self, exp_id: int, keys: list[ChunkKey]) -> list[StoredChunk]:
        """Those of ``keys`` (all of run ``exp_id``) still in the database, with their bytes, in
        (metric, first) order."""
        ...

    async def note_object(self, sha256: str, noted_at: float) -> None:
        """Record ``sha256`` as a ``pending`` object (kept as it is when already noted), committed."""
        ...

    async def commit_object(self, sha256: str, exp_id: int, frames: list[Frame]) -> bool:
        """In one transaction: unless the object is ``doomed``, delete every source chunk of ``frames``,
        insert their index rows and mark the object ``live``. False, with nothing changed, when the
        object is doomed or any source chunk is gone (another archiver moved it)."""
        ...

    async def doom_orphans(self, noted_before: float, limit: int) -> list[str]:
        """Mark ``doomed`` up to ``limit`` objects noted ``pending`` before ``noted_before`` that no index
        row names, and return every doomed object (those of an interrupted collection too)."""
        ...

    async def file_named(self, sha256: str) -> bool:
        """Whether a file record names content ``sha256`` (its blob is then never deleted)."""
        ...

    async def forget_object(self, sha256: str) -> None:
        """Drop a doomed object's note."""
        ...

    async def live_objects(self, limit: int) -> list[str]:
        """Up to ``limit`` objects that hold archived chunks, by name (what a backup of the blobs must hold)."""
        ...


@dataclass(slots=True)
class PassReport:
    """What a pass moved: database chunks archived, their rows, log lines archived, their database bytes,
    the objects that hold them (and their bytes), chunks (or lines) another archiver took first, and
    orphaned objects collected."""

    chunks: int = 0
    rows: int = 0
    log_lines: int = 0
    db_bytes: int = 0
    objects: int = 0
    object_bytes: int = 0
    raced: int = 0
    collected: int = 0
    seconds: float = 0.0
    complete: bool = True  # False: the pass stopped at its limit with more to move

    def add(self, other: PassReport) -> None:
        for name in ("chunks", "rows", "log_lines", "db_bytes", "objects", "object_bytes", "raced", "collected", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.complete = other.complete

    def line(self) -> str:
        return (f"archived {self.chunks:,} chunks ({self.rows:,} rows) and {self.log_lines:,} log lines "
                f"({self.db_bytes:,} bytes of the database) into {self.objects:,} objects ({self.object_bytes:,} bytes) in {self.seconds:.1f} s; "
                f"{self.raced:,} chunks left to another archiver; {self.collected:,} orphaned objects removed")


@dataclass(frozen=True, slots=True)
class ArchivePolicy:
    """Chunks stored more than ``older_than_s`` ago move; a pass handles at most ``max_chunks``."""

    older_than_s: float
    max_chunks: int = BATCH_CHUNKS
    object_bytes: int = OBJECT_BYTES
    clock: Callable[[], float] = field(default=time.time)


async def archive_pass(tier: ArchiveTier, blobs: BlobStore, policy: ArchivePolicy) -> PassReport:
    """One bounded pass: orphans collected, then up to ``policy.max_chunks`` old chunks archived, then up to
    ``log_archive.PASS_LINES`` old log lines."""
    started = time.monotonic()
    report = PassReport(collected=await collect_garbage(tier, blobs, policy.clock()))
    keys = await tier.candidates(policy.clock() - policy.older_than_s, policy.max_chunks)
    report.complete = len(keys) < policy.max_chunks
    by_run: dict[int, list[ChunkKey]] = {}
    for key in keys:
        by_run.setdefault(key.exp_id, []).append(key)
    for exp_id, run_keys in sorted(by_run.items()):
        run_keys.sort(key=lambda k: (k.metric, k.first))
        await _archive_groups(tier, blobs, exp_id, _object_groups(run_keys, policy.object_bytes), policy, report)
    logs_done = await archive_logs(tier, blobs, policy, report)
    report.complete = report.complete and logs_done
    report.seconds = time.monotonic() - started
    return report


async def archive_all(tier: ArchiveTier, blobs: BlobStore, policy: ArchivePolicy, max_passes: int = 100_000) -> PassReport:
    """Passes until every chunk older than the policy is archived (``ml-dash archive``)."""
    total = PassReport()
    for _ in range(max_passes):
        report = await archive_pass(tier, blobs, policy)
        total.add(report)
        if report.complete or not (report.chunks or report.log_lines):  # done, or stuck: never a busy loop
            break
    return total


def _object_groups(keys: list[ChunkKey], object_bytes: int) -> list[list[ChunkKey]]:
    groups: list[list[ChunkKey]] = [[]]
    size = 0
    for key in keys:
        if groups[-1] and size + key.size > object_bytes:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += key.size
    return [g for g in groups if g]


@dataclass(frozen=True, slots=True)
class _Packed:
    chunks: list[StoredChunk]
    data: bytes
    frames: list[Frame]
    sha256: str


async def _archive_groups(tier: ArchiveTier, blobs: BlobStore, exp_id: int, groups: list[list[ChunkKey]],
                          policy: ArchivePolicy, report: PassReport) -> None:
    """Each group's object, the next one read and packed while the one before is stored and committed (a
    pass on PostgreSQL + S3 spent half its time waiting on the put, measured): two objects in memory at
    most. Each object still goes through its three steps in order."""
    storing: asyncio.Task[None] | None = None
    try:
        for group in groups:
            packed = await _pack_group(tier, exp_id, group, report)
            if storing is not None:
                await storing
                storing = None
            if packed is not None:
                storing = asyncio.create_task(_store_object(tier, blobs, exp_id, packed, policy, report))
        if storing is not None:
            await storing
            storing = None
    finally:
        if storing is not None:  # packing failed: the object on its way finishes (or fails) first
            with contextlib.suppress(Exception):
                await storing


async def _pack_group(tier: ArchiveTier, exp_id: int, keys: list[ChunkKey], report: PassReport) -> _Packed | None:
    chunks = await tier.stored_chunks(exp_id, keys)
    report.raced += len(keys) - len(chunks)
    if not chunks:
        return None
    # compressing and hashing megabytes off the event loop (zstd and hashlib release the GIL)
    data, frames, sha256 = await asyncio.to_thread(_packed, chunks)
    return _Packed(chunks, data, frames, sha256)


async def _store_object(tier: ArchiveTier, blobs: BlobStore, exp_id: int, packed: _Packed, policy: ArchivePolicy,
                        report: PassReport) -> None:
    await tier.note_object(packed.sha256, policy.clock())  # 1. noted: collectable if what follows never commits
    await blobs.put(_once(packed.data), packed.sha256, len(packed.data))  # 2. durable
    if not await tier.commit_object(packed.sha256, exp_id, packed.frames):  # 3. the chunks move, or nothing does
        report.raced += len(packed.chunks)
        return
    report.chunks += len(packed.chunks)
    report.rows += sum(c.count for c in packed.chunks)
    report.db_bytes += sum(len(c.blocks) for c in packed.chunks)
    report.objects += 1
    report.object_bytes += len(packed.data)


def _packed(chunks: list[StoredChunk]) -> tuple[bytes, list[Frame], str]:
    data, frames = build_object(chunks)
    return data, frames, hashlib.sha256(data).hexdigest()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def collect_garbage(tier: ArchiveTier, blobs: BlobStore, now: float, grace_s: float = ORPHAN_GRACE_S) -> int:
    """Delete the objects of passes that never committed, noted over ``grace_s`` ago; how many."""
    removed = 0
    for sha256 in await tier.doom_orphans(now - grace_s, GARBAGE_BATCH):
        if not await tier.file_named(sha256) and await _is_archive_object(blobs, sha256):
            await blobs.delete(sha256)
            removed += 1
        await tier.forget_object(sha256)
    return removed


async def _is_archive_object(blobs: BlobStore, sha256: str) -> bool:
    """Whether the blob exists and starts with the archive's magic (never delete anything else)."""
    from ..blobs.errors import BlobNotFound

    try:
        reader = await blobs.open_range(sha256, 0, len(MAGIC))
    except BlobNotFound:
        return False
    head = b""
    try:
        async for piece in reader:
            head += piece
    finally:
        await reader.aclose()
    return head[:len(MAGIC)] == MAGIC


async def run_in_background(tier: ArchiveTier, blobs: BlobStore, policy: ArchivePolicy, every_s: float,
                            stop: asyncio.Event, on_pass: Callable[[PassReport | None], None] | None = None) -> None:
    """``ml-dash server``'s archiver: a bounded pass every ``every_s`` (at once again while a pass finds
    more than its bound), until ``stop``. A failed pass (the database or the bucket unreachable) is
    logged and tried again at the next one: ingest and reads never wait for it. ``on_pass`` is told
    each pass's report (None for a failed one)."""
    while not stop.is_set():
        delay = every_s
        try:
            report = await archive_pass(tier, blobs, policy)
            if on_pass is not None:
                on_pass(report)
            if report.chunks or report.log_lines or report.collected:
                logger.info("archive pass: %s", report.line())
            if not report.complete and (report.chunks or report.log_lines):  # more to move, and this pass moved some
                delay = 0.0
        except Exception as exc:  # noqa: BLE001 - the archiver must outlive any one failure
            if on_pass is not None:
                on_pass(None)
            logger.warning("archive pass failed (%s: %s); next try in %.0f s", type(exc).__name__, exc, every_s)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass
