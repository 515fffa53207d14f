"""The server's archiver: a background task that runs archival passes (storage/archive.py).

Every instance of a deployment may run it (``ml-dash server --archive-after``): passes of several
instances at once archive each chunk once. The first pass waits a random part of the interval, so
instances started together do not pass together. Stopping cancels a pass in flight, which loses
nothing (the pass's order is crash-safe; its object, if any, is collected later).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

from .blobs.protocol import BlobStore
from .config import ServerConfig
from .storage.archive import ArchivePolicy, PassReport, run_in_background
from .storage.protocol import Storage

#: How long stopping waits for a pass to notice before it is cancelled.
STOP_WAIT_S = 2.0


class Archiver:
    """Runs passes while the server runs, when ``config.archive_after_s`` is set."""

    def __init__(self, config: ServerConfig, storage: Storage, blobs: BlobStore,
                 on_pass: Callable[[PassReport | None], None] | None = None) -> None:
        self._config, self._storage, self._blobs, self._on_pass = config, storage, blobs, on_pass
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._config.archive_after_s is None:
            return
        self._task = asyncio.create_task(self._run(self._config.archive_after_s), name="ml-dash-archiver")

    async def _run(self, older_than_s: float) -> None:
        every = self._config.archive_every_s
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), random.uniform(0, min(every, 60.0)))
        await run_in_background(self._storage.archive_tier(), self._blobs, ArchivePolicy(older_than_s), every,
                                self._stop, self._on_pass)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT_S)
        except asyncio.TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
