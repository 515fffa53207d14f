"""Uploads a run directory to an ml-dash server, exactly once, from an acknowledged cursor.

The local files are the record: the uploader reads complete lines past the
cursor of each stream (``logs.jsonl``, ``metrics/<name>/data.jsonl``), sends
them with ``parameters.json`` and ``experiment.json`` as one bulk request
(agent/wire.py), and moves the cursor only when the server has acknowledged.
The cursor lives next to the run in ``.ml-dash-upload.json``, one entry per
server, so an interrupted upload or a later ``ml-dash sync`` resumes where the
server left off, and sending twice stores nothing twice (the server keeps
each (run, stream, index) once).

One request per run is in flight at a time; while it is, the next batch is
read, encoded and compressed on a worker thread, so the client's work
overlaps the server's. Statuses are handled per
agent/retry.py: retryable ones are retried with backoff; a 409 rewinds the
cursor to the server's; 401/403 stop the upload (the data stays on disk); a
413 halves the batch; other permanent errors set the batch aside under
``.ml-dash-rejected/`` and count it. Until the server has stored a batch, and
while it is failing, the agent's rows are not kept in memory and each
request is a small probe (PROBE_ROWS), so a long outage costs neither memory
nor much CPU; the first success restores full batches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, NamedTuple

import aiohttp

from .jsonlines import DecodeError, dumps, loads, read_json
from .pending import MemoryChunks, PendingStream, identity_key, read_stream
from .retry import AUTH_FAILURES, Outcome, parse_retry_after, retrying
from .rundir import write_document
from .wire import CONTENT_TYPE, encode_body

logger = logging.getLogger("ml_dash.agent")

CURSOR_FILE = ".ml-dash-upload.json"
REJECTED_DIR = ".ml-dash-rejected"
MAX_BATCH_ROWS = 131_072
PROBE_ROWS = 8_192


@dataclass(slots=True)
class StreamCursor:
    acked: int = 0  # rows the server has stored (indices 0..acked-1)
    offset: int = 0  # byte offset of the first line not yet acknowledged


@dataclass(slots=True)
class Batch:
    """One request: the streams it carries, the run's documents, and the encoded body."""

    streams: list[PendingStream]
    documents: dict[str, Any]
    params_version: Any  # parameters.json's updatedAt when the body carries params
    payload: bytes

    @property
    def rows(self) -> int:
        return sum(s.count for s in self.streams)

    def positions_after(self) -> dict[str, StreamCursor]:
        """Where each stream's next batch starts once this one is acknowledged."""
        return {s.name: StreamCursor(s.start + s.count, s.end_offset) for s in self.streams}


class PlannedStream(NamedTuple):
    """One stream of a batch being prepared: where it starts, and the rows memory already holds."""

    name: str
    path: Path
    at: StreamCursor
    in_memory: PendingStream | None
    read_limit: int  # rows to read from disk at most (up to where memory takes over)


@dataclass(slots=True)
class UploadReport:
    """What one upload pass did."""

    sent_rows: int = 0
    pending_rows: int = 0
    rejected_rows: int = 0
    sent_files: int = 0
    pending_files: int = 0
    stopped: str | None = None  # "auth" when the server refused the key
    gave_up: bool = False  # a request was still failing when the deadline passed
    requests: int = 0


def headers_for(api_key: str | None, user_name: str | None) -> dict[str, str]:
    if api_key:
        return {"Authorization": f"Bearer {api_key}"}
    if user_name:
        return {"X-ML-Dash-User": user_name}
    return {}


