"""The ml-dash server: an aiohttp application factory.

Routes (JSON unless noted)::

    GET  /health, /ready, /metrics                               alive; stores reachable; Prometheus (routes/operations.py)
    GET  /, /ui/{file}                                          the web UI (server/ui.py)
                  on ``ml-dash ui``, every route but these and /health needs its token
                  in ``Authorization: token`` (server/http/ui_token.py)
    POST|GET|DELETE /api/v1/session                             browser sessions (server/sessions.py)
    POST /api/v1/runs/{owner}/{project}/{name}/events          bulk ingest (msgpack, zstd/gzip)
    GET  /api/v1/limits                                         the read API's caps, for the UI (server/routes/limits.py)
    GET  /api/v1/owners                                         owners the caller may read
    GET  /api/v1/projects?owner=                                that owner's projects
    GET  /api/v1/experiments?owner=&project=&prefix=&status=&tag=&limit=&offset=&order=&latest=1&latest_metrics=&where=
                  where=: the UI's conditions, evaluated here (server/run_filter.py); the reply's
                  ``next`` is the offset to go on from; order=recent: the runs last written to first
    GET  /api/v1/experiments/{owner}/{project}/{name}           the run, and its first 1,000 streams
    GET  /api/v1/experiments/{owner}/{project}/{name}/streams?after=&limit=&q=   the next ones
    GET  /api/v1/experiments/{owner}/{project}/{name}/logs?start=&limit=&level=&q=&tail=
    GET  /api/v1/experiments/{owner}/{project}/{name}/metrics/{metric}?start=&limit=&buckets=
    GET  /api/v1/experiments/{owner}/{project}/{name}/metrics/{metric}/columns?start=&limit=   the whole
                  stream as its stored chunks, streamed (msgpack; format/columns.py, routes/columns.py)
    GET  /api/v1/compare/metrics/{metric}?runs=o/p/n,...&buckets=&fields=   one metric of many runs, bucketed
    PUT  /api/v1/runs/{owner}/{project}/{name}/files/{path}    streamed body, X-Content-SHA256 required
    GET  /api/v1/experiments/{owner}/{project}/{name}/files           the files' metadata
    GET  /api/v1/experiments/{owner}/{project}/{name}/files/{path}    the content (?preview=1: as text or image)

Status codes (server/errors.py): 4xx for every permanent error (400 malformed,
401 no or bad key, 403 another owner's prefix, 404, 409 a batch past the
stored rows or rows of another run, 413 too large, 415 encoding, 422 a run's metrics past its
limit, and 429 a key with as many bodies under way as it may, which clients retry after its
Retry-After), 5xx only for transient ones (500 a bug, 503 an ingest worker died, no room for the
body in time or as many connections as the server holds, 507 the disk is full).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from ..format.jsonlines import mark_non_finite_metric_row
from ..format.latest import non_finite_fields
from ..format.naming import MAX_SEGMENT_CHARS, validate_metric_name, validate_prefix
from ..format.vocabulary import STATUSES, normalise_level
from . import sessions, ui
from .access import (
    BLOBS,
    CONFIG,
    GATE,
    LOCAL_INDEX,
    PREPARER,
    STORAGE,
    caller,
    check_read,
    experiment_of,
    int_query,
    metric_of,
    public_view,
    readable_owner,
    run_prefix,
)
from .archiver import Archiver
from .blobs.factory import open_blobs
from .config import ServerConfig
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Unauthorized,
    Unprocessable,
    UpgradeRequired,
)
from .http.admission import BODY_STEP_BYTES, IngestGate
from .http.answers import error_middleware, json_response
from .http.bodies import declared_size, read_held_body
from .http.etags import conditional_json
from .http.hosts import ALLOWED_HOSTS, host_middleware
from .http.instruments import INSTRUMENTS, Instruments, instrument_middleware
from .http.request_text import text_middleware
from .http.timing import timing_middleware
from .http.ui_token import UI_TOKEN, token_middleware
from .ingest.prepare import Preparer
from .local_index import LocalIndex
from .routes import operations
from .routes.columns import get_metric_columns
from .routes.files import get_file, list_files, put_file
from .routes.limits import MAX_BUCKETS, MAX_COMPARED_BUCKETS, MAX_COMPARED_RUNS, MAX_READ_ROWS, get_limits
from .run_filter import filtered_runs, parse_where
from .storage.buckets import SUMMARY_WIDTHS
from .storage.errors import ConflictError, GapError, StreamLimitError, UnnamedReplyError
from .storage.factory import open_storage
from .storage.pages import MAX_NAMED_METRICS, STREAM_PAGE
from .storage.protocol import LIST_ORDERS, ExperimentRow, Storage
from .ui import security_headers

logger = logging.getLogger("ml_dash.server")

MAX_SEARCH_CHARS = 200
MAX_STREAM_NAME_CHARS = len("metrics/") + MAX_SEGMENT_CHARS


def create_app(config: ServerConfig, storage: Storage | None = None, local_root: Path | None = None) -> web.Application:
    """Build the application over ``storage`` (opened; the app closes it at shutdown), by default the
    one ``config.storage_url`` names, opened at start (SQLite under ``config.data_dir`` unless
    told otherwise), and the blob store ``config.blob_url`` names. With ``local_root``
    (``ml-dash ui``), that database is a private index of the run directories under it
    (server/local_index.py), brought up to date before each read.

    Serve it with ``auto_decompress=False`` (as :func:`ml_dash.server.serve.serve` does):
    ingest decompresses bodies itself, with a cap.
    """
    # the token is checked before anything else reads the request, and before the local index is
    # refreshed: a request without it costs nothing and learns nothing
    middlewares = [instrument_middleware, timing_middleware, host_middleware, token_middleware, text_middleware, error_middleware]
    if local_root is not None:
        middlewares.append(refresh_local_index)
    app = web.Application(client_max_size=config.body_limits.max_compressed_bytes, middlewares=middlewares)
    app.on_response_prepare.append(security_headers)
    app[CONFIG] = config
    app[GATE] = IngestGate(config.body_memory_bytes, config.body_queue, config.body_wait_s, config.ingest_slots,
                           config.max_bodies_per_key)
    app[INSTRUMENTS] = Instruments(app[GATE], config.ingest_slots)
    if config.allowed_hosts is not None:
        app[ALLOWED_HOSTS] = config.allowed_hosts
    if config.ui_token is not None:
        app[UI_TOKEN] = config.ui_token

    async def open_stores(app: web.Application):  # cleanup_ctx: opened at start, closed at shutdown
        store = storage or await open_storage(config.storage_url)
        app[STORAGE] = store
        if local_root is not None:  # the files are served from the run directories, not stored
            app[LOCAL_INDEX] = LocalIndex(local_root, store)
            app[BLOBS] = app[LOCAL_INDEX].blobs
            await app[LOCAL_INDEX].refresh(force=True)
        else:
            app[BLOBS] = await open_blobs(config.blob_url)
            store.read_archive_from(app[BLOBS])
        preparer = app[PREPARER] = Preparer(config, config.ingest_workers)
        archiver = Archiver(config, store, app[BLOBS], app[INSTRUMENTS].archived) \
            if local_root is None and not config.read_only else None
        try:
            await preparer.start()
            if archiver is not None:
                archiver.start()
            yield
        finally:
            if archiver is not None:
                await archiver.stop()
            preparer.close()
            await app[BLOBS].close()
            await store.close()

    app.cleanup_ctx.append(open_stores)
    operations.add_routes(app, with_metrics=config.metrics_token_sha256 is not None)
    ui.add_routes(app)
    base = "/api/v1"
    app.router.add_get(base + "/session", get_session)
    if not config.open_reads:
        app.router.add_post(base + "/session", post_session)
        app.router.add_delete(base + "/session", delete_session)
    if not config.read_only:
        app.router.add_post(base + "/runs/{owner}/{project}/{name}/events", ingest)
        app.router.add_put(base + "/runs/{owner}/{project}/{name}/files/{path:.+}", put_file)
    app.router.add_get(base + "/limits", get_limits)
    app.router.add_get(base + "/owners", list_owners)
    app.router.add_get(base + "/projects", list_projects)
    app.router.add_get(base + "/experiments", list_experiments)
    app.router.add_get(base + "/experiments/{owner}/{project}/{name}", get_experiment)
    app.router.add_get(base + "/experiments/{owner}/{project}/{name}/streams", get_streams)
    app.router.add_get(base + "/experiments/{owner}/{project}/{name}/logs", get_logs)
    app.router.add_get(base + "/experiments/{owner}/{project}/{name}/metrics/{metric}", get_metric)
    app.router.add_get(base + "/experiments/{owner}/{project}/{name}/metrics/{metric}/columns", get_metric_columns)
    app.router.add_get(base + "/compare/metrics/{metric}", compare_metric)
    app.router.add_get(base + "/experiments/{owner}/{project}/{name}/files", list_files)
    app.router.add_get(base + "/experiments/{owner}/{project}/{name}/files/{path:.+}", get_file)
    return app


@web.middleware
async def refresh_local_index(request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """``ml-dash ui``: what the run directories hold now, before a read of the API answers."""
    if request.method == "GET" and request.path.startswith("/api/"):
        await request.app[LOCAL_INDEX].refresh()
    return await handler(request)


# -- authentication ------------------------------------------------------------


# -- browser sessions (server/sessions.py) ---------------------------------------
async def post_session(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return await sessions.sign_in(request, request.app[STORAGE], config.allow_user_name, config.body_idle_timeout_s)


async def get_session(request: web.Request) -> web.Response:
    """Who the browser is signed in as: ``{"owner": null}`` when nobody (the UI's first question,
    which is not an error)."""
    try:
        return json_response({"owner": await caller(request)})
    except Unauthorized:
        return json_response({"owner": None, "user_names": request.app[CONFIG].allow_user_name})


async def delete_session(request: web.Request) -> web.Response:
    return await sessions.sign_out(request, request.app[STORAGE])


# -- ingest --------------------------------------------------------------------
async def ingest(request: web.Request) -> web.Response:
    """Bounded before any work (server/http/admission.py): one of the caller's bodies under way; the body
    holds of the body budget what has arrived and a step ahead, the first step taken before it is read;
    and it is decoded and stored while holding one of a few work slots."""
    owner, project, name = run_prefix(request)
    who = await caller(request)
    if who != owner:
        raise Forbidden(f"{who!r} may write only under {who}/...")
    config = request.app[CONFIG]
    limit = config.body_limits.max_compressed_bytes
    gate = request.app[GATE]
    first_step = min(declared_size(request, limit), BODY_STEP_BYTES)
    async with gate.callers.admit(who), gate.bodies.hold(first_step, who) as hold:
        raw = await read_held_body(request, limit, hold, config.body_idle_timeout_s, config.body_min_bytes_per_s)
        async with gate.work:
            batch = await request.app[PREPARER].batch(raw, request.headers.get("Content-Encoding"), owner, project, name)
            try:
                acked = await request.app[STORAGE].ingest(batch, config.max_metrics_per_run)
            except GapError as exc:
                raise Conflict(str(exc), **exc.reply.fields()) from None
            except ConflictError as exc:
                raise Conflict(str(exc), conflict=exc.details) from None
            except StreamLimitError as exc:
                raise Unprocessable(str(exc), streams=exc.streams, limit=exc.limit) from None
            except UnnamedReplyError as exc:
                raise UpgradeRequired(str(exc)) from None
    request.app[INSTRUMENTS].ingested(batch.rows(), len(raw))
    return json_response(acked.fields())


# -- reads ---------------------------------------------------------------------


async def list_owners(request: web.Request) -> web.Response:
    who = await caller(request)
    storage = request.app[STORAGE]
    owners = await storage.all_owners() if request.app[CONFIG].open_reads else await storage.owners(who)
    return json_response({"owners": owners})


async def list_projects(request: web.Request) -> web.Response:
    owner = await readable_owner(request)
    return json_response({"owner": owner, "projects": await request.app[STORAGE].projects(owner)})


async def list_experiments(request: web.Request) -> web.Response:
    owner = await readable_owner(request)
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status={status!r} is not one of {', '.join(STATUSES)}")
    # the filter matches what the list shows: a RUNNING run silent past the timeout shows as CRASHED
    silent_since = time.time() - request.app[CONFIG].crashed_after_s
    storage = request.app[STORAGE]
    order = list_order(request)

    def list_page(limit: int, offset: int) -> Awaitable[Sequence[ExperimentRow]]:
        return storage.list_experiments(owner, request.query.get("project"), status, request.query.get("tag"), limit,
                                        offset, request.query.get("prefix"), silent_since, order)

    limit, offset = int_query(request, "limit", 100, 1, 1000), int_query(request, "offset", 0, 0, 10**9)
    named = latest_names(request)
    where = request.query.get("where", "")
    if where.strip():
        conditions, read = parse_where(where)
        matched, latest, cut = await filtered_runs(storage, list_page, conditions, read, limit, offset)
        found: Sequence[Mapping[str, Any]] = matched
        if request.query.get("latest") == "1" or named:  # what the conditions read, and what was asked for
            if set(named) - set(read):
                latest = await storage.list_latest([e["id"] for e in matched], named)
            found = [{**e, **latest_part(*latest.get(e["id"], ({}, False)))} for e in matched]
        return json_response({"experiments": [public_view(request, e) for e in found], **page_next(cut)})
    rows: Sequence[Mapping[str, Any]] = await list_page(limit, offset)
    if request.query.get("latest") == "1" or named:  # latest metric values, for the run table (bounded)
        latest = await storage.list_latest([e["id"] for e in rows], named)
        rows = [{**e, **latest_part(*latest.get(e["id"], ({}, False)))} for e in rows]
    return json_response({"experiments": [public_view(request, e) for e in rows]})


def list_order(request: web.Request) -> str:
    """``order=``: ``name`` (the default) or ``recent`` (the runs last written to first)."""
    order = request.query.get("order", "name")
    if order not in LIST_ORDERS:
        raise BadRequest(f"order={order!r} is not one of {', '.join(LIST_ORDERS)}")
    return order


def latest_names(request: web.Request) -> list[str]:
    """``latest_metrics=a,b``: the metrics whose latest values the run list must carry (checked names)."""
    names = list(dict.fromkeys(n for n in request.query.get("latest_metrics", "").split(",") if n))
    if len(names) > MAX_NAMED_METRICS:
        raise BadRequest(f"latest_metrics names at most {MAX_NAMED_METRICS} metrics")
    try:
        return [validate_metric_name(n) for n in names]
    except ValueError as exc:
        raise BadRequest(f"latest_metrics: {exc}") from None


def latest_part(latest: dict[str, dict[str, Any]], more: bool) -> dict[str, Any]:
    """A reply's latest values (run list, run document, stream pages): the values, which are non-finite
    floats, and ``latest_more`` where some were left out."""
    part = {"latest": latest, **non_finite_fields(latest)}
    return {**part, "latest_more": True} if more else part


async def get_experiment(request: web.Request) -> web.Response:
    """One run, with the first page of its streams (sizes, and each metric field's latest value) and
    ``streams_next`` where more follow (``.../streams?after=``)."""
    exp = await experiment_of(request)
    streams, latest, cut = await request.app[STORAGE].stream_page(exp["id"], "", STREAM_PAGE)
    doc = {**public_view(request, exp), "streams": streams, **latest_part(latest, more=False)}
    if cut is not None:
        doc["streams_next"] = cut
    return conditional_json(request, doc)


async def get_streams(request: web.Request) -> web.Response:
    """A page of the run's streams after the name ``after`` (``limit`` at most 1,000; ``q``: metrics whose
    name holds it), with their metrics' latest values, and ``next`` where more follow."""
    exp = await experiment_of(request)
    after = request.query.get("after", "")
    search = request.query.get("q") or None
    if len(after) > MAX_STREAM_NAME_CHARS or (search is not None and len(search) > MAX_SEARCH_CHARS):
        raise BadRequest(f"after is at most {MAX_STREAM_NAME_CHARS} characters, q at most {MAX_SEARCH_CHARS}")
    streams, latest, cut = await request.app[STORAGE].stream_page(
        exp["id"], after, int_query(request, "limit", STREAM_PAGE, 1, STREAM_PAGE), search)
    return conditional_json(request, {"streams": streams, **latest_part(latest, more=False),
                                      **({} if cut is None else {"next": cut})})


