"""``exp.log(...)`` and ``exp.logs.info/warn/error/debug/fatal``.

Lines land in ``logs.jsonl`` as ``{"sequenceNumber": n, "timestamp": iso,
"level": ..., "message": ..., "metadata": {...}}`` (metadata omitted when
empty). The message and the metadata are checked against the value domain
and the metadata encoded once, at the call: a bad value raises there and
never reaches the agent, which writes the encoded bytes as they are.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from .agent import StreamClosedError
from .errors import RunStateError
from .format.jsonlines import ReadReport, encode_checked, iter_records
from .format.layout import LOGS_FILE
from .format.values import MAX_ROW_BYTES, check_text
from .format.vocabulary import normalise_level, utc_iso

if TYPE_CHECKING:
    from ._run.session import RunSession

#: Estimated memory of one buffered log line with a short message (a line is counted at its
#: own size past this: its message and metadata bytes added).
LOG_ROW_BYTES = 512


def build_log_row(index: int, ts: float, payload: tuple, created_at: str) -> dict:
    level, message, metadata = payload
    row = {"sequenceNumber": index, "timestamp": utc_iso(ts), "level": level, "message": message}
    if metadata is not None:
        row["metadata"] = metadata
    return row


class Logs:
    """``exp.logs``: leveled log lines; ``exp.log`` is the same as ``exp.logs.log``."""

    def __init__(self, session: RunSession) -> None:
        self._session = session
        self._owner = session.holder()  # a handle keeps its Experiment referenced (session._end_orphan)

    def log(self, message: str, level: str = "info", metadata: dict[str, Any] | None = None, **extra: Any) -> None:
        """Append one log line. ``metadata`` and keyword ``extra`` are merged into its metadata."""
        message = check_text("log message", message, MAX_ROW_BYTES)
        level = normalise_level(level)
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"log metadata must be a dict, not {type(metadata).__name__}")
        merged = {**metadata, **extra} if metadata else extra
        encoded = msgspec.Raw(encode_checked("log metadata", merged, MAX_ROW_BYTES)) if merged else None
        text_bytes = len(message) if message.isascii() else len(message.encode("utf-8"))
        size = text_bytes + (len(encoded) if encoded is not None else 0)
        if size > MAX_ROW_BYTES:
            raise ValueError(f"a log line of {size:,} bytes (message and metadata); the limit is {MAX_ROW_BYTES:,}")
        stream = self._session.log_stream
        event = (time.time(), (level, message, encoded))
        row: Any = event
        if size > LOG_ROW_BYTES // 2:  # counted at its own size
            row = stream.admit_sized(event, LOG_ROW_BYTES + size)
            if row is None:
                return  # dropped by the memory bound, counted
        queue = stream.queue
        queue.append(row)
        if len(queue) >= stream.wake_at:
            try:
                stream.on_threshold(row)
            except StreamClosedError:
                raise RunStateError(self._session.not_running_message()) from None

    def debug(self, message: str, **extra: Any) -> None:
        self.log(message, "debug", **extra)

    def info(self, message: str, **extra: Any) -> None:
        self.log(message, "info", **extra)

    def warn(self, message: str, **extra: Any) -> None:
        self.log(message, "warn", **extra)

    warning = warn

    def error(self, message: str, **extra: Any) -> None:
        self.log(message, "error", **extra)

    def fatal(self, message: str, **extra: Any) -> None:
        self.log(message, "fatal", **extra)

    def read(self, level: str | None = None, flush: bool = True) -> list[dict[str, Any]]:
        """All log lines written so far (optionally of one level), buffered ones included.
        In remote mode, a run this process has not started is read from the server."""
        wanted = normalise_level(level) if level is not None else None
        server = self._session.server_reads()
        if server is not None:
            return server.logs(wanted)
        if flush:
            self._session.flush()
        report = ReadReport()
        path = self._session.directory / LOGS_FILE
        return [r for r in iter_records(path, report) if wanted is None or r.get("level") == wanted]

