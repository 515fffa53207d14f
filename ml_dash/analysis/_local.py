"""Reading runs straight from their directories (a ``.dash`` root): the run table's records and one
stream's rows, without a server and without taking any run's lock (a run being written reads as far
as its files go; a torn last line is left out, as every reader of the layout does)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from .._run.reading import written_here
from .._run.runlock import writer_alive
from ..format import layout
from ..format.jsonlines import ReadReport, ends_torn, iter_records, read_json, restore_metric_row
from ..format.latest import stream_latest
from ..format.naming import validate_metric_name, validate_prefix
from ._columns import assemble, chunks_from_rows, frame_from_chunks
from ._deps import pyarrow_module
from ._errors import NotFoundError


def run_records(root: Path, owner: str, project: str) -> Iterator[dict[str, Any]]:
    """One record per run directory of ``root/owner/project``, by name: the run document's fields,
    params and each metric stream's latest values (``latest``: stream -> field -> value)."""
    base = root / owner / project
    try:
        names = sorted(entry.name for entry in os.scandir(base) if entry.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        directory = base / name
        doc = read_json(directory / layout.EXPERIMENT)
        if not isinstance(doc, dict):
            continue  # not a run (or one whose document is being replaced right now)
        yield _record(directory, f"{owner}/{project}/{name}", doc)


def _record(directory: Path, prefix: str, doc: dict[str, Any]) -> dict[str, Any]:
    status = doc.get("status")
    if status == "RUNNING" and written_here(doc) and writer_alive(directory, doc) is False:
        status = "CRASHED"  # as `ml-dash ls` and the UI show it: no writer holds it any more
    params = read_json(directory / layout.PARAMS)
    latest = {}
    for stream, path, _size in layout.stream_sizes(directory):
        metric = layout.metric_name(stream)
        if metric is not None:
            latest[metric] = stream_latest(Path(path), _metric_document(directory, metric))
    return {**{key: doc.get(key) for key in layout.RUN_FIELDS}, "prefix": prefix, "status": status,
            "params": params.get("data") if isinstance(params, dict) and isinstance(params.get("data"), dict) else {},
            "latest": latest}


def _metric_document(directory: Path, metric: str) -> Any:
    """A metric's metadata.json, or None when it cannot be read (missing, damaged, nested past reason, a
    directory): the table then reads the stream's file alone."""
    try:
        return read_json(layout.metric_metadata_path(directory, metric))
    except (OSError, RecursionError, ValueError):
        return None


def run_directory(root: Path, prefix: str) -> Path:
    owner, project, name = validate_prefix(prefix)
    directory = root / owner / project / name
    if not (directory / layout.EXPERIMENT).is_file():
        raise NotFoundError(f"no run {prefix} under {root}")
    return directory


def history(pd: ModuleType, root: Path, prefix: str, metric: str) -> Any:
    """Every row of ``metric`` of the run ``prefix`` under ``root``, as a DataFrame."""
    directory = run_directory(root, prefix)
    validate_metric_name(metric)
    path = layout.stream_path(directory, layout.metric_stream(metric))
    if not path.is_file():
        have = [m for s, _, _ in layout.stream_sizes(directory) if (m := layout.metric_name(s))]
        raise NotFoundError(f"run {prefix} has no metric {metric!r} (it has: {', '.join(have[:20]) or 'none'})")
    frame = _arrow_history(pd, path)
    return frame if frame is not None else _tolerant_history(pd, path)


def _arrow_history(pd: ModuleType, path: Path) -> Any | None:
    """The file parsed by Arrow's multi-threaded JSON reader into columns (no Python object per value), its
    complete lines only; None when it needs the tolerant reader: a damaged line, a field whose type changes,
    non-finite floats (written as names, restored row by row)."""
    pa_json = pyarrow_module("pyarrow.json", "ml_dash.history")
    pa = pyarrow_module("pyarrow", "ml_dash.history")
    if path.stat().st_size == 0:
        return assemble(pd, pd.Index([], dtype="int64"), {}, None)
    if ends_torn(path):  # the complete lines only: a copy of them
        raw = path.read_bytes()
        source: Any = pa.BufferReader(pa.py_buffer(raw).slice(0, raw.rfind(b"\n") + 1))
    else:  # Arrow reads the file itself, on its own threads
        source = str(path)
    try:
        table = pa_json.read_json(source, read_options=pa_json.ReadOptions(block_size=8 << 20))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    names = set(table.column_names)
    # a row holding non-finite floats names them in "nonFinite" (the floats are written as names: the file
    # stays JSON); such a file is read row by row, where they are restored
    if "nonFinite" in names or not {"index", "data"} <= names or not pa.types.is_struct(table.schema.field("data").type):
        return None
    index = table.column("index")
    if not pa.types.is_integer(index.type) or index.null_count:
        return None
    data_column = table.column("data").combine_chunks()
    columns = {field.name: data_column.field(i).to_pandas() for i, field in enumerate(data_column.type)}
    created = None
    ts = columns.get("_ts")
    if "createdAt" in names and (ts is None or ts.isna().any()):
        created = _parsed_stamps(pd, table.column("createdAt"))
    return assemble(pd, index.to_numpy(), columns, created)


def _parsed_stamps(pd: ModuleType, column: Any) -> Any:
    """``createdAt`` per row, each distinct text parsed once (a batch of thousands of rows shares one)."""
    encoded = column.combine_chunks().dictionary_encode()
    parsed = pd.to_datetime(pd.Series(encoded.dictionary.to_pylist(), dtype=object), utc=True, errors="coerce",
                            format="ISO8601")
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return pd.Series(parsed.array.take(codes))  # tz-aware values as they are (to_numpy makes objects)


def _tolerant_history(pd: ModuleType, path: Path) -> Any:
    """Every intact line, decoded one by one (non-finite floats restored), regrouped into columnar blocks
    per range of consecutive indices; damaged lines are counted and warned about once, and listed in
    ``frame.attrs["problems"]``."""
    report = ReadReport()
    rows = []
    for record in iter_records(path, report):
        if not isinstance(record.get(layout.METRIC_KEY), int) or not isinstance(record.get("data"), dict):
            report.skipped_lines += 1
            report.problems.append(f"{path}: a line without an index or data")
            continue
        record.setdefault("createdAt", None)
        rows.append(restore_metric_row(record))
    chunks = chunks_from_rows(rows)
    frame = frame_from_chunks(pd, chunks)
    # a torn last line is a row being written (or lost with its writer): left out, as the fast path does,
    # without a warning; lines damaged before it are counted and said once
    damaged = report.skipped_lines - int(report.torn_tail)
    problems = [p for p in report.problems if "torn last line" not in p]
    if damaged:
        warnings.warn(f"{path}: {damaged} damaged line(s) left out of the history ({'; '.join(problems[:3])})",
                      RuntimeWarning, stacklevel=4)
    frame.attrs["problems"] = problems
    return frame