async def get_logs(request: web.Request) -> web.Response:
    """Lines from ``start`` (``tail=1``: the last ``limit``), of ``level``, holding ``q`` in their
    message: filters over the whole run, not over a page."""
    exp = await experiment_of(request)
    level = request.query.get("level")
    try:
        wanted = normalise_level(level) if level else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    search = request.query.get("q") or None
    if search is not None and len(search) > MAX_SEARCH_CHARS:
        raise BadRequest(f"q is at most {MAX_SEARCH_CHARS} characters")
    rows, cut = await request.app[STORAGE].log_rows(
        exp["id"], int_query(request, "start", 0, 0, 2**62), int_query(request, "limit", 1000, 1, MAX_READ_ROWS), wanted,
        search, request.query.get("tail") == "1")
    return json_response({"logs": rows, **page_next(cut)})


async def get_metric(request: web.Request) -> web.Response:
    """Rows from ``start`` (a page of ``limit``), or with ``buckets=N`` at most N min/max/last buckets
    over ``start:end`` (default: the whole series) in one call."""
    exp = await experiment_of(request)
    metric = metric_of(request)
    start = int_query(request, "start", 0, 0, 2**62)
    buckets = int_query(request, "buckets", 0, 0, MAX_BUCKETS)
    storage = request.app[STORAGE]
    if buckets:
        end = int_query(request, "end", -1, start, 2**62) if "end" in request.query else None
        if end is None and "limit" in request.query:  # older clients bound the range with limit
            end = start + int_query(request, "limit", 1000, 1, 2**62)
        width = fixed_width(request, start, end, buckets)
        width, found = await storage.metric_buckets(exp["id"], metric, start, end, buckets, width)
        return json_response({"metric": metric, "width": width, "buckets": found})
    rows, cut = await storage.metric_rows(exp["id"], metric, start, int_query(request, "limit", 1000, 1, MAX_READ_ROWS))
    return json_response({"metric": metric, "rows": [mark_non_finite_metric_row(r) for r in rows], **page_next(cut)})


