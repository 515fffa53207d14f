"""Archival of log lines: old lines move from the database to the blob store, and reads never notice.

The same rules as metric chunks (archive.py: what moves by its age, the note / put / one-transaction
order that makes a ``kill -9`` at any moment lose and repeat nothing, two archivers at once, the
garbage collector), over log lines:

What moves
    Lines stored more than the policy's age ago (``log_rows.stored_at``, set at ingest), a pass's
    worth at a time (:data:`PASS_LINES`), oldest first, with their search text.

How it is packed (the same object format as archive_objects.py: MAGIC, then zstd frames)
    A frame holds up to :data:`FRAME_LINES` lines of one run that follow each other in the database
    (a void leaves a gap of indices, nothing else does): a msgpack array of ``[idx, record, level,
    message]``, the record as ingest stored it and the message as search reads it. The database keeps
    an index row per frame (``log_archive``: run, first and last index, line count, object, offset,
    length), so a read fetches only the frames its page reaches.

Reads (:func:`merged_page`)
    Lines of both tiers in index order (descending for ``tail``), the archived ones filtered as the
    database filters its own (level equal; search a case-insensitive substring of the message), then
    the same page budget. A run with no archived line reads as before, with one key lookup more.
    Case folding of archived lines is Python's (``str.casefold``): for ASCII the databases' own;
    for other scripts SQLite's LIKE folds less, so a search of an archived line may find more.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgpack
import zstandard

from .archive_objects import MAGIC, ZSTD_LEVEL
from .archive_reads import ArchivedChunk, ArchiveFetcher
from .pages import LogBudget

if TYPE_CHECKING:
    from ..blobs.protocol import BlobStore
    from .archive import ArchivePolicy, ArchiveTier, PassReport

#: Lines a frame holds at most: a frame a page reaches decodes in about a millisecond.
FRAME_LINES = 1024
#: Lines a pass considers at most (their keys in memory; their records one object at a time).
PASS_LINES = 65_536

#: A line as archived and read back: (index, record as msgpack, level, message).
Line = tuple[int, bytes, "str | None", str]


@dataclass(frozen=True, slots=True)
class LogKey:
    """A database log line of run ``exp_id`` and its record's size."""

    exp_id: int
    idx: int
    size: int


@dataclass(frozen=True, slots=True)
class LogFrame:
    """Lines ``first .. last`` (``count`` of them: a void leaves gaps) in an object's bytes ``offset ..``."""

    first: int
    last: int
    count: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class ArchivedLines:
    """An index row of ``log_archive``."""

    first: int
    last: int
    object: str
    offset: int
    length: int


class LogArchiveTier(Protocol):
    """A backend's log tables for archival; every method is one transaction (or one read)."""

    async def log_candidates(self, stored_before: float, limit: int) -> list[LogKey]:
        """Up to ``limit`` database lines stored before ``stored_before``, in (run, index) order."""
        ...

    async def stored_lines(self, exp_id: int, first: int, last: int) -> list[Line]:
        """The database lines of run ``exp_id`` with indices ``first .. last``, in index order."""
        ...

    async def commit_log_object(self, sha256: str, exp_id: int, frames: list[LogFrame]) -> bool:
        """In one transaction: unless the object is ``doomed``, delete each frame's lines (exactly
        ``count`` of them in ``first .. last``, with their search text), insert the index rows, mark the
        object ``live``. False, with nothing changed, when the object is doomed or lines are gone."""
        ...


def pack_frame(lines: list[Line]) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(
        msgpack.packb([list(line) for line in lines], use_bin_type=True))


def unpack_frame(frame: bytes) -> list[Line]:
    return [(idx, record, level, message) for idx, record, level, message in msgpack.unpackb(frame, raw=False)]


def build_log_object(lines: list[Line]) -> tuple[bytes, list[LogFrame]]:
    """The object holding ``lines`` (of one run, in index order), :data:`FRAME_LINES` a frame."""
    parts, frames, offset = [MAGIC], [], len(MAGIC)
    for at in range(0, len(lines), FRAME_LINES):
        group = lines[at:at + FRAME_LINES]
        frame = pack_frame(group)
        frames.append(LogFrame(group[0][0], group[-1][0], len(group), offset, len(frame)))
        parts.append(frame)
        offset += len(frame)
    return b"".join(parts), frames


