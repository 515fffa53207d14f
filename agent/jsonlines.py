"""JSON-lines encoding and torn-tail-tolerant reading.

On-disk format (version 1), shared by ``logs.jsonl`` and
``metrics/<name>/data.jsonl``:

* UTF-8, one JSON object per line, each line ending in ``\\n``;
* every object starts with its identity key (``index`` for metrics,
  ``sequenceNumber`` for logs), contiguous from 0 within the file;
* non-finite floats are written as the strings ``"NaN"``, ``"Infinity"`` and
  ``"-Infinity"`` so the file stays valid JSON; a metric row that holds any
  lists their field names under ``"nonFinite"`` so readers restore exact floats
  (a user string ``"NaN"`` is never mistaken for a float).

Recovery rule: a crash can leave the last line without its newline (a torn
tail). Readers skip every line that is not a complete JSON object and report
how many they skipped; the writer, when it reopens such a file, first ends the
torn line so that new records start on a line of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from .values import NON_FINITE_VALUES, non_finite_name

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _reject(value: Any) -> Any:
    raise TypeError(f"cannot encode value of type {type(value).__name__} as JSON")


def dumps(obj: Any, default: Callable[[Any], Any] = _reject) -> bytes:
    """Encode one JSON document (non-finite floats become their string names)."""
    encoded = orjson.dumps(obj, default=default, option=_DUMPS_OPTIONS)
    if b"null" in encoded:
        encoded = orjson.dumps(replace_non_finite(obj), default=default, option=_DUMPS_OPTIONS)
    return encoded


def replace_non_finite(obj: Any) -> Any:
    """A copy of ``obj`` with every non-finite float replaced by its string name."""
    if isinstance(obj, dict):
        return {k: replace_non_finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [replace_non_finite(v) for v in obj]
    name = non_finite_name(obj)
    return obj if name is None else name


def mark_non_finite_metric_row(row: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a metric row's non-finite floats to names and list them in ``nonFinite``."""
    data = row["data"]
    names = {k: n for k, v in data.items() if (n := non_finite_name(v)) is not None}
    if not names:
        return row
    return {**row, "data": {**data, **names}, "nonFinite": sorted(names)}


def encode_lines(
    rows: list[dict[str, Any]],
    first_key: str,
    fix_row: Callable[[dict[str, Any]], Any] = replace_non_finite,
) -> bytes:
    """Encode ``rows`` as JSON lines, each ending in a newline.

    All rows go through one ``orjson.dumps`` call (a list), then the list is cut
    at the row boundaries. Every row starts with ``first_key``, so a boundary is
    ``},{"<first_key>":``; that sequence cannot occur inside a JSON string (its
    quote would be escaped) but can inside a nested object, so the cut is used
    only when the number of boundaries matches, else rows are encoded one by one.
    Lines that hold ``null`` are re-encoded through ``fix_row`` since orjson
    writes NaN and infinities as ``null``.
    """
    if not rows:
        return b""
    blob = orjson.dumps(rows, default=_reject, option=_DUMPS_OPTIONS)
    boundary = b'},{"' + first_key.encode() + b'":'
    if blob.count(boundary) == len(rows) - 1:
        body = blob[1:-1].replace(boundary, b'}\n{"' + first_key.encode() + b'":')
        if b"null" not in body:
            return body + b"\n"
        lines = body.split(b"\n")
    else:
        lines = [orjson.dumps(row, default=_reject, option=_DUMPS_OPTIONS) for row in rows]
    for i, line in enumerate(lines):
        if b"null" in line:
            lines[i] = orjson.dumps(fix_row(rows[i]), default=_reject, option=_DUMPS_OPTIONS)
    return b"\n".join(lines) + b"\n"


def restore_metric_row(row: dict[str, Any]) -> dict[str, Any]:
    """Undo :func:`mark_non_finite_metric_row` on a row read from disk."""
    marked = row.get("nonFinite")
    if marked:
        data = row["data"]
        for key in marked:
            if data.get(key) in NON_FINITE_VALUES:
                data[key] = NON_FINITE_VALUES[data[key]]
    return row


@dataclass(slots=True)
class ReadReport:
    """What a tolerant read found besides the records."""

    records: int = 0
    skipped_lines: int = 0
    torn_tail: bool = False
    problems: list[str] = field(default_factory=list)


def iter_records(path: Path, report: ReadReport) -> Iterator[dict[str, Any]]:
    """Yield each intact JSON object of a JSON-lines file, counting the rest in ``report``."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    last = lines.pop()  # b"" when the file ends with a newline
    if last:
        report.torn_tail = True
        report.skipped_lines += 1
        report.problems.append(f"{path}: torn last line ({len(last)} bytes without newline)")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            report.skipped_lines += 1
            report.problems.append(f"{path}:{number}: not valid JSON ({exc})")
            continue
        if not isinstance(record, dict):
            report.skipped_lines += 1
            report.problems.append(f"{path}:{number}: not a JSON object")
            continue
        report.records += 1
        yield record


def last_record(path: Path, key: str, tail_bytes: int = 1 << 16) -> dict[str, Any] | None:
    """The last intact record holding ``key``, reading only the file's tail when possible."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            window = min(size, tail_bytes)
            while True:
                f.seek(size - window)
                chunk = f.read(window)
                lines = chunk.split(b"\n")
                if window < size:
                    lines = lines[1:]  # the first piece may start mid-line
                for line in reversed(lines):
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(record, dict) and key in record:
                        return record
                if window >= size:
                    return None
                window = min(size, window * 4)
    except FileNotFoundError:
        return None


def ends_torn(path: Path) -> bool:
    """True when a non-empty file does not end with a newline (a torn last line)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False