def page_next(cut: int | None) -> dict[str, int]:
    """``next``, only on a page cut short by its size budget: the index to ask the rest from (a full or
    final page carries none, so an older reader that stops at a short page sees no change for those)."""
    return {} if cut is None else {"next": cut}


def fixed_width(request: web.Request, start: int, end: int | None, buckets: int) -> int | None:
    """``width=W``: buckets of W indices aligned to multiples of W (a live chart asks for its last
    bucket and the new ones with the width it holds). Below 64, or a multiple of the widest stored
    summary not above it (64, 1,024 or 16,384, as the widths the server chooses are), so that a
    bucket is made of at most 16 summaries but for a range's ends; ``start:end`` in at most
    ``buckets`` of them."""
    if "width" not in request.query:
        return None
    width = int_query(request, "width", 1, 1, 2**62)
    widest = max((w for w in SUMMARY_WIDTHS if w <= width), default=None)
    if widest is not None and width % widest:
        raise BadRequest(f"width={width} must be below {SUMMARY_WIDTHS[0]} or a multiple of {widest}")
    if end is None:
        raise BadRequest("width= needs end=")
    if end > start and (end - 1) // width - start // width + 1 > buckets:
        raise BadRequest(f"width={width} makes more than buckets={buckets} buckets over {start}:{end}")
    return width


