"""The :class:`BlobStore` protocol: content-addressed file content, streamed in and out.

A blob is named by the sha256 of its content (64 lowercase hex digits), so identical content is
stored once and a name never changes meaning. Every method is a coroutine that never blocks the event
loop, and nothing is ever whole in memory: content comes in as an async stream of pieces and goes out
as one. A backend raises the classes of :mod:`.errors` (no HTTP statuses: the routes map them; a
store it cannot reach or that refuses it just now is :class:`~.errors.BlobUnavailable`, answered 503
and retried, never :class:`~.errors.BlobNotFound`) and :class:`~..storage.errors.StorageFull` when it
runs out of space. Backends: ``fs.LocalBlobStore`` (``file:///DIR``), ``s3.S3BlobStore``
(``s3://BUCKET/PREFIX``), both by URL in blobs/factory.py; ``paths.PathBlobs`` serves ``ml-dash ui``'s
run files.
The contract tests (tests/test_storage_contract.py) hold each backend to what is written here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from typing import Protocol

#: A blob's bytes as they are read: an async generator, closed early with ``aclose()`` (which releases
#: its file or connection) by a reader that leaves before the end.
BlobReader = AsyncGenerator[bytes, None]


class BlobStore(Protocol):
    async def put(self, chunks: AsyncIterable[bytes], sha256: str, max_bytes: int) -> int:
        """Store the content streamed from ``chunks`` under ``sha256`` if it hashes to it; its size.

        Verified before it becomes visible: content whose hash differs (:class:`~.errors.DigestMismatch`)
        or that runs past ``max_bytes`` (:class:`~.errors.BlobTooLarge`, raised as soon as it does) is
        never stored, and leaves nothing behind. ``sha256`` is checked before a piece is read
        (:class:`~.errors.InvalidDigest`). Durable when it returns. Storing content already there
        succeeds and changes nothing (concurrent puts of one content included)."""
        ...

    async def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> BlobReader:
        """The bytes ``start`` up to ``end`` (exclusive; None or past the size: to the end) of a blob,
        as an async iterator of pieces of bounded size, read as it is consumed. Raises
        :class:`~.errors.BlobNotFound` (or :class:`~.errors.InvalidDigest`) here, not on the first
        piece, so a caller can answer before it starts a reply. Close the iterator (``aclose``) when
        leaving it early."""
        ...

    async def size(self, sha256: str) -> int:
        """The blob's size in bytes; :class:`~.errors.BlobNotFound` when there is none."""
        ...

    async def exists(self, sha256: str) -> bool:
        """Whether content is stored under ``sha256``."""
        ...

    async def delete(self, sha256: str) -> bool:
        """Remove the blob (readers that opened it before may finish); False when there was none. The
        caller makes sure no file record names it any more: blobs are shared by content."""
        ...

    async def ping(self) -> None:
        """Return once the store is reachable and writable now, or raise: what ``/ready`` asks."""
        ...

    async def close(self) -> None:
        """Release connections and threads; nothing is called after it."""
        ...
