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

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from .values import NON_FINITE_VALUES, check_json, non_finite_name, to_builtin

_encoder = msgspec.json.Encoder(enc_hook=to_builtin)
_decoder = msgspec.json.Decoder()
#: What decoding a damaged line raises (a flipped byte can break UTF-8 too).
DecodeError = (msgspec.DecodeError, UnicodeDecodeError)


def loads(data: bytes | str) -> Any:
    """Decode one JSON document (raises one of :data:`DecodeError`)."""
    return _decoder.decode(data)


def read_json(path: Path) -> Any:
    """A JSON document from disk, or None when it is missing or not valid JSON."""
    try:
        return _decoder.decode(Path(path).read_bytes())
    except (FileNotFoundError, *DecodeError):
        return None


def may_hold_null(encoded: bytes) -> bool:
    """Whether ``encoded`` may contain ``null`` (None, or NaN/inf as msgspec writes them).

    A one-byte search (memchr) for ``u`` first: numeric rows rarely hold that
    byte, and the four-byte search costs ~90 ns per metric row here.
    """
    return b"u" in encoded and b"null" in encoded


def dumps(obj: Any) -> bytes:
    """Encode one JSON document (non-finite floats become their string names)."""
    encoded = _encoder.encode(obj)
    if may_hold_null(encoded):
        encoded = _encoder.encode(replace_non_finite(obj))
    return encoded


def encode_checked(what: str, value: Any, max_bytes: int) -> bytes:
    """``value`` as one JSON document, after checking it against the value domain (ml_dash/format/values.py):
    TypeError/ValueError naming ``what`` for anything outside it or longer than ``max_bytes``."""
    check_json(what, value)
    try:
        encoded = dumps(value)
    except (TypeError, ValueError, OverflowError) as exc:  # what check_json let through, still refused here
        raise TypeError(f"{what} cannot be written as JSON: {exc}") from None
    if len(encoded) > max_bytes:
        raise ValueError(f"{what} is {len(encoded):,} bytes as JSON; the limit is {max_bytes:,}")
    return encoded


def replace_non_finite(obj: Any) -> Any:
    """A copy of ``obj`` with every non-finite float replaced by its string name."""
    if isinstance(obj, dict):
        return {k: replace_non_finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [replace_non_finite(v) for v in obj]
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.ndarray):  # as lists: a NaN inside must not become null
        return replace_non_finite(to_builtin(obj))
    name = non_finite_name(obj)
    return obj if name is None else name


def mark_non_finite_metric_row(row: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a metric row's non-finite floats to names and list them in ``nonFinite``."""
    data = row["data"]
    names = {k: n for k, v in data.items() if (n := non_finite_name(v)) is not None}
    if not names:
        return row
    return {**row, "data": {**data, **names}, "nonFinite": sorted(names)}


def encode_lines(rows: list, fix_row: Callable[[Any], Any] = replace_non_finite) -> bytes:
    """Encode ``rows`` as JSON lines, each ending in a newline.

    msgspec writes NaN and infinities as ``null``; lines holding ``null`` are
    re-encoded through ``fix_row`` (which spells non-finite floats as strings).
    """
    if not rows:
        return b""
    blob = _encoder.encode_lines(rows)
    if not may_hold_null(blob):
        return blob
    lines = blob.split(b"\n")[:-1]
    for i, line in enumerate(lines):
        if b"null" in line:
            lines[i] = _encoder.encode(fix_row(_as_dict(rows[i])))
    return b"\n".join(lines) + b"\n"


def _as_dict(row: Any) -> Any:
    if isinstance(row, msgspec.Struct):
        return msgspec.structs.asdict(row)
    return row


#: Encodes a chunk of buffered events whose first index is ``start`` into JSON
#: lines; raises TypeError for a value it cannot encode.
ChunkEncoder = Callable[[list, int, str], bytes]


class MetricRow(msgspec.Struct, gc=False):
    """One line of ``metrics/<name>/data.jsonl``.

    ``gc=False``: rows are created thousands at a time; GC-tracked objects in
    those numbers push CPython's cyclic collector into full collections of the
    user's whole heap, which the training loop would pay for.
    """

    index: int
    data: dict
    createdAt: str


def encode_metric_chunk(items: list[dict], start: int, created_at: str) -> bytes:
    """Encode metric events (field dicts that already hold ``_ts``) as ``data.jsonl`` lines."""
    rows = list(map(MetricRow, range(start, start + len(items)), items, repeat(created_at)))
    return encode_lines(rows, mark_non_finite_metric_row)


def row_chunk_encoder(build_row: Callable[[int, float, Any, str], dict]) -> ChunkEncoder:
    """A general chunk encoder for ``(logged_at_s, payload)`` events: one record per event."""

    def encode(items: list, start: int, created_at: str) -> bytes:
        return encode_lines([build_row(start + k, ts, payload, created_at) for k, (ts, payload) in enumerate(items)])

    return encode


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


READ_BLOCK_BYTES = 1 << 20


def iter_records(path: Path, report: ReadReport, offset: int = 0) -> Iterator[dict[str, Any]]:
    """Yield each intact JSON object of a JSON-lines file from byte ``offset`` (a line start), counting
    the rest in ``report``. The file is read a block at a time: a reader that stops early reads
    little, and memory stays one block plus what the caller keeps, whatever the file's size."""
    try:
        f = open(path, "rb")  # noqa: SIM115  # opened apart so only the open's error is caught
    except FileNotFoundError:
        return
    with f:
        f.seek(offset)
        yield from _records(_lines(f, path, report), path, report, offset)


def _lines(f: Any, path: Path, report: ReadReport) -> Iterator[bytes]:
    """The complete lines of ``f`` (without newlines); a torn last line is reported, not yielded."""
    pending = b""
    while block := f.read(READ_BLOCK_BYTES):
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        report.torn_tail = True
        report.skipped_lines += 1
        report.problems.append(f"{path}: torn last line ({len(pending)} bytes without newline)")


def _records(lines: Iterator[bytes], path: Path, report: ReadReport, offset: int) -> Iterator[dict[str, Any]]:
    where = "" if offset == 0 else f" after byte {offset}"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = _decoder.decode(line)
        except DecodeError as exc:
            report.skipped_lines += 1
            report.problems.append(f"{path}:{number}{where}: not valid JSON ({exc})")
            continue
        if not isinstance(record, dict):
            report.skipped_lines += 1
            report.problems.append(f"{path}:{number}{where}: not a JSON object")
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
                        record = _decoder.decode(line)
                    except DecodeError:
                        continue
                    if isinstance(record, dict) and key in record:
                        return record
                if window >= size:
                    return None
                window = min(size, window * 4)
    except FileNotFoundError:
        return None


def end_of_complete_lines(f: BinaryIO, size: int) -> int:
    """The offset just past the last newline in the first ``size`` bytes of ``f`` (0 when none)."""
    position = size
    while position > 0:
        step = min(position, 1 << 16)
        f.seek(position - step)
        chunk = f.read(step)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return position - step + newline + 1
        position -= step
    return 0


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