class RunUploader:
    """Sends one run directory's unacknowledged data to one server."""

    def __init__(self, directory: Path, prefix: str, remote: str, headers: dict[str, str],
                 request_timeout_s: float | None = None, max_rows: int | None = None,
                 executor: Executor | None = None) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.remote = remote.rstrip("/")
        self.headers = headers
        self.request_timeout_s = request_timeout_s or float(os.environ.get("ML_DASH_REQUEST_TIMEOUT_S", "30"))
        self.max_rows = max_rows or int(os.environ.get("ML_DASH_UPLOAD_BATCH_ROWS", MAX_BATCH_ROWS))
        self.executor = executor  # where batches are read and encoded (None: the loop's default)
        self.cursors: dict[str, StreamCursor] = {}
        self._sent_docs: dict[str, str] = {}
        self._sent_files: dict[str, str] = {}  # path -> sha256 the server acknowledged
        # the live fast path (agent's loop only); off until the server has answered once, so a
        # run that starts with the server down keeps nothing in memory and sends small probes
        self.memory = MemoryChunks(suspended=True)
        self._load_cursor()

    # -- the cursor file ---------------------------------------------------
    def _load_cursor(self) -> None:
        document = read_json(self.directory / CURSOR_FILE)
        entry = document.get("servers", {}).get(self.remote, {}) if isinstance(document, dict) else {}
        for name, cursor in entry.get("streams", {}).items():
            self.cursors[name] = StreamCursor(int(cursor.get("acked", 0)), int(cursor.get("offset", 0)))
        self._sent_docs = dict(entry.get("documents", {}))
        self._sent_files = dict(entry.get("files", {}))

    def _save_cursor(self) -> None:
        path = self.directory / CURSOR_FILE
        document = read_json(path)
        document = document if isinstance(document, dict) else {}
        servers = document.setdefault("servers", {})
        servers[self.remote] = {
            "streams": {n: {"acked": c.acked, "offset": c.offset} for n, c in self.cursors.items()},
            "documents": self._sent_docs,
            "files": self._sent_files,
        }
        write_document(path, dumps(document))

    # -- what is pending ---------------------------------------------------
    def streams(self) -> list[tuple[str, Path]]:
        found = [("logs", self.directory / "logs.jsonl")]
        metrics = self.directory / "metrics"
        if metrics.is_dir():
            found += [(f"metrics/{d.name}", d / "data.jsonl") for d in sorted(metrics.iterdir()) if d.is_dir()]
        return [(name, path) for name, path in found if path.is_file()]

    def has_pending(self) -> bool:
        """Whether any stream file extends past its acknowledged offset (a stat per stream, no reading)."""
        for name, path in self.streams():
            if path.stat().st_size > self.cursors.get(name, StreamCursor()).offset:
                return True
        return False

    def pending_rows(self) -> int:
        """Rows on disk past the acknowledged cursors (complete lines), counted in bounded chunks:
        with the server down the backlog can be gigabytes, and it waits on disk, not in memory."""
        total = 0
        for name, path in self.streams():
            cursor = self.cursors.get(name, StreamCursor())
            with open(path, "rb") as f:
                f.seek(cursor.offset)
                while chunk := f.read(1 << 20):
                    total += chunk.count(b"\n")
        return total

    def offer(self, stream: str, start: int, fields: list[dict[str, Any]], created_at: str, end_offset: int) -> None:
        """Called by the agent after writing metric rows: keep them to send without reading back."""
        self.memory.offer(stream, start, fields, created_at, end_offset)

    def documents_changed(self) -> bool:
        """Whether parameters.json changed since the server acknowledged it."""
        return "params" in self._documents(self._sent_docs.get("params"))[0]

    def _documents(self, sent_params: Any) -> tuple[dict[str, Any], Any]:
        """experiment.json's run fields, and parameters.json's data when its version is not
        ``sent_params``; with that version (None when the body carries no params)."""
        body: dict[str, Any] = {}
        experiment = read_json(self.directory / "experiment.json")
        if isinstance(experiment, dict):
            body["run"] = {k: experiment.get(k) for k in ("description", "tags", "metadata", "status",
                                                          "status_reason", "created_at", "started_at", "ended_at")}
        params = read_json(self.directory / "parameters.json")
        if isinstance(params, dict) and isinstance(params.get("data"), dict):
            if params.get("updatedAt") != sent_params:
                body["params"] = params["data"]
                return body, params.get("updatedAt")
        return body, None

    # -- one pass ----------------------------------------------------------
    async def upload(self, session: aiohttp.ClientSession, deadline_s: float | None,
                     sleep: Callable[[float], Awaitable[None]] | None = None,
                     progress: Callable[[int], None] | None = None) -> UploadReport:
        """Send everything pending now; stop early on auth failure or when ``deadline_s`` passes.

        ``progress`` is called with the rows sent so far after each acknowledged batch.
        """
        report = UploadReport()
        started = time.monotonic()
        batch = await self._prepare({}, self._sent_docs.get("params"))
        following: asyncio.Future[Batch] | None = None
        try:
            for requests in range(1 << 40):  # ends when nothing is left, on a stop, or at the deadline
                remaining = None if deadline_s is None else deadline_s - (time.monotonic() - started)
                if remaining is not None and remaining <= 0:
                    break
                if not batch.streams and requests and "params" not in batch.documents:
                    break
                if batch.streams and not self.memory.suspended:  # build the next one while this one is in flight
                    following = asyncio.ensure_future(self._prepare(batch.positions_after(), batch.params_version))
                outcome = await self._send(session, batch.payload, remaining, sleep)
                report.requests += 1
                whole = False
                if outcome.ok:
                    self.memory.resume()
                    whole = self._advance(batch, outcome)
                    report.sent_rows += batch.rows
                    if progress is not None:
                        progress(report.sent_rows)
                elif outcome.status in AUTH_FAILURES:
                    report.stopped = "auth"
                    logger.warning("ml-dash: %s refused the credentials (%d); the run stays on disk: %s",
                                   self.remote, outcome.status, (outcome.body or {}).get("error"))
                    break
                elif outcome.status == 409:
                    self._rewind(outcome)
                elif outcome.status == 413 and batch.rows > 1:
                    self.max_rows = max(1, self.max_rows // 2)
                elif outcome.retryable:
                    report.gave_up = True  # the deadline passed while retrying
                    break
                else:
                    report.rejected_rows += self._set_aside(batch, outcome)
                    whole = True
                if not batch.streams:
                    break
                if following is not None:
                    prepared, following = await following, None
                    if whole:  # it starts where this batch ended: still the right next batch
                        batch = prepared
                        continue
                batch = await self._prepare({}, self._sent_docs.get("params"))
        finally:
            if following is not None:  # its thread runs to the end anyway; wait, then drop it
                await asyncio.gather(following, return_exceptions=True)
        if report.stopped is None:
            remaining = None if deadline_s is None else max(0.0, deadline_s - (time.monotonic() - started))
            await self._upload_files(session, remaining, report, sleep)
        report.pending_rows = self.pending_rows()
        report.pending_files = len(self.pending_files())
        return report

    async def _prepare(self, positions: dict[str, StreamCursor], sent_params: Any) -> Batch:
        """The next batch from ``positions`` (default: the acknowledged cursors): rows still in memory
        are picked here, on the loop; disk reads and encoding run on the executor."""
        self.memory.forget_before({name: c.acked for name, c in self.cursors.items()})
        plan: list[PlannedStream] = []
        budget = self._batch_rows()
        for name, path in self.streams():
            at = positions.get(name) or self.cursors.get(name) or StreamCursor()
            in_memory, read_limit = None, budget
            if len(self.memory):
                in_memory = self.memory.take(name, at.acked, budget)
                next_start = self.memory.next_start(name, at.acked)
                if next_start is not None:  # read up to it: the batch after this one comes from memory
                    read_limit = min(budget, next_start - at.acked)
            plan.append(PlannedStream(name, path, at, in_memory, read_limit))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._build, plan, budget, sent_params)

    def _batch_rows(self) -> int:
        """Rows per request: small probes while the server is failing (each retry pass would read
        and hold a full batch only to fail again), the full size otherwise."""
        return min(self.max_rows, PROBE_ROWS) if self.memory.suspended else self.max_rows

    def _build(self, plan: list[PlannedStream], budget: int, sent_params: Any) -> Batch:
        streams = []
        for planned in plan:
            if budget <= 0:
                break
            in_memory = planned.in_memory
            stream = in_memory if in_memory is not None and in_memory.count <= budget else read_stream(
                planned.name, planned.path, planned.at.acked, planned.at.offset, min(budget, planned.read_limit))
            if stream is not None:
                streams.append(stream)
                budget -= stream.count
        documents, params_version = self._documents(sent_params)
        body: dict[str, Any] = {"v": 1, **documents, "streams": {}}
        for stream in streams:
            body["streams"][stream.name] = ({"start": stream.start, "rows": stream.rows} if stream.rows is not None
                                            else {"start": stream.start, "blocks": stream.blocks})
        payload = encode_body(body)
        for stream in streams:  # the body has them now; a batch may wait minutes on a retry
            stream.blocks = stream.rows = None
        return Batch(streams, documents, params_version, payload)

    def pending_files(self) -> list[tuple[str, str, Path, dict[str, Any]]]:
        """(path, sha256, local file, entry) of saved files the server has not acknowledged."""
        document = read_json(self.directory / "files" / ".files_metadata.json")
        entries = document.get("files", []) if isinstance(document, dict) else []
        pending = []
        for entry in entries:
            path, sha256 = entry.get("path"), entry.get("checksum")
            if not isinstance(path, str) or not isinstance(sha256, str) or self._sent_files.get(path) == sha256:
                continue
            local = (self.directory / "files" / path).resolve()
            if (self.directory / "files").resolve() in local.parents and local.is_file():
                pending.append((path, sha256, local, entry))
        return pending

    async def _upload_files(self, session: aiohttp.ClientSession, deadline_s: float | None, report: UploadReport,
                            sleep: Callable[[float], Awaitable[None]] | None) -> None:
        started = time.monotonic()
        for path, sha256, local, entry in self.pending_files():
            remaining = None if deadline_s is None else deadline_s - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                return
            url = f"{self.remote}/api/v1/runs/{self.prefix}/files/{path}"
            headers = {**self.headers, "X-Content-SHA256": sha256, "Content-Type": "application/octet-stream",
                       "X-File-Entry": dumps({k: entry.get(k) for k in ("filename", "description", "tags",
                                                                          "contentType", "metadata")}).decode()}

            async def put() -> Outcome:
                try:
                    with open(local, "rb") as f:  # reopened on every attempt: a retry resends it whole
                        async with session.put(url, data=f, headers=headers,
                                               timeout=aiohttp.ClientTimeout(total=None, sock_read=self.request_timeout_s)) as resp:
                            reply = await resp.json(content_type=None) if resp.content_length != 0 else None
                            return Outcome(resp.status, parse_retry_after(resp.headers.get("Retry-After")), reply)
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    logger.debug("file upload to %s failed: %r", url, exc)
                    return Outcome(0)

            kwargs = {} if sleep is None else {"sleep": sleep}
            outcome = await retrying(remaining, **kwargs)(put)
            if outcome.ok:
                self._sent_files[path] = sha256
                self._save_cursor()
                report.sent_files += 1
            elif outcome.status in AUTH_FAILURES:
                report.stopped = "auth"
                return
            elif not outcome.retryable:  # permanent for this file: keep it local, say so once
                logger.warning("ml-dash: %s refused file %s (%d): %s", self.remote, path, outcome.status,
                               (outcome.body or {}).get("error"))
                self._sent_files[path] = sha256
                self._save_cursor()
            else:
                report.gave_up = True
                return

    async def _send(self, session: aiohttp.ClientSession, payload: bytes, deadline_s: float | None,
                    sleep: Callable[[float], Awaitable[None]] | None) -> Outcome:
        url = f"{self.remote}/api/v1/runs/{self.prefix}/events"
        headers = {**self.headers, "Content-Encoding": "zstd", "Content-Type": CONTENT_TYPE}

        async def post() -> Outcome:
            try:
                async with session.post(url, data=payload, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=self.request_timeout_s)) as resp:
                    try:
                        reply = await resp.json(content_type=None)
                    except (ValueError, aiohttp.ContentTypeError):
                        reply = None
                    outcome = Outcome(resp.status, parse_retry_after(resp.headers.get("Retry-After")), reply)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                logger.debug("upload to %s failed: %r", url, exc)
                outcome = Outcome(0)
            if outcome.retryable or outcome.status in AUTH_FAILURES:
                self.memory.suspend()  # the backlog goes to disk; the next batches are small probes
            return outcome

        kwargs = {} if sleep is None else {"sleep": sleep}
        return await retrying(deadline_s, **kwargs)(post)

    def _advance(self, batch: Batch, outcome: Outcome) -> bool:
        """Move the cursors to what the server acknowledged; True when it stored the whole batch."""
        acked = (outcome.body or {}).get("acked", {})
        whole = True
        for stream in batch.streams:
            end = stream.start + stream.count
            stored = acked.get(stream.name, end)
            if stored >= end:
                self.cursors[stream.name] = StreamCursor(end, stream.end_offset)
            else:
                self._seek(stream.name, dict(self.streams())[stream.name], stored)
                whole = False
        if "params" in batch.documents:
            self._sent_docs["params"] = batch.params_version
        self._save_cursor()
        return whole

    def _rewind(self, outcome: Outcome) -> None:
        for name, stored in ((outcome.body or {}).get("acked") or {}).items():
            path = dict(self.streams()).get(name)
            if path is not None and isinstance(stored, int):
                self._seek(name, path, stored)
        self._save_cursor()

    def _seek(self, name: str, path: Path, index: int) -> None:
        """Point ``name``'s cursor at the line holding ``index`` (scanning from the start)."""
        key = identity_key(name)
        offset = 0
        with open(path, "rb") as f:
            for line in f:
                try:
                    record = loads(line)
                except DecodeError:
                    record = None
                if isinstance(record, dict) and isinstance(record.get(key), int) and record[key] >= index:
                    break
                offset += len(line)
        self.cursors[name] = StreamCursor(index, offset)

    def _set_aside(self, batch: Batch, outcome: Outcome) -> int:
        rejected = self.directory / REJECTED_DIR
        rejected.mkdir(exist_ok=True)
        name = f"{int(time.time() * 1000)}-{outcome.status}.json"
        record = {"status": outcome.status, "reply": outcome.body,
                  "streams": {s.name: {"start": s.start, "rows": s.count} for s in batch.streams}}
        (rejected / name).write_bytes(dumps(record))
        logger.warning("ml-dash: %s refused a batch (%d): %s; set aside in %s", self.remote, outcome.status,
                       (outcome.body or {}).get("error"), rejected / name)
        for stream in batch.streams:
            self.cursors[stream.name] = StreamCursor(stream.start + stream.count, stream.end_offset)
        self._save_cursor()
        return batch.rows


def process_alive(pid: Any) -> bool:
    """Whether ``pid`` is a live process on this host."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
