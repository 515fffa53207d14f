"""What the server measures of itself, for ``/metrics`` in Prometheus' text format (routes/operations.py).

One registry per application (not prometheus-client's global one: several apps in one process, as in
the tests, must not count into each other). Labels are bounded: a request is labelled by its route's
pattern (``/api/v1/experiments/{owner}/{project}/{name}``), never by its path, and a refusal by the
class of the error that refused it, so no client can grow the number of series.

What is counted:

* ``ml_dash_requests_total{method, route, status}`` and ``ml_dash_request_seconds{route}`` (a histogram
  of the time to the reply's start);
* ``ml_dash_ingest_rows_total``, ``ml_dash_ingest_bytes_total``: rows and body bytes (as sent, compressed)
  of the ingest requests that were stored;
* ``ml_dash_rejections_total{reason}``: requests answered with an error, by its class (``PayloadTooLarge``,
  ``Unavailable``, ``StorageFull``, ``HTTPNotFound`` ... and ``InternalError`` for a bug);
* ``ml_dash_archived_rows_total``, ``ml_dash_archived_chunks_total``, ``ml_dash_archived_log_lines_total``,
  ``ml_dash_archive_objects_total``,
  ``ml_dash_archive_object_bytes_total``: what this instance's archiver moved (storage/archive.py), and
  ``ml_dash_archive_passes_total{outcome}`` (``done``, ``failed``: the database or the blob store unreachable);
* gauges read when scraped: the body budget's bytes held and capacity, requests waiting for room,
  request bodies under way (each key has at most ``--max-bodies-per-key``), ingest work slots in use;
* the process's CPU, memory and open files (prometheus-client's process collector, on Linux).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..storage.archive import PassReport
from .admission import IngestGate
from .answers import REJECTION

#: Reply times a request may take, in seconds: from a page read (milliseconds) to a large body (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _GateCollector(Collector):
    """The ingest gate's state, read at each scrape (nothing to keep up to date on the hot path)."""

    def __init__(self, gate: IngestGate, slots: int) -> None:
        self.gate = gate
        self.slots = slots

    def collect(self) -> Iterator[GaugeMetricFamily]:
        bodies = self.gate.bodies
        yield GaugeMetricFamily("ml_dash_body_budget_used_bytes", "Request body bytes held in memory now",
                                value=bodies.used)
        yield GaugeMetricFamily("ml_dash_body_budget_capacity_bytes", "Request body bytes that may be held at once",
                                value=bodies.capacity)
        yield GaugeMetricFamily("ml_dash_body_waiters", "Requests waiting for room for their bodies",
                                value=bodies.waiting)
        yield GaugeMetricFamily("ml_dash_bodies_under_way", "Request bodies (ingest, file uploads) under way now",
                                value=self.gate.callers.total)
        # a Semaphore's free count is private; what is in use is the bound less it
        free = getattr(self.gate.work, "_value", self.slots)
        yield GaugeMetricFamily("ml_dash_ingest_slots_busy", "Ingest bodies being decoded or stored now",
                                value=self.slots - free)


class Instruments:
    """The application's counters and the registry ``/metrics`` renders."""

    def __init__(self, gate: IngestGate, slots: int, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ml_dash_requests", "Requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("ml_dash_request_seconds", "Time to the start of the reply", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rejections = Counter("ml_dash_rejections", "Requests answered with an error, by its class",
                                  ["reason"], registry=self.registry)
        self.ingest_rows = Counter("ml_dash_ingest_rows", "Rows of stored ingest requests", registry=self.registry)
        self.ingest_bytes = Counter("ml_dash_ingest_bytes", "Body bytes (as sent) of stored ingest requests",
                                    registry=self.registry)
        self.archived_rows = Counter("ml_dash_archived_rows", "Metric rows this instance archived", registry=self.registry)
        self.archived_chunks = Counter("ml_dash_archived_chunks", "Database chunks this instance archived",
                                       registry=self.registry)
        self.archived_log_lines = Counter("ml_dash_archived_log_lines", "Log lines this instance archived",
                                          registry=self.registry)
        self.archive_objects = Counter("ml_dash_archive_objects", "Archive objects this instance wrote",
                                       registry=self.registry)
        self.archive_bytes = Counter("ml_dash_archive_object_bytes", "Bytes of the archive objects this instance wrote",
                                     registry=self.registry)
        self.archive_passes = Counter("ml_dash_archive_passes", "Archival passes, by outcome", ["outcome"],
                                      registry=self.registry)
        self.registry.register(_GateCollector(gate, slots))
        if process:
            ProcessCollector(registry=self.registry)

    def ingested(self, rows: int, body_bytes: int) -> None:
        self.ingest_rows.inc(rows)
        self.ingest_bytes.inc(body_bytes)

    def archived(self, report: PassReport | None) -> None:
        """An archival pass's outcome (None: it failed)."""
        self.archive_passes.labels("failed" if report is None else "done").inc()
        if report is not None:
            self.archived_rows.inc(report.rows)
            self.archived_chunks.inc(report.chunks)
            self.archived_log_lines.inc(report.log_lines)
            self.archive_objects.inc(report.objects)
            self.archive_bytes.inc(report.object_bytes)


INSTRUMENTS = web.AppKey("instruments", Instruments)


def route_of(request: web.Request) -> str:
    """The request's route pattern, or ``unmatched`` (a 404 of any path is one series, not one per path)."""
    info = request.match_info
    route = info.route if info is not None else None
    if route is None or info.http_exception is not None:
        return "unmatched"
    return route.resource.canonical if route.resource is not None else "unmatched"


@web.middleware
async def instrument_middleware(request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Counts every request and times it to its reply (the outermost middleware, so refusals by the
    others are counted too)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # raised past the error middleware (a refused Host, say)
        status = exc.status
        raise
    finally:
        instruments = request.app[INSTRUMENTS]
        route = route_of(request)
        instruments.latency.labels(route).observe(time.perf_counter() - started)
        instruments.requests.labels(request.method, route, str(status)).inc()
        if status >= 400:
            instruments.rejections.labels(request.get(REJECTION) or f"HTTP{status}").inc()
