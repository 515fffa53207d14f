"""Remote mode for one run: the start-up check against the server, the live upload, its end.

Start-up asks the server about the prefix (one GET, at most
``ML_DASH_START_TIMEOUT_S``; an unreachable server is one warning) and applies
the resume policy (resume.py). The upload itself runs on the agent
(agent/upload/live_upload.py). The end waits for it within the run's deadline and,
when rows are left, says how many, why, and the command that sends them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .._run.resume import Resume, Unreachable, decide
from ..agent import Agent, RunWriter
from ..agent.backlog import file_size, rows_on_disk
from ..agent.deadline import Deadline
from ..agent.settings import UploadSettings
from ..agent.upload.live_upload import LiveUpload
from ..agent.upload.pending import BATCH_BYTES, MEMORY_BYTES
from ..agent.upload.transport import HttpTransport
from ..agent.upload.uploader import RunUploader, UploadReport
from ..errors import MLDashError
from ..format.credentials import credential_headers
from ..format.cursor import PENDING, StreamCursor, UploadCursor
from ..format.layout import discover_streams, identity_key
from ..format.wire import stream_counts
from .reads import ServerReads
from .unsent import sync_command, unsent_message

logger = logging.getLogger("ml_dash")


class RemoteRun:
    """The remote side of one run started by this process."""

    def __init__(self, directory: Path, prefix: str, remote: str, credentials: tuple[str | None, str | None]) -> None:
        self.settings = UploadSettings.from_env()  # a bad value fails the start, with the variable named
        self.directory = directory
        self.prefix = prefix
        self.remote = remote
        self.credentials = credentials
        self.uploader: RunUploader | None = None
        self.live: LiveUpload | None = None
        self._writer: RunWriter | None = None
        self._last: dict[str, dict[str, int]] = {}
        self.index_floor: dict[str, int] = {}  # stream -> the first index new rows may take
        self.adopted: dict[str, Any] | None = None  # the server's run this directory continues, for experiment.json

    # -- start -----------------------------------------------------------------
    def reconcile_at_start(self, resume: Resume, previous: dict[str, Any], run_id: str) -> str:
        """Apply the resume policy against what the server holds; return the run id this directory writes."""
        server = self._lookup()
        decision = decide(resume, self.prefix, self.remote, self.directory, bool(previous), run_id, server)
        if decision.adopt_base is not None or decision.adopt_later:
            cursor = UploadCursor.load(self.directory, self.remote, self.prefix)
            if decision.adopt_base is not None:
                cursor.adopt_run(decision.run_id, decision.adopt_base)
                self.adopted = {"prefix": self.prefix, **cursor.adopt}
                logger.info("ml-dash: %s continues %s on %s after its %s", self.directory, self.prefix, self.remote,
                            ", ".join(f"{n} {s}" for s, n in decision.adopt_base.items()) or "(no rows)")
            else:
                cursor.adopt = PENDING
            cursor.save()
        elif previous:
            self.index_floor = self._rows_the_directory_lacks(server if isinstance(server, dict) else None)
        return decision.run_id

    def _rows_the_directory_lacks(self, server: dict[str, Any] | None) -> dict[str, int]:
        """Streams of which the server holds more of this directory's rows than its files do (an OS crash
        lost rows the server had acknowledged; a copy of the run directory continued), as stream -> the
        next index. New rows are numbered after them, never under them, and the cursor moves past the
        gap, so nothing is sent twice under one index."""
        cursor = UploadCursor.load(self.directory, self.remote, self.prefix)
        counts = stream_counts(server)
        floor: dict[str, int] = {}
        for name, path in discover_streams(self.directory):
            held = max(cursor.at(name).acked, counts.get(name, 0) - cursor.base(name))
            on_disk = rows_on_disk(path, identity_key(name))
            if held > on_disk:
                floor[name] = held
                cursor.streams[name] = StreamCursor(held, file_size(path))
        if floor:
            logger.warning("ml-dash: %s holds rows of %s that %s lacks (%s); new rows are numbered after them",
                           self.remote, self.prefix, self.directory,
                           ", ".join(f"{name} up to {n}" for name, n in floor.items()))
            cursor.save()
        return floor

    def _lookup(self) -> dict[str, Any] | None | Unreachable:
        timeout = self.settings.start_timeout_s
        if timeout <= 0:
            return Unreachable("the start-up lookup is off (ML_DASH_START_TIMEOUT_S=0)")
        try:
            return ServerReads(self.remote, self.prefix, *self.credentials, timeout_s=timeout).experiment()
        except MLDashError as exc:
            logger.warning("ml-dash: could not ask %s about %s at start (%s); the run starts anyway, logging "
                           "locally, and the upload tries again in the background", self.remote, self.prefix, exc)
            return Unreachable(str(exc))

    def start(self, agent: Agent, writer: RunWriter) -> None:
        """Start the background upload on the agent's loop (no network I/O here)."""
        transport = HttpTransport(self.remote, credential_headers(*self.credentials))
        # batches are read and encoded on the agent's upload thread, which keeps working at interpreter
        # exit; the upload's own memory (rows kept to send, batches being built) follows the buffer budget
        budget = agent.max_buffer_bytes
        uploader = self.uploader = RunUploader(self.directory, self.prefix, transport,
                                               batch_rows=self.settings.batch_rows,
                                               request_timeout_s=self.settings.request_timeout_s,
                                               executor=agent.upload_pool,
                                               memory_bytes=min(MEMORY_BYTES, budget // 2),
                                               batch_bytes=min(BATCH_BYTES, max(1 << 20, budget // 8)))
        live = self.live = LiveUpload(uploader)
        self._writer = writer
        writer.on_written = uploader.offer  # the memory fast path: no reading back

        async def start() -> None:
            await uploader.load()
            live.start()

        agent.call(start, 10.0)

    # -- stats -----------------------------------------------------------------
    def status(self) -> dict[str, dict[str, int]]:
        """Per stream: acknowledged, set aside, pending upload (on the agent's loop)."""
        if self.uploader is None or self._writer is None:
            return {}
        written = {name: stream.next_index for name, stream in self._writer.streams.items()}
        self._last = self.uploader.stream_status(written)
        return self._last

    def last_status(self) -> dict[str, dict[str, int]]:
        return self._last

    # -- end -------------------------------------------------------------------
    def finish(self, agent: Agent, deadline: Deadline) -> bool:
        """Wait for the upload within ``deadline``; say what is left, why, and how to send it."""
        live = self.live
        assert live is not None
        try:
            report = agent.call(lambda: live.finish(deadline), deadline.bound(3600) + 5.0)
        except TimeoutError:
            report = None
        except Exception:  # a bug in the last pass: the rows are on disk, and the run must still end
            logger.exception("ml-dash: the last upload of %s failed", self.prefix)
            report = None
        if self._writer is not None:
            async def final_status() -> None:
                self.status()

            try:
                agent.call(final_status, 5.0)
            except TimeoutError:
                pass
        if report is not None and report.complete:
            return True
        logger.warning("ml-dash: %s", self.unsent_message(report, live))
        return False

    def unsent_message(self, report: UploadReport | None, live: LiveUpload) -> str:
        command = sync_command(self.directory, self.remote, *self.credentials)
        return unsent_message(report, self.prefix, self.remote, self.directory, command, live.unreachable_since)
