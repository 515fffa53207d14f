"""Uploads a run directory to an ml-dash server, exactly once, from an acknowledged cursor.

The local files are the record: each pass sends the complete lines past each
stream's cursor (agent/upload/batches.py) with the run's documents, and moves the
cursor (ml_dash/format/cursor.py) only when the server has acknowledged. Every reply
carries the server's counts of the streams it was sent (ml_dash/format/wire.py,
"Replies"), and they win: a stream whose server holds less than the cursor
says (a server that lost its data) is sent again from there. A stream a reply
does not name is left as it is; when the run's stored rows (``run_rows``) are
fewer than the cursor's, the uploader asks for every count once and rewinds
the streams the server lacks.

One request per run is in flight at a time; while it is, the next batch is
read, encoded and compressed on a worker thread. Statuses are handled as the
table in agent/upload/retry.py says; every wait is bounded by the pass's deadline.
Until the server has stored a batch, and while it is failing, rows are not
kept in memory and each request is a small probe (PROBE_ROWS).

A stream the server refuses to start (a 4xx naming it in ``streams``: its run holds as many metrics
as the server allows) is held back: its rows stay on disk, pending, the other streams go on, and it
is offered again after :data:`HOLD_BACK_S`, so a refusal costs one request a minute, never a loop.

Nothing here blocks the agent's loop: files are read, cursors saved and
backlogs measured on the executor, and nothing reads the backlog whole
(agent/backlog.py). The transport, the clock and the sleep are injected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ml_dash.format.cursor import StreamCursor, UploadCursor
from ml_dash.format.layout import discover_streams, identity_key, stream_path
from ml_dash.format.vocabulary import utc_iso
from ml_dash.format.wire import Acknowledged, acknowledged, stream_counts

from ..backlog import file_size, offset_of_index, rows_on_disk
from ..deadline import Deadline
from ..settings import UPLOAD_BATCH_ROWS
from .batches import PROBE_ROWS, Batch, BatchBuilder
from .file_upload import FileUpload
from .pending import BATCH_BYTES, MEMORY_BYTES, MemoryChunks, Void
from .rejects import set_aside, set_aside_counts
from .retry import STOPS, Outcome, StopReason, send_with_retries
from .transport import Transport

logger = logging.getLogger("ml_dash.agent")

#: A pass ends after this many requests whatever happens (a 10,000,000-row run takes 611 requests of
#: 16,384 rows; this bound is for a server that keeps answering without the pass getting anywhere).
MAX_REQUESTS_PER_PASS = 1 << 16
#: The same rows sent this many times in a row without progress (each answer asked for them again):
#: the upload stops and says so, instead of looping.
MAX_SAME_BATCH = 3
#: A stream the server refused to start is offered again after this long (the operator may have raised
#: the server's limit).
HOLD_BACK_S = 60.0
#: The server's reason for refusing a row, as the upload cursor keeps it until the row's void is acknowledged.
REFUSED_REASON_CHARS = 1000


class NextStep(Enum):
    """What a pass does after one batch's final outcome (:meth:`RunUploader._dispatch`)."""

    CONTINUE = "continue"  # go on after this batch: the one built while it was in flight is still right
    REBUILD = "rebuild"  # build the next batch again from the cursor (rewound, held back, set aside, halved)
    STOP = "stop"  # end the pass: the report says why


@dataclass(slots=True)
class UploadReport:
    """What one upload pass did, and why it stopped early if it did."""

    sent_rows: int = 0
    set_aside_rows: int = 0
    pending_rows: int = 0
    sent_files: int = 0
    pending_files: int = 0
    refused_files: list[tuple[str, str]] = field(default_factory=list)  # (path, the server's reason)
    requests: int = 0
    stopped: StopReason | None = None  # why no retry helps
    reason: str | None = None  # the server's or the network's words for ``stopped`` or ``unreachable``
    unreachable: bool = False  # the deadline passed while requests were failing
    out_of_time: bool = False  # the deadline passed between successful requests
    conflict: dict[str, Any] | None = None  # the server's account of the other run
    refused_documents: str | None = None  # the server refused the run fields or params (the rows went without)
    unreachable_since: float | None = None  # wall time of the first failure of the current outage
    server_has_more: dict[str, tuple[int, int]] = field(default_factory=dict)  # stream -> (server, this directory)
    held_back: dict[str, str] = field(default_factory=dict)  # stream -> why the server refused to start it
    held_back_rows: int = 0  # of pending_rows, those of the held-back streams
    stream_limit: int | None = None  # the server's limit of metric streams a run, where a refusal named it
    files_waiting: str | None = None  # files the server could not store now wait for a later pass (its words)

    @property
    def complete(self) -> bool:
        return not (self.pending_rows or self.pending_files or self.stopped or self.unreachable or self.out_of_time
                    or self.refused_documents)


