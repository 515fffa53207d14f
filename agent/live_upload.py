"""Live upload of a run while it is being written (remote mode).

One task per run on the agent's loop: every ``interval_s`` it sends what the
local writer has put on disk since the last acknowledgement (agent/uploader.py),
and at least every ``heartbeat_s`` a request carrying the run's documents, so
the server can tell a live run from a crashed one. The training loop never
waits on it.

States: ``new`` (the server has not answered yet), ``ok``, ``unreachable``
(since when), ``stopped`` (the server refused: a key, an owner, a conflicting
run, a request it will never take). A stopped upload tries again once every
``probe_s``, never more often. Ending the run: a healthy upload gets the
deadline to send its backlog; one whose server never answered, or stopped
answering, makes one last attempt and reports what is pending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from .deadline import Deadline
from .uploader import RunUploader, UploadReport

logger = logging.getLogger("ml_dash.agent")

PASS_DEADLINE_S = 30.0  # one pass gives up retrying after this long; the next pass tries again
PROBE_S = 60.0  # after the server refused, try again this rarely (the key may be fixed; never spin)


class LiveUpload:
    """Runs :class:`RunUploader` passes in the background until :meth:`finish`."""

    def __init__(self, uploader: RunUploader, interval_s: float = 0.5, heartbeat_s: float = 20.0,
                 probe_s: float = PROBE_S, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.uploader = uploader
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.probe_s = probe_s
        self.clock = clock
        self.wall_clock = wall_clock
        self.state = "new"
        self.unreachable_since: float | None = None  # wall time of the first failure in a row
        self.last_report = UploadReport()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._final = False  # the pass of finish() runs
        self._last_request: float | None = None
        self._paused_until: float | None = None
        self._warned: str | None = None
        uploader.sleep = self._interruptible(uploader.sleep)

    def _interruptible(self, sleep: Callable[[float], Awaitable[Any]]) -> Callable[[float], Awaitable[None]]:
        """A retry wait that a background pass cuts short when the run ends (the final pass's are not)."""

        async def wait(seconds: float) -> None:
            if self._final:
                await sleep(seconds)
                return
            sleeper = asyncio.ensure_future(sleep(seconds))
            stopper = asyncio.ensure_future(self._stop.wait())
            _, pending = await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()

        return wait

    def _background_stopping(self) -> bool:
        return self._stop.is_set() and not self._final

    def start(self) -> None:
        """Start the background task (on the agent's loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ml-dash-upload {self.uploader.prefix}")

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_pass()
            except Exception:  # never let an upload bug stop the agent; the data stays on disk
                logger.exception("ml-dash: uploading %s failed", self.uploader.prefix)
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
            except asyncio.TimeoutError:
                pass

    async def run_pass(self, deadline: Deadline | None = None, force: bool = False,
                       single_attempt: bool = False) -> UploadReport:
        """One pass, if one is due: something to send, a heartbeat owed, or ``force``."""
        now = self.clock()
        if not force and self._paused_until is not None and now < self._paused_until:
            return self.last_report
        heartbeat_due = self._last_request is None or now - self._last_request >= self.heartbeat_s
        if not force and not heartbeat_due and not await self.uploader.has_work():
            return self.last_report
        if deadline is None:  # a background pass: it ends early when the run ends
            deadline = Deadline(PASS_DEADLINE_S, self.clock, cancelled=self._background_stopping)
        report = await self.uploader.upload(deadline, single_attempt=single_attempt)
        self._last_request = self.clock()
        self.last_report = report
        self._note(report)
        return report

    def _note(self, report: UploadReport) -> None:
        """Follow the server's state; warn once per kind of trouble."""
        if report.stopped is not None:
            self.state = "stopped"
            self._paused_until = self.clock() + self.probe_s
            self._warn(report.stopped, "%s refused the upload of %s (%s); logging continues locally and "
                       "nothing is lost", self.uploader.remote, self.uploader.prefix, report.reason)
        elif report.unreachable:
            if self.state != "unreachable":
                self.unreachable_since = report.unreachable_since or self.wall_clock()
            self.state = "unreachable"
            self._warn("unreachable", "cannot upload %s to %s yet (%s); logging continues locally and the "
                       "upload retries in the background", self.uploader.prefix, self.uploader.remote, report.reason)
        elif report.requests:
            self.state, self.unreachable_since, self._paused_until = "ok", None, None

    def _warn(self, kind: str, message: str, *args: object) -> None:
        if self._warned != kind:
            self._warned = kind
            logger.warning("ml-dash: " + message, *args)

    async def finish(self, deadline: Deadline) -> UploadReport:
        """Stop the background passes, then send what is left: within ``deadline`` when the server is
        answering; one last attempt when it never did or stopped; nothing more when it refused."""
        self._stop.set()  # a background pass ends at its next wait (its request may still be in flight)
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=deadline.remaining())
            except asyncio.TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        self._final = True
        try:
            report = await self.run_pass(deadline, force=True, single_attempt=self.state != "ok")
        finally:
            await self.uploader.transport.close()
        return report
