"""``search_runs``: the run table as a DataFrame, one row per run, from a local root or a server."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ..format.conditions import matches, parse_conditions
from . import _local, _remote
from ._deps import pandas
from ._source import LocalSource, resolve, split_project

#: The run's own columns, in this order: run fields of the layout under shorter names.
RUN_COLUMNS = ("prefix", "name", "status", "created", "started", "ended", "tags", "description", "hostname",
               "status_reason")
TIME_COLUMNS = {"created": "created_at", "started": "started_at", "ended": "ended_at"}
#: A metric's field that is the logging time, not a value (``history``'s ``time``).
TIME_FIELD = "_ts"


def search_runs(source: str | os.PathLike[str], *, project: str, filter: str | None = None,
                order_by: str | None = None, api_key: str | None = None) -> Any:
    """The runs of ``project`` (``"owner/project"``) as a pandas DataFrame, one row per run.

    Columns: ``prefix``, ``name``, ``status``, ``created``, ``started``, ``ended`` (UTC timestamps),
    ``tags``, ``description``, ``hostname``, ``status_reason``; ``params.<key>`` per parameter; and
    ``metrics.<stream>/<field>`` per metric stream and field: its latest value.

    ``source``: a local root of runs (``".dash"``, holding ``owner/project/name`` directories) or a
    server URL (``"http://host:8080"``; the key from ``api_key=``, else ``ML_DASH_API_KEY``).
    ``filter``: the web UI's conditions, ``"lr < 0.01, train/loss < 0.5"`` (ml_dash/format/conditions.py;
    a server evaluates them itself); :class:`~ml_dash.format.conditions.ConditionError` for one that is
    not. ``order_by``: a column, ``"-"`` first for descending (``"metrics.train/loss"``, ``"-created"``);
    missing values last. Default order: by prefix.
    """
    pd = pandas("ml_dash.search_runs")
    rows = [_row(r) for r in matching_records(source, project, filter, api_key)]
    return order(pd, runs_frame(pd, rows), order_by)


def matching_records(source: str | os.PathLike[str], project: str, filter: str | None,
                     api_key: str | None) -> list[dict[str, Any]]:
    """The runs of ``project`` that match ``filter``: their run fields, ``params`` and ``latest`` (stream ->
    field -> latest value)."""
    owner, name = split_project(project)
    conditions = parse_conditions(filter)  # a bad filter fails here, before anything is read
    where = resolve(source, api_key)
    if isinstance(where, LocalSource):
        records: Iterable[dict[str, Any]] = _local.run_records(where.root, owner, name)
    else:
        records = _remote.run_records(where, owner, name, filter)
    # a server already kept only the matching runs; checked again here, where it costs nothing, so that
    # an older server that ignores where= still gives the runs asked for
    return [r for r in records if matches(conditions, r["params"], r["latest"])]


def _row(record: dict[str, Any]) -> dict[str, Any]:
    prefix = record["prefix"]
    row = {"prefix": prefix, "name": prefix.rsplit("/", 1)[-1], "status": record.get("status"),
           **{column: record.get(field) for column, field in TIME_COLUMNS.items()},
           "tags": record.get("tags"), "description": record.get("description"), "hostname": record.get("hostname"),
           "status_reason": record.get("status_reason")}
    row.update((f"params.{key}", value) for key, value in sorted(record["params"].items()))
    for stream, fields in sorted(record["latest"].items()):
        row.update((f"metrics.{stream}/{field}", value) for field, value in fields.items() if field != TIME_FIELD)
    return row


def runs_frame(pd: Any, rows: list[dict[str, Any]]) -> Any:
    params = sorted({c for r in rows for c in r if c.startswith("params.")})
    metrics = sorted({c for r in rows for c in r if c.startswith("metrics.")})
    frame = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *params, *metrics])
    for column in TIME_COLUMNS:
        frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce", format="ISO8601")
    return frame


def order(pd: Any, frame: Any, order_by: str | None) -> Any:
    """``frame`` sorted by ``order_by`` (``-`` first: descending), missing values last, ties by prefix."""
    if not order_by:
        return frame.sort_values("prefix", kind="stable", ignore_index=True)
    column = order_by.removeprefix("-")
    if column not in frame.columns:
        near = [c for c in frame.columns if column.split(".")[-1] in c][:8] or list(frame.columns[:8])
        raise ValueError(f"order_by={order_by!r}: no column {column!r} (columns include: {', '.join(near)})")
    try:
        ordered = frame.sort_values("prefix", kind="stable").sort_values(
            column, ascending=not order_by.startswith("-"), kind="stable", na_position="last")
    except TypeError:
        raise ValueError(f"order_by={order_by!r}: the column holds values of kinds that do not compare "
                         "(numbers and text, say)") from None
    return ordered.reset_index(drop=True)
