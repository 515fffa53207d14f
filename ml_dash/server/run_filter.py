"""The run list's ``where=``: the web UI's conditions (``lr < 0.01, train/loss < 0.5``;
ml_dash/format/conditions.py) evaluated by the server, for ``ml_dash.search_runs(server, filter=)``.

A condition reads a run's params and the latest values of the metrics it names, which no SQL index of
ours holds; so the server walks the run list in its order, a page of runs at a time (their latest
values read for those metrics only), and keeps the runs that match. One request examines at most
:data:`FILTER_SCAN` runs, then answers with what matched and ``next``: the ``offset`` in the unfiltered
order to go on from. A filter that matches few runs of a large project therefore takes several short
requests, never one that reads the whole project.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..format.conditions import Condition, ConditionError, matches, metric_streams, parse_conditions
from ..format.naming import validate_metric_name
from .errors import BadRequest
from .storage.pages import MAX_NAMED_METRICS
from .storage.protocol import ExperimentRow, Storage

#: Runs one filtered request examines at most before answering with ``next``.
FILTER_SCAN = 10_000
_PAGE = 1_000

#: (limit, offset) -> that page of the unfiltered run list
ListPage = Callable[[int, int], Awaitable[Sequence[ExperimentRow]]]


def parse_where(text: str) -> tuple[list[Condition], list[str]]:
    """The conditions of ``where=`` and the metrics whose latest values they read (400 when it is none)."""
    try:
        conditions = parse_conditions(text)
    except ConditionError as exc:
        raise BadRequest(f"where: {exc}") from None
    named = []
    for stream in metric_streams(conditions):
        try:
            named.append(validate_metric_name(stream))
        except ValueError:
            continue  # no metric has such a name: the condition can only read a param
    if len(named) > MAX_NAMED_METRICS:
        raise BadRequest(f"where: its conditions name more than {MAX_NAMED_METRICS} metrics")
    return conditions, named


async def filtered_runs(storage: Storage, list_page: ListPage, conditions: list[Condition], named: list[str],
                        limit: int, offset: int) -> tuple[list[ExperimentRow], dict[int, Any], int | None]:
    """(the matching runs from ``offset`` on, at most ``limit``; their latest values as ``list_latest``
    gives them; the offset to go on from, None when the list was read to its end)."""
    found: list[ExperimentRow] = []
    latest_of: dict[int, Any] = {}
    position = offset
    while position - offset < FILTER_SCAN:
        size = min(_PAGE, FILTER_SCAN - (position - offset))
        page = list(await list_page(size, position))
        latest = await storage.list_latest([e["id"] for e in page], named) if page else {}
        for i, exp in enumerate(page):
            values: Mapping[str, Any] = latest.get(exp["id"], ({}, False))[0]
            if matches(conditions, exp["params"] or {}, values):
                found.append(exp)
                latest_of[exp["id"]] = latest.get(exp["id"], ({}, False))
                if len(found) == limit:
                    return found, latest_of, position + i + 1
        position += len(page)
        if len(page) < size:
            return found, latest_of, None
    return found, latest_of, position