class RunUploader:
    """Sends one run directory's unacknowledged data to one server (as ``prefix``)."""

    def __init__(self, directory: Path, prefix: str, transport: Transport, *, batch_rows: int = UPLOAD_BATCH_ROWS,
                 request_timeout_s: float = 30.0, executor: Executor | None = None,
                 memory_bytes: int = MEMORY_BYTES, batch_bytes: int = BATCH_BYTES,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.transport = transport
        self.remote = transport.remote
        self.max_rows = batch_rows
        self.request_timeout_s = request_timeout_s
        self.executor = executor
        self.clock = clock
        self.sleep = sleep
        # the live fast path (agent's loop only); off until the server has answered once, so a
        # run that starts with the server down keeps nothing in memory and sends small probes
        self.memory = MemoryChunks(memory_bytes, suspended=True)
        self.builder = BatchBuilder(self.directory, self.memory, executor, batch_bytes)
        self.files = FileUpload(self.directory, prefix, transport, self.blocking, request_timeout_s, clock)
        self.cursor: UploadCursor | None = None
        self.set_aside: dict[str, int] = {}  # stream -> rows set aside for this server and prefix
        self.failing_since: float | None = None  # wall time of the first failed request in a row
        self.pass_sleep = sleep  # the current pass's retry wait
        self.pass_deadline: Deadline | None = None  # and its deadline and attempts, for the requests between batches
        self.pass_single_attempt = False
        self.counted_more = False  # every count was asked for once because the server held more than the cursor
        self.held_back: dict[str, str] = {}  # streams the server refused to start, and its words
        self.held_back_until = 0.0  # (clock) when they are offered again
        self.stream_limit: int | None = None  # the metric streams a run may hold, as the server's refusal said

    # -- the agent's side -------------------------------------------------------
    def offer(self, stream: str, start: int, fields: list[dict[str, Any]], created_at: str, end_offset: int) -> None:
        """Called by the agent after writing metric rows: keep them to send without reading back."""
        self.memory.offer(stream, start, fields, created_at, end_offset)

    async def blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking call (file reads, cursor saves) on the executor, off the agent's loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def load(self) -> UploadCursor:
        if self.cursor is None:
            self.cursor = await self.blocking(UploadCursor.load, self.directory, self.remote, self.prefix)
            await self.blocking(self._check_offsets, self.cursor)
            await self._count_set_aside()
            await self.blocking(self.builder.identity_of, self.cursor)  # reads experiment.json once
            self.builder.stamp_above(self.cursor.documents.get("docs_rev"))
            # rows refused by an earlier process whose voids it did not see acknowledged: voids first
            self.cursor.refused = {stream: refused for stream, refused in self.cursor.refused.items()
                                   if refused[0] >= self.cursor.at(stream).acked}
            for stream, (index, reason, status) in self.cursor.refused.items():
                self.builder.refused[stream] = (index, Void("rejected", reason, 0, 0, status))
        return self.cursor

    def _check_offsets(self, cursor: UploadCursor) -> None:
        """Each saved offset must be where its acknowledged count says (a bisection per stream, not a
        scan): an offset inside a line would set a good row aside as damaged, one past rows on disk would
        skip them. A wrong one is recomputed. Blocking."""
        for name, at in list(cursor.streams.items()):
            path = stream_path(self.directory, name)
            expected = offset_of_index(path, identity_key(name), at.acked)
            if expected != at.offset:
                logger.info("ml-dash: the upload cursor of %s %s pointed at byte %d, not %d: corrected",
                            self.prefix, name, at.offset, expected)
                cursor.streams[name] = StreamCursor(at.acked, expected)

    async def _count_set_aside(self) -> None:
        """The rows set aside for this server and prefix, from their records (one per range)."""
        counts = await self.blocking(set_aside_counts, self.directory, self.remote, self.prefix)
        self.set_aside = {stream: sum(reasons.values()) for stream, reasons in counts.items()}

    async def has_work(self) -> bool:
        """Whether anything is waiting: rows past a cursor (a stat per stream), changed params, files."""
        cursor = await self.load()

        def check() -> bool:
            if cursor.adoption_pending:
                return True
            for name, path in discover_streams(self.directory):
                if name not in self.builder.held_back and file_size(path) > cursor.at(name).offset:
                    return True
            documents, _ = self.builder.documents(cursor.documents.get("params"))
            return "params" in documents or bool(self.files.pending(cursor))

        return bool(await self.blocking(check))

    # -- one pass -----------------------------------------------------------------
    async def upload(self, deadline: Deadline, progress: Callable[[int], None] | None = None,
                     single_attempt: bool = False,
                     sleep: Callable[[float], Awaitable[Any]] | None = None, background: bool = False) -> UploadReport:
        """Send everything pending now; stop early when the server refuses, or when ``deadline`` passes.
        ``progress`` is called with the rows sent so far after each acknowledged batch;
        ``single_attempt``: one try per request, no retries (the end of a run whose server is away);
        ``sleep``: the retry wait for this pass (default: the uploader's); ``background``: a pass of a
        live run, in which a file the server cannot store now waits for a later pass instead of
        holding back the next rows (file_upload.py)."""
        report = UploadReport()
        self.pass_sleep = sleep or self.sleep
        self.pass_deadline, self.pass_single_attempt = deadline, single_attempt
        self.builder.without_documents = False  # documents refused in an earlier pass are tried again
        if self.held_back and self.clock() >= self.held_back_until:  # streams refused a while ago: once more
            self.held_back.clear()
            self.builder.held_back.clear()
        cursor = await self.load()
        if cursor.adoption_pending and not await self._adopt(cursor, deadline, report, single_attempt):
            await self._measure(report)
            return report
        batch = await self._next({}, cursor.documents.get("params"))
        following: asyncio.Future[Batch] | None = None
        same = 0
        last_shape: tuple = ()
        try:
            for requests in range(MAX_REQUESTS_PER_PASS):
                if requests and not batch.streams and "params" not in batch.documents:
                    break
                if requests and deadline.expired:
                    report.out_of_time = True
                    break
                if batch.streams and not self.memory.suspended:  # build the next one while this one is in flight
                    following = asyncio.ensure_future(self._next(batch.positions_after(), batch.params_version))
                outcome = await self._send(batch, deadline, single_attempt)
                report.requests += 1
                action = await self._dispatch(batch, outcome, report)
                if progress is not None and outcome.ok:
                    progress(report.sent_rows)
                shape = tuple((s.name, s.start, s.count) for s in batch.streams)
                rebuilt = action is NextStep.REBUILD
                same = same + 1 if rebuilt and shape == last_shape else int(rebuilt)
                last_shape = shape
                if same >= MAX_SAME_BATCH:
                    report.stopped = StopReason.STUCK
                    report.reason = f"the server answered {outcome.reason} {same} times to the same rows"
                    break
                if action is NextStep.STOP or (action is NextStep.CONTINUE and not batch.streams):
                    break
                if following is not None:
                    prepared, following = await following, None
                    if action is NextStep.CONTINUE:  # it starts where this batch ended: still the right next batch
                        batch = prepared
                        continue
                batch = await self._next({}, cursor.documents.get("params"))
        finally:
            if following is not None:  # its thread runs to the end anyway; wait, then drop it
                await asyncio.gather(following, return_exceptions=True)
        if report.stopped is None and not report.unreachable:
            await self.files.upload(cursor, deadline, report, single_attempt, self.pass_sleep, patient=not background)
        report.held_back, report.stream_limit = dict(self.held_back), self.stream_limit if self.held_back else None
        await self._measure(report)
        return report

    async def _next(self, positions: dict[str, StreamCursor], sent_params: Any) -> Batch:
        assert self.cursor is not None
        budget = min(self.max_rows, PROBE_ROWS) if self.memory.suspended else self.max_rows
        return await self.builder.next(self.cursor, positions, sent_params, budget)

    async def _send(self, batch: Batch, deadline: Deadline, single_attempt: bool) -> Outcome:
        async def attempt(timeout_s: float | None) -> Outcome:
            outcome = await self.transport.post_events(self.prefix, batch.payload, timeout_s or self.request_timeout_s,
                                                       deadline.transfer_s(), batch.encoding)
            if outcome.retryable or outcome.status in STOPS:
                self.memory.suspend()  # the backlog goes to disk; the next batches are small probes
            if outcome.retryable and self.failing_since is None:
                self.failing_since = time.time()
            return outcome

        return await send_with_retries(attempt, deadline, self.request_timeout_s, self.pass_sleep, single_attempt)

    async def _dispatch(self, batch: Batch, outcome: Outcome, report: UploadReport) -> NextStep:
        """Act on one final outcome; say what the pass does next."""
        body = outcome.body or {}
        status = outcome.status
        if outcome.ok and not isinstance(body.get("acked"), dict):  # not an ml-dash server's answer
            report.stopped = StopReason.INVALID
            report.reason = f"HTTP {status} without an acknowledgement (is {self.remote} an ml-dash server?)"
            return NextStep.STOP
        if status < 0:
            report.stopped, report.reason = StopReason.INVALID, outcome.reason
            return NextStep.STOP
        if outcome.ok:
            self.memory.resume()
            self.failing_since = None
            whole = await self._advance(batch, acknowledged(body), report)
            if report.stopped or report.unreachable:
                return NextStep.STOP
            return NextStep.CONTINUE if whole else NextStep.REBUILD
        if status == 409 and isinstance(body.get("conflict"), dict):
            report.stopped, report.reason, report.conflict = StopReason.CONFLICT, outcome.reason, body["conflict"]
            return NextStep.STOP
        if status == 409 and isinstance(body.get("acked"), dict):  # the batch starts past the server's rows
            await self._reconcile(acknowledged(body), report)
            await self._save()
            return NextStep.STOP if report.stopped or report.unreachable else NextStep.REBUILD
        if status in STOPS:
            report.stopped, report.reason = STOPS[status], outcome.reason
            return NextStep.STOP
        if 400 <= status < 500 and self._hold_back(batch, body, outcome.reason):
            return NextStep.REBUILD
        if 400 <= status < 500 and batch.documents and not self.builder.without_documents and (
                status != 413 or batch.rows <= 1) and self._refused_row(batch, body, status, named_only=True) is None:
            # maybe the documents, not the rows: the same rows go again without them before anything is
            # set aside or stopped (documents that stay refused are said, and tried again next pass)
            self.builder.without_documents = True
            report.refused_documents = outcome.reason
            return NextStep.REBUILD
        if status == 413 and batch.rows > 1:
            self.max_rows = max(1, min(self.max_rows, batch.rows) // 2)
            return NextStep.REBUILD
        if 400 <= status < 500:
            refused = self._refused_row(batch, body, status)
            if refused is not None:
                stream, index = refused
                if self.builder.without_documents and report.refused_documents == outcome.reason:
                    # refused the same without the documents: the row was the cause, not them
                    self.builder.without_documents, report.refused_documents = False, None
                self.builder.refused[stream] = (index, Void("rejected", outcome.reason, 0, 0, status))
                # kept until the void is acknowledged: its answer may be lost after the server stored it,
                # and a later process must then send the void again, not the row
                assert self.cursor is not None
                self.cursor.refused[stream] = (index, outcome.reason[:REFUSED_REASON_CHARS], status)
                await self._save()
                return NextStep.REBUILD
            report.stopped, report.reason = StopReason.REJECTED, outcome.reason
            return NextStep.STOP
        report.unreachable, report.reason = True, outcome.reason  # still failing when the deadline came
        report.unreachable_since = self.failing_since
        return NextStep.STOP

    def _hold_back(self, batch: Batch, body: dict[str, Any], reason: str) -> bool:
        """Hold back the batch's streams the server refused to start (``streams`` of its 4xx); False if it
        named none of them."""
        named = body.get("streams")
        sent = {s.name for s in batch.streams}
        refused = [name for name in named if isinstance(name, str) and name in sent] if isinstance(named, list) else []
        if not refused:
            return False
        if not self.held_back:
            self.held_back_until = self.clock() + HOLD_BACK_S
        limit = body.get("limit")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
            self.stream_limit = limit
        for name in refused:
            self.held_back[name] = reason
        self.builder.held_back.update(refused)
        logger.warning("ml-dash: %s refused to start %d stream(s) of %s (%s): their rows stay on disk, pending; "
                       "the others go on", self.remote, len(refused), self.prefix, reason)
        return True

    def _refused_row(self, batch: Batch, body: dict[str, Any], status: int,
                     named_only: bool = False) -> tuple[str, int] | None:
        """The row the server named in a 4xx (``stream`` and ``index``), as (stream, local index), if the
        batch holds it; a 413 of a batch of one row names that row (unless ``named_only``)."""
        assert self.cursor is not None
        sent = [s for s in batch.streams if s.void is None and s.count]
        if status == 413 and batch.rows == 1 and not named_only:
            return sent[0].name, sent[0].start
        stream, index = body.get("stream"), body.get("index")
        for pending in sent:
            if pending.name == stream and isinstance(index, int):
                local = index - self.cursor.base(pending.name)
                if pending.start <= local < pending.start + pending.count:
                    return pending.name, local
        return None

    async def _advance(self, batch: Batch, acked: Acknowledged, report: UploadReport) -> bool:
        """The server stored ``batch``: move the cursors, record what was set aside, reconcile with the
        server's counts; True when every stream can go on from where the batch ended."""
        cursor = self.cursor
        assert cursor is not None
        for stream in batch.streams:
            cursor.streams[stream.name] = StreamCursor(stream.start + stream.count, stream.end_offset)
            if stream.void is None:
                continue
            try:
                await self.blocking(set_aside, self.directory, stream_path(self.directory, stream.name), self.remote,
                                    self.prefix, stream.name, stream.start, stream.count, stream.void, utc_iso())
                await self._count_set_aside()
            except OSError as exc:  # the rows stay in their file either way; only the record is missing
                logger.warning("ml-dash: could not record %d set-aside row(s) of %s: %s", stream.count, stream.name, exc)
            report.set_aside_rows += stream.count
            refused = self.builder.refused.get(stream.name)
            if refused is not None and refused[0] < stream.start + stream.count:
                del self.builder.refused[stream.name]
                cursor.refused.pop(stream.name, None)  # saved with the cursor below
            logger.warning("ml-dash: %d row(s) of %s in %s set aside (%s: %s); they stay in its file, see %s",
                           stream.count, stream.name, self.prefix, stream.void.reason, stream.void.detail,
                           self.directory / ".ml-dash-rejected")
        report.sent_rows += batch.rows
        if "params" in batch.documents:
            cursor.documents["params"] = batch.params_version
        if isinstance(batch.documents.get("docs_rev"), int):  # a later process stamps above it (batches.py)
            cursor.documents["docs_rev"] = max(batch.documents["docs_rev"], cursor.documents.get("docs_rev") or 0)
        whole = await self._reconcile(acked, report)
        await self._save()
        return whole

    async def _reconcile(self, acked: Acknowledged, report: UploadReport) -> bool:
        """The server's counts win: a stream whose server holds fewer rows than the cursor says is sent
        again from there. A reply names the streams of its request; when the run's rows say the server
        lost some of the others (or holds more), every count is asked for. False when a stream was rewound."""
        cursor = self.cursor
        assert cursor is not None
        whole = await self._rewind(acked, report)
        if report.stopped or acked.complete or acked.run_rows is None:
            return whole
        expected = await self.blocking(cursor.server_rows)
        # fewer: the server lost rows, asked every time; more: another directory's rows (or a lost cursor),
        # asked once, for the report (every reply would say so again)
        if acked.run_rows == expected or (acked.run_rows > expected and self.counted_more):
            return whole
        self.counted_more = self.counted_more or acked.run_rows > expected
        counts = await self._recount(report)
        return counts is not None and await self._rewind(counts, report) and whole

    async def _recount(self, report: UploadReport) -> Acknowledged | None:
        """Every stream's count (``GET`` of the run: once per loss seen, never per batch); None when the
        server did not answer, said in ``report``."""
        deadline = self.pass_deadline or Deadline(self.request_timeout_s)
        outcome = await send_with_retries(lambda t: self.transport.get_run(self.prefix, t or self.request_timeout_s),
                                          deadline, self.request_timeout_s, self.pass_sleep, self.pass_single_attempt)
        report.requests += 1
        if outcome.ok or outcome.status == 404:  # 404: the server has no such run any more
            return Acknowledged(stream_counts(outcome.body or {}), True, None)
        if outcome.status in STOPS or outcome.status < 0:
            report.stopped, report.reason = STOPS.get(outcome.status, StopReason.INVALID), outcome.reason
        else:
            report.unreachable, report.reason = True, outcome.reason
            report.unreachable_since = time.time()
        return None

    async def _rewind(self, acked: Acknowledged, report: UploadReport) -> bool:
        """Rewind each stream whose server holds fewer rows than the cursor says (of a complete reply, a
        stream it does not name holds none); False when one was."""
        cursor = self.cursor
        assert cursor is not None
        whole = True
        named = acked.counts
        for name in set(named) | (set(cursor.streams) if acked.complete else set()):
            stored = named.get(name, 0)
            local = stored - cursor.base(name)
            at = cursor.streams.get(name)
            if local < 0:  # this directory continues after rows the server no longer holds
                report.stopped = StopReason.LOST
                report.reason = (f"{self.remote} holds {stored} rows of {name}, fewer than the {cursor.base(name)} "
                                 "this directory continues after")
                return False
            if at is not None and local < at.acked:
                path = stream_path(self.directory, name)
                target = max(local, 0)
                offset = await self.blocking(offset_of_index, path, identity_key(name), target)
                logger.info("ml-dash: %s holds %d rows of %s %s, not %d: sending again from there",
                            self.remote, target, self.prefix, name, at.acked)
                cursor.streams[name] = StreamCursor(target, offset)
                whole = False
            elif local > (at.acked if at is not None else 0):
                report.server_has_more[name] = (local, -1)  # measured against the directory in _measure
        return whole

    async def _adopt(self, cursor: UploadCursor, deadline: Deadline, report: UploadReport, single_attempt: bool) -> bool:
        """Resolve a pending adoption (a run resumed while the server was away): continue the server's
        run after its rows, or start it if the server has none. False when the server did not answer."""
        outcome = await send_with_retries(lambda t: self.transport.get_run(self.prefix, t or self.request_timeout_s),
                                          deadline, self.request_timeout_s, self.pass_sleep, single_attempt)
        report.requests += 1
        body = outcome.body or {}
        own = body.get("run_id") == self.builder.identity_of(cursor).get("run_id")
        if outcome.ok and own and not self.builder.adopter:
            cursor.adopt = None  # the server's run is this directory's own: nothing to adopt
        elif outcome.ok and isinstance(body.get("run_id"), str):  # (an adopter again: after what it holds now)
            cursor.adopt_run(body["run_id"], stream_counts(body))
            logger.info("ml-dash: %s continues %s on %s after its rows %s", self.directory, self.prefix,
                        self.remote, cursor.adopt.get("base"))
        elif outcome.status == 404 or outcome.ok:
            cursor.adopt = None  # nothing to continue: this directory starts the run
        elif outcome.status in STOPS or outcome.status < 0:
            report.stopped, report.reason = STOPS.get(outcome.status, StopReason.INVALID), outcome.reason
            return False
        else:
            report.unreachable, report.reason = True, outcome.reason
            report.unreachable_since = time.time()
            return False
        await self._save()
        return True

    async def _save(self) -> None:
        assert self.cursor is not None
        await self.blocking(self.cursor.save)

    async def _measure(self, report: UploadReport) -> None:
        """Pending rows and files, from the files' tails and the cursors (never a backlog scan)."""
        cursor = self.cursor
        assert cursor is not None

        def measure() -> None:
            for name, path in discover_streams(self.directory):
                at = cursor.at(name)
                if name not in report.server_has_more and at.offset and file_size(path) == at.offset:
                    continue  # the file ends where the acknowledged rows do: nothing pending (a stat, not a read)
                on_disk = rows_on_disk(path, identity_key(name))
                pending = max(0, on_disk - cursor.at(name).acked)
                report.pending_rows += pending
                if name in report.held_back:
                    report.held_back_rows += pending
                if name in report.server_has_more:
                    server = report.server_has_more[name][0]
                    if server > on_disk:
                        report.server_has_more[name] = (server, on_disk)
                    else:
                        del report.server_has_more[name]
            report.pending_files = len(self.files.pending(cursor, refused_too=True))

        await self.blocking(measure)

    async def pending_rows(self) -> int:
        """Rows on disk past the cursors (the tails of the files, never a scan)."""
        report = UploadReport()
        await self.load()
        await self._measure(report)
        return report.pending_rows

    def stream_status(self, written: dict[str, int]) -> dict[str, dict[str, int]]:
        """Per stream (agent loop, no I/O): rows the server stored, rows set aside, rows still to send,
        given the rows ``written`` to each stream's file so far."""
        cursor = self.cursor
        out: dict[str, dict[str, int]] = {}
        for name, on_disk in written.items():
            acked = cursor.at(name).acked if cursor is not None else 0
            aside = self.set_aside.get(name, 0)
            out[name] = {"acknowledged": max(0, acked - aside), "set_aside": aside,
                         "pending_upload": max(0, on_disk - acked)}
        return out
