"""``exp.log(...)`` and ``exp.logs.info/warn/error/debug/fatal``.

Lines land in ``logs.jsonl`` as ``{"sequenceNumber": n, "timestamp": iso,
"level": ..., "message": ..., "metadata": {...}}`` (metadata omitted when
empty). Metadata is checked for JSON-ability at the call, so a bad value
raises there and never reaches the agent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .agent import RowStream, StreamClosedError, utc_iso
from .agent.jsonlines import ReadReport, dumps, iter_records
from .errors import RunStateError

if TYPE_CHECKING:
    from .experiment import Experiment

LEVELS = ("debug", "info", "warn", "error", "fatal")
_LEVEL_ALIASES = {"warning": "warn", "critical": "fatal"}


def build_log_row(index: int, ts: float, payload: tuple, created_at: str) -> dict:
    level, message, metadata = payload
    row = {"sequenceNumber": index, "timestamp": utc_iso(ts), "level": level, "message": message}
    if metadata:
        row["metadata"] = metadata
    return row


def normalise_level(level: object) -> str:
    if not isinstance(level, str):
        raise TypeError(f"log level must be a str, not {type(level).__name__}")
    name = _LEVEL_ALIASES.get(level.lower(), level.lower())
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    return name


class Logs:
    """``exp.logs``: leveled log lines; ``exp.log`` is the same as ``exp.logs.log``."""

    def __init__(self, experiment: Experiment) -> None:
        self._experiment = experiment
        self._stream: RowStream | None = None

    def bind(self, stream: RowStream) -> None:
        self._stream = stream

    def log(self, message: str, level: str = "info", metadata: dict[str, Any] | None = None, **extra: Any) -> None:
        """Append one log line. ``metadata`` and keyword ``extra`` are merged into its metadata."""
        if not isinstance(message, str):
            raise TypeError(f"log message must be a str, not {type(message).__name__}")
        level = normalise_level(level)
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"log metadata must be a dict, not {type(metadata).__name__}")
        merged = {**metadata, **extra} if metadata else extra
        if merged:
            try:
                dumps(merged)  # the agent must never meet a value it cannot write
            except TypeError as exc:
                raise TypeError(f"log metadata is not JSON-serialisable: {exc}") from None
        stream = self._stream
        if stream is None:
            raise RunStateError(self._experiment._not_running_message())
        queue = stream.queue
        queue.append((time.time(), (level, message, merged or None)))
        if len(queue) >= stream.wake_at:
            try:
                stream.on_threshold()
            except StreamClosedError:
                raise RunStateError(self._experiment._not_running_message()) from None

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
        server = self._experiment._server_reads()
        if server is not None:
            return server.logs(wanted)
        if flush:
            self._experiment.flush()
        report = ReadReport()
        path = self._experiment.directory / "logs.jsonl"
        return [r for r in iter_records(path, report) if wanted is None or r.get("level") == wanted]
