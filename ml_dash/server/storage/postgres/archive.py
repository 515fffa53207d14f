"""PostgreSQL's tables for archival (``..archive``: what moves, when, and why in this order).

The same tables as SQLite's (sqlite/archive.py). Several instances may run passes at once: the
transaction that moves an object's chunks locks the object's note ``FOR UPDATE`` (so the garbage
collector's ``doomed`` and this commit take turns) and deletes the source chunks in one statement; a
concurrent archiver's delete of the same chunks waits for it, then finds them gone and rolls back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..archive import ChunkKey
from ..archive_objects import Frame, StoredChunk, bundle_summaries
from ..archive_reads import ArchivedChunk
from ..buckets import SUMMARY_WIDTHS
from ..log_archive import Line, LogFrame, LogKey

T = TypeVar("T")
#: ``fn(conn)`` in one transaction (retried after a deadlock), or on a pooled connection
Runner = Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]

#: The chunks of either tier, in index order, a batch at a time (reads.py): a stored chunk's bytes, or an
#: archived one's place.
BOTH_TIERS = """
SELECT first_idx, count, blocks, NULL::text, 0::bigint, 0::integer FROM metric_chunks
 WHERE exp_id = $1 AND metric = $2 AND first_idx >= $3 AND first_idx < $4
UNION ALL
SELECT first_idx, count, NULL::bytea, object, frame_offset, frame_length FROM metric_archive
 WHERE exp_id = $1 AND metric = $2 AND first_idx >= $3 AND first_idx < $4
