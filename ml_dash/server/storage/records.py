"""What the handlers and a storage backend exchange: a validated batch, and the three refusals of ingest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from ml_dash.format.layout import LOG_STREAM, RUN_FIELDS, metric_stream

RUN_COLUMNS = RUN_FIELDS  # experiment.json's run fields are the experiments table's columns


class GapError(Exception):
    """A batch starts past what is stored: the client must resend from ``acked``."""

    def __init__(self, stream: str, acked: int) -> None:
        super().__init__(f"stream {stream!r} has {acked} rows stored; a batch must start at or before that")
        self.stream = stream
        self.acked = acked
        #: what the 409 says: the counts of the request's streams, filled in by the storage after rolling back
        self.reply = Acknowledgement({stream: acked}, 0, 0)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """What an ingest reply says (ml_dash/format/wire.py, "Replies"): the stored count of each stream it names
    (those of the request; every stream of a small run for a client that did not ask for named counts),
    and the run's totals, which let a client see that the server holds less than it acknowledged."""

    acked: dict[str, int]
    run_streams: int
    run_rows: int

    def fields(self) -> dict[str, Any]:
        """The reply's JSON fields."""
        return {"acked": self.acked, "run_streams": self.run_streams, "run_rows": self.run_rows}


class UnnamedReplyError(Exception):
    """A body without ``"reply": "named"`` (an older SDK) for a run of more streams than a reply lists whole:
    that SDK reads a stream missing from a reply as "none stored", so nothing of it is stored."""

    def __init__(self, streams: int, limit: int) -> None:
        super().__init__(f"this run holds {streams} streams; a reply lists the streams of its request only, which "
                         f"the ml-dash that sent this body (without \"reply\": \"named\") reads as losing the "
                         f"others: upgrade it to upload runs of more than {limit} streams (its rows stay on its disk)")


class ConflictError(Exception):
    """Rows under stored indices from another run or another writer: never acknowledged."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


class StreamLimitError(Exception):
    """New metric streams past what one run may hold: nothing of the batch is stored. ``streams`` are the
    batch's new streams that do not fit (those before them would)."""

    def __init__(self, streams: list[str], limit: int, held: int) -> None:
        super().__init__(f"a run holds at most {limit} metrics; this one holds {held}, and {len(streams)} more "
                         f"of this request do not fit ({streams[0]}{', ...' if len(streams) > 1 else ''})")
        self.streams = streams
        self.limit = limit


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

    def streams(self) -> list[str]:
        """The streams the request names (rows or voids), each once."""
        names = [metric_stream(m) for m in self.metrics] + ([LOG_STREAM] if self.logs is not None else [])
        return list(dict.fromkeys(names + list(self.voids)))

    def writer_of(self, stream: str) -> str | None:
        return self.writers.get(stream, self.writer_id)