async def archive_logs(tier: ArchiveTier, blobs: BlobStore, policy: ArchivePolicy, report: PassReport) -> bool:
    """Archive up to :data:`PASS_LINES` old lines (one pass's share); True when none older is left."""
    from .archive import _once

    keys = await tier.log_candidates(policy.clock() - policy.older_than_s, PASS_LINES)
    for exp_id, group in _object_groups(keys, policy.object_bytes):
        lines = await tier.stored_lines(exp_id, group[0].idx, group[-1].idx)
        if not lines:
            report.raced += len(group)
            continue
        data, frames = await asyncio.to_thread(build_log_object, lines)
        sha256 = hashlib.sha256(data).hexdigest()
        await tier.note_object(sha256, policy.clock())  # noted, put, then the lines move: as archive.py
        await blobs.put(_once(data), sha256, len(data))
        if not await tier.commit_log_object(sha256, exp_id, frames):
            report.raced += len(lines)
            continue
        report.log_lines += len(lines)
        report.db_bytes += sum(len(line[1]) + len(line[3]) for line in lines)
        report.objects += 1
        report.object_bytes += len(data)
    return len(keys) < PASS_LINES


def _object_groups(keys: list[LogKey], object_bytes: int) -> Iterator[tuple[int, list[LogKey]]]:
    """Runs of keys of one run, each under ``object_bytes`` of records (an object each)."""
    group: list[LogKey] = []
    size = 0
    for key in keys:
        if group and (key.exp_id != group[0].exp_id or size + key.size > object_bytes):
            yield group[0].exp_id, group
            group, size = [], 0
        group.append(key)
        size += key.size
    if group:
        yield group[0].exp_id, group


def matches(line: Line, start: int, level: str | None, search: str | None) -> bool:
    idx, _record, line_level, message = line
    return idx >= start and (level is None or line_level == level) and \
        (not search or search.casefold() in message.casefold())


def archived_lines(frames: Iterable[ArchivedLines], fetcher: ArchiveFetcher, start: int, level: str | None,
                   search: str | None, tail: bool) -> Iterator[tuple[int, bytes | None]]:
    """The archived lines that pass the filters, in index order (``frames`` given descending and each frame
    reversed for ``tail``). Before each frame, its bound ``(first, None)`` (``(last, None)`` for ``tail``):
    a merge reaches it, and so fetches the frame, only when the page needs the frame's lines."""
    for ref in frames:
        yield (ref.last if tail else ref.first), None
        lines = unpack_frame(fetcher.chunk(_chunk_of(ref)))
        for line in (reversed(lines) if tail else lines):
            if matches(line, start, level, search):
                yield line[0], line[1]


def _chunk_of(ref: ArchivedLines) -> ArchivedChunk:
    return ArchivedChunk(ref.first, ref.last - ref.first + 1, ref.object, ref.offset, ref.length)


def merged_page(stored: Iterable[tuple[int, bytes]], archived: Iterable[tuple[int, bytes | None]], limit: int,
                tail: bool, max_bytes: int) -> tuple[list[dict[str, Any]], int | None]:
    """A page of both tiers' lines (each already filtered and in read order), as the database alone pages."""
    budget = LogBudget(max_bytes, tail)
    order = (lambda line: -line[0]) if tail else (lambda line: line[0])
    taken = 0
    for idx, record in heapq.merge(stored, archived, key=order):
        if taken == limit:  # before a frame's bound too: the page is whole without that frame
            break
        if record is None:  # a frame's bound: its lines come next
            continue
        if not budget.take(idx, record):
            break
        taken += 1
    return budget.page()

async def archived_lines_async(frames: Iterable[ArchivedLines], fetcher: ArchiveFetcher, start: int,
                               level: str | None, search: str | None,
                               tail: bool) -> AsyncIterator[tuple[int, bytes | None]]:
    """As :func:`archived_lines`, for a reader on the event loop."""
    for ref in frames:
        yield (ref.last if tail else ref.first), None
        lines = unpack_frame(await fetcher.chunk_async(_chunk_of(ref)))
        for line in (reversed(lines) if tail else lines):
            if matches(line, start, level, search):
                yield line[0], line[1]


async def merged_page_async(stored: AsyncIterator[tuple[int, bytes]],
                            archived: AsyncIterator[tuple[int, bytes | None]], limit: int, tail: bool,
                            max_bytes: int) -> tuple[list[dict[str, Any]], int | None]:
    """As :func:`merged_page`, over two async iterators (each read only as far as the page needs)."""
    budget = LogBudget(max_bytes, tail)
    sources: tuple[AsyncIterator[tuple[int, bytes | None]], ...] = (stored, archived)
    heads: list[tuple[int, bytes | None] | None] = [await anext(stored, None), await anext(archived, None)]
    taken = 0
    while taken < limit:
        present = [(i, head) for i, head in enumerate(heads) if head is not None]
        if not present:
            break
        which, (idx, record) = (max if tail else min)(present, key=lambda item: item[1][0])
        if record is not None:
            if not budget.take(idx, record):
                break
            taken += 1
        heads[which] = await anext(sources[which], None)
    return budget.page()