ORDER BY first_idx LIMIT $5"""
#: The summary bundles of the archived frames starting in $3 < first_idx < $4 (..archive_objects).
SUMMARY_BUNDLES = """
SELECT summaries FROM metric_archive WHERE exp_id = $1 AND metric = $2 AND first_idx > $3 AND first_idx < $4
 AND summaries IS NOT NULL ORDER BY first_idx"""
#: The first index of the chunk (of either tier) holding $3, or of the last before it.
FLOOR = """
SELECT GREATEST(
 (SELECT MAX(first_idx) FROM metric_chunks WHERE exp_id = $1 AND metric = $2 AND first_idx <= $3),
 (SELECT MAX(first_idx) FROM metric_archive WHERE exp_id = $1 AND metric = $2 AND first_idx <= $3))"""


def chunk_of(row: Any) -> tuple[int, int, bytes | ArchivedChunk]:
    """A row of :data:`BOTH_TIERS` as ``archive_reads.merged`` takes it."""
    first, count, blocks, sha256, offset, length = row
    return (first, count, blocks) if blocks is not None else (first, count, ArchivedChunk(first, count, sha256, offset, length))


class PgArchive:
    """:class:`~..archive.ArchiveTier` over PostgreSQL: ``write`` runs ``fn(conn)`` in a transaction,
    ``read`` on a pooled connection."""

    def __init__(self, write: Runner, read: Runner) -> None:
        self._write, self._read = write, read

    async def candidates(self, stored_before: float, limit: int) -> list[ChunkKey]:
        rows = await self._read(lambda conn: conn.fetch(
            "SELECT exp_id, metric, first_idx, count, octet_length(blocks) FROM metric_chunks WHERE stored_at < $1 "
            "ORDER BY stored_at LIMIT $2", stored_before, limit))
        return [ChunkKey(*row) for row in rows]

    async def stored_chunks(self, exp_id: int, keys: list[ChunkKey]) -> list[StoredChunk]:
        rows = await self._read(lambda conn: conn.fetch(
            "SELECT c.metric, c.first_idx, c.count, c.blocks FROM metric_chunks c JOIN unnest($2::text[], $3::bigint[], "
            "$4::integer[]) AS k(metric, first_idx, count) ON c.metric = k.metric AND c.first_idx = k.first_idx "
            "AND c.count = k.count WHERE c.exp_id = $1 ORDER BY c.metric, c.first_idx", exp_id,
            [k.metric for k in keys], [k.first for k in keys], [k.count for k in keys]))
        return [StoredChunk(*row) for row in rows]

    async def note_object(self, sha256: str, noted_at: float) -> None:
        await self._write(lambda conn: conn.execute(
            "INSERT INTO archive_objects (sha256, state, noted_at) VALUES ($1, 'pending', $2) ON CONFLICT DO NOTHING",
            sha256, noted_at))

    async def commit_object(self, sha256: str, exp_id: int, frames: list[Frame]) -> bool:
        try:
            await self._write(lambda conn: _commit(conn, sha256, exp_id, frames))
        except _Moved:  # rolled back: nothing changed
            return False
        return True

    async def doom_orphans(self, noted_before: float, limit: int) -> list[str]:
        async def doom(conn: Any) -> list[str]:
            await conn.execute(
                "UPDATE archive_objects SET state = 'doomed' WHERE sha256 IN (SELECT sha256 FROM archive_objects o "
                "WHERE state = 'pending' AND noted_at < $1 AND NOT EXISTS (SELECT 1 FROM metric_archive a "
                "WHERE a.object = o.sha256) LIMIT $2 FOR UPDATE SKIP LOCKED)", noted_before, limit)
            return [row[0] for row in await conn.fetch("SELECT sha256 FROM archive_objects WHERE state = 'doomed'")]
        return await self._write(doom)

    async def file_named(self, sha256: str) -> bool:
        return bool(await self._read(lambda conn: conn.fetchval("SELECT true FROM files WHERE sha256 = $1 LIMIT 1",
                                                                 sha256)))

    async def forget_object(self, sha256: str) -> None:
        await self._write(lambda conn: conn.execute("DELETE FROM archive_objects WHERE sha256 = $1 AND state = 'doomed'",
                                                    sha256))

    async def log_candidates(self, stored_before: float, limit: int) -> list[LogKey]:
        rows = await self._read(lambda conn: conn.fetch(
            "SELECT exp_id, idx, octet_length(record) FROM log_rows WHERE stored_at < $1 ORDER BY stored_at LIMIT $2",
            stored_before, limit))
        return sorted((LogKey(*row) for row in rows), key=lambda k: (k.exp_id, k.idx))

    async def stored_lines(self, exp_id: int, first: int, last: int) -> list[Line]:
        rows = await self._read(lambda conn: conn.fetch(
            "SELECT idx, record, level, message FROM log_rows WHERE exp_id = $1 AND idx BETWEEN $2 AND $3 ORDER BY idx",
            exp_id, first, last))
        return [tuple(row) for row in rows]

    async def commit_log_object(self, sha256: str, exp_id: int, frames: list[LogFrame]) -> bool:
        try:
            await self._write(lambda conn: _commit_lines(conn, sha256, exp_id, frames))
        except _Moved:
            return False
        return True

    async def live_objects(self, limit: int) -> list[str]:
        rows = await self._read(lambda conn: conn.fetch("SELECT sha256 FROM archive_objects WHERE state = 'live' "
                                                        "ORDER BY sha256 LIMIT $1", limit))
        return [row[0] for row in rows]


class _Moved(Exception):
    """The object is doomed or a source chunk is gone: roll back."""


async def _commit(conn: Any, sha256: str, exp_id: int, frames: list[Frame]) -> None:
    state = await conn.fetchval("SELECT state FROM archive_objects WHERE sha256 = $1 FOR UPDATE", sha256)
    if state is None or state == "doomed":
        raise _Moved
    sources = [(f.metric, first, count) for f in frames for first, count in f.sources]
    deleted = await conn.fetchval(
        "WITH gone AS (DELETE FROM metric_chunks c USING unnest($2::text[], $3::bigint[], $4::integer[]) AS "
        "k(metric, first_idx, count) WHERE c.exp_id = $1 AND c.metric = k.metric AND c.first_idx = k.first_idx "
        "AND c.count = k.count RETURNING 1) SELECT count(*) FROM gone", exp_id,
        [m for m, _, _ in sources], [f for _, f, _ in sources], [c for _, _, c in sources])
    if deleted != len(sources):  # another archiver moved some first: this object moves nothing
        raise _Moved
    bundles = await _take_summaries(conn, exp_id, frames)
    await conn.execute(
        "INSERT INTO metric_archive (exp_id, metric, first_idx, count, object, frame_offset, frame_length, summaries) "
        "SELECT $1, metric, first_idx, count, $2, frame_offset, frame_length, summaries FROM unnest($3::text[], "
        "$4::bigint[], $5::integer[], $6::bigint[], $7::integer[], $8::bytea[]) "
        "AS f(metric, first_idx, count, frame_offset, frame_length, summaries)",
        exp_id, sha256, [f.metric for f in frames], [f.first for f in frames], [f.count for f in frames],
        [f.offset for f in frames], [f.length for f in frames], bundles)
    await conn.execute("UPDATE archive_objects SET state = 'live' WHERE sha256 = $1", sha256)


async def _take_summaries(conn: Any, exp_id: int, frames: list[Frame]) -> list[bytes | None]:
    """Each frame's finest summaries out of ``metric_summaries``, bundled for its index row."""
    windows = [(f.metric, range(*f.summarised_windows())) for f in frames]
    # every window named, joined on equality: a join on each frame's range of windows was planned as a
    # hash join on the metric alone, filtering frames x summaries (1.4 s per 500 frames, measured)
    taken = await conn.fetch(
        "DELETE FROM metric_summaries s USING unnest($3::text[], $4::bigint[]) AS w(metric, win) "
        "WHERE s.exp_id = $1 AND s.metric = w.metric AND s.width = $2 AND s.win = w.win "
        "RETURNING s.metric, s.win, s.summary",
        exp_id, SUMMARY_WIDTHS[0], [metric for metric, span in windows for _ in span],
        [window for _, span in windows for window in span])
    held = {(metric, window): summary for metric, window, summary in taken}
    return [bundle_summaries([(w, held[(metric, w)]) for w in span if (metric, w) in held]) for metric, span in windows]


