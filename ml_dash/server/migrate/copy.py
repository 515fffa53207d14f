"""The migration itself: check the target, then copy keys, grants, sessions and every run, run by run.

The order, and why
    1. Check (nothing written yet): every run and key of the source that the target holds under the
       same name must be the same one (a run: its run id, last write and counts, :meth:`RunRecord.same_as`;
       a key: its owner and secret's hash). The first that is not stops the migration with
       :class:`MigrationConflict` naming it, before anything is copied.
    2. Keys, grants and unexpired browser sessions, a batch at a time (those already there are left).
    3. Each run not yet in the target: first the blobs its rows name (its files' content, its archive
       objects), each copied unless the target's store has it, durable when ``put`` returns; then ONE
       transaction of the target with the run's row and every row of every table (``records.RUN_TABLES``).
       A run is in the target whole or not at all, and its rows never name a blob the target lacks.

Resuming
    A ``kill -9`` at any moment leaves runs that are whole and, at most, blobs no row names yet (the same
    content is put again, harmlessly, by the rerun, which finds the whole runs the same and skips them).
    A second migration of the same source therefore copies nothing and says so.

Memory
    One batch of one table at a time (``records.RunTable.batch``), one blob piece at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from ..blobs.errors import BlobNotFound
from ..blobs.protocol import BlobStore
from .records import RUN_TABLES, RunRecord, RunTable
from .source import SQLiteSource
from .target import MigrationTarget, RunWriter


class MigrationError(Exception):
    """The migration stopped; what it copied before is whole, and a rerun goes on from there."""


class MigrationConflict(MigrationError):
    """The target holds other data under a name the source uses: nothing is copied."""


class MissingBlob(MigrationError):
    """The source's rows name a blob its store does not hold (a damaged deployment)."""


@dataclass(slots=True)
class MigrationReport:
    """What a migration copied and what it found already there."""

    runs_copied: int = 0
    runs_skipped: int = 0
    rows: int = 0
    streams: int = 0
    log_lines: int = 0
    files: int = 0
    archived_chunks: int = 0
    archived_log_frames: int = 0
    blobs_copied: int = 0
    blob_bytes: int = 0
    blobs_present: int = 0
    keys_copied: int = 0
    keys_skipped: int = 0
    grants_copied: int = 0
    sessions_copied: int = 0
    seconds: float = 0.0

    def copied_nothing(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self)
                       if f.name not in ("runs_skipped", "keys_skipped", "blobs_present", "seconds"))

    def lines(self) -> list[str]:
        """The summary the command prints."""
        head = ("nothing to copy: the target already holds everything of the source" if self.copied_nothing()
                else f"copied {self.runs_copied:,} runs ({self.rows:,} rows in {self.streams:,} streams, "
                     f"{self.log_lines:,} log lines, {self.files:,} files, {self.archived_chunks:,} archived metric chunks, "
                     f"{self.archived_log_frames:,} archived log frames)")
        return [head,
                f"runs: {self.runs_copied:,} copied, {self.runs_skipped:,} already in the target (skipped)",
                f"blobs: {self.blobs_copied:,} copied ({self.blob_bytes:,} bytes), {self.blobs_present:,} already there",
                (f"keys: {self.keys_copied:,} copied, {self.keys_skipped:,} already there; grants: "
                 f"{self.grants_copied:,} copied; browser sessions: {self.sessions_copied:,} copied"),
                f"in {self.seconds:.1f} s"]


async def migrate(source: SQLiteSource, source_blobs: BlobStore, target: MigrationTarget, target_blobs: BlobStore,
                  say: Callable[[str], None] = lambda line: None, clock: Callable[[], float] = time.time) -> MigrationReport:
    """Copy everything of ``source`` (and ``source_blobs``) the target lacks; ``say`` is told the progress."""
    started = time.monotonic()
    report = MigrationReport()
    total = await source.count_runs()
    say(f"checking {total:,} runs and the keys against the target")
    await _check(source, target)
    await _copy_access(source, target, report, clock())
    done = 0
    async for exp_id, run in source.runs():
        done += 1
        if await _already_there(target, run):
            report.runs_skipped += 1
            continue
        await _copy_run(source, source_blobs, target, target_blobs, exp_id, run, report)
        say(f"[{done:,}/{total:,}] copied {run.prefix}: {run.stored_rows:,} rows in {run.stream_count:,} streams")
    report.seconds = time.monotonic() - started
    return report