async def compare_metric(request: web.Request) -> web.Response:
    """One metric of several runs (``?runs=owner/project/name,...``) in buckets, in one call: the
    UI's overlay of many runs, which would otherwise cost a request per run."""
    metric = metric_of(request)
    prefixes = [p for p in request.query.get("runs", "").split(",") if p]
    if not 1 <= len(prefixes) <= MAX_COMPARED_RUNS:
        raise BadRequest(f"runs= names 1 to {MAX_COMPARED_RUNS} runs, comma-separated")
    buckets = int_query(request, "buckets", 1000, 1, MAX_BUCKETS)
    runs = len(dict.fromkeys(prefixes))
    if runs * buckets > MAX_COMPARED_BUCKETS:
        raise BadRequest(f"{runs} runs of {buckets} buckets: at most {MAX_COMPARED_BUCKETS} buckets in all; ask for fewer")
    # only the fields a chart draws (a third of the reply when _ts is left out, say)
    wanted = {f for f in request.query.get("fields", "").split(",") if f} or None
    who = await caller(request)
    storage = request.app[STORAGE]
    out: dict[str, Any] = {}
    for prefix in dict.fromkeys(prefixes):
        try:
            owner, project, name = validate_prefix(prefix)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"runs: {exc}") from None
        await check_read(request, who, owner)
        exp = await storage.experiment(owner, project, name)
        found = [] if exp is None else (await storage.metric_buckets(exp["id"], metric, 0, None, buckets))[1]
        if wanted is not None:
            found = [{**b, "fields": {k: v for k, v in b["fields"].items() if k in wanted}} for b in found]
        out[prefix] = found
    return json_response({"metric": metric, "runs": out})


