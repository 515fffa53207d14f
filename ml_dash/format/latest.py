"""Each field's latest value of a metric stream, kept in its ``metrics/<name>/metadata.json``.

The run table (``ml_dash.search_runs``, local) needs every field's latest value; reading a stream's whole
file for it is out of the question (gigabytes), and its end alone misses a field logged only early in a
long run. So the writer keeps every field's latest value as rows are written (on the agent's thread,
never the training thread) and stores it at each durable point with the byte range of the stream's file
whose rows it covers::

    "latest": {"data": {"loss": 0.12, "acc": "NaN"}, "nonFinite": ["acc"], "from": 0, "to": 48213}

``data`` as in a row of ``data.jsonl`` (non-finite floats spelled as names, listed in ``nonFinite``, so
the document stays JSON); ``from``/``to`` the bytes of the file whose rows it holds the latest values of.
A reader takes the rows after ``to`` from the file (those written after the document, a second's worth,
or more when the writer was killed or an older version appended), and for the rows before ``from`` (a
run resumed from a version that kept no part) the file's last :data:`TAIL_BYTES` before it, as a run
without a part reads its own tail. A part whose range the file does not hold (cut, or foreign) is not
trusted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .jsonlines import DecodeError, end_of_complete_lines, loads, mark_non_finite_metric_row, restore_metric_row
from .values import NON_FINITE_VALUES

#: The key of the part in metadata.json.
LATEST_KEY = "latest"
#: Longer text values are not kept in the document (it is rewritten about once a second while the stream
#: grows, and a metric's text may be a MiB); such a field's value comes from the file's end, when it is there.
MAX_KEPT_TEXT_CHARS = 1024
#: Where no part covers the rows, their latest values are read from this many bytes before where it
#: starts (thousands of rows): a project's table reads every stream of every run.
TAIL_BYTES = 256 * 1024
#: The rows past a document's part that a reader (the run table) and a resumed run (at its first call on the
#: stream, on the caller's thread) read, at most: about half a second. A live run writes its document
#: about once a second, so its rows past the part stay below this up to ~500,000 rows a second; more (a
#: writer killed long after its last document, a backlog an older version wrote) and the part starts
#: afresh from the file's last bytes, never read whole (a backlog of gigabytes took 30 s).
CATCH_UP_BYTES = 64 * 1024 * 1024
_SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True, slots=True)
class KeptLatest:
    """A document's part: the latest values of the rows in bytes ``start:end`` of the stream's file."""

    values: dict[str, Any]
    start: int
    end: int


def merge_latest(latest: dict[str, Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """Update ``latest`` with the values of ``rows`` (each a row's ``data``, oldest first).

    About 30 ns a row: the usual chunk, whose rows all carry the same fields, costs one set union and
    one update; only a chunk whose last row lacks a field looks further back, and only for that field.
    """
    if not rows:
        return
    last = rows[-1]
    fields = set().union(*rows)
    latest.update(last)
    if len(fields) == len(last):
        return
    missing = fields.difference(last)
    for row in reversed(rows):
        for key in missing.intersection(row):
            latest[key] = row[key]
        missing.difference_update(row)
        if not missing:
            return


def latest_part(latest: Mapping[str, Any], start: int, end: int) -> dict[str, Any]:
    """The document's part for ``latest``, the values of the rows in bytes ``start:end``."""
    kept = {k: v for k, v in latest.items() if not (isinstance(v, str) and len(v) > MAX_KEPT_TEXT_CHARS)}
    return {**mark_non_finite_metric_row({"data": kept}), "from": start, "to": end}


def latest_from_document(document: Any) -> KeptLatest | None:
    """The part a metadata.json document holds (non-finite floats restored, scalars only), or None for
    none, or for one that is not the shape above (a damaged or foreign document is not an error here)."""
    part = document.get(LATEST_KEY) if isinstance(document, dict) else None
    if not isinstance(part, dict) or not isinstance(part.get("data"), dict):
        return None
    start, end = part.get("from"), part.get("to")
    if not (type(start) is int and type(end) is int and 0 <= start <= end):
        return None
    marked = part.get("nonFinite")
    names = {key for key in marked if isinstance(key, str)} if isinstance(marked, list) else set()
    values = {}
    for key, value in part["data"].items():
        if isinstance(value, _SCALARS):
            values[key] = NON_FINITE_VALUES[value] if key in names and value in NON_FINITE_VALUES else value
    return KeptLatest(values, start, end)


def latest_in_range(path: Path, start: int, end: int) -> dict[str, Any]:
    """Each field's latest value among the rows of ``path`` in bytes ``start:end``: whole, intact lines
    only (a line cut by ``start``, a torn last line and a damaged one are left out), read a line at a time
    (a range may be long: the rows a killed writer appended after its last document)."""
    latest: dict[str, Any] = {}
    try:
        f = open(path, "rb")  # noqa: SIM115  # closed below; a missing file has no rows
    except FileNotFoundError:
        return latest
    with f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()  # the range starts inside a line: that line is not the range's
        while f.tell() < end:
            line = f.readline()
            if not line.endswith(b"\n") or f.tell() > end:
                break  # torn (being written, or lost with its writer), or past the range
            _merge_line(latest, line)
    return latest


def row_values(row: Any) -> dict[str, Any] | None:
    """A metric row's ``data`` with its non-finite floats restored (in place), or None for a record that is
    no row we write: no map of data, or names or values that cannot be non-finite ones (a list, a map),
    whether read from a damaged file or sent by a hostile server."""
    if not isinstance(row, dict) or not isinstance(row.get("data"), dict):
        return None
    try:
        return restore_metric_row(row)["data"]
    except TypeError:
        return None


def _merge_line(latest: dict[str, Any], line: bytes) -> None:
    try:
        values = row_values(loads(line))
    except DecodeError:
        return
    if values is not None:
        latest.update(values)


def stream_latest(path: Path, document: Any) -> dict[str, Any]:
    """Each field's latest value of the stream whose rows are at ``path``, from its metadata ``document``'s
    part and the file (see the module's docstring)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return {}
    kept = latest_from_document(document)
    if kept is None or not _holds(path, kept, size):  # no part, or one over rows the file does not hold
        return latest_in_range(path, max(0, size - TAIL_BYTES), size)
    start = _fresh_start(path, kept, _whole_lines_size(path))
    if start is not None:  # as caught_up: the part's values may be stale
        return latest_in_range(path, start, size)
    out = latest_in_range(path, max(0, kept.start - TAIL_BYTES), kept.start) if kept.start else {}
    out.update(kept.values)
    out.update(latest_in_range(path, kept.end, size))
    return out


def caught_up(document: Any, path: Path) -> dict[str, Any]:
    """A stream's metadata ``document`` as its writer reopens it (a resumed run), its part brought up to
    the whole lines of the file at ``path``: the rows written after the part (by a writer killed before
    its next document, or by an older version) folded in, or, past :data:`CATCH_UP_BYTES` of them, a new
    part from the file's last such bytes (the first call on a stream must not read a backlog of gigabytes);
    with no part it can trust, a new one from the file's end (the rows before it are read from the file's
    tail, as before)."""
    end = _whole_lines_size(path)
    kept = latest_from_document(document)
    if kept is None or not _holds(path, kept, end):
        part = latest_part({}, end, end)
    elif (start := _fresh_start(path, kept, end)) is not None:  # the old part's values may be stale
        part = latest_part(latest_in_range(path, start, end), start, end)
    else:
        part = latest_part({**kept.values, **latest_in_range(path, kept.end, end)}, kept.start, end)
    return {**(document if isinstance(document, dict) else {}), LATEST_KEY: part}


def _fresh_start(path: Path, kept: KeptLatest, end: int) -> int | None:
    """Where a part starts afresh, when more than :data:`CATCH_UP_BYTES` of whole lines (up to ``end``)
    follow ``kept``: the first line at or after ``end - CATCH_UP_BYTES``; else None (the part goes on). The
    reader and a resumed writer both decide by this, so they show the same values."""
    if end - kept.end <= CATCH_UP_BYTES:
        return None
    with open(path, "rb") as f:
        f.seek(end - CATCH_UP_BYTES - 1)
        if f.read(1) != b"\n":
            f.readline()
        return min(f.tell(), end)


def _holds(path: Path, kept: KeptLatest, size: int) -> bool:
    """Whether the file (its first ``size`` bytes) holds the part's range: within it, and both ends at
    the start of a line (a part from another file, or damaged, is not trusted)."""
    if kept.end > size:
        return False
    try:
        with open(path, "rb") as f:
            for offset in {kept.start, kept.end} - {0}:
                f.seek(offset - 1)
                if f.read(1) != b"\n":
                    return False
    except OSError:
        return False
    return True


def _whole_lines_size(path: Path) -> int:
    """The size of ``path`` up to the end of its last whole line (0 when missing)."""
    try:
        with open(path, "rb") as f:
            return end_of_complete_lines(f, f.seek(0, os.SEEK_END))
    except FileNotFoundError:
        return 0


# -- on the wire: the server's latest values in JSON ----------------------------------------------
#: The reply key beside ``latest`` (run list, run document, stream pages): per metric, the fields whose
#: latest value is a non-finite float, which JSON spells as a name ("NaN") like a text value.
NON_FINITE_KEY = "latest_non_finite"


def non_finite_fields(latest: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """``{NON_FINITE_KEY: {metric: [field, ...]}}`` for the non-finite floats among ``latest`` (metric ->
    field -> value); the key even when there are none, so that a client tells this server from an older
    one that marks nothing."""
    marks = {metric: sorted(k for k, v in fields.items() if isinstance(v, float) and not math.isfinite(v))
             for metric, fields in latest.items() if isinstance(fields, Mapping)}
    return {NON_FINITE_KEY: {metric: names for metric, names in marks.items() if names}}


def restore_non_finite(fields: Mapping[str, Any], marked: Any) -> dict[str, Any]:
    """A metric's latest values from a server's JSON with the fields ``marked`` non-finite back as floats; a
    text value spelled like one ("NaN") stays text. ``marked`` None: a server that marks nothing (an older
    one), whose names are all read as floats."""
    names = None if marked is None else {n for n in marked if isinstance(n, str)} if isinstance(marked, list) else set()
    return {k: NON_FINITE_VALUES.get(v, v) if isinstance(v, str) and (names is None or k in names) else v
            for k, v in fields.items()}
