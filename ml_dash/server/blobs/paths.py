"""A read-only :class:`~.protocol.BlobStore` over files that already exist, each known by its sha256:
``ml-dash ui`` serves a run's files from the run directories themselves (local_index.py), through the
same file route as a server's blob store."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from pathlib import Path

from .errors import BlobNotFound, ReadOnlyBlobs
from .fs import check_digest, file_size, read_file
from .protocol import BlobReader


class PathBlobs:
    """Blobs read from the paths ``where`` gives (None: not known); nothing is ever written."""

    def __init__(self, where: Callable[[str], Path | None]) -> None:
        self._where = where

    def _path(self, sha256: str) -> Path:
        path = self._where(check_digest(sha256))
        if path is None:
            raise BlobNotFound(f"no content {sha256}")
        return path

    async def put(self, chunks: AsyncIterable[bytes], sha256: str, max_bytes: int) -> int:
        raise ReadOnlyBlobs("this store serves the files of local runs and takes none")

    async def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> BlobReader:
        path = self._path(sha256)
        size = await file_size(path, sha256)
        return read_file(path, sha256, start, size if end is None else min(end, size))

    async def size(self, sha256: str) -> int:
        return await file_size(self._path(sha256), sha256)

    async def exists(self, sha256: str) -> bool:
        try:
            await self.size(sha256)
        except BlobNotFound:
            return False
        return True

    async def delete(self, sha256: str) -> bool:
        raise ReadOnlyBlobs("this store serves the files of local runs and never deletes one")

    async def ping(self) -> None:
        """Always ready: the files are the run directories' own, read when asked."""

    async def close(self) -> None:
        """Nothing to release."""
