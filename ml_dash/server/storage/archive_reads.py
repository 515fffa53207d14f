"""Reading metric chunks from both tiers at once: the database's rows and the archive's frames.

A backend's ``ChunkSource`` (``chunk_reads``) runs on a reader thread, synchronously, while the blob
store is asynchronous on the event loop. So a read is planned in three steps: the database says which
chunks cover the range (two lazy queries, one per table, merged in index order by :func:`merged`); an
archived one is fetched by byte range on the event loop (:class:`ArchiveFetcher`: one frame at a time,
bounded in bytes and in time, the reader thread waiting); then it is decoded as a database chunk is.
A reader that stops early fetches no further frame. A chunk is in one tier or the other, never both
(archive.py moves it in one transaction), so the merge never repeats or skips an index.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import zstandard

from ..blobs.errors import BlobError, BlobNotFound
from .archive_objects import decode_frame, unbundle_summaries
from .errors import ArchiveUnreadable, StorageUnavailable

if TYPE_CHECKING:
    from ..blobs.protocol import BlobStore

#: The longest a reader thread waits for one frame from the blob store (a slow S3 fails the read, it
#: never holds the thread for ever).
FETCH_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class ArchivedChunk:
    """An index row of the archive: rows ``first .. first + count - 1`` in ``object``'s bytes ``offset ..``."""

    first: int
    count: int
    object: str
    offset: int
    length: int


class ArchiveFetcher:
    """Fetches archived frames for a reader thread, through ``blobs`` on ``loop`` (where the request runs)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, blobs: BlobStore | None, what: str = "a metric") -> None:
        self.loop, self.blobs, self.what = loop, blobs, what

    def chunk(self, ref: ArchivedChunk) -> bytes:
        """The chunk's msgpack blocks; :class:`ArchiveUnreadable` (naming the rows and the object) when the
        object is missing or damaged, :class:`StorageUnavailable` (503, retried) when the store cannot be
        read just now: never other rows in their place."""
        rows = f"rows {ref.first}..{ref.first + ref.count - 1} of {self.what}"
        if self.blobs is None:
            raise ArchiveUnreadable(f"{rows} are archived in object {ref.object}, and this server has no blob store")
        fetching = asyncio.run_coroutine_threadsafe(self._fetch(self.blobs, ref), self.loop)
        try:
            frame = fetching.result(FETCH_WAIT_S)
        except TimeoutError as exc:  # the fetch is abandoned, not left running on the loop
            fetching.cancel()
            raise StorageUnavailable(f"{rows} are archived in the blob store, which did not answer within "
                                     f"{FETCH_WAIT_S:.0f} s") from exc
        except BlobNotFound:
            raise ArchiveUnreadable(f"{rows} are archived in object {ref.object}, which the blob store does not "
                                    "hold (restore it, or the database, from a backup)") from None
        except (BlobError, OSError) as exc:  # the store unreachable: a retry may succeed
            raise StorageUnavailable(f"{rows} are archived in the blob store, which could not be read just now "
                                     f"({type(exc).__name__})") from exc
        return self._decoded(ref, frame, rows)

    async def chunk_async(self, ref: ArchivedChunk) -> bytes:
        """As :meth:`chunk`, for a reader on the event loop itself (PostgreSQL's log pages)."""
        rows = f"rows {ref.first}..{ref.first + ref.count - 1} of {self.what}"
        if self.blobs is None:
            raise ArchiveUnreadable(f"{rows} are archived in object {ref.object}, and this server has no blob store")
        try:
            frame = await asyncio.wait_for(self._fetch(self.blobs, ref), FETCH_WAIT_S)
        except asyncio.TimeoutError as exc:
            raise StorageUnavailable(f"{rows} are archived in the blob store, which did not answer within "
                                     f"{FETCH_WAIT_S:.0f} s") from exc
        except BlobNotFound:
            raise ArchiveUnreadable(f"{rows} are archived in object {ref.object}, which the blob store does not "
                                    "hold (restore it, or the database, from a backup)") from None
        except (BlobError, OSError) as exc:
            raise StorageUnavailable(f"{rows} are archived in the blob store, which could not be read just now "
                                     f"({type(exc).__name__})") from exc
        return self._decoded(ref, frame, rows)

    @staticmethod
    def _decoded(ref: ArchivedChunk, frame: bytes, rows: str) -> bytes:
        if len(frame) != ref.length:
            raise ArchiveUnreadable(f"{rows}: object {ref.object} is shorter than its index says")
        try:
            return decode_frame(frame)
        except zstandard.ZstdError:
            raise ArchiveUnreadable(f"{rows}: object {ref.object} is damaged at offset {ref.offset}") from None

    @staticmethod
    async def _fetch(blobs: BlobStore, ref: ArchivedChunk) -> bytes:
        reader = await blobs.open_range(ref.object, ref.offset, ref.offset + ref.length)
        pieces, size = [], 0
        try:
            async for piece in reader:
                pieces.append(piece)
                size += len(piece)
                if size > ref.length:  # a store that ignores the range: never more than the frame in memory
                    break
        finally:
            await reader.aclose()
        return b"".join(pieces)[:ref.length]


def with_archived_summaries(stored: Iterable[tuple[int, bytes]], bundles: Iterable[bytes], first_window: int,
                            end_window: int) -> Iterator[tuple[int, bytes]]:
    """The finest summaries of windows ``first_window .. end_window-1`` from both tiers, in window order:
    ``stored`` (window, summary) rows of the database and the ``bundles`` of archived frames' index rows
    (in index order). A window is in one or the other: archival moves it in one transaction."""
    archived = ((window, summary) for bundle in bundles for window, summary in unbundle_summaries(bundle)
                if first_window <= window < end_window)
    return heapq.merge(stored, archived, key=lambda item: item[0])


def merged(stored: Iterable[tuple[int, int, bytes | ArchivedChunk]], archived: Iterable[ArchivedChunk],
           fetcher: ArchiveFetcher | None) -> Iterator[tuple[int, int, bytes]]:
    """The chunks of both tiers in index order, as ``ChunkSource.chunks`` yields them; an archived one is
    fetched only when the reader gets to it (through ``fetcher``; None: a reader with no blob store)."""
    refs: Iterable[tuple[int, int, bytes | ArchivedChunk]] = ((ref.first, ref.count, ref) for ref in archived)
    for first, count, held in heapq.merge(stored, refs, key=lambda chunk: chunk[0]):
        if isinstance(held, bytes):
            yield first, count, held
        elif fetcher is None:
            raise ArchiveUnreadable(f"rows {first}..{first + count - 1} are archived in object {held.object}, "
                                    "and this reader has no blob store")
        else:
            yield first, count, fetcher.chunk(held)
