"""Live upload of a run while it is being written (remote mode).

One task per run on the agent's loop: every ``interval_s`` it sends what the
local writer has put on disk since the last acknowledgement (agent/upload/uploader.py),
and at least every ``heartbeat_s`` a request carrying the run's documents, so
the server can tell a live run from a crashed one. The training loop never
waits on it.

States: ``new`` (the server has not answered yet), ``ok``, ``unreachable``
(since when), ``stopped`` (the server refused: a key, an owner, a conflicting
run, a request it will never take). A stopped upload tries again once every
``probe_s``, never more often. Ending the run: the background pass ends at its
next wait (at once when the server is not answering: its request is abandoned,
and a resend is stored once); then a healthy upload gets the deadline to send
its backlog, and one whose server never answered, or stopped answering, makes
one last attempt of at most :data:`LAST_ATTEMPT_S` and reports what is pending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..deadline import Deadline
from .uploader import RunUploader, UploadReport

logger = logging.getLogger("ml_dash.agent")

PASS_DEADLINE_S = 30.0  # one pass starts no request after this long; the next pass tries again
PROBE_S = 60.0  # after the server refused, try again this rarely (the key may be fixed; never spin)
LAST_ATTEMPT_S = 5.0  # the end of a run whose server is not answering: one try, this long at most


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
        self._last_request: float | None = None
        self._paused_until: float | None = None
        self._warned: str | None = None
        self._failures: set[str] = set()  # kinds of internal failure already logged

    def start(self) -> None:
        """Start the background task (on the agent's loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ml-dash-upload {self.uploader.prefix}")

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_pass(background=True)
            except Exception as exc:  # never let an upload bug stop the agent; the data stays on disk
                if type(exc).__name__ not in self._failures:
                    self._failures.add(type(exc).__name__)
                    logger.exception("ml-dash: uploading %s failed (the same failure again is not logged)",
                                     self.uploader.prefix)
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
            except asyncio.TimeoutError:
                pass

    async def _wait_unless_stopped(self, seconds: float) -> None:
        """A background pass's retry wait: cut short when the run ends."""
        sleeper = asyncio.ensure_future(self.uploader.sleep(seconds))
        stopper = asyncio.ensure_future(self._stop.wait())
        _, pending = await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    async def run_pass(self, deadline: Deadline | None = None, force: bool = False, single_attempt: bool = False,
                       background: bool = True) -> UploadReport:
        """One pass, if one is due: something to send, a heartbeat owed, or ``force``. A background pass
        ends at the first wait after the run ends; the final one (``background=False``) does not."""
        now = self.clock()
        if not force and self._paused_until is not None and now < self._paused_until:
            return self.last_report
        heartbeat_due = self._last_request is None or now - self._last_request >= self.heartbeat_s
        if not force and not heartbeat_due and not await self.uploader.has_work():
            return self.last_report
        if deadline is None:  # a transfer under way is not cut when the pass's time is up, only at the run's end
            deadline = Deadline(PASS_DEADLINE_S, self.clock, cancelled=self._stop.is_set if background else None,
                                cuts_transfers=False)
        report = await self.uploader.upload(deadline, single_attempt=single_attempt,
                                            sleep=self._wait_unless_stopped if background else None,
                                            background=background)
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
        if report.files_waiting is not None and report.requests:
            self._warn("files waiting", "%s cannot store the files of %s now (%s); they wait and are tried again, "
                       "while the metrics and logs go on", self.uploader.remote, self.uploader.prefix,
                       report.files_waiting)

    def _warn(self, kind: str, message: str, *args: object) -> None:
        if self._warned != kind:
            self._warned = kind
            logger.warning("ml-dash: " + message, *args)

    async def finish(self, deadline: Deadline) -> UploadReport:
        """Stop the background passes, then send what is left: within ``deadline`` when the server is
        answering; one last short attempt when it never did or stopped."""
        self._stop.set()
        task = self._task
        if task is not None:
            if self.state == "ok":  # its request is answered soon: let it finish, within the deadline
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout=deadline.remaining())
                except asyncio.TimeoutError:
                    task.cancel()
            else:  # its request may hang on a server that never answers: abandon it
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        healthy = self.state == "ok"
        last = deadline if healthy else deadline.sooner(LAST_ATTEMPT_S)
        try:
            return await self.run_pass(last, force=True, single_attempt=not healthy, background=False)
        finally:
            await self.uploader.transport.close()
