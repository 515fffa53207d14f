"""Archival (server/storage/archive.py): old metric chunks move to the blob store and every read answers
exactly what it answered before, on every storage backend with every blob store (the contract suite's
``storage_url`` x ``blob_url``: SQLite and PostgreSQL, a directory and S3); two archivers at once archive each chunk
once; a kill -9 of a pass at any step loses and repeats nothing, and the next pass finishes; a missing
object fails a read clearly, never with other rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ml_dash.format.wire import metric_rows
from ml_dash.server.blobs import BlobStore, open_blobs
from ml_dash.server.storage import Storage, open_storage
from ml_dash.server.storage.archive import (
    ORPHAN_GRACE_S,
    ArchivePolicy,
    ArchiveTier,
    ChunkKey,
    archive_all,
    collect_garbage,
    run_in_background,
)
from ml_dash.server.storage.archive_objects import Frame, StoredChunk, build_object
from ml_dash.server.storage.errors import ArchiveUnreadable, StorageUnavailable
from ml_dash.server.storage.log_archive import Line, LogFrame, LogKey

from .test_storage_contract import batch, exp_id, lines, rows
from .waiting import PATIENCE_S

pytestmark = pytest.mark.timeout(300)

LOG_BATCH, LOG_BATCHES = 400, 6  # log lines: 2,400, the first batches before a policy's edge
LEVELS = ("info", "error", "warning")
TOTAL = 15_000  # rows of "loss": nearly four windows of CHUNK_ROWS, stored in batches of many sizes
WIDE = 5_000  # rows of "wide" (3 fields)
WORKER = Path(__file__).with_name("archive_worker.py")


class Stores:
    """A storage and a blob store opened as a server opens them (archived chunks read through the blobs)."""

    def __init__(self, storage: Storage, blobs: BlobStore) -> None:
        self.storage, self.blobs = storage, blobs
        self.tier: ArchiveTier = storage.archive_tier()


def run_with(storage_url: str, blob_url: str, body: Callable[[Stores], Awaitable[None]]) -> None:
    async def main() -> None:
        storage = await open_storage(storage_url)
        blobs = await open_blobs(blob_url)
        storage.read_archive_from(blobs)
        try:
            await body(Stores(storage, blobs))
        finally:
            await blobs.close()
            await storage.close()

    asyncio.run(main())


async def ingest_run(storage: Storage, pause_after: int | None = None) -> float | None:
    """"loss" in batches of random sizes (chunks of many sizes, several per window) and "wide"; with
    ``pause_after``, the time between that batch and the next (a policy's edge between the two tiers)."""
    rng = random.Random(17)
    position, number, edge = 0, 0, None
    while position < TOTAL:
        size = min(TOTAL - position, rng.choice([1, 7, 300, 2000, 4096, 5000]))
        streams = {"metrics/loss": rows(position, size, tag=0.5)}
        if number == 0:
            streams["metrics/wide"] = rows(0, WIDE, fields=3)
        if number < LOG_BATCHES:  # log lines too, in batches of many sizes (frames of many sizes)
            said = [f"line {number * LOG_BATCH + k} {'Needle' if k % 13 == 0 else 'hay'}" for k in range(LOG_BATCH)]
            streams["logs"] = lines(number * LOG_BATCH, [(LEVELS[k % 3], said[k]) for k in range(LOG_BATCH)])
        await storage.ingest(batch(streams))
        position += size
        number += 1
        if number == pause_after:
            await asyncio.sleep(0.05)
            edge = time.time()
            await asyncio.sleep(0.05)
    return edge


async def reads(storage: Storage) -> dict[str, Any]:
    """Every kind of read of the run: pages anywhere, the whole series page by page, buckets of the whole
    series at several widths and of ranges, the stream counts (what a resumed upload goes by), and log
    pages anywhere, by level, searched, tails."""
    eid = await exp_id(storage)
    out: dict[str, Any] = {"streams": (await storage.stream_page(eid, "", 1000))}
    for start, limit, level, search, tail in ((0, 1000, None, None, False), (0, 5000, None, None, False),
                                              (390, 30, None, None, False), (1, 7, "error", None, False),
                                              (0, 100, None, "needle", False), (700, 50, "info", "NEEDLE", False),
                                              (0, 9, None, None, True), (0, 5, "warning", None, True),
                                              (0, 4, None, "line 1", True), (2399, 10, None, None, False)):
        out[f"logs {start}+{limit} {level} {search} {tail}"] = await storage.log_rows(eid, start, limit, level, search, tail)
    assert len(out["logs 0+5000 None None False"][0]) == LOG_BATCH * LOG_BATCHES
    for metric, total in (("loss", TOTAL), ("wide", WIDE)):
        for start, limit in ((0, 1000), (1, 5), (4090, 20), (4095, 3000), (total - 7, 100), (total // 2, 1000),
                             (12_345, 4096), (total, 10)):
            out[f"{metric} page {start}+{limit}"] = await storage.metric_rows(eid, metric, start, limit)
        every, start = [], 0
        for _ in range(100):  # bounded
            page, cut = await storage.metric_rows(eid, metric, start, 1000)
            every += page
            if cut is None and len(page) < 1000:
                break
            start = cut if cut is not None else page[-1]["index"] + 1
        assert [r["index"] for r in every] == list(range(total))
        out[f"{metric} all"] = every
        for start, end in ((0, None), (4090, 4110), (total - 7, None), (12_345, 20_000)):  # the columnar read's
            chunks, cut = await storage.metric_chunks(eid, metric, start, end, 1 << 30)
            assert cut is None
            out[f"{metric} chunks {start}:{end}"] = [r for f, _, b in chunks for r in metric_rows(f, msgpack.unpackb(b))]
        for start_b, end, wanted, width in ((0, None, 7, None), (0, None, 100, None), (0, None, 1000, None),
                                            (0, None, 10, 64), (0, None, 10, 1024), (333, 17_777, 50, None),
                                            (5, 60, 100, None), (1000, None, 1000, None), (4000, 4200, 1000, None)):
            out[f"{metric} buckets {start_b}:{end}/{wanted}/{width}"] = await storage.metric_buckets(
                eid, metric, start_b, end, wanted, width)
    return out


async def in_database(stores: Stores) -> list[ChunkKey]:
    return await stores.tier.candidates(time.time() + 3600, 10**6)


async def lines_in_database(stores: Stores) -> int:
    return len(await stores.tier.log_candidates(time.time() + 3600, 10**6))


def test_reads_are_identical_before_and_after_archiving_part_then_all(storage_url: str, blob_url: str) -> None:
    async def body(stores: Stores) -> None:
        edge = await ingest_run(stores.storage, pause_after=4)
        assert edge is not None
        before = await reads(stores.storage)
        held = await in_database(stores)
        # the chunks stored before the edge move; the later ones stay: reads cross the two tiers
        part = await archive_all(stores.tier, stores.blobs, ArchivePolicy(0.0, object_bytes=32 * 1024, clock=lambda: edge))
        assert 0 < part.chunks < len(held) and part.objects > 1 and part.rows < TOTAL + WIDE
        assert part.log_lines == 4 * LOG_BATCH  # the lines stored before the edge; the later ones stay
        assert len(await in_database(stores)) == len(held) - part.chunks
        assert await reads(stores.storage) == before
        rest = await archive_all(stores.tier, stores.blobs, ArchivePolicy(0.0, clock=lambda: time.time() + 1))
        assert part.rows + rest.rows == TOTAL + WIDE and await in_database(stores) == []
        assert part.log_lines + rest.log_lines == LOG_BATCH * LOG_BATCHES and await lines_in_database(stores) == 0
        assert await reads(stores.storage) == before
        # a resumed upload: the resend of archived rows is acknowledged with the same counts, stored once
        eid = await exp_id(stores.storage)
        ack = await stores.storage.ingest(batch({"metrics/loss": rows(0, 500, tag=0.5)}))
        assert ack.acked["metrics/loss"] == TOTAL and ack.run_rows == TOTAL + WIDE + LOG_BATCH * LOG_BATCHES
        assert await reads(stores.storage) == before
        # rows go on appending after the archived ones
        await stores.storage.ingest(batch({"metrics/loss": rows(TOTAL, 10, tag=0.5)}))
        page, _ = await stores.storage.metric_rows(eid, "loss", TOTAL - 5, 100)
        assert [r["index"] for r in page] == list(range(TOTAL - 5, TOTAL + 10))

    run_with(storage_url, blob_url, body)


#: Ranges whose 100 buckets are made of width-64 summaries alone (aligned to 64 at both ends).
ZOOMS = (("loss", 0, 12_800), ("loss", 4096, 13_696), ("wide", 0, 4480))


def test_archival_moves_the_finest_summaries_into_the_index_rows_and_zoomed_buckets_never_read_the_blobs(
        storage_url: str, blob_url: str) -> None:
    """The width-64 summaries were most of what archival left in the database (14-18% of the metric bytes
    before it, a row each): those of windows wholly archived move into their frame's index row, one row
    per 4,096 rows. Reads are the same, and the buckets of a zoomed chart still come from the database
    alone: with every archived object gone they answer as before (a page of those rows fails)."""
    async def body(stores: Stores) -> None:
        await ingest_run(stores.storage)
        before = await reads(stores.storage)
        eid = await exp_id(stores.storage)
        zoomed = [await stores.storage.metric_buckets(eid, metric, start, end, 100) for metric, start, end in ZOOMS]
        assert await finest_summaries(storage_url) == -(-TOTAL // 64) + -(-WIDE // 64)
        await archive_all(stores.tier, stores.blobs, ArchivePolicy(0.0, clock=lambda: time.time() + 1))
        assert await finest_summaries(storage_url) == 2  # the last window of each series, not a whole one
        assert await reads(stores.storage) == before
        for sha256 in await stores.tier.live_objects(1000):
            await stores.blobs.delete(sha256)
        assert [await stores.storage.metric_buckets(eid, metric, start, end, 100) for metric, start, end in ZOOMS] == zoomed
        with pytest.raises(ArchiveUnreadable):
            await stores.storage.metric_rows(eid, "loss", 0, 10)

    run_with(storage_url, blob_url, body)


async def finest_summaries(storage_url: str) -> int:
    """The width-64 summaries the database holds, counted in its own table."""
    sql = "SELECT count(*) FROM metric_summaries WHERE width = 64"
    if storage_url.startswith("sqlite://"):
        import sqlite3

        db = sqlite3.connect(storage_url.removeprefix("sqlite://"))
        try:
            return int(db.execute(sql).fetchone()[0])
        finally:
            db.close()
    import asyncpg

    conn = await asyncpg.connect(storage_url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


class Gate:
    """Holds each archiver after it read its chunks until both have: both pack the same chunks."""

    def __init__(self, tier: ArchiveTier, both_read: asyncio.Barrier) -> None:
        self.tier, self.both_read, self.waited = tier, both_read, False

    async def candidates(self, stored_before: float, limit: int) -> list[ChunkKey]:
        return await self.tier.candidates(stored_before, limit)

    async def stored_chunks(self, exp_id: int, keys: list[ChunkKey]) -> list[StoredChunk]:
        found = await self.tier.stored_chunks(exp_id, keys)
        if not self.waited:
            self.waited = True
            await asyncio.wait_for(self.both_read.wait(), 60)
        return found

    async def note_object(self, sha256: str, noted_at: float) -> None:
        await self.tier.note_object(sha256, noted_at)

    async def commit_object(self, sha256: str, exp_id: int, frames: list[Frame]) -> bool:
        return await self.tier.commit_object(sha256, exp_id, frames)

    async def doom_orphans(self, noted_before: float, limit: int) -> list[str]:
        return await self.tier.doom_orphans(noted_before, limit)

    async def file_named(self, sha256: str) -> bool:
        return await self.tier.file_named(sha256)

    async def forget_object(self, sha256: str) -> None:
        await self.tier.forget_object(sha256)

    async def live_objects(self, limit: int) -> list[str]:
        return await self.tier.live_objects(limit)

    async def log_candidates(self, stored_before: float, limit: int) -> list[LogKey]:
        return await self.tier.log_candidates(stored_before, limit)

    async def stored_lines(self, exp_id: int, first: int, last: int) -> list[Line]:
        return await self.tier.stored_lines(exp_id, first, last)

    async def commit_log_object(self, sha256: str, exp_id: int, frames: list[LogFrame]) -> bool:
        return await self.tier.commit_log_object(sha256, exp_id, frames)


def test_two_archivers_at_once_archive_each_chunk_once(storage_url: str, blob_url: str) -> None:
    async def body(stores: Stores) -> None:
        await ingest_run(stores.storage)
        before = await reads(stores.storage)
        held = len(await in_database(stores))
        other = await open_storage(storage_url)  # a second server instance (its own connections) on the database
        try:
            both_read = asyncio.Barrier(2)
            policy = ArchivePolicy(0.0, clock=lambda: time.time() + 1)
            one, two = await asyncio.gather(
                archive_all(Gate(stores.tier, both_read), stores.blobs, policy),
                archive_all(Gate(other.archive_tier(), both_read), stores.blobs, policy))
        finally:
            await other.close()
        assert one.chunks + two.chunks == held and one.rows + two.rows == TOTAL + WIDE
        assert one.log_lines + two.log_lines == LOG_BATCH * LOG_BATCHES and await lines_in_database(stores) == 0
        assert one.raced + two.raced >= min(one.chunks, two.chunks) and one.raced + two.raced > 0
        assert await in_database(stores) == []
        assert await reads(stores.storage) == before

    run_with(storage_url, blob_url, body)


#: The kill -9 trials run on the two deployments, each backend once: SQLite with a blob directory (the
#: embedded default) and PostgreSQL with S3. What a kill can leave behind is a storage's half (its
#: transaction) and a blob store's half (an object written or not), and each half is the backend's own;
#: how the halves pair is covered by the tests above, which run on every pair.
ON_EACH_BACKEND_ONCE = pytest.mark.parametrize(("storage_url", "blob_url"), [("sqlite", "file"), ("postgresql", "s3")],
                                               ids=["sqlite-file", "postgresql-s3"], indirect=True)


def kill_9_at(storage_url: str, blob_url: str, point: str, nth: int) -> None:
    """Start an archive pass in a worker process (tests/archive_worker.py), let it stand still the ``nth``
    time it reaches ``point``, and kill -9 it there."""
    worker = subprocess.Popen([sys.executable, str(WORKER), storage_url, blob_url, point, str(nth)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert worker.stdout is not None
        said = worker.stdout.readline()  # the worker stands still once it said where
        assert said.strip() == f"at {point}", said + (worker.stderr.read() if worker.poll() is not None else "")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)


@ON_EACH_BACKEND_ONCE
@pytest.mark.parametrize("point", ["noted", "stored", "committed"])
def test_a_kill_9_of_a_pass_at_any_step_loses_and_repeats_nothing(storage_url: str, blob_url: str,
                                                                  point: str) -> None:
    async def prepare(stores: Stores) -> None:
        await ingest_run(stores.storage)
        found["before"] = await reads(stores.storage)
        found["held"] = len(await in_database(stores))

    found: dict[str, Any] = {}
    run_with(storage_url, blob_url, prepare)
    kill_9_at(storage_url, blob_url, point, 3)

    async def check(stores: Stores) -> None:
        assert await reads(stores.storage) == found["before"]  # the killed pass changed no answer
        left = len(await in_database(stores))
        assert 0 < left < found["held"]  # some objects moved before the kill, not all
        rest = await archive_all(stores.tier, stores.blobs, ArchivePolicy(0.0, clock=lambda: time.time() + 1))
        assert rest.chunks == left and await in_database(stores) == []
        # the killed pass's object (noted, maybe stored, never committed) is collected; nothing else is
        assert await collect_garbage(stores.tier, stores.blobs, time.time()) == 0  # young: never collected
        later = time.time() + ORPHAN_GRACE_S + 60  # a collection past the grace period
        assert await collect_garbage(stores.tier, stores.blobs, later) == (1 if point == "stored" else 0)
        assert await collect_garbage(stores.tier, stores.blobs, later) == 0
        assert await reads(stores.storage) == found["before"]

    run_with(storage_url, blob_url, check)


@ON_EACH_BACKEND_ONCE
@pytest.mark.parametrize("point", ["log-stored", "log-committed"])
def test_a_kill_9_of_a_pass_archiving_log_lines_loses_and_repeats_nothing(storage_url: str, blob_url: str,
                                                                         point: str) -> None:
    async def prepare(stores: Stores) -> None:
        await ingest_run(stores.storage)
        found["before"] = await reads(stores.storage)

    found: dict[str, Any] = {}
    run_with(storage_url, blob_url, prepare)
    kill_9_at(storage_url, blob_url, point, 1)

    async def check(stores: Stores) -> None:
        assert await reads(stores.storage) == found["before"]  # the killed pass changed no answer
        left = await lines_in_database(stores)
        moved = LOG_BATCH * LOG_BATCHES - left
        assert 0 < left and (moved > 0) == (point == "log-committed")  # the first object's lines moved, or none
        rest = await archive_all(stores.tier, stores.blobs, ArchivePolicy(0.0, clock=lambda: time.time() + 1))
        assert rest.log_lines == left and await lines_in_database(stores) == 0
        later = time.time() + ORPHAN_GRACE_S + 60  # the killed pass's stored, never committed object is collected
        assert await collect_garbage(stores.tier, stores.blobs, later) == (1 if point == "log-stored" else 0)
        assert await reads(stores.storage) == found["before"]

    run_with(storage_url, blob_url, check)


def test_an_archived_chunks_missing_object_fails_the_read_clearly(storage_url: str, blob_url: str) -> None:
    async def body(stores: Stores) -> None:
        edge = await ingest_run(stores.storage, pause_after=2)
        assert edge is not None
        held = await in_database(stores)
        report = await archive_all(stores.tier, stores.blobs, ArchivePolicy(0.0, clock=lambda: edge))
        assert report.objects == 2 and report.chunks < len(held)  # one of metric chunks, one of log lines
        assert report.log_lines == 2 * LOG_BATCH
        eid = await exp_id(stores.storage)
        first, _ = await stores.storage.metric_rows(eid, "loss", 0, 10)
        assert [r["index"] for r in first] == list(range(10))
        objects = {str(sha) for sha in await _archived_objects(stores)}
        for sha in objects:
            assert await stores.blobs.delete(sha)
        with pytest.raises(ArchiveUnreadable) as refused:
            await stores.storage.metric_rows(eid, "loss", 0, 10)
        assert "does not hold" in str(refused.value) and any(sha in str(refused.value) for sha in objects)
        with pytest.raises(ArchiveUnreadable):
            await stores.storage.metric_buckets(eid, "loss", 0, 100, 10)
        page, _ = await stores.storage.metric_rows(eid, "loss", TOTAL - 10, 10)  # the database's rows still read
        assert [r["index"] for r in page] == list(range(TOTAL - 10, TOTAL))
        with pytest.raises(ArchiveUnreadable) as refused:  # so with log lines: never a page with lines missing
            await stores.storage.log_rows(eid, 0, 10, None)
        assert "the logs of run" in str(refused.value) and "does not hold" in str(refused.value)
        with pytest.raises(ArchiveUnreadable):
            await stores.storage.log_rows(eid, 0, 10, None, "needle")
        tail, _ = await stores.storage.log_rows(eid, 0, 5, None, tail=True)  # reached from the database alone
        assert [r["sequenceNumber"] for r in tail] == list(range(LOG_BATCH * LOG_BATCHES - 5, LOG_BATCH * LOG_BATCHES))

    run_with(storage_url, blob_url, body)


async def _archived_objects(stores: Stores) -> list[str]:
    return await stores.tier.live_objects(1000)


class Unreachable:
    """The blob store of the test behind a switch: while ``down``, every call fails as a lost
    connection does (the seam where a bucket cannot be made unreachable for real here)."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs, self.down, self.refused = blobs, True, 0

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise ConnectionRefusedError("the blob store is unreachable")

    async def put(self, chunks: Any, sha256: str, max_bytes: int) -> int:
        self._check()
        return await self.blobs.put(chunks, sha256, max_bytes)

    async def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> Any:
        self._check()
        return await self.blobs.open_range(sha256, start, end)

    async def size(self, sha256: str) -> int:
        self._check()
        return await self.blobs.size(sha256)

    async def exists(self, sha256: str) -> bool:
        self._check()
        return await self.blobs.exists(sha256)

    async def delete(self, sha256: str) -> bool:
        self._check()
        return await self.blobs.delete(sha256)

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        pass


async def until(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not await predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


def test_an_unreachable_blob_store_moves_nothing_and_the_background_archiver_waits_it_out(
        storage_url: str, blob_url: str) -> None:
    async def body(stores: Stores) -> None:
        edge = await ingest_run(stores.storage, pause_after=3)
        assert edge is not None
        before = await reads(stores.storage)
        held = len(await in_database(stores))
        flaky = Unreachable(stores.blobs)
        with pytest.raises(ConnectionRefusedError):
            await archive_all(stores.tier, flaky, ArchivePolicy(0.0, clock=lambda: edge))
        assert len(await in_database(stores)) == held and await reads(stores.storage) == before
        stores.storage.read_archive_from(flaky)
        flaky.down = False
        await archive_all(stores.tier, flaky, ArchivePolicy(0.0, clock=lambda: edge))  # a part archived
        flaky.down = True
        eid = await exp_id(stores.storage)
        with pytest.raises(StorageUnavailable):  # 503 with Retry-After: a read of archived rows waits it out
            await stores.storage.metric_rows(eid, "loss", 0, 10)
        page, _ = await stores.storage.metric_rows(eid, "loss", TOTAL - 10, 10)  # the database's rows read on
        assert len(page) == 10
        # the server's archiver: a failed pass is logged, and the next ones finish once the store is back
        stop = asyncio.Event()
        archiver = asyncio.create_task(run_in_background(
            stores.tier, flaky, ArchivePolicy(0.0, clock=lambda: time.time() + 1), 0.05, stop))
        refused = flaky.refused
        await until(lambda: _true(flaky.refused >= refused + 2), "two refused passes")
        assert not archiver.done()
        flaky.down = False
        await until(lambda: _empty(stores), "the archiver to move every chunk")
        stop.set()
        await asyncio.wait_for(archiver, PATIENCE_S)
        assert await reads(stores.storage) == before

    run_with(storage_url, blob_url, body)


async def _true(value: bool) -> bool:
    return value


async def _empty(stores: Stores) -> bool:
    return await in_database(stores) == []


class AlwaysBeaten(Gate):
    """An archiver whose every commit finds its chunks taken (as if another always won), counting its passes."""

    def __init__(self, tier: ArchiveTier) -> None:
        super().__init__(tier, asyncio.Barrier(1))
        self.passes = 0

    async def candidates(self, stored_before: float, limit: int) -> list[ChunkKey]:
        self.passes += 1
        return await self.tier.candidates(stored_before, limit)

    async def commit_object(self, sha256: str, exp_id: int, frames: list[Frame]) -> bool:
        return False

    async def commit_log_object(self, sha256: str, exp_id: int, frames: list[LogFrame]) -> bool:
        return False


def test_a_pass_that_moves_nothing_ends_the_run_of_passes(tmp_path: Path) -> None:
    async def body(stores: Stores) -> None:
        await ingest_run(stores.storage)
        beaten = AlwaysBeaten(stores.tier)
        report = await archive_all(beaten, stores.blobs, ArchivePolicy(0.0, max_chunks=4, clock=lambda: time.time() + 1))
        assert report.chunks == report.log_lines == 0 and report.raced > 0 and beaten.passes == 1  # not 100,000 passes

    run_with(f"sqlite://{tmp_path / 'db.sqlite3'}", f"file://{tmp_path / 'blobs'}", body)


def test_pages_read_while_a_pass_archives_are_always_whole(storage_url: str, tmp_path: Path) -> None:
    """Reads racing an archive pass's commits (objects of 8 KiB: a commit every few chunks) never lose
    or repeat a row: each read sees one state of both tiers."""
    async def body(stores: Stores) -> None:
        await ingest_run(stores.storage)
        eid = await exp_id(stores.storage)
        rng = random.Random(3)
        policy = ArchivePolicy(0.0, object_bytes=8 * 1024, clock=lambda: time.time() + 1)
        archiving = asyncio.create_task(archive_all(stores.tier, stores.blobs, policy))
        checked = 0
        while not archiving.done() or checked < 50:
            # starts just past chunk edges, where the chunk holding ``start`` is looked up separately
            start = rng.choice([rng.randrange(TOTAL), rng.randrange(0, TOTAL, 7) + 1, rng.randrange(TOTAL - 100)])
            page, _ = await stores.storage.metric_rows(eid, "loss", start, 100)
            assert [r["index"] for r in page] == list(range(start, min(start + 100, TOTAL)))
            checked += 1
            assert checked < 100_000
        assert (await archiving).chunks > 0

    run_with(storage_url, f"file://{tmp_path / 'blobs'}", body)


def test_a_page_read_across_an_archive_commit_on_sqlite_sees_one_state(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit of a pass lands between a SQLite read's first query (which chunk holds ``start``) and its
    next ones (the chunks of both tiers): the page is still whole. (The commit is made to land there by
    running it from inside that first query's function: the one interleaving a race cannot aim at.)"""
    import sqlite3

    from ml_dash.server.storage.sqlite import archive as sqlite_archive

    database = tmp_path / "db.sqlite3"

    async def body(stores: Stores) -> None:
        for start in range(0, 4000, 1000):  # four chunks in window 0, merged into one frame when archived
            await stores.storage.ingest(batch({"metrics/loss": rows(start, 1000, tag=0.5)}))
        eid = await exp_id(stores.storage)
        keys = await stores.tier.candidates(time.time() + 1, 100)
        data, frames = build_object(await stores.tier.stored_chunks(eid, keys))
        sha256 = hashlib.sha256(data).hexdigest()
        await stores.tier.note_object(sha256, time.time())
        await stores.blobs.put(_one(data), sha256, len(data))
        assert [(f.first, f.count) for f in frames] == [(0, 4000)]
        original, landed = sqlite_archive.floor, []

        def floor_then_commit(db: sqlite3.Connection, *args: Any) -> Any:
            found = original(db, *args)
            if not landed:  # another process's pass commits now
                other = sqlite3.connect(database, isolation_level=None)
                sqlite_archive._in_transaction(other, sqlite_archive._commit, sha256, eid, frames)
                other.close()
                landed.append(True)
            return found

        monkeypatch.setattr(sqlite_archive, "floor", floor_then_commit)
        page, _ = await stores.storage.metric_rows(eid, "loss", 2500, 10)
        assert landed and [r["index"] for r in page] == list(range(2500, 2510))
        assert await in_database(stores) == []

    run_with(f"sqlite://{database}", f"file://{tmp_path / 'blobs'}", body)


async def _one(data: bytes) -> Any:
    yield data
