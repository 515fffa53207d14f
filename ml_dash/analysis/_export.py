"""``ml-dash export SOURCE --project P --parquet DIR``: the run table and every metric stream as Parquet.

Layout written::

    DIR/runs.parquet                                   search_runs(SOURCE, project=P, filter=...)
    DIR/<owner>/<project>/<name>/<stream>.parquet      history(SOURCE, prefix, stream), one per stream

Every name that becomes a path (a run's prefix, a stream's name; from a server too) is checked as the
layout checks it and joined with ``safe_join``: nothing is written outside DIR. Each file is written
beside its place and renamed into it, so a file there is whole; files of an earlier export are replaced.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MLDashError
from ..format.naming import safe_join, validate_metric_name, validate_prefix
from ._deps import pandas, pyarrow_module
from ._history import history
from ._search import _row, matching_records, order, runs_frame

STREAM_SUFFIX = ".parquet"


@dataclass
class ExportSummary:
    runs: int = 0
    streams: int = 0
    rows: int = 0
    files: list[Path] = field(default_factory=list)


def export_parquet(source: str | os.PathLike[str], project: str, directory: str | os.PathLike[str], *,
                   filter: str | None = None, api_key: str | None = None) -> ExportSummary:
    """Write ``project``'s runs (those matching ``filter``) and their metric streams under ``directory``."""
    pd = pandas("ml-dash export")
    target = Path(directory)
    records = matching_records(source, project, filter, api_key)
    runs = order(pd, runs_frame(pd, [_row(r) for r in records]), None)
    target.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary(runs=len(runs))
    summary.files.append(_write(runs, target / "runs.parquet"))
    for record in records:
        prefix = record["prefix"]
        validate_prefix(prefix)  # checked when listed; a path is made of it here
        for metric in sorted(record["latest"]):  # every stream holding a row has latest values
            try:
                validate_metric_name(metric)
            except (TypeError, ValueError) as exc:
                raise MLDashError(f"run {prefix} has a stream that cannot be a file name: {exc}") from None
            frame = history(source, prefix, metric, api_key=api_key)
            summary.files.append(_write(frame, safe_join(target, f"{prefix}/{metric}{STREAM_SUFFIX}")))
            summary.streams += 1
            summary.rows += len(frame)
    return summary


def _write(frame: Any, path: Path) -> Path:
    """``frame`` as Parquet at ``path``, whole or not at all; columns of mixed kinds (params that are numbers in
    one run and text or lists in another) are written as JSON text, which Parquet's one type a column allows."""
    pa = pyarrow_module("pyarrow", "ml-dash export")
    pq = pyarrow_module("pyarrow.parquet", "ml-dash export")
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            try:
                pa.array(frame[column], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                frame[column] = frame[column].map(lambda v: None if v is None else json.dumps(v, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=frame.index.name is not None), staging)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path
