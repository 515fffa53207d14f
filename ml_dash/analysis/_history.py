"""``history``: every row of one metric stream as a DataFrame, from a local root or a server."""

from __future__ import annotations

import os
from typing import Any

from . import _local, _remote
from ._deps import pandas
from ._source import LocalSource, resolve


def history(source: str | os.PathLike[str], prefix: str, metric: str, *, api_key: str | None = None) -> Any:
    """Every row of the metric stream ``metric`` of the run ``prefix`` (``"owner/project/name"``) as a
    pandas DataFrame: indexed by the stream's ``index``, a ``time`` column (UTC timestamps of the
    logging calls) and one column per field (missing where a row lacks the field).

    Built column by column, never from a dict per row: a local file through Arrow's JSON reader (rows
    with non-finite floats or damaged lines through a tolerant reader that warns of what it left out),
    a server's stream through its columnar read. ``source`` and ``api_key`` as for :func:`search_runs`.
    :class:`~ml_dash.analysis.NotFoundError` when the run or the stream does not exist (naming the
    streams it has).
    """
    pd = pandas("ml_dash.history")
    where = resolve(source, api_key)
    if isinstance(where, LocalSource):
        return _local.history(pd, where.root, prefix, metric)
    return _remote.history(pd, where, prefix, metric)
