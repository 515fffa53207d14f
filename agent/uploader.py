"""Uploads a run directory to an ml-dash server, exactly once, from an acknowledged cursor.

The local files are the record: the uploader reads complete lines past the
cursor of each stream (``logs.jsonl``, ``metrics/<name>/data.jsonl``), sends
them with ``parameters.json`` and ``experiment.json`` as one bulk request
(agent/wire.py), and moves the cursor only when the server has acknowledged.
The cursor lives next to the run in ``.ml-dash-upload.json``, one entry per
server, so an interrupted upload or a later ``ml-dash sync`` resumes where the
server left off, and sending twice stores nothing twice (the server keeps
each (run, stream, index) once).

One request per run is in flight at a time. Statuses are handled per
agent/retry.py: retryable ones are retried with backoff; a 409 rewinds the
cursor to the server's; 401/403 stop the upload (the data stays on disk); a
413 halves the batch; other permanent errors set the batch aside under
``.ml-dash-rejected/`` and count it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp

from .jsonlines import DecodeError, _decoder, dumps, loads, read_json, restore_metric_row
from .retry import AUTH_FAILURES, Outcome, parse_retry_after, retrying
from .rundir import write_document
from .wire import CONTENT_TYPE, blocks_from_fields, encode_body, metric_blocks

logger = logging.getLogger("ml_dash.agent")

CURSOR_FILE = ".ml-dash-upload.json"
REJECTED_DIR = ".ml-dash-rejected"
MAX_BATCH_ROWS = 50_000
MAX_READ_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class StreamCursor:
    acked: int = 0  # rows the server has stored (indices 0..acked-1)
    offset: int = 0  # byte offset of the first line not yet acknowledged


@dataclass(slots=True)
class PendingStream:
    name: str
    path: Path
    start: int
    rows: list[dict[str, Any]]  # records as on disk, or the agent's field dicts when ``created_at`` is set
    end_offset: int
    created_at: str | None = None  # set for rows handed over in memory


@dataclass(slots=True)
class WrittenChunk:
    """Metric rows the agent has just written, handed over so they need not be read back."""

    stream: str
    start: int
    fields: list[dict[str, Any]]
    created_at: str
    end_offset: int


#: Rows the uploader keeps in memory at most; past that it reads the disk again.
MEMORY_ROWS = 65_536


@dataclass(slots=True)
class UploadReport:
    """What one upload pass did."""

    sent_rows: int = 0
    pending_rows: int = 0
    rejected_rows: int = 0
    sent_files: int = 0
    pending_files: int = 0
    stopped: str | None = None  # "auth" when the server refused the key
    requests: int = 0
    streams: dict[str, int] = field(default_factory=dict)


def identity_key(stream: str) -> str:
    """The key every record of ``stream`` starts with (as the local writer puts it)."""
    return "sequenceNumber" if stream == "logs" else "index"


def headers_for(api_key: str | None, user_name: str | None) -> dict[str, str]:
    if api_key:
        return {"Authorization": f"Bearer {api_key}"}
    if user_name:
        return {"X-ML-Dash-User": user_name}
    return {}


class RunUploader:
    """Sends one run directory's unacknowledged data to one server."""

    def __init__(self, directory: Path, prefix: str, remote: str, headers: dict[str, str],
                 request_timeout_s: float | None = None, max_rows: int | None = None) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.remote = remote.rstrip("/")
        self.headers = headers
        self.request_timeout_s = request_timeout_s or float(os.environ.get("ML_DASH_REQUEST_TIMEOUT_S", "30"))
        self.max_rows = max_rows or int(os.environ.get("ML_DASH_UPLOAD_BATCH_ROWS", MAX_BATCH_ROWS))
        self.cursors: dict[str, StreamCursor] = {}
        self._sent_docs: dict[str, str] = {}
        self._sent_files: dict[str, str] = {}  # path -> sha256 the server acknowledged
        self._written: deque[WrittenChunk] = deque()  # the memory fast path (agent's loop only)
        self._written_rows = 0
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

    def offer(self, chunk: WrittenChunk) -> None:
        """Called by the agent after writing metric rows: keep them to send without reading back."""
        if self._written_rows + len(chunk.fields) > MEMORY_ROWS:
            self._written.clear()  # the upload is behind: it catches up from disk
            self._written_rows = 0
            return
        self._written.append(chunk)
        self._written_rows += len(chunk.fields)

    def _from_memory(self, name: str, path: Path, budget: int) -> PendingStream | None:
        """The handed-over rows that start exactly at this stream's cursor, if any."""
        cursor = self.cursors.setdefault(name, StreamCursor())
        for chunk in list(self._written):  # drop what the server already has
            if chunk.start + len(chunk.fields) <= self.cursors.get(chunk.stream, StreamCursor()).acked:
                self._written.remove(chunk)
                self._written_rows -= len(chunk.fields)
        for chunk in self._written:
            if chunk.stream == name and chunk.start == cursor.acked and len(chunk.fields) <= budget:
                return PendingStream(name, path, chunk.start, chunk.fields, chunk.end_offset, chunk.created_at)
        return None

    def _read(self, name: str, path: Path, budget: int) -> PendingStream | None:
        in_memory = self._from_memory(name, path, budget)
        if in_memory is not None:
            return in_memory
        cursor = self.cursors.setdefault(name, StreamCursor())
        with open(path, "rb") as f:
            f.seek(cursor.offset)
            data = f.read(MAX_READ_BYTES)
        end = data.rfind(b"\n")
        if end < 0:
            return None
        key = identity_key(name)
        lines = data[: end + 1].split(b"\n")[:-1][:budget]
        rows = self._decode_contiguous(lines, key, cursor.acked)
        if rows is None:
            rows, lines = self._decode_one_by_one(lines, key, cursor.acked)
        if not rows:
            return None
        consumed = sum(map(len, lines)) + len(lines)
        return PendingStream(name, path, cursor.acked, rows, cursor.offset + consumed)

    @staticmethod
    def _decode_contiguous(lines: list[bytes], key: str, first: int) -> list[dict[str, Any]] | None:
        """All lines at once (one msgspec call), if they are intact and indexed first, first+1, ..."""
        if not lines:
            return []
        try:
            rows = _decoder.decode_lines(b"\n".join(lines))
        except DecodeError:
            return None
        if (len(rows) != len(lines) or not isinstance(rows[0], dict) or not isinstance(rows[-1], dict)
                or rows[0].get(key) != first or rows[-1].get(key) != first + len(rows) - 1):
            return None
        return rows

    @staticmethod
    def _decode_one_by_one(lines: list[bytes], key: str, first: int) -> tuple[list[dict[str, Any]], list[bytes]]:
        """The slow path: skip damaged lines and rows already acknowledged; stop at a gap."""
        rows: list[dict[str, Any]] = []
        used = 0
        for line in lines:
            used += 1
            try:
                record = loads(line)
            except DecodeError:  # a torn line ended by a later writer: skipped, like the readers do
                continue
            if not isinstance(record, dict) or not isinstance(record.get(key), int) or record[key] < first:
                continue
            if record[key] != first + len(rows):
                used -= 1
                break  # a gap on disk: send what is contiguous, stop there
            rows.append(record)
        return rows, lines[:used]

    def documents_changed(self) -> bool:
        """Whether parameters.json changed since the server acknowledged it."""
        return "params" in self._documents()

    def _documents(self) -> dict[str, Any]:
        """experiment.json and parameters.json, when they changed since the server acknowledged them."""
        body: dict[str, Any] = {}
        experiment = read_json(self.directory / "experiment.json")
        if isinstance(experiment, dict):
            run = {k: experiment.get(k) for k in ("description", "tags", "metadata", "status", "status_reason",
                                                  "created_at", "started_at", "ended_at")}
            body["run"] = run
        params = read_json(self.directory / "parameters.json")
        if isinstance(params, dict) and isinstance(params.get("data"), dict):
            if self._sent_docs.get("params") != params.get("updatedAt"):
                body["params"] = params["data"]
        return body

    # -- one pass ----------------------------------------------------------
    async def upload(self, session: aiohttp.ClientSession, deadline_s: float | None,
                     sleep: Callable[[float], Awaitable[None]] | None = None) -> UploadReport:
        """Send everything pending now; stop early on auth failure or when ``deadline_s`` passes."""
        report = UploadReport()
        started = time.monotonic()
        first = True
        while True:
            remaining = None if deadline_s is None else deadline_s - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                break
            pending, budget = [], self.max_rows
            for name, path in self.streams():
                stream = self._read(name, path, budget)
                if stream is not None:
                    pending.append(stream)
                    budget -= len(stream.rows)
                if budget <= 0:
                    break
            documents = self._documents()
            if not pending and not first and "params" not in documents:
                break
            first = False
            outcome = await self._send(session, pending, documents, remaining, sleep)
            report.requests += 1
            if outcome.ok:
                self._advance(pending, outcome, documents)
                report.sent_rows += sum(len(s.rows) for s in pending)
            elif outcome.status in AUTH_FAILURES:
                report.stopped = "auth"
                logger.warning("ml-dash: %s refused the credentials (%d); the run stays on disk: %s",
                               self.remote, outcome.status, (outcome.body or {}).get("error"))
                break
            elif outcome.status == 409:
                self._rewind(outcome)
            elif outcome.status == 413 and sum(len(s.rows) for s in pending) > 1:
                self.max_rows = max(1, self.max_rows // 2)
            elif outcome.retryable:
                break  # the deadline passed while retrying
            else:
                report.rejected_rows += self._set_aside(pending, documents, outcome)
            if not pending:
                break
        if report.stopped is None:
            remaining = None if deadline_s is None else max(0.0, deadline_s - (time.monotonic() - started))
            await self._upload_files(session, remaining, report, sleep)
        report.pending_rows = self.pending_rows()
        report.pending_files = len(self.pending_files())
        return report

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
                return

    async def _send(self, session: aiohttp.ClientSession, pending: list[PendingStream], documents: dict[str, Any],
                    deadline_s: float | None, sleep: Callable[[float], Awaitable[None]] | None) -> Outcome:
        body: dict[str, Any] = {"v": 1, **documents, "streams": {}}
        for stream in pending:
            if stream.name == "logs":
                rows = [{k: v for k, v in r.items() if k != "sequenceNumber"} for r in stream.rows]
                body["streams"]["logs"] = {"start": stream.start, "rows": rows}
            elif stream.created_at is not None:
                body["streams"][stream.name] = {"start": stream.start,
                                                "blocks": blocks_from_fields(stream.rows, stream.created_at)}
            else:
                rows = [restore_metric_row(r) if "nonFinite" in r else r for r in stream.rows]
                body["streams"][stream.name] = {"start": stream.start, "blocks": metric_blocks(rows)}
        payload = encode_body(body)
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
                    return Outcome(resp.status, parse_retry_after(resp.headers.get("Retry-After")), reply)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                logger.debug("upload to %s failed: %r", url, exc)
                return Outcome(0)

        kwargs = {} if sleep is None else {"sleep": sleep}
        return await retrying(deadline_s, **kwargs)(post)

    def _advance(self, pending: list[PendingStream], outcome: Outcome, documents: dict[str, Any]) -> None:
        acked = (outcome.body or {}).get("acked", {})
        for stream in pending:
            cursor = self.cursors[stream.name]
            stored = acked.get(stream.name, stream.start + len(stream.rows))
            if stored >= stream.start + len(stream.rows):
                cursor.acked, cursor.offset = stream.start + len(stream.rows), stream.end_offset
            else:
                self._seek(stream.name, stream.path, stored)
        if "params" in documents:
            params = read_json(self.directory / "parameters.json") or {}
            self._sent_docs["params"] = params.get("updatedAt")
        self._save_cursor()

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

    def _set_aside(self, pending: list[PendingStream], documents: dict[str, Any], outcome: Outcome) -> int:
        rejected = self.directory / REJECTED_DIR
        rejected.mkdir(exist_ok=True)
        name = f"{int(time.time() * 1000)}-{outcome.status}.json"
        record = {"status": outcome.status, "reply": outcome.body,
                  "streams": {s.name: {"start": s.start, "rows": len(s.rows)} for s in pending}}
        (rejected / name).write_bytes(dumps(record))
        logger.warning("ml-dash: %s refused a batch (%d): %s; set aside in %s", self.remote, outcome.status,
                       (outcome.body or {}).get("error"), rejected / name)
        for stream in pending:
            self.cursors[stream.name] = StreamCursor(stream.start + len(stream.rows), stream.end_offset)
        self._save_cursor()
        return sum(len(s.rows) for s in pending)


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
