"""A run's streams and latest metric values, read a bounded page at a time (the run document, the run list).

A run may hold 100,000 metric streams (``--max-metrics-per-run``). Both tables read here are keyed by
(run, name), ``stream_counts`` by stream and ``metric_latest`` by metric, and a metric's stream is
``metrics/<metric>`` (a metric name holds no '/'), so both sort alike. So:

* the run document carries one page of :data:`STREAM_PAGE` streams (in name order) with the latest
  values of that page's metrics, and ``streams_next``: the name after which the next page begins
  (``GET .../streams?after=``); each page is a range of the primary key;
* the run list carries, per run, the latest values of the metrics asked for by name (at most
  :data:`MAX_NAMED_METRICS`) and of its first :data:`LIST_LATEST_METRICS` metrics by name, at most
  :data:`MAX_LIST_VALUES` field values in all, marked ``latest_more`` where anything was left out;
  each a key lookup or a short range, never a scan of the run's streams.

Every function runs on a reader's thread, with that thread's connection.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgpack

from ml_dash.format.layout import metric_name

from ..pages import FILTER_SCAN, LIST_LATEST_METRICS, MAX_LIST_VALUES, MAX_NAMED_METRICS, STREAM_PAGE, within_budget


def stream_page(db: sqlite3.Connection, exp_id: int, after: str, limit: int = STREAM_PAGE,
                contains: str | None = None) -> tuple[dict[str, int], str | None]:
    """(stream -> stored rows, next): up to ``limit`` streams named after ``after``, in name order, and the
    name to ask the rest after (None at the end). With ``contains``, only metric streams whose metric
    name holds it (case-insensitive); such a page examines at most :data:`FILTER_SCAN` streams."""
    if contains is None:
        rows = db.execute("SELECT stream, stored FROM stream_counts WHERE exp_id = ? AND stream > ? "
                          "ORDER BY stream LIMIT ?", (exp_id, after, limit + 1)).fetchall()
        if len(rows) > limit:
            return dict(rows[:limit]), rows[limit - 1][0]
        return dict(rows), None
    wanted = contains.lower()
    found: dict[str, int] = {}
    last = after
    scanned = db.execute("SELECT stream, stored FROM stream_counts WHERE exp_id = ? AND stream > ? "
                         "ORDER BY stream LIMIT ?", (exp_id, after, FILTER_SCAN + 1)).fetchall()
    for stream, stored in scanned[:FILTER_SCAN]:
        metric = metric_name(stream)
        if metric is not None and wanted in metric.lower():
            if len(found) == limit:
                return found, last
            found[stream] = stored
        last = stream
    return found, (last if len(scanned) > FILTER_SCAN else None)


def page_latest(db: sqlite3.Connection, exp_id: int, streams: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Each field's latest value of the metrics among ``streams`` (one page: a range of the key)."""
    metrics = sorted(m for m in map(metric_name, streams) if m is not None)
    if not metrics:
        return {}
    rows = db.execute("SELECT metric, latest FROM metric_latest WHERE exp_id = ? AND metric >= ? AND metric <= ?",
                      (exp_id, metrics[0], metrics[-1]))
    named = set(metrics)
    return {metric: msgpack.unpackb(blob) for metric, blob in rows if metric in named}


def list_latest(db: sqlite3.Connection, exp_ids: list[int],
                named: list[str]) -> dict[int, tuple[dict[str, dict[str, Any]], bool]]:
    """Per run of ``exp_ids``: (metric -> field -> latest value, whether any was left out) for the run
    list: the ``named`` metrics first, then the run's first :data:`LIST_LATEST_METRICS` by name, at most
    :data:`MAX_LIST_VALUES` values."""
    named = named[:MAX_NAMED_METRICS]
    out: dict[int, tuple[dict[str, dict[str, Any]], bool]] = {}
    for exp_id in exp_ids:
        rows: list[tuple[str, bytes]] = []
        if named:
            rows += db.execute(f"SELECT metric, latest FROM metric_latest WHERE exp_id = ? AND metric IN "
                               f"({','.join('?' * len(named))})", (exp_id, *named)).fetchall()
        first = db.execute("SELECT metric, latest FROM metric_latest WHERE exp_id = ? ORDER BY metric LIMIT ?",
                           (exp_id, LIST_LATEST_METRICS + 1)).fetchall()
        more = len(first) > LIST_LATEST_METRICS
        latest, cut = within_budget(rows + first[:LIST_LATEST_METRICS], MAX_LIST_VALUES)
        if latest:
            out[exp_id] = (latest, more or cut)
    return out
