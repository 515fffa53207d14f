"""The bounds of the reads that page a run's streams and logs, and the small helpers that apply them:
every storage backend honours them, the handlers check requests against them (sqlite/streams.py says
how SQLite keeps each a key range)."""

from __future__ import annotations

from typing import Any

import msgpack

from ml_dash.format.layout import metric_name

#: Streams per page of the run document and of ``.../streams`` (its ``limit`` at most).
STREAM_PAGE = 1_000
#: Streams ``.../streams?q=`` examines per request: a filter that matches few names ends its page there,
#: with ``next``, instead of reading every stream of the run in one request.
FILTER_SCAN = 20_000
#: Metrics of each run whose latest values the run list carries unasked (the first by name).
LIST_LATEST_METRICS = 16
#: Metrics a run list may ask for by name (``latest_metrics=a,b``), on top of those.
MAX_NAMED_METRICS = 32
#: Field values of one run in the run list's ``latest``: a metric of thousands of fields is cut there.
MAX_LIST_VALUES = 256
#: A log page's budget in stored bytes (message and metadata), besides its ``limit`` in lines: lines may be
#: up to 1 MiB each, and 100,000 of them would otherwise be decoded into one reply.
MAX_LOG_PAGE_BYTES = 8 * 1024 * 1024


def within_budget(rows: list[tuple[str, bytes]], budget: int) -> tuple[dict[str, dict[str, Any]], bool]:
    """The metrics of ``rows`` (metric, msgpack latest values; the first of a name wins) with at most
    ``budget`` field values in all, and whether any field was left out (the run list's ``latest``)."""
    latest: dict[str, dict[str, Any]] = {}
    cut = False
    for metric, blob in rows:
        if metric in latest:
            continue
        if budget <= 0:
            return latest, True
        fields = msgpack.unpackb(blob)
        if len(fields) > budget:
            fields = dict(list(fields.items())[:budget])
            cut = True
        latest[metric] = fields
        budget -= len(fields)
    return latest, cut


def like_literal(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern with ESCAPE '\\' (PostgreSQL's default): its wildcards escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def key_page(rows: list[tuple[str, int]], limit: int) -> tuple[dict[str, int], str | None]:
    """(stream -> stored rows, next) from up to ``limit + 1`` (stream, stored) rows in name order: the
    first ``limit``, and the name to ask the rest after when there were more."""
    if len(rows) > limit:
        return dict(rows[:limit]), rows[limit - 1][0]
    return dict(rows), None


def filtered_page(scanned: list[tuple[str, int]], contains: str, limit: int,
                  after: str) -> tuple[dict[str, int], str | None]:
    """(stream -> stored rows, next) of the metric streams among ``scanned`` (up to :data:`FILTER_SCAN` + 1
    rows in name order from after ``after``) whose metric name holds ``contains`` (case-insensitive), at
    most ``limit`` of them; ``next`` is where to go on (None when the scan reached the end)."""
    wanted = contains.lower()
    found: dict[str, int] = {}
    last = after
    for stream, stored in scanned[:FILTER_SCAN]:
        metric = metric_name(stream)
        if metric is not None and wanted in metric.lower():
            if len(found) == limit:
                return found, last
            found[stream] = stored
        last = stream
    return found, (last if len(scanned) > FILTER_SCAN else None)


class LogBudget:
    """A page of log records cut by their stored bytes (at least one record): feed records in read
    order with :meth:`take` until it says stop; :meth:`page` gives the reply's records and ``next``."""

    def __init__(self, max_bytes: int, tail: bool) -> None:
        self.max_bytes = max_bytes
        self.tail = tail
        self.rows: list[tuple[int, bytes]] = []
        self.taken = 0
        self.cut: int | None = None

    def take(self, idx: int, record: bytes) -> bool:
        """Keep the record if it fits; False (stop reading) when it does not."""
        if self.rows and self.taken + len(record) > self.max_bytes:
            self.cut = None if self.tail else idx
            return False
        self.rows.append((idx, record))
        self.taken += len(record)
        return True

    def page(self) -> tuple[list[dict[str, Any]], int | None]:
        rows = self.rows[::-1] if self.tail else self.rows
        # the stored index wins over anything of the same name in the record (older servers kept it)
        return [{**msgpack.unpackb(record), "sequenceNumber": idx} for idx, record in rows], self.cut