async def _check(source: SQLiteSource, target: MigrationTarget) -> None:
    async for batch in source.keys():
        for key in batch:
            held = await target.key(key.key_id)
            if held is not None and (held.owner, held.secret_sha256) != (key.owner, key.secret_sha256):
                raise MigrationConflict(f"the target holds another API key under the id {key.key_id} (of owner "
                                        f"{held.owner!r}; the source's is of {key.owner!r}); nothing was copied")
    async for _exp_id, run in source.runs():
        await _already_there(target, run)


async def _already_there(target: MigrationTarget, run: RunRecord) -> bool:
    """True when the target holds this very run; :class:`MigrationConflict` when it holds another under its name."""
    mark = await target.run_mark(run.owner, run.project, run.name)
    if mark is None:
        return False
    if run.same_as(mark):
        return True
    raise MigrationConflict(f"the target holds another run under {run.prefix} ({mark.describe()}; the source's: "
                            f"run id {run.run_id}, {run.stored_rows:,} rows in {run.stream_count:,} streams, last "
                            f"written at {run.last_seen:.3f}); nothing of it was copied")


async def _copy_access(source: SQLiteSource, target: MigrationTarget, report: MigrationReport, now: float) -> None:
    async for keys in source.keys():
        copied = await target.put_keys(keys)
        report.keys_copied += copied
        report.keys_skipped += len(keys) - copied
    async for grants in source.grants():
        report.grants_copied += await target.put_grants(grants)
    async for sessions in source.sessions(now):
        report.sessions_copied += await target.put_sessions(sessions)


async def _copy_run(source: SQLiteSource, source_blobs: BlobStore, target: MigrationTarget, target_blobs: BlobStore,
                    exp_id: int, run: RunRecord, report: MigrationReport) -> None:
    async with source.run_snapshot():
        async for names in source.blob_names(exp_id):  # the blobs first: durable before a row names them
            for sha256 in names:
                await _copy_blob(source_blobs, target_blobs, sha256, run, report)
        async with target.run_writer() as writer:
            new_id = await writer.create_run(run, exp_id)
            counts = {table.name: await _copy_table(source, writer, exp_id, new_id, table) for table in RUN_TABLES}
            await _copy_notes(source, writer, exp_id)
    report.runs_copied += 1
    report.rows += run.stored_rows
    report.streams += run.stream_count
    report.log_lines += counts["log_rows"]
    report.files += counts["files"]
    report.archived_chunks += counts["metric_archive"]
    report.archived_log_frames += counts["log_archive"]


async def _copy_table(source: SQLiteSource, writer: RunWriter, exp_id: int, new_id: int, table: RunTable) -> int:
    copied = 0
    async for rows in source.rows(exp_id, table):
        await writer.put_rows(new_id, table, rows)
        copied += len(rows)
    return copied


async def _copy_notes(source: SQLiteSource, writer: RunWriter, exp_id: int) -> None:
    """The notes of the run's archive objects (``live``), so the target's garbage collector keeps them."""
    async for names in source.blob_names(exp_id):
        objects = await source.objects(names)
        if objects:
            await writer.put_objects(objects)


async def _copy_blob(source_blobs: BlobStore, target_blobs: BlobStore, sha256: str, run: RunRecord,
                     report: MigrationReport) -> None:
    if await target_blobs.exists(sha256):
        report.blobs_present += 1
        return
    try:
        size = await source_blobs.size(sha256)
        reader = await source_blobs.open_range(sha256)
    except BlobNotFound:
        raise MissingBlob(f"{run.prefix} names the blob {sha256}, which the source's blob store does not hold "
                          "(restore it from a backup); the runs copied before it are whole in the target") from None
    try:
        await target_blobs.put(reader, sha256, size)
    finally:
        await reader.aclose()
    report.blobs_copied += 1
    report.blob_bytes += size
