"""Content-addressed blob storage: each distinct file is stored once, under its sha256.

Uploads stream to a temporary file while being hashed (never whole in
memory), are checked against the sha256 the client declared, and are renamed
into ``blobs/<aa>/<bb>/<sha256>``; an upload of content already stored only
deletes its temporary file. Interface: ``put_stream`` / ``open`` /
``path``; an S3-compatible store can implement the same later.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles

_SHA256 = re.compile(r"[0-9a-f]{64}")


class BlobError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LocalBlobStore:
    """Blobs in a directory tree on the server's disk."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise BlobError(400, f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put_stream(self, chunks: AsyncIterator[bytes], declared_sha256: str, max_bytes: int) -> int:
        """Store the streamed content if its sha256 matches ``declared_sha256``; return its size.

        Hashing, every write, the fsync and the rename run on threads (aiofiles for the writes), never
        on the event loop: a slow disk delays this upload, not the server's other requests.
        """
        target = self.path(declared_sha256)
        digest, size = hashlib.sha256(), 0
        fd, tmp_name = await asyncio.to_thread(tempfile.mkstemp, dir=self.root / "tmp")
        os.close(fd)
        try:
            async with aiofiles.open(tmp_name, "wb") as tmp:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise BlobError(413, f"file larger than {max_bytes} bytes")
                    await asyncio.to_thread(digest.update, chunk)  # hashlib lets go of the GIL meanwhile
                    await tmp.write(chunk)
                await tmp.flush()
                await asyncio.to_thread(os.fsync, tmp.fileno())
            if digest.hexdigest() != declared_sha256:
                raise BlobError(400, f"content sha256 {digest.hexdigest()} does not match the declared {declared_sha256}")
            await asyncio.to_thread(self._place, tmp_name, target)
            return size
        finally:
            await asyncio.to_thread(_remove_if_there, tmp_name)

    @staticmethod
    def _place(tmp_name: str, target: Path) -> None:
        if target.exists():
            return  # identical content is already stored
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_name, target)


def _remove_if_there(name: str) -> None:
    if os.path.exists(name):
        os.unlink(name)
