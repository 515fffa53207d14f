"""What the handlers and a storage backend exchange: a validated batch (the refusals of ingest are in errors.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from ml_dash.format.layout import LOG_STREAM, RUN_FIELDS, metric_stream

from .errors import (  # where they were: errors.py holds them
    ConflictError,
    GapError,
    StreamLimitError,
    UnnamedReplyError,
)
from .replies import Acknowledgement

__all__ = ["RUN_COLUMNS", "Acknowledgement", "ConflictError", "GapError", "IngestBatch", "LogEntry", "MetricRows",
           "StreamLimitError", "UnnamedReplyError"]

RUN_COLUMNS = RUN_FIELDS  # experiment.json's run fields are the experiments table's columns


#: A log line as stored: (index, the record as msgpack, its level, its message as text for search).
LogEntry = tuple[int, bytes, "str | None", str]


@dataclass(slots=True)
class MetricRows:
    """A batch's rows of one metric, ready to store: chunks split at multiples of ``CHUNK_ROWS``
    (sqlite_metrics.py) and, per summary width, this batch's part of every window it touches, each
    packed as msgpack. Built where the body is decoded (server/ingest/prepare.py), so the database's
    thread only writes bytes."""

    start: int
    count: int
    chunks: list[tuple[int, int, bytes]]  # (first index, rows, msgpack blocks)
    summaries: dict[int, list[tuple[int, bytes]]]  # width -> (window, msgpack bucket), in index order
    latest: dict[str, Any]  # each field's value in the last row that has it

    def blocks(self) -> list[dict[str, Any]]:
        """The rows as column blocks again (for the rare batch that overlaps stored rows)."""
        return [block for _, _, packed in self.chunks for block in msgpack.unpackb(packed)]


@dataclass(slots=True)
class IngestBatch:
    """One validated request: rows per stream (with their indices), params, run fields."""

    owner: str
    project: str
    name: str
    run: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] | None = None
    metrics: dict[str, MetricRows] = field(default_factory=dict)
    logs: tuple[int, list[LogEntry]] | None = None
    voids: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # stream -> start, count, reason
    run_id: str | None = None  # None only for a file upload, which names no run identity
    writer_id: str | None = None
    writers: dict[str, str] = field(default_factory=dict)  # stream -> its rows' writer, when not writer_id
    named_reply: bool = False  # the client asked for the counts of this request's streams only
    docs_rev: int | None = None  # the stamp of ``run`` and ``params`` (document_order.py); None: always applied

    def streams(self) -> list[str]:
        """The streams the request names (rows or voids), each once."""
        names = [metric_stream(m) for m in self.metrics] + ([LOG_STREAM] if self.logs is not None else [])
        return list(dict.fromkeys(names + list(self.voids)))

    def rows(self) -> int:
        """The metric and log rows the request carries (voids are not rows)."""
        metric_rows = sum(rows for metric in self.metrics.values() for _, rows, _ in metric.chunks)
        return metric_rows + (len(self.logs[1]) if self.logs is not None else 0)

    def writer_of(self, stream: str) -> str | None:
        return self.writers.get(stream, self.writer_id)
