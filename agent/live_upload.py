"""Live upload of a run while it is being written (remote mode).

One task per run on the agent's loop: every ``interval_s`` it sends what the
local writer has put on disk since the last acknowledgement (see
uploader.py), and at least every ``heartbeat_s`` a request carrying the run's
documents, so the server can tell a live run from a crashed one. The
training loop never waits on it: start-up returns at once, an unreachable
server is one warning, and closing waits for the backlog only up to a
deadline; what is left stays on disk for ``ml-dash sync``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from .uploader import RunUploader, UploadReport

logger = logging.getLogger("ml_dash.agent")

PASS_DEADLINE_S = 30.0  # one pass gives up retrying after this long; the next pass tries again
AUTH_PROBE_S = 60.0  # after 401/403, try again this rarely (the key may be fixed; never spin)


class LiveUpload:
    """Runs :class:`RunUploader` passes in the background until :meth:`finish`."""

    def __init__(self, uploader: RunUploader, interval_s: float = 0.5, heartbeat_s: float = 20.0) -> None:
        self.uploader = uploader
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self._warned = False
        self._last_request = 0.0
        self._paused_until = 0.0
        self.last_report = UploadReport()

    def start(self) -> None:
        """Start the background task (on the agent's loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ml-dash-upload {self.uploader.prefix}")

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession()
        while not self._stop.is_set():
            await self._pass(PASS_DEADLINE_S)
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
            except asyncio.TimeoutError:
                pass

    async def _pass(self, deadline_s: float, force: bool = False) -> UploadReport:
        assert self._session is not None
        if not force and time.monotonic() < self._paused_until:
            return self.last_report
        due = force or time.monotonic() - self._last_request >= self.heartbeat_s
        if (not due and not self.uploader.has_pending() and not self.uploader.documents_changed()
                and not self.uploader.pending_files()):
            return self.last_report
        try:
            report = await self.uploader.upload(self._session, deadline_s)
        except Exception:  # never let an upload bug stop the agent; the data stays on disk
            logger.exception("ml-dash: uploading %s failed", self.uploader.prefix)
            return self.last_report
        self._last_request = time.monotonic()
        self.last_report = report
        if report.stopped == "auth":
            self._paused_until = self._last_request + AUTH_PROBE_S
        # rows written while the pass ran are pending too: warn only when the server is the reason
        if (report.gave_up or report.stopped) and not self._warned:
            self._warned = True
            logger.warning("ml-dash: cannot upload %s to %s yet (%s); logging continues locally and the "
                           "upload retries in the background", self.uploader.prefix, self.uploader.remote,
                           report.stopped or f"{report.pending_rows} rows waiting")
        return report

    async def finish(self, deadline_s: float) -> UploadReport:
        """Stop the background passes, then send what is left within ``deadline_s``."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=max(0.0, deadline_s))
            except asyncio.TimeoutError:
                self._task.cancel()
        started = time.monotonic()
        if self._session is None:
            self._session = aiohttp.ClientSession()
        report = await self._pass(max(0.0, deadline_s - (time.monotonic() - started)), force=True)
        await self._session.close()
        return report
