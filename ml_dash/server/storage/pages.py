"""The bounds of the reads that page a run's streams and logs, and the small helpers that apply them:
every storage backend honours them, the handlers check requests against them (sqlite/streams.py says
how SQLite keeps each a key range)."""

from __future__ import annotations

from typing import Any

import msgpack

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
