"""Reading runs from an ml-dash server: the run list (its ``where=`` evaluated by the server), each run's
latest values, and one stream through the columnar read (``.../columns``, ml_dash/format/columns.py),
or through pages of rows from a server that predates it.

Everything a server sends is checked before it is used: run prefixes must belong to the project asked
for (they become paths in ``ml-dash export``), maps must be maps, and a reply cut short is an error,
never a shorter series.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from ..errors import MLDashError
from ..format import layout
from ..format.columns import Chunk, ColumnsError, ColumnsReader
from ..format.conditions import metric_streams, parse_conditions
from ..format.latest import NON_FINITE_KEY, restore_non_finite
from ..format.naming import validate_metric_name, validate_prefix
from ..remote.reads import ServerReads
from ._columns import chunks_from_rows, frame_from_chunks
from ._errors import NotFoundError
from ._source import ServerSource

LIST_PAGE = 1_000  # the server's largest page of runs
MAX_LIST_PAGES = 100_000
#: One read of a reply's body; each is bounded by the socket timeout, and all of them by HISTORY_DEADLINE_S.
READ_BYTES = 1 << 20
TIMEOUT_S = 60.0
HISTORY_DEADLINE_S = 3600.0
MAX_COLUMN_REQUESTS = 10_000


def _reads(source: ServerSource, prefix: str) -> ServerReads:
    return ServerReads(source.url, prefix, source.api_key, source.user_name, timeout_s=TIMEOUT_S)


def run_records(source: ServerSource, owner: str, project: str, where: str | None) -> Iterator[dict[str, Any]]:
    """The project's runs (matching ``where``, evaluated by the server), each with its params and every
    metric's latest values (``latest``)."""
    reads = _reads(source, f"{owner}/{project}")
    named = [m for m in metric_streams(parse_conditions(where)) if _is_metric_name(m)]  # come with the list
    offset = 0
    for _ in range(MAX_LIST_PAGES):  # bounded: a server that pages for ever ends here
        query: dict[str, Any] = {"owner": owner, "project": project, "limit": LIST_PAGE, "offset": offset, "latest": "1"}
        if where:
            query["where"] = where
        if named:
            query["latest_metrics"] = ",".join(named)
        body = reads.api("/experiments", **query)
        runs = body.get("experiments") if isinstance(body, dict) else None
        if not isinstance(runs, list):
            raise MLDashError(f"{source.url} answered the run list of {owner}/{project} without a list of runs")
        for run in runs:
            yield _checked_run(source, owner, project, run)
        cut = body.get("next") if isinstance(body, dict) else None
        if type(cut) is int and cut > offset:
            offset = cut  # a filtered page: where the server's scan goes on
        elif len(runs) == LIST_PAGE and cut is None:
            offset += LIST_PAGE
        else:
            return
    raise MLDashError(f"{source.url} sent more than {MAX_LIST_PAGES} pages of runs of {owner}/{project}")


def _is_metric_name(name: str) -> bool:
    try:
        validate_metric_name(name)
    except ValueError:
        return False  # "a/b/c < 1" names no metric: the condition reads a param, or nothing
    return True


def _checked_run(source: ServerSource, owner: str, project: str, run: Any) -> dict[str, Any]:
    prefix = run.get("prefix") if isinstance(run, dict) else None
    try:
        parts = validate_prefix(prefix)
    except (TypeError, ValueError) as exc:
        raise MLDashError(f"{source.url} listed a run of {owner}/{project} with a bad prefix: {exc}") from None
    if parts[:2] != (owner, project):
        raise MLDashError(f"{source.url} listed the run {prefix!r} among those of {owner}/{project}")
    latest, holder = run.get("latest"), run
    assert isinstance(prefix, str)  # validated above
    if run.get("latest_more") or not isinstance(latest, dict):
        holder = _reads(source, prefix).experiment() or {}
        latest = holder.get("latest")
    marks = holder.get(NON_FINITE_KEY)
    record = {key: run.get(key) for key in layout.RUN_FIELDS}
    record.update(prefix=prefix, params=_map(run.get("params")),
                  latest={k: restore_non_finite(_map(v), _marked(marks, k)) for k, v in _map(latest).items()
                          if isinstance(k, str)})
    return record


def _marked(marks: Any, metric: str) -> Any:
    """The fields of ``metric`` the server marked non-finite: [] for none; None where the server marks
    nothing at all (an older one: every name is then read as a float)."""
    if marks is None:
        return None
    return marks.get(metric, []) if isinstance(marks, dict) else []


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def history(pd: ModuleType, source: ServerSource, prefix: str, metric: str) -> Any:
    """Every row of ``metric`` of ``prefix`` on the server, as a DataFrame."""
    validate_prefix(prefix)
    validate_metric_name(metric)
    reads = _reads(source, prefix)
    chunks = _column_chunks(reads, metric)
    if chunks is None:  # the run is missing, or the server has no columnar read: its pages then
        if reads.experiment() is None:
            raise NotFoundError(f"{source.url} has no run {prefix}")
        rows = [r for r in reads.metric_rows(metric, 0, None) if isinstance(r.get("data"), dict)]
        chunks = chunks_from_rows(rows)
    if not chunks:
        _check_stream(reads, prefix, metric)
    return frame_from_chunks(pd, chunks)


def _column_chunks(reads: ServerReads, metric: str) -> list[Chunk] | None:
    """The stream's chunks through ``.../columns``, request after request while a reply's ``next`` says
    more follow; None when the server answers 404 (no such run, or no such route)."""
    path = f"/metrics/{urllib.parse.quote(metric, safe='')}/columns"
    deadline = time.monotonic() + HISTORY_DEADLINE_S
    chunks: list[Chunk] = []
    start = 0
    for _ in range(MAX_COLUMN_REQUESTS):
        response = reads.open_stream(path, start=start)
        if response is None:
            return None
        reader = ColumnsReader(metric)
        try:
            with response:
                while piece := response.read(READ_BYTES):
                    chunks.extend(reader.feed(piece))
                    if time.monotonic() > deadline:
                        raise MLDashError(f"reading {metric!r} of {reads.prefix} from {reads.remote} took more than "
                                          f"{HISTORY_DEADLINE_S:g} s")
            cut = reader.close()
        except ColumnsError as exc:
            raise MLDashError(f"{reads.remote}: {exc}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:  # reset, timeout, a broken chunked body
            raise MLDashError(f"cannot read {metric!r} of {reads.prefix} from {reads.remote}: the reply broke off "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None
        if cut is None:
            return chunks
        start = cut
    raise MLDashError(f"{reads.remote} sent more than {MAX_COLUMN_REQUESTS} replies for {metric!r} of {reads.prefix}")


def _check_stream(reads: ServerReads, prefix: str, metric: str) -> None:
    """An empty reply: NotFoundError unless the run has the stream (all of whose rows may be set aside)."""
    doc = reads.experiment()
    if doc is None:
        raise NotFoundError(f"{reads.remote} has no run {prefix}")
    streams = _map(doc.get("streams"))
    if layout.metric_stream(metric) not in streams:
        have = sorted(n for s in streams if isinstance(s, str) and (n := layout.metric_name(s)))
        raise NotFoundError(f"run {prefix} on {reads.remote} has no metric {metric!r} "
                            f"(it has: {', '.join(have[:20]) or 'none'})")
