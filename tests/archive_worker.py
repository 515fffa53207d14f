"""A real archive pass in its own process, that freezes at a chosen step so that a test can kill -9 it there.

    python tests/archive_worker.py DB_URL BLOB_URL POINT NTH

runs archival of every chunk (``older_than`` 0, objects of :data:`OBJECT_BYTES`, so a pass writes many)
on the real storage and blob store, and the ``NTH`` time it reaches ``POINT`` prints ``at POINT`` and
sleeps (the test kills it then). Points: ``noted`` (an object noted, not yet stored), ``stored`` (an
object stored, its chunks not yet moved), ``committed`` (an object's chunks moved, the next not yet);
``log-stored`` and ``log-committed``: the same steps of an object of log lines.
Only the pause is added to the real steps (tests/test_archive.py).
"""

from __future__ import annotations

import asyncio
import sys
import time

from ml_dash.server.blobs.factory import open_blobs
from ml_dash.server.storage.archive import ArchivePolicy, ArchiveTier, ChunkKey, archive_all
from ml_dash.server.storage.archive_objects import Frame, StoredChunk
from ml_dash.server.storage.factory import open_storage
from ml_dash.server.storage.log_archive import Line, LogFrame, LogKey

OBJECT_BYTES = 64 * 1024
PAUSE_S = 120.0


class Pausing:
    """The storage's archive tier, freezing at the ``nth`` time ``point`` is reached."""

    def __init__(self, tier: ArchiveTier, point: str, nth: int) -> None:
        self.tier, self.point, self.left = tier, point, nth

    async def candidates(self, stored_before: float, limit: int) -> list[ChunkKey]:
        return await self.tier.candidates(stored_before, limit)

    async def stored_chunks(self, exp_id: int, keys: list[ChunkKey]) -> list[StoredChunk]:
        return await self.tier.stored_chunks(exp_id, keys)

    async def doom_orphans(self, noted_before: float, limit: int) -> list[str]:
        return await self.tier.doom_orphans(noted_before, limit)

    async def file_named(self, sha256: str) -> bool:
        return await self.tier.file_named(sha256)

    async def forget_object(self, sha256: str) -> None:
        await self.tier.forget_object(sha256)

    async def live_objects(self, limit: int) -> list[str]:
        return await self.tier.live_objects(limit)

    def _reached(self, point: str) -> None:
        if point == self.point:
            self.left -= 1
            if self.left == 0:
                print(f"at {point}", flush=True)
                time.sleep(PAUSE_S)  # the whole process stands still here until it is killed

    async def note_object(self, sha256: str, noted_at: float) -> None:
        await self.tier.note_object(sha256, noted_at)
        self._reached("noted")

    async def commit_object(self, sha256: str, exp_id: int, frames: list[Frame]) -> bool:
        self._reached("stored")
        moved = await self.tier.commit_object(sha256, exp_id, frames)
        self._reached("committed")
        return moved

    async def log_candidates(self, stored_before: float, limit: int) -> list[LogKey]:
        return await self.tier.log_candidates(stored_before, limit)

    async def stored_lines(self, exp_id: int, first: int, last: int) -> list[Line]:
        return await self.tier.stored_lines(exp_id, first, last)

    async def commit_log_object(self, sha256: str, exp_id: int, frames: list[LogFrame]) -> bool:
        self._reached("log-stored")
        moved = await self.tier.commit_log_object(sha256, exp_id, frames)
        self._reached("log-committed")
        return moved


async def main(db_url: str, blob_url: str, point: str, nth: int) -> None:
    storage = await open_storage(db_url)
    blobs = await open_blobs(blob_url)
    tier = Pausing(storage.archive_tier(), point, nth)
    await archive_all(tier, blobs, ArchivePolicy(0.0, object_bytes=OBJECT_BYTES, clock=lambda: time.time() + 1))
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