async def _commit_lines(conn: Any, sha256: str, exp_id: int, frames: list[LogFrame]) -> None:
    state = await conn.fetchval("SELECT state FROM archive_objects WHERE sha256 = $1 FOR UPDATE", sha256)
    if state is None or state == "doomed":
        raise _Moved
    deleted = await conn.fetch(
        "WITH gone AS (DELETE FROM log_rows r USING unnest($2::bigint[], $3::bigint[]) AS f(first_idx, last_idx) "
        "WHERE r.exp_id = $1 AND r.idx BETWEEN f.first_idx AND f.last_idx RETURNING f.first_idx) "
        "SELECT first_idx, count(*) FROM gone GROUP BY first_idx", exp_id,
        [f.first for f in frames], [f.last for f in frames])
    if {row[0]: row[1] for row in deleted} != {f.first: f.count for f in frames}:  # another archiver moved some
        raise _Moved
    await conn.execute(
        "INSERT INTO log_archive (exp_id, first_idx, last_idx, count, object, frame_offset, frame_length) "
        "SELECT $1, first_idx, last_idx, count, $2, frame_offset, frame_length FROM unnest($3::bigint[], $4::bigint[], "
        "$5::integer[], $6::bigint[], $7::integer[]) AS f(first_idx, last_idx, count, frame_offset, frame_length)",
        exp_id, sha256, [f.first for f in frames], [f.last for f in frames], [f.count for f in frames],
        [f.offset for f in frames], [f.length for f in frames])
    await conn.execute("UPDATE archive_objects SET state = 'live' WHERE sha256 = $1", sha256)
