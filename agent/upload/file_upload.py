"""Saved files of a run on their way to the server: streamed PUTs, marked sent only after a 2xx.

The server checks each file's sha256 and stores identical content once. A
file it refuses (a 4xx: too large, checksum mismatch) stays unsent and is
reported; the live upload does not offer that content again in this process,
and ``ml-dash sync`` tries again.

A file never holds back a run's metrics: in a background pass (``patient=False``) a file the server
cannot take now (503 or 507 with the server answering: its object store is away, say) gets one attempt
and waits out its ``Retry-After`` (at least :data:`FILE_RETRY_S`) before the next pass offers it again,
while the rows go on in every pass. The last pass of a run and ``ml-dash sync`` retry within their
deadline, as for rows.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_dash.format.cursor import UploadCursor
from ml_dash.format.jsonlines import dumps, read_json
from ml_dash.format.layout import FILES_DIR, FILES_METADATA

from ..deadline import Deadline
from .retry import STOPS, send_with_retries
from .transport import Transport

if TYPE_CHECKING:
    from .uploader import UploadReport

ENTRY_FIELDS = ("filename", "description", "tags", "contentType", "metadata")
#: The least a background pass waits before offering again a file the server could not take.
FILE_RETRY_S = 5.0
#: Answers that mean the server is there but cannot store a file now (its object store or disk).
STORE_AWAY = (503, 507)


class FileUpload:
    """The files part of one run's upload.

    Given what it uses, not the uploader that owns it (issue 15, no back-pointers): the run directory,
    the run's ``prefix`` on the server, the ``transport``, ``blocking`` (runs a file read or a cursor
    save off the event loop) and the request timeout; the retry wait comes with each pass.
    """

    def __init__(self, directory: Path, prefix: str, transport: Transport,
                 blocking: Callable[..., Awaitable[Any]], request_timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.prefix = prefix
        self.transport = transport
        self.blocking = blocking
        self.request_timeout_s = request_timeout_s
        self.clock = clock
        self.refused: set[tuple[str, str]] = set()  # (path, sha256) refused in this process
        self.waiting: dict[tuple[str, str], float] = {}  # (path, sha256) -> (clock) when a background pass tries again

    def pending(self, cursor: UploadCursor, refused_too: bool = False) -> list[tuple[str, str, Path, dict[str, Any]]]:
        """(path, sha256, local file, entry) of every saved file the server has not acknowledged (but
        those it refused in this process, unless ``refused_too``). Blocking."""
        files_root = self.directory / FILES_DIR
        document = read_json(files_root / FILES_METADATA)
        entries = document.get("files") if isinstance(document, dict) else None
        pending = []
        root = files_root.resolve()
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            path, sha256 = entry.get("path"), entry.get("checksum")
            if not isinstance(path, str) or not isinstance(sha256, str) or cursor.files.get(path) == sha256:
                continue
            if (path, sha256) in self.refused and not refused_too:
                continue
            local = (files_root / path).resolve()
            if root in local.parents and local.is_file():  # a tampered entry cannot point outside files/
                pending.append((path, sha256, local, entry))
        return pending

    async def upload(self, cursor: UploadCursor, deadline: Deadline, report: UploadReport, single_attempt: bool,
                     sleep: Callable[[float], Awaitable[Any]], patient: bool = True) -> None:
        """PUT every pending file, marking each sent only after a 2xx; ``sleep`` is the pass's retry wait.
        Not ``patient`` (a background pass): one attempt for a file the server cannot store now, which
        then waits (module docstring) while later passes send rows."""
        now = self.clock()
        for path, sha256, local, entry in await self.blocking(self.pending, cursor):
            if deadline.expired:
                report.out_of_time = True
                return
            if not patient and self.waiting.get((path, sha256), now) > now:
                report.files_waiting = report.files_waiting or "waiting to try again"
                continue
            headers = {"X-Content-SHA256": sha256, "Content-Type": "application/octet-stream",
                       "X-File-Entry": dumps({k: entry.get(k) for k in ENTRY_FIELDS}).decode()}

            async def put(timeout_s: float | None, path: str = path, local: Path = local,
                          headers: dict[str, str] = headers) -> Any:
                # a big file takes as long as the link needs: the request timeout bounds each wait,
                # a deadline that cuts transfers (the end of the run, sync --timeout) the whole
                return await self.transport.put_file(self.prefix, path, local, headers,
                                                     timeout_s or self.request_timeout_s, deadline.transfer_s())

            outcome = await send_with_retries(put, deadline, self.request_timeout_s, sleep, single_attempt,
                                              stop_on=None if patient else STORE_AWAY)
            report.requests += 1
            if not patient and outcome.status in STORE_AWAY:  # the server is there; its store is not, for now
                self.waiting[(path, sha256)] = self.clock() + max(outcome.retry_after_s or 0.0, FILE_RETRY_S)
                report.files_waiting = outcome.reason
                continue
            self.waiting.pop((path, sha256), None)
            if outcome.ok:
                cursor.files[path] = sha256
                await self.blocking(cursor.save)
                report.sent_files += 1
            elif outcome.status in STOPS:
                report.stopped, report.reason = STOPS[outcome.status], outcome.reason
                return
            elif not outcome.retryable:  # permanent for this content: reported, not marked sent
                self.refused.add((path, sha256))
                report.refused_files.append((path, outcome.reason))
            else:
                report.unreachable, report.reason = True, outcome.reason
                return
